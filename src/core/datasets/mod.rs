//! Dataset formats of the ViLaSR / ViLaVT ecosystem: format detection, a streaming record index
//! with random access, conversion of records to the trajectory model ([`Sample`], [`Trajectory`]),
//! a LLaMA-Factory writer and validation.
//!
//! # Formats (protocol §4, §2.10)
//!
//! | [`DatasetFormat`] | file | record shape |
//! |---|---|---|
//! | `LlamaFactory` | `dataset_info.json` | entries `{file_name, formatting: "sharegpt", columns, tags}` naming sharegpt files |
//! | `Sharegpt` | one `.json` array / `.jsonl` | `{"conversations": [{"role", "content"}…], "images": […]}` |
//! | `VilasrRl` | `.jsonl` | `question, answer, image_path[], data_type, question_type, options?, grid_size` |
//! | `VilavtSft` | `.json` array / `.jsonl` | `{"conversations": [{"from", "value"}…], "images" \| "video", …}` |
//! | `VilavtRl` | `.jsonl` | `question, answer, image_path[], max_pixels, max_num_steps, question_type, data_type` |
//! | `Benchmark` | `.json` array | `question_id, question, answer, options?, problem_type, images[], …` |
//! | `VilasrResults` | `results.jsonl` | the input record plus `conversations, model_output, model_id, sample_dir` |
//!
//! # Dataset roots
//!
//! Image paths inside records are resolved against [`DatasetIndex::root`] and must stay inside it
//! ([`resolve_image`]). The root is:
//! * LLaMA-Factory: the folder holding `dataset_info.json` (LLaMA-Factory's `dataset_dir`);
//! * a lone sharegpt file: the folder of the nearest `dataset_info.json` (up to three levels up)
//!   whose entries name this file, else the file's own folder;
//! * everything else — ViLaSR RL (whose paths the reference opens relative to the *working
//!   directory*), ViLaVT SFT (relative to its registered `data_path`), ViLaVT RL, benchmarks
//!   (relative to `./benchmark/`, the folder holding them) and ViLaSR `results.jsonl` — the folder
//!   holding the file.
//!
//! Pass [`OpenOptions::root`] when the data was laid out differently. The root is canonicalised
//! when the index is opened, so every image path a [`Sample`] carries is absolute.
//!
//! # Record numbers
//!
//! Records are numbered from 0 within their file, in every error message and in
//! [`SourceRef::record`]. For LLaMA-Factory indexes spanning several files,
//! [`DatasetIndex::record`] takes the 0-based position in the whole index while messages name
//! the data file and the record's number inside it.

mod convert;
mod paths;
mod scan;
mod validate;
mod writer;

pub use convert::{IMAGE_PLACEHOLDER, IMAGE_TRIPLE, VIDEO_PLACEHOLDER, VIDEO_TRIPLE};
pub use paths::resolve_image;
pub use validate::{validate, RecordProblem, ValidationReport};
pub use writer::{write_llamafactory, ImagePaths, WriteOptions, WriteSummary};

pub(crate) use super::trajectory::{
    write_atomic, ImageRef, Media, Protocol, Sample, SourceRef, Trajectory, Turn,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name LLaMA-Factory reads its dataset registry from.
pub const DATASET_INFO: &str = "dataset_info.json";

/// Which dataset layout a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// A LLaMA-Factory `dataset_info.json` and the sharegpt files it names (ViLaSR SFT).
    LlamaFactory,
    /// One sharegpt file (`role`/`content` messages), JSON array or JSON lines.
    Sharegpt,
    /// ViLaSR GRPO data (`vilasr_rl_data.jsonl`).
    VilasrRl,
    /// ViLaVT SFT annotations (Qwen-VL finetune format, `from`/`value` messages).
    VilavtSft,
    /// ViLaVT GRPO data.
    VilavtRl,
    /// A benchmark JSON array (`ViLaVT/benchmark/*.json`, ViLaSR eval files).
    Benchmark,
    /// ViLaSR `eval/infer.py` output, `results.jsonl`.
    VilasrResults,
}

impl DatasetFormat {
    pub const ALL: [DatasetFormat; 7] = [
        DatasetFormat::LlamaFactory,
        DatasetFormat::Sharegpt,
        DatasetFormat::VilasrRl,
        DatasetFormat::VilavtSft,
        DatasetFormat::VilavtRl,
        DatasetFormat::Benchmark,
        DatasetFormat::VilasrResults,
    ];

    /// Stable lower-case name (`llamafactory`, `sharegpt`, `vilasr-rl`, …).
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::LlamaFactory => "llamafactory",
            DatasetFormat::Sharegpt => "sharegpt",
            DatasetFormat::VilasrRl => "vilasr-rl",
            DatasetFormat::VilavtSft => "vilavt-sft",
            DatasetFormat::VilavtRl => "vilavt-rl",
            DatasetFormat::Benchmark => "benchmark",
            DatasetFormat::VilasrResults => "vilasr-results",
        }
    }

    /// Parse [`DatasetFormat::name`] (also accepts `_` for `-`).
    pub fn from_name(s: &str) -> Option<DatasetFormat> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        DatasetFormat::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Records hold a conversation, so [`Record::to_trajectory`] applies.
    pub fn has_conversation(self) -> bool {
        matches!(
            self,
            DatasetFormat::LlamaFactory | DatasetFormat::Sharegpt | DatasetFormat::VilavtSft | DatasetFormat::VilasrResults
        )
    }

    /// The protocol whose prompts/trajectories the format carries.
    pub fn protocol(self) -> Protocol {
        match self {
            DatasetFormat::VilavtSft | DatasetFormat::VilavtRl => Protocol::Vilavt,
            _ => Protocol::Vilasr,
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a problem is: a file, optionally a 0-based record number in it and a field (a key, or
/// a path such as `conversations[3].content`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub record: Option<usize>,
    pub field: Option<String>,
}

impl Location {
    pub fn file(file: impl Into<String>) -> Self {
        Location { file: file.into(), record: None, field: None }
    }
    pub fn record(file: impl Into<String>, record: usize) -> Self {
        Location { file: file.into(), record: Some(record), field: None }
    }
    pub fn field(file: impl Into<String>, record: usize, field: impl Into<String>) -> Self {
        Location { file: file.into(), record: Some(record), field: Some(field.into()) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(r) = self.record {
            write!(f, ": record {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field \"{field}\"")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong reading, converting, validating or writing a dataset. Every
/// message starts with the file, then (when known) the record number and the field, e.g.
/// `data/rl.jsonl: record 17: field "image_path": expected a list of strings, found number`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DatasetError {
    #[error("{loc}: cannot read: {message}")]
    Io { loc: Location, message: String },
    #[error("{loc}: not valid UTF-8 (invalid byte at file offset {offset})")]
    NotUtf8 { loc: Location, offset: u64 },
    #[error("{loc}: truncated JSON: {detail}")]
    Truncated { loc: Location, detail: String },
    #[error("{loc}: invalid JSON: {detail}")]
    Syntax { loc: Location, detail: String },
    #[error("{loc}: wrong shape: expected {expected}, found {found}")]
    Shape { loc: Location, expected: String, found: String },
    #[error("{loc}: required field is missing")]
    MissingField { loc: Location },
    #[error("{loc}: expected {expected}, found {found}")]
    FieldType { loc: Location, expected: String, found: String },
    #[error("{loc}: image path \"{path}\" {reason}")]
    PathEscape { loc: Location, path: String, reason: String },
    #[error("{loc}: the conversation has {placeholders} {placeholder} placeholder(s) but the record lists {listed}")]
    PlaceholderCount { loc: Location, placeholder: String, placeholders: usize, listed: usize },
    #[error("{loc}: image \"{path}\" does not exist ({resolved})")]
    ImageMissing { loc: Location, path: String, resolved: String },
    #[error("{loc}: {message}")]
    Invalid { loc: Location, message: String },
    #[error("{loc}: cannot tell the dataset format: {reason}")]
    UnknownFormat { loc: Location, reason: String },
    #[error("{loc}: record {index} is out of range (the index holds {len} records)")]
    OutOfRange { loc: Location, index: usize, len: usize },
    #[error("{loc}: cannot write: {message}")]
    Write { loc: Location, message: String },
}

impl DatasetError {
    /// Where the problem is.
    pub fn location(&self) -> &Location {
        match self {
            DatasetError::Io { loc, .. }
            | DatasetError::NotUtf8 { loc, .. }
            | DatasetError::Truncated { loc, .. }
            | DatasetError::Syntax { loc, .. }
            | DatasetError::Shape { loc, .. }
            | DatasetError::MissingField { loc }
            | DatasetError::FieldType { loc, .. }
            | DatasetError::PathEscape { loc, .. }
            | DatasetError::PlaceholderCount { loc, .. }
            | DatasetError::ImageMissing { loc, .. }
            | DatasetError::Invalid { loc, .. }
            | DatasetError::UnknownFormat { loc, .. }
            | DatasetError::OutOfRange { loc, .. }
            | DatasetError::Write { loc, .. } => loc,
        }
    }

    fn location_mut(&mut self) -> &mut Location {
        match self {
            DatasetError::Io { loc, .. }
            | DatasetError::NotUtf8 { loc, .. }
            | DatasetError::Truncated { loc, .. }
            | DatasetError::Syntax { loc, .. }
            | DatasetError::Shape { loc, .. }
            | DatasetError::MissingField { loc }
            | DatasetError::FieldType { loc, .. }
            | DatasetError::PathEscape { loc, .. }
            | DatasetError::PlaceholderCount { loc, .. }
            | DatasetError::ImageMissing { loc, .. }
            | DatasetError::Invalid { loc, .. }
            | DatasetError::UnknownFormat { loc, .. }
            | DatasetError::OutOfRange { loc, .. }
            | DatasetError::Write { loc, .. } => loc,
        }
    }

    /// Re-home the error at a file/record/field (used to give [`resolve_image`] errors their
    /// record context).
    pub fn at(mut self, file: &str, record: usize, field: &str) -> Self {
        *self.location_mut() = Location::field(file, record, field);
        self
    }

    /// A short stable name of the kind of problem (for counting in reports).
    pub fn kind(&self) -> &'static str {
        match self {
            DatasetError::Io { .. } => "unreadable",
            DatasetError::NotUtf8 { .. } => "not utf-8",
            DatasetError::Truncated { .. } => "truncated json",
            DatasetError::Syntax { .. } => "invalid json",
            DatasetError::Shape { .. } => "wrong shape",
            DatasetError::MissingField { .. } => "missing field",
            DatasetError::FieldType { .. } => "wrong field type",
            DatasetError::PathEscape { .. } => "path escapes root",
            DatasetError::PlaceholderCount { .. } => "placeholder count",
            DatasetError::ImageMissing { .. } => "image missing",
            DatasetError::Invalid { .. } => "invalid record",
            DatasetError::UnknownFormat { .. } => "unknown format",
            DatasetError::OutOfRange { .. } => "out of range",
            DatasetError::Write { .. } => "write failed",
        }
    }
}

fn io_err(file: &str, e: &std::io::Error) -> DatasetError {
    DatasetError::Io { loc: Location::file(file), message: e.to_string() }
}

fn scan_err(file: &str, e: scan::ScanError) -> DatasetError {
    match e {
        scan::ScanError::Io(e) => io_err(file, &e),
        scan::ScanError::Truncated { record, detail } => {
            DatasetError::Truncated { loc: Location { file: file.into(), record, field: None }, detail }
        }
        scan::ScanError::Syntax { record, detail } => {
            DatasetError::Syntax { loc: Location { file: file.into(), record, field: None }, detail }
        }
    }
}

/// JSON type name as used in messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------------

/// Tell a dataset's format from its file name and the keys of its first record.
///
/// * a directory holding `dataset_info.json`, a file named `dataset_info.json`, or a JSON object
///   whose values are dataset entries (`file_name`, `formatting`, …) → `LlamaFactory`;
/// * `conversations` + `model_output` → `VilasrResults` (also an empty `results.jsonl`);
/// * `conversations` (or `messages`) whose first message has `from`/`value` → `VilavtSft`,
///   `role`/`content` → `Sharegpt`;
/// * `image_path` + `max_pixels` and/or `max_num_steps` → `VilavtRl`; `image_path` + `grid_size`
///   → `VilasrRl`; `image_path` + `problem_type` → `Benchmark` (ViLaSR eval files);
///   `image_path` + `question_type` → `VilasrRl`;
/// * `images` with `question_id`, `problem_type` or `question` → `Benchmark`.
pub fn detect_format(path: impl AsRef<Path>) -> Result<DatasetFormat, DatasetError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    if path.is_dir() {
        if path.join(DATASET_INFO).is_file() {
            return Ok(DatasetFormat::LlamaFactory);
        }
        return Err(DatasetError::UnknownFormat {
            loc: Location::file(shown),
            reason: format!("a directory without {DATASET_INFO}"),
        });
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name == DATASET_INFO {
        return Ok(DatasetFormat::LlamaFactory);
    }
    let first = match peek_first_record(path, &shown)? {
        Some(v) => v,
        None => {
            if name == "results.jsonl" {
                return Ok(DatasetFormat::VilasrResults);
            }
            return Err(DatasetError::UnknownFormat { loc: Location::file(shown), reason: "the file holds no records".into() });
        }
    };
    let Value::Object(obj) = &first else {
        return Err(DatasetError::UnknownFormat {
            loc: Location::record(shown, 0),
            reason: format!("the first record is a {}, not an object", type_name(&first)),
        });
    };
    classify(obj).ok_or_else(|| {
        let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).take(20).collect();
        DatasetError::UnknownFormat {
            loc: Location::record(shown, 0),
            reason: format!("no known format has the keys [{}]", keys.join(", ")),
        }
    })
}

fn classify(obj: &Map<String, Value>) -> Option<DatasetFormat> {
    let has = |k: &str| obj.contains_key(k);
    if looks_like_dataset_info(obj) {
        return Some(DatasetFormat::LlamaFactory);
    }
    if has("conversations") || has("messages") {
        if has("model_output") {
            return Some(DatasetFormat::VilasrResults);
        }
        let conv = obj.get("conversations").or_else(|| obj.get("messages"));
        if let Some(Value::Array(msgs)) = conv {
            if let Some(Value::Object(m)) = msgs.first() {
                if m.contains_key("from") || m.contains_key("value") {
                    return Some(DatasetFormat::VilavtSft);
                }
                if matches!(m.get("content"), Some(Value::Array(_))) {
                    return Some(DatasetFormat::VilasrResults);
                }
            }
        }
        return Some(DatasetFormat::Sharegpt);
    }
    if has("image_path") {
        if has("max_pixels") || has("max_num_steps") {
            return Some(DatasetFormat::VilavtRl);
        }
        if has("grid_size") {
            return Some(DatasetFormat::VilasrRl);
        }
        if has("problem_type") {
            return Some(DatasetFormat::Benchmark);
        }
        if has("question_type") {
            return Some(DatasetFormat::VilasrRl);
        }
        return None;
    }
    if has("images") && (has("question_id") || has("problem_type") || has("question")) {
        return Some(DatasetFormat::Benchmark);
    }
    None
}

fn looks_like_dataset_info(obj: &Map<String, Value>) -> bool {
    const ENTRY_KEYS: [&str; 6] = ["file_name", "hf_hub_url", "ms_hub_url", "script_url", "om_hub_url", "cloud_file_name"];
    !obj.is_empty()
        && obj.values().all(|v| v.is_object())
        && obj.values().any(|v| v.as_object().is_some_and(|e| ENTRY_KEYS.iter().any(|k| e.contains_key(*k))))
}

/// Parse the first record of a data file (JSON array element, JSON line, or a lone object).
fn peek_first_record(path: &Path, shown: &str) -> Result<Option<Value>, DatasetError> {
    let file = File::open(path).map_err(|e| io_err(shown, &e))?;
    let (layout, spans) = scan::scan(&file, Some(1)).map_err(|e| scan_err(shown, e))?;
    let Some(span) = spans.first().copied() else { return Ok(None) };
    let bytes = read_span(&file, path, shown, span)?;
    match parse_value(&bytes, shown, 0, span.offset) {
        Ok(v) => Ok(Some(v)),
        Err(e) if layout == scan::Layout::Lines => {
            // Perhaps a pretty-printed object spanning several lines.
            let file = File::open(path).map_err(|e| io_err(shown, &e))?;
            match scan::first_object(std::io::BufReader::new(file), 256 << 20) {
                Ok(Some(span)) => {
                    let f = File::open(path).map_err(|e| io_err(shown, &e))?;
                    let bytes = read_span(&f, path, shown, span)?;
                    parse_value(&bytes, shown, 0, span.offset).map(Some).map_err(|_| e)
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn parse_value(bytes: &[u8], file: &str, record: usize, offset: u64) -> Result<Value, DatasetError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DatasetError::NotUtf8 {
        loc: Location::record(file, record),
        offset: offset + e.valid_up_to() as u64,
    })?;
    serde_json::from_str(text).map_err(|e| {
        let loc = Location::record(file, record);
        if e.is_eof() {
            DatasetError::Truncated { loc, detail: format!("the record ends early ({e})") }
        } else {
            DatasetError::Syntax { loc, detail: e.to_string() }
        }
    })
}

fn read_span(file: &File, path: &Path, shown: &str, span: scan::RawSpan) -> Result<Vec<u8>, DatasetError> {
    let len = usize::try_from(span.len).map_err(|_| DatasetError::Invalid {
        loc: Location::file(shown),
        message: format!("a record of {} bytes is too large", span.len),
    })?;
    let mut buf = vec![0u8; len];
    read_exact_at(file, path, &mut buf, span.offset).map_err(|e| DatasetError::Io {
        loc: Location::file(shown),
        message: format!("{e} (reading {len} bytes at offset {}; did the file change since it was indexed?)", span.offset),
    })?;
    Ok(buf)
}

#[cfg(unix)]
fn read_exact_at(file: &File, _path: &Path, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, _path: &Path, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn read_exact_at(_file: &File, path: &Path, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

// ---------------------------------------------------------------------------------------------
// Sharegpt column/tag specification
// ---------------------------------------------------------------------------------------------

/// Which keys a sharegpt-like record uses (LLaMA-Factory `columns` + `tags`). Message keys and
/// role names fall back to the other common spelling (`role`/`content` ↔ `from`/`value`,
/// `user` ↔ `human`, `assistant` ↔ `gpt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SharegptSpec {
    pub messages: String,
    pub images: Option<String>,
    pub videos: Option<String>,
    pub system: Option<String>,
    pub role_tag: String,
    pub content_tag: String,
    pub user_tag: String,
    pub assistant_tag: String,
    pub system_tag: String,
    pub observation_tag: String,
    pub function_tag: String,
}

impl SharegptSpec {
    /// LLaMA-Factory's sharegpt defaults (`from`/`value`/`human`/`gpt`), no image column.
    fn llamafactory_default() -> Self {
        SharegptSpec {
            messages: "conversations".into(),
            images: None,
            videos: None,
            system: None,
            role_tag: "from".into(),
            content_tag: "value".into(),
            user_tag: "human".into(),
            assistant_tag: "gpt".into(),
            system_tag: "system".into(),
            observation_tag: "observation".into(),
            function_tag: "function_call".into(),
        }
    }

    /// A standalone sharegpt file as ViLaSR writes it (protocol §4.1).
    fn role_content() -> Self {
        SharegptSpec {
            images: Some("images".into()),
            videos: Some("videos".into()),
            role_tag: "role".into(),
            content_tag: "content".into(),
            user_tag: "user".into(),
            assistant_tag: "assistant".into(),
            ..Self::llamafactory_default()
        }
    }

    /// ViLaVT SFT annotations (protocol §4.3).
    fn vilavt_sft() -> Self {
        SharegptSpec { images: Some("images".into()), videos: Some("video".into()), ..Self::llamafactory_default() }
    }

    /// Apply a `dataset_info.json` entry's `columns` and `tags`.
    fn from_entry(entry: &Map<String, Value>) -> Self {
        let mut s = Self::llamafactory_default();
        let get = |m: Option<&Value>, k: &str| m.and_then(|c| c.get(k)).and_then(|v| v.as_str()).map(str::to_string);
        let cols = entry.get("columns");
        if let Some(v) = get(cols, "messages") {
            s.messages = v;
        }
        s.images = get(cols, "images");
        s.videos = get(cols, "videos");
        s.system = get(cols, "system");
        let tags = entry.get("tags");
        for (key, slot) in [
            ("role_tag", &mut s.role_tag),
            ("content_tag", &mut s.content_tag),
            ("user_tag", &mut s.user_tag),
            ("assistant_tag", &mut s.assistant_tag),
            ("system_tag", &mut s.system_tag),
            ("observation_tag", &mut s.observation_tag),
            ("function_tag", &mut s.function_tag),
        ] {
            if let Some(v) = get(tags, key) {
                *slot = v;
            }
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Index
// ---------------------------------------------------------------------------------------------

/// Byte range of one record: which indexed file, where it starts and how long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    pub offset: u64,
    pub len: u32,
    /// Position of the file in [`DatasetIndex::files`].
    pub file: u32,
}

/// One data file of an index.
#[derive(Debug)]
pub struct IndexedFile {
    /// The path, as opened.
    pub path: PathBuf,
    /// The path as shown in messages and [`SourceRef::file`].
    pub display: String,
    /// LLaMA-Factory dataset name (entry key) or benchmark name (file stem).
    pub dataset: Option<String>,
    /// Number of records in this file.
    pub records: usize,
    /// Index of this file's first record in the whole index.
    pub first_record: usize,
    handle: File,
    spec: Option<Arc<SharegptSpec>>,
}

/// How to open a dataset.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Force a format instead of detecting it.
    pub format: Option<DatasetFormat>,
    /// Resolve images against this folder instead of the format's default root.
    pub root: Option<PathBuf>,
    /// LLaMA-Factory: index only these entries of `dataset_info.json` (default: every sharegpt
    /// entry whose file exists).
    pub datasets: Option<Vec<String>>,
}

/// A random-access index of a dataset's records, built by streaming over the file(s) once and
/// remembering where each record starts and ends. Records are parsed only when asked for.
#[derive(Debug)]
pub struct DatasetIndex {
    /// The path opened (for LLaMA-Factory: the `dataset_info.json`).
    pub path: PathBuf,
    pub format: DatasetFormat,
    /// Dataset root for image resolution (canonical when it exists).
    pub root: PathBuf,
    entries: Vec<RecordSpan>,
    files: Vec<IndexedFile>,
    skipped: Vec<String>,
}

impl DatasetIndex {
    /// Detect the format and index the dataset.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DatasetError> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Index the dataset as `format`.
    pub fn open_as(path: impl AsRef<Path>, format: DatasetFormat) -> Result<Self, DatasetError> {
        Self::open_with(path, &OpenOptions { format: Some(format), ..Default::default() })
    }

    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self, DatasetError> {
        let path = path.as_ref();
        let format = match options.format {
            Some(f) => f,
            None => detect_format(path)?,
        };
        if format == DatasetFormat::LlamaFactory {
            return Self::open_llamafactory(path, options);
        }
        let shown = path.display().to_string();
        let root_dir = match &options.root {
            Some(r) => r.clone(),
            None if format == DatasetFormat::Sharegpt => sharegpt_root(path),
            None => parent_dir(path),
        };
        let spec = match format {
            DatasetFormat::Sharegpt => Some(Arc::new(
                find_registered_spec(path).unwrap_or_else(SharegptSpec::role_content),
            )),
            DatasetFormat::VilavtSft => Some(Arc::new(SharegptSpec::vilavt_sft())),
            _ => None,
        };
        let dataset = match format {
            DatasetFormat::Benchmark => file_stem(path),
            _ => None,
        };
        let mut index = DatasetIndex {
            path: path.to_path_buf(),
            format,
            root: canonical_or(root_dir),
            entries: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
        };
        index.add_file(path.to_path_buf(), shown, dataset, spec)?;
        Ok(index)
    }

    fn open_llamafactory(path: &Path, options: &OpenOptions) -> Result<Self, DatasetError> {
        let info_path = if path.is_dir() { path.join(DATASET_INFO) } else { path.to_path_buf() };
        let shown = info_path.display().to_string();
        let dir = parent_dir(&info_path);
        let bytes = std::fs::read(&info_path).map_err(|e| io_err(&shown, &e))?;
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes);
        let info = match parse_value(body, &shown, 0, 0) {
            Ok(v) => v,
            Err(e) => {
                let mut loc = e.location().clone();
                loc.record = None;
                return Err(match e {
                    DatasetError::NotUtf8 { offset, .. } => DatasetError::NotUtf8 { loc, offset },
                    DatasetError::Truncated { detail, .. } => DatasetError::Truncated { loc, detail },
                    DatasetError::Syntax { detail, .. } => DatasetError::Syntax { loc, detail },
                    other => other,
                });
            }
        };
        let Value::Object(info) = info else {
            return Err(DatasetError::Shape {
                loc: Location::file(&shown),
                expected: "a JSON object of dataset entries".into(),
                found: type_name(&info).into(),
            });
        };
        let root_dir = options.root.clone().unwrap_or_else(|| dir.clone());
        let mut index = DatasetIndex {
            path: info_path.clone(),
            format: DatasetFormat::LlamaFactory,
            root: canonical_or(root_dir),
            entries: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
        };
        if let Some(wanted) = &options.datasets {
            for w in wanted {
                if !info.contains_key(w) {
                    return Err(DatasetError::Invalid {
                        loc: Location::file(&shown),
                        message: format!("no dataset named \"{w}\" (it has: {})", info.keys().cloned().collect::<Vec<_>>().join(", ")),
                    });
                }
            }
        }
        for (name, entry) in &info {
            if let Some(wanted) = &options.datasets {
                if !wanted.iter().any(|w| w == name) {
                    continue;
                }
            }
            let Some(entry) = entry.as_object() else {
                index.skipped.push(format!("{name}: entry is a {}, not an object", type_name(entry)));
                continue;
            };
            let formatting = entry.get("formatting").and_then(|v| v.as_str()).unwrap_or("alpaca");
            if formatting != "sharegpt" {
                index.skipped.push(format!("{name}: formatting \"{formatting}\" is not supported (only sharegpt)"));
                continue;
            }
            let Some(file_name) = entry.get("file_name").and_then(|v| v.as_str()) else {
                index.skipped.push(format!("{name}: no local file_name (hub datasets are not read)"));
                continue;
            };
            let rel = match paths::normalise_relative(file_name) {
                Ok(r) => r,
                Err(reason) => {
                    index.skipped.push(format!("{name}: file_name \"{file_name}\" {reason}"));
                    continue;
                }
            };
            let data_path = dir.join(&rel);
            let spec = Arc::new(SharegptSpec::from_entry(entry));
            let files: Vec<PathBuf> = if data_path.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&data_path)
                    .map_err(|e| io_err(&data_path.display().to_string(), &e))?
                    .filter_map(|d| d.ok().map(|d| d.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
                    .collect();
                v.sort();
                v
            } else if data_path.is_file() {
                vec![data_path.clone()]
            } else {
                index.skipped.push(format!("{name}: file {} does not exist", data_path.display()));
                continue;
            };
            for f in files {
                let shown_f = f.display().to_string();
                index.add_file(f, shown_f, Some(name.clone()), Some(spec.clone()))?;
            }
        }
        if index.files.is_empty() {
            return Err(DatasetError::Invalid {
                loc: Location::file(&shown),
                message: if index.skipped.is_empty() {
                    "no dataset entries".into()
                } else {
                    format!("no readable sharegpt dataset: {}", index.skipped.join("; "))
                },
            });
        }
        Ok(index)
    }

    fn add_file(
        &mut self,
        path: PathBuf,
        display: String,
        dataset: Option<String>,
        spec: Option<Arc<SharegptSpec>>,
    ) -> Result<(), DatasetError> {
        let file = File::open(&path).map_err(|e| io_err(&display, &e))?;
        let (_, spans) = scan::scan(&file, None).map_err(|e| scan_err(&display, e))?;
        let file_no = u32::try_from(self.files.len()).map_err(|_| DatasetError::Invalid {
            loc: Location::file(&display),
            message: "too many files".into(),
        })?;
        let first_record = self.entries.len();
        self.entries.reserve(spans.len());
        for (i, s) in spans.iter().enumerate() {
            let len = u32::try_from(s.len).map_err(|_| DatasetError::Invalid {
                loc: Location::record(&display, i),
                message: format!("the record is {} bytes long (at most 4 GiB are supported)", s.len),
            })?;
            self.entries.push(RecordSpan { offset: s.offset, len, file: file_no });
        }
        self.files.push(IndexedFile { path, display, dataset, records: spans.len(), first_record, handle: file, spec });
        Ok(())
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Record spans, in index order.
    pub fn spans(&self) -> &[RecordSpan] {
        &self.entries
    }

    /// The data files indexed (one, except for LLaMA-Factory).
    pub fn files(&self) -> &[IndexedFile] {
        &self.files
    }

    /// LLaMA-Factory entries that were not indexed, with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Read and parse record `i` (0-based position in the index).
    pub fn record(&self, i: usize) -> Result<Record, DatasetError> {
        let span = *self.entries.get(i).ok_or_else(|| DatasetError::OutOfRange {
            loc: Location::file(self.path.display().to_string()),
            index: i,
            len: self.entries.len(),
        })?;
        let f = &self.files[span.file as usize];
        let file_record = i - f.first_record;
        let bytes = read_span(&f.handle, &f.path, &f.display, scan::RawSpan { offset: span.offset, len: span.len as u64 })
            .map_err(|mut e| {
                e.location_mut().record = Some(file_record);
                e
            })?;
        let value = parse_value(&bytes, &f.display, file_record, span.offset)?;
        let Value::Object(fields) = value else {
            return Err(DatasetError::Shape {
                loc: Location::record(&f.display, file_record),
                expected: "a JSON object".into(),
                found: type_name(&value).into(),
            });
        };
        Ok(Record {
            index: i,
            file: f.display.clone(),
            file_record,
            format: self.format,
            dataset: f.dataset.clone(),
            root: self.root.clone(),
            fields,
            spec: f.spec.clone(),
        })
    }

    /// Every record in order (each parsed on demand).
    pub fn iter(&self) -> impl Iterator<Item = Result<Record, DatasetError>> + '_ {
        (0..self.len()).map(move |i| self.record(i))
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn canonical_or(p: PathBuf) -> PathBuf {
    std::fs::canonicalize(&p).unwrap_or(p)
}

fn file_stem(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// The `dataset_info.json` (this folder or up to three above) that registers `path`, with the
/// entry registering it.
fn registering_info(path: &Path) -> Option<(PathBuf, Map<String, Value>)> {
    let target = std::fs::canonicalize(path).ok()?;
    let mut dir = std::fs::canonicalize(parent_dir(path)).ok()?;
    for _ in 0..4 {
        let info = dir.join(DATASET_INFO);
        if info.is_file() {
            if let Ok(Value::Object(obj)) =
                std::fs::read(&info).map_err(|_| ()).and_then(|b| {
                    let body = b.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&b);
                    serde_json::from_slice::<Value>(body).map_err(|_| ())
                })
            {
                for entry in obj.values() {
                    let Some(e) = entry.as_object() else { continue };
                    let Some(f) = e.get("file_name").and_then(|v| v.as_str()) else { continue };
                    let Ok(rel) = paths::normalise_relative(f) else { continue };
                    if std::fs::canonicalize(dir.join(rel)).ok().as_deref() == Some(target.as_path()) {
                        return Some((dir, e.clone()));
                    }
                }
            }
        }
        if !dir.pop() {
            break;
        }
    }
    None
}

fn sharegpt_root(path: &Path) -> PathBuf {
    registering_info(path).map(|(dir, _)| dir).unwrap_or_else(|| parent_dir(path))
}

fn find_registered_spec(path: &Path) -> Option<SharegptSpec> {
    registering_info(path).map(|(_, e)| SharegptSpec::from_entry(&e))
}

/// One parsed record with enough context to convert it and to name it in errors.
#[derive(Clone, Debug)]
pub struct Record {
    /// 0-based position in the index.
    pub index: usize,
    /// The data file, as shown in messages.
    pub file: String,
    /// 0-based record number inside `file`.
    pub file_record: usize,
    pub format: DatasetFormat,
    /// LLaMA-Factory entry name or benchmark name.
    pub dataset: Option<String>,
    /// Dataset root for image resolution.
    pub root: PathBuf,
    /// The record's fields, in file order.
    pub fields: Map<String, Value>,
    spec: Option<Arc<SharegptSpec>>,
}

impl Record {
    /// Build a record from parsed fields (for records that did not come from an index, e.g.
    /// tests or pasted JSON). `file` names it in errors.
    pub fn from_fields(
        format: DatasetFormat,
        fields: Map<String, Value>,
        file: impl Into<String>,
        record: usize,
        root: impl Into<PathBuf>,
    ) -> Record {
        let spec = match format {
            DatasetFormat::Sharegpt => Some(Arc::new(SharegptSpec::role_content())),
            DatasetFormat::LlamaFactory => {
                let mut e = Map::new();
                e.insert("columns".into(), serde_json::json!({"messages": "conversations", "images": "images"}));
                e.insert(
                    "tags".into(),
                    serde_json::json!({"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}),
                );
                Some(Arc::new(SharegptSpec::from_entry(&e)))
            }
            DatasetFormat::VilavtSft => Some(Arc::new(SharegptSpec::vilavt_sft())),
            _ => None,
        };
        Record { index: record, file: file.into(), file_record: record, format, dataset: None, root: canonical_or(root.into()), fields, spec }
    }

    pub(crate) fn loc(&self) -> Location {
        Location::record(&self.file, self.file_record)
    }

    pub(crate) fn field_loc(&self, field: &str) -> Location {
        Location::field(&self.file, self.file_record, field)
    }

    pub(crate) fn spec(&self) -> Arc<SharegptSpec> {
        self.spec.clone().unwrap_or_else(|| Arc::new(SharegptSpec::role_content()))
    }

    /// Where this record came from.
    pub fn source(&self) -> SourceRef {
        SourceRef { file: self.file.clone(), record: self.file_record, dataset: self.dataset.clone() }
    }
}

#[cfg(test)]
mod tests;
