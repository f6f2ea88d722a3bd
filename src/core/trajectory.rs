//! The trajectory model: one sample (question, type, options, ground truth, inputs) and the turns a
//! model produced on it (assistant text, parsed actions, observation images, finish reason,
//! rewards, timings).
//!
//! This is the single on-disk format every other part of Sightline reads and writes. A trajectory
//! lives in a folder: `trajectory.json` (this struct, versioned, pretty JSON with stable field
//! order) plus `images/` holding the observation PNGs. Writes go to a temporary file that is then
//! renamed, so a crash never leaves a half-written trajectory behind.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Version written into every `trajectory.json`; readers refuse newer versions with a clear error.
pub const TRAJECTORY_FORMAT_VERSION: u32 = 1;

/// File name of the trajectory document inside a trajectory folder.
pub const TRAJECTORY_FILE: &str = "trajectory.json";

/// Which reference protocol produced (or should score) a trajectory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// ViLaSR: `<think>` + ```json drawing actions on 1-based image indices.
    #[default]
    Vilasr,
    /// ViLaVT: `<think>` + `<tool>` region inquiries on 0-based image indices.
    Vilavt,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Vilasr => "vilasr",
            Protocol::Vilavt => "vilavt",
        })
    }
}

/// A reference to an image file: a path (absolute, or relative to the folder that holds the
/// document naming it) and, when known, its pixel size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

impl ImageRef {
    pub fn new(path: impl Into<String>) -> Self {
        ImageRef { path: path.into(), width: None, height: None }
    }
    pub fn with_size(path: impl Into<String>, width: u32, height: u32) -> Self {
        ImageRef { path: path.into(), width: Some(width), height: Some(height) }
    }
}

/// The visual input of a sample: still images, or the frames of a video (each frame is an
/// ordinary image with its own 1-based index, as in both references).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Media {
    Images { images: Vec<ImageRef> },
    VideoFrames {
        frames: Vec<ImageRef>,
        /// The source video, when the frames were extracted from one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video: Option<String>,
    },
}

impl Default for Media {
    fn default() -> Self {
        Media::Images { images: Vec::new() }
    }
}

impl Media {
    /// The input images in index order (frames for a video).
    pub fn images(&self) -> &[ImageRef] {
        match self {
            Media::Images { images } => images,
            Media::VideoFrames { frames, .. } => frames,
        }
    }
    pub fn is_video(&self) -> bool {
        matches!(self, Media::VideoFrames { .. })
    }
    /// The input images (frames for a video), to rewrite their paths.
    pub fn images_mut(&mut self) -> &mut Vec<ImageRef> {
        match self {
            Media::Images { images } => images,
            Media::VideoFrames { frames, .. } => frames,
        }
    }
}

/// Where a sample came from inside a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// Dataset file (as the user opened it).
    pub file: String,
    /// 0-based record number inside that file.
    pub record: usize,
    /// Dataset name (LLaMA-Factory entry, benchmark name) when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// One question with its inputs, independent of any model output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Sample {
    pub id: String,
    pub question: String,
    /// `multiple choice`, `regression`, `numerical`, `free-form`, `vci`, `judgment`, `math`, …
    /// (kept as the dataset spells it; scorers lower-case it as the reference does).
    pub question_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<String>,
    /// `maze`, `vqa`, `video`, `spatial_r1`, `single_view`, `multi_view`, `image`, …
    pub data_type: String,
    pub media: Media,
    /// Maze grid size (ViLaSR RL records carry `grid_size`; non-null means maze: +10 calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Every other field of the source record, carried along untouched.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a turn (or the whole trajectory) ended, spelled exactly as the references spell it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// EOS (`<|im_end|>`).
    Stop,
    /// Token limit of one generation.
    Length,
    /// Stop string / rule.
    Rule,
    /// Exception while grouping actions by index (e.g. an item without `index`).
    ToolGenError,
    /// No box/line items at all, or a group's base slot is −1.
    ToolError,
    /// Image cap exceeded.
    TooManyImages,
    /// RL only: index beyond the image list or a short point list while drawing.
    IndexError,
    /// RL only: the total response-token budget would be reached.
    MaxTokens,
    /// ViLaVT RL: an invalid zoom-in call ends the trajectory.
    ZoominFailed,
    /// The user stopped a live run.
    Cancelled,
    /// Any other reason string found in imported data.
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Rule => "rule",
            FinishReason::ToolGenError => "ToolGenError",
            FinishReason::ToolError => "ToolError",
            FinishReason::TooManyImages => "TooManyImages",
            FinishReason::IndexError => "IndexError",
            FinishReason::MaxTokens => "max_tokens",
            FinishReason::ZoominFailed => "Zoomin failed",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Other(s) => s,
        }
    }
    pub fn parse(s: &str) -> FinishReason {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "rule" => FinishReason::Rule,
            "ToolGenError" => FinishReason::ToolGenError,
            "ToolError" => FinishReason::ToolError,
            "TooManyImages" => FinishReason::TooManyImages,
            "IndexError" => FinishReason::IndexError,
            "max_tokens" => FinishReason::MaxTokens,
            "Zoomin failed" => FinishReason::ZoominFailed,
            "cancelled" => FinishReason::Cancelled,
            other => FinishReason::Other(other.to_string()),
        }
    }
    /// Terminal executor outcomes (the sample stops with its last response kept).
    pub fn is_executor_terminal(&self) -> bool {
        matches!(
            self,
            FinishReason::ToolGenError
                | FinishReason::ToolError
                | FinishReason::TooManyImages
                | FinishReason::IndexError
                | FinishReason::MaxTokens
                | FinishReason::ZoominFailed
        )
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FinishReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FinishReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(FinishReason::parse(&s))
    }
}

/// What an action does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// ViLaSR Object Mapper item (`bbox_2d` + `label`).
    Box,
    /// ViLaSR Path Tracer item (`start_point_2d` + `end_point_2d` + `label`).
    Line,
    /// ViLaVT `<tool>` region (0-based `index` + `bbox_2d`), asked with the call's query.
    Region,
}

/// One parsed action as written by the model, in a display-friendly typed form plus the raw item.
/// Fields the model wrote malformed are `None` here; `raw` keeps exactly what was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub kind: ActionKind,
    /// The image index as written (1-based for ViLaSR, 0-based for ViLaVT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox_2d: Option<[f64; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_point_2d: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_point_2d: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// ViLaVT: the call's text inquiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// 0-based number of the ```json block (or `<tool>` call) the item came from.
    #[serde(default)]
    pub block: usize,
    pub raw: serde_json::Value,
}

/// An image created by executing a turn's actions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// 1-based image number in the conversation (ViLaVT: stored 1-based too; its prompt shows n−1).
    pub number: u32,
    /// 1-based number of the image it was drawn on (ViLaVT: cropped from).
    pub drawn_on: u32,
    /// The observation pixels as the model saw them.
    pub image: ImageRef,
}

/// Wall-clock and token accounting of one turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnTimings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execute_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_tokens: Option<u32>,
    /// Within `generate_ms`: prefilling the turn's new prompt tokens, and the vision tower's
    /// encoding of the new observation images within that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefill_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_ms: Option<f64>,
}

/// One assistant turn and what the executor made of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The assistant text exactly as generated (without `<|im_end|>`).
    pub assistant_text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
    /// Images this turn created, in creation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// The user text appended after this turn (observation turn), exactly as the model saw it:
    /// Sightline's runs store the whole `<|im_end|>\n<|im_start|>user\n…<|im_start|>assistant\n`
    /// span, imported conversations only the user content ([`Turn::observation_span`] gives both
    /// as the span).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation_text: Option<String>,
    /// Set on the turn that ended the trajectory, or on a turn the executor rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// Human-readable notes from parsing/execution (dropped blocks, errors).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default_timings")]
    pub timings: TurnTimings,
}

impl Turn {
    /// The observation turn as the model sees it between this response and the next: the stored
    /// span itself, or the stored user content wrapped in the chat template's markup.
    pub fn observation_span(&self) -> Option<String> {
        let o = self.observation_text.as_ref()?;
        Some(if o.starts_with("<|im_end|>") { o.clone() } else { format!("<|im_end|>\n<|im_start|>user\n{o}<|im_end|>\n<|im_start|>assistant\n") })
    }
}

fn is_default_timings(t: &TurnTimings) -> bool {
    *t == TurnTimings::default()
}

/// Reward parts of a scored trajectory, with the reason behind each part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rewards {
    pub overall: f64,
    pub format: f64,
    pub accuracy: f64,
    /// ViLaSR only (logged, not part of `overall`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflection: Option<f64>,
    /// Why each part has its value (e.g. which format rule failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Where a forked trajectory branched off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkOrigin {
    pub parent_id: String,
    /// 0-based turn of the parent the fork continues from.
    pub turn: usize,
}

/// A sample plus everything a model did on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    pub format_version: u32,
    pub id: String,
    pub protocol: Protocol,
    pub sample: Sample,
    /// The system prompt text as rendered (placeholders filled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The first user turn's text parts joined as the model saw them (vision triples included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_user_text: Option<String>,
    pub turns: Vec<Turn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewards: Option<Rewards>,
    /// Checkpoint or generator that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `eval` or `rl` executor profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_of: Option<ForkOrigin>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Trajectory {
    pub fn new(id: impl Into<String>, protocol: Protocol, sample: Sample) -> Self {
        Trajectory {
            format_version: TRAJECTORY_FORMAT_VERSION,
            id: id.into(),
            protocol,
            sample,
            system_prompt: None,
            first_user_text: None,
            turns: Vec::new(),
            finish_reason: None,
            rewards: None,
            model: None,
            profile: None,
            fork_of: None,
            tags: Vec::new(),
        }
    }

    /// Every image of the trajectory in index order: inputs (or frames), then observations.
    pub fn all_images(&self) -> Vec<&ImageRef> {
        let mut v: Vec<&ImageRef> = self.sample.media.images().iter().collect();
        for t in &self.turns {
            v.extend(t.observations.iter().map(|o| &o.image));
        }
        v
    }

    /// The last assistant text (what accuracy is scored on when the trajectory ended normally).
    pub fn final_text(&self) -> Option<&str> {
        self.turns.last().map(|t| t.assistant_text.as_str())
    }

    /// Parse a `trajectory.json` document; `origin` names the file in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, TrajectoryError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| TrajectoryError::Json {
            file: origin.to_string(),
            message: e.to_string(),
        })?;
        let version = v.get("format_version").and_then(|x| x.as_u64()).ok_or_else(|| {
            TrajectoryError::Json {
                file: origin.to_string(),
                message: "missing or non-integer field `format_version`".into(),
            }
        })?;
        if version > TRAJECTORY_FORMAT_VERSION as u64 {
            return Err(TrajectoryError::Version { file: origin.to_string(), found: version });
        }
        serde_json::from_value(v).map_err(|e| TrajectoryError::Json {
            file: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Pretty JSON with stable field order (the on-disk form).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("trajectory serialises");
        s.push('\n');
        s
    }

    /// Load `dir/trajectory.json`.
    pub fn load_dir(dir: &Path) -> Result<Self, TrajectoryError> {
        let file = dir.join(TRAJECTORY_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| TrajectoryError::Io {
            file: file.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, &file.display().to_string())
    }

    /// Write `dir/trajectory.json` atomically (temp file + rename). Images are written by the
    /// caller under `dir/images/` and referenced relative to `dir`.
    pub fn save_dir(&self, dir: &Path) -> Result<PathBuf, TrajectoryError> {
        std::fs::create_dir_all(dir).map_err(|e| TrajectoryError::Io {
            file: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let file = dir.join(TRAJECTORY_FILE);
        write_atomic(&file, self.to_json().as_bytes())?;
        Ok(file)
    }
}

/// Write `bytes` to `path` through a temporary sibling file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrajectoryError> {
    let io = |e: std::io::Error| TrajectoryError::Io { file: path.display().to_string(), message: e.to_string() };
    let parent = path.parent().unwrap_or(Path::new("."));
    if !parent.as_os_str().is_empty() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Errors reading or writing trajectories; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TrajectoryError {
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("{file}: not a valid trajectory document: {message}")]
    Json { file: String, message: String },
    #[error("{file}: trajectory format version {found} is newer than this Sightline understands (max {TRAJECTORY_FORMAT_VERSION})")]
    Version { file: String, found: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sample {
        Sample {
            id: "s1".into(),
            question: "Which is closer?".into(),
            question_type: "multiple choice".into(),
            options: Some(vec!["A. chair".into(), "B. table".into()]),
            ground_truth: Some("A".into()),
            data_type: "vqa".into(),
            media: Media::Images { images: vec![ImageRef::with_size("in/1.png", 448, 336)] },
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_through_json_and_disk() {
        let mut t = Trajectory::new("t1", Protocol::Vilasr, sample());
        t.turns.push(Turn {
            assistant_text: "<think>x</think> Action: Answer\n<answer>A</answer>".into(),
            finish_reason: Some(FinishReason::Stop),
            ..Default::default()
        });
        t.finish_reason = Some(FinishReason::ZoominFailed);
        let dir = tempfile::tempdir().unwrap();
        t.save_dir(dir.path()).unwrap();
        let back = Trajectory::load_dir(dir.path()).unwrap();
        assert_eq!(back, t);
        let text = std::fs::read_to_string(dir.path().join(TRAJECTORY_FILE)).unwrap();
        assert!(text.contains("\"finish_reason\": \"Zoomin failed\""));
        // Stable: serialising twice gives identical bytes.
        assert_eq!(back.to_json(), t.to_json());
    }

    #[test]
    fn refuses_newer_versions_and_names_the_file() {
        let mut v = serde_json::to_value(Trajectory::new("t", Protocol::Vilasr, sample())).unwrap();
        v["format_version"] = 99.into();
        let err = Trajectory::from_json(&v.to_string(), "x/trajectory.json").unwrap_err();
        assert!(err.to_string().contains("x/trajectory.json"));
        assert!(err.to_string().contains("99"));
        let err = Trajectory::from_json("{\"format_version\": 1, \"id\": 3}", "y.json").unwrap_err();
        assert!(err.to_string().starts_with("y.json"));
    }

    #[test]
    fn finish_reasons_use_reference_spelling() {
        for s in ["stop", "length", "rule", "ToolGenError", "ToolError", "TooManyImages", "IndexError", "max_tokens", "Zoomin failed"] {
            assert_eq!(FinishReason::parse(s).as_str(), s);
            assert!(!matches!(FinishReason::parse(s), FinishReason::Other(_)));
        }
        assert_eq!(FinishReason::parse("weird"), FinishReason::Other("weird".into()));
    }
}
