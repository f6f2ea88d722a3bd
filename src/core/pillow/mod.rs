//! Pixel-exact re-implementations of the parts of Pillow 12.3.0 that the
//! ViLaSR / ViLaVT reference pipelines depend on.
//!
//! * [`resize_bicubic`] / [`resize_lanczos`] — `Image.resize((w, h))` on RGB
//!   8-bit images (Pillow's two-pass fixed-point convolution, `Resample.c`,
//!   plus the `Image.resize` special case for very tall images).
//! * [`rgba_to_rgb_over_white`] — qwen-vl-utils' `to_rgb`: paste an RGBA
//!   image onto a white RGB canvas using its alpha band as the mask
//!   (`Paste.c`, `paste_mask_L`).
//! * [`draw_rectangle_outline`], [`draw_line`], [`draw_filled_ellipse`] —
//!   `ImageDraw.rectangle(outline=…, width=…)`, `ImageDraw.line(…, width=…)`
//!   and `ImageDraw.ellipse(…, fill=…)` on an RGB image, including the
//!   float→int truncation done by `_imaging.c` (`Draw.c` algorithms).
//! * [`draw_text`] / [`text_bbox`] — `ImageDraw.text((x, y), text, fill=…)`
//!   with Pillow's default font (FreeType "Aileron Regular", 10 px, basic
//!   layout, anchor `la`), exact via a glyph atlas rendered by Pillow itself;
//!   [`draw_text_ab_glyph`] is an `ab_glyph` rasterisation of the bundled TTF
//!   with the same layout (glyph pixels approximate).
//!
//! The algorithms are ports written from a reading of the Pillow 12.3.0
//! sources (`src/libImaging/Resample.c`, `Draw.c`, `Paste.c`, `src/_imaging.c`,
//! `src/_imagingft.c`, `src/PIL/Image.py`, `ImageDraw.py`, `ImageText.py`).
//! Pillow 12.3.0 (tag commit `bb1d8e8a`) is under the MIT-CMU (HPND) licence:
//! Copyright © 1997-2011 by Secret Labs AB, © 1995-2011 by Fredrik Lundh and
//! contributors, © 2010 by Jeffrey 'Alex' Clark and contributors.
//!
//! This module is self-contained: it depends only on `std`, the `image`
//! crate (for [`image::RgbImage`]) and `ab_glyph` (the approximate outline
//! rasteriser in [`text`]); it never refers to `crate::`. No function in it
//! panics on any input: every drawing primitive clips to the image, and
//! resizing validates its target.

pub mod draw;
pub mod resample;
pub mod text;

pub use draw::{draw_filled_ellipse, draw_line, draw_rectangle_outline};
pub use resample::{
    resize_bicubic, resize_lanczos, rgba_to_rgb_over_white, MAX_RESIZE_PIXELS, MAX_RESIZE_SIDE,
};
pub use text::{draw_text, draw_text_ab_glyph, text_bbox, text_bbox_ab_glyph};

/// Alias of [`rgba_to_rgb_over_white`] (qwen-vl-utils `to_rgb` for RGBA).
pub use resample::rgba_to_rgb_over_white as rgba_over_white;
