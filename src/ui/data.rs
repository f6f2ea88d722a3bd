//! The studio's data side, kept apart from what the panels show: opening a source (a Sightline
//! workspace or trajectory folder, or any dataset format the core reads), the row summaries of
//! the browser, and full items (a trajectory with its overlays) for the viewer.
//!
//! All file work happens on background threads. The UI sends [`DataCommand`]s and receives
//! [`DataEvent`]s over bounded channels, polling without blocking once per frame; each event
//! wakes the UI with `request_repaint`. Summaries of a large dataset stream in batches while the
//! first rows are already browsable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use crate::core::actions::{self, BlockMode};
use crate::core::datasets::{DatasetFormat, DatasetIndex, DATASET_INFO};
use crate::core::executor;
use crate::core::overlay::{self, Overlays};
use crate::core::prompts::{self, EOS_TEXT};
use crate::core::rewards::vilasr;
use crate::core::trajectory::{FinishReason, Protocol, Rewards, Trajectory, TRAJECTORY_FILE};

/// What kind of thing was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A folder of trajectory folders (`trajectories/<id>/trajectory.json`, or `<id>/trajectory.json`).
    Workspace,
    /// One trajectory folder.
    Trajectory,
    /// A dataset file in one of the core's formats.
    Dataset(DatasetFormat),
}

/// How one browser row is found again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryRef {
    /// A trajectory folder.
    TrajectoryDir(PathBuf),
    /// Record `i` of the source's dataset index.
    Record(usize),
}

/// An opened source: its rows (in file order) and how to read them.
pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
    pub entries: Vec<EntryRef>,
    pub dataset: Option<Arc<DatasetIndex>>,
    /// LLaMA-Factory entry names, for the dataset picker (empty otherwise).
    pub dataset_names: Vec<String>,
    /// Entries or files that were skipped, with the reason.
    pub notes: Vec<String>,
    /// How long opening (indexing) took.
    pub open_ms: f64,
}

impl Source {
    /// The source's name without the folders above it (the menu bar shows this; the full path is
    /// in [`Self::title`]).
    pub fn short_title(&self) -> String {
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string());
        let shown = match (&self.kind, self.path.parent()) {
            (SourceKind::Dataset(DatasetFormat::LlamaFactory), Some(parent)) => format!("{}/{}", name(parent), name(&self.path)),
            _ => name(&self.path),
        };
        let kind = match &self.kind {
            SourceKind::Workspace => "workspace".to_string(),
            SourceKind::Trajectory => "trajectory".to_string(),
            SourceKind::Dataset(f) => f.name().to_string(),
        };
        format!("{shown} ({kind}, {} items)", self.entries.len())
    }

    pub fn title(&self) -> String {
        let kind = match &self.kind {
            SourceKind::Workspace => "workspace".to_string(),
            SourceKind::Trajectory => "trajectory".to_string(),
            SourceKind::Dataset(f) => f.name().to_string(),
        };
        format!("{} ({kind}, {} items)", self.path.display(), self.entries.len())
    }

    /// The LLaMA-Factory dataset a row belongs to (for the dataset picker).
    pub fn dataset_of(&self, row: usize) -> Option<&str> {
        let (EntryRef::Record(i), Some(idx)) = (self.entries.get(row)?, &self.dataset) else { return None };
        idx.files().iter().find(|f| *i >= f.first_record && *i < f.first_record + f.records)?.dataset.as_deref()
    }
}

/// One browser row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowSummary {
    pub id: String,
    pub data_type: String,
    pub question_type: String,
    pub question: String,
    /// Assistant turns (`None`: the record holds no model output).
    pub steps: Option<usize>,
    pub finish: Option<String>,
    pub rewards: Option<Rewards>,
    pub reflective: Option<bool>,
    pub tags: Vec<String>,
    /// Why the row could not be read (the rest of its fields are then empty).
    pub error: Option<String>,
}

impl RowSummary {
    fn failed(id: String, error: String) -> Self {
        RowSummary { id, error: Some(error), ..Default::default() }
    }

    /// Lower-cased text the browser filter searches.
    pub fn haystack(&self) -> String {
        let mut s = format!("{} {} {} {} {}", self.id, self.data_type, self.question_type, self.question, self.finish.as_deref().unwrap_or(""));
        for t in &self.tags {
            s.push(' ');
            s.push_str(t);
        }
        if let Some(e) = &self.error {
            s.push(' ');
            s.push_str(e);
        }
        s.to_lowercase()
    }
}

/// A trajectory ready to show: the document, the folder its relative image paths start from,
/// its overlays, and notes about how it was completed for display.
#[derive(Clone, Debug)]
pub struct LoadedItem {
    pub trajectory: Arc<Trajectory>,
    pub base_dir: PathBuf,
    pub overlays: Arc<Overlays>,
    /// True when the rewards shown were computed by Sightline rather than stored with the data.
    pub rewards_computed: bool,
    /// True when the record holds a sample only (no model output).
    pub sample_only: bool,
    pub notes: Vec<String>,
}

impl LoadedItem {
    /// Absolute path of an image reference of this item.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Open `path` as whatever it is.
pub fn open_source(path: &Path) -> Result<Source, String> {
    let t0 = Instant::now();
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(format!("{shown}: no such file or folder"));
    }
    let done = |mut s: Source| {
        s.open_ms = t0.elapsed().as_secs_f64() * 1e3;
        Ok(s)
    };
    let trajectory_source = |dir: &Path, kind: SourceKind, entries: Vec<EntryRef>| Source {
        path: dir.to_path_buf(),
        kind,
        entries,
        dataset: None,
        dataset_names: Vec::new(),
        notes: Vec::new(),
        open_ms: 0.0,
    };
    if path.is_dir() {
        if path.join(TRAJECTORY_FILE).is_file() {
            return done(trajectory_source(path, SourceKind::Trajectory, vec![EntryRef::TrajectoryDir(path.to_path_buf())]));
        }
        let traj_root = if path.join("trajectories").is_dir() { path.join("trajectories") } else { path.to_path_buf() };
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&traj_root)
            .map_err(|e| format!("{}: {e}", traj_root.display()))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|p| p.join(TRAJECTORY_FILE).is_file())
            .collect();
        dirs.sort();
        // Runs the studio saved into this workspace: runs/<run>/<trajectory>/trajectory.json.
        let mut runs: Vec<PathBuf> = std::fs::read_dir(path.join("runs"))
            .into_iter()
            .flatten()
            .filter_map(|d| d.ok().map(|d| d.path()))
            .filter(|p| p.is_dir())
            .flat_map(|run| std::fs::read_dir(run).into_iter().flatten().filter_map(|d| d.ok().map(|d| d.path())))
            .filter(|p| p.join(TRAJECTORY_FILE).is_file())
            .collect();
        runs.sort();
        dirs.extend(runs);
        if !dirs.is_empty() {
            return done(trajectory_source(path, SourceKind::Workspace, dirs.into_iter().map(EntryRef::TrajectoryDir).collect()));
        }
        if path.join(DATASET_INFO).is_file() {
            return open_dataset(&path.join(DATASET_INFO)).and_then(done);
        }
        return Err(format!(
            "{shown}: nothing to open here (no {TRAJECTORY_FILE}, no trajectories/ folder of trajectory folders, no {DATASET_INFO})"
        ));
    }
    if path.file_name().is_some_and(|n| n == TRAJECTORY_FILE) {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        return done(trajectory_source(&dir, SourceKind::Trajectory, vec![EntryRef::TrajectoryDir(dir.clone())]));
    }
    open_dataset(path).and_then(done)
}

fn open_dataset(path: &Path) -> Result<Source, String> {
    let index = DatasetIndex::open(path).map_err(|e| e.to_string())?;
    let names = if index.format == DatasetFormat::LlamaFactory {
        let mut v: Vec<String> = index.files().iter().filter_map(|f| f.dataset.clone()).collect();
        v.dedup();
        v
    } else {
        Vec::new()
    };
    Ok(Source {
        path: path.to_path_buf(),
        kind: SourceKind::Dataset(index.format),
        entries: (0..index.len()).map(EntryRef::Record).collect(),
        notes: index.skipped().to_vec(),
        dataset: Some(Arc::new(index)),
        dataset_names: names,
        open_ms: 0.0,
    })
}

/// Read row `row` of `source` fully: the trajectory (or the sample as an empty trajectory), with
/// actions parsed from the text where the data did not record them, overlays and rewards.
pub fn load_item(source: &Source, row: usize) -> Result<LoadedItem, String> {
    let entry = source.entries.get(row).ok_or_else(|| format!("row {row} is out of range"))?;
    let (mut traj, base_dir, sample_only) = match entry {
        EntryRef::TrajectoryDir(dir) => (Trajectory::load_dir(dir).map_err(|e| e.to_string())?, dir.clone(), false),
        EntryRef::Record(i) => {
            let index = source.dataset.as_ref().ok_or("no dataset index")?;
            let rec = index.record(*i).map_err(|e| e.to_string())?;
            if rec.format.has_conversation() {
                (rec.to_trajectory().map_err(|e| e.to_string())?, index.root.clone(), false)
            } else {
                let sample = rec.to_sample().map_err(|e| e.to_string())?;
                let id = if sample.id.is_empty() { format!("record-{}", rec.file_record) } else { sample.id.clone() };
                (Trajectory::new(id, rec.format.protocol(), sample), index.root.clone(), true)
            }
        }
    };
    let mut notes = Vec::new();
    complete_actions(&mut traj, &mut notes);
    let mut rewards_computed = false;
    if traj.rewards.is_none() && !traj.turns.is_empty() && traj.protocol == Protocol::Vilasr {
        if let Some(gt) = traj.sample.ground_truth.clone() {
            match vilasr::rl_score(&sequence_of(&traj), &gt, &traj.sample.question_type) {
                Ok(parts) => {
                    traj.rewards = Some(parts.to_rewards());
                    rewards_computed = true;
                }
                Err(e) => notes.push(format!("ViLaSR RL reward: {e}")),
            }
        }
    }
    let overlays = overlay::overlays(&traj);
    Ok(LoadedItem { trajectory: Arc::new(traj), base_dir, overlays: Arc::new(overlays), rewards_computed, sample_only, notes })
}

/// Imported conversations carry assistant text only: parse their actions as the executor does.
fn complete_actions(traj: &mut Trajectory, notes: &mut Vec<String>) {
    if traj.protocol != Protocol::Vilasr {
        return;
    }
    for (t, turn) in traj.turns.iter_mut().enumerate() {
        if !turn.actions.is_empty() || !turn.assistant_text.contains("```json") {
            continue;
        }
        match actions::parse_actions(&turn.assistant_text, BlockMode::Executor) {
            Ok(parsed) => {
                for f in &parsed.rejected_blocks {
                    notes.push(format!("step {}: {f}", t + 1));
                }
                turn.actions = executor::action_records(&parsed);
            }
            Err(e) => notes.push(format!("step {}: actions could not be parsed: {e}", t + 1)),
        }
    }
}

/// The decoded conversation the ViLaSR RL reward scores: chat template of the system and first
/// user turn, then each assistant turn and the observation turn after it, then EOS unless the
/// last generation hit its length limit (protocol §3.1).
pub fn sequence_of(traj: &Trajectory) -> String {
    let mut messages = Vec::new();
    if let Some(s) = &traj.system_prompt {
        messages.push(prompts::Message::text("system", s.clone()));
    }
    messages.push(prompts::Message::text("user", traj.first_user_text.clone().unwrap_or_else(|| traj.sample.question.clone())));
    let mut seq = prompts::render_chat(&messages, true);
    for turn in &traj.turns {
        seq.push_str(&turn.assistant_text);
        if let Some(obs) = turn.observation_span() {
            seq.push_str(&obs);
        }
    }
    let last = traj.turns.last().and_then(|t| t.finish_reason.as_ref()).or(traj.finish_reason.as_ref());
    if last != Some(&FinishReason::Length) {
        seq.push_str(EOS_TEXT);
    }
    seq
}

/// The browser row of `row`. Never fails: an unreadable row becomes a row with an error.
pub fn summarize(source: &Source, row: usize) -> RowSummary {
    let fallback_id = || match source.entries.get(row) {
        Some(EntryRef::TrajectoryDir(d)) => d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        _ => format!("record {row}"),
    };
    let traj_summary = |t: &Trajectory, has_output: bool| {
        let reflective = t
            .rewards
            .as_ref()
            .and_then(|r| r.reflection)
            .map(|r| r > 0.0)
            .or_else(|| t.sample.extra.get("synth").and_then(|s| s.get("reflective")).and_then(|v| v.as_bool()));
        RowSummary {
            id: t.id.clone(),
            data_type: t.sample.data_type.clone(),
            question_type: t.sample.question_type.clone(),
            question: t.sample.question.replace('\n', " "),
            steps: has_output.then_some(t.turns.len()),
            finish: t.finish_reason.as_ref().map(|f| f.to_string()),
            rewards: t.rewards.clone(),
            reflective,
            tags: t.tags.clone(),
            error: None,
        }
    };
    match source.entries.get(row) {
        None => RowSummary::failed(fallback_id(), "out of range".into()),
        Some(EntryRef::TrajectoryDir(dir)) => match Trajectory::load_dir(dir) {
            Ok(t) => traj_summary(&t, true),
            Err(e) => RowSummary::failed(fallback_id(), e.to_string()),
        },
        Some(EntryRef::Record(i)) => {
            let Some(index) = &source.dataset else { return RowSummary::failed(fallback_id(), "no dataset index".into()) };
            let rec = match index.record(*i) {
                Ok(r) => r,
                Err(e) => return RowSummary::failed(fallback_id(), e.to_string()),
            };
            let result = if rec.format.has_conversation() {
                rec.to_trajectory().map(|t| traj_summary(&t, true))
            } else {
                rec.to_sample().map(|s| {
                    let id = if s.id.is_empty() { format!("record {}", rec.file_record) } else { s.id.clone() };
                    traj_summary(&Trajectory::new(id, rec.format.protocol(), s), false)
                })
            };
            let mut row_summary = result.unwrap_or_else(|e| RowSummary::failed(fallback_id(), e.to_string()));
            if row_summary.id.is_empty() {
                row_summary.id = format!("record {}", rec.file_record);
            }
            row_summary
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Background worker
// ---------------------------------------------------------------------------------------------

/// Asking to open this path opens the demo workspace (found, or generated on first use, on the
/// data thread).
pub const DEMO: &str = "sightline:demo";

/// What the UI asks the data worker to do.
pub enum DataCommand {
    Open(PathBuf),
    LoadItem { generation: u64, row: usize, slot: ItemSlot },
}

/// Which viewer pane an item is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemSlot {
    Primary,
    Compare,
}

/// What the data worker reports.
pub enum DataEvent {
    /// `path` is what was asked for (maybe [`DEMO`]), the source's own path is where it lives.
    Opened { generation: u64, result: Result<Arc<Source>, String>, path: PathBuf },
    Summaries { generation: u64, start: usize, rows: Vec<RowSummary> },
    SummariesDone { generation: u64, ms: f64 },
    Item { generation: u64, row: usize, slot: ItemSlot, result: Result<LoadedItem, String> },
}

/// Rows summarised per event.
const SUMMARY_BATCH: usize = 256;

/// The UI's handle on the data worker threads.
pub struct DataWorker {
    commands: SyncSender<DataCommand>,
    events: Receiver<DataEvent>,
    /// Commands that did not fit in the channel yet, retried every frame.
    backlog: std::collections::VecDeque<DataCommand>,
    generation: Arc<AtomicU64>,
}

impl DataWorker {
    /// Start the worker; `wake` is called after every event (the UI passes `request_repaint`).
    pub fn start(wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (cmd_tx, cmd_rx) = sync_channel::<DataCommand>(32);
        let (ev_tx, ev_rx) = sync_channel::<DataEvent>(64);
        let generation = Arc::new(AtomicU64::new(0));
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let gen_worker = generation.clone();
        std::thread::Builder::new()
            .name("sightline-data".into())
            .spawn(move || {
                let mut source: Option<Arc<Source>> = None;
                while let Ok(cmd) = cmd_rx.recv() {
                    match cmd {
                        DataCommand::Open(path) => {
                            let generation = gen_worker.fetch_add(1, Ordering::SeqCst) + 1;
                            let result = if path.as_os_str() == DEMO {
                                crate::ui::demo_workspace().and_then(|p| open_source(&p))
                            } else {
                                open_source(&path)
                            }
                            .map(Arc::new);
                            if let Ok(s) = &result {
                                source = Some(s.clone());
                                spawn_summarizer(s.clone(), generation, gen_worker.clone(), ev_tx.clone(), wake.clone());
                            }
                            if ev_tx.send(DataEvent::Opened { generation, result, path }).is_err() {
                                return;
                            }
                            wake();
                        }
                        DataCommand::LoadItem { generation, row, slot } => {
                            let Some(src) = &source else { continue };
                            if generation != gen_worker.load(Ordering::SeqCst) {
                                continue;
                            }
                            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| load_item(src, row)))
                                .unwrap_or_else(|_| Err(format!("reading row {row} failed unexpectedly (internal error)")));
                            if ev_tx.send(DataEvent::Item { generation, row, slot, result }).is_err() {
                                return;
                            }
                            wake();
                        }
                    }
                }
            })
            .expect("spawn data worker");
        DataWorker { commands: cmd_tx, events: ev_rx, backlog: Default::default(), generation }
    }

    /// Queue a command; never blocks (a full channel keeps it for the next frame).
    pub fn send(&mut self, cmd: DataCommand) {
        self.backlog.push_back(cmd);
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(cmd) = self.backlog.pop_front() {
            match self.commands.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    self.backlog.push_front(cmd);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
    }

    /// Events that arrived since the last call (non-blocking).
    pub fn poll(&mut self) -> Vec<DataEvent> {
        self.flush();
        let mut v = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            v.push(e);
        }
        v
    }

    /// Whether commands are still waiting to be handed to the worker.
    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// The generation of the source the worker has open.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn spawn_summarizer(source: Arc<Source>, generation: u64, current: Arc<AtomicU64>, tx: SyncSender<DataEvent>, wake: Arc<dyn Fn() + Send + Sync>) {
    let _ = std::thread::Builder::new().name("sightline-summaries".into()).spawn(move || {
        let t0 = Instant::now();
        let n = source.entries.len();
        let mut start = 0;
        while start < n {
            if current.load(Ordering::SeqCst) != generation {
                return; // another source was opened
            }
            let end = (start + SUMMARY_BATCH).min(n);
            let rows: Vec<RowSummary> = (start..end)
                .map(|r| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| summarize(&source, r)))
                        .unwrap_or_else(|_| RowSummary::failed(format!("row {r}"), "reading failed unexpectedly (internal error)".into()))
                })
                .collect();
            if tx.send(DataEvent::Summaries { generation, start, rows }).is_err() {
                return;
            }
            wake();
            start = end;
        }
        let _ = tx.send(DataEvent::SummariesDone { generation, ms: t0.elapsed().as_secs_f64() * 1e3 });
        wake();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(crate::synth::DEMO_WORKSPACE)
    }

    #[test]
    fn demo_workspace_opens_as_workspace_of_225() {
        let s = open_source(&demo()).unwrap();
        assert_eq!(s.kind, SourceKind::Workspace);
        assert_eq!(s.entries.len(), 225);
        let row = summarize(&s, 0);
        assert_eq!(row.id, "count-000000");
        assert_eq!(row.steps, Some(2));
        assert_eq!(row.finish.as_deref(), Some("stop"));
    }

    #[test]
    fn llamafactory_records_get_actions_overlays_and_recomputed_rewards() {
        let s = open_source(&demo().join(DATASET_INFO)).unwrap();
        assert_eq!(s.kind, SourceKind::Dataset(DatasetFormat::LlamaFactory));
        assert!(s.dataset_names.iter().any(|n| n == "count_cold_start"), "{:?}", s.dataset_names);
        let item = load_item(&s, 0).unwrap();
        let t = &item.trajectory;
        assert!(!t.turns[0].actions.is_empty(), "actions parsed from the text");
        // sharegpt records carry no ground truth, so no reward is computed; the format part of
        // the reward on the rebuilt conversation (imported observation turns) is that of a teacher.
        assert!(!item.rewards_computed && t.rewards.is_none());
        let parts = vilasr::rl_score(&sequence_of(t), "no such answer", "numerical").unwrap();
        assert_eq!(parts.format, 1.0, "{parts:?}");
        // The first observation is drawn on image 1 and holds the turn's boxes.
        let first_obs = t.turns[0].observations[0].number;
        let ov = item.overlays.get(first_obs).unwrap();
        assert_eq!(ov.drawn_on, Some(1));
        assert_eq!(ov.boxes.len(), t.turns[0].actions.iter().filter(|a| a.index == Some(1)).count());
    }

    #[test]
    fn rewards_are_recomputed_exactly_when_the_data_has_none() {
        // A demo trajectory with its stored rewards removed gets the same rewards back.
        let src = demo().join("trajectories/count-000001");
        let stored = Trajectory::load_dir(&src).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut t = stored.clone();
        t.rewards = None;
        for turn in &mut t.turns {
            for o in &mut turn.observations {
                o.image.path = src.join(&o.image.path).display().to_string();
            }
        }
        t.save_dir(dir.path()).unwrap();
        let s = open_source(dir.path()).unwrap();
        let item = load_item(&s, 0).unwrap();
        assert!(item.rewards_computed);
        let (a, b) = (item.trajectory.rewards.clone().unwrap(), stored.rewards.unwrap());
        assert_eq!((a.overall, a.format, a.accuracy, a.reflection), (b.overall, b.format, b.accuracy, b.reflection));
        assert_eq!(b.reflection, Some(1.0), "count-000001 is reflective");
    }

    #[test]
    fn runs_saved_into_a_workspace_are_listed_after_its_trajectories() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trajectory::load_dir(&demo().join("trajectories/count-000000")).unwrap();
        t.save_dir(&dir.path().join("trajectories/a")).unwrap();
        t.save_dir(&dir.path().join("runs/run-1/live-0")).unwrap();
        let s = open_source(dir.path()).unwrap();
        assert_eq!(s.kind, SourceKind::Workspace);
        assert_eq!(s.entries, vec![EntryRef::TrajectoryDir(dir.path().join("trajectories/a")), EntryRef::TrajectoryDir(dir.path().join("runs/run-1/live-0"))]);
    }

    #[test]
    fn rl_records_are_samples_without_output() {
        let s = open_source(&demo().join("rl_maze.jsonl")).unwrap();
        let row = summarize(&s, 0);
        assert_eq!(row.steps, None);
        assert_eq!(row.data_type, "maze");
        assert!(load_item(&s, 0).unwrap().sample_only);
    }

    #[test]
    fn broken_input_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"question\": \"q\", \"answer\": \"a\", \"image_path\": [\"x.png\"], \"data_type\": \"vqa\", \"question_type\": \"numerical\", \"grid_size\": null}\n{not json\n").unwrap();
        let s = open_source(&bad).unwrap();
        let row = summarize(&s, 1);
        let err = row.error.expect("second record is broken");
        assert!(err.contains("bad.jsonl"), "{err}");
        assert!(summarize(&s, 0).error.is_none(), "the good record still reads");
        let missing = open_source(&dir.path().join("nope")).err().unwrap();
        assert!(missing.contains("nope") && missing.contains("no such"));
        let traj_dir = dir.path().join("t");
        std::fs::create_dir(&traj_dir).unwrap();
        std::fs::write(traj_dir.join(TRAJECTORY_FILE), "{").unwrap();
        let s = open_source(&traj_dir).unwrap();
        assert!(load_item(&s, 0).unwrap_err().contains("trajectory.json"));
    }

    #[test]
    fn worker_opens_and_streams_summaries_without_blocking() {
        let mut w = DataWorker::start(|| {});
        w.send(DataCommand::Open(demo()));
        let t0 = Instant::now();
        let (mut rows, mut done, mut opened) = (0, false, false);
        while !(done && opened) && t0.elapsed().as_secs() < 60 {
            for e in w.poll() {
                match e {
                    DataEvent::Opened { result, .. } => opened = result.is_ok(),
                    DataEvent::Summaries { rows: r, .. } => rows += r.len(),
                    DataEvent::SummariesDone { .. } => done = true,
                    DataEvent::Item { .. } => {}
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(opened && done);
        assert_eq!(rows, 225);
    }
}
