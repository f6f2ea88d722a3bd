//! The image canvas: one image with its boxes and lines drawn as vectors in the reference colours
//! (labels at the reference offset, red start and blue end dots), zoom (wheel or pinch), pan
//! (drag), double-click to fit, hover tooltips with coordinates in model pixels and the JSON item,
//! and click-to-select that the step list follows.

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use crate::core::overlay::{ActionId, Shape};
use crate::core::trajectory::ActionKind;
use crate::ui::theme;

/// Zoom and pan of one canvas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CanvasView {
    pub zoom: f32,
    pub pan: Vec2,
}

impl Default for CanvasView {
    fn default() -> Self {
        CanvasView { zoom: 1.0, pan: Vec2::ZERO }
    }
}

/// Everything the canvas draws this frame.
pub struct CanvasInput<'a> {
    pub texture: Option<&'a egui::TextureHandle>,
    /// Size of the image file shown (pixels).
    pub image_px: [u32; 2],
    /// Size of the coordinate space the model wrote in (equal to `image_px` for Sightline data).
    pub model_px: [u32; 2],
    pub shapes: &'a [Shape],
    pub selected: Option<ActionId>,
    /// Draw carried-over shapes fainter than the ones this step added.
    pub emphasise_new: bool,
    /// Text shown instead of the image (loading, missing file).
    pub message: Option<(&'a str, bool)>,
    /// The JSON item of a shape, for the hover tooltip.
    pub describe: &'a dyn Fn(&Shape) -> String,
}

/// What happened on the canvas.
#[derive(Default)]
pub struct CanvasOutput {
    pub clicked: Option<ActionId>,
    pub hovered: Option<ActionId>,
    /// Screen rectangle the image occupies (for tests and screenshots).
    pub image_rect: Option<Rect>,
}

/// Screen mapping of model coordinates.
struct Mapping {
    origin: Pos2,
    /// Screen points per model pixel.
    scale: Vec2,
}

impl Mapping {
    fn to_screen(&self, x: f64, y: f64) -> Pos2 {
        self.origin + Vec2::new(x as f32 * self.scale.x, y as f32 * self.scale.y)
    }
    fn to_model(&self, p: Pos2) -> (f32, f32) {
        ((p.x - self.origin.x) / self.scale.x, (p.y - self.origin.y) / self.scale.y)
    }
}

/// Draw the canvas filling the available space.
pub fn canvas_ui(ui: &mut egui::Ui, view: &mut CanvasView, input: &CanvasInput) -> CanvasOutput {
    let mut out = CanvasOutput::default();
    let avail = ui.available_size().max(Vec2::splat(64.0));
    let (rect, response) = ui.allocate_exact_size(avail, Sense::click_and_drag());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);

    if let Some((msg, is_error)) = input.message {
        let color = if is_error { theme::ERROR_TEXT } else { ui.visuals().weak_text_color() };
        painter.text(rect.center(), Align2::CENTER_CENTER, msg, FontId::proportional(14.0), color);
        return out;
    }

    // Zoom around the pointer, pan by dragging, double-click to fit.
    if response.hovered() {
        let (scroll, zoom_delta, pointer) = ui.input(|i| (i.smooth_scroll_delta, i.zoom_delta(), i.pointer.hover_pos()));
        let factor = zoom_delta * (scroll.y / 400.0).exp();
        if (factor - 1.0).abs() > 1e-4 {
            let old = view.zoom;
            view.zoom = (view.zoom * factor).clamp(0.1, 40.0);
            if let Some(p) = pointer {
                let centre = rect.center() + view.pan;
                view.pan += (p - centre) * (1.0 - view.zoom / old);
            }
        }
    }
    if response.dragged() {
        view.pan += response.drag_delta();
    }
    if response.double_clicked() {
        *view = CanvasView::default();
    }

    let [iw, ih] = input.image_px;
    let (iw, ih) = (iw.max(1) as f32, ih.max(1) as f32);
    let fit = ((rect.width() - 16.0) / iw).min((rect.height() - 16.0) / ih).max(0.01);
    let size = Vec2::new(iw, ih) * fit * view.zoom;
    let img_rect = Rect::from_center_size(rect.center() + view.pan, size);
    out.image_rect = Some(img_rect);
    if let Some(tex) = input.texture {
        painter.image(tex.id(), img_rect, Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)), Color32::WHITE);
    }
    let [mw, mh] = input.model_px;
    let mapping = Mapping {
        origin: img_rect.min,
        scale: Vec2::new(img_rect.width() / mw.max(1) as f32, img_rect.height() / mh.max(1) as f32),
    };
    // Reference sizes are in model pixels; keep them visible when zoomed far out.
    let px = mapping.scale.x;
    let stroke_w = (theme::STROKE_MODEL_PX * px).max(1.5);
    let dot_r = (theme::DOT_RADIUS_MODEL_PX * px).max(2.0);

    // Hit test.
    let pointer = response.hover_pos();
    let hit = pointer.and_then(|p| hit_test(&mapping, input.shapes, p, 6.0));
    out.hovered = hit.map(|s| s.source);

    for s in input.shapes {
        let alpha = if input.emphasise_new && !s.new_here { theme::CARRIED_ALPHA } else { 1.0 };
        let emph = Some(s.source) == input.selected || Some(s.source) == out.hovered;
        match s.kind {
            ActionKind::Line => {
                let a = mapping.to_screen(s.coords[0].trunc(), s.coords[1].trunc());
                let b = mapping.to_screen(s.coords[2].trunc(), s.coords[3].trunc());
                if emph {
                    painter.line_segment([a, b], Stroke::new(stroke_w + 5.0, theme::HIGHLIGHT));
                }
                painter.line_segment([a, b], Stroke::new(stroke_w, theme::line_color().gamma_multiply(alpha)));
                painter.circle_filled(a, dot_r, theme::start_dot().gamma_multiply(alpha));
                painter.circle_filled(b, dot_r, theme::end_dot().gamma_multiply(alpha));
            }
            _ => {
                let r = box_rect(&mapping, s);
                let color = theme::box_color(s.position).gamma_multiply(alpha);
                if emph {
                    painter.rect_stroke(r, 0.0, Stroke::new(stroke_w + 4.0, theme::HIGHLIGHT), StrokeKind::Outside);
                }
                // Pillow draws the 4-px border inward.
                painter.rect_stroke(r, 0.0, Stroke::new(stroke_w, color), StrokeKind::Inside);
                if let Some(label) = &s.label {
                    let at = r.min + Vec2::new(8.0 * px, 6.0 * px);
                    let font = FontId::proportional((10.0 * px).clamp(9.0, 28.0));
                    painter.text(at, Align2::LEFT_TOP, label, font, color);
                }
            }
        }
    }

    if let (Some(s), Some(p)) = (hit, pointer) {
        let (mx, my) = mapping.to_model(p);
        let text = format!("{}\npointer at ({mx:.0}, {my:.0}) model px\n{}", shape_title(s), (input.describe)(s));
        egui::Tooltip::always_open(ui.ctx().clone(), ui.layer_id(), response.id.with("shape-tip"), egui::PopupAnchor::Pointer)
            .show(|ui| {
                ui.label(egui::RichText::new(text).monospace());
            });
    } else if let Some(p) = pointer.filter(|p| img_rect.contains(*p)) {
        let (mx, my) = mapping.to_model(p);
        painter.text(
            rect.left_bottom() + Vec2::new(6.0, -6.0),
            Align2::LEFT_BOTTOM,
            format!("({mx:.0}, {my:.0}) model px · zoom {:.0}%", view.zoom * 100.0),
            FontId::monospace(11.0),
            ui.visuals().weak_text_color(),
        );
    }
    if response.clicked() {
        out.clicked = hit.map(|s| s.source);
    }
    out
}

fn box_rect(m: &Mapping, s: &Shape) -> Rect {
    // The reference truncates corners and swaps them into order.
    let (x1, x2) = (s.coords[0].trunc().min(s.coords[2].trunc()), s.coords[0].trunc().max(s.coords[2].trunc()));
    let (y1, y2) = (s.coords[1].trunc().min(s.coords[3].trunc()), s.coords[1].trunc().max(s.coords[3].trunc()));
    Rect::from_min_max(m.to_screen(x1, y1), m.to_screen(x2 + 1.0, y2 + 1.0))
}

/// One-line description of a shape: kind, label, coordinates in model pixels.
pub fn shape_title(s: &Shape) -> String {
    let label = s.label.as_deref().map(|l| format!(" \"{l}\"")).unwrap_or_default();
    let c = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") };
    match s.kind {
        ActionKind::Line => format!(
            "line{label}: ({}, {}) -> ({}, {})",
            c(s.coords[0]),
            c(s.coords[1]),
            c(s.coords[2]),
            c(s.coords[3])
        ),
        _ => format!("box{label}: [{}, {}, {}, {}]", c(s.coords[0]), c(s.coords[1]), c(s.coords[2]), c(s.coords[3])),
    }
}

/// The shape under `p`: lines within `tol` points, box borders within `tol`, else the smallest box
/// containing the point.
fn hit_test<'a>(m: &Mapping, shapes: &'a [Shape], p: Pos2, tol: f32) -> Option<&'a Shape> {
    let mut best: Option<(f32, &Shape)> = None;
    for s in shapes {
        let d = match s.kind {
            ActionKind::Line => {
                let a = m.to_screen(s.coords[0].trunc(), s.coords[1].trunc());
                let b = m.to_screen(s.coords[2].trunc(), s.coords[3].trunc());
                segment_distance(p, a, b)
            }
            _ => {
                let r = box_rect(m, s);
                let border = (p.x - r.left()).abs().min((p.x - r.right()).abs()).min((p.y - r.top()).abs()).min((p.y - r.bottom()).abs());
                if r.contains(p) {
                    // Inside: prefer the border, then the smallest box.
                    if border <= tol {
                        border
                    } else {
                        tol + r.area().sqrt() / 1000.0 + 0.5
                    }
                } else if r.expand(tol).contains(p) {
                    border
                } else {
                    f32::INFINITY
                }
            }
        };
        if d.is_finite() && (d <= tol + 1.0 + 1e3) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, s));
        }
    }
    best.map(|(_, s)| s)
}

fn segment_distance(p: Pos2, a: Pos2, b: Pos2) -> f32 {
    let ab = b - a;
    let t = if ab.length_sq() > 0.0 { ((p - a).dot(ab) / ab.length_sq()).clamp(0.0, 1.0) } else { 0.0 };
    let d = (a + ab * t - p).length();
    if d <= 6.0 {
        d
    } else {
        f32::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(kind: ActionKind, coords: [f64; 4], action: usize) -> Shape {
        Shape { source: ActionId { turn: 0, action }, kind, coords, label: None, position: action, new_here: true }
    }

    #[test]
    fn hit_test_prefers_border_then_smallest_box_and_finds_lines() {
        let m = Mapping { origin: Pos2::ZERO, scale: Vec2::splat(1.0) };
        let shapes = vec![
            shape(ActionKind::Box, [0.0, 0.0, 100.0, 100.0], 0),
            shape(ActionKind::Box, [40.0, 40.0, 60.0, 60.0], 1),
            shape(ActionKind::Line, [0.0, 200.0, 100.0, 200.0], 2),
        ];
        assert_eq!(hit_test(&m, &shapes, Pos2::new(50.0, 50.0), 6.0).unwrap().source.action, 1);
        assert_eq!(hit_test(&m, &shapes, Pos2::new(1.0, 50.0), 6.0).unwrap().source.action, 0);
        assert_eq!(hit_test(&m, &shapes, Pos2::new(50.0, 203.0), 6.0).unwrap().source.action, 2);
        assert!(hit_test(&m, &shapes, Pos2::new(300.0, 300.0), 6.0).is_none());
    }
}
