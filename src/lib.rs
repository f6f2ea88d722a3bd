//! Sightline: a desktop studio for researchers who train vision-language models that reason by
//! drawing (ViLaSR) or by chatting with image regions (ViLaVT).
//!
//! Layers, arrows pointing one way: `core` ← `model` ← `rollout` ← `train` ← `ui`. `core`, `model`,
//! `rollout` and the studio (`ui`) exist so far; see README.md for the module table. `synth` (the
//! synthetic task world with teacher trajectories) depends on `core` alone.

pub mod cli;
pub mod cli_dataset;
#[cfg(feature = "model")]
pub mod cli_rollout;
pub mod core;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "model")]
pub mod rollout;
pub mod synth;
#[cfg(feature = "gui")]
pub mod ui;
