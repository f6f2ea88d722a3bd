//! ViLaVT zoom-in geometry (protocol §7.3 step 2): validate a `<tool>` call, map each region to
//! the original file, crop, scale (at most 2× the current resolution, never beyond the file), resize
//! with Lanczos, then `fetch_image` with the record's pixel budget.
//!
//! Planning is pure arithmetic ([`plan_zoomin`]); [`render_zoomin`] does the pixels. Feedback
//! strings are the reference's (`Zoom-in failed: …`), Python number formatting included.

use super::pillow;
use super::pyliteral::PyValue;
use super::resize::{fetch_image, ResizeError, DEFAULT_MIN_PIXELS};
use image::RgbImage;
use serde::Serialize;

/// What is known about one image of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct ShownImage {
    /// Size as shown to the model.
    pub width: u32,
    pub height: u32,
    /// Normalised `[x1, y1, x2, y2]` of this image within its source file (inputs `[0,0,1,1]`).
    pub region: [f64; 4],
    /// Size of the source file.
    pub file_width: u32,
    pub file_height: u32,
}

/// One planned zoom-in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZoomPlan {
    /// 0-based image the region was asked on.
    pub source_index: usize,
    pub norm_box: [f64; 4],
    /// Crop box in the source file (Pillow `crop` coordinates).
    pub crop_box: [i64; 4],
    pub current_scale: f64,
    pub scale: f64,
    /// Size after the Lanczos resize, before `fetch_image`.
    pub resized_wh: (i64, i64),
}

/// A planned call: the regions and the query string.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZoomCall {
    pub plans: Vec<ZoomPlan>,
    pub query: String,
}

fn py_num_str(v: f64) -> String {
    PyValue::Float(v).py_repr()
}

fn float_of(v: &PyValue) -> Result<f64, String> {
    match v {
        PyValue::Int(i) => Ok(*i as f64),
        PyValue::Bool(b) => Ok(*b as u8 as f64),
        PyValue::BigInt(s) => s.parse::<f64>().map_err(|e| e.to_string()),
        PyValue::Float(f) => Ok(*f),
        PyValue::Str(s) => super::rewards::pyfmt::py_float(s).ok_or_else(|| format!("could not convert string to float: {}", v.py_repr())),
        other => Err(format!("float() argument must be a string or a real number, not '{}'", type_label(other))),
    }
}

fn type_label(v: &PyValue) -> &'static str {
    v.type_name()
}

/// Validate and plan a zoom-in call exactly as `zoomin` does; `Err` carries the feedback text.
pub fn plan_zoomin(images: &[ShownImage], tool: Option<&PyValue>) -> Result<ZoomCall, String> {
    let fail = |m: String| Err(format!("Zoom-in failed: {m}"));
    let Some(tool @ PyValue::Dict(_)) = tool else { return fail("tool_args must be a dictionary".into()) };
    let Some(regions) = tool.get("region") else { return fail("Missing 'region' in tool_args".into()) };
    let Some(query) = tool.get("query") else { return fail("Missing 'query' in tool_args".into()) };
    let query = query.py_str();
    let items: Vec<PyValue> = match regions.py_iter() {
        Ok(v) => v,
        Err(e) => return fail(e.to_string()),
    };
    let mut plans = Vec::new();
    for region in &items {
        if !matches!(region, PyValue::Dict(_)) {
            return fail(format!("Invalid region format: {}", region.py_repr()));
        }
        let (Some(idx), Some(bbox)) = (region.get("index"), region.get("bbox_2d")) else {
            return fail(format!("Region missing 'index' or 'bbox_2d': {}", region.py_repr()));
        };
        let coords = match bbox {
            PyValue::List(v) | PyValue::Tuple(v) if v.len() == 4 => v,
            _ => return fail(format!("Invalid bbox format: {}", bbox.py_repr())),
        };
        let mut c = [0f64; 4];
        for (k, v) in coords.iter().enumerate() {
            c[k] = match float_of(v) {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
        }
        let [x1, y1, x2, y2] = c;
        let n = images.len();
        let idx_num = match idx {
            PyValue::Int(i) => *i as f64,
            PyValue::Bool(b) => *b as u8 as f64,
            PyValue::Float(f) => *f,
            other => return fail(format!("'<=' not supported between instances of 'int' and '{}'", type_label(other))),
        };
        if !(0.0 <= idx_num && idx_num < n as f64) {
            return fail(format!("Image index {} out of range [0, {}]", idx.py_str(), n as i64 - 1));
        }
        if matches!(idx, PyValue::Float(_)) {
            return fail("list indices must be integers or slices, not float".into());
        }
        let i = idx_num as usize;
        let img = &images[i];
        let (w, h) = (img.width as f64, img.height as f64);
        let [ox1, oy1, ox2, oy2] = img.region;
        if !(0.0 <= x1 && x1 < x2 && x2 <= w) {
            return fail(format!("x-coordinates invalid: {}, {} for width {}", py_num_str(x1), py_num_str(x2), img.width));
        }
        if !(0.0 <= y1 && y1 < y2 && y2 <= h) {
            return fail(format!("y-coordinates invalid: {}, {} for height {}", py_num_str(y1), py_num_str(y2), img.height));
        }
        let nx1 = ox1 + (x1 / w) * (ox2 - ox1);
        let ny1 = oy1 + (y1 / h) * (oy2 - oy1);
        let nx2 = ox1 + (x2 / w) * (ox2 - ox1);
        let ny2 = oy1 + (y2 / h) * (oy2 - oy1);
        let (fw, fh) = (img.file_width as f64, img.file_height as f64);
        let crop = [(nx1 * fw) as i64, (ny1 * fh) as i64, (nx2 * fw) as i64, (ny2 * fh) as i64];
        let current_scale = w / ((ox2 - ox1) * fw);
        let scale = (2.0 * current_scale).min(1.0 / (nx2 - nx1).max(1e-6)).min(1.0 / (ny2 - ny1).max(1e-6));
        let resized = (((crop[2] - crop[0]) as f64 * scale) as i64, ((crop[3] - crop[1]) as f64 * scale) as i64);
        plans.push(ZoomPlan { source_index: i, norm_box: [nx1, ny1, nx2, ny2], crop_box: crop, current_scale, scale, resized_wh: resized });
    }
    Ok(ZoomCall { plans, query })
}

/// Crop the source file, Lanczos-resize and `fetch_image` one planned zoom-in.
pub fn render_zoomin(file: &RgbImage, plan: &ZoomPlan, max_pixels: f64) -> Result<RgbImage, ResizeError> {
    let [x1, y1, x2, y2] = plan.crop_box;
    let (cw, ch) = ((x2 - x1).max(0) as u32, (y2 - y1).max(0) as u32);
    // Pillow crop pads outside the image with black; the checks above keep the box inside.
    let mut crop = RgbImage::new(cw, ch);
    for y in 0..ch {
        for x in 0..cw {
            let (sx, sy) = (x1 + x as i64, y1 + y as i64);
            if sx >= 0 && sy >= 0 && (sx as u32) < file.width() && (sy as u32) < file.height() {
                crop.put_pixel(x, y, *file.get_pixel(sx as u32, sy as u32));
            }
        }
    }
    let (rw, rh) = plan.resized_wh;
    if rw <= 0 || rh <= 0 {
        return Err(ResizeError::Degenerate { width: rw, height: rh });
    }
    let zoomed = pillow::resize_lanczos(&crop, rw as u32, rh as u32).map_err(ResizeError::Resample)?;
    fetch_image(image::DynamicImage::ImageRgb8(zoomed), DEFAULT_MIN_PIXELS, max_pixels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resize::{smart_resize, FACTOR};

    fn to_py(v: &serde_json::Value) -> PyValue {
        match v {
            serde_json::Value::Null => PyValue::None,
            serde_json::Value::Bool(b) => PyValue::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) if !n.to_string().contains('.') => PyValue::Int(i),
                _ => PyValue::Float(n.as_f64().unwrap()),
            },
            serde_json::Value::String(s) => PyValue::Str(s.clone()),
            serde_json::Value::Array(a) => PyValue::List(a.iter().map(to_py).collect()),
            serde_json::Value::Object(o) => PyValue::Dict(o.iter().map(|(k, v)| (PyValue::Str(k.clone()), to_py(v))).collect()),
        }
    }

    #[test]
    fn published_vectors() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/reward_and_geometry_test_vectors.json")).unwrap();
        let cases = v["vilavt_zoomin"].as_array().unwrap();
        let first = &cases[0];
        let file = (1600u32, 1200u32);
        let mut images = vec![ShownImage { width: 504, height: 364, region: [0.0, 0.0, 1.0, 1.0], file_width: file.0, file_height: file.1 }];
        let mut ok_cases = 0;
        for (n, c) in cases.iter().enumerate() {
            if n >= 2 {
                images.truncate(1);
            }
            let tool = to_py(&c["tool"]);
            let got = plan_zoomin(&images, Some(&tool));
            if c["valid"].as_bool().unwrap() {
                let call = got.unwrap_or_else(|e| panic!("case {n}: {e}"));
                let sizes = c["result_sizes_wh"].as_array().map(|a| a.len()).unwrap_or(0);
                assert_eq!(call.plans.len(), c.get("n_images").and_then(|x| x.as_u64()).map(|x| x as usize).unwrap_or(sizes));
                if let Some(pos) = c["result_region_positions"].as_array() {
                    for (p, want) in call.plans.iter().zip(pos) {
                        let want: Vec<f64> = want.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                        assert_eq!(p.norm_box.to_vec(), want, "case {n}");
                    }
                    for (p, want) in call.plans.iter().zip(c["result_sizes_wh"].as_array().unwrap()) {
                        let (rw, rh) = p.resized_wh;
                        let (h, w) = smart_resize(rh as u32, rw as u32, FACTOR, DEFAULT_MIN_PIXELS, first["max_pixels"].as_f64().unwrap()).unwrap();
                        assert_eq!([w, h], [want[0].as_i64().unwrap(), want[1].as_i64().unwrap()], "case {n}");
                    }
                }
                if n == 0 {
                    let i = &c["intermediate_region0"];
                    let p = &call.plans[0];
                    let crop: Vec<i64> = i["crop_box_in_original"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
                    assert_eq!(p.crop_box.to_vec(), crop);
                    assert_eq!(p.current_scale, i["current_scale"].as_f64().unwrap());
                    assert_eq!(p.scale, i["scale"].as_f64().unwrap());
                    assert_eq!([p.resized_wh.0, p.resized_wh.1], [400, 311]);
                    // The zoom-ins become images 1 and 2 for the second-level case.
                    for (pl, size) in call.plans.iter().zip(c["result_sizes_wh"].as_array().unwrap()) {
                        images.push(ShownImage {
                            width: size[0].as_u64().unwrap() as u32,
                            height: size[1].as_u64().unwrap() as u32,
                            region: pl.norm_box,
                            file_width: file.0,
                            file_height: file.1,
                        });
                    }
                }
                ok_cases += 1;
            } else {
                assert_eq!(got.unwrap_err(), c["feedback_or_query"].as_str().unwrap(), "case {n}");
            }
        }
        assert!(ok_cases >= 3);
    }

    #[test]
    fn render_produces_fetch_image_size() {
        let file = RgbImage::from_fn(160, 120, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let images = vec![ShownImage { width: 56, height: 56, region: [0.0, 0.0, 1.0, 1.0], file_width: 160, file_height: 120 }];
        let tool = PyValue::Dict(vec![
            (PyValue::Str("region".into()), PyValue::List(vec![PyValue::Dict(vec![
                (PyValue::Str("index".into()), PyValue::Int(0)),
                (PyValue::Str("bbox_2d".into()), PyValue::List(vec![PyValue::Int(0), PyValue::Int(0), PyValue::Int(28), PyValue::Int(28)])),
            ])])),
            (PyValue::Str("query".into()), PyValue::Str("q".into())),
        ]);
        let call = plan_zoomin(&images, Some(&tool)).unwrap();
        let out = render_zoomin(&file, &call.plans[0], 200_704.0).unwrap();
        assert_eq!(out.width() % 28, 0);
        assert_eq!(out.height() % 28, 0);
    }
}
