//! Image and video preprocessing as `Qwen2VLImageProcessor` does it: `smart_resize` + the core's
//! Pillow-exact bicubic resize, rescale by 1/255, OpenAI CLIP mean/std normalisation, and the
//! processor's patch flattening order (frames padded to the temporal patch by repeating the last).
//! Budgets and statistics come from the checkpoint's `preprocessor_config.json` when present.

use super::config::VisionConfig;
use super::rope::GridThw;
use crate::core::pillow;
use crate::core::resize::{smart_resize, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS};
use image::RgbImage;
use serde_json::Value;
use std::path::Path;

pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// `preprocessor_config.json` settings that change pixel values.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    pub min_pixels: f64,
    pub max_pixels: f64,
    pub do_resize: bool,
    pub rescale_factor: f64,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        PreprocessConfig {
            min_pixels: DEFAULT_MIN_PIXELS,
            max_pixels: DEFAULT_MAX_PIXELS,
            do_resize: true,
            rescale_factor: 1.0 / 255.0,
            image_mean: CLIP_MEAN,
            image_std: CLIP_STD,
        }
    }
}

impl PreprocessConfig {
    /// Read `preprocessor_config.json` (`min_pixels`/`max_pixels`, or transformers 5's
    /// `size.shortest_edge`/`size.longest_edge`); a missing file gives the defaults.
    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
        Self::from_json(&v).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_json(v: &Value) -> Result<Self, String> {
        let mut c = Self::default();
        let num = |x: &Value, k: &str| x.as_f64().ok_or_else(|| format!("`{k}` is not a number: {x}"));
        if let Some(x) = v.get("min_pixels").filter(|x| !x.is_null()) {
            c.min_pixels = num(x, "min_pixels")?;
        } else if let Some(x) = v.get("size").and_then(|s| s.get("shortest_edge")) {
            c.min_pixels = num(x, "size.shortest_edge")?;
        }
        if let Some(x) = v.get("max_pixels").filter(|x| !x.is_null()) {
            c.max_pixels = num(x, "max_pixels")?;
        } else if let Some(x) = v.get("size").and_then(|s| s.get("longest_edge")) {
            c.max_pixels = num(x, "size.longest_edge")?;
        }
        if let Some(x) = v.get("do_resize") {
            c.do_resize = x.as_bool().ok_or_else(|| format!("`do_resize` is not a boolean: {x}"))?;
        }
        if let Some(x) = v.get("rescale_factor") {
            c.rescale_factor = num(x, "rescale_factor")?;
        }
        for (k, dst) in [("image_mean", &mut c.image_mean), ("image_std", &mut c.image_std)] {
            if let Some(x) = v.get(k) {
                let a = x.as_array().filter(|a| a.len() == 3).ok_or_else(|| format!("`{k}` is not a list of three numbers: {x}"))?;
                for (i, e) in a.iter().enumerate() {
                    dst[i] = num(e, k)?;
                }
            }
        }
        if c.image_std.contains(&0.0) {
            return Err("`image_std` holds a zero".into());
        }
        Ok(c)
    }
}

/// Model-ready pixels of one image or video: `[patches][patch_dim]` row-major and the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionInput {
    pub pixel_values: Vec<f32>,
    pub grid: GridThw,
}

impl VisionInput {
    /// A stable fingerprint of the pixels and grid (prefix reuse compares it).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.grid.hash(&mut h);
        for v in &self.pixel_values {
            v.to_bits().hash(&mut h);
        }
        h.finish()
    }
}

/// Resize an image to the processor's size (smart_resize with factor 28 + Pillow bicubic).
pub fn resize_for_model(img: &RgbImage, vc: &VisionConfig, pc: &PreprocessConfig) -> Result<RgbImage, String> {
    let (w, h) = img.dimensions();
    if !pc.do_resize {
        let f = vc.factor() as u32;
        if w % f != 0 || h % f != 0 {
            return Err(format!("image {w}x{h} is not a multiple of {f} and the preprocessor config disables resizing"));
        }
        return Ok(img.clone());
    }
    let (nh, nw) = smart_resize(h, w, vc.factor() as u32, pc.min_pixels, pc.max_pixels).map_err(|e| e.to_string())?;
    if nh <= 0 || nw <= 0 || nh > 32768 || nw > 32768 {
        return Err(format!("image {w}x{h} resizes to a degenerate {nw}x{nh}"));
    }
    if (nw as u32, nh as u32) == (w, h) {
        return Ok(img.clone());
    }
    pillow::resize_bicubic(img, nw as u32, nh as u32)
}

/// Preprocess one still image (duplicated in time to fill the temporal patch).
pub fn preprocess_image(img: &RgbImage, vc: &VisionConfig, pc: &PreprocessConfig) -> Result<VisionInput, String> {
    let r = resize_for_model(img, vc, pc)?;
    patchify(&[r], vc, pc)
}

/// Preprocess video frames (all resized to the first frame's processor size).
pub fn preprocess_video(frames: &[RgbImage], vc: &VisionConfig, pc: &PreprocessConfig) -> Result<VisionInput, String> {
    let first = frames.first().ok_or("a video needs at least one frame")?;
    let r0 = resize_for_model(first, vc, pc)?;
    let (w, h) = r0.dimensions();
    let mut out = vec![r0];
    for f in &frames[1..] {
        out.push(if f.dimensions() == (w, h) { f.clone() } else { pillow::resize_bicubic(f, w, h)? });
    }
    patchify(&out, vc, pc)
}

/// Normalise frames of identical size and flatten them into patches in the processor's order:
/// rows (t, h/merge, w/merge, merge_h, merge_w), columns (channel, temporal, patch_y, patch_x).
pub fn patchify(frames: &[RgbImage], vc: &VisionConfig, pc: &PreprocessConfig) -> Result<VisionInput, String> {
    let first = frames.first().ok_or("no frames")?;
    let (w, h) = first.dimensions();
    if frames.iter().any(|f| f.dimensions() != (w, h)) {
        return Err("video frames differ in size".into());
    }
    let (p, m, tp, c) = (vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size, vc.in_channels);
    if c != 3 {
        return Err(format!("the vision tower expects {c} channels; only RGB is supported"));
    }
    let (w, h) = (w as usize, h as usize);
    if w % (p * m) != 0 || h % (p * m) != 0 {
        return Err(format!("image {w}x{h} is not a multiple of {}", p * m));
    }
    // Normalised planes per frame: [frame][c][y][x], f32 as numpy computes them.
    let mean: Vec<f32> = pc.image_mean.iter().map(|&x| x as f32).collect();
    let std: Vec<f32> = pc.image_std.iter().map(|&x| x as f32).collect();
    let mut nframes = frames.len();
    if nframes % tp != 0 {
        nframes += tp - nframes % tp;
    }
    let plane = w * h;
    let mut planes = vec![0f32; nframes * 3 * plane];
    for fi in 0..nframes {
        let f = &frames[fi.min(frames.len() - 1)];
        for (i, px) in f.pixels().enumerate() {
            for ch in 0..3 {
                let r = ((px.0[ch] as f64) * pc.rescale_factor) as f32;
                planes[(fi * 3 + ch) * plane + i] = (r - mean[ch]) / std[ch];
            }
        }
    }
    let (gt, gh, gw) = (nframes / tp, h / p, w / p);
    let dim = c * tp * p * p;
    let mut out = Vec::with_capacity(gt * gh * gw * dim);
    for t in 0..gt {
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (py, px) = ((bh * m + mh) * p, (bw * m + mw) * p);
                        for ch in 0..c {
                            for tt in 0..tp {
                                let base = ((t * tp + tt) * 3 + ch) * plane;
                                for y in 0..p {
                                    let row = base + (py + y) * w + px;
                                    out.extend_from_slice(&planes[row..row + p]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(VisionInput { pixel_values: out, grid: GridThw { t: gt, h: gh, w: gw } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Qwen25VlConfig;

    #[test]
    fn patch_order_matches_the_processor() {
        let vc = Qwen25VlConfig::qwen25vl_7b().vision;
        let pc = PreprocessConfig { image_mean: [0.0; 3], image_std: [1.0; 3], rescale_factor: 1.0, min_pixels: 1.0, ..Default::default() };
        // 56x28 image whose red channel encodes x, green y.
        let img = RgbImage::from_fn(56, 28, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let v = preprocess_image(&img, &vc, &pc).unwrap();
        assert_eq!(v.grid, GridThw { t: 1, h: 2, w: 4 });
        assert_eq!(v.pixel_values.len(), 8 * 1176);
        let row = |i: usize| &v.pixel_values[i * 1176..(i + 1) * 1176];
        // Row 1 is merge block (0,0), sub-patch (0,1): x starts at 14, y at 0.
        assert_eq!(row(1)[0], 14.0);
        assert_eq!(row(1)[1], 15.0);
        // Row 2 is sub-patch (1,0): y starts at 14 (green channel block).
        assert_eq!(row(2)[392], 14.0);
        // Row 4 is the second merge block: x starts at 28.
        assert_eq!(row(4)[0], 28.0);
        // Temporal duplicate: channel 0, t=1 equals t=0.
        assert_eq!(row(3)[196..392], row(3)[0..196]);
        assert_eq!(row(3)[2 * 392 + 5], 7.0);
    }

    #[test]
    fn clip_normalisation_and_config_parsing() {
        let pc = PreprocessConfig::from_json(&serde_json::json!({"size": {"shortest_edge": 100, "longest_edge": 200}})).unwrap();
        assert_eq!((pc.min_pixels, pc.max_pixels), (100.0, 200.0));
        assert!(PreprocessConfig::from_json(&serde_json::json!({"image_std": [0, 1, 1]})).is_err());
        let vc = Qwen25VlConfig::qwen25vl_7b().vision;
        let img = RgbImage::from_pixel(28, 28, image::Rgb([255, 0, 128]));
        let v = preprocess_image(&img, &vc, &PreprocessConfig::default()).unwrap();
        let expect = (1.0f32 - 0.48145466f32) / 0.26862954f32;
        assert_eq!(v.pixel_values[0], expect);
        assert!(preprocess_video(&[], &vc, &PreprocessConfig::default()).is_err());
    }
}
