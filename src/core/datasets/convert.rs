//! Conversion of parsed records to the trajectory model: [`Record::to_sample`] for every format,
//! [`Record::to_trajectory`] for the conversation formats (sharegpt / LLaMA-Factory, ViLaVT SFT,
//! ViLaSR `results.jsonl`).
//!
//! Field mapping (all formats): `question` → question; `question_type`, else `problem_type` →
//! question_type; `options` → options (non-string scalars become their JSON text); `answer` →
//! ground_truth (non-strings become their JSON text); `data_type` → data_type; `grid_size` →
//! grid_size; `images` / `image_path` → media (video frames when `data_type` is `video` or
//! `spatial_r1`, or for VSI-Bench records); `id` (else `question_id`, else `<file stem>-<n>`) → id.
//! Every other key goes to `extra`, including `question_id`, kept there with its JSON type
//! because evaluators key results on it.
//!
//! Conversations: an optional leading system message, a first user message (question + input
//! image placeholders), then assistant messages, each optionally followed by a user message (the
//! observation turn). In the trajectory the `<image>` / `<video>` placeholders become the vision
//! triples the model saw (`<|vision_start|><|image_pad|><|vision_end|>`), in
//! [`Trajectory::first_user_text`] and [`Turn::observation_text`]; assistant text is kept
//! verbatim. Placeholders take the record's images in order: the first user message's are the
//! sample's inputs, each observation turn's are the observations of the assistant turn before it.
//! Imported observations are numbered 1-based after the inputs; their `drawn_on` is 0 (unknown:
//! the data does not say which image an observation was drawn on); their size is filled from a
//! ViLaSR `The index of the given image is n (width: W, height: H)` line when the text has one.
//!
//! ViLaSR `results.jsonl` keeps the vision triples in its user texts and lists no observation
//! paths; observation `n` is taken to be `<root>/<basename of sample_dir>/images/image_{n-1}.png`
//! (`eval/infer.py` saves inputs then observations, numbered from 0).

use super::{
    paths, type_name, DatasetError, DatasetFormat, ImageRef, Media, Record, Sample, SharegptSpec, Trajectory, Turn,
};
use crate::core::trajectory::Observation;
use serde_json::{Map, Value};
use std::path::Path;

/// The vision triple of one image, as the chat template renders it.
pub const IMAGE_TRIPLE: &str = "<|vision_start|><|image_pad|><|vision_end|>";
/// The vision triple of one video.
pub const VIDEO_TRIPLE: &str = "<|vision_start|><|video_pad|><|vision_end|>";
/// LLaMA-Factory / Qwen-VL finetune image placeholder.
pub const IMAGE_PLACEHOLDER: &str = "<image>";
/// LLaMA-Factory / Qwen-VL finetune video placeholder.
pub const VIDEO_PLACEHOLDER: &str = "<video>";

/// VSI-Bench question types (frames of one video).
const VSI_TYPES: [&str; 8] = [
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    System,
    User,
    Assistant,
}

struct Message {
    role: Role,
    text: String,
}

/// A conversation split into its parts (placeholders still as written).
struct Conversation {
    system: Option<String>,
    first_user: String,
    /// Assistant text and the user (observation) message that follows it, if any.
    turns: Vec<(String, Option<String>)>,
}

impl Record {
    /// The sample this record describes (question, type, options, ground truth, inputs, …).
    pub fn to_sample(&self) -> Result<Sample, DatasetError> {
        match self.format {
            DatasetFormat::VilasrRl => self.flat_sample(
                &["image_path"],
                &["question", "answer", "image_path", "data_type", "question_type", "grid_size"],
                &[],
            ),
            DatasetFormat::VilavtRl => self.flat_sample(
                &["image_path"],
                &["question", "answer", "image_path", "max_pixels", "max_num_steps", "question_type", "data_type"],
                &[],
            ),
            DatasetFormat::Benchmark => self.flat_sample(&["images", "image_path"], &["question", "answer"], &[]),
            DatasetFormat::VilasrResults => {
                let mut s = self.flat_sample(&["image_path", "images"], &["conversations"], RESULT_KEYS)?;
                if !self.fields.contains_key("question") {
                    if let Ok(c) = self.conversation("conversations", &self.spec()) {
                        s.question = question_from_prompt(&c.first_user.replace(IMAGE_TRIPLE, ""));
                    }
                }
                Ok(s)
            }
            DatasetFormat::LlamaFactory | DatasetFormat::Sharegpt | DatasetFormat::VilavtSft => {
                Ok(self.to_trajectory()?.sample)
            }
        }
    }

    /// The conversation of a sharegpt / LLaMA-Factory, ViLaVT SFT or ViLaSR results record as a
    /// trajectory. Other formats hold no model output and give an error.
    pub fn to_trajectory(&self) -> Result<Trajectory, DatasetError> {
        match self.format {
            DatasetFormat::VilasrResults => self.results_trajectory(),
            DatasetFormat::LlamaFactory | DatasetFormat::Sharegpt | DatasetFormat::VilavtSft => self.sharegpt_trajectory(),
            other => Err(DatasetError::Invalid {
                loc: self.loc(),
                message: format!("{other} records hold no conversation; use to_sample"),
            }),
        }
    }

    /// Every image path the record names, as written, with the field naming it
    /// (`image_path[2]`, `images[0]`, `video`).
    pub fn image_paths(&self) -> Result<Vec<(String, String)>, DatasetError> {
        let keys: Vec<String> = match self.format {
            DatasetFormat::VilasrRl | DatasetFormat::VilavtRl => vec!["image_path".into()],
            DatasetFormat::Benchmark | DatasetFormat::VilasrResults => vec!["images".into(), "image_path".into()],
            _ => {
                let spec = self.spec();
                [spec.images.clone(), spec.videos.clone()].into_iter().flatten().collect()
            }
        };
        let mut out = Vec::new();
        for k in keys {
            match self.fields.get(&k) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => out.push((k.clone(), s.clone())),
                Some(Value::Array(items)) => {
                    for (i, v) in items.iter().enumerate() {
                        match v {
                            Value::String(s) => out.push((format!("{k}[{i}]"), s.clone())),
                            Value::Array(frames) => {
                                for (j, f) in frames.iter().enumerate() {
                                    let field = format!("{k}[{i}][{j}]");
                                    let s = f.as_str().ok_or_else(|| self.type_err(&field, "a string", f))?;
                                    out.push((field, s.to_string()));
                                }
                            }
                            other => return Err(self.type_err(&format!("{k}[{i}]"), "a string", other)),
                        }
                    }
                }
                Some(other) => return Err(self.type_err(&k, "a list of strings", other)),
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Field helpers
    // -----------------------------------------------------------------------------------------

    fn type_err(&self, field: &str, expected: &str, found: &Value) -> DatasetError {
        DatasetError::FieldType { loc: self.field_loc(field), expected: expected.into(), found: type_name(found).into() }
    }

    fn require(&self, keys: &[&str]) -> Result<(), DatasetError> {
        for k in keys {
            if !self.fields.contains_key(*k) {
                return Err(DatasetError::MissingField { loc: self.field_loc(k) });
            }
        }
        Ok(())
    }

    /// A string field; missing or null → None.
    fn opt_str(&self, key: &str) -> Result<Option<String>, DatasetError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.type_err(key, "a string", other)),
        }
    }

    /// A list of strings (or, when `single` is allowed, one string); missing or null → None.
    fn str_list(&self, key: &str, single: bool) -> Result<Option<Vec<String>>, DatasetError> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if single => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.type_err(&format!("{key}[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.type_err(key, "a list of strings", other)),
        }
    }

    fn resolve(&self, field: &str, rel: &str) -> Result<ImageRef, DatasetError> {
        let p = paths::resolve_checked(&self.root, Some(&self.root), rel)
            .map_err(|e| e.at(&self.file, self.file_record, field))?;
        Ok(ImageRef::new(p.to_string_lossy().into_owned()))
    }

    fn resolve_all(&self, key: &str, rels: &[String], start: usize) -> Result<Vec<ImageRef>, DatasetError> {
        rels.iter().enumerate().map(|(i, r)| self.resolve(&format!("{key}[{}]", start + i), r)).collect()
    }

    fn file_stem(&self) -> String {
        Path::new(&self.file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "record".into())
    }

    fn wants_frames(&self, data_type: &str) -> bool {
        let dt = data_type.to_ascii_lowercase();
        if dt == "video" || dt == "spatial_r1" {
            return true;
        }
        if matches!(self.format, DatasetFormat::Benchmark | DatasetFormat::VilasrResults) {
            let stem = self.dataset.clone().unwrap_or_else(|| self.file_stem()).to_ascii_lowercase();
            if stem.contains("vsi") {
                return true;
            }
            if let Some(Value::String(t)) = self.fields.get("original_question_type") {
                let t = t.to_ascii_lowercase();
                let base = ["_easy", "_medium", "_hard"].iter().fold(t.as_str(), |s, suf| s.strip_suffix(suf).unwrap_or(s));
                return VSI_TYPES.contains(&base);
            }
        }
        false
    }

    /// The fields every format shares; records the keys it used in `consumed`.
    fn base_sample(&self, consumed: &mut Vec<String>) -> Result<Sample, DatasetError> {
        let scalar_text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let id = if let Some(id) = self.fields.get("id").and_then(scalar_text) {
            consumed.push("id".into());
            id
        } else if let Some(id) = self.fields.get("question_id").and_then(scalar_text) {
            id
        } else {
            format!("{}-{}", self.file_stem(), self.file_record)
        };
        let question = self.opt_str("question")?;
        consumed.push("question".into());
        let question_type = if self.fields.contains_key("question_type") {
            consumed.push("question_type".into());
            self.opt_str("question_type")?
        } else {
            consumed.push("problem_type".into());
            self.opt_str("problem_type")?
        };
        let options = match self.fields.get("options") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
                        other => Err(self.type_err(&format!("options[{i}]"), "a string", other)),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => return Err(self.type_err("options", "a list of strings or null", other)),
        };
        consumed.push("options".into());
        let ground_truth = match self.fields.get("answer") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        consumed.push("answer".into());
        let data_type = self.opt_str("data_type")?.unwrap_or_default();
        consumed.push("data_type".into());
        let grid_size = match self.fields.get("grid_size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| self.type_err("grid_size", "a non-negative integer or null", v))?,
            ),
        };
        consumed.push("grid_size".into());
        Ok(Sample {
            id,
            question: question.unwrap_or_default(),
            question_type: question_type.unwrap_or_default(),
            options,
            ground_truth,
            data_type,
            media: Media::default(),
            grid_size,
            source: Some(self.source()),
            extra: Map::new(),
        })
    }

    fn extra(&self, consumed: &[String]) -> Map<String, Value> {
        self.fields
            .iter()
            .filter(|(k, _)| !consumed.iter().any(|c| c == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Records whose inputs are listed in an image-path field (RL data, benchmarks, results).
    fn flat_sample(&self, image_keys: &[&str], required: &[&str], also_consumed: &[&str]) -> Result<Sample, DatasetError> {
        self.require(required)?;
        let mut consumed: Vec<String> = also_consumed.iter().map(|s| s.to_string()).collect();
        let mut sample = self.base_sample(&mut consumed)?;
        if required.contains(&"question") && self.fields.get("question").is_some_and(|v| v.is_null()) {
            return Err(self.type_err("question", "a string", &Value::Null));
        }
        let key = image_keys.iter().find(|k| self.fields.contains_key(**k)).copied();
        let images = match key {
            Some(k) => {
                consumed.push(k.into());
                let rels = self.str_list(k, self.format != DatasetFormat::VilasrRl && self.format != DatasetFormat::VilavtRl)?;
                self.resolve_all(k, &rels.unwrap_or_default(), 0)?
            }
            None if self.format == DatasetFormat::Benchmark => {
                return Err(DatasetError::MissingField { loc: self.field_loc(image_keys[0]) })
            }
            None => Vec::new(),
        };
        sample.media = if self.wants_frames(&sample.data_type) {
            Media::VideoFrames { frames: images, video: None }
        } else {
            Media::Images { images }
        };
        sample.extra = self.extra(&consumed);
        Ok(sample)
    }

    // -----------------------------------------------------------------------------------------
    // Conversations
    // -----------------------------------------------------------------------------------------

    fn messages(&self, key: &str, spec: &SharegptSpec) -> Result<Vec<Message>, DatasetError> {
        let list = match self.fields.get(key) {
            None => return Err(DatasetError::MissingField { loc: self.field_loc(key) }),
            Some(Value::Array(a)) => a,
            Some(other) => return Err(self.type_err(key, "a list of messages", other)),
        };
        let mut out = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let here = format!("{key}[{i}]");
            let Value::Object(m) = m else {
                return Err(self.type_err(&here, "a message object", m));
            };
            let pick = |tag: &str, alts: [&str; 2]| {
                m.get(tag).map(|v| (tag.to_string(), v)).or_else(|| {
                    alts.iter().find_map(|a| m.get(*a).map(|v| (a.to_string(), v)))
                })
            };
            let Some((role_key, role)) = pick(&spec.role_tag, ["role", "from"]) else {
                return Err(DatasetError::MissingField { loc: self.field_loc(&format!("{here}.{}", spec.role_tag)) });
            };
            let role_field = format!("{here}.{role_key}");
            let role = role.as_str().ok_or_else(|| self.type_err(&role_field, "a string", role))?;
            let role = if role == spec.system_tag || role == "system" {
                Role::System
            } else if role == spec.user_tag || role == spec.observation_tag || matches!(role, "user" | "human" | "observation" | "tool")
            {
                Role::User
            } else if role == spec.assistant_tag || role == spec.function_tag || matches!(role, "assistant" | "gpt" | "function_call")
            {
                Role::Assistant
            } else {
                return Err(DatasetError::Invalid {
                    loc: self.field_loc(&role_field),
                    message: format!("unknown role \"{role}\""),
                });
            };
            let Some((content_key, content)) = pick(&spec.content_tag, ["content", "value"]) else {
                return Err(DatasetError::MissingField { loc: self.field_loc(&format!("{here}.{}", spec.content_tag)) });
            };
            let content_field = format!("{here}.{content_key}");
            let text = match content {
                Value::String(s) => s.clone(),
                // results.jsonl user turns: [{"type": "image", …}?, {"type": "text", "text": …}]
                Value::Array(parts) if self.format == DatasetFormat::VilasrResults => {
                    let mut t = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        let pf = format!("{content_field}[{j}]");
                        let Value::Object(p) = p else { return Err(self.type_err(&pf, "a content part object", p)) };
                        if p.get("type").and_then(|v| v.as_str()) == Some("text") {
                            match p.get("text") {
                                Some(Value::String(s)) => t.push_str(s),
                                Some(other) => return Err(self.type_err(&format!("{pf}.text"), "a string", other)),
                                None => return Err(DatasetError::MissingField { loc: self.field_loc(&format!("{pf}.text")) }),
                            }
                        }
                    }
                    t
                }
                other => return Err(self.type_err(&content_field, "a string", other)),
            };
            out.push(Message { role, text });
        }
        Ok(out)
    }

    fn conversation(&self, key: &str, spec: &SharegptSpec) -> Result<Conversation, DatasetError> {
        let msgs = self.messages(key, spec)?;
        let mut system = None;
        let mut first_user = None;
        let mut turns: Vec<(String, Option<String>)> = Vec::new();
        let mut last_role: Option<Role> = None;
        for (i, m) in msgs.into_iter().enumerate() {
            let here = format!("{key}[{i}]");
            let bad = |message: String| DatasetError::Invalid { loc: self.field_loc(&here), message };
            match m.role {
                Role::System => {
                    if i != 0 {
                        return Err(bad("a system message is allowed only as the first message".into()));
                    }
                    system = Some(m.text);
                }
                Role::User => match last_role {
                    None | Some(Role::System) => first_user = Some(m.text),
                    Some(Role::User) => return Err(bad("two user messages in a row".into())),
                    Some(Role::Assistant) => {
                        if let Some(t) = turns.last_mut() {
                            t.1 = Some(m.text);
                        }
                    }
                },
                Role::Assistant => match last_role {
                    None | Some(Role::System) => {
                        return Err(bad("the conversation must start with a user message, not an assistant one".into()))
                    }
                    Some(Role::Assistant) => return Err(bad("two assistant messages in a row".into())),
                    Some(Role::User) => turns.push((m.text, None)),
                },
            }
            last_role = Some(m.role);
        }
        let Some(first_user) = first_user else {
            return Err(DatasetError::Invalid { loc: self.field_loc(key), message: "the conversation has no user message".into() });
        };
        Ok(Conversation { system, first_user, turns })
    }

    fn sharegpt_trajectory(&self) -> Result<Trajectory, DatasetError> {
        let spec = self.spec();
        let key = if !self.fields.contains_key(&spec.messages) && self.fields.contains_key("messages") {
            "messages".to_string()
        } else {
            spec.messages.clone()
        };
        let mut consumed = vec![key.clone()];
        let conv = self.conversation(&key, &spec)?;
        let mut sample = self.base_sample(&mut consumed)?;
        let mut system = conv.system.clone();
        if let Some(col) = &spec.system {
            if let Some(s) = self.opt_str(col)? {
                system = Some(s);
            }
            consumed.push(col.clone());
        }
        // Images (a list, or one string) and videos (each a path or a list of frame paths).
        let images_key = spec.images.clone().unwrap_or_else(|| "images".into());
        let images = if spec.images.is_some() {
            consumed.push(images_key.clone());
            self.str_list(&images_key, true)?.unwrap_or_default()
        } else {
            Vec::new()
        };
        let videos_key = spec.videos.clone().unwrap_or_else(|| "videos".into());
        let videos: Vec<Value> = match spec.videos.as_ref().and_then(|k| self.fields.get(k)) {
            None | Some(Value::Null) => Vec::new(),
            Some(v @ Value::String(_)) => vec![v.clone()],
            Some(Value::Array(a)) => a.clone(),
            Some(other) => return Err(self.type_err(&videos_key, "a video path or a list of them", other)),
        };
        if spec.videos.is_some() {
            consumed.push(videos_key.clone());
        }
        // Count placeholders per user message.
        let img0 = conv.first_user.matches(IMAGE_PLACEHOLDER).count();
        let vid0 = conv.first_user.matches(VIDEO_PLACEHOLDER).count();
        let mut img_total = img0;
        let mut vid_total = vid0;
        for (i, (_, user)) in conv.turns.iter().enumerate() {
            if let Some(u) = user {
                img_total += u.matches(IMAGE_PLACEHOLDER).count();
                let v = u.matches(VIDEO_PLACEHOLDER).count();
                if v > 0 {
                    return Err(DatasetError::Invalid {
                        loc: self.field_loc(&key),
                        message: format!("observation turn {} holds a {VIDEO_PLACEHOLDER} placeholder; only the first user turn may hold videos", i + 1),
                    });
                }
                vid_total += v;
            }
        }
        if img_total != images.len() {
            return Err(DatasetError::PlaceholderCount {
                loc: self.field_loc(&images_key),
                placeholder: IMAGE_PLACEHOLDER.into(),
                placeholders: img_total,
                listed: images.len(),
            });
        }
        if vid_total != videos.len() {
            return Err(DatasetError::PlaceholderCount {
                loc: self.field_loc(&videos_key),
                placeholder: VIDEO_PLACEHOLDER.into(),
                placeholders: vid_total,
                listed: videos.len(),
            });
        }
        sample.media = if vid0 == 0 {
            let inputs = self.resolve_all(&images_key, &images[..img0], 0)?;
            if self.wants_frames(&sample.data_type) {
                Media::VideoFrames { frames: inputs, video: None }
            } else {
                Media::Images { images: inputs }
            }
        } else if vid0 == 1 && img0 == 0 {
            let field = if spec.videos.as_ref().is_some_and(|k| self.fields.get(k).is_some_and(|v| v.is_array())) {
                format!("{videos_key}[0]")
            } else {
                videos_key.clone()
            };
            match &videos[0] {
                Value::String(p) => Media::VideoFrames { frames: Vec::new(), video: Some(self.resolve(&field, p)?.path) },
                Value::Array(frames) => {
                    let mut refs = Vec::new();
                    for (j, f) in frames.iter().enumerate() {
                        let ff = format!("{field}[{j}]");
                        let s = f.as_str().ok_or_else(|| self.type_err(&ff, "a string", f))?;
                        refs.push(self.resolve(&ff, s)?);
                    }
                    Media::VideoFrames { frames: refs, video: None }
                }
                other => return Err(self.type_err(&field, "a video path or a list of frame paths", other)),
            }
        } else {
            return Err(DatasetError::Invalid {
                loc: self.field_loc(&key),
                message: format!("the first user turn holds {img0} image and {vid0} video placeholders; only images, or exactly one video, are supported"),
            });
        };
        if sample.question.is_empty() {
            sample.question =
                question_from_prompt(&conv.first_user.replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, ""));
        }
        sample.extra = self.extra(&consumed);
        let to_model_text = |s: &str| s.replace(IMAGE_PLACEHOLDER, IMAGE_TRIPLE).replace(VIDEO_PLACEHOLDER, VIDEO_TRIPLE);
        let first_user_text = to_model_text(&conv.first_user);
        let mut next_image = img0;
        let mut number = sample.media.images().len() as u32;
        let mut turns = Vec::with_capacity(conv.turns.len());
        for (assistant, user) in &conv.turns {
            let mut turn = Turn { assistant_text: assistant.clone(), ..Default::default() };
            if let Some(u) = user {
                let k = u.matches(IMAGE_PLACEHOLDER).count();
                let sizes = index_sizes(u);
                for j in 0..k {
                    number += 1;
                    let mut image = self.resolve(&format!("{images_key}[{}]", next_image + j), &images[next_image + j])?;
                    if let Some(&(_, w, h)) = sizes.iter().find(|(n, _, _)| *n == number) {
                        image.width = Some(w);
                        image.height = Some(h);
                    }
                    turn.observations.push(Observation { number, drawn_on: 0, image });
                }
                next_image += k;
                turn.observation_text = Some(to_model_text(u));
            }
            turns.push(turn);
        }
        let mut t = Trajectory::new(sample.id.clone(), self.format.protocol(), sample);
        t.system_prompt = system;
        t.first_user_text = Some(first_user_text);
        t.turns = turns;
        Ok(t)
    }

    fn results_trajectory(&self) -> Result<Trajectory, DatasetError> {
        let spec = self.spec();
        let conv = self.conversation("conversations", &spec)?;
        let mut sample = self.flat_sample(&["image_path", "images"], &["conversations"], RESULT_KEYS)?;
        if !self.fields.contains_key("question") {
            sample.question = question_from_prompt(&conv.first_user.replace(IMAGE_TRIPLE, ""));
        }
        let inputs = sample.media.images().len();
        let n0 = conv.first_user.matches(IMAGE_TRIPLE).count();
        if n0 != inputs {
            let field = if self.fields.contains_key("image_path") { "image_path" } else { "images" };
            return Err(DatasetError::PlaceholderCount {
                loc: self.field_loc(field),
                placeholder: IMAGE_TRIPLE.into(),
                placeholders: n0,
                listed: inputs,
            });
        }
        let sample_dir = match self.fields.get("sample_dir") {
            Some(Value::String(s)) => Path::new(s).file_name().map(|n| self.root.join(n)),
            None | Some(Value::Null) => None,
            Some(other) => return Err(self.type_err("sample_dir", "a string or null", other)),
        };
        let model = self.opt_str("model_id")?;
        let mut number = inputs as u32;
        let mut turns = Vec::with_capacity(conv.turns.len());
        for (assistant, user) in &conv.turns {
            let mut turn = Turn { assistant_text: assistant.clone(), ..Default::default() };
            if let Some(u) = user {
                let sizes = index_sizes(u);
                for _ in 0..u.matches(IMAGE_TRIPLE).count() {
                    number += 1;
                    // eval/infer.py saves every image of a sample as images/image_{i}.png, i
                    // 0-based over inputs then observations.
                    let path = match &sample_dir {
                        Some(d) => d.join("images").join(format!("image_{}.png", number - 1)).to_string_lossy().into_owned(),
                        None => String::new(),
                    };
                    if path.is_empty() && turn.notes.is_empty() {
                        turn.notes.push("observation images were not saved (no sample_dir)".into());
                    }
                    let mut image = ImageRef::new(path);
                    if let Some(&(_, w, h)) = sizes.iter().find(|(n, _, _)| *n == number) {
                        image.width = Some(w);
                        image.height = Some(h);
                    }
                    turn.observations.push(Observation { number, drawn_on: 0, image });
                }
                turn.observation_text = Some(u.clone());
            }
            turns.push(turn);
        }
        let mut t = Trajectory::new(sample.id.clone(), self.format.protocol(), sample);
        // parse_dialog keeps the role line unless the system text starts with a newline.
        t.system_prompt = conv.system.map(|s| s.strip_prefix("system\n").map(str::to_string).unwrap_or(s));
        t.first_user_text = Some(conv.first_user);
        t.turns = turns;
        t.model = model;
        t.profile = Some("eval".into());
        Ok(t)
    }
}

/// Keys `eval/infer.py` adds to each input record.
const RESULT_KEYS: &[&str] = &["conversations", "model_output", "model_id", "sample_dir"];

/// The question inside a ViLaSR-wrapped prompt (`…### Question:\n{P}\n\nBegin your reasoning…`),
/// else the whole text, trimmed.
pub(crate) fn question_from_prompt(text: &str) -> String {
    const HEAD: &str = "### Question:\n";
    const TAIL: &str = "\n\nBegin your reasoning";
    if let Some(i) = text.find(HEAD) {
        let rest = &text[i + HEAD.len()..];
        let q = match rest.find(TAIL) {
            Some(j) => &rest[..j],
            None => rest,
        };
        return q.trim().to_string();
    }
    text.trim().to_string()
}

/// `(n, width, height)` of every `The index of the given image is n (width: W, height: H)` in a
/// ViLaSR observation text.
pub(crate) fn index_sizes(text: &str) -> Vec<(u32, u32, u32)> {
    const HEAD: &str = "The index of the given image is ";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(HEAD) {
        rest = &rest[i + HEAD.len()..];
        let parse = |s: &str| -> Option<(u32, u32, u32)> {
            let (n, s) = take_u32(s)?;
            let s = s.strip_prefix(" (width: ")?;
            let (w, s) = take_u32(s)?;
            let s = s.strip_prefix(", height: ")?;
            let (h, s) = take_u32(s)?;
            s.starts_with(')').then_some((n, w, h))
        };
        if let Some(t) = parse(rest) {
            out.push(t);
        }
    }
    out
}

fn take_u32(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    Some((s[..end].parse().ok()?, &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(format: DatasetFormat, v: Value) -> Record {
        let Value::Object(m) = v else { panic!() };
        Record::from_fields(format, m, "data/x.jsonl", 17, "/data/root")
    }

    #[test]
    fn vilasr_rl_record_maps_every_field() {
        let r = rec(
            DatasetFormat::VilasrRl,
            json!({"question": "How many?", "answer": 3, "image_path": ["GPT4Scene/a.png", "GPT4Scene/b.png"],
                   "data_type": "video", "question_type": "numerical", "options": null, "grid_size": null, "scene": "s1"}),
        );
        let s = r.to_sample().unwrap();
        assert_eq!(s.question, "How many?");
        assert_eq!(s.ground_truth.as_deref(), Some("3"));
        assert_eq!(s.question_type, "numerical");
        assert!(s.media.is_video());
        assert_eq!(s.media.images()[1].path, "/data/root/GPT4Scene/b.png");
        assert_eq!(s.grid_size, None);
        assert_eq!(s.extra.keys().collect::<Vec<_>>(), vec!["scene"]);
        assert_eq!(s.source.as_ref().unwrap().record, 17);
        assert_eq!(s.id, "x-17");
    }

    #[test]
    fn field_errors_name_file_record_and_field() {
        let r = rec(
            DatasetFormat::VilasrRl,
            json!({"question": "q", "answer": "A", "image_path": 5, "data_type": "maze", "question_type": "free-form", "grid_size": 5}),
        );
        assert_eq!(
            r.to_sample().unwrap_err().to_string(),
            "data/x.jsonl: record 17: field \"image_path\": expected a list of strings, found number"
        );
        let r = rec(DatasetFormat::VilasrRl, json!({"question": "q", "answer": "A", "image_path": []}));
        assert_eq!(r.to_sample().unwrap_err().to_string(), "data/x.jsonl: record 17: field \"data_type\": required field is missing");
        let r = rec(
            DatasetFormat::VilasrRl,
            json!({"question": "q", "answer": "A", "image_path": ["../../etc/x.png"], "data_type": "maze", "question_type": "free-form", "grid_size": 5}),
        );
        let msg = r.to_sample().unwrap_err().to_string();
        assert!(msg.starts_with("data/x.jsonl: record 17: field \"image_path[0]\": image path \"../../etc/x.png\" escapes"), "{msg}");
        let r = rec(
            DatasetFormat::VilasrRl,
            json!({"question": "q", "answer": "A", "image_path": ["a.png"], "data_type": "maze", "question_type": "free-form", "grid_size": -1}),
        );
        assert!(r.to_sample().unwrap_err().to_string().contains("field \"grid_size\": expected a non-negative integer"));
    }

    #[test]
    fn vilavt_rl_requires_its_keys() {
        let mut v = json!({"question": "q", "answer": "A", "image_path": ["a.jpg"], "max_pixels": 200704,
                           "max_num_steps": null, "question_type": "multiple choice", "data_type": "image"});
        let s = rec(DatasetFormat::VilavtRl, v.clone()).to_sample().unwrap();
        assert_eq!(s.extra.keys().collect::<Vec<_>>(), vec!["max_pixels", "max_num_steps"]);
        v.as_object_mut().unwrap().remove("max_num_steps");
        let e = rec(DatasetFormat::VilavtRl, v).to_sample().unwrap_err();
        assert!(matches!(e, DatasetError::MissingField { .. }));
        assert!(e.to_string().contains("\"max_num_steps\""));
    }

    #[test]
    fn sharegpt_conversation_becomes_turns() {
        let r = rec(
            DatasetFormat::Sharegpt,
            json!({"conversations": [
                {"role": "system", "content": "SYS"},
                {"role": "user", "content": "<image>\n### Question:\nWhere?\n\nBegin your reasoning. After each tool use, critically evaluate the visualization and adjust if needed:\n"},
                {"role": "assistant", "content": "<think>a</think> Action: Object Mapper\n```json\n[]\n```"},
                {"role": "user", "content": "<image>\nThe index of the given image is 2 (width: 448, height: 336). Continue"},
                {"role": "assistant", "content": "<answer>A</answer>"}
            ], "images": ["in.png", "obs/2.png"], "answer": "A"}),
        );
        let t = r.to_trajectory().unwrap();
        assert_eq!(t.system_prompt.as_deref(), Some("SYS"));
        assert!(t.first_user_text.as_deref().unwrap().starts_with(IMAGE_TRIPLE));
        assert_eq!(t.sample.question, "Where?");
        assert_eq!(t.sample.ground_truth.as_deref(), Some("A"));
        assert_eq!(t.sample.media.images().len(), 1);
        assert_eq!(t.turns.len(), 2);
        assert_eq!(t.turns[0].observations.len(), 1);
        let obs = &t.turns[0].observations[0];
        assert_eq!((obs.number, obs.image.width, obs.image.height), (2, Some(448), Some(336)));
        assert_eq!(obs.image.path, "/data/root/obs/2.png");
        assert!(t.turns[0].observation_text.as_deref().unwrap().starts_with(IMAGE_TRIPLE));
        assert_eq!(t.turns[1].assistant_text, "<answer>A</answer>");
        assert_eq!(t.turns[1].observation_text, None);
        assert_eq!(r.to_sample().unwrap(), t.sample);
    }

    #[test]
    fn placeholder_mismatch_and_role_order_are_errors() {
        let r = rec(
            DatasetFormat::Sharegpt,
            json!({"conversations": [{"role": "user", "content": "<image><image>q"}, {"role": "assistant", "content": "a"}], "images": ["a.png"]}),
        );
        let msg = r.to_trajectory().unwrap_err().to_string();
        assert_eq!(msg, "data/x.jsonl: record 17: field \"images\": the conversation has 2 <image> placeholder(s) but the record lists 1");
        let r = rec(
            DatasetFormat::Sharegpt,
            json!({"conversations": [{"role": "assistant", "content": "a"}]}),
        );
        assert!(r.to_trajectory().unwrap_err().to_string().contains("conversations[0]"));
        let r = rec(DatasetFormat::Sharegpt, json!({"conversations": [{"role": "user", "content": 3}]}));
        assert_eq!(
            r.to_trajectory().unwrap_err().to_string(),
            "data/x.jsonl: record 17: field \"conversations[0].content\": expected a string, found number"
        );
        let r = rec(DatasetFormat::Sharegpt, json!({"conversations": [{"role": "wizard", "content": "x"}]}));
        assert!(r.to_trajectory().unwrap_err().to_string().contains("unknown role \"wizard\""));
        let r = rec(DatasetFormat::Benchmark, json!({"question": "q", "answer": "A", "images": []}));
        assert!(r.to_trajectory().is_err());
    }

    #[test]
    fn vilavt_sft_from_value_and_video() {
        let r = rec(
            DatasetFormat::VilavtSft,
            json!({"conversations": [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "It rolls."}],
                   "video": "clips/v.mp4", "max_pixels": 100352}),
        );
        let t = r.to_trajectory().unwrap();
        assert_eq!(t.protocol, crate::core::trajectory::Protocol::Vilavt);
        assert_eq!(t.sample.question, "What happens?");
        assert_eq!(t.sample.media, Media::VideoFrames { frames: vec![], video: Some("/data/root/clips/v.mp4".into()) });
        assert!(t.first_user_text.unwrap().starts_with(VIDEO_TRIPLE));
        assert_eq!(t.sample.extra.keys().collect::<Vec<_>>(), vec!["max_pixels"]);
        // A single image may be a plain string.
        let r = rec(
            DatasetFormat::VilavtSft,
            json!({"conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}], "images": "a.jpg"}),
        );
        assert_eq!(r.to_sample().unwrap().media.images().len(), 1);
    }

    #[test]
    fn results_record_maps_observations_to_sample_dir() {
        let user1 = format!("{IMAGE_TRIPLE}\n### Question:\nWhich?\n\nBegin your reasoning. After each tool use, critically evaluate the visualization and adjust if needed:\n");
        let obs = format!("{IMAGE_TRIPLE}{IMAGE_TRIPLE}The index of the given image is 2 (width: 448, height: 448).\n{IMAGE_TRIPLE}The index of the given image is 3 (width: 640, height: 480). Continue\n");
        let r = rec(
            DatasetFormat::VilasrResults,
            json!({"question": "Which?", "answer": "B", "image_path": ["maze/1.png"], "problem_type": "multiple choice",
                   "conversations": [
                       {"role": "system", "content": "system\nGUIDE"},
                       {"role": "user", "content": [{"type": "image", "image": "image_path", "nframes": "args.max_frames", "max_pixels": 351232}, {"type": "text", "text": user1}]},
                       {"role": "assistant", "content": "<think>t</think>"},
                       {"role": "user", "content": [{"type": "image", "image": "image_path"}, {"type": "text", "text": obs}]},
                       {"role": "assistant", "content": "<answer>B</answer>"}],
                   "model_output": "<answer>B</answer>", "model_id": "vilasr-7b", "sample_dir": "./result/sample_20250101_000000"}),
        );
        let t = r.to_trajectory().unwrap();
        assert_eq!(t.system_prompt.as_deref(), Some("GUIDE"));
        assert_eq!(t.model.as_deref(), Some("vilasr-7b"));
        assert_eq!(t.sample.question, "Which?");
        assert!(t.sample.extra.is_empty(), "{:?}", t.sample.extra);
        let o = &t.turns[0].observations;
        assert_eq!(o.len(), 3);
        assert_eq!(o[0].image.path, "/data/root/sample_20250101_000000/images/image_1.png");
        assert_eq!(o[2].image.path, "/data/root/sample_20250101_000000/images/image_3.png");
        assert_eq!((o[0].image.width, o[0].image.height), (Some(448), Some(448)));
        assert_eq!((o[1].image.width, o[1].image.height), (Some(640), Some(480)));
        assert_eq!((o[2].number, o[2].image.width), (4, None));
        assert_eq!(t.turns[0].observation_text.as_deref(), Some(obs.as_str()));
        assert_eq!(r.to_sample().unwrap(), t.sample);
    }

    #[test]
    fn question_extraction_and_index_sizes() {
        assert_eq!(question_from_prompt("  plain  "), "plain");
        assert_eq!(question_from_prompt("\n### Question:\nQ?\nA. x\n\nBegin your reasoning. …"), "Q?\nA. x");
        assert_eq!(index_sizes("The index of the given image is 4 (width: 1, height: 22). The index of the given image is 1."), vec![(4, 1, 22)]);
    }
}
