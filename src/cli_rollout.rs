//! `sightline run` (a live ViLaSR rollout with a checkpoint: trajectories written, a summary per
//! trajectory and pass@k printed) and `sightline replay` (recorded trajectories pushed through the
//! executor again; exit 1 on mismatches).

use crate::core::datasets::DatasetIndex;
use crate::core::trajectory::{self, ImageRef, Media, Protocol, Sample, Trajectory};
use crate::rollout::{self, RolloutConfig, RolloutEvent, RunProfile};
use anyhow::{anyhow, bail, Context as _, Result};
use clap::ValueEnum;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RunProfileArg {
    Eval,
    Rl,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolChoice {
    Vilasr,
    Vilavt,
}

impl From<ProtocolChoice> for Protocol {
    fn from(p: ProtocolChoice) -> Self {
        match p {
            ProtocolChoice::Vilasr => Protocol::Vilasr,
            ProtocolChoice::Vilavt => Protocol::Vilavt,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// A trajectory.json (or its folder), a sample JSON (a Sightline `Sample`) or a dataset file
    /// (with --record).
    #[arg(long, conflicts_with_all = ["images", "question"])]
    pub sample: Option<PathBuf>,
    /// Record number (0-based) when --sample is a dataset file.
    #[arg(long)]
    pub record: Option<usize>,
    /// Input image (repeat, in index order) for an ad-hoc sample.
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    #[arg(long)]
    pub question: Option<String>,
    /// `multiple choice`, `numerical`, `regression`, `free-form`, …
    #[arg(long)]
    pub question_type: Option<String>,
    /// Options of a multiple-choice question (repeat: "A. red").
    #[arg(long = "option")]
    pub options: Vec<String>,
    #[arg(long, default_value = "vqa")]
    pub data_type: String,
    /// Protocol of an ad-hoc sample or sample JSON (trajectories and datasets say theirs).
    #[arg(long, value_enum, default_value_t = ProtocolChoice::Vilasr)]
    pub protocol: ProtocolChoice,
    /// ViLaVT image budget (the record's `max_pixels`; default 200,704).
    #[arg(long)]
    pub max_pixels: Option<f64>,
    #[arg(long)]
    pub ground_truth: Option<String>,
    #[arg(long, value_enum, default_value_t = RunProfileArg::Eval)]
    pub profile: RunProfileArg,
    /// Trajectories per sample (pass@k), generated together (batched decoding).
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Generate the n trajectories one after the other instead of together.
    #[arg(long)]
    pub sequential: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Default: the profile's (eval 0.75, rl 1.0); 0 = greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Per-turn token limit (default: eval 16,384, rl 1,024).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Generations per sample (default: the profile's).
    #[arg(long)]
    pub max_turns: Option<usize>,
    /// Output folder (one folder per trajectory).
    #[arg(long, default_value = "sightline-runs")]
    pub out: PathBuf,
    /// Fork the trajectory given by --sample at this 0-based turn: the turns before it are kept
    /// (executed again) and generation continues from there.
    #[arg(long, requires = "sample")]
    pub fork_at: Option<usize>,
    /// With --fork-at: a file whose text replaces that turn's assistant text (generation continues
    /// after it).
    #[arg(long, requires = "fork_at")]
    pub edit: Option<PathBuf>,
    /// Stream the generated text to stderr.
    #[arg(long)]
    pub verbose: bool,
}

fn load_sample(a: &RunArgs) -> Result<(Sample, PathBuf, Protocol)> {
    if let Some(p) = &a.sample {
        let file = if p.is_dir() { p.join(trajectory::TRAJECTORY_FILE) } else { p.clone() };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let is_json_doc = file.extension().is_some_and(|e| e == "json");
        if is_json_doc {
            let text = std::fs::read_to_string(&file).map_err(|e| anyhow!("{}: cannot read: {e}", file.display()))?;
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if v.get("format_version").is_some() {
                    let t = Trajectory::from_json(&text, &file.display().to_string()).map_err(|e| anyhow!("{e}"))?;
                    return Ok((t.sample, base, t.protocol));
                }
                if v.get("question").is_some() && v.get("media").is_some() {
                    let s: Sample = serde_json::from_value(v).map_err(|e| anyhow!("{}: not a Sightline sample: {e}", file.display()))?;
                    return Ok((s, base, a.protocol.into()));
                }
            }
        }
        let index = DatasetIndex::open(&file).map_err(|e| anyhow!("{e}"))?;
        let n = match (a.record, index.len()) {
            (Some(r), len) if r < len => r,
            (Some(r), len) => bail!("{}: record {r} does not exist ({len} records)", file.display()),
            (None, 1) => 0,
            (None, len) => bail!("{}: {len} records; choose one with --record N", file.display()),
        };
        let s = index.record(n).and_then(|r| r.to_sample()).map_err(|e| anyhow!("{e}"))?;
        return Ok((s, index.root.clone(), index.format.protocol()));
    }
    let question = a.question.clone().ok_or_else(|| anyhow!("give --sample FILE, or --image … --question TEXT --question-type T"))?;
    if a.images.is_empty() {
        bail!("--question needs at least one --image");
    }
    let question_type = a.question_type.clone().ok_or_else(|| anyhow!("--question needs --question-type"))?;
    let cwd = std::env::current_dir().map_err(|e| anyhow!("cannot read the working directory: {e}"))?;
    let images = a.images.iter().map(|p| ImageRef::new(cwd.join(p).display().to_string())).collect();
    let s = Sample {
        id: "sample".into(),
        question,
        question_type,
        options: if a.options.is_empty() { None } else { Some(a.options.clone()) },
        ground_truth: a.ground_truth.clone(),
        data_type: a.data_type.clone(),
        media: Media::Images { images },
        ..Default::default()
    };
    Ok((s, cwd, a.protocol.into()))
}

/// `sightline run`.
pub fn run(a: &RunArgs) -> Result<i32> {
    let (sample, base, protocol) = load_sample(a)?;
    let cfg = RolloutConfig {
        model_dir: a.model.clone(),
        device: a.device.clone(),
        profile: match a.profile {
            RunProfileArg::Eval => RunProfile::Eval,
            RunProfileArg::Rl => RunProfile::Rl,
        },
        n: a.n,
        seed: a.seed,
        temperature: a.temperature,
        top_p: a.top_p,
        max_new_tokens: a.max_new_tokens,
        out_dir: Some(a.out.clone()),
        max_turns: a.max_turns,
        max_total_tokens: None,
        protocol,
        vilavt_max_pixels: a.max_pixels,
        batch: !a.sequential,
    };
    eprintln!("sightline run: sample {:?}, {} trajectory(ies), profile {}", sample.id, a.n, cfg.profile.name());
    let h = match a.fork_at {
        None => rollout::start(sample, base, cfg, Box::new(|| {})),
        Some(turn) => {
            let p = a.sample.as_ref().expect("clap: --fork-at requires --sample");
            let dir = if p.is_dir() { p.clone() } else { p.parent().map(Path::to_path_buf).unwrap_or_default() };
            let parent = Trajectory::load_dir(&dir).map_err(|e| anyhow::anyhow!("--fork-at needs a trajectory as --sample: {e}"))?;
            let edited_text = match &a.edit {
                Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("{}: cannot read the edited turn", f.display()))?),
                None => None,
            };
            eprintln!("  fork of {:?} at turn {turn}{}", parent.id, if edited_text.is_some() { " (edited)" } else { "" });
            rollout::start_fork(&parent, dir, rollout::ForkSpec { turn, edited_text }, cfg, Box::new(|| {}))
        }
    };
    let mut failed = false;
    let mut tokens = vec![0usize; a.n.max(1)];
    loop {
        let Some(e) = h.recv_timeout(Duration::from_millis(500)) else { continue };
        match e {
            RolloutEvent::Status(s) => eprintln!("  {s}"),
            RolloutEvent::Started { k } => eprintln!("trajectory {k}: started"),
            RolloutEvent::Token { k, text, .. } => {
                let count = tokens.get_mut(k).map(|c| {
                    *c += 1;
                    *c
                });
                if a.verbose {
                    eprint!("{text}");
                    let _ = std::io::stderr().flush();
                } else if let Some(c) = count.filter(|c| c % 256 == 0) {
                    eprintln!("  trajectory {k}: … {c} tokens");
                }
            }
            RolloutEvent::Action { .. } => {}
            RolloutEvent::Observation { k, number, drawn_on, .. } => eprintln!("\n  trajectory {k}: image {number} drawn on image {drawn_on}"),
            RolloutEvent::TurnFinished { k, turn, record } => {
                if a.verbose {
                    eprintln!();
                }
                let tm = &record.timings;
                eprintln!(
                    "  trajectory {k}, turn {turn}: {} token(s) in {:.0} ms (prefill {:.0} ms, vision {:.0} ms), {} action(s), {} new image(s){}",
                    tm.generated_tokens.unwrap_or(0),
                    tm.generate_ms.unwrap_or(0.0),
                    tm.prefill_ms.unwrap_or(0.0),
                    tm.vision_ms.unwrap_or(0.0),
                    record.actions.len(),
                    record.observations.len(),
                    record.finish_reason.map(|f| format!(", finished: {f}")).unwrap_or_default()
                );
            }
            RolloutEvent::Finished { k, trajectory, dir } => {
                let rewards = match &trajectory.rewards {
                    Some(r) => format!("reward {} (format {}, accuracy {})", r.overall, r.format, r.accuracy),
                    None => "not scored".into(),
                };
                println!(
                    "trajectory {k}: {} turn(s), finish {}, {rewards}, saved {}",
                    trajectory.turns.len(),
                    trajectory.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("none"),
                    dir.map(|d| d.display().to_string()).unwrap_or_default()
                );
            }
            RolloutEvent::Failed { k, message } => {
                failed = true;
                match k {
                    Some(k) => eprintln!("sightline: trajectory {k}: {message}"),
                    None => eprintln!("sightline: {message}"),
                }
            }
            RolloutEvent::Done { pass_at_k } => {
                if let Some(p) = pass_at_k {
                    println!("pass@{}: {p:.4}", a.n);
                }
                break;
            }
        }
    }
    Ok(if failed { 2 } else { 0 })
}

fn trajectory_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    let path = if path.is_file() { path.parent().map(Path::to_path_buf).unwrap_or_default() } else { path.to_path_buf() };
    if path.join(trajectory::TRAJECTORY_FILE).is_file() {
        return Ok(vec![path]);
    }
    let roots = [path.join("trajectories"), path.clone()];
    for root in roots {
        let Ok(rd) = std::fs::read_dir(&root) else { continue };
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join(trajectory::TRAJECTORY_FILE).is_file()).collect();
        if !dirs.is_empty() {
            dirs.sort();
            return Ok(dirs);
        }
    }
    bail!("{}: no trajectory.json here, in its subfolders or under trajectories/", path.display())
}

/// The conversations of a dataset file (LLaMA-Factory registry, sharegpt, ViLaSR results) as
/// trajectories with the folder their image paths start from.
fn dataset_trajectories(path: &Path, profile: Option<&str>) -> Result<Vec<(String, Trajectory, PathBuf)>> {
    let index = crate::core::datasets::DatasetIndex::open(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !index.format.has_conversation() {
        bail!("{}: {} records hold no model output to replay", path.display(), index.format);
    }
    let mut out = Vec::new();
    for rec in index.iter() {
        let rec = rec.map_err(|e| anyhow::anyhow!("{e}"))?;
        let name = format!("{} record {}", rec.file, rec.file_record);
        let mut t = rec.to_trajectory().map_err(|e| anyhow::anyhow!("{e}"))?;
        if t.profile.is_none() {
            t.profile = profile.map(str::to_string);
        }
        out.push((name, t, index.root.clone()));
    }
    Ok(out)
}

/// `sightline replay PATH [--profile eval|rl]`: trajectory folders, workspaces, or a dataset file
/// with conversations (`--profile` names the executor profile the data was made with; default eval).
pub fn replay(path: &Path, profile: Option<&str>) -> Result<i32> {
    let is_dataset = path.is_file() && path.file_name().is_some_and(|n| n != trajectory::TRAJECTORY_FILE)
        || (path.is_dir() && path.join(crate::core::datasets::DATASET_INFO).is_file() && !path.join("trajectories").is_dir() && trajectory_dirs(path).is_err());
    if is_dataset {
        let items = dataset_trajectories(path, profile)?;
        let (mut turns, mut checked, mut bad, mut errors) = (0, 0, 0, 0);
        for (name, t, root) in &items {
            match rollout::replay(t, root) {
                Ok(rep) => {
                    turns += rep.turns;
                    checked += rep.observations_checked;
                    if !rep.mismatches.is_empty() {
                        bad += 1;
                        for m in &rep.mismatches {
                            println!("{name}: {m}");
                        }
                    }
                }
                Err(e) => {
                    eprintln!("sightline: {name}: {e}");
                    errors += 1;
                }
            }
        }
        println!("{} conversation(s), {turns} turn(s), {checked} observation(s) compared: {bad} with mismatches, {errors} unreadable", items.len());
        return Ok(if errors > 0 { 2 } else if bad > 0 { 1 } else { 0 });
    }
    let dirs = trajectory_dirs(path)?;
    let pb = crate::cli::progress(dirs.len() as u64, "replaying");
    let (mut turns, mut checked, mut bad, mut errors) = (0, 0, 0, 0);
    for d in &dirs {
        pb.inc(1);
        let t = match Trajectory::load_dir(d) {
            Ok(t) => t,
            Err(e) => {
                pb.suspend(|| eprintln!("sightline: {e}"));
                errors += 1;
                continue;
            }
        };
        match rollout::replay(&t, d) {
            Ok(rep) => {
                turns += rep.turns;
                checked += rep.observations_checked;
                if !rep.mismatches.is_empty() {
                    bad += 1;
                    pb.suspend(|| {
                        for m in &rep.mismatches {
                            println!("{}: {m}", d.display());
                        }
                    });
                }
            }
            Err(e) => {
                pb.suspend(|| eprintln!("sightline: {}: {e}", d.display()));
                errors += 1;
            }
        }
    }
    pb.finish_and_clear();
    println!("{} trajectory(ies), {turns} turn(s), {checked} observation(s) compared: {bad} with mismatches, {errors} unreadable", dirs.len());
    Ok(if errors > 0 {
        2
    } else if bad > 0 {
        1
    } else {
        0
    })
}
