//! LLaMA-Factory writer: trajectories → one sharegpt JSON file plus a merged
//! `dataset_info.json` entry (protocol §4.1), both written atomically.
//!
//! Each trajectory becomes `{"conversations": [...], "images": [...]}`:
//! * `system` — [`Trajectory::system_prompt`], when present and [`WriteOptions::include_system`];
//! * first `user` — [`Trajectory::first_user_text`] with every vision triple turned back into an
//!   `<image>` placeholder, when it holds exactly one per input image; otherwise one `<image>` per
//!   input image followed by [`Sample::question`](super::Sample::question);
//! * per turn an `assistant` message (text verbatim) and, when the turn has observations or
//!   observation text, a `user` message: the observation text (chat markup stripped, vision
//!   triples → `<image>`), prefixed with one `<image>` per observation if it holds none.
//!   A trailing observation turn with no assistant reply is dropped (LLaMA-Factory requires the
//!   conversation to end with the assistant), together with its images.
//!
//! `images` lists the input images then the observation images, in placeholder order.

use super::convert::{IMAGE_PLACEHOLDER, IMAGE_TRIPLE, VIDEO_PLACEHOLDER, VIDEO_TRIPLE};
use super::{paths, write_atomic, DatasetError, ImageRef, Location, Trajectory, DATASET_INFO};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// How image paths are written into the sharegpt file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ImagePaths {
    /// Relative to `out_dir` (LLaMA-Factory's `dataset_dir`): absolute paths inside `out_dir`
    /// are made relative; relative paths are taken as already relative to `out_dir` and must
    /// not climb out of it; absolute paths elsewhere are an error.
    #[default]
    Relative,
    /// Exactly as the trajectories hold them. LLaMA-Factory accepts absolute paths, but this
    /// crate's reader refuses them.
    AsIs,
    /// Copy every image into `out_dir/<dataset_name>_images/` and reference the copies.
    /// Relative source paths are resolved against `base` (default: the current directory).
    Copy { base: Option<PathBuf> },
}

/// Options of [`write_llamafactory`].
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Write the trajectory's system prompt as a leading `system` message.
    pub include_system: bool,
    pub image_paths: ImagePaths,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { include_system: true, image_paths: ImagePaths::Relative }
    }
}

/// What [`write_llamafactory`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteSummary {
    /// `<out_dir>/<dataset_name>.json`.
    pub data_file: PathBuf,
    /// `<out_dir>/dataset_info.json`.
    pub dataset_info: PathBuf,
    /// Records written.
    pub records: usize,
    /// Image references written (copied, with [`ImagePaths::Copy`]).
    pub images: usize,
    /// Trajectories left out, with the reason (`<id>: …`).
    pub skipped: Vec<String>,
    /// Trailing observation turns dropped because no assistant reply followed them.
    pub dropped_trailing_observations: usize,
}

/// Write `trajectories` as the LLaMA-Factory sharegpt dataset `dataset_name` in `out_dir`:
/// `<dataset_name>.json` plus a `dataset_info.json` entry (created, or merged into an existing
/// file, replacing an entry of the same name). Trajectories without any assistant turn are
/// skipped (listed in the summary).
pub fn write_llamafactory(
    out_dir: &Path,
    dataset_name: &str,
    trajectories: &[Trajectory],
    options: &WriteOptions,
) -> Result<WriteSummary, DatasetError> {
    let out_shown = out_dir.display().to_string();
    if dataset_name.is_empty()
        || dataset_name.starts_with('.')
        || dataset_name.contains(['/', '\\', '\0'])
        || dataset_name.contains("..")
    {
        return Err(DatasetError::Write {
            loc: Location::file(&out_shown),
            message: format!("\"{dataset_name}\" is not a usable dataset name (no path separators, no leading dot)"),
        });
    }
    std::fs::create_dir_all(out_dir)
        .map_err(|e| DatasetError::Write { loc: Location::file(&out_shown), message: e.to_string() })?;
    let data_name = format!("{dataset_name}.json");
    let data_file = out_dir.join(&data_name);
    let info_file = out_dir.join(DATASET_INFO);
    let info_shown = info_file.display().to_string();

    // Read the registry first so a broken one is reported before anything is written.
    let mut info: Map<String, Value> = match std::fs::read(&info_file) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => m,
            Ok(other) => {
                return Err(DatasetError::Shape {
                    loc: Location::file(&info_shown),
                    expected: "a JSON object of dataset entries".into(),
                    found: super::type_name(&other).into(),
                })
            }
            Err(e) => {
                return Err(DatasetError::Syntax {
                    loc: Location::file(&info_shown),
                    detail: format!("{e} (refusing to overwrite it)"),
                })
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(DatasetError::Io { loc: Location::file(&info_shown), message: e.to_string() }),
    };

    let canon_out = std::fs::canonicalize(out_dir).unwrap_or_else(|_| out_dir.to_path_buf());
    let mut summary = WriteSummary {
        data_file: data_file.clone(),
        dataset_info: info_file.clone(),
        records: 0,
        images: 0,
        skipped: Vec::new(),
        dropped_trailing_observations: 0,
    };
    let mut out = String::from("[\n");
    let data_shown = data_file.display().to_string();
    for (ti, t) in trajectories.iter().enumerate() {
        let err = |message: String| DatasetError::Write {
            loc: Location::record(&data_shown, summary.records),
            message: format!("trajectory {ti} (\"{}\"): {message}", t.id),
        };
        if t.turns.is_empty() {
            summary.skipped.push(format!("{}: no assistant turn", t.id));
            continue;
        }
        let mut conversations: Vec<Value> = Vec::new();
        let mut images: Vec<&ImageRef> = Vec::new();
        if options.include_system {
            if let Some(s) = &t.system_prompt {
                conversations.push(json!({"role": "system", "content": s}));
            }
        }
        let inputs = t.sample.media.images();
        let is_video_file = t.sample.media.is_video() && inputs.is_empty();
        if is_video_file {
            return Err(err("the input is a video file without frames; LLaMA-Factory video export is not supported".into()));
        }
        let first = t
            .first_user_text
            .as_deref()
            .map(from_model_text)
            .filter(|s| s.matches(IMAGE_PLACEHOLDER).count() == inputs.len() && !s.contains(VIDEO_PLACEHOLDER))
            .unwrap_or_else(|| format!("{}{}", IMAGE_PLACEHOLDER.repeat(inputs.len()), t.sample.question));
        conversations.push(json!({"role": "user", "content": first}));
        images.extend(inputs.iter());
        let last = t.turns.len() - 1;
        for (k, turn) in t.turns.iter().enumerate() {
            conversations.push(json!({"role": "assistant", "content": turn.assistant_text}));
            let has_obs = !turn.observations.is_empty() || turn.observation_text.is_some();
            if !has_obs {
                continue;
            }
            if k == last {
                summary.dropped_trailing_observations += 1;
                continue;
            }
            let n = turn.observations.len();
            let text = turn.observation_text.as_deref().map(|s| from_model_text(strip_chat_markup(s))).unwrap_or_default();
            let c = text.matches(IMAGE_PLACEHOLDER).count();
            let content = if c == n {
                text
            } else if c == 0 {
                format!("{}{}", IMAGE_PLACEHOLDER.repeat(n), text)
            } else {
                return Err(err(format!(
                    "turn {k}: the observation text holds {c} image placeholders but the turn has {n} observations"
                )));
            };
            conversations.push(json!({"role": "user", "content": content}));
            images.extend(turn.observations.iter().map(|o| &o.image));
        }
        let mut paths_out = Vec::with_capacity(images.len());
        for (k, img) in images.iter().enumerate() {
            let p = write_path(&img.path, out_dir, &canon_out, dataset_name, summary.records, k, &options.image_paths)
                .map_err(|m| err(format!("image {k} \"{}\": {m}", img.path)))?;
            paths_out.push(Value::String(p));
        }
        summary.images += paths_out.len();
        let record = json!({"conversations": conversations, "images": paths_out});
        if summary.records > 0 {
            out.push_str(",\n");
        }
        out.push_str(&serde_json::to_string(&record).map_err(|e| err(e.to_string()))?);
        summary.records += 1;
    }
    out.push_str(if summary.records > 0 { "\n]\n" } else { "]\n" });
    write_atomic(&data_file, out.as_bytes())
        .map_err(|e| DatasetError::Write { loc: Location::file(&data_shown), message: e.to_string() })?;

    info.insert(
        dataset_name.to_string(),
        json!({
            "file_name": data_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}
        }),
    );
    let mut text = serde_json::to_string_pretty(&Value::Object(info))
        .map_err(|e| DatasetError::Write { loc: Location::file(&info_shown), message: e.to_string() })?;
    text.push('\n');
    write_atomic(&info_file, text.as_bytes())
        .map_err(|e| DatasetError::Write { loc: Location::file(&info_shown), message: e.to_string() })?;
    Ok(summary)
}

/// Vision triples → placeholders.
fn from_model_text(s: &str) -> String {
    s.replace(IMAGE_TRIPLE, IMAGE_PLACEHOLDER).replace(VIDEO_TRIPLE, VIDEO_PLACEHOLDER)
}

/// Remove the chat-template framing a rollout observation string may carry
/// (`<|im_end|>\n<|im_start|>user\n` … `<|im_end|>\n<|im_start|>assistant\n`).
fn strip_chat_markup(s: &str) -> &str {
    let mut t = s;
    t = t.strip_prefix("<|im_end|>\n<|im_start|>user\n").or_else(|| t.strip_prefix("<|im_start|>user\n")).unwrap_or(t);
    if let Some(body) = t.strip_suffix("<|im_start|>assistant\n") {
        t = body;
        t = t.strip_suffix("<|im_end|>\n").or_else(|| t.strip_suffix("<|im_end|>")).unwrap_or(t);
    }
    t
}

fn write_path(
    path: &str,
    out_dir: &Path,
    canon_out: &Path,
    dataset_name: &str,
    record: usize,
    k: usize,
    mode: &ImagePaths,
) -> Result<String, String> {
    if path.is_empty() {
        return Err("the image path is empty".into());
    }
    match mode {
        ImagePaths::AsIs => Ok(path.to_string()),
        ImagePaths::Relative => {
            let p = Path::new(path);
            if p.is_absolute() {
                if let Ok(rel) = p.strip_prefix(out_dir).or_else(|_| p.strip_prefix(canon_out)) {
                    return Ok(paths::to_slash(&paths::normalise_relative(&paths::to_slash(rel))?));
                }
                if let Ok(real) = std::fs::canonicalize(p) {
                    if let Ok(rel) = real.strip_prefix(canon_out) {
                        return Ok(paths::to_slash(rel));
                    }
                }
                Err(format!(
                    "is outside the output folder {}; use ImagePaths::Copy or ImagePaths::AsIs",
                    out_dir.display()
                ))
            } else {
                paths::normalise_relative(path)?;
                Ok(path.to_string())
            }
        }
        ImagePaths::Copy { base } => {
            let p = Path::new(path);
            let src = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.clone().unwrap_or_else(|| PathBuf::from(".")).join(p)
            };
            let ext = p.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
            let rel = format!("{dataset_name}_images/{record:06}_{k:03}.{ext}");
            let dst = out_dir.join(&rel);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::copy(&src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
            Ok(rel)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::datasets::{DatasetFormat, DatasetIndex};
    use crate::core::trajectory::{Media, Observation, Protocol, Sample, Turn};

    fn traj(dir: &Path, id: &str) -> Trajectory {
        let sample = Sample {
            id: id.into(),
            question: "Which is closer?".into(),
            question_type: "multiple choice".into(),
            data_type: "vqa".into(),
            media: Media::Images { images: vec![ImageRef::new(dir.join("in/a.png").to_string_lossy())] },
            ..Default::default()
        };
        let mut t = Trajectory::new(id, Protocol::Vilasr, sample);
        t.system_prompt = Some("SYSTEM".into());
        t.first_user_text = Some(format!("{IMAGE_TRIPLE}\n### Question:\nWhich is closer?\n\nBegin your reasoning:\n"));
        t.turns.push(Turn {
            assistant_text: "<think>x</think> Action: Object Mapper\n```json\n[{\"index\": 1, \"bbox_2d\": [1,2,3,4], \"label\": \"chair\"}]\n```".into(),
            observations: vec![Observation { number: 2, drawn_on: 1, image: ImageRef::new(dir.join("obs/2.png").to_string_lossy()) }],
            observation_text: Some(format!(
                "<|im_end|>\n<|im_start|>user\n{IMAGE_TRIPLE}\nThe index of the given image is 2 (width: 448, height: 448). Continue:\n<|im_end|>\n<|im_start|>assistant\n"
            )),
            ..Default::default()
        });
        t.turns.push(Turn { assistant_text: "<think>y</think> Action: Answer\n<answer>A</answer>".into(), ..Default::default() });
        t
    }

    #[test]
    fn round_trip_through_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::canonicalize(dir.path()).unwrap();
        // An existing registry entry must survive the merge.
        std::fs::write(out.join(DATASET_INFO), r#"{"other": {"file_name": "other.json", "formatting": "alpaca"}}"#).unwrap();
        let ts = vec![traj(&out, "t0"), traj(&out, "t1")];
        let s = write_llamafactory(&out, "vqa_cold_start", &ts, &WriteOptions::default()).unwrap();
        assert_eq!((s.records, s.images), (2, 4));
        let info: Value = serde_json::from_slice(&std::fs::read(out.join(DATASET_INFO)).unwrap()).unwrap();
        assert_eq!(info["other"]["formatting"], "alpaca");
        assert_eq!(info["vqa_cold_start"]["file_name"], "vqa_cold_start.json");
        assert_eq!(info["vqa_cold_start"]["columns"]["images"], "images");
        assert_eq!(info["vqa_cold_start"]["tags"]["user_tag"], "user");
        let data: Value = serde_json::from_slice(&std::fs::read(out.join("vqa_cold_start.json")).unwrap()).unwrap();
        assert_eq!(data[0]["images"], json!(["in/a.png", "obs/2.png"]));
        assert_eq!(data[0]["conversations"][3]["content"], "<image>\nThe index of the given image is 2 (width: 448, height: 448). Continue:\n");

        let index = DatasetIndex::open(&out).unwrap();
        assert_eq!(index.format, DatasetFormat::LlamaFactory);
        assert_eq!(index.len(), 2);
        assert_eq!(index.skipped().len(), 1, "{:?}", index.skipped());
        let back = index.record(1).unwrap().to_trajectory().unwrap();
        let orig = &ts[1];
        assert_eq!(back.system_prompt, orig.system_prompt);
        assert_eq!(back.first_user_text, orig.first_user_text);
        assert_eq!(back.sample.question, orig.sample.question);
        assert_eq!(back.sample.media, orig.sample.media);
        assert_eq!(back.turns.len(), 2);
        for (a, b) in back.turns.iter().zip(&orig.turns) {
            assert_eq!(a.assistant_text, b.assistant_text);
            assert_eq!(a.observations.len(), b.observations.len());
        }
        assert_eq!(back.turns[0].observations[0].image.path, orig.turns[0].observations[0].image.path);
        assert_eq!((back.turns[0].observations[0].image.width, back.turns[0].observations[0].image.height), (Some(448), Some(448)));
        assert_eq!(
            back.turns[0].observation_text.as_deref(),
            Some(format!("{IMAGE_TRIPLE}\nThe index of the given image is 2 (width: 448, height: 448). Continue:\n").as_str())
        );
        let src = back.sample.source.unwrap();
        assert_eq!((src.record, src.dataset.as_deref()), (1, Some("vqa_cold_start")));

        // Writing the read-back trajectories again gives the same conversations.
        let again: Vec<Trajectory> = (0..index.len()).map(|i| index.record(i).unwrap().to_trajectory().unwrap()).collect();
        let dir2 = tempfile::tempdir().unwrap();
        let out2 = std::fs::canonicalize(dir2.path()).unwrap();
        write_llamafactory(&out2, "vqa_cold_start", &again, &WriteOptions { image_paths: ImagePaths::AsIs, ..Default::default() })
            .unwrap();
        let a: Value = serde_json::from_slice(&std::fs::read(out.join("vqa_cold_start.json")).unwrap()).unwrap();
        let b: Value = serde_json::from_slice(&std::fs::read(out2.join("vqa_cold_start.json")).unwrap()).unwrap();
        assert_eq!(a["conversations"], b["conversations"]);
    }

    #[test]
    fn fallbacks_trailing_observations_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::canonicalize(dir.path()).unwrap();
        let mut t = traj(&out, "t");
        t.first_user_text = None;
        t.turns[0].observation_text = None;
        // A last turn with an observation but no reply.
        t.turns[1].observations.push(Observation { number: 3, drawn_on: 2, image: ImageRef::new("obs/3.png") });
        let mut empty = traj(&out, "e");
        empty.turns.clear();
        let s = write_llamafactory(&out, "d", &[t.clone(), empty], &WriteOptions { include_system: false, ..Default::default() })
            .unwrap();
        assert_eq!((s.records, s.images, s.dropped_trailing_observations), (1, 2, 1));
        assert_eq!(s.skipped, vec!["e: no assistant turn".to_string()]);
        let data: Value = serde_json::from_slice(&std::fs::read(out.join("d.json")).unwrap()).unwrap();
        let conv = data[0]["conversations"].as_array().unwrap();
        assert_eq!(conv.len(), 4);
        assert_eq!(conv[0]["content"], "<image>Which is closer?");
        assert_eq!(conv[2]["content"], "<image>");

        // Absolute paths outside the output folder are refused in Relative mode.
        let mut far = traj(&out, "far");
        far.sample.media = Media::Images { images: vec![ImageRef::new("/somewhere/else.png")] };
        let e = write_llamafactory(&out, "d", &[far.clone()], &WriteOptions::default()).unwrap_err().to_string();
        assert!(e.contains("outside the output folder") && e.contains("\"far\""), "{e}");
        let e = write_llamafactory(&out, "../x", &[far], &WriteOptions::default()).unwrap_err().to_string();
        assert!(e.contains("not a usable dataset name"), "{e}");
        // A broken registry is never overwritten.
        std::fs::write(out.join(DATASET_INFO), "{broken").unwrap();
        assert!(write_llamafactory(&out, "d", &[t], &WriteOptions::default()).is_err());
        assert_eq!(std::fs::read_to_string(out.join(DATASET_INFO)).unwrap(), "{broken");
    }

    #[test]
    fn copy_mode_copies_images() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("in")).unwrap();
        std::fs::create_dir_all(src.path().join("obs")).unwrap();
        std::fs::write(src.path().join("in/a.png"), b"A").unwrap();
        std::fs::write(src.path().join("obs/2.png"), b"B").unwrap();
        let mut t = traj(src.path(), "c");
        t.turns[0].observations[0].image.path = "obs/2.png".into();
        let out = tempfile::tempdir().unwrap();
        let opts = WriteOptions { image_paths: ImagePaths::Copy { base: Some(src.path().to_path_buf()) }, ..Default::default() };
        let s = write_llamafactory(out.path(), "c", &[t], &opts).unwrap();
        assert_eq!(s.images, 2);
        assert_eq!(std::fs::read(out.path().join("c_images/000000_001.png")).unwrap(), b"B");
        let index = DatasetIndex::open(out.path().join(DATASET_INFO)).unwrap();
        let v = super::super::validate(&index, true);
        assert!(v.is_ok(), "{v:?}");
    }
}
