//! `ImageDraw.text((x, y), text, fill=color)` with Pillow 12.3.0's default
//! font, on RGB images.
//!
//! Since Pillow 10.1, `ImageFont.load_default()` is FreeType rendering
//! "Aileron Regular" (CC0, embedded in `PIL/ImageFont.py`) at 10 px with the
//! *basic* layout engine. This font has no `kern` table and no TrueType
//! bytecode, so FreeType auto-hints every glyph: advances are whole pixels
//! (and differ from the unhinted advance widths by up to a pixel) and
//! outlines are snapped vertically. Consequently:
//!
//! * [`draw_text`] / [`text_bbox`] use a glyph atlas (`assets/fonts/
//!   aileron_regular_10px.glyphs`, produced by `tools/pillow_fixtures.py`
//!   from Pillow 12.3.0 / FreeType 2.14.3): per character the hinted
//!   advance, Pillow's `getbbox`, and FreeType's 8-bit coverage bitmap. With
//!   integer text positions every glyph bitmap is position independent, so
//!   this reproduces Pillow exactly — layout (`bounding_box_and_anchors` in
//!   `_imagingft.c`), glyph compositing inside the text mask
//!   (`src + (dst·(255 − src) + 128) / 255`), and the final mask blend
//!   (`fill_mask_L`: `BLEND(mask, pixel, ink)` per channel). Characters
//!   missing from the font use the `.notdef` glyph, as FreeType does.
//! * [`draw_text_ab_glyph`] / [`text_bbox_ab_glyph`] rasterise the bundled
//!   TTF (`assets/fonts/Aileron-Regular.ttf`) with `ab_glyph` instead, with
//!   the same (atlas) advances and anchor. Glyph pixels differ slightly from
//!   FreeType's hinted rendering; positions agree to about a pixel.
//!
//! Anchor is `la`: `y` is the top of the font ascender (10 px above the
//! baseline). Multi-line text (`\n`) is laid out as `ImageText._split` does:
//! lines `getbbox("A")[3] + 4 = 14` px apart, left aligned. Port of Pillow
//! 12.3.0 logic, MIT-CMU/HPND licence (see `mod.rs`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::RgbImage;

use super::resample::{blend, div255};

/// The bundled font (Aileron Regular subset shipped inside Pillow 12.3.0).
pub const AILERON_REGULAR_TTF: &[u8] = include_bytes!("../../../assets/fonts/Aileron-Regular.ttf");

/// Pillow/FreeType rendering of every glyph of [`AILERON_REGULAR_TTF`] at
/// 10 px (format documented in `tools/pillow_fixtures.py::write_atlas`).
const ATLAS: &[u8] = include_bytes!("../../../assets/fonts/aileron_regular_10px.glyphs");

/// `(left, top, right, bottom)` in pixels.
type BBox = (i32, i32, i32, i32);

/// Default font size of `ImageFont.load_default()`.
const FONT_PX: f32 = 10.0;
/// `ImageDraw.text`'s default `spacing`.
const LINE_SPACING_EXTRA: i32 = 4;

/// One glyph of the atlas.
#[derive(Clone, Debug, Default)]
struct Glyph {
    advance: i32,
    /// `font.getbbox(ch)` (anchor `la`): left, top, right, bottom.
    bbox: BBox,
    /// Coverage origin relative to the pen position and the `la` anchor.
    left: i32,
    top: i32,
    w: usize,
    h: usize,
    coverage: Vec<u8>,
}

#[derive(Debug, Default)]
struct Atlas {
    ascender: i32,
    glyphs: BTreeMap<u32, Glyph>,
    notdef: Glyph,
}

impl Atlas {
    fn glyph(&self, c: char) -> &Glyph {
        self.glyphs.get(&u32::from(c)).unwrap_or(&self.notdef)
    }
}

/// Little-endian reader that never panics.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn i16(&mut self) -> Option<i32> {
        self.take(2)
            .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn parse_atlas(data: &[u8]) -> Option<Atlas> {
    let mut r = Reader { data, pos: 0 };
    if r.take(8)? != b"SLGLYPH1" {
        return None;
    }
    let count = r.u16()?;
    let ascender = r.i16()?;
    let _descender = r.i16()?;
    let _reserved = r.i16()?;
    let mut atlas = Atlas {
        ascender,
        ..Atlas::default()
    };
    for _ in 0..count {
        let cp = r.u32()?;
        let advance = r.i16()?;
        let bbox = (r.i16()?, r.i16()?, r.i16()?, r.i16()?);
        let (left, top) = (r.i16()?, r.i16()?);
        let (w, h) = (usize::from(r.u16()?), usize::from(r.u16()?));
        let coverage = r.take(w * h)?.to_vec();
        let g = Glyph {
            advance,
            bbox,
            left,
            top,
            w,
            h,
            coverage,
        };
        if cp == 0 {
            atlas.notdef = g;
        } else {
            atlas.glyphs.insert(cp, g);
        }
    }
    Some(atlas)
}

fn atlas() -> &'static Atlas {
    static ATLAS_CELL: OnceLock<Atlas> = OnceLock::new();
    ATLAS_CELL.get_or_init(|| parse_atlas(ATLAS).unwrap_or_default())
}

/// Vertical distance between lines of multi-line text:
/// `font.getbbox("A")[3] + stroke_width(0) + spacing(4)`.
fn line_spacing() -> i32 {
    atlas().glyph('A').bbox.3 + LINE_SPACING_EXTRA
}

/// Pen x positions of each character and the `getbbox` of one line.
fn layout_line(line: &str) -> (Vec<(i32, &'static Glyph)>, BBox) {
    let at = atlas();
    let mut pen = 0i32;
    let mut placed = Vec::new();
    let mut bbox: Option<BBox> = None;
    for c in line.chars() {
        let g = at.glyph(c);
        let b = (
            pen.saturating_add(g.bbox.0),
            g.bbox.1,
            pen.saturating_add(g.bbox.2),
            g.bbox.3,
        );
        bbox = Some(match bbox {
            None => b,
            Some(a) => (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
        });
        placed.push((pen, g));
        pen = pen.saturating_add(g.advance);
    }
    // An empty line has the empty box at the origin, as in FreeType layout.
    (placed, bbox.unwrap_or((0, 0, 0, 0)))
}

/// Lines of `text` with their y offsets (`ImageText._split`, anchor `la`).
fn split_lines(text: &str) -> impl Iterator<Item = (i32, &str)> {
    let spacing = line_spacing();
    text.split('\n')
        .enumerate()
        .map(move |(k, l)| ((k as i32).saturating_mul(spacing), l))
}

/// `ImageDraw.textbbox((0, 0), text)` with the default font: `(left, top,
/// right, bottom)` relative to the anchor point (add the text position).
/// For `""` this is `(0, 0, 0, 0)`.
pub fn text_bbox(text: &str) -> (i32, i32, i32, i32) {
    let mut acc: Option<BBox> = None;
    for (dy, line) in split_lines(text) {
        let (_, b) = layout_line(line);
        let b = (b.0, b.1.saturating_add(dy), b.2, b.3.saturating_add(dy));
        acc = Some(match acc {
            None => b,
            Some(a) => (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
        });
    }
    acc.unwrap_or((0, 0, 0, 0))
}

/// An 8-bit text mask positioned at `(x0, y0)` in image coordinates.
struct Mask {
    x0: i64,
    y0: i64,
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Mask {
    fn new(x0: i64, y0: i64, w: usize, h: usize) -> Self {
        Mask {
            x0,
            y0,
            w,
            h,
            px: vec![0; w * h],
        }
    }

    /// Composite glyph coverage at mask position `(gx, gy)`, clipped to the
    /// mask, the way `font_render` does: `dst = dst > 0 ?
    /// CLIP8(src + MULDIV255(dst, 255 − src)) : src` where `src > 0`.
    fn add(&mut self, gx: i64, gy: i64, w: usize, h: usize, cov: &[u8]) {
        for (row, line) in cov.chunks_exact(w.max(1)).take(h).enumerate() {
            let y = gy + row as i64;
            if y < 0 || y >= self.h as i64 {
                continue;
            }
            for (col, &src) in line.iter().enumerate() {
                let x = gx + col as i64;
                if src == 0 || x < 0 || x >= self.w as i64 {
                    continue;
                }
                let dst = &mut self.px[y as usize * self.w + x as usize];
                *dst = if *dst > 0 {
                    let s = u32::from(src);
                    let m = u32::from(div255(u32::from(*dst) * (255 - s)));
                    (s + m).min(255) as u8
                } else {
                    src
                };
            }
        }
    }

    /// `ImagingFill2` with an `L` mask (`fill_mask_L`), clipped to the image.
    fn blend_into(&self, img: &mut RgbImage, color: [u8; 3]) {
        let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
        for my in 0..self.h {
            let y = self.y0 + my as i64;
            if y < 0 || y >= ih {
                continue;
            }
            for mx in 0..self.w {
                let x = self.x0 + mx as i64;
                let m = self.px[my * self.w + mx];
                if x < 0 || x >= iw || m == 0 {
                    continue;
                }
                let p = img.get_pixel_mut(x as u32, y as u32);
                for (v, &ink) in p.0.iter_mut().zip(color.iter()) {
                    *v = blend(m, *v, ink);
                }
            }
        }
    }
}

/// The part of a line's text mask (box `bbox` at `(x, y)`) that overlaps
/// the image; `None` when the text cannot touch the image.
fn mask_for(img: &RgbImage, x: i64, y: i64, bbox: BBox) -> Option<Mask> {
    let (l, t, r, b) = (
        x + i64::from(bbox.0),
        y + i64::from(bbox.1),
        x + i64::from(bbox.2),
        y + i64::from(bbox.3),
    );
    // Only the part of the mask that overlaps the image matters; pixels
    // outside it are never blended. Crop the mask to the image.
    let (cl, ct) = (l.max(0), t.max(0));
    let (cr, cb) = (
        r.min(i64::from(img.width())),
        b.min(i64::from(img.height())),
    );
    if cl >= cr || ct >= cb {
        return None;
    }
    Some(Mask::new(cl, ct, (cr - cl) as usize, (cb - ct) as usize))
}

/// `ImageDraw.text((x, y), text, fill=color)` with Pillow 12.3.0's default
/// font on an RGB image (anchor `la`, left-aligned multi-line). Exact.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, text: &str, color: [u8; 3]) {
    for (dy, line) in split_lines(text) {
        let (placed, bbox) = layout_line(line);
        if placed.is_empty() {
            continue;
        }
        let (lx, ly) = (i64::from(x), i64::from(y) + i64::from(dy));
        let Some(mut mask) = mask_for(img, lx, ly, bbox) else {
            continue;
        };
        // Glyph coverage is clipped to the full (uncropped) line mask first,
        // exactly like FreeType output is clipped to Pillow's mask image.
        let (full_l, full_t) = (lx + i64::from(bbox.0), ly + i64::from(bbox.1));
        let (full_r, full_b) = (lx + i64::from(bbox.2), ly + i64::from(bbox.3));
        for (pen, g) in placed {
            let gx = lx + i64::from(pen) + i64::from(g.left);
            let gy = ly + i64::from(g.top);
            let full = (full_l, full_t, full_r, full_b);
            if let Some((cx, cy, w, h, cov)) = clip_glyph(g, gx, gy, full) {
                mask.add(cx - mask.x0, cy - mask.y0, w, h, &cov);
            }
        }
        mask.blend_into(img, color);
    }
}

/// A glyph's coverage placed at `(gx, gy)`, cropped to the box `(l, t, r, b)`:
/// `(x, y, w, h, coverage)`, or `None` when nothing is left.
fn clip_glyph(
    g: &Glyph,
    gx: i64,
    gy: i64,
    (l, t, r, b): (i64, i64, i64, i64),
) -> Option<(i64, i64, usize, usize, Vec<u8>)> {
    let x0 = gx.max(l);
    let y0 = gy.max(t);
    let x1 = (gx + g.w as i64).min(r);
    let y1 = (gy + g.h as i64).min(b);
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let mut cov = Vec::with_capacity(w * h);
    for y in y0..y1 {
        let start = (y - gy) as usize * g.w + (x0 - gx) as usize;
        cov.extend_from_slice(g.coverage.get(start..start + w)?);
    }
    Some((x0, y0, w, h, cov))
}

// ---------------------------------------------------------------------------
// ab_glyph rasteriser (approximate glyph pixels, same layout)
// ---------------------------------------------------------------------------

fn ab_font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(AILERON_REGULAR_TTF).ok())
        .as_ref()
}

/// Coverage of one glyph rasterised by `ab_glyph` at 10 px per em, with its
/// origin relative to the pen position on the baseline.
fn ab_coverage(font: &FontRef<'static>, c: char) -> Option<(i64, i64, usize, usize, Vec<u8>)> {
    let upem = font.units_per_em()?;
    // ab_glyph's PxScale is ascent − descent; Pillow's size is the em.
    let scale = PxScale::from(FONT_PX * font.height_unscaled() / upem);
    let scaled = font.as_scaled(scale);
    let glyph = scaled.scaled_glyph(c);
    let outlined = font.outline_glyph(glyph)?;
    let bounds = outlined.px_bounds();
    let (w, h) = (bounds.width() as usize, bounds.height() as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let mut cov = vec![0u8; w * h];
    outlined.draw(|x, y, v| {
        if let Some(p) = cov.get_mut(y as usize * w + x as usize) {
            *p = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    });
    Some((bounds.min.x as i64, bounds.min.y as i64, w, h, cov))
}

/// Like [`text_bbox`] but measuring the `ab_glyph` rasterisation (ink
/// bounds united with the pen line, as FreeType's layout box is).
pub fn text_bbox_ab_glyph(text: &str) -> (i32, i32, i32, i32) {
    let Some(font) = ab_font() else {
        return text_bbox(text);
    };
    let asc = i64::from(atlas().ascender);
    let mut acc: Option<(i64, i64, i64, i64)> = None;
    for (dy, line) in split_lines(text) {
        let (placed, _) = layout_line(line);
        let mut b: Option<(i64, i64, i64, i64)> = None;
        for (&(pen, g), c) in placed.iter().zip(line.chars()) {
            let pen = i64::from(pen);
            let mut gb = (pen, asc, pen + i64::from(g.advance), asc);
            if let Some((gx, gy, w, h, _)) = ab_coverage(font, c) {
                gb = (
                    gb.0.min(pen + gx),
                    gb.1.min(asc + gy),
                    gb.2.max(pen + gx + w as i64),
                    gb.3.max(asc + gy + h as i64),
                );
            }
            b = Some(match b {
                None => gb,
                Some(a) => (a.0.min(gb.0), a.1.min(gb.1), a.2.max(gb.2), a.3.max(gb.3)),
            });
        }
        let dy = i64::from(dy);
        let b = b.map_or((0, dy, 0, dy), |b| (b.0, b.1 + dy, b.2, b.3 + dy));
        acc = Some(match acc {
            None => b,
            Some(a) => (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)),
        });
    }
    let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    acc.map_or((0, 0, 0, 0), |a| {
        (clamp(a.0), clamp(a.1), clamp(a.2), clamp(a.3))
    })
}

/// `ImageDraw.text` with glyphs rasterised by `ab_glyph` from the bundled
/// TTF (unhinted) instead of the FreeType atlas. Same layout and blending as
/// [`draw_text`]; glyph pixels differ slightly from Pillow's.
pub fn draw_text_ab_glyph(img: &mut RgbImage, x: i32, y: i32, text: &str, color: [u8; 3]) {
    let Some(font) = ab_font() else {
        return;
    };
    let asc = i64::from(atlas().ascender);
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    for (dy, line) in split_lines(text) {
        let (placed, _) = layout_line(line);
        let ly = i64::from(y) + i64::from(dy);
        // Skip lines that cannot reach the image (bounded work for huge text).
        let bb = text_bbox_ab_glyph(line);
        let (l, t, r, b) = (
            i64::from(x) + i64::from(bb.0),
            ly + i64::from(bb.1),
            i64::from(x) + i64::from(bb.2),
            ly + i64::from(bb.3),
        );
        let (cl, ct, cr, cb) = (l.max(0), t.max(0), r.min(iw), b.min(ih));
        if cl >= cr || ct >= cb {
            continue;
        }
        let mut mask = Mask::new(cl, ct, (cr - cl) as usize, (cb - ct) as usize);
        for (&(pen, _), c) in placed.iter().zip(line.chars()) {
            if let Some((gx, gy, w, h, cov)) = ab_coverage(font, c) {
                let px = i64::from(x) + i64::from(pen) + gx;
                let py = ly + asc + gy;
                mask.add(px - mask.x0, py - mask.y0, w, h, &cov);
            }
        }
        mask.blend_into(img, color);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atlas_parses() {
        let at = atlas();
        assert_eq!(at.ascender, 10);
        assert!(at.glyphs.len() >= 100);
        assert!(at.notdef.advance > 0);
        assert_eq!(line_spacing(), 14);
    }

    #[test]
    fn bbox_examples() {
        // Values reported by Pillow 12.3.0: ImageDraw.textbbox((0, 0), text).
        assert_eq!(text_bbox("chair"), (0, 2, 24, 10));
        assert_eq!(text_bbox("lamp"), (0, 2, 23, 12));
        assert_eq!(text_bbox(""), (0, 0, 0, 0));
    }

    #[test]
    fn no_panic_on_odd_text() {
        let mut img = RgbImage::new(5, 5);
        let long = "W".repeat(100_000);
        draw_text(&mut img, i32::MIN, i32::MAX, &long, [1, 2, 3]);
        draw_text(
            &mut img,
            i32::MAX,
            i32::MIN,
            "\n\n\u{0}\u{10FFFF}",
            [1, 2, 3],
        );
        draw_text_ab_glyph(&mut img, i32::MAX, i32::MIN, "x\ny", [1, 2, 3]);
        draw_text(&mut RgbImage::new(0, 0), 0, 0, "abc", [1, 2, 3]);
        let _ = text_bbox(&long);
    }
}
