//! Image sizing as the model sees it: qwen-vl-utils `smart_resize` and `fetch_image`
//! (protocol §1.2).
//!
//! `smart_resize` reproduces the reference's operation order in IEEE double with Python's
//! round-half-to-even; `fetch_image` converts to RGB (RGBA composited over white) and resizes with
//! the Pillow 12.3-exact bicubic resampler in [`crate::core::pillow`].

use super::pillow;
use image::{DynamicImage, RgbImage};

/// Patch 14 × spatial merge 2.
pub const FACTOR: u32 = 28;
/// qwen-vl-utils default `min_pixels` (4·28·28).
pub const DEFAULT_MIN_PIXELS: f64 = 3136.0;
/// qwen-vl-utils default `max_pixels` (16384·28·28).
pub const DEFAULT_MAX_PIXELS: f64 = 12_845_056.0;
/// ViLaSR eval script budget (448·28·28).
pub const VILASR_EVAL_MAX_PIXELS: f64 = 351_232.0;
/// ViLaSR RL budget and the eval Python default (256·28·28).
pub const VILASR_RL_MAX_PIXELS: f64 = 200_704.0;
/// The aspect-ratio limit of `smart_resize`.
pub const MAX_RATIO: f64 = 200.0;
/// Largest side Sightline accepts for any image it decodes (guards absurd sizes).
pub const MAX_SIDE: u32 = 32_768;

/// Why an image could not be sized or resized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResizeError {
    #[error("image has a zero dimension ({width}×{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("absolute aspect ratio must be smaller than 200, got {ratio} ({width}×{height})")]
    AspectRatio { width: u32, height: u32, ratio: f64 },
    #[error("factor must be positive")]
    BadFactor,
    #[error("pixel budget must be positive and finite (min {min}, max {max})")]
    BadBudget { min: f64, max: f64 },
    #[error("smart_resize produced {width}×{height}: the reference has no guard here and the image cannot be resized to a zero side")]
    Degenerate { width: i64, height: i64 },
    #[error("image of {width}×{height} exceeds the {MAX_SIDE}-pixel side limit")]
    TooLarge { width: u32, height: u32 },
    #[error("resize failed: {0}")]
    Resample(String),
}

/// qwen-vl-utils `smart_resize(height, width, factor, min_pixels, max_pixels)` → `(h, w)`.
///
/// Returns `i64` because the reference's floor branch can in principle go to 0 (no guard); callers
/// that resize must reject that (see [`ResizeError::Degenerate`]).
pub fn smart_resize(height: u32, width: u32, factor: u32, min_pixels: f64, max_pixels: f64) -> Result<(i64, i64), ResizeError> {
    if height == 0 || width == 0 {
        return Err(ResizeError::ZeroSize { width, height });
    }
    if factor == 0 {
        return Err(ResizeError::BadFactor);
    }
    if !(min_pixels.is_finite() && max_pixels.is_finite()) || max_pixels <= 0.0 {
        return Err(ResizeError::BadBudget { min: min_pixels, max: max_pixels });
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > MAX_RATIO {
        return Err(ResizeError::AspectRatio { width, height, ratio });
    }
    let round_by = |x: f64| (x / f).round_ties_even() * f;
    let mut h_bar = f.max(round_by(h));
    let mut w_bar = f.max(round_by(w));
    if h_bar * w_bar > max_pixels {
        let beta = ((h * w) / max_pixels).sqrt();
        h_bar = (h / beta / f).floor() * f;
        w_bar = (w / beta / f).floor() * f;
    } else if h_bar * w_bar < min_pixels {
        let beta = (min_pixels / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as i64, w_bar as i64))
}

/// Convert any decoded image to RGB the way qwen-vl-utils does: RGBA is composited over white
/// using its alpha; every other mode is converted directly (alpha dropped).
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgba8(rgba) => pillow::rgba_over_white(&rgba),
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// qwen-vl-utils `fetch_image`: RGB conversion, `smart_resize` with the given budget, then
/// Pillow-exact bicubic resize (a same-size resize returns the image unchanged).
pub fn fetch_image(img: DynamicImage, min_pixels: f64, max_pixels: f64) -> Result<RgbImage, ResizeError> {
    let rgb = to_rgb(img);
    let (w, h) = rgb.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(ResizeError::TooLarge { width: w, height: h });
    }
    let (nh, nw) = smart_resize(h, w, FACTOR, min_pixels, max_pixels)?;
    if nh <= 0 || nw <= 0 || nh > MAX_SIDE as i64 || nw > MAX_SIDE as i64 {
        return Err(ResizeError::Degenerate { width: nw, height: nh });
    }
    if (nw as u32, nh as u32) == (w, h) {
        return Ok(rgb);
    }
    pillow::resize_bicubic(&rgb, nw as u32, nh as u32).map_err(ResizeError::Resample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_to_even_and_branches() {
        // 70/28 = 2.5 → 2 → 56 (not 84).
        assert_eq!(smart_resize(70, 70, 28, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).unwrap(), (56, 56));
        // min branch: tiny image grows.
        assert_eq!(smart_resize(10, 10, 28, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).unwrap(), (56, 56));
        // max branch.
        assert_eq!(smart_resize(480, 640, 28, 3136.0, 200_704.0).unwrap(), (364, 504));
        assert!(matches!(smart_resize(1, 201, 28, 3136.0, 1e9), Err(ResizeError::AspectRatio { .. })));
        assert!(smart_resize(1, 200, 28, 3136.0, 1e9).is_ok());
        assert!(matches!(smart_resize(0, 5, 28, 3136.0, 1e9), Err(ResizeError::ZeroSize { .. })));
    }

    #[test]
    fn published_vectors() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/reward_and_geometry_test_vectors.json")).unwrap();
        let cases = v["smart_resize"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for c in cases {
            let hw = c["orig_hw"].as_array().unwrap();
            let (h, w) = (hw[0].as_u64().unwrap() as u32, hw[1].as_u64().unwrap() as u32);
            let got = smart_resize(h, w, c["factor"].as_u64().unwrap() as u32, c["min_pixels"].as_f64().unwrap(), c["max_pixels"].as_f64().unwrap());
            match c.get("resized_hw") {
                Some(r) if !r.is_null() => {
                    let r = r.as_array().unwrap();
                    assert_eq!(got.unwrap(), (r[0].as_i64().unwrap(), r[1].as_i64().unwrap()), "case {c}");
                }
                _ => assert!(got.is_err(), "case {c} should fail"),
            }
        }
    }
}
