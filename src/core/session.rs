//! A single ViLaSR sample driven turn by turn through the executor, with the reference's loop
//! control (protocol §2.8–2.9): generation counters, the answer check, image cap, the choice of
//! intermediate or final observation prompt, and dropped images at the cap.
//!
//! The model-free half of the rollout: `sightline render`, replay and the live rollout engine all
//! feed assistant responses into a [`VilasrSession`] and read back observations and texts.

use super::executor::{execute_response, is_finished, AnnotationState, ExecutorFixes, Profile, StepOutcome};
use super::prompts::{vilasr_observation_turn, NewImage};
use super::trajectory::{ActionRecord, FinishReason};
use image::RgbImage;
use serde::Serialize;

/// What applying one response did.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedTurn {
    /// 0-based generation number.
    pub generation: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<FinishReason>,
    /// `executed`, `answer`, `last_generation`, `terminal`, `regenerate`.
    pub kind: &'static str,
    /// New images as (1-based number, 1-based number of the image drawn on).
    pub new_images: Vec<(usize, usize)>,
    /// Images the executor drew but the cap dropped.
    pub dropped_images: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observation_text: Option<String>,
    #[serde(skip)]
    pub actions: Vec<ActionRecord>,
    pub notes: Vec<String>,
}

/// Loop state of one sample.
#[derive(Clone, Debug)]
pub struct VilasrSession {
    pub profile: Profile,
    pub fixes: ExecutorFixes,
    /// Images so far: inputs (already resized), then observations.
    pub images: Vec<RgbImage>,
    /// For each image, the 0-based slot it was drawn on (`None` for inputs).
    pub drawn_on: Vec<Option<usize>>,
    pub state: AnnotationState,
    /// Eval: the shared loop counter; RL: this sample's call counter.
    counter: i64,
    /// RL single-image observations consult this never-decremented value (protocol §11.2).
    rl_single_counter: i64,
    generations: usize,
    pub finished: Option<FinishReason>,
}

impl VilasrSession {
    /// Start a sample on its (resized) input images. `maze` gives the +10 calls / 20 steps.
    /// `max_generations` overrides the profile's count (eval `max_num_steps`, RL
    /// `num_llm_calls_available`).
    pub fn new(inputs: Vec<RgbImage>, profile: Profile, maze: bool, max_generations: Option<usize>, fixes: ExecutorFixes) -> Self {
        let limits = profile.limits();
        let n = inputs.len();
        let base = max_generations.unwrap_or(limits.max_generations) as i64;
        let counter = match profile {
            Profile::Eval => {
                let steps = if maze { max_generations.map(|m| m as i64).unwrap_or(limits.max_generations_maze as i64) } else { base };
                steps - 1
            }
            Profile::Rl => base - 1 + if maze { 10 } else { 0 },
        };
        VilasrSession {
            profile,
            fixes,
            images: inputs,
            drawn_on: vec![None; n],
            state: AnnotationState::for_inputs(n),
            counter,
            rl_single_counter: base - 1,
            generations: 0,
            finished: None,
        }
    }

    /// Whether the reference would schedule another generation for this sample.
    pub fn can_generate(&self) -> bool {
        self.finished.is_none() && self.images.len() <= self.profile.limits().max_images && self.counter >= 0
    }

    /// Apply one generated response. `gen_finish` is the generator's reason (`stop` for EOS).
    pub fn apply(&mut self, response: &str, gen_finish: FinishReason) -> AppliedTurn {
        let generation = self.generations;
        self.generations += 1;
        let mut turn = AppliedTurn {
            generation,
            finish_reason: None,
            kind: "executed",
            new_images: Vec::new(),
            dropped_images: 0,
            observation_text: None,
            actions: Vec::new(),
            notes: Vec::new(),
        };
        if !self.can_generate() {
            turn.kind = "terminal";
            turn.notes.push("the reference would not schedule this sample again (finished, past the image cap, or out of calls)".into());
            turn.finish_reason = self.finished.clone();
            return turn;
        }
        self.counter -= 1;
        if self.counter == -1 {
            turn.kind = "last_generation";
            turn.finish_reason = Some(gen_finish.clone());
            self.finished = Some(gen_finish);
            return turn;
        }
        if is_finished(&gen_finish, response) {
            turn.kind = "answer";
            turn.finish_reason = Some(gen_finish.clone());
            self.finished = Some(gen_finish);
            return turn;
        }
        let report = execute_response(response, &self.images, &mut self.state, self.profile, self.fixes);
        turn.actions = report.actions;
        turn.notes = report.notes;
        match report.outcome {
            StepOutcome::Terminal { reason, detail } => {
                turn.kind = "terminal";
                turn.notes.push(detail);
                turn.finish_reason = Some(reason.clone());
                self.finished = Some(reason);
            }
            StepOutcome::NoResult { detail } => {
                turn.kind = "regenerate";
                turn.notes.push(format!("the reference returns None here ({detail}); the turn is generated again"));
            }
            StepOutcome::Observations(obs) => {
                let before = self.images.len();
                let max_images = self.profile.limits().max_images;
                let new: Vec<NewImage> = obs
                    .iter()
                    .enumerate()
                    .map(|(j, o)| NewImage { number: before + j + 1, width: o.image.width(), height: o.image.height() })
                    .collect();
                let (last_single, last_multi) = match self.profile {
                    Profile::Eval => (self.counter == 0, self.counter == 0),
                    Profile::Rl => (self.rl_single_counter <= 0, self.counter <= 0),
                };
                let ot = vilasr_observation_turn(&new, before, max_images, last_single, last_multi);
                turn.dropped_images = obs.len() - ot.kept;
                for o in obs.into_iter().take(ot.kept) {
                    turn.new_images.push((self.images.len() + 1, o.base + 1));
                    self.drawn_on.push(Some(o.base));
                    self.images.push(o.image);
                }
                turn.observation_text = Some(ot.text);
            }
        }
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]))
    }

    const BOX1: &str = "<think>a</think> Action: Object Mapper\n```json\n[{\"index\": 1, \"bbox_2d\": [1, 2, 30, 40], \"label\": \"x\"}]\n```";

    #[test]
    fn eval_counter_uses_final_prompt_before_last_generation() {
        let mut s = VilasrSession::new(vec![grey(56, 56)], Profile::Eval, false, Some(3), ExecutorFixes::default());
        let t1 = s.apply(BOX1, FinishReason::Stop);
        assert_eq!(t1.kind, "executed");
        assert!(t1.observation_text.unwrap().contains("Continue your reasoning"));
        let t2 = s.apply(&BOX1.replace("\"index\": 1", "\"index\": 2"), FinishReason::Stop);
        assert_eq!(t2.new_images, vec![(3, 2)]);
        assert!(t2.observation_text.unwrap().contains("you can not invoke"));
        let t3 = s.apply(BOX1, FinishReason::Stop);
        assert_eq!(t3.kind, "last_generation");
        assert!(!s.can_generate());
    }

    #[test]
    fn answer_turn_is_not_executed_and_tool_error_stops() {
        let mut s = VilasrSession::new(vec![grey(56, 56)], Profile::Rl, false, None, ExecutorFixes::default());
        let t = s.apply("<think>x</think> Action: Answer\n<answer>A</answer>", FinishReason::Stop);
        assert_eq!(t.kind, "answer");
        let mut s = VilasrSession::new(vec![grey(56, 56)], Profile::Rl, false, None, ExecutorFixes::default());
        let t = s.apply("<think>nothing</think>", FinishReason::Stop);
        assert_eq!(t.finish_reason, Some(FinishReason::ToolError));
    }
}
