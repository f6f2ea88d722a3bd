//! The live rollout engine (issue 6): the interleaved generate → parse → draw → observe loop of
//! ViLaSR (and the `<tool>` zoom-in loop of ViLaVT, in `vilavt`) driven by a Qwen2.5-VL checkpoint,
//! streamed to the studio as [`RolloutEvent`]s from a background thread, plus forks from a
//! recorded prefix and model-free [`replay`].
//!
//! The loop's executor side is the core's [`VilasrSession`] (counters, answer check, image cap,
//! observation texts); prompts are built exactly as `core::scripted` builds them. The model side
//! sits behind the [`Responder`] trait: [`ModelResponder`] keeps one KV-cache `Session`, so a
//! conversation that grows by one turn is only prefilled for the new part and every image goes
//! through the vision tower once; [`ScriptedResponder`] replays fixed texts (tests, demos).

mod engine;
mod model_responder;
mod replay;
mod vilavt;

pub use model_responder::ModelResponder;
pub use replay::{replay, ReplayReport};
pub use vilavt::VILAVT_ENCODER_NOTICE;

use crate::core::actions::{extract_json_blocks, parse_actions, BlockMode};
use crate::core::executor::{action_records, ExecutorFixes, Profile};
use crate::core::prompts::{VilasrPromptStyle, EOS_TEXT};
use crate::core::resize::{fetch_image, DEFAULT_MIN_PIXELS};
use crate::core::rewards::{pass_at_k, vilasr};
use crate::core::scripted::write_png;
use crate::core::session::VilasrSession;
use crate::core::trajectory::{
    ActionRecord, FinishReason, ForkOrigin, ImageRef, Media, Observation, Protocol, Sample, Trajectory, Turn, TurnTimings,
};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Executor profile and sampling defaults of a run (protocol §2.9, `core::executor::Profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RunProfile {
    /// `eval/infer.py`: 45 images, 10 turns (20 for maze), 16,384 tokens per turn, T=0.75, top-p 0.9.
    #[default]
    Eval,
    /// The RL rollout: 42 images, call counters, 1,024 tokens per turn, 13,312 in total, T=1.0.
    Rl,
}

impl RunProfile {
    pub fn core(self) -> Profile {
        match self {
            RunProfile::Eval => Profile::Eval,
            RunProfile::Rl => Profile::Rl,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RunProfile::Eval => "eval",
            RunProfile::Rl => "rl",
        }
    }
}

/// Everything a run needs besides the sample.
#[derive(Clone, Debug)]
pub struct RolloutConfig {
    pub model_dir: PathBuf,
    /// `auto` | `cpu` | `cuda` | `cuda:N`.
    pub device: String,
    pub profile: RunProfile,
    /// Trajectories per sample (pass@k). With a model they are generated together (batched
    /// decoding on one loaded model); a scripted responder runs them one after the other.
    pub n: usize,
    /// Trajectory k, turn t samples with seed `seed + 1_000_003·k + t`.
    pub seed: u64,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Per-turn token limit (default: the profile's).
    pub max_new_tokens: Option<usize>,
    /// Where trajectories are written: `<out>/<trajectory id>/trajectory.json` + `images/`.
    /// `None`: a fresh folder under the system temp dir (observation PNGs must live somewhere).
    pub out_dir: Option<PathBuf>,
    /// Generations per sample (eval `max_num_steps`, RL `num_llm_calls_available`); default: the profile's.
    pub max_turns: Option<usize>,
    /// RL total response-token budget (default 13,312); ignored in eval.
    pub max_total_tokens: Option<usize>,
    /// ViLaSR (drawing) or ViLaVT (region inquiries); a fork follows its parent's.
    pub protocol: Protocol,
    /// ViLaVT image budget of inputs and zoom-ins (the record's `max_pixels`; default 200,704).
    pub vilavt_max_pixels: Option<f64>,
    /// Generate the n trajectories together (batched decoding) when the responder can; `false`
    /// runs them one after the other (the batch composition then never varies, so sampled runs
    /// repeat bit for bit).
    pub batch: bool,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            model_dir: PathBuf::new(),
            device: "auto".into(),
            profile: RunProfile::Eval,
            n: 1,
            seed: 0,
            temperature: None,
            top_p: None,
            max_new_tokens: None,
            out_dir: None,
            max_turns: None,
            max_total_tokens: None,
            protocol: Protocol::Vilasr,
            vilavt_max_pixels: None,
            batch: true,
        }
    }
}

/// What a run reports, in order; [`RolloutEvent::Done`] is always last.
#[derive(Clone, Debug)]
pub enum RolloutEvent {
    /// "loading model…", "encoding image 1", the device notice.
    Status(String),
    /// Trajectory k of n begins.
    Started { k: usize },
    /// Decoded text delta of the current assistant turn.
    Token { k: usize, turn: usize, text: String },
    /// An item of a ```` ```json ```` block, the moment the block closes in the stream.
    Action { k: usize, turn: usize, action: ActionRecord },
    /// An observation image written to disk (PNG).
    Observation { k: usize, turn: usize, number: u32, drawn_on: u32, path: PathBuf },
    /// The full turn, timings included.
    TurnFinished { k: usize, turn: usize, record: Turn },
    /// The final trajectory (finish reason set, rewards when the ground truth is known) and the
    /// folder it was saved to.
    Finished { k: usize, trajectory: Trajectory, dir: Option<PathBuf> },
    Failed { k: Option<usize>, message: String },
    /// pass@n over the scored trajectories (accuracy 1 = pass); `None` without ground truth or
    /// when fewer than n trajectories finished.
    Done { pass_at_k: Option<f64> },
}

/// A run in progress on its background thread.
pub struct RolloutHandle {
    events: Receiver<RolloutEvent>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    done: AtomicBool,
}

impl RolloutHandle {
    fn note(&self, e: &RolloutEvent) {
        if matches!(e, RolloutEvent::Done { .. }) {
            self.done.store(true, Ordering::Relaxed);
        }
    }
    /// The next event, if one is waiting (never blocks).
    pub fn try_recv(&self) -> Option<RolloutEvent> {
        match self.events.try_recv() {
            Ok(e) => {
                self.note(&e);
                Some(e)
            }
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => None,
        }
    }
    /// The next event, waiting at most `d`.
    pub fn recv_timeout(&self, d: Duration) -> Option<RolloutEvent> {
        match self.events.recv_timeout(d) {
            Ok(e) => {
                self.note(&e);
                Some(e)
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
    /// Stop at the next token; started trajectories end `cancelled` and are still emitted and saved.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
    /// Whether the `Done` event has been received (or the worker is gone).
    pub fn is_finished(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for RolloutHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        // Drain so that a worker blocked on a full channel can finish; then let it go.
        while self.events.try_recv().is_ok() {}
        let _ = self.thread.take();
    }
}

/// Where a fork branches off a parent trajectory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkSpec {
    /// 0-based turn to branch at: turns `< turn` are kept verbatim.
    pub turn: usize,
    /// Replaces turn `turn`'s assistant text and continues after it; `None`: regenerate turn `turn`.
    pub edited_text: Option<String>,
}

/// One generated assistant turn.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Without `<|im_end|>`.
    pub text: String,
    /// `Stop` (EOS), `Length` or `Cancelled`.
    pub finish: FinishReason,
    pub tokens: usize,
    /// The turn's prefill (new prompt tokens, the vision tower over new images included) and the
    /// vision tower's share of it; `None` when the responder has no model.
    pub prefill_ms: Option<f64>,
    pub vision_ms: Option<f64>,
    /// Prompt tokens taken from the KV cache, and prefilled, for this turn.
    pub prompt_reused: Option<usize>,
    pub prompt_prefilled: Option<usize>,
}

impl Generated {
    /// A turn from a responder without a model (no prefill accounting).
    pub fn text_only(text: String, finish: FinishReason, tokens: usize) -> Self {
        Generated { text, finish, tokens, prefill_ms: None, vision_ms: None, prompt_reused: None, prompt_prefilled: None }
    }

    /// The turn's timings: the whole generate call, the executor, and the prefill split.
    pub fn timings(&self, generate_ms: f64, execute_ms: Option<f64>) -> TurnTimings {
        TurnTimings { generate_ms: Some(generate_ms), execute_ms, generated_tokens: Some(self.tokens as u32), prefill_ms: self.prefill_ms, vision_ms: self.vision_ms }
    }
}

/// The model side of the loop: one conversation at a time, grown turn by turn.
pub trait Responder: Send {
    /// Load what is needed (model, tokenizer); report progress through `status`.
    fn prepare(&mut self, status: &mut dyn FnMut(String)) -> Result<(), String>;
    /// Name recorded as the trajectory's `model`.
    fn name(&self) -> String;
    /// Start trajectory `k`: the rendered first prompt (ending `<|im_start|>assistant\n`) and its
    /// input images in prompt order.
    fn begin(&mut self, k: usize, prompt: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String>;
    /// Generate the next assistant turn of the conversation.
    fn generate(&mut self, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u64, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String>;
    /// Keep the last generated turn in the conversation (exact tokens, EOS left out).
    fn accept_generated(&mut self) -> Result<(), String>;
    /// Append `text` (an assistant text kept from a parent, or an observation turn starting
    /// `<|im_end|>`) whose vision pads stand for `images`.
    fn append(&mut self, text: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String>;
    /// Tokens `text` takes (the RL budget counts observation texts).
    fn count_tokens(&self, text: &str) -> Result<usize, String>;
    /// `n` more responders on the same loaded model whose conversations can run on their own
    /// threads and are generated together (batched); `None` when this responder cannot (then the
    /// n trajectories of a run go one after the other). Called after `prepare`.
    fn concurrent(&mut self, _n: usize) -> Option<Vec<Box<dyn Responder>>> {
        None
    }
}

/// Replays fixed assistant texts as a "model": trajectory k uses `scripts[k % len]`, turn t its
/// t-th text (an empty answer-less text past the end). Tokens are whitespace-delimited words.
pub struct ScriptedResponder {
    scripts: Vec<Vec<String>>,
    k: usize,
    turn: usize,
    /// Sleep per token (tests of cancellation).
    pub token_delay: Duration,
}

impl ScriptedResponder {
    pub fn new(scripts: Vec<Vec<String>>) -> Self {
        ScriptedResponder { scripts, k: 0, turn: 0, token_delay: Duration::ZERO }
    }
}

fn word_tokens(text: &str) -> Vec<&str> {
    text.split_inclusive(char::is_whitespace).collect()
}

impl Responder for ScriptedResponder {
    fn prepare(&mut self, status: &mut dyn FnMut(String)) -> Result<(), String> {
        if self.scripts.is_empty() {
            return Err("the scripted responder has no scripts".into());
        }
        status("scripted responder (no model)".into());
        Ok(())
    }
    fn name(&self) -> String {
        "scripted responder".into()
    }
    fn begin(&mut self, k: usize, _prompt: &str, _images: &[RgbImage], _status: &mut dyn FnMut(String)) -> Result<(), String> {
        self.k = k;
        self.turn = 0;
        Ok(())
    }
    fn generate(&mut self, max_new_tokens: usize, _t: f32, _p: f32, _seed: u64, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String> {
        let script = &self.scripts[self.k % self.scripts.len()];
        let full = script.get(self.turn).cloned().unwrap_or_default();
        self.turn += 1;
        let mut text = String::new();
        let mut tokens = 0;
        for w in word_tokens(&full) {
            if cancel.load(Ordering::Relaxed) {
                return Ok(Generated::text_only(text, FinishReason::Cancelled, tokens));
            }
            if tokens >= max_new_tokens {
                return Ok(Generated::text_only(text, FinishReason::Length, tokens));
            }
            if !self.token_delay.is_zero() {
                std::thread::sleep(self.token_delay);
            }
            text.push_str(w);
            tokens += 1;
            on_text(w);
        }
        // The EOS token.
        Ok(Generated::text_only(text, FinishReason::Stop, tokens + 1))
    }
    fn accept_generated(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn append(&mut self, _text: &str, _images: &[RgbImage], _status: &mut dyn FnMut(String)) -> Result<(), String> {
        Ok(())
    }
    fn count_tokens(&self, text: &str) -> Result<usize, String> {
        Ok(word_tokens(text).len())
    }
}

/// Start a run on a background thread. `sample.media` image paths are absolute or relative to
/// `base_dir`. `wake` is called after each event (the studio passes `ctx.request_repaint`).
pub fn start(sample: Sample, base_dir: PathBuf, config: RolloutConfig, wake: Box<dyn Fn() + Send>) -> RolloutHandle {
    let responder = Box::new(ModelResponder::new(config.model_dir.clone(), config.device.clone()));
    spawn(Job { sample, base_dir, config, fork: None }, responder, wake)
}

/// [`start`] with another responder (e.g. [`ScriptedResponder`]).
pub fn start_with_responder(sample: Sample, base_dir: PathBuf, config: RolloutConfig, responder: Box<dyn Responder>, wake: Box<dyn Fn() + Send>) -> RolloutHandle {
    spawn(Job { sample, base_dir, config, fork: None }, responder, wake)
}

/// Continue from a prefix of `parent`: its first `fork.turn` turns are kept (executed again), turn
/// `fork.turn` is replaced by `edited_text` when given, and generation continues; the result
/// records `fork_of`. `base_dir` is what the parent's image paths are relative to (its folder).
pub fn start_fork(parent: &Trajectory, base_dir: PathBuf, fork: ForkSpec, config: RolloutConfig, wake: Box<dyn Fn() + Send>) -> RolloutHandle {
    let responder = Box::new(ModelResponder::new(config.model_dir.clone(), config.device.clone()));
    start_fork_with_responder(parent, base_dir, fork, config, responder, wake)
}

/// [`start_fork`] with another responder.
pub fn start_fork_with_responder(
    parent: &Trajectory,
    base_dir: PathBuf,
    fork: ForkSpec,
    config: RolloutConfig,
    responder: Box<dyn Responder>,
    wake: Box<dyn Fn() + Send>,
) -> RolloutHandle {
    let sample = parent.sample.clone();
    spawn(Job { sample, base_dir, config, fork: Some((parent.clone(), fork)) }, responder, wake)
}

struct Job {
    sample: Sample,
    base_dir: PathBuf,
    config: RolloutConfig,
    fork: Option<(Trajectory, ForkSpec)>,
}

struct Emitter {
    tx: SyncSender<RolloutEvent>,
    /// Behind a lock so the trajectories of a batched run can emit from their own threads.
    wake: std::sync::Mutex<Box<dyn Fn() + Send>>,
    cancel: Arc<AtomicBool>,
}

impl Emitter {
    fn send(&self, e: RolloutEvent) {
        if self.tx.send(e).is_err() {
            // Nobody listens any more: stop the run.
            self.cancel.store(true, Ordering::Relaxed);
        }
        if let Ok(w) = self.wake.lock() {
            (*w)();
        }
    }
}

fn spawn(job: Job, mut responder: Box<dyn Responder>, wake: Box<dyn Fn() + Send>) -> RolloutHandle {
    let (tx, rx) = sync_channel(256);
    let cancel = Arc::new(AtomicBool::new(false));
    let em = Emitter { tx, wake: std::sync::Mutex::new(wake), cancel: cancel.clone() };
    let thread = std::thread::Builder::new().name("sightline-rollout".into()).spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(&job, responder.as_mut(), &em)));
        let pass = match outcome {
            Ok(Ok(p)) => p,
            Ok(Err(message)) => {
                em.send(RolloutEvent::Failed { k: None, message });
                None
            }
            Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                em.send(RolloutEvent::Failed { k: None, message: format!("the rollout worker panicked: {msg}") });
                None
            }
        };
        em.send(RolloutEvent::Done { pass_at_k: pass });
    });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            // No thread: report through a fresh channel so the caller still sees Failed + Done.
            let (tx, rx2) = sync_channel(4);
            let _ = tx.send(RolloutEvent::Failed { k: None, message: format!("cannot start the rollout thread: {e}") });
            let _ = tx.send(RolloutEvent::Done { pass_at_k: None });
            return RolloutHandle { events: rx2, cancel, thread: None, done: AtomicBool::new(false) };
        }
    };
    RolloutHandle { events: rx, cancel, thread, done: AtomicBool::new(false) }
}

/// Resolve an image path of a sample against `base`.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = p.strip_prefix("file://").unwrap_or(p);
    let pb = Path::new(p);
    if pb.is_absolute() {
        pb.to_path_buf()
    } else {
        base.join(pb)
    }
}

/// Load a sample's input images and resize them with `fetch_image` and `max_pixels`.
pub fn load_inputs(sample: &Sample, base: &Path, max_pixels: f64) -> Result<Vec<RgbImage>, String> {
    let refs = sample.media.images();
    if refs.is_empty() {
        return Err(format!("sample {:?} has no input images", sample.id));
    }
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let path = resolve(base, &r.path);
        let img = image::open(&path).map_err(|e| format!("{}: cannot open image: {e}", path.display()))?;
        out.push(fetch_image(img, DEFAULT_MIN_PIXELS, max_pixels).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    Ok(out)
}

/// The first-prompt style of a sample under `profile` (RL: the RL dataset's; eval: by data type).
pub fn prompt_style(sample: &Sample, profile: RunProfile) -> Result<VilasrPromptStyle, String> {
    let n = sample.media.images().len();
    Ok(match profile {
        RunProfile::Rl => VilasrPromptStyle::Rl,
        RunProfile::Eval => match sample.data_type.as_str() {
            "single_view" | "multi_view" => VilasrPromptStyle::EvalSpar,
            _ if sample.media.is_video() || sample.data_type == "video" => VilasrPromptStyle::EvalVsi { max_frames: n },
            _ if n == 1 => VilasrPromptStyle::EvalSingleImage,
            other => {
                return Err(format!(
                    "sample {:?}: no eval prompt for {n} images with data_type {other:?} (eval knows single-image, video and single_view/multi_view samples); try the rl profile",
                    sample.id
                ))
            }
        },
    })
}

pub use crate::core::scripted::FirstPrompt;

/// Build the first prompt exactly as `core::scripted::run_scripted` does (it is the same function).
pub fn first_prompt(sample: &Sample, inputs: &[RgbImage], style: VilasrPromptStyle) -> Result<FirstPrompt, String> {
    crate::core::scripted::first_prompt(sample, inputs, style).map_err(|e| format!("sample {:?}: {e}", sample.id))
}

fn is_maze(sample: &Sample) -> bool {
    sample.grid_size.is_some() || sample.data_type == "maze"
}

fn safe_name(id: &str) -> String {
    let s: String = id.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') {
        format!("t{s}")
    } else {
        s
    }
}

fn temp_root() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("sightline-rollout-{}-{nanos}", std::process::id()))
}

fn run_job(job: &Job, responder: &mut dyn Responder, em: &Emitter) -> Result<Option<f64>, String> {
    let sample = &job.sample;
    let cfg = &job.config;
    if cfg.n == 0 {
        return Err("n must be at least 1".into());
    }
    let protocol = job.fork.as_ref().map(|(p, _)| p.protocol).unwrap_or(cfg.protocol);
    if let Some((parent, fork)) = &job.fork {
        check_fork(parent, fork)?;
    }
    if protocol == Protocol::Vilavt {
        let ctx = vilavt::Context::new(sample, &job.base_dir, cfg)?;
        return run_all(job, responder, em, &|job, responder, k, root| vilavt::run_one(job, responder, em, k, &ctx, root));
    }
    let profile = cfg.profile.core();
    let limits = profile.limits();
    let inputs = load_inputs(sample, &job.base_dir, limits.max_pixels)?;
    let style = prompt_style(sample, cfg.profile)?;
    let first = first_prompt(sample, &inputs, style)?;
    run_all(job, responder, em, &|job, responder, k, root| run_one(job, responder, em, k, &inputs, &first, root))
}

type OneRun<'a> = dyn Fn(&Job, &mut dyn Responder, usize, &Path) -> Result<(Trajectory, Option<PathBuf>), String> + Sync + 'a;

/// Load the model, run the n trajectories, and compute pass@n. With a responder that supports it
/// (a model) the n trajectories run on their own threads and are generated together, one batched
/// decode step for all of them; otherwise one after the other.
fn run_all(job: &Job, responder: &mut dyn Responder, em: &Emitter, one: &OneRun) -> Result<Option<f64>, String> {
    let sample = &job.sample;
    let cfg = &job.config;
    em.send(RolloutEvent::Status("loading model…".into()));
    responder.prepare(&mut |s| em.send(RolloutEvent::Status(s)))?;
    let root = cfg.out_dir.clone().unwrap_or_else(temp_root);
    let together = if cfg.n > 1 && cfg.batch { responder.concurrent(cfg.n) } else { None };
    let outcomes: Vec<(usize, Result<(Trajectory, Option<PathBuf>), String>)> = match together {
        Some(clients) => {
            em.send(RolloutEvent::Status(format!("{} trajectories generated together (batched decoding)", cfg.n)));
            std::thread::scope(|s| {
                let root = &root;
                let handles: Vec<_> = clients
                    .into_iter()
                    .enumerate()
                    .map(|(k, mut client)| {
                        em.send(RolloutEvent::Started { k });
                        s.spawn(move || {
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(job, client.as_mut(), k, root)));
                            let r = r.unwrap_or_else(|_| Err("the trajectory's thread panicked".into()));
                            report(em, k, &r);
                            r
                        })
                    })
                    .collect();
                handles.into_iter().enumerate().map(|(k, h)| (k, h.join().unwrap_or_else(|_| Err("the trajectory's thread panicked".into())))).collect()
            })
        }
        None => {
            let mut out = Vec::new();
            for k in 0..cfg.n {
                if em.cancel.load(Ordering::Relaxed) {
                    break;
                }
                em.send(RolloutEvent::Started { k });
                let r = one(job, responder, k, &root);
                report(em, k, &r);
                out.push((k, r));
            }
            out
        }
    };
    let mut scored = 0usize;
    let mut passed = 0usize;
    let mut all_scored = sample.ground_truth.is_some() && outcomes.len() == cfg.n;
    for (_, r) in &outcomes {
        match r {
            Ok((traj, _)) => {
                if traj.finish_reason == Some(FinishReason::Cancelled) {
                    all_scored = false;
                }
                if let Some(r) = &traj.rewards {
                    scored += 1;
                    if r.accuracy == 1.0 {
                        passed += 1;
                    }
                }
            }
            Err(_) => all_scored = false,
        }
    }
    Ok(if all_scored { pass_at_k(scored, passed, cfg.n) } else { None })
}

/// Tell the listener how trajectory k ended.
fn report(em: &Emitter, k: usize, r: &Result<(Trajectory, Option<PathBuf>), String>) {
    match r {
        Ok((trajectory, dir)) => em.send(RolloutEvent::Finished { k, trajectory: trajectory.clone(), dir: dir.clone() }),
        Err(message) => em.send(RolloutEvent::Failed { k: Some(k), message: message.clone() }),
    }
}

fn check_fork(parent: &Trajectory, fork: &ForkSpec) -> Result<(), String> {
    let n = parent.turns.len();
    let limit = if fork.edited_text.is_some() { n.saturating_sub(1) } else { n };
    if fork.turn > limit || (fork.edited_text.is_some() && n == 0) {
        return Err(format!("trajectory {:?} has {n} turn(s): cannot fork at turn {}", parent.id, fork.turn));
    }
    for (i, t) in parent.turns[..fork.turn].iter().enumerate() {
        if t.finish_reason.is_some() {
            return Err(format!("trajectory {:?}: turn {i} ended it ({}); fork at turn {i} or earlier", parent.id, t.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("")));
        }
    }
    Ok(())
}

/// Trajectory k, turn t samples with seed `seed + 1_000_003·k + t`.
fn turn_seed(cfg: &RolloutConfig, k: usize, turn_no: usize) -> u64 {
    cfg.seed.wrapping_add(1_000_003u64.wrapping_mul(k as u64)).wrapping_add(turn_no as u64)
}

/// Generate turn `turn_no` of trajectory `k` with `(max_new_tokens, temperature, top_p, seed)`,
/// streaming each text delta and each action the moment `detect` finds it in the text so far.
/// Returns the turn and its wall time in ms.
fn generate_turn(
    responder: &mut dyn Responder,
    em: &Emitter,
    k: usize,
    turn_no: usize,
    sampling: (usize, f32, f32, u64),
    detect: &mut dyn FnMut(&str) -> Vec<ActionRecord>,
) -> Result<(Generated, f64), String> {
    let (max_new, temperature, top_p, seed) = sampling;
    let mut so_far = String::new();
    let t0 = Instant::now();
    let g = responder.generate(
        max_new,
        temperature,
        top_p,
        seed,
        &mut |delta: &str| {
            if delta.is_empty() {
                return;
            }
            so_far.push_str(delta);
            em.send(RolloutEvent::Token { k, turn: turn_no, text: delta.to_string() });
            for action in detect(&so_far) {
                em.send(RolloutEvent::Action { k, turn: turn_no, action });
            }
        },
        &em.cancel,
    )?;
    Ok((g, t0.elapsed().as_secs_f64() * 1e3))
}

/// Closed ```` ```json ```` blocks of a streamed text, parsed as they close.
struct ActionStream {
    closed: usize,
}

impl ActionStream {
    fn feed(&mut self, text: &str) -> Vec<ActionRecord> {
        if !text.contains("```") {
            return Vec::new();
        }
        let blocks = extract_json_blocks(text, BlockMode::Executor);
        let mut out = Vec::new();
        while self.closed < blocks.len() && blocks[self.closed].terminated {
            let b = &blocks[self.closed];
            if let Ok(parsed) = parse_actions(&format!("```json\n{}\n```", b.text), BlockMode::Executor) {
                for mut a in action_records(&parsed) {
                    a.block = self.closed;
                    out.push(a);
                }
            }
            self.closed += 1;
        }
        out
    }
}

struct Loop<'a> {
    em: &'a Emitter,
    k: usize,
    dir: PathBuf,
    n_inputs: usize,
    session: VilasrSession,
    traj: Trajectory,
    sequence: String,
    total_tokens: usize,
    last_gen_finish: Option<FinishReason>,
}

impl Loop<'_> {
    fn write_obs(&self, number: usize) -> Result<PathBuf, String> {
        let rel = format!("images/image-{number}.png");
        let path = self.dir.join(&rel);
        write_png(&self.session.images[number - 1], &path).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// Apply one response; returns the recorded turn (not yet pushed) and the new images.
    fn apply(&mut self, turn_no: usize, text: &str, gen_finish: FinishReason, tokens: usize, responder: &dyn Responder, rl_budget: Option<usize>) -> Result<(Turn, Vec<RgbImage>), String> {
        let t0 = Instant::now();
        // RL: the generation is finished (relabelled max_tokens) when the budget is reached.
        if let Some(budget) = rl_budget {
            if self.total_tokens + tokens >= budget && gen_finish != FinishReason::Cancelled {
                self.sequence.push_str(text);
                self.session.finished = Some(FinishReason::MaxTokens);
                self.last_gen_finish = Some(gen_finish);
                self.total_tokens += tokens;
                let turn = Turn {
                    assistant_text: text.to_string(),
                    finish_reason: Some(FinishReason::MaxTokens),
                    notes: vec![format!("the response-token total reached the RL budget of {budget}")],
                    ..Default::default()
                };
                return Ok((turn, Vec::new()));
            }
        }
        if gen_finish == FinishReason::Cancelled {
            self.sequence.push_str(text);
            self.session.finished = Some(FinishReason::Cancelled);
            self.last_gen_finish = Some(FinishReason::Cancelled);
            let turn = Turn { assistant_text: text.to_string(), finish_reason: Some(FinishReason::Cancelled), notes: vec!["stopped by the user".into()], ..Default::default() };
            return Ok((turn, Vec::new()));
        }
        self.last_gen_finish = Some(gen_finish.clone());
        let applied = self.session.apply(text, gen_finish);
        let mut turn = Turn { assistant_text: text.to_string(), actions: applied.actions.clone(), notes: applied.notes.clone(), ..Default::default() };
        turn.finish_reason = applied.finish_reason.clone();
        let mut new_images = Vec::new();
        if applied.kind != "regenerate" {
            self.sequence.push_str(text);
            self.total_tokens += tokens;
        }
        if let Some(obs_text) = &applied.observation_text {
            let obs_tokens = responder.count_tokens(obs_text)?;
            let cost = obs_tokens + 256 * applied.new_images.len();
            if rl_budget.is_some_and(|b| self.total_tokens + cost >= b) {
                turn.finish_reason = Some(FinishReason::MaxTokens);
                turn.notes.push("appending the observation would reach the RL response-token budget: the response is kept, the observation is not added".into());
                self.session.finished = Some(FinishReason::MaxTokens);
            } else {
                self.total_tokens += cost;
                for (n, on) in &applied.new_images {
                    let img = &self.session.images[n - 1];
                    let path = self.write_obs(*n)?;
                    turn.observations.push(Observation {
                        number: *n as u32,
                        drawn_on: *on as u32,
                        image: ImageRef::with_size(format!("images/image-{n}.png"), img.width(), img.height()),
                    });
                    new_images.push(img.clone());
                    self.em.send(RolloutEvent::Observation { k: self.k, turn: turn_no, number: *n as u32, drawn_on: *on as u32, path });
                }
                self.sequence.push_str(obs_text);
                turn.observation_text = Some(obs_text.clone());
            }
        }
        if applied.dropped_images > 0 {
            turn.notes.push(format!("{} new image(s) dropped at the image cap", applied.dropped_images));
        }
        turn.timings.execute_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
        Ok((turn, new_images))
    }
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    job: &Job,
    responder: &mut dyn Responder,
    em: &Emitter,
    k: usize,
    inputs: &[RgbImage],
    first: &FirstPrompt,
    root: &Path,
) -> Result<(Trajectory, Option<PathBuf>), String> {
    let cfg = &job.config;
    let sample = &job.sample;
    let profile = cfg.profile.core();
    let limits = profile.limits();
    let id = match &job.fork {
        Some((parent, fork)) => format!("{}-fork{}-{k}", parent.id, fork.turn),
        None => format!("{}-{k}", sample.id),
    };
    let dir = root.join(safe_name(&id));
    let mut traj = Trajectory::new(id, Protocol::Vilasr, sample.clone());
    traj.system_prompt = Some(first.system.clone());
    traj.first_user_text = Some(first.first_user_text.clone());
    traj.profile = Some(cfg.profile.name().into());
    traj.model = Some(responder.name());
    traj.fork_of = job.fork.as_ref().map(|(p, f)| ForkOrigin { parent_id: p.id.clone(), turn: f.turn });
    let session = VilasrSession::new(inputs.to_vec(), profile, is_maze(sample), cfg.max_turns, ExecutorFixes::default());
    let mut lp = Loop { em, k, dir: dir.clone(), n_inputs: inputs.len(), session, traj, sequence: first.prompt.clone(), total_tokens: 0, last_gen_finish: None };
    let status = |s: String| em.send(RolloutEvent::Status(s));
    responder.begin(k, &first.prompt, inputs, &mut { status })?;
    let rl_budget = match profile {
        Profile::Rl => Some(cfg.max_total_tokens.or(limits.total_response_tokens).unwrap_or(13_312)),
        Profile::Eval => None,
    };
    let max_new = cfg.max_new_tokens.unwrap_or(limits.max_new_tokens_per_turn);
    let temperature = cfg.temperature.unwrap_or(limits.temperature);
    let top_p = cfg.top_p.unwrap_or(limits.top_p);

    // Fork: the kept prefix, executed again (and the edited turn, when given).
    if let Some((parent, fork)) = &job.fork {
        let mut kept: Vec<String> = parent.turns[..fork.turn].iter().map(|t| t.assistant_text.clone()).collect();
        if let Some(e) = &fork.edited_text {
            kept.push(e.clone());
        }
        for (t, text) in kept.iter().enumerate() {
            let tokens = responder.count_tokens(text)?;
            let (mut turn, new_images) = lp.apply(t, text, FinishReason::Stop, tokens, responder, rl_budget)?;
            turn.notes.insert(0, if t < fork.turn { format!("kept from {}", parent.id) } else { "edited by the user".into() });
            let regenerate = turn.finish_reason.is_none() && turn.observation_text.is_none();
            if !regenerate {
                responder.append(text, &[], &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
            if let Some(obs) = &turn.observation_text {
                responder.append(obs, &new_images, &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
            em.send(RolloutEvent::TurnFinished { k, turn: t, record: turn.clone() });
            lp.traj.turns.push(turn);
            if lp.session.finished.is_some() {
                break;
            }
        }
    }

    while lp.session.can_generate() {
        let turn_no = lp.traj.turns.len();
        let seed = turn_seed(cfg, k, turn_no);
        let mut stream = ActionStream { closed: 0 };
        let (g, generate_ms) = generate_turn(responder, em, k, turn_no, (max_new, temperature, top_p, seed), &mut |so_far| stream.feed(so_far))?;
        let (mut turn, new_images) = lp.apply(turn_no, &g.text, g.finish.clone(), g.tokens, responder, rl_budget)?;
        turn.timings = g.timings(generate_ms, turn.timings.execute_ms);
        let regenerate = turn.finish_reason.is_none() && turn.observation_text.is_none();
        if !regenerate && lp.session.finished.is_none() {
            responder.accept_generated()?;
            if let Some(obs) = &turn.observation_text {
                responder.append(obs, &new_images, &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
        }
        em.send(RolloutEvent::TurnFinished { k, turn: turn_no, record: turn.clone() });
        lp.traj.turns.push(turn);
        if lp.session.finished.is_some() {
            break;
        }
    }
    if lp.session.finished.is_none() {
        // Past the image cap or out of calls: the reference does not schedule the sample again and
        // closes it with an empty assistant turn.
        lp.traj.turns.push(Turn {
            notes: vec!["not generated again (image cap or calls used up): an empty assistant turn closes the sequence, as in the reference".into()],
            ..Default::default()
        });
    }
    if lp.last_gen_finish.as_ref() != Some(&FinishReason::Length) {
        lp.sequence.push_str(EOS_TEXT);
    }
    lp.traj.finish_reason = lp.session.finished.clone().or(lp.last_gen_finish.clone());
    if lp.traj.finish_reason != Some(FinishReason::Cancelled) {
        if let Some(gt) = &sample.ground_truth {
            match vilasr::rl_score(&lp.sequence, gt, &sample.question_type) {
                Ok(parts) => lp.traj.rewards = Some(parts.to_rewards()),
                Err(e) => lp.traj.tags.push(format!("unscored: {e}")),
            }
        }
    }
    let saved = save(&lp.traj, &lp.session.images[..lp.n_inputs], &dir)?;
    Ok((saved, Some(dir)))
}

/// Save a trajectory whose observations are already under `dir/images/`: the inputs as
/// `images/input-N.png` (the sample then refers to them), then `trajectory.json`.
fn save(traj: &Trajectory, inputs: &[RgbImage], dir: &Path) -> Result<Trajectory, String> {
    let mut refs = Vec::new();
    for (i, img) in inputs.iter().enumerate() {
        let rel = format!("images/input-{}.png", i + 1);
        write_png(img, &dir.join(&rel)).map_err(|e| e.to_string())?;
        refs.push(ImageRef::with_size(rel, img.width(), img.height()));
    }
    let mut saved = traj.clone();
    saved.sample.media = match &saved.sample.media {
        Media::Images { .. } => Media::Images { images: refs },
        Media::VideoFrames { video, .. } => Media::VideoFrames { frames: refs, video: video.clone() },
    };
    saved.save_dir(dir).map_err(|e| e.to_string())?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_emitted_once_per_closed_block() {
        let mut s = ActionStream { closed: 0 };
        let mut text = String::from("<think>a</think>\n```json\n[{\"index\": 1, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"x\"}]\n");
        assert!(s.feed(&text).is_empty(), "the block is still open");
        text.push_str("```");
        let a = s.feed(&text);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].bbox_2d, Some([1.0, 2.0, 3.0, 4.0]));
        assert!(s.feed(&text).is_empty(), "not emitted twice");
        text.push_str(" then\n```json\n[{\"index\": 2, \"start_point_2d\": [1, 2], \"end_point_2d\": [3, 4], \"label\": \"p\"}]\n```");
        let b = s.feed(&text);
        assert_eq!((b.len(), b[0].block, b[0].kind), (1, 1, crate::core::trajectory::ActionKind::Line));
        // A malformed block yields nothing and does not block the next one.
        let mut s = ActionStream { closed: 0 };
        assert!(s.feed("```json\n[{oops\n```").is_empty());
        assert_eq!(s.closed, 1);
    }

    #[test]
    fn fork_points_are_checked() {
        let mut t = Trajectory::new("p", Protocol::Vilasr, Sample::default());
        t.turns.push(Turn { assistant_text: "a".into(), ..Default::default() });
        t.turns.push(Turn { assistant_text: "b".into(), finish_reason: Some(FinishReason::Stop), ..Default::default() });
        assert!(check_fork(&t, &ForkSpec { turn: 0, edited_text: None }).is_ok());
        assert!(check_fork(&t, &ForkSpec { turn: 1, edited_text: Some("x".into()) }).is_ok());
        assert!(check_fork(&t, &ForkSpec { turn: 2, edited_text: Some("x".into()) }).unwrap_err().contains("cannot fork at turn 2"));
        assert!(check_fork(&t, &ForkSpec { turn: 2, edited_text: None }).unwrap_err().contains("turn 1 ended it"));
        assert!(check_fork(&t, &ForkSpec { turn: 3, edited_text: None }).is_err());
    }

    #[test]
    fn prompt_styles_and_names() {
        let mut s = Sample { data_type: "vqa".into(), media: Media::Images { images: vec![ImageRef::new("a.png")] }, ..Default::default() };
        assert_eq!(prompt_style(&s, RunProfile::Rl).unwrap(), VilasrPromptStyle::Rl);
        assert_eq!(prompt_style(&s, RunProfile::Eval).unwrap(), VilasrPromptStyle::EvalSingleImage);
        s.media = Media::Images { images: vec![ImageRef::new("a.png"), ImageRef::new("b.png")] };
        assert!(prompt_style(&s, RunProfile::Eval).unwrap_err().contains("rl profile"));
        s.data_type = "multi_view".into();
        assert_eq!(prompt_style(&s, RunProfile::Eval).unwrap(), VilasrPromptStyle::EvalSpar);
        assert_eq!(safe_name("a/b c"), "a_b_c");
        assert_eq!(safe_name(".."), "t..");
        assert_eq!(resolve(Path::new("/base"), "x/y.png"), PathBuf::from("/base/x/y.png"));
        assert_eq!(resolve(Path::new("/base"), "file:///abs.png"), PathBuf::from("/abs.png"));
    }

    #[test]
    fn scripted_responder_limits_and_cancel() {
        let mut r = ScriptedResponder::new(vec![vec!["a b c d".into()]]);
        r.begin(0, "", &[], &mut |_| {}).unwrap();
        let no = AtomicBool::new(false);
        let g = r.generate(2, 0.0, 1.0, 0, &mut |_| {}, &no).unwrap();
        assert_eq!((g.text.as_str(), g.finish.clone(), g.tokens), ("a b ", FinishReason::Length, 2));
        r.begin(0, "", &[], &mut |_| {}).unwrap();
        let g = r.generate(10, 0.0, 1.0, 0, &mut |_| {}, &no).unwrap();
        assert_eq!((g.finish.clone(), g.tokens), (FinishReason::Stop, 5), "four words and EOS");
        let yes = AtomicBool::new(true);
        r.begin(0, "", &[], &mut |_| {}).unwrap();
        assert_eq!(r.generate(10, 0.0, 1.0, 0, &mut |_| {}, &yes).unwrap().finish, FinishReason::Cancelled);
    }
}
