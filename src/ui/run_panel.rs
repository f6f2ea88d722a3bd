//! The "Run" panel: pick a checkpoint folder and device, images (dialog, drag-and-drop or the
//! selected sample) and a question, then watch the model think, draw and answer live. Events from
//! the rollout engine (`crate::rollout`) arrive over its bounded channel and are folded into live
//! trajectories that the normal trajectory view shows; Stop cancels at once; every run is saved
//! (into the open workspace's `runs/` folder, else `./sightline-runs/`). Forks continue a recorded
//! or live trajectory from a chosen step with its text kept or edited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use egui::RichText;

use crate::core::overlay;
use crate::core::trajectory::{FinishReason, ImageRef, Media, Observation, Protocol, Sample, Trajectory, Turn};
use crate::rollout::{self, ForkSpec, RolloutConfig, RolloutEvent, RolloutHandle, RunProfile};
use crate::ui::data::LoadedItem;
use crate::ui::theme;

/// Question types offered in the form (as the datasets spell them).
const QUESTION_TYPES: [&str; 5] = ["multiple choice", "numerical", "regression", "free-form", "judgment"];

/// One trajectory being generated (or finished) in the current run.
pub struct LiveTrajectory {
    pub trajectory: Trajectory,
    /// Assistant text streamed so far for the turn in progress, with the actions parsed and the
    /// observations rendered so far.
    pub partial: String,
    pending_actions: Vec<crate::core::trajectory::ActionRecord>,
    pending_observations: Vec<Observation>,
    pub dir: Option<PathBuf>,
    pub finished: bool,
    /// Cached view item, rebuilt when the trajectory changes.
    item: Option<LoadedItem>,
    dirty: bool,
}

impl LiveTrajectory {
    fn clear_pending(&mut self) {
        self.partial.clear();
        self.pending_actions.clear();
        self.pending_observations.clear();
        self.dirty = true;
    }

    fn new(template: &Trajectory) -> Self {
        LiveTrajectory {
            trajectory: template.clone(),
            partial: String::new(),
            pending_actions: Vec::new(),
            pending_observations: Vec::new(),
            dir: None, finished: false, item: None, dirty: true }
    }

    /// The trajectory as the viewer shows it: finished turns plus the turn being streamed.
    pub fn item(&mut self, base_dir: &Path) -> &LoadedItem {
        if self.dirty || self.item.is_none() {
            let mut t = self.trajectory.clone();
            if !self.finished && (!self.partial.is_empty() || !self.pending_observations.is_empty()) {
                t.turns.push(Turn {
                    assistant_text: self.partial.clone(),
                    actions: self.pending_actions.clone(),
                    observations: self.pending_observations.clone(),
                    notes: vec!["generating…".into()],
                    ..Default::default()
                });
            }
            let overlays = overlay::overlays(&t);
            let base = self.dir.clone().unwrap_or_else(|| base_dir.to_path_buf());
            self.item = Some(LoadedItem {
                trajectory: Arc::new(t),
                base_dir: base,
                overlays: Arc::new(overlays),
                rewards_computed: false,
                sample_only: false,
                notes: Vec::new(),
            });
            self.dirty = false;
        }
        self.item.as_ref().expect("item built above")
    }
}

/// Where a run is saved.
fn runs_dir(workspace: Option<&Path>) -> PathBuf {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match workspace {
        Some(w) if w.is_dir() => w.join("runs").join(format!("run-{stamp}")),
        _ => PathBuf::from("sightline-runs").join(format!("run-{stamp}")),
    }
}

pub struct RunPanel {
    pub open: bool,
    pub model_dir: String,
    pub device: String,
    pub profile_rl: bool,
    pub n: usize,
    pub seed: u64,
    pub temperature: String,
    pub max_new_tokens: String,
    pub images: Vec<PathBuf>,
    pub question: String,
    pub question_type: String,
    pub data_type: String,
    pub ground_truth: String,
    /// ViLaSR (drawing) or ViLaVT (zoom-in inquiries); "Use selected sample" takes the sample's.
    pub protocol: Protocol,
    /// The selected sample's own settings (a ViLaVT record's `max_pixels`, `max_num_steps`).
    pub sample_extra: serde_json::Map<String, serde_json::Value>,
    /// Fork mode: parent trajectory, its base folder, the step and the (editable) text.
    pub fork: Option<(Arc<Trajectory>, PathBuf, usize, String)>,
    /// The parent as the viewer shows it (left of the fork in compare mode).
    pub fork_parent: Option<LoadedItem>,
    /// Fork: generate the chosen step anew instead of keeping (or editing) its text.
    pub fork_regenerate: bool,
    handle: Option<RolloutHandle>,
    pub live: Vec<LiveTrajectory>,
    /// Which live trajectory the viewer shows.
    pub shown: usize,
    pub status: Vec<String>,
    pub error: Option<String>,
    pub pass_at_k: Option<f64>,
    pub started: Option<Instant>,
    pub first_token: Option<Instant>,
    pub base_dir: PathBuf,
    /// Set when a run starts; the app takes it to switch the viewer to the live run.
    pub just_started: bool,
    /// The run's `Done` event arrived.
    done: bool,
    /// The engine's thread ended and its channel was found empty.
    drained: bool,
    dialog: Option<std::sync::mpsc::Receiver<DialogResult>>,
}

enum DialogResult {
    Model(Option<PathBuf>),
    Images(Option<Vec<PathBuf>>),
}

impl Default for RunPanel {
    fn default() -> Self {
        RunPanel {
            open: false,
            model_dir: String::new(),
            device: "auto".into(),
            profile_rl: false,
            n: 1,
            seed: 0,
            temperature: String::new(),
            max_new_tokens: String::new(),
            images: Vec::new(),
            question: String::new(),
            question_type: "multiple choice".into(),
            data_type: "vqa".into(),
            ground_truth: String::new(),
            protocol: Protocol::Vilasr,
            sample_extra: serde_json::Map::new(),
            fork: None,
            fork_parent: None,
            fork_regenerate: false,
            handle: None,
            live: Vec::new(),
            shown: 0,
            status: Vec::new(),
            error: None,
            pass_at_k: None,
            started: None,
            first_token: None,
            base_dir: PathBuf::from("."),
            just_started: false,
            done: false,
            drained: false,
            dialog: None,
        }
    }
}

impl RunPanel {
    /// A run is going, or its last events have not been read yet.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !self.done && !(h.is_finished() && self.drained))
    }

    /// Whether the viewer should show the live run instead of the browsed row.
    pub fn has_live(&self) -> bool {
        !self.live.is_empty()
    }

    /// Fill the form from a sample (the browser's selection).
    pub fn use_sample(&mut self, item: &LoadedItem) {
        let s = &item.trajectory.sample;
        self.images = s.media.images().iter().map(|i| item.resolve(&i.path)).collect();
        self.question = s.question.clone();
        if !s.question_type.is_empty() {
            self.question_type = s.question_type.clone();
        }
        if !s.data_type.is_empty() {
            self.data_type = s.data_type.clone();
        }
        self.ground_truth = s.ground_truth.clone().unwrap_or_default();
        self.protocol = item.trajectory.protocol;
        self.sample_extra = s.extra.clone();
        self.fork = None;
        self.fork_parent = None;
    }

    /// Prepare a fork of `item` at `step` (its text editable before running).
    pub fn fork_from(&mut self, item: &LoadedItem, step: usize) {
        let text = item.trajectory.turns.get(step).map(|t| t.assistant_text.clone()).unwrap_or_default();
        self.fork = Some((item.trajectory.clone(), item.base_dir.clone(), step, text));
        self.fork_parent = Some(item.clone());
        self.open = true;
    }

    fn config(&self, workspace: Option<&Path>, need_model: bool) -> Result<RolloutConfig, String> {
        if need_model && self.model_dir.trim().is_empty() {
            return Err("choose a checkpoint folder first (config.json, *.safetensors, tokenizer.json)".into());
        }
        let parse_opt_f = |s: &str, what: &str| -> Result<Option<f32>, String> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| format!("{what} \"{s}\" is not a number"))
            }
        };
        let max_new_tokens = match self.max_new_tokens.trim() {
            "" => None,
            s => Some(s.parse::<usize>().map_err(|_| format!("max new tokens \"{s}\" is not a whole number"))?),
        };
        Ok(RolloutConfig {
            model_dir: PathBuf::from(self.model_dir.trim()),
            device: self.device.clone(),
            profile: if self.profile_rl { RunProfile::Rl } else { RunProfile::Eval },
            n: self.n.max(1),
            seed: self.seed,
            temperature: parse_opt_f(&self.temperature, "temperature")?,
            top_p: None,
            max_new_tokens,
            out_dir: Some(runs_dir(workspace)),
            protocol: self.protocol,
            ..Default::default()
        })
    }

    /// Start the run the form describes.
    pub fn start(&mut self, ctx: &egui::Context, workspace: Option<&Path>) {
        self.start_with(ctx, workspace, None);
    }

    /// [`Self::start`], generating with `responder` instead of the checkpoint when given (tests,
    /// scripted demonstrations).
    pub fn start_with(&mut self, ctx: &egui::Context, workspace: Option<&Path>, responder: Option<Box<dyn rollout::Responder>>) {
        self.error = None;
        let config = match self.config(workspace, responder.is_none()) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let wake_ctx = ctx.clone();
        let wake: Box<dyn Fn() + Send> = Box::new(move || wake_ctx.request_repaint());
        self.status.clear();
        self.just_started = true;
        self.done = false;
        self.drained = false;
        self.pass_at_k = None;
        self.shown = 0;
        self.started = Some(Instant::now());
        self.first_token = None;
        let n = config.n;
        if let Some((parent, base, step, text)) = self.fork.clone() {
            let spec = ForkSpec { turn: step, edited_text: if self.fork_regenerate { None } else { Some(text) } };
            let mut template = (*parent).clone();
            template.turns.truncate(step);
            self.live = (0..n).map(|_| LiveTrajectory::new(&template)).collect();
            self.base_dir = base.clone();
            self.handle = Some(match responder {
                Some(r) => rollout::start_fork_with_responder(&parent, base, spec, config, r, wake),
                None => rollout::start_fork(&parent, base, spec, config, wake),
            });
            return;
        }
        if self.images.is_empty() {
            self.error = Some("add at least one image (Add images…, drop files on this panel, or Use selected sample)".into());
            return;
        }
        if self.question.trim().is_empty() {
            self.error = Some("type a question".into());
            return;
        }
        let sample = Sample {
            id: format!("live-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
            question: self.question.clone(),
            question_type: self.question_type.clone(),
            ground_truth: Some(self.ground_truth.trim().to_string()).filter(|g| !g.is_empty()),
            data_type: self.data_type.clone(),
            media: Media::Images { images: self.images.iter().map(|p| ImageRef::new(p.display().to_string())).collect() },
            extra: self.sample_extra.clone(),
            ..Default::default()
        };
        let template = Trajectory::new(sample.id.clone(), self.protocol, sample.clone());
        self.live = (0..n).map(|_| LiveTrajectory::new(&template)).collect();
        self.base_dir = PathBuf::from(".");
        self.handle = Some(match responder {
            Some(r) => rollout::start_with_responder(sample, PathBuf::from("."), config, r, wake),
            None => rollout::start(sample, PathBuf::from("."), config, wake),
        });
    }

    pub fn stop(&self) {
        if let Some(h) = &self.handle {
            h.cancel();
        }
    }

    /// Fold the engine's events into the live trajectories (non-blocking).
    pub fn poll(&mut self) {
        if let Some(rx) = &self.dialog {
            if let Ok(r) = rx.try_recv() {
                match r {
                    DialogResult::Model(Some(p)) => self.model_dir = p.display().to_string(),
                    DialogResult::Images(Some(v)) => self.images.extend(v),
                    _ => {}
                }
                self.dialog = None;
            }
        }
        let Some(h) = &self.handle else { return };
        // Bounded work per frame keeps the frame short even when tokens arrive fast.
        let finished_before = h.is_finished();
        for _ in 0..512 {
            let Some(ev) = h.try_recv() else {
                self.drained = finished_before;
                break;
            };
            match ev {
                RolloutEvent::Status(s) => self.status.push(s),
                RolloutEvent::Started { k } => {
                    if let Some(l) = self.live.get_mut(k) {
                        l.clear_pending();
                    }
                }
                RolloutEvent::Token { k, text, .. } => {
                    if self.first_token.is_none() {
                        self.first_token = Some(Instant::now());
                    }
                    if let Some(l) = self.live.get_mut(k) {
                        l.partial.push_str(&text);
                        l.dirty = true;
                    }
                }
                RolloutEvent::Action { k, action, .. } => {
                    // Drawn on the canvas the moment its block closes.
                    if let Some(l) = self.live.get_mut(k) {
                        l.pending_actions.push(action);
                        l.dirty = true;
                    }
                }
                RolloutEvent::Observation { k, number, drawn_on, path, .. } => {
                    // Joins the lineage strip before the turn is complete.
                    if let Some(l) = self.live.get_mut(k) {
                        l.pending_observations.push(Observation { number, drawn_on, image: ImageRef::new(path.display().to_string()) });
                        l.dirty = true;
                    }
                }
                RolloutEvent::TurnFinished { k, mut record, .. } => {
                    if let Some(l) = self.live.get_mut(k) {
                        // The record's image paths are relative to a folder known only when the
                        // trajectory is saved; until then use the paths the observations came with.
                        for o in &mut record.observations {
                            if let Some(p) = l.pending_observations.iter().find(|p| p.number == o.number) {
                                o.image.path = p.image.path.clone();
                            }
                        }
                        l.trajectory.turns.push(record);
                        l.clear_pending();
                    }
                }
                RolloutEvent::Finished { k, trajectory, dir } => {
                    if let Some(l) = self.live.get_mut(k) {
                        l.trajectory = trajectory;
                        l.dir = dir;
                        l.clear_pending();
                        l.finished = true;
                    }
                }
                RolloutEvent::Failed { k, message } => {
                    self.error = Some(match k {
                        Some(k) => format!("trajectory {}: {message}", k + 1),
                        None => message,
                    });
                }
                RolloutEvent::Done { pass_at_k } => {
                    self.pass_at_k = pass_at_k;
                    self.done = true;
                }
            }
        }
    }

    /// The form and the run's status (a window).
    pub fn ui(&mut self, ctx: &egui::Context, selected: Option<&LoadedItem>, workspace: Option<&Path>) {
        let mut open = self.open;
        egui::Window::new("Run a model").open(&mut open).default_width(420.0).show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label("Checkpoint");
                ui.add(egui::TextEdit::singleline(&mut self.model_dir).hint_text("folder with config.json and *.safetensors").desired_width(240.0));
                if ui.button("Choose…").clicked() && self.dialog.is_none() {
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    std::thread::spawn(move || {
                        let _ = tx.send(DialogResult::Model(rfd::FileDialog::new().set_title("Choose a Qwen2.5-VL checkpoint folder").pick_folder()));
                    });
                    self.dialog = Some(rx);
                }
            });
            ui.horizontal(|ui| {
                ui.label("Device");
                egui::ComboBox::from_id_salt("run-device").selected_text(&self.device).show_ui(ui, |ui| {
                    for d in ["auto", "cpu", "cuda", "cuda:1"] {
                        ui.selectable_value(&mut self.device, d.to_string(), d);
                    }
                });
                ui.label("Profile");
                ui.selectable_value(&mut self.profile_rl, false, "eval");
                ui.selectable_value(&mut self.profile_rl, true, "rl");
            });
            if self.fork.is_none() {
                ui.horizontal(|ui| {
                    ui.label("Protocol");
                    ui.selectable_value(&mut self.protocol, Protocol::Vilasr, "ViLaSR (draw)");
                    ui.selectable_value(&mut self.protocol, Protocol::Vilavt, "ViLaVT (zoom in)");
                });
                if self.protocol == Protocol::Vilavt {
                    ui.label(RichText::new(rollout::VILAVT_ENCODER_NOTICE).small().color(theme::WARN));
                }
            }
            ui.horizontal(|ui| {
                ui.label("n");
                ui.add(egui::DragValue::new(&mut self.n).range(1..=16));
                ui.label("seed");
                ui.add(egui::DragValue::new(&mut self.seed));
                ui.label("T");
                ui.add(egui::TextEdit::singleline(&mut self.temperature).hint_text("profile").desired_width(48.0));
                ui.label("max tokens");
                ui.add(egui::TextEdit::singleline(&mut self.max_new_tokens).hint_text("profile").desired_width(56.0));
            });
            ui.separator();
            if let Some((parent, _, step, text)) = &mut self.fork {
                ui.label(RichText::new(format!("Fork of {} from step {} (edit the step's text, then Run)", parent.id, *step + 1)).strong());
                ui.checkbox(&mut self.fork_regenerate, "Generate this step anew (otherwise keep the text below, edited or not, and continue after it)");
                ui.add_enabled(!self.fork_regenerate, egui::TextEdit::multiline(text).code_editor().desired_rows(6).desired_width(f32::INFINITY));
                if ui.button("Cancel fork").clicked() {
                    self.fork = None;
                    self.fork_parent = None;
                }
            } else {
                ui.horizontal(|ui| {
                    if ui.button("Add images…").clicked() && self.dialog.is_none() {
                        let (tx, rx) = std::sync::mpsc::sync_channel(1);
                        std::thread::spawn(move || {
                            let _ = tx.send(DialogResult::Images(rfd::FileDialog::new().add_filter("images", &["png", "jpg", "jpeg", "webp"]).pick_files()));
                        });
                        self.dialog = Some(rx);
                    }
                    if let Some(item) = selected {
                        if ui.button("Use selected sample").clicked() {
                            self.use_sample(item);
                        }
                    }
                    if !self.images.is_empty() && ui.button("Clear").clicked() {
                        self.images.clear();
                    }
                });
                for (i, p) in self.images.iter().enumerate() {
                    ui.label(RichText::new(format!("{} · {}", i + 1, p.display())).small());
                }
                ui.add(egui::TextEdit::multiline(&mut self.question).hint_text("question").desired_rows(2).desired_width(f32::INFINITY));
                ui.horizontal(|ui| {
                    egui::ComboBox::from_id_salt("run-qtype").selected_text(&self.question_type).show_ui(ui, |ui| {
                        for q in QUESTION_TYPES {
                            ui.selectable_value(&mut self.question_type, q.to_string(), q);
                        }
                    });
                    ui.label("ground truth");
                    ui.add(egui::TextEdit::singleline(&mut self.ground_truth).hint_text("optional").desired_width(80.0));
                });
            }
            ui.separator();
            ui.horizontal(|ui| {
                let running = self.is_running();
                if ui.add_enabled(!running, egui::Button::new("Run")).clicked() {
                    self.start(ctx, workspace);
                }
                if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
                    self.stop();
                }
                if running {
                    ui.spinner();
                }
                if let (Some(s), Some(f)) = (self.started, self.first_token) {
                    ui.label(RichText::new(format!("first token after {:.0} ms", (f - s).as_secs_f64() * 1e3)).small().weak());
                }
            });
            if let Some(e) = &self.error {
                ui.label(RichText::new(e).color(theme::ERROR_TEXT));
            }
            for s in self.status.iter().rev().take(4).rev() {
                ui.label(RichText::new(s).small().weak());
            }
            if self.live.len() > 1 {
                ui.separator();
                ui.label(RichText::new("Trajectories (pass@k grid)").strong());
                egui::Grid::new("passk").show(ui, |ui| {
                    for (k, l) in self.live.iter().enumerate() {
                        let t = &l.trajectory;
                        let acc = t.rewards.as_ref().map(|r| r.accuracy);
                        let color = match (l.finished, acc) {
                            (false, _) => ui.visuals().weak_text_color(),
                            (true, Some(a)) if a >= 1.0 => theme::GOOD,
                            (true, Some(_)) => theme::BAD,
                            (true, None) => ui.visuals().text_color(),
                        };
                        let fin = t.finish_reason.as_ref().map(FinishReason::as_str).unwrap_or(if l.finished { "done" } else { "…" });
                        let label = format!("#{} · {} steps · {fin}", k + 1, t.turns.len());
                        if ui.selectable_label(self.shown == k, RichText::new(label).color(color)).clicked() {
                            self.shown = k;
                        }
                        if k % 2 == 1 {
                            ui.end_row();
                        }
                    }
                });
                if let Some(p) = self.pass_at_k {
                    ui.label(format!("pass@{}: {p:.3}", self.live.len()));
                }
            }
            if let Some(dir) = self.live.get(self.shown).and_then(|l| l.dir.as_ref()) {
                ui.label(RichText::new(format!("saved to {}", dir.display())).small().weak());
            }
        });
        self.open = open;
    }
}
