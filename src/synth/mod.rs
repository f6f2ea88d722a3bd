//! The synthetic spatial task world: seeded generators for ViLaSR-style tasks with programmatic
//! teacher trajectories in the exact ViLaSR protocol — the embedded demo data and the demo
//! model's curriculum.
//!
//! Five families, each deterministic from `(seed, family, sample number)` with easy / medium /
//! hard settings:
//!
//! | family | data type | inputs | questions | teacher |
//! |---|---|---|---|---|
//! | `maze` | `maze` (+ `grid_size`) | one 392×392 grid maze | moves, turns (numerical); first move, route (multiple choice) | boxes start and goal, traces the route between cell centres |
//! | `count` | `vqa` | one 448×336 scene | how many … (numerical, MRA) | boxes every target object |
//! | `relation` | `vqa` | one 448×336 scene | closest, farthest, direction, compare (multiple choice) | boxes, then auxiliary lines between objects |
//! | `multiview` | `spatial_r1` | 2–3 views (336×252) of one table | closest on the table, front-most, seen from the back | boxes per view, lines in two views at once |
//! | `video` | `video` | 16 frames (224×168) | direction, farthest mover (multiple choice); how many move (numerical) | boxes in the first and last frame, motion lines |
//!
//! Every image is a multiple of 28 on both sides and below the RL pixel budget, so `fetch_image`
//! leaves it unchanged and the coordinates in the teacher's actions are the ones the model sees.
//! Teacher turns run through the real executor ([`crate::core::scripted::run_scripted`], RL
//! prompt and profile) and every trajectory scores format 1 and accuracy 1 under the ViLaSR RL
//! reward. A share of the trajectories is reflective: one box is first placed wrong, the next
//! turn's reasoning notices it in the observation and redraws it under the same label (the RL
//! reward's reflection flag, protocol §3.6).
//!
//! [`write_workspace`] writes RL question files, LLaMA-Factory SFT files (cold-start and
//! reflective subsets) and trajectory folders, all referring to one shared image pool (layout in
//! [`output`]); `sightline synth` is its command line.

mod count;
mod maze;
mod multiview;
pub mod output;
mod relation;
pub mod rng;
pub mod scene;
pub mod teacher;
mod video;

pub use output::{write_workspace, FamilyCount, WorkspacePlan, WorkspaceSummary};

use crate::core::executor::Profile;
use crate::core::prompts::VilasrPromptStyle;
use crate::core::scripted::{run_scripted, ScriptedRun};
use crate::core::trajectory::{FinishReason, ImageRef, Media, Sample};
use image::RgbImage;
use rng::{tag, Rng};
use serde_json::{json, Value};
use teacher::Script;

/// Where the committed demo workspace lives (relative to the repository root); the studio opens
/// it by default.
pub const DEMO_WORKSPACE: &str = "assets/demo";
/// `sightline synth --task all --n DEMO_SAMPLES --seed DEMO_SEED` regenerates [`DEMO_WORKSPACE`].
pub const DEMO_SEED: u64 = 2026;
/// Samples in the demo workspace (all families together).
pub const DEMO_SAMPLES: usize = 225;
/// The default share of reflective teacher trajectories.
pub const DEFAULT_REFLECTIVE_SHARE: f64 = 0.25;
/// Generator name written into trajectories and `synth.json`.
pub const GENERATOR: &str = "sightline synth teacher v1";

/// A task family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Maze,
    Count,
    Relation,
    Multiview,
    Video,
}

impl Family {
    pub const ALL: [Family; 5] = [Family::Maze, Family::Count, Family::Relation, Family::Multiview, Family::Video];

    pub fn name(self) -> &'static str {
        match self {
            Family::Maze => "maze",
            Family::Count => "count",
            Family::Relation => "relation",
            Family::Multiview => "multiview",
            Family::Video => "video",
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The ViLaSR RL `data_type` of the family's records.
    pub fn data_type(self) -> &'static str {
        match self {
            Family::Maze => "maze",
            Family::Count | Family::Relation => "vqa",
            Family::Multiview => "spatial_r1",
            Family::Video => "video",
        }
    }
}

/// How hard a sample is (grid size, object counts, clutter, views, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Difficulty {
    Easy,
    Medium,
    Hard,
}

impl Difficulty {
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Medium, Difficulty::Hard];

    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }

    /// Pick by difficulty.
    pub fn pick<T: Copy>(self, easy: T, medium: T, hard: T) -> T {
        match self {
            Difficulty::Easy => easy,
            Difficulty::Medium => medium,
            Difficulty::Hard => hard,
        }
    }
}

/// The difficulty of a run: one level for every sample, or drawn per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DifficultySetting {
    #[default]
    Mixed,
    Fixed(Difficulty),
}

impl DifficultySetting {
    pub fn name(self) -> &'static str {
        match self {
            DifficultySetting::Mixed => "mixed",
            DifficultySetting::Fixed(d) => d.name(),
        }
    }

    pub fn parse(s: &str) -> Option<DifficultySetting> {
        match s {
            "mixed" => Some(DifficultySetting::Mixed),
            _ => Difficulty::ALL.into_iter().find(|d| d.name() == s).map(DifficultySetting::Fixed),
        }
    }
}

/// Settings shared by every sample of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub difficulty: DifficultySetting,
    /// Probability that a sample's teacher trajectory is reflective, in `[0, 1]`.
    pub reflective_share: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { difficulty: DifficultySetting::Mixed, reflective_share: DEFAULT_REFLECTIVE_SHARE }
    }
}

/// Errors of the synthetic world; each names the sample or file.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{0}")]
    Invalid(String),
    #[error("{id}: the teacher trajectory does not satisfy the protocol: {message}")]
    Teacher { id: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// What a family generator produces for one sample.
pub(crate) struct Draft {
    /// Question kind inside the family (`moves`, `closest`, …).
    pub kind: &'static str,
    pub question: String,
    /// `multiple choice` or `numerical`.
    pub question_type: &'static str,
    /// Options with their letters (`A. …`), for multiple choice.
    pub options: Option<Vec<String>>,
    pub answer: String,
    pub inputs: Vec<RgbImage>,
    pub grid_size: Option<u32>,
    pub script: Script,
    /// Whether the teacher made (and corrected) a mistake.
    pub reflective: bool,
    /// Family-specific ground truth (geometry, objects), see [`TeacherSample::truth`].
    pub truth: Value,
}

/// One generated sample with its teacher responses, ready to run through the executor.
#[derive(Clone, Debug)]
pub struct TeacherSample {
    pub id: String,
    pub family: Family,
    pub index: usize,
    pub difficulty: Difficulty,
    pub reflective: bool,
    /// The sample; input paths are `input-N.png` placeholders until written.
    pub sample: Sample,
    pub inputs: Vec<RgbImage>,
    pub responses: Vec<String>,
    /// Images the executor must end with (inputs plus planned observations).
    pub expected_images: usize,
    /// Question kind inside the family (`moves`, `closest`, …).
    pub kind: &'static str,
    /// Family-specific ground truth: maze geometry, drawn objects, tracks, views. Not written
    /// to the outputs (the samples carry only `extra.synth`: generator, family, kind,
    /// difficulty, seed, index, reflective); tests check answers against it.
    pub truth: Value,
}

/// The sample id: `<family>-<number, six digits>`.
pub fn sample_id(family: Family, index: usize) -> String {
    format!("{}-{index:06}", family.name())
}

/// Check a reflective share.
pub fn check_share(share: f64) -> Result<f64, SynthError> {
    if share.is_finite() && (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(SynthError::Invalid(format!("the reflective share must be a number from 0 to 1, got {share}")))
    }
}

/// Generate sample `index` of `family` for run seed `seed`. Deterministic: the same arguments
/// always give the same scene, question and teacher turns.
pub fn generate(family: Family, seed: u64, index: usize, settings: &Settings) -> TeacherSample {
    let stream = |purpose: &str| Rng::derive(&[seed, tag(family.name()), index as u64, tag(purpose)]);
    let difficulty = match settings.difficulty {
        DifficultySetting::Fixed(d) => d,
        DifficultySetting::Mixed => *stream("difficulty").pick(&Difficulty::ALL),
    };
    let reflective = stream("reflect").chance(settings.reflective_share);
    let mut scene = stream("scene");
    let mut teach = stream("teacher");
    let draft = match family {
        Family::Maze => maze::draft(&mut scene, &mut teach, difficulty, reflective),
        Family::Count => count::draft(&mut scene, &mut teach, difficulty, reflective),
        Family::Relation => relation::draft(&mut scene, &mut teach, difficulty, reflective),
        Family::Multiview => multiview::draft(&mut scene, &mut teach, difficulty, reflective),
        Family::Video => video::draft(&mut scene, &mut teach, difficulty, reflective),
    };
    let id = sample_id(family, index);
    let refs: Vec<ImageRef> =
        draft.inputs.iter().enumerate().map(|(k, im)| ImageRef::with_size(format!("input-{}.png", k + 1), im.width(), im.height())).collect();
    let media = if family == Family::Video { Media::VideoFrames { frames: refs, video: None } } else { Media::Images { images: refs } };
    let synth = json!({
        "generator": GENERATOR,
        "family": family.name(),
        "kind": draft.kind,
        "difficulty": difficulty.name(),
        "seed": seed,
        "index": index,
        "reflective": draft.reflective,
    });
    let mut extra = serde_json::Map::new();
    extra.insert("synth".into(), synth);
    let sample = Sample {
        id: id.clone(),
        question: draft.question,
        question_type: draft.question_type.to_string(),
        options: draft.options,
        ground_truth: Some(draft.answer),
        data_type: family.data_type().to_string(),
        media,
        grid_size: draft.grid_size,
        source: None,
        extra,
    };
    TeacherSample {
        id,
        family,
        index,
        difficulty,
        reflective: draft.reflective,
        sample,
        expected_images: draft.script.image_count(),
        inputs: draft.inputs,
        responses: draft.script.responses,
        kind: draft.kind,
        truth: draft.truth,
    }
}

/// Run the teacher turns through the executor (RL prompt and profile) and check the result:
/// every turn executed as planned, the trajectory ends on the answer, and the ViLaSR RL reward
/// gives format 1, accuracy 1 and the reflection flag exactly when the teacher reflected.
pub fn run_teacher(ts: &TeacherSample) -> Result<ScriptedRun, SynthError> {
    let fail = |message: String| SynthError::Teacher { id: ts.id.clone(), message };
    let mut run = run_scripted(&ts.id, &ts.sample, ts.inputs.clone(), VilasrPromptStyle::Rl, Profile::Rl, &ts.responses)
        .map_err(|e| fail(e.to_string()))?;
    if run.trajectory.turns.len() != ts.responses.len() {
        return Err(fail(format!("{} of {} turns were applied", run.trajectory.turns.len(), ts.responses.len())));
    }
    if run.images.len() != ts.expected_images {
        return Err(fail(format!("the executor made {} images, the teacher planned {}", run.images.len(), ts.expected_images)));
    }
    if run.trajectory.finish_reason != Some(FinishReason::Stop) {
        return Err(fail(format!("finish reason {:?}", run.trajectory.finish_reason)));
    }
    let r = run.trajectory.rewards.clone().ok_or_else(|| fail("no reward".into()))?;
    let want_reflection = if ts.reflective { 1.0 } else { 0.0 };
    if r.format != 1.0 || r.accuracy != 1.0 || r.reflection != Some(want_reflection) {
        return Err(fail(format!(
            "reward format {} accuracy {} reflection {:?} (wanted 1, 1, {want_reflection}): {}",
            r.format,
            r.accuracy,
            r.reflection,
            r.reasons.join("; ")
        )));
    }
    run.trajectory.model = Some(GENERATOR.to_string());
    run.trajectory.tags = vec![
        "synthetic".into(),
        ts.family.name().into(),
        ts.difficulty.name().into(),
        if ts.reflective { "reflective".into() } else { "cold_start".into() },
    ];
    Ok(run)
}

/// [`generate`] then [`run_teacher`].
pub fn teacher_run(family: Family, seed: u64, index: usize, settings: &Settings) -> Result<(TeacherSample, ScriptedRun), SynthError> {
    let ts = generate(family, seed, index, settings);
    let run = run_teacher(&ts)?;
    Ok((ts, run))
}

/// Options `texts` in a random order with letters; returns (lettered options, letter of
/// `texts[correct]`).
pub(crate) fn shuffled_options(rng: &mut Rng, texts: &[String], correct: usize) -> (Vec<String>, String) {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    rng.shuffle(&mut order);
    let opts: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
    let pos = order.iter().position(|&i| i == correct).unwrap_or(0);
    (teacher::lettered(&opts), teacher::letter(pos).to_string())
}
