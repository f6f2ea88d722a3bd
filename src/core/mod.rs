//! The pure core: plain data and pure functions that behave exactly like the ViLaSR/ViLaVT
//! reference (protocol.md). No burn, egui, eframe or wgpu here, and nothing from the layers above
//! (`model`, `rollout`, `train`, `ui`); `tests/layering.rs` fails the build if that changes.

pub mod actions;
pub mod colors;
pub mod datasets;
pub mod executor;
pub mod pillow;
pub mod prompts;
pub mod pyliteral;
pub mod resize;
pub mod rewards;
pub mod scripted;
pub mod session;
pub mod trajectory;
pub mod zoomin;
