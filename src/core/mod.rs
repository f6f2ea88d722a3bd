//! The pure core: plain data and pure functions that behave exactly like the ViLaSR/ViLaVT
//! reference (protocol.md). No burn, egui, eframe or wgpu here, and nothing from the layers above
//! (`model`, `rollout`, `train`, `ui`); `tests/layering.rs` fails the build if that changes.

/// `finder!(b"pattern")`: a SIMD `memchr::memmem::Finder` for a fixed pattern, built on first use
/// and kept in a `static` (building one per search costs more than a short search).
macro_rules! finder {
    ($pat:expr) => {{
        static F: std::sync::OnceLock<memchr::memmem::Finder<'static>> = std::sync::OnceLock::new();
        F.get_or_init(|| memchr::memmem::Finder::new($pat))
    }};
}

pub mod actions;
pub mod colors;
pub mod datasets;
pub mod executor;
pub mod overlay;
pub mod pillow;
pub mod prompts;
pub mod pyliteral;
pub mod resize;
pub mod rewards;
pub mod scripted;
pub mod session;
pub mod trajectory;
pub mod vilavt_session;
pub mod zoomin;
