//! Writing a generated workspace: ViLaSR RL question files, LLaMA-Factory SFT files (cold-start
//! and reflective subsets) and Sightline trajectory folders, all readable by the core readers and
//! all referring to one shared image pool, so every image is stored once.
//!
//! ```text
//! <out>/synth.json                         what was generated, and the command that regenerates it
//! <out>/images/<id>/{input,image}-N.png    every image once: inputs, then observations
//! <out>/rl_<family>.jsonl                  ViLaSR RL records, image_path "images/<id>/input-N.png"
//!                                          (the RL root is the folder holding the jsonl: <out>)
//! <out>/dataset_info.json                  LLaMA-Factory registry (<out> is its dataset_dir):
//!                                          <family>_cold_start, <family>_reflective entries
//! <out>/sft/cold_start/<family>.json       sharegpt conversations, image paths "images/<id>/…"
//! <out>/sft/reflective/<family>.json       (relative to <out>)
//! <out>/trajectories/<id>/trajectory.json  image paths relative to the trajectory folder:
//!                                          "../../images/<id>/input-N.png", "../../images/<id>/image-N.png"
//! ```
//!
//! Only the entries in [`MANAGED`] are written, and replaced with `overwrite`; other files in
//! `<out>` are left alone. Samples are generated in parallel, but every file depends only on the
//! plan, so the output is byte-identical for any thread count.

use super::{check_share, run_teacher, generate, sample_id, Family, Settings, SynthError, GENERATOR};
use crate::core::datasets::{write_llamafactory, WriteOptions, DATASET_INFO};
use crate::core::trajectory::{write_atomic, ImageRef, Media, Trajectory};
use image::RgbImage;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Entries of `<out>` that a workspace owns (replaced with `overwrite`): the shared image pool,
/// the registry, the SFT and trajectory folders, `synth.json` and the RL file of every family
/// ([`rl_file`]). Nothing else in `<out>` is written or removed.
pub const MANAGED: [&str; 10] = [
    "synth.json",
    "images",
    "dataset_info.json",
    "sft",
    "trajectories",
    "rl_maze.jsonl",
    "rl_count.jsonl",
    "rl_relation.jsonl",
    "rl_multiview.jsonl",
    "rl_video.jsonl",
];

/// The RL question file of `family`, relative to `<out>`: `rl_<family>.jsonl`.
pub fn rl_file(family: Family) -> String {
    format!("rl_{}.jsonl", family.name())
}

/// The SFT file of `family` in `subset` (`cold_start`, `reflective`), relative to `<out>`.
pub fn sft_file(family: Family, subset: &str) -> String {
    format!("sft/{subset}/{}.json", family.name())
}

/// Largest number of samples one run may ask for.
pub const MAX_SAMPLES: usize = 1_000_000;

/// How many samples of one family to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyCount {
    pub family: Family,
    pub samples: usize,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct WorkspacePlan {
    /// `maze`, …, or `all`.
    pub task: String,
    /// Total samples asked for.
    pub n: usize,
    pub seed: u64,
    pub settings: Settings,
    pub families: Vec<FamilyCount>,
    /// Worker threads (the output does not depend on it).
    pub threads: usize,
    /// Replace an existing workspace in the output folder.
    pub overwrite: bool,
}

impl WorkspacePlan {
    /// `n` samples of `family`, or (`None`) `n` samples over all families: each gets `n / 5`,
    /// the first `n % 5` one more. Sample `k` of a family is the same in both cases.
    pub fn new(family: Option<Family>, n: usize, seed: u64, settings: Settings) -> Self {
        let families = match family {
            Some(f) => vec![FamilyCount { family: f, samples: n }],
            None => Family::ALL
                .iter()
                .enumerate()
                .map(|(k, &f)| FamilyCount { family: f, samples: n / Family::ALL.len() + usize::from(k < n % Family::ALL.len()) })
                .collect(),
        };
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        WorkspacePlan {
            task: family.map(|f| f.name().to_string()).unwrap_or_else(|| "all".into()),
            n,
            seed,
            settings,
            families,
            threads,
            overwrite: false,
        }
    }

    /// The command line that regenerates this workspace.
    pub fn command(&self, out: &str) -> String {
        format!(
            "sightline synth --task {} --n {} --seed {} --reflective-share {} --difficulty {} --out {out}",
            self.task,
            self.n,
            self.seed,
            self.settings.reflective_share,
            self.settings.difficulty.name()
        )
    }

    pub fn total(&self) -> usize {
        self.families.iter().map(|f| f.samples).sum()
    }
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkspaceSummary {
    pub samples: usize,
    pub reflective: usize,
    /// (family, samples, reflective samples).
    pub per_family: Vec<(Family, usize, usize)>,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// One sample's contribution to the aggregate files.
struct SampleOutput {
    rl_line: String,
    sft: Trajectory,
    reflective: bool,
    files: usize,
    bytes: u64,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SynthError {
    SynthError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Generate `plan` into `out`. `progress` is called once per finished sample (from worker
/// threads).
pub fn write_workspace(out: &Path, plan: &WorkspacePlan, progress: &(dyn Fn(u64) + Sync)) -> Result<WorkspaceSummary, SynthError> {
    check_share(plan.settings.reflective_share)?;
    let total = plan.total();
    if total == 0 || plan.n > MAX_SAMPLES {
        return Err(SynthError::Invalid(format!("the number of samples must be from 1 to {MAX_SAMPLES}, got {}", plan.n)));
    }
    if plan.threads == 0 {
        return Err(SynthError::Invalid("at least one thread is needed".into()));
    }
    prepare_out(out, plan.overwrite)?;
    let mut summary = WorkspaceSummary::default();
    let mut families_doc = Map::new();
    let mut registry = Map::new();
    for fc in &plan.families {
        if fc.samples == 0 {
            continue;
        }
        let outputs = generate_family(out, plan, fc, progress)?;
        let reflective = outputs.iter().filter(|o| o.reflective).count();
        summary.samples += outputs.len();
        summary.reflective += reflective;
        summary.per_family.push((fc.family, outputs.len(), reflective));
        summary.files += outputs.iter().map(|o| o.files).sum::<usize>();
        summary.bytes += outputs.iter().map(|o| o.bytes).sum::<u64>();

        let rl_name = rl_file(fc.family);
        let rl_path = out.join(&rl_name);
        let mut text = String::new();
        for o in &outputs {
            text.push_str(&o.rl_line);
            text.push('\n');
        }
        write_atomic(&rl_path, text.as_bytes()).map_err(|e| io_err(&rl_path, e))?;
        summary.files += 1;
        summary.bytes += text.len() as u64;

        let mut sft_entries = Vec::new();
        for (subset, want) in [("cold_start", false), ("reflective", true)] {
            let trajs: Vec<Trajectory> = outputs.iter().filter(|o| o.reflective == want).map(|o| o.sft.clone()).collect();
            if trajs.is_empty() {
                continue;
            }
            let name = format!("{}_{subset}", fc.family.name());
            let rel = sft_file(fc.family, subset);
            let (entry, bytes) = write_sft(out, fc.family, subset, &trajs)?;
            registry.insert(name.clone(), entry);
            summary.files += 1;
            summary.bytes += bytes;
            sft_entries.push(json!({"dataset": name, "file": rel, "records": trajs.len()}));
        }
        families_doc.insert(
            fc.family.name().into(),
            json!({
                "samples": outputs.len(),
                "reflective": reflective,
                "data_type": fc.family.data_type(),
                "rl": rl_name,
                "sft": sft_entries,
                "images": format!("images/{}-*", fc.family.name()),
                "trajectories": format!("trajectories/{}-*", fc.family.name()),
            }),
        );
    }
    let info_path = out.join(DATASET_INFO);
    let mut info_text = serde_json::to_string_pretty(&Value::Object(registry)).map_err(|e| io_err(&info_path, e))?;
    info_text.push('\n');
    write_atomic(&info_path, info_text.as_bytes()).map_err(|e| io_err(&info_path, e))?;
    summary.files += 1;
    summary.bytes += info_text.len() as u64;
    let doc = json!({
        "generator": GENERATOR,
        "command": plan.command("<out>"),
        "task": plan.task,
        "n": plan.n,
        "seed": plan.seed,
        "reflective_share": plan.settings.reflective_share,
        "difficulty": plan.settings.difficulty.name(),
        "samples": summary.samples,
        "reflective": summary.reflective,
        "dataset_info": DATASET_INFO,
        "families": families_doc,
    });
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| io_err(&out.join("synth.json"), e))?;
    text.push('\n');
    let path = out.join("synth.json");
    write_atomic(&path, text.as_bytes()).map_err(|e| io_err(&path, e))?;
    summary.files += 1;
    summary.bytes += text.len() as u64;
    Ok(summary)
}

/// Create `out`; refuse (or, with `overwrite`, remove) an earlier workspace in it: the
/// [`MANAGED`] entries only.
fn prepare_out(out: &Path, overwrite: bool) -> Result<(), SynthError> {
    if out.exists() && !out.is_dir() {
        return Err(SynthError::Invalid(format!("{} exists and is not a folder", out.display())));
    }
    let present: Vec<&str> = MANAGED.iter().copied().filter(|m| out.join(m).exists()).collect();
    if !present.is_empty() {
        if !overwrite {
            return Err(SynthError::Invalid(format!(
                "{} already holds a generated workspace ({}); pass --overwrite to replace it",
                out.display(),
                present.join(", ")
            )));
        }
        for m in present {
            let p = out.join(m);
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|e| io_err(&p, e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))
}

/// Generate every sample of one family on `plan.threads` workers; results in sample order.
fn generate_family(out: &Path, plan: &WorkspacePlan, fc: &FamilyCount, progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<SampleOutput>, SynthError> {
    let n = fc.samples;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<SampleOutput, SynthError>>>> = Mutex::new((0..n).map(|_| None).collect());
    let workers = plan.threads.min(n).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = one_sample(out, plan.seed, fc.family, i, &plan.settings);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Ok(mut s) = slots.lock() {
                    s[i] = Some(r);
                }
                progress(1);
            });
        }
    });
    let slots = slots.into_inner().map_err(|_| SynthError::Invalid("a worker thread panicked".into()))?;
    let mut outputs = Vec::with_capacity(n);
    for (i, s) in slots.into_iter().enumerate() {
        match s {
            Some(Ok(o)) => outputs.push(o),
            Some(Err(e)) => return Err(e),
            None => return Err(SynthError::Invalid(format!("{} was not generated (an earlier sample failed)", sample_id(fc.family, i)))),
        }
    }
    Ok(outputs)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io_err(path, e))
}

/// Lossless PNG, as small as is cheap: an 8-bit palette image when the picture has at most 256
/// colours (every scene and most observations), RGB otherwise; no row filter, balanced deflate.
/// Decoders (Pillow, `image`) give back exactly the same RGB pixels.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, String> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Balanced);
    enc.set_filter(png::Filter::NoFilter);
    let indexed = palette_indices(img);
    let data: &[u8] = match &indexed {
        Some((palette, indices)) => {
            enc.set_color(png::ColorType::Indexed);
            enc.set_palette(palette.clone());
            indices
        }
        None => {
            enc.set_color(png::ColorType::Rgb);
            img.as_raw()
        }
    };
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(data).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// The palette (RGB triples in first-seen order) and per-pixel indices, or `None` beyond 256
/// colours.
fn palette_indices(img: &RgbImage) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut palette: Vec<[u8; 3]> = Vec::new();
    let mut indices = Vec::with_capacity(img.as_raw().len() / 3);
    let mut last: Option<([u8; 3], u8)> = None;
    for p in img.pixels() {
        let i = match last {
            Some((c, i)) if c == p.0 => i,
            _ => {
                let i = match palette.iter().position(|c| *c == p.0) {
                    Some(i) => i as u8,
                    None if palette.len() < 256 => {
                        palette.push(p.0);
                        (palette.len() - 1) as u8
                    }
                    None => return None,
                };
                last = Some((p.0, i));
                i
            }
        };
        indices.push(i);
    }
    Some((palette.into_iter().flatten().collect(), indices))
}

/// `traj` with its input images renamed `input(k)` (k from 1) and its observations `obs(number)`.
fn with_image_paths(traj: &Trajectory, input: impl Fn(usize) -> String, obs: impl Fn(u32) -> String) -> Trajectory {
    let mut t = traj.clone();
    let inputs: Vec<ImageRef> =
        t.sample.media.images().iter().enumerate().map(|(k, r)| ImageRef { path: input(k + 1), ..r.clone() }).collect();
    t.sample.media = match &t.sample.media {
        Media::Images { .. } => Media::Images { images: inputs },
        Media::VideoFrames { video, .. } => Media::VideoFrames { frames: inputs, video: video.clone() },
    };
    for turn in &mut t.turns {
        for o in &mut turn.observations {
            o.image.path = obs(o.number);
        }
    }
    t
}

/// Generate, check and write one sample: its images (once, into `images/<id>/`) and its
/// trajectory folder; return its RL line and SFT trajectory.
fn one_sample(out: &Path, seed: u64, family: Family, index: usize, settings: &Settings) -> Result<SampleOutput, SynthError> {
    let ts = generate(family, seed, index, settings);
    let run = run_teacher(&ts)?;
    let id = &ts.id;
    let n_inputs = ts.inputs.len();
    if run.trajectory.sample.media.images().len() != n_inputs {
        return Err(SynthError::Teacher { id: id.clone(), message: "the trajectory lists another number of inputs".into() });
    }
    let mut files = 0usize;
    let mut bytes = 0u64;
    // Every image is encoded and written once, as `images/<id>/input-N.png` (inputs) or
    // `images/<id>/image-N.png` (observations, numbered as in the conversation).
    let mut rl_paths = Vec::with_capacity(n_inputs);
    for (k, img) in run.images.iter().enumerate() {
        let name = if k < n_inputs { format!("input-{}.png", k + 1) } else { format!("image-{}.png", k + 1) };
        let rel = format!("images/{id}/{name}");
        let path = out.join(&rel);
        let png = encode_png(img).map_err(|e| io_err(&path, e))?;
        write_file(&path, &png)?;
        files += 1;
        bytes += png.len() as u64;
        if k < n_inputs {
            rl_paths.push(rel);
        }
    }

    // The trajectory folder refers to the pool relative to itself.
    let traj_dir = out.join("trajectories").join(id);
    let saved = with_image_paths(&run.trajectory, |k| format!("../../images/{id}/input-{k}.png"), |n| format!("../../images/{id}/image-{n}.png"));
    let doc = saved.save_dir(&traj_dir).map_err(|e| io_err(&traj_dir, e))?;
    files += 1;
    bytes += std::fs::metadata(doc).map(|m| m.len()).unwrap_or(0);

    let s = &ts.sample;
    let mut rec = Map::new();
    rec.insert("id".into(), json!(id));
    rec.insert("question".into(), json!(s.question));
    rec.insert("answer".into(), json!(s.ground_truth));
    rec.insert("image_path".into(), json!(rl_paths));
    rec.insert("data_type".into(), json!(s.data_type));
    rec.insert("question_type".into(), json!(s.question_type));
    if let Some(o) = &s.options {
        rec.insert("options".into(), json!(o));
    }
    rec.insert("grid_size".into(), json!(s.grid_size));
    for (k, v) in &s.extra {
        rec.insert(k.clone(), v.clone());
    }
    let rl_line = serde_json::to_string(&Value::Object(rec)).map_err(|e| io_err(&out.join(rl_file(family)), e))?;

    // The SFT copy refers to the pool relative to `<out>` (LLaMA-Factory's dataset_dir).
    let sft = with_image_paths(&run.trajectory, |k| format!("images/{id}/input-{k}.png"), |n| format!("images/{id}/image-{n}.png"));
    Ok(SampleOutput { rl_line, sft, reflective: ts.reflective, files, bytes })
}

/// Write the LLaMA-Factory dataset of `family` in `subset` to `<out>/sft/<subset>/<family>.json`
/// (image paths relative to `<out>`, kept as the trajectories hold them); return its registry
/// entry (`file_name` relative to `<out>`) and the file's size. The writer's own registry, made
/// next to the data file, is removed: the entries go into `<out>/dataset_info.json`.
fn write_sft(out: &Path, family: Family, subset: &str, trajs: &[Trajectory]) -> Result<(Value, u64), SynthError> {
    let dir: PathBuf = out.join("sft").join(subset);
    let name = family.name();
    let summary = write_llamafactory(&dir, name, trajs, &WriteOptions::default()).map_err(|e| io_err(&dir, e))?;
    if !summary.skipped.is_empty() {
        return Err(SynthError::Invalid(format!("{name}_{subset}: trajectories left out of the SFT file: {}", summary.skipped.join("; "))));
    }
    let info_path = &summary.dataset_info;
    let text = std::fs::read(info_path).map_err(|e| io_err(info_path, e))?;
    std::fs::remove_file(info_path).map_err(|e| io_err(info_path, e))?;
    let info: Value = serde_json::from_slice(&text).map_err(|e| io_err(info_path, e))?;
    let mut entry = info.get(name).cloned().ok_or_else(|| io_err(info_path, format!("no entry \"{name}\" was written")))?;
    if let Some(obj) = entry.as_object_mut() {
        obj.insert("file_name".into(), json!(sft_file(family, subset)));
    }
    let bytes = std::fs::metadata(&summary.data_file).map(|m| m.len()).map_err(|e| io_err(&summary.data_file, e))?;
    Ok((entry, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_covers_every_written_entry() {
        for f in Family::ALL {
            assert!(MANAGED.contains(&rl_file(f).as_str()), "{}", rl_file(f));
            assert!(sft_file(f, "cold_start").starts_with("sft/"));
        }
        assert!(MANAGED.contains(&DATASET_INFO));
    }

    #[test]
    fn prepare_out_refuses_then_replaces_only_managed_entries() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        for keep in ["notes.txt", "rl_custom.jsonl", "rl/x.jsonl", "other/images/a.png"] {
            write_file(&out.join(keep), b"mine").unwrap();
        }
        prepare_out(out, false).unwrap();
        for m in MANAGED {
            write_file(&out.join(m), b"old").unwrap();
            let err = prepare_out(out, false).unwrap_err().to_string();
            assert!(err.contains("--overwrite") && err.contains(m), "{err}");
            std::fs::remove_file(out.join(m)).unwrap();
        }
        write_file(&out.join("images/maze-000000/input-1.png"), b"old").unwrap();
        write_file(&out.join("rl_maze.jsonl"), b"old").unwrap();
        write_file(&out.join(DATASET_INFO), b"old").unwrap();
        prepare_out(out, true).unwrap();
        for m in MANAGED {
            assert!(!out.join(m).exists(), "{m}");
        }
        for keep in ["notes.txt", "rl_custom.jsonl", "rl/x.jsonl", "other/images/a.png"] {
            assert_eq!(std::fs::read(out.join(keep)).unwrap(), b"mine", "{keep}");
        }
    }
}
