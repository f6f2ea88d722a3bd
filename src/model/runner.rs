//! One generation run from a checkpoint folder and a chat: parse HF/Qwen-style message lists
//! (images and video frames by path), pick the device at run time (CUDA in bf16 when present and
//! compiled in, else `flex` on the CPU in f32), load, preprocess, build the prompt and generate.
//! The CLI's `generate` and the studio call this; it never panics on user data.

use super::device::{self, DeviceRequest, SelectedDevice};
use super::generate::{Completion, SamplingParams, Session, TokenEvent};
use super::loader::load_model;
use super::preprocess::{preprocess_image, preprocess_video, PreprocessConfig};
use super::tokenizer::QwenTokenizer;
use crate::core::prompts::{ContentItem, Message};
use crate::core::resize::to_rgb;
use burn::tensor::backend::Backend;
use burn::tensor::DType;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// One content item of a chat message.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatItem {
    Text(String),
    Image(PathBuf),
    /// Frames in order, and their sampling rate (frames per second).
    Video { frames: Vec<PathBuf>, fps: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: Vec<ChatItem>,
}

/// Parse a HF/Qwen message list: `[{"role": "user", "content": [{"type": "image", "image":
/// "a.png"}, {"type": "text", "text": "…"}]}]`; content may also be a plain string; a video is
/// `{"type": "video", "video": ["f0.png", …], "fps": 2.0}`. Relative paths resolve against `base`.
pub fn parse_messages(v: &Value, base: &Path) -> Result<Vec<ChatMessage>, String> {
    let list = v.as_array().ok_or("the messages are not a JSON list")?;
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(|r| r.as_str()).ok_or_else(|| format!("message {i}: missing string `role`"))?;
        let content = match m.get("content") {
            Some(Value::String(s)) => vec![ChatItem::Text(s.clone())],
            Some(Value::Array(items)) => {
                let mut c = Vec::new();
                for (j, it) in items.iter().enumerate() {
                    let at = || format!("message {i}, item {j}");
                    let ty = it.get("type").and_then(|t| t.as_str()).unwrap_or(if it.get("image").is_some() {
                        "image"
                    } else if it.get("video").is_some() {
                        "video"
                    } else {
                        "text"
                    });
                    let path = |s: &str| {
                        let s = s.strip_prefix("file://").unwrap_or(s);
                        let p = Path::new(s);
                        if p.is_absolute() {
                            p.to_path_buf()
                        } else {
                            base.join(p)
                        }
                    };
                    match ty {
                        "text" => c.push(ChatItem::Text(
                            it.get("text").and_then(|t| t.as_str()).ok_or_else(|| format!("{}: text item without a string `text`", at()))?.to_string(),
                        )),
                        "image" => c.push(ChatItem::Image(path(
                            it.get("image").and_then(|t| t.as_str()).ok_or_else(|| format!("{}: image item without a string `image` path", at()))?,
                        ))),
                        "video" => {
                            let frames = it
                                .get("video")
                                .and_then(|t| t.as_array())
                                .ok_or_else(|| format!("{}: video item without a `video` list of frame paths", at()))?
                                .iter()
                                .map(|f| f.as_str().map(path).ok_or_else(|| format!("{}: a video frame is not a path", at())))
                                .collect::<Result<Vec<_>, _>>()?;
                            if frames.is_empty() {
                                return Err(format!("{}: a video needs at least one frame", at()));
                            }
                            let fps = match it.get("fps") {
                                Some(x) => x.as_f64().filter(|f| *f > 0.0).ok_or_else(|| format!("{}: `fps` must be a positive number", at()))?,
                                None => 2.0,
                            };
                            c.push(ChatItem::Video { frames, fps });
                        }
                        other => return Err(format!("{}: unknown content type {other:?}", at())),
                    }
                }
                c
            }
            _ => return Err(format!("message {i}: `content` must be a string or a list")),
        };
        out.push(ChatMessage { role: role.to_string(), content });
    }
    if out.is_empty() {
        return Err("the message list is empty".into());
    }
    Ok(out)
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub model_dir: PathBuf,
    pub messages: Vec<ChatMessage>,
    pub params: SamplingParams,
    pub device: DeviceRequest,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct GenerateResult {
    pub device: SelectedDevice,
    pub device_notice: String,
    pub prompt_tokens: usize,
    pub completions: Vec<Completion>,
}

/// Progress reported while running.
pub enum Progress<'a> {
    Status(&'a str),
    Token(TokenEvent<'a>),
}

fn open_rgb(p: &Path) -> Result<image::RgbImage, String> {
    let img = image::open(p).map_err(|e| format!("{}: cannot open image: {e}", p.display()))?;
    Ok(to_rgb(img))
}

/// Load, preprocess and generate on the device the request asks for.
pub fn run_generate(req: &GenerateRequest, progress: &mut dyn FnMut(Progress), cancel: Option<&AtomicBool>) -> Result<GenerateResult, String> {
    req.params.validate()?;
    let sel = device::select(req.device)?;
    progress(Progress::Status(&sel.notice));
    match sel.device {
        SelectedDevice::Cpu => run_on::<burn::backend::Flex>(req, Default::default(), DType::F32, sel, progress, cancel),
        #[cfg(feature = "cuda")]
        SelectedDevice::Cuda(n) => run_on::<burn::backend::Cuda>(req, burn::backend::cuda::CudaDevice::new(n), DType::BF16, sel, progress, cancel),
        #[cfg(not(feature = "cuda"))]
        SelectedDevice::Cuda(_) => Err("this build has no CUDA support (rebuild with `--features cuda`)".into()),
    }
}

fn run_on<B: Backend>(
    req: &GenerateRequest,
    dev: B::Device,
    dtype: DType,
    sel: device::Selection,
    progress: &mut dyn FnMut(Progress),
    cancel: Option<&AtomicBool>,
) -> Result<GenerateResult, String> {
    let dir = &req.model_dir;
    progress(Progress::Status("loading the tokenizer"));
    let tok = QwenTokenizer::from_dir(dir)?;
    progress(Progress::Status("loading the weights"));
    let model = load_model::<B>(dir, &dev, dtype).map_err(|e| e.to_string())?;
    let pc = PreprocessConfig::from_dir(dir)?;
    progress(Progress::Status("preprocessing images"));
    let mut images = Vec::new();
    let mut videos = Vec::new();
    let mut spg = Vec::new();
    let mut messages = Vec::new();
    for m in &req.messages {
        let mut content = Vec::new();
        for it in &m.content {
            match it {
                ChatItem::Text(t) => content.push(ContentItem::text(t.clone())),
                ChatItem::Image(p) => {
                    let v = preprocess_image(&open_rgb(p)?, &model.cfg.vision, &pc).map_err(|e| format!("{}: {e}", p.display()))?;
                    images.push(v);
                    content.push(ContentItem::Image);
                }
                ChatItem::Video { frames, fps } => {
                    let f = frames.iter().map(|p| open_rgb(p)).collect::<Result<Vec<_>, _>>()?;
                    let v = preprocess_video(&f, &model.cfg.vision, &pc).map_err(|e| format!("{}: {e}", frames[0].display()))?;
                    videos.push(v);
                    spg.push(model.cfg.vision.temporal_patch_size as f64 / fps);
                    content.push(ContentItem::Video);
                }
            }
        }
        messages.push(Message { role: m.role.clone(), content });
    }
    let input = tok.chat_input(&messages, images, videos, spg, model.cfg.vision.spatial_merge_size)?;
    let mut params = req.params.clone();
    if params.eos_token_ids.is_empty() {
        params.eos_token_ids = eos_ids(dir, &model.cfg.eos_token_ids)?;
    }
    progress(Progress::Status("generating"));
    let mut session = Session::new(&model);
    let completions = session.generate(&model, Some(&tok), &input, &params, &mut |e| progress(Progress::Token(e)), cancel)?;
    Ok(GenerateResult { device: sel.device, device_notice: sel.notice, prompt_tokens: input.ids.len(), completions })
}

/// EOS ids: config.json's, plus generation_config.json's when present.
pub fn eos_ids(dir: &Path, from_config: &[u32]) -> Result<Vec<u32>, String> {
    let mut ids = from_config.to_vec();
    let p = dir.join("generation_config.json");
    if p.is_file() {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", p.display()))?;
        let add = match v.get("eos_token_id") {
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_u64()).collect(),
            Some(x) => x.as_u64().into_iter().collect(),
            None => vec![],
        };
        for id in add {
            if !ids.contains(&(id as u32)) {
                ids.push(id as u32);
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_hf_message_lists() {
        let v = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "What?"},
                {"type": "video", "video": ["f0.png", "/abs/f1.png"], "fps": 1.0}]}
        ]);
        let m = parse_messages(&v, Path::new("/base")).unwrap();
        assert_eq!(m[0].content, vec![ChatItem::Text("Be brief.".into())]);
        assert_eq!(m[1].content[0], ChatItem::Image("/base/a.png".into()));
        assert_eq!(m[1].content[2], ChatItem::Video { frames: vec!["/base/f0.png".into(), "/abs/f1.png".into()], fps: 1.0 });
        assert!(parse_messages(&json!({}), Path::new(".")).is_err());
        assert!(parse_messages(&json!([{"role": "user", "content": [{"type": "audio"}]}]), Path::new(".")).unwrap_err().contains("audio"));
        assert!(parse_messages(&json!([{"content": "x"}]), Path::new(".")).unwrap_err().contains("role"));
    }
}
