//! The `sightline` command line: JSON lines in and out so researchers can script it, progress
//! bars on long work, clear errors naming the file, record and field, and non-zero exit codes on
//! bad input.

use crate::core::executor::{ExecutorFixes, Profile};
use crate::core::prompts::VilasrPromptStyle;
use crate::core::scripted;
use crate::core::resize::{self, fetch_image, smart_resize, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, FACTOR};
use crate::core::rewards::{self, AnswerScorer};
use crate::core::session::VilasrSession;
use crate::core::trajectory::{self, FinishReason, Sample};
use crate::synth;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "sightline",
    version,
    about = "Sightline: a studio for VLMs that reason by drawing (ViLaSR / ViLaVT)",
    long_about = "Sightline: a studio for VLMs that reason by drawing (ViLaSR / ViLaVT).\n\nWith no command it opens the studio (on the last workspace, else the embedded demo); `sightline PATH` opens PATH in it.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Open this workspace, trajectory folder or dataset file in the studio.
    #[arg(value_name = "PATH")]
    pub open: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtocolArg {
    Vilasr,
    Vilavt,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProfileArg {
    Eval,
    Rl,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Profile {
        match p {
            ProfileArg::Eval => Profile::Eval,
            ProfileArg::Rl => Profile::Rl,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScorerArg {
    VilasrRl,
    VilasrEval,
    VilavtRl,
    VilavtEval,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TaskArg {
    Maze,
    Count,
    Relation,
    Multiview,
    Video,
    /// Every family; N is split evenly over the five.
    All,
}

impl TaskArg {
    fn family(self) -> Option<synth::Family> {
        match self {
            TaskArg::Maze => Some(synth::Family::Maze),
            TaskArg::Count => Some(synth::Family::Count),
            TaskArg::Relation => Some(synth::Family::Relation),
            TaskArg::Multiview => Some(synth::Family::Multiview),
            TaskArg::Video => Some(synth::Family::Video),
            TaskArg::All => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DifficultyArg {
    Easy,
    Medium,
    Hard,
    /// Drawn per sample.
    Mixed,
}

impl From<DifficultyArg> for synth::DifficultySetting {
    fn from(d: DifficultyArg) -> Self {
        match d {
            DifficultyArg::Easy => synth::DifficultySetting::Fixed(synth::Difficulty::Easy),
            DifficultyArg::Medium => synth::DifficultySetting::Fixed(synth::Difficulty::Medium),
            DifficultyArg::Hard => synth::DifficultySetting::Fixed(synth::Difficulty::Hard),
            DifficultyArg::Mixed => synth::DifficultySetting::Mixed,
        }
    }
}

/// `--reflective-share`: a number from 0 to 1.
fn parse_share(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("\"{s}\" is not a number"))?;
    synth::check_share(v).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the embedded quick-start trajectory through the executor, render its observations,
    /// score it, and save it as a Sightline trajectory folder.
    Demo {
        /// Where to write the trajectory folder.
        #[arg(long, default_value = "sightline-demo")]
        out: PathBuf,
    },
    /// Score decoded conversations with a reference RL reward. Input lines:
    /// {"sequence", "ground_truth", "question_type", "data_type"}.
    Score {
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// JSON-lines file ("-" for standard input).
        file: PathBuf,
    },
    /// Score final turns with one answer scorer. Input lines: {"final_turn", "ground_truth", "question_type"}.
    ScoreAnswer {
        #[arg(long, value_enum)]
        scorer: ScorerArg,
        file: PathBuf,
    },
    /// Apply assistant responses in order as the ViLaSR executor does and write every image.
    Render {
        /// Input image (repeat for several, in index order).
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        /// A file holding one assistant response (repeat, in turn order).
        #[arg(long = "response", required = true)]
        responses: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ProfileArg::Eval)]
        profile: ProfileArg,
        /// Use the images as they are instead of `fetch_image` with the profile's pixel budget.
        #[arg(long)]
        no_resize: bool,
        /// Override the pixel budget used to resize the inputs.
        #[arg(long)]
        max_pixels: Option<f64>,
        /// Departure from the reference: refuse negative image indices instead of wrapping.
        #[arg(long)]
        fix_negative_index: bool,
    },
    /// Print the size qwen-vl-utils `smart_resize` gives an image of WIDTH×HEIGHT.
    Resize {
        width: u32,
        height: u32,
        #[arg(long, default_value_t = FACTOR)]
        factor: u32,
        #[arg(long, default_value_t = DEFAULT_MIN_PIXELS)]
        min_pixels: f64,
        #[arg(long, default_value_t = DEFAULT_MAX_PIXELS)]
        max_pixels: f64,
    },
    /// Open the studio (the default command): a workspace, trajectory folder or dataset file, else
    /// the last workspace, else the embedded demo.
    #[cfg(feature = "gui")]
    Studio {
        path: Option<PathBuf>,
        /// Save a PNG screenshot of the window once the first trajectory is drawn, then quit.
        #[arg(long, value_name = "FILE.png")]
        screenshot: Option<PathBuf>,
        /// Start without the saved state (last workspace, view options).
        #[arg(long)]
        fresh: bool,
    },
    /// Show the compute device Sightline picks (CUDA only when libcuda loads and a device exists,
    /// else the CPU with a notice) and check it with a small matmul.
    #[cfg(feature = "model")]
    Devices {
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Generate with a Qwen2.5-VL checkpoint folder (config.json, safetensors, tokenizer.json):
    /// images first, then PROMPT, or a HF-style --messages list. Temperature 0 is greedy.
    #[cfg(feature = "model")]
    Generate(GenerateArgs),
    /// Run the live ViLaSR loop with a checkpoint (generate → parse → draw → observe) on one
    /// sample: --sample FILE (trajectory.json, sample JSON or dataset file with --record N) or
    /// --image … --question … --question-type …; writes one trajectory folder per run.
    #[cfg(feature = "model")]
    Run(crate::cli_rollout::RunArgs),
    /// Push recorded trajectories (a trajectory folder, or a workspace of them) through the
    /// executor again and compare the stored observation images; exit 1 on mismatches.
    #[cfg(feature = "model")]
    Replay {
        path: PathBuf,
        /// For dataset files: the executor profile the conversations were made with (trajectories
        /// record their own).
        #[arg(long, value_parser = ["eval", "rl"])]
        profile: Option<String>,
    },
    /// Inspect, validate or convert datasets (LLaMA-Factory, ViLaSR RL, ViLaVT, benchmarks).
    #[command(subcommand)]
    Dataset(crate::cli_dataset::DatasetCommand),
    /// Generate synthetic spatial tasks with teacher trajectories in the ViLaSR protocol: RL
    /// question files (rl_<task>.jsonl), LLaMA-Factory SFT files (dataset_info.json + sft/,
    /// cold-start and reflective) and trajectory folders (trajectories/), sharing one image pool
    /// (images/). The same arguments always give the same bytes.
    Synth {
        /// Task family, or all (N is then split evenly over the five families).
        #[arg(long, value_enum)]
        task: TaskArg,
        /// Number of samples (1 to 1,000,000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        n: u64,
        /// Seed of the whole run (sample k of a family depends only on the seed and k).
        #[arg(long)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Share of reflective teacher trajectories, from 0 to 1.
        #[arg(long, default_value_t = synth::DEFAULT_REFLECTIVE_SHARE, value_parser = parse_share)]
        reflective_share: f64,
        /// Difficulty of every sample, or mixed (drawn per sample).
        #[arg(long, value_enum, default_value_t = DifficultyArg::Mixed)]
        difficulty: DifficultyArg,
        /// Worker threads (default: one per core); the output does not depend on it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
        threads: Option<u64>,
        /// Replace a workspace generated earlier in --out (its synth.json, images/, rl_<task>.jsonl,
        /// dataset_info.json, sft/, trajectories/; other files are kept).
        #[arg(long)]
        overwrite: bool,
    },
}

#[cfg(feature = "model")]
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Input image (repeat for several; they come before PROMPT).
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// The user's text.
    pub prompt: Option<String>,
    /// A JSON file holding a HF/Qwen-style message list (instead of --image/PROMPT).
    #[arg(long)]
    pub messages: Option<PathBuf>,
    /// A system turn (default: the template's "You are a helpful assistant.").
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 = off.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples per prompt (sample i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// Stop when the text contains this string (repeatable); the text is cut before it.
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print {"token_ids": [...], "text": "..."} per sample instead of streaming the text.
    #[arg(long)]
    pub json: bool,
}

/// Run a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        #[cfg(feature = "gui")]
        None => studio(cli.open, None, false),
        #[cfg(feature = "gui")]
        Some(Command::Studio { path, screenshot, fresh }) => studio(path.or(cli.open), screenshot, fresh),
        #[cfg(not(feature = "gui"))]
        None => {
            if cli.open.is_some() {
                return Err(anyhow!("this build has no studio (built without the `gui` feature); see `sightline --help`"));
            }
            eprintln!("sightline: built without the studio (`gui` feature); running the CLI demo (see `sightline --help`).");
            demo(Path::new("sightline-demo"))
        }
        Some(Command::Demo { out }) => demo(&out),
        Some(Command::Score { protocol, file }) => score(protocol, &file),
        Some(Command::ScoreAnswer { scorer, file }) => score_answer(scorer, &file),
        Some(Command::Render { images, responses, out, profile, no_resize, max_pixels, fix_negative_index }) => {
            render(&images, &responses, &out, profile.into(), no_resize, max_pixels, ExecutorFixes { no_negative_wrap: fix_negative_index })
        }
        Some(Command::Resize { width, height, factor, min_pixels, max_pixels }) => {
            let (h, w) = smart_resize(height, width, factor, min_pixels, max_pixels).map_err(|e| anyhow!("{e}"))?;
            println!("{w} {h}");
            Ok(0)
        }
        Some(Command::Dataset(cmd)) => crate::cli_dataset::run(cmd),
        Some(Command::Synth { task, n, seed, out, reflective_share, difficulty, threads, overwrite }) => {
            synth_command(task, n as usize, seed, &out, reflective_share, difficulty, threads.map(|t| t as usize), overwrite)
        }
        #[cfg(feature = "model")]
        Some(Command::Devices { device }) => devices(&device),
        #[cfg(feature = "model")]
        Some(Command::Generate(args)) => generate(&args),
        #[cfg(feature = "model")]
        Some(Command::Run(args)) => crate::cli_rollout::run(&args),
        #[cfg(feature = "model")]
        Some(Command::Replay { path, profile }) => crate::cli_rollout::replay(&path, profile.as_deref()),
    }
}

#[cfg(feature = "gui")]
fn studio(open: Option<PathBuf>, screenshot: Option<PathBuf>, fresh: bool) -> Result<i32> {
    crate::ui::run(crate::ui::StudioOptions { open, screenshot, fresh }).map_err(|e| anyhow!(e))?;
    Ok(0)
}

#[cfg(feature = "model")]
fn devices(request: &str) -> Result<i32> {
    use crate::model::device;
    let req: device::DeviceRequest = request.parse().map_err(|e: String| anyhow!(e))?;
    let probe = device::probe_cuda();
    println!("CUDA support compiled in: {}", device::CUDA_COMPILED);
    match &probe.problem {
        None => println!("CUDA devices: {}", probe.devices),
        Some(p) => println!("CUDA devices: 0 ({p})"),
    }
    let sel = device::select_with(req, &probe, device::CUDA_COMPILED).map_err(|e| anyhow!(e))?;
    println!("selected: {} — {}", sel.device, sel.notice);
    let (sum, ms) = device::smoke_test(sel.device).map_err(|e| anyhow!(e))?;
    println!("smoke test: 128×128 matmul checksum {sum} in {ms:.1} ms");
    Ok(0)
}

#[cfg(feature = "model")]
fn generate(a: &GenerateArgs) -> Result<i32> {
    use crate::model::generate::SamplingParams;
    use crate::model::runner::{parse_messages, run_generate, ChatItem, ChatMessage, GenerateRequest, Progress};
    let device = a.device.parse().map_err(|e: String| anyhow!(e))?;
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage { role: "system".into(), content: vec![ChatItem::Text(s.clone())] });
    }
    match &a.messages {
        Some(file) => {
            if !a.images.is_empty() || a.prompt.is_some() {
                bail!("--messages replaces --image and PROMPT; give one or the other");
            }
            let text = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| anyhow!("{}: not valid JSON: {e}", file.display()))?;
            let base = file.parent().unwrap_or(Path::new("."));
            let parsed = parse_messages(&v, base).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            if a.system.is_some() && parsed.first().is_some_and(|m| m.role == "system") {
                bail!("--system given but {} starts with a system message", file.display());
            }
            messages.extend(parsed);
        }
        None => {
            let mut content: Vec<ChatItem> = a.images.iter().cloned().map(ChatItem::Image).collect();
            match &a.prompt {
                Some(p) => content.push(ChatItem::Text(p.clone())),
                None if content.is_empty() => bail!("give a PROMPT, --image, or --messages"),
                None => {}
            }
            messages.push(ChatMessage { role: "user".into(), content });
        }
    }
    let params = SamplingParams {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        n: a.num_samples,
        stop_strings: a.stop.clone(),
        ..Default::default()
    };
    let req = GenerateRequest { model_dir: a.model.clone(), messages, params, device };
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let bar = ProgressBar::hidden();
    let mut current = usize::MAX;
    let mut out = std::io::stdout();
    let stream = !a.json;
    let res = run_generate(
        &req,
        &mut |p| match p {
            Progress::Status(s) => {
                if s == "generating" {
                    spinner.finish_and_clear();
                    if !stream {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                        bar.set_length((a.max_new_tokens * a.num_samples) as u64);
                        bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} tokens {per_sec}").unwrap_or_else(|_| ProgressStyle::default_bar()));
                    }
                } else {
                    spinner.set_message(s.to_string());
                }
            }
            Progress::Token(e) => {
                // The samples are decoded together: sample 0 streams, the others print when done.
                if stream && e.sample == 0 {
                    if current == usize::MAX && a.num_samples > 1 {
                        let _ = writeln!(out, "--- sample 0 ---");
                    }
                    current = 0;
                    let _ = out.write_all(e.text_delta.as_bytes());
                    let _ = out.flush();
                } else if !stream {
                    bar.inc(1);
                }
            }
        },
        None,
    );
    spinner.finish_and_clear();
    bar.finish_and_clear();
    let res = res.map_err(|e| anyhow!(e))?;
    if a.json {
        for c in &res.completions {
            println!("{}", json!({"token_ids": c.token_ids, "text": c.text}));
        }
    } else {
        println!();
        for (i, c) in res.completions.iter().enumerate().skip(1) {
            println!("--- sample {i} ---\n{}", c.text);
        }
    }
    eprintln!("[{} — {}; {} prompt tokens]", res.device, res.device_notice, res.prompt_tokens);
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn synth_command(
    task: TaskArg,
    n: usize,
    seed: u64,
    out: &Path,
    reflective_share: f64,
    difficulty: DifficultyArg,
    threads: Option<usize>,
    overwrite: bool,
) -> Result<i32> {
    let settings = synth::Settings { difficulty: difficulty.into(), reflective_share };
    let mut plan = synth::WorkspacePlan::new(task.family(), n, seed, settings);
    if let Some(t) = threads {
        plan.threads = t;
    }
    plan.overwrite = overwrite;
    let pb = progress(plan.total() as u64, "synth");
    let started = std::time::Instant::now();
    let summary = synth::write_workspace(out, &plan, &|k| pb.inc(k)).map_err(|e| anyhow!("{e}"))?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    // A closed stdout (e.g. piped into `head`) is not an error of the generation.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "generated {} samples ({} reflective) in {}: {} files, {:.1} MB, {:.1} s ({:.0} samples/s, {} threads)",
        summary.samples,
        summary.reflective,
        out.display(),
        summary.files,
        summary.bytes as f64 / 1e6,
        secs,
        summary.samples as f64 / secs.max(1e-9),
        plan.threads
    );
    for (family, k, r) in &summary.per_family {
        let _ = writeln!(stdout, "  {:<9} {k:>7} samples, {r:>6} reflective", family.name());
    }
    Ok(0)
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}, eta {eta})").unwrap());
    pb.set_message(what.to_string());
    pb
}

fn open_lines(file: &Path) -> Result<(Box<dyn BufRead>, u64)> {
    if file.as_os_str() == "-" {
        return Ok((Box::new(std::io::BufReader::new(std::io::stdin())), 0));
    }
    let f = std::fs::File::open(file).with_context(|| format!("{}: cannot open", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(std::io::BufReader::new(f)), len))
}

/// Iterate JSON-lines records, calling `f(line_number, object)`; malformed lines produce an
/// `{"error"}` output line and make the run exit with status 2.
fn for_each_record(file: &Path, mut f: impl FnMut(usize, &serde_json::Map<String, Value>) -> Value) -> Result<i32> {
    let (mut reader, len) = open_lines(file)?;
    let pb = progress(len, "scoring");
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut bad = 0usize;
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).with_context(|| format!("{}: read error", file.display()))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        pb.inc(n as u64);
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t.trim_end_matches(['\n', '\r']),
            Err(e) => {
                bad += 1;
                let msg = format!("{}: line {line_no}: not valid UTF-8 ({e})", file.display());
                eprintln!("{msg}");
                writeln!(out, "{}", json!({ "error": msg }))?;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let result = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => f(line_no, &map),
            Ok(other) => {
                bad += 1;
                let msg = format!("{}: line {line_no}: expected a JSON object, found {}", file.display(), json_kind(&other));
                eprintln!("{msg}");
                json!({ "error": msg })
            }
            Err(e) => {
                bad += 1;
                let msg = format!("{}: line {line_no}: invalid JSON: {e}", file.display());
                eprintln!("{msg}");
                json!({ "error": msg })
            }
        };
        if result.get("input_error").is_some() {
            bad += 1;
            let msg = result["input_error"].as_str().unwrap_or_default().to_string();
            eprintln!("{msg}");
            writeln!(out, "{}", json!({ "error": msg }))?;
            continue;
        }
        writeln!(out, "{result}")?;
    }
    pb.finish_and_clear();
    out.flush()?;
    if bad > 0 {
        eprintln!("{}: {bad} malformed record(s)", file.display());
        return Ok(2);
    }
    Ok(0)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required string field, or an `input_error` value naming the file, line and field.
fn str_field<'a>(file: &Path, line: usize, m: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, Value> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(json!({ "input_error": format!("{}: line {line}: field \"{key}\": expected a string, found {}", file.display(), json_kind(other)) })),
        None => Err(json!({ "input_error": format!("{}: line {line}: missing field \"{key}\"", file.display()) })),
    }
}

/// Ground truths may be numbers in some files; the reference `str()`s them.
fn gt_field(file: &Path, line: usize, m: &serde_json::Map<String, Value>) -> Result<String, Value> {
    match m.get("ground_truth") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(json!({ "input_error": format!("{}: line {line}: field \"ground_truth\": expected a string or number, found {}", file.display(), json_kind(other)) })),
        None => Err(json!({ "input_error": format!("{}: line {line}: missing field \"ground_truth\"", file.display()) })),
    }
}

fn score(protocol: ProtocolArg, file: &Path) -> Result<i32> {
    for_each_record(file, |line, m| {
        let fields = (|| -> Result<(String, String, String), Value> {
            Ok((str_field(file, line, m, "sequence")?.to_string(), gt_field(file, line, m)?, str_field(file, line, m, "question_type")?.to_string()))
        })();
        let (seq, gt, qt) = match fields {
            Ok(x) => x,
            Err(e) => return e,
        };
        let r = match protocol {
            ProtocolArg::Vilasr => rewards::vilasr::rl_score(&seq, &gt, &qt),
            ProtocolArg::Vilavt => rewards::vilavt::rl_score(&seq, &gt, &qt),
        };
        match r {
            Ok(p) => {
                let mut v = json!({ "overall": p.overall, "format": p.format, "accuracy": p.accuracy });
                if let Some(refl) = p.reflection {
                    v["reflection"] = json!(refl);
                }
                v
            }
            Err(e) => json!({ "error": e.to_string() }),
        }
    })
}

fn score_answer(scorer: ScorerArg, file: &Path) -> Result<i32> {
    let scorer = match scorer {
        ScorerArg::VilasrRl => AnswerScorer::VilasrRl,
        ScorerArg::VilasrEval => AnswerScorer::VilasrEval,
        ScorerArg::VilavtRl => AnswerScorer::VilavtRl,
        ScorerArg::VilavtEval => AnswerScorer::VilavtEval,
    };
    for_each_record(file, |line, m| {
        let fields = (|| -> Result<(String, String, String), Value> {
            Ok((str_field(file, line, m, "final_turn")?.to_string(), gt_field(file, line, m)?, str_field(file, line, m, "question_type")?.to_string()))
        })();
        match fields {
            Ok((ft, gt, qt)) => match rewards::score_answer(scorer, &ft, &gt, &qt) {
                Ok(s) => json!({ "score": s }),
                Err(e) => json!({ "error": e.to_string() }),
            },
            Err(e) => e,
        }
    })
}

/// Decode an image file with a clear error naming it.
pub fn load_image(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read image", path.display()))?;
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .with_context(|| format!("{}: cannot detect image format", path.display()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| anyhow!("{}: not a readable image: {e}", path.display()))?;
    if w > resize::MAX_SIDE || h > resize::MAX_SIDE {
        bail!("{}: image of {w}×{h} exceeds the {}-pixel side limit", path.display(), resize::MAX_SIDE);
    }
    image::load_from_memory(&bytes).map_err(|e| anyhow!("{}: not a readable image: {e}", path.display()))
}

fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    scripted::write_png(img, path).map_err(|e| anyhow!("{e}"))
}

fn render(
    images: &[PathBuf],
    responses: &[PathBuf],
    out: &Path,
    profile: Profile,
    no_resize: bool,
    max_pixels: Option<f64>,
    fixes: ExecutorFixes,
) -> Result<i32> {
    let budget = max_pixels.unwrap_or(profile.limits().max_pixels);
    let mut inputs = Vec::new();
    for p in images {
        let img = load_image(p)?;
        let rgb = if no_resize { resize::to_rgb(img) } else { fetch_image(img, DEFAULT_MIN_PIXELS, budget).map_err(|e| anyhow!("{}: {e}", p.display()))? };
        inputs.push(rgb);
    }
    let mut texts = Vec::new();
    for p in responses {
        let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read response", p.display()))?;
        let t = String::from_utf8(bytes).map_err(|e| anyhow!("{}: response is not valid UTF-8 ({e})", p.display()))?;
        texts.push(t);
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create output folder", out.display()))?;
    let mut session = VilasrSession::new(inputs, profile, false, None, fixes);
    let mut steps = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let applied = session.apply(t, FinishReason::Stop);
        let mut v = serde_json::to_value(&applied)?;
        v["response_file"] = json!(responses[i].display().to_string());
        v["new_images"] = json!(applied.new_images.iter().map(|(n, on)| json!({ "image": n, "drawn_on": on })).collect::<Vec<_>>());
        steps.push(v);
    }
    for (i, img) in session.images.iter().enumerate() {
        save_png(img, &out.join(format!("image-{}.png", i + 1)))?;
    }
    let doc = json!({ "profile": profile, "inputs": images.len(), "images": session.images.len(), "steps": steps });
    trajectory::write_atomic(&out.join("steps.json"), serde_json::to_string_pretty(&doc)?.as_bytes()).map_err(|e| anyhow!("{e}"))?;
    println!("{}", serde_json::to_string(&doc)?);
    Ok(0)
}

const QUICKSTART_INPUT: &[u8] = include_bytes!("../assets/quickstart/input.png");
const QUICKSTART_SAMPLE: &str = include_str!("../assets/quickstart/sample.json");
const QUICKSTART_TURNS: [&str; 3] = [
    include_str!("../assets/quickstart/turn1.txt"),
    include_str!("../assets/quickstart/turn2.txt"),
    include_str!("../assets/quickstart/turn3.txt"),
];

/// The embedded quick-start: prompt → three assistant turns → observations → reward.
fn demo(out: &Path) -> Result<i32> {
    let sample: Sample = serde_json::from_str(QUICKSTART_SAMPLE).context("embedded quick-start sample")?;
    let input = image::load_from_memory(QUICKSTART_INPUT).context("embedded quick-start image")?;
    let profile = Profile::Rl;
    let first = fetch_image(input, DEFAULT_MIN_PIXELS, profile.limits().max_pixels).map_err(|e| anyhow!("{e}"))?;
    let (w, h) = first.dimensions();
    let responses: Vec<String> = QUICKSTART_TURNS.iter().map(|t| t.to_string()).collect();
    let mut run = scripted::run_scripted(&sample.id, &sample, vec![first], VilasrPromptStyle::Rl, profile, &responses)?;
    run.trajectory.model = Some("quick-start script".into());
    println!("Sightline quick-start: {} ({}×{} input, profile {:?})", sample.question, w, h, profile);
    for (i, turn) in run.trajectory.turns.iter().enumerate() {
        let kind = match (&turn.finish_reason, turn.observations.is_empty()) {
            (Some(r), _) => format!("finished ({r})"),
            (None, false) => "executed".to_string(),
            (None, true) => "regenerate".to_string(),
        };
        println!(
            "  turn {}: {} action(s) → {kind} ; new images {:?}",
            i + 1,
            turn.actions.len(),
            turn.observations.iter().map(|o| format!("#{} drawn on #{}", o.number, o.drawn_on)).collect::<Vec<_>>()
        );
    }
    let r = run.trajectory.rewards.clone().ok_or_else(|| anyhow!("the quick-start sample has no ground truth"))?;
    println!("  reward: overall {} (format {}, accuracy {}, reflection {})", r.overall, r.format, r.accuracy, r.reflection.unwrap_or(0.0));
    for why in &r.reasons {
        println!("    - {why}");
    }
    run.save(out).map_err(|e| anyhow!("{e}"))?;
    println!("  saved {}", out.join(trajectory::TRAJECTORY_FILE).display());
    Ok(0)
}
