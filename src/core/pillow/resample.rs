//! `Image.resize` of Pillow 12.3.0 for 8-bit RGB images, bit for bit.
//!
//! Port of `src/libImaging/Resample.c` (`ImagingResample`,
//! `precompute_coeffs`, `normalize_coeffs_8bpc`, the 8 bpc horizontal and
//! vertical passes) and of the Python-level logic of `Image.resize` in
//! `src/PIL/Image.py` (same-size copy, the vertical-first split for images
//! taller than 100× their width, `reducing_gap=None` by default so no
//! `reduce()` pre-step). Pillow 12.3.0, MIT-CMU/HPND licence (see `mod.rs`).
//!
//! Algorithm summary (per axis): for every output sample the filter is
//! centred at `in0 + (i + 0.5) · scale` in input coordinates, its support is
//! widened by `max(scale, 1)`, weights are normalised to sum 1 in `f64`, then
//! converted to fixed point with 22 fractional bits (rounding half away from
//! zero by truncating `w·2²² ± 0.5`). Each pass accumulates
//! `2²¹ + Σ pixel·weight` in wrapping 32-bit integers and clips
//! `sum >> 22` to `0..=255`. The horizontal pass runs first, into an 8-bit
//! temporary holding only the rows the vertical pass will read; a pass is
//! skipped when its dimension is unchanged.
//!
//! Also here: [`rgba_to_rgb_over_white`], qwen-vl-utils' RGBA→RGB conversion
//! (`Image.new("RGB", size, white).paste(img, mask=alpha)`, i.e.
//! `Paste.c::paste_mask_L` with Pillow's `BLEND`/`DIV255` rounding).

use image::{Rgb, RgbImage, RgbaImage};

/// Largest accepted output width or height.
pub const MAX_RESIZE_SIDE: u32 = 1 << 20;
/// Largest accepted output pixel count (`width · height`).
pub const MAX_RESIZE_PIXELS: u64 = 1 << 27;

/// Fractional bits of the fixed-point weights (`32 - 8 - 2` in Pillow).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The resampling kernels this module supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    /// Keys cubic convolution with `a = -0.5` (support 2).
    Bicubic,
    /// Lanczos windowed sinc with `a = 3` (support 3).
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => bicubic(x),
            Filter::Lanczos => lanczos(x),
        }
    }
}

/// `bicubic_filter` of `Resample.c` (`a = -0.5`), same evaluation order.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// `lanczos_filter` of `Resample.c`: `sinc(x)·sinc(x/3)` on `[-3, 3)`.
fn lanczos(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Fixed-point filter taps for one axis.
struct Coeffs {
    /// Maximum taps per output sample (row stride of `weights`).
    ksize: usize,
    /// Per output sample: first input index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// `out_size · ksize` weights with [`PRECISION_BITS`] fractional bits.
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc`. `in0`/`in1` are the
/// (single-precision, as in Pillow's `float box[4]`) source box edges.
fn precompute_coeffs(
    in_size: usize,
    in0: f32,
    in1: f32,
    out_size: usize,
    filter: Filter,
) -> Result<Coeffs, String> {
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = filter.support() * filterscale;
    let ksize_i = (support.ceil() as i64).saturating_mul(2).saturating_add(1);
    // Pillow: `if (outSize > INT_MAX / (ksize * sizeof(double))) MemoryError`.
    if ksize_i <= 0 || (out_size as i64) > i64::from(i32::MAX) / ksize_i.saturating_mul(8) {
        return Err(format!(
            "resize: coefficient table too large ({out_size} samples × {ksize_i} taps)"
        ));
    }
    let ksize = ksize_i as usize;
    let mut pre = vec![0.0f64; out_size * ksize];
    let mut bounds = Vec::with_capacity(out_size);
    let inv_filterscale = 1.0 / filterscale;
    for (xx, k) in pre.chunks_exact_mut(ksize).enumerate() {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // `(int)` truncation toward zero, as in C.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let mut ww = 0.0;
        for (x, slot) in k.iter_mut().take(count).enumerate() {
            let w = filter.eval(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            *slot = w;
            ww += w;
        }
        if ww != 0.0 {
            for slot in k.iter_mut().take(count) {
                *slot /= ww;
            }
        }
        bounds.push((xmin as usize, count));
    }
    let one = f64::from(1u32 << PRECISION_BITS);
    let weights = pre
        .iter()
        .map(|&w| {
            if w < 0.0 {
                (-0.5 + w * one) as i32
            } else {
                (0.5 + w * one) as i32
            }
        })
        .collect();
    Ok(Coeffs {
        ksize,
        bounds,
        weights,
    })
}

/// `clip8`: take the integer part of a fixed-point sum, clamp to a byte.
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A plain interleaved RGB buffer (3 bytes per pixel, no padding).
struct Plane {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

/// A zeroed pixel buffer for `w × h` RGB pixels, allocated fallibly.
fn alloc_rgb(w: usize, h: usize) -> Result<Vec<u8>, String> {
    let len = w
        .checked_mul(h)
        .filter(|&n| n as u64 <= 4 * MAX_RESIZE_PIXELS)
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| format!("resize: intermediate image {w}x{h} is too large"))?;
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| format!("resize: cannot allocate {w}x{h} image: {e}"))?;
    v.resize(len, 0);
    Ok(v)
}

/// Horizontal 8 bpc pass over source rows `row0 .. row0 + rows`.
fn pass_horizontal(
    src: &Plane,
    row0: usize,
    rows: usize,
    out_w: usize,
    c: &Coeffs,
) -> Result<Plane, String> {
    let mut px = alloc_rgb(out_w, rows)?;
    let half = 1i32 << (PRECISION_BITS - 1);
    for (yy, out_row) in px.chunks_exact_mut(out_w * 3).enumerate() {
        let y = row0 + yy;
        let in_row = &src.px[y * src.w * 3..(y + 1) * src.w * 3];
        for (xx, out) in out_row.chunks_exact_mut(3).enumerate() {
            let (xmin, count) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            let mut ss = [half; 3];
            for (x, &kw) in k.iter().enumerate() {
                let p = &in_row[(xmin + x) * 3..(xmin + x) * 3 + 3];
                for ch in 0..3 {
                    ss[ch] = ss[ch].wrapping_add(i32::from(p[ch]).wrapping_mul(kw));
                }
            }
            for ch in 0..3 {
                out[ch] = clip8(ss[ch]);
            }
        }
    }
    Ok(Plane {
        w: out_w,
        h: rows,
        px,
    })
}

/// Vertical 8 bpc pass; `row_shift` is subtracted from every tap's first row
/// (the horizontal temporary only holds the rows that are read).
fn pass_vertical(src: &Plane, out_h: usize, c: &Coeffs, row_shift: usize) -> Result<Plane, String> {
    let w = src.w;
    let mut px = alloc_rgb(w, out_h)?;
    let half = 1i32 << (PRECISION_BITS - 1);
    for (yy, out_row) in px.chunks_exact_mut(w * 3).enumerate() {
        let (ymin, count) = c.bounds[yy];
        let ymin = ymin.saturating_sub(row_shift);
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        for (xx, out) in out_row.chunks_exact_mut(3).enumerate() {
            let mut ss = [half; 3];
            for (y, &kw) in k.iter().enumerate() {
                let off = ((ymin + y) * w + xx) * 3;
                let p = &src.px[off..off + 3];
                for ch in 0..3 {
                    ss[ch] = ss[ch].wrapping_add(i32::from(p[ch]).wrapping_mul(kw));
                }
            }
            for ch in 0..3 {
                out[ch] = clip8(ss[ch]);
            }
        }
    }
    Ok(Plane { w, h: out_h, px })
}

/// `ImagingResampleInner` with the full-image box `(0, 0, w, h)`.
fn resample(src: Plane, xsize: usize, ysize: usize, filter: Filter) -> Result<Plane, String> {
    let need_horizontal = xsize != src.w;
    let need_vertical = ysize != src.h;
    if !need_horizontal && !need_vertical {
        return Ok(src);
    }
    let vert = precompute_coeffs(src.h, 0.0, src.h as f32, ysize, filter)?;
    let ybox_first = vert.bounds.first().map_or(0, |b| b.0);
    let ybox_last = vert.bounds.last().map_or(0, |b| b.0 + b.1);
    let mut cur = src;
    let mut shift = 0;
    if need_horizontal {
        let horiz = precompute_coeffs(cur.w, 0.0, cur.w as f32, xsize, filter)?;
        let rows = ybox_last.saturating_sub(ybox_first);
        cur = pass_horizontal(&cur, ybox_first, rows, xsize, &horiz)?;
        shift = ybox_first;
    }
    if need_vertical {
        cur = pass_vertical(&cur, ysize, &vert, shift)?;
    }
    Ok(cur)
}

fn validate(src: &RgbImage, width: u32, height: u32) -> Result<(), String> {
    if src.width() == 0 || src.height() == 0 {
        return Err("resize: source image is empty".into());
    }
    if width == 0 || height == 0 {
        return Err("resize: height and width must be > 0".into());
    }
    if width > MAX_RESIZE_SIDE || height > MAX_RESIZE_SIDE {
        return Err(format!(
            "resize: target {width}x{height} exceeds the {MAX_RESIZE_SIDE} px side limit"
        ));
    }
    if u64::from(width) * u64::from(height) > MAX_RESIZE_PIXELS {
        return Err(format!(
            "resize: target {width}x{height} exceeds the {MAX_RESIZE_PIXELS} pixel limit"
        ));
    }
    Ok(())
}

/// `Image.resize((width, height), filter)` as in `Image.py`.
fn resize_with(
    src: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
) -> Result<RgbImage, String> {
    validate(src, width, height)?;
    if src.dimensions() == (width, height) {
        return Ok(src.clone());
    }
    let (sw, sh) = (src.width() as usize, src.height() as usize);
    let plane = Plane {
        w: sw,
        h: sh,
        px: src.as_raw().clone(),
    };
    let (w, h) = (width as usize, height as usize);
    let out = if sh > sw.saturating_mul(100) && h < sh {
        // New in Pillow 12.2 ("Resize tall images vertically first"): when
        // the source is more than 100× taller than wide and the height
        // shrinks, Pillow makes two calls — vertical only to (w, height), then
        // horizontal only — so the vertical pass reads 8-bit source rows and
        // the horizontal pass reads the rounded vertical result. Older Pillow
        // (one call, horizontal first) gives slightly different pixels here.
        let tall = resample(plane, sw, h, filter)?;
        resample(tall, w, h, filter)?
    } else {
        resample(plane, w, h, filter)?
    };
    RgbImage::from_raw(width, height, out.px)
        .ok_or_else(|| "resize: internal buffer size mismatch".to_string())
}

/// `Image.resize((width, height))` with Pillow's default filter
/// (`Resampling.BICUBIC`) on an RGB image, exactly as Pillow 12.3.0.
///
/// Returns a copy for a same-size request. Errors for an empty source, a zero
/// target dimension, a side above [`MAX_RESIZE_SIDE`] or an area above
/// [`MAX_RESIZE_PIXELS`].
pub fn resize_bicubic(src: &RgbImage, width: u32, height: u32) -> Result<RgbImage, String> {
    resize_with(src, width, height, Filter::Bicubic)
}

/// `Image.resize((width, height), Image.Resampling.LANCZOS)` on an RGB image,
/// exactly as Pillow 12.3.0. Same validation as [`resize_bicubic`].
pub fn resize_lanczos(src: &RgbImage, width: u32, height: u32) -> Result<RgbImage, String> {
    resize_with(src, width, height, Filter::Lanczos)
}

/// Pillow's `DIV255`: `(v + 128 + ((v + 128) >> 8)) >> 8`, i.e. `v / 255`
/// rounded to nearest for `v ≤ 255·255`.
#[inline]
pub(crate) fn div255(v: u32) -> u8 {
    let t = v + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's `BLEND(mask, in1, in2)`: `DIV255(in1·(255−mask) + in2·mask)`.
#[inline]
pub(crate) fn blend(mask: u8, under: u8, over: u8) -> u8 {
    let m = u32::from(mask);
    div255(u32::from(under) * (255 - m) + u32::from(over) * m)
}

/// qwen-vl-utils `to_rgb` for RGBA input: a white RGB canvas onto which the
/// image is pasted with its alpha band as the mask (Pillow `paste_mask_L`):
/// every channel becomes `BLEND(alpha, 255, c)`.
pub fn rgba_to_rgb_over_white(src: &RgbaImage) -> RgbImage {
    let mut out = RgbImage::new(src.width(), src.height());
    for (o, p) in out.pixels_mut().zip(src.pixels()) {
        let [r, g, b, a] = p.0;
        *o = Rgb([blend(a, 255, r), blend(a, 255, g), blend(a, 255, b)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div255_matches_rounded_division() {
        for v in 0..=255u32 * 255 {
            let want = ((f64::from(v) / 255.0) + 0.5).floor() as u32;
            // Pillow's DIV255 equals round-half-up of v / 255 on this range.
            assert_eq!(u32::from(div255(v)), want, "v={v}");
        }
    }

    #[test]
    fn rejects_bad_targets() {
        let img = RgbImage::new(4, 4);
        assert!(resize_bicubic(&img, 0, 4).is_err());
        assert!(resize_bicubic(&img, 4, 0).is_err());
        assert!(resize_bicubic(&img, MAX_RESIZE_SIDE + 1, 1).is_err());
        assert!(resize_bicubic(&img, 1 << 20, 1 << 20).is_err());
        assert!(resize_bicubic(&RgbImage::new(0, 3), 2, 2).is_err());
        assert!(resize_lanczos(&img, 3, 5).is_ok());
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(7, 5, Rgb([200, 13, 255]));
        for (w, h) in [(3, 2), (14, 10), (7, 11), (1, 1)] {
            let out = resize_bicubic(&img, w, h).unwrap();
            assert!(out.pixels().all(|p| p.0 == [200, 13, 255]), "{w}x{h}");
        }
    }
}
