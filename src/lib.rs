//! Sightline: a desktop studio for researchers who train vision-language models that reason by
//! drawing (ViLaSR) or by chatting with image regions (ViLaVT).
//!
//! Layers, arrows pointing one way: `core` ← `model` ← `rollout` ← `train` ← `ui`. `core`, the
//! device part of `model` and the studio (`ui`) exist so far; see README.md for the module table. `synth` (the
//! synthetic task world with teacher trajectories) depends on `core` alone.

pub mod cli;
pub mod cli_dataset;
pub mod core;
#[cfg(feature = "model")]
pub mod model;
pub mod synth;
#[cfg(feature = "gui")]
pub mod ui;
