//! The ViLaVT executor state of one trajectory (protocol §7.3), model-free: feed it each assistant
//! response and it parses the first `<tool>` call, plans the zoom-ins with [`crate::core::zoomin`]
//! (crops from the original file, at most 2× the current resolution, Lanczos then `fetch_image`),
//! renders them and builds the `<tool_response>` observation turn, or ends the trajectory: an
//! answer, `length`, `Zoomin failed`, `TooManyImages` (52 images) or the step counter
//! (`max_num_steps`, default 5). The live rollout, forks and replay all drive this one executor.

use crate::core::actions::{parse_vilavt_tool, VilavtParse};
use crate::core::prompts::{self, ContentItem};
use crate::core::pyliteral::PyValue;
use crate::core::trajectory::{ActionKind, ActionRecord, FinishReason};
use crate::core::zoomin::{plan_zoomin, render_zoomin, ShownImage};
use image::RgbImage;

/// The ViLaVT RL rollout's image limit.
pub const VILAVT_MAX_IMAGES: usize = 52;
/// The RL run's default image budget (records may carry their own `max_pixels`).
pub const VILAVT_DEFAULT_MAX_PIXELS: f64 = 200_704.0;
/// The reference's default `max_num_steps`.
pub const VILAVT_DEFAULT_MAX_STEPS: usize = 5;

/// What one response did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VilavtApplied {
    /// The call's regions (the query on each).
    pub actions: Vec<ActionRecord>,
    pub notes: Vec<String>,
    /// Set when this response ended the trajectory.
    pub finish_reason: Option<FinishReason>,
    /// `(number, source)` of each new zoom-in image, both 1-based; the image is `images[number - 1]`.
    pub new_images: Vec<(usize, usize)>,
    /// The `<|im_end|>\n<|im_start|>user\n<tool_response>…` turn to append, when zoom-ins were made.
    pub observation_text: Option<String>,
    /// Parsing raised: the reference generates this turn again (the response is not kept).
    pub regenerate: bool,
}

/// One trajectory's executor state.
pub struct VilavtSession {
    /// The original files of the inputs (zoom-ins crop these).
    pub files: Vec<RgbImage>,
    /// Every image the model has been shown: the resized inputs, then each zoom-in.
    pub images: Vec<RgbImage>,
    info: Vec<ShownImage>,
    /// The input file behind each shown image.
    file_of: Vec<usize>,
    /// Generations left.
    pub counter: i64,
    pub max_pixels: f64,
    pub finished: Option<FinishReason>,
}

/// The `<tool_response>` user turn as the model sees it, between `<|im_end|>` and the next assistant header.
pub fn tool_response_text(zoomins: &[(usize, u32, u32)], final_prompt: bool) -> String {
    let mut s = String::from("<|im_end|>\n<|im_start|>user\n");
    for c in prompts::vilavt_tool_response(zoomins, final_prompt) {
        match c {
            ContentItem::Image => s.push_str(prompts::IMAGE_TRIPLE),
            ContentItem::Video => s.push_str(prompts::VIDEO_TRIPLE),
            ContentItem::Text { text } => s.push_str(&text),
        }
    }
    s.push_str("<|im_end|>\n<|im_start|>assistant\n");
    s
}

/// The regions of a parsed `<tool>` value as action records.
pub fn region_records(value: &PyValue, query: &str) -> Vec<ActionRecord> {
    let Some(PyValue::List(items)) = value.get("region") else { return Vec::new() };
    items
        .iter()
        .map(|r| ActionRecord {
            kind: ActionKind::Region,
            index: match r.get("index") {
                Some(PyValue::Int(i)) => Some(*i),
                _ => None,
            },
            bbox_2d: match r.get("bbox_2d") {
                Some(PyValue::List(v)) | Some(PyValue::Tuple(v)) if v.len() == 4 => (|| Some([v[0].as_f64()?, v[1].as_f64()?, v[2].as_f64()?, v[3].as_f64()?]))(),
                _ => None,
            },
            start_point_2d: None,
            end_point_2d: None,
            label: None,
            query: Some(query.to_string()),
            block: 0,
            raw: r.to_json(),
        })
        .collect()
}

/// The parsed `<tool>` call of a streamed text, once its `</tool>` has arrived.
pub fn streamed_regions(text: &str) -> Option<Vec<ActionRecord>> {
    if !text.contains("</tool>") {
        return None;
    }
    match parse_vilavt_tool(text) {
        VilavtParse::Parsed { value, .. } => {
            let q = value.get("query").map(|q| q.py_str()).unwrap_or_default();
            Some(region_records(&value, &q))
        }
        _ => Some(Vec::new()),
    }
}

impl VilavtSession {
    /// `files`: the original input images; `shown`: the same resized as the model sees them.
    pub fn new(files: Vec<RgbImage>, shown: Vec<RgbImage>, max_pixels: f64, max_steps: usize) -> Self {
        let info = shown
            .iter()
            .zip(&files)
            .map(|(s, f)| ShownImage { width: s.width(), height: s.height(), region: [0.0, 0.0, 1.0, 1.0], file_width: f.width(), file_height: f.height() })
            .collect();
        let file_of = (0..shown.len()).collect();
        VilavtSession { files, images: shown, info, file_of, counter: max_steps.max(1) as i64, max_pixels, finished: None }
    }

    /// Whether the reference would generate again.
    pub fn can_generate(&self) -> bool {
        self.finished.is_none() && self.counter > 0 && self.images.len() <= VILAVT_MAX_IMAGES
    }

    /// Execute one response that ended with `gen` (`Stop` for EOS).
    pub fn apply(&mut self, text: &str, gen: FinishReason) -> VilavtApplied {
        self.counter -= 1;
        let mut out = VilavtApplied::default();
        let done = match &gen {
            FinishReason::Cancelled => {
                out.notes.push("stopped by the user".into());
                Some(FinishReason::Cancelled)
            }
            FinishReason::Length | FinishReason::Rule => Some(gen.clone()),
            FinishReason::Stop if text.contains("<answer>") && text.contains("</answer>") => Some(FinishReason::Stop),
            _ => None,
        };
        if let Some(r) = done {
            out.finish_reason = Some(r.clone());
            self.finished = Some(r);
            return out;
        }
        let parsed = parse_vilavt_tool(text);
        let value = match &parsed {
            VilavtParse::Parsed { value, .. } => Some(value),
            VilavtParse::NoneResult { reason } => {
                out.notes.push(reason.clone());
                None
            }
            VilavtParse::Raised { exception, message } => {
                out.notes.push(format!("parsing raised {exception}: {message}; the reference generates this turn again"));
                out.regenerate = true;
                return out;
            }
        };
        let call = match plan_zoomin(&self.info, value) {
            Err(feedback) => {
                out.notes.push(feedback);
                return self.fail(out, FinishReason::ZoominFailed);
            }
            Ok(call) => call,
        };
        out.actions = value.map(|v| region_records(v, &call.query)).unwrap_or_default();
        if self.images.len() + call.plans.len() > VILAVT_MAX_IMAGES {
            out.notes.push(format!("{} images plus {} zoom-ins exceed {VILAVT_MAX_IMAGES}", self.images.len(), call.plans.len()));
            return self.fail(out, FinishReason::TooManyImages);
        }
        let mut rendered = Vec::new();
        for plan in &call.plans {
            let src = self.file_of[plan.source_index];
            match render_zoomin(&self.files[src], plan, self.max_pixels) {
                Ok(img) => rendered.push((img, plan.source_index, plan.norm_box, src)),
                Err(e) => {
                    out.notes.push(format!("Zoom-in failed: {e}"));
                    return self.fail(out, FinishReason::ZoominFailed);
                }
            }
        }
        let mut zoomins = Vec::new();
        for (img, source_index, norm_box, src) in rendered {
            let n = self.images.len();
            zoomins.push((n, img.width(), img.height()));
            let (fw, fh) = self.files[src].dimensions();
            self.info.push(ShownImage { width: img.width(), height: img.height(), region: norm_box, file_width: fw, file_height: fh });
            self.file_of.push(src);
            self.images.push(img);
            out.new_images.push((n + 1, source_index + 1));
        }
        let final_prompt = self.counter <= 1 || self.images.len() >= VILAVT_MAX_IMAGES;
        out.observation_text = Some(tool_response_text(&zoomins, final_prompt));
        out
    }

    fn fail(&mut self, mut out: VilavtApplied, reason: FinishReason) -> VilavtApplied {
        out.finish_reason = Some(reason.clone());
        self.finished = Some(reason);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(steps: usize) -> VilavtSession {
        let file = RgbImage::from_fn(336, 224, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
        let shown = RgbImage::from_fn(168, 112, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
        VilavtSession::new(vec![file], vec![shown], VILAVT_DEFAULT_MAX_PIXELS, steps)
    }

    const CALL: &str = "<tool>{\"region\": [{\"index\": 0, \"bbox_2d\": [10, 10, 90, 70]}], \"query\": \"what is here?\"}</tool>";

    #[test]
    fn calls_zoom_in_count_steps_and_end_as_the_reference() {
        let mut s = session(2);
        let a = s.apply(CALL, FinishReason::Stop);
        assert_eq!(a.finish_reason, None);
        assert_eq!(a.new_images, vec![(2, 1)]);
        assert_eq!(a.actions.len(), 1);
        assert_eq!(a.actions[0].query.as_deref(), Some("what is here?"));
        assert_eq!(s.images.len(), 2);
        let first = a.observation_text.unwrap();
        assert!(first.starts_with("<|im_end|>\n<|im_start|>user\n<tool_response>"));
        // The last allowed step gets the final prompt, then the counter stops generation.
        let b = s.apply(CALL, FinishReason::Stop);
        assert_ne!(b.observation_text.unwrap(), first, "the final prompt differs");
        assert!(!s.can_generate() && s.finished.is_none());
        // Answers, length and rule finishes end it; cancelled too.
        for (text, gen, want) in [
            ("<answer>A</answer>", FinishReason::Stop, FinishReason::Stop),
            ("half", FinishReason::Length, FinishReason::Length),
            ("x", FinishReason::Cancelled, FinishReason::Cancelled),
        ] {
            let mut s = session(5);
            assert_eq!(s.apply(text, gen).finish_reason, Some(want.clone()));
            assert_eq!(s.finished, Some(want));
        }
        // No call, or a bad index: Zoomin failed, with the reference's feedback as a note.
        let mut s = session(5);
        let a = s.apply("<think>nothing</think>", FinishReason::Stop);
        assert_eq!(a.finish_reason, Some(FinishReason::ZoominFailed));
        let mut s = session(5);
        let a = s.apply(&CALL.replace("\"index\": 0", "\"index\": 4"), FinishReason::Stop);
        assert_eq!(a.finish_reason, Some(FinishReason::ZoominFailed));
        assert!(a.notes.iter().any(|n| n.contains("out of range")), "{:?}", a.notes);
        assert!(a.new_images.is_empty() && s.images.len() == 1);
    }

    #[test]
    fn streamed_regions_wait_for_the_closing_tag() {
        assert_eq!(streamed_regions("<tool>{\"region\": ["), None);
        let r = streamed_regions(CALL).unwrap();
        assert_eq!(r[0].bbox_2d, Some([10.0, 10.0, 90.0, 70.0]));
    }
}
