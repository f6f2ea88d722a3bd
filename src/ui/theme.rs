//! Every colour and size the studio uses, in one place. Shape colours are the reference's
//! (`core::colors`): the 171-colour box cycle, black lines, red start and blue end dots.

use egui::Color32;

use crate::core::colors;
use crate::ui::segments::SegmentKind;

fn rgb(c: [u8; 3]) -> Color32 {
    Color32::from_rgb(c[0], c[1], c[2])
}

/// Box outline and label colour of the i-th box of an image (reference cycle).
pub fn box_color(position: usize) -> Color32 {
    rgb(colors::bbox_color(position))
}
pub fn line_color() -> Color32 {
    rgb(colors::LINE_COLOR)
}
pub fn start_dot() -> Color32 {
    rgb(colors::START_DOT_COLOR)
}
pub fn end_dot() -> Color32 {
    rgb(colors::END_DOT_COLOR)
}

/// Reference stroke width of boxes and lines, in model pixels.
pub const STROKE_MODEL_PX: f32 = 4.0;
/// Reference dot radius, in model pixels.
pub const DOT_RADIUS_MODEL_PX: f32 = 4.0;
/// Highlight drawn around the selected or hovered shape.
pub const HIGHLIGHT: Color32 = Color32::from_rgb(255, 220, 0);
/// Carried-over shapes (drawn earlier, kept by merge-by-label) are drawn at this opacity when
/// "emphasise new" is on.
pub const CARRIED_ALPHA: f32 = 0.45;

/// Text colours of the parts of an assistant turn.
pub fn segment_color(kind: SegmentKind, dark: bool) -> Color32 {
    match (kind, dark) {
        (SegmentKind::Think, true) => Color32::from_rgb(170, 175, 190),
        (SegmentKind::Think, false) => Color32::from_rgb(80, 86, 100),
        (SegmentKind::ActionLine, true) => Color32::from_rgb(120, 180, 255),
        (SegmentKind::ActionLine, false) => Color32::from_rgb(20, 90, 200),
        (SegmentKind::JsonBlock, true) => Color32::from_rgb(230, 190, 120),
        (SegmentKind::JsonBlock, false) => Color32::from_rgb(150, 90, 0),
        (SegmentKind::Tool, true) => Color32::from_rgb(200, 160, 255),
        (SegmentKind::Tool, false) => Color32::from_rgb(110, 50, 180),
        (SegmentKind::Answer, true) => Color32::from_rgb(120, 220, 140),
        (SegmentKind::Answer, false) => Color32::from_rgb(10, 130, 40),
        (SegmentKind::Text, true) => Color32::from_rgb(220, 220, 220),
        (SegmentKind::Text, false) => Color32::from_rgb(30, 30, 30),
    }
}

pub const GOOD: Color32 = Color32::from_rgb(60, 170, 90);
pub const BAD: Color32 = Color32::from_rgb(220, 70, 60);
pub const WARN: Color32 = Color32::from_rgb(230, 160, 40);
pub const SELECTED_STEP_BG_DARK: Color32 = Color32::from_rgb(40, 52, 72);
pub const SELECTED_STEP_BG_LIGHT: Color32 = Color32::from_rgb(220, 232, 250);
pub const ERROR_TEXT: Color32 = Color32::from_rgb(235, 90, 80);

/// Thumbnail edge length in the lineage strip (logical points).
pub const THUMB_SIZE: f32 = 72.0;
/// Longest edge thumbnails are decoded to (pixels).
pub const THUMB_DECODE_PX: u32 = 160;

/// Background colour of a finish-reason badge.
pub fn finish_color(reason: &str) -> Color32 {
    match reason {
        "stop" => GOOD,
        "length" | "max_tokens" | "TooManyImages" | "cancelled" => WARN,
        _ => BAD,
    }
}
