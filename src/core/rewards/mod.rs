//! Rewards and scores exactly as the references compute them (protocol §3, §6): the ViLaSR RL
//! reward, ViLaSR evaluation scoring, the ViLaVT RL reward and evaluation scoring, the VSI-Bench and
//! SPAR-Bench aggregates, and pass@k over several sampled trajectories per question.
//!
//! Where the reference itself raises (crashing its reward worker or evaluation script), these
//! functions return [`ScoreError::ReferenceRaises`] with the reason, so a caller can report it.

pub mod aggregate;
pub mod mra;
pub mod pyfmt;
pub mod vilasr;
pub mod vilavt;

pub use aggregate::{pass_at_k, sparbench_aggregate, vsibench_aggregate, SparAggregate, VsiAggregate};
pub use mra::{mra_inclusive, mra_strict};

use serde::{Deserialize, Serialize};

/// The reward parts of one scored sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RewardParts {
    pub overall: f64,
    pub format: f64,
    pub accuracy: f64,
    /// ViLaSR only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reflection: Option<f64>,
    /// Why each part has its value (first failing format rule, answer extraction, …).
    #[serde(skip)]
    pub reasons: Vec<String>,
}

impl RewardParts {
    /// The references' "threshold gating": format only counts when the answer earns something.
    pub fn gated(format: f64, accuracy: f64, reflection: Option<f64>, reasons: Vec<String>) -> Self {
        let overall = if accuracy > 0.0 { 0.5 * accuracy + 0.5 * format } else { accuracy };
        RewardParts { overall, format, accuracy, reflection, reasons }
    }

    /// Into the trajectory model's reward record.
    pub fn to_rewards(&self) -> crate::core::trajectory::Rewards {
        crate::core::trajectory::Rewards {
            overall: self.overall,
            format: self.format,
            accuracy: self.accuracy,
            reflection: self.reflection,
            reasons: self.reasons.clone(),
        }
    }
}

/// Scoring failed the way the reference fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("the reference raises here: {0}")]
    ReferenceRaises(String),
}

/// Which answer scorer to apply to a final turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerScorer {
    /// ViLaSR RL accuracy (`gcot.py`).
    VilasrRl,
    /// ViLaSR `eval/evaluate.py`.
    VilasrEval,
    /// ViLaVT RL outcome (`gcot.py`).
    VilavtRl,
    /// ViLaVT `eval/cal_metrics.py` (identical rules to ViLaSR eval).
    VilavtEval,
}

/// Score one final turn against a ground truth with the chosen scorer.
pub fn score_answer(scorer: AnswerScorer, final_turn: &str, ground_truth: &str, question_type: &str) -> Result<f64, ScoreError> {
    match scorer {
        AnswerScorer::VilasrRl => Ok(vilasr::rl_accuracy(final_turn, ground_truth, question_type)),
        AnswerScorer::VilasrEval | AnswerScorer::VilavtEval => vilasr::eval_score(final_turn, ground_truth, question_type),
        AnswerScorer::VilavtRl => Ok(vilavt::rl_outcome(Some(final_turn), ground_truth, question_type)),
    }
}
