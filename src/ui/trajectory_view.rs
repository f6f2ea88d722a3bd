//! The trajectory view: a header with the sample, finish reason and rewards (with the reason for
//! each part), the step list (each step's `<think>` text, action line, JSON actions and answer in
//! distinct styles), the canvas with the step's shapes, and the image lineage strip (inputs, video
//! frames, observations with the image each was drawn on).

use std::collections::HashMap;

use egui::{Color32, RichText, ScrollArea, Sense};

use crate::core::overlay::{ActionId, ImageOverlay, Shape};
use crate::core::resize;
use crate::core::trajectory::{ActionKind, Trajectory};
use crate::ui::canvas::{self, CanvasInput, CanvasView};
use crate::ui::data::LoadedItem;
use crate::ui::images::{ImageCache, ImageSize, ImageState};
use crate::ui::segments::{segments, SegmentKind};
use crate::ui::theme;
use crate::ui::video::FrameSource;

/// Viewer state of one pane (the data lives in [`LoadedItem`]).
#[derive(Default)]
pub struct TrajectoryPane {
    /// 0-based selected step (assistant turn).
    pub step: usize,
    /// Which of the step's observations the canvas shows.
    pub observation: usize,
    /// An image picked in the lineage strip, overriding the step's image.
    pub pinned_image: Option<u32>,
    pub selected_action: Option<ActionId>,
    pub view: CanvasView,
    /// Scroll the step list to the selected step/action on the next frame.
    scroll_pending: bool,
    /// The item this state belongs to (reset when another item is shown).
    item_id: Option<String>,
    frames: Option<FrameSource>,
    /// Where each action's shape was drawn (image number), for jumping from text to canvas.
    action_image: HashMap<ActionId, u32>,
    /// Screen rectangle of the image on the canvas last frame and its model size (tests, tools).
    pub last_canvas: Option<(egui::Rect, [u32; 2])>,
}

/// Settings shared by all panes.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewOptions {
    /// Show the observation pixels exactly as the model saw them instead of vector shapes.
    pub show_pixels: bool,
    pub emphasise_new: bool,
    pub show_observation_text: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions { show_pixels: false, emphasise_new: true, show_observation_text: false }
    }
}

/// What the canvas should show for the current selection.
#[derive(Clone, Debug, PartialEq)]
pub struct CanvasTarget {
    /// 1-based image whose state is shown.
    pub number: u32,
    /// 1-based image whose pixels are drawn.
    pub pixels_of: u32,
    /// Whether vector shapes are drawn on top.
    pub vectors: bool,
}

impl TrajectoryPane {
    fn sync_item(&mut self, item: &LoadedItem) {
        let id = format!("{}|{}", item.base_dir.display(), item.trajectory.id);
        if self.item_id.as_deref() == Some(id.as_str()) {
            return;
        }
        let keep_step = self.step;
        *self = TrajectoryPane { item_id: Some(id), ..Default::default() };
        self.step = keep_step.min(item.trajectory.turns.len().saturating_sub(1));
        for img in &item.overlays.images {
            for s in img.shapes().filter(|s| s.new_here) {
                self.action_image.entry(s.source).or_insert(img.number);
            }
        }
        if item.trajectory.sample.media.is_video() {
            self.frames = Some(FrameSource::new(&item.trajectory, &item.base_dir));
        }
    }

    /// Number of steps of the item.
    pub fn steps(item: &LoadedItem) -> usize {
        item.trajectory.turns.len()
    }

    pub fn set_step(&mut self, step: usize) {
        if step != self.step {
            self.step = step;
            self.observation = 0;
            self.pinned_image = None;
            self.selected_action = None;
            self.scroll_pending = true;
        }
    }

    /// Select an action (from the text or the canvas) and show the image it was drawn on.
    pub fn select_action(&mut self, id: ActionId) {
        self.set_step(id.turn);
        self.selected_action = Some(id);
        self.scroll_pending = true;
        self.pinned_image = self.action_image.get(&id).copied();
    }

    /// The image the canvas shows for the current selection.
    pub fn canvas_target(&self, item: &LoadedItem, options: &ViewOptions) -> Option<CanvasTarget> {
        let t = &item.trajectory;
        let inputs = t.sample.media.images().len() as u32;
        let number = match self.pinned_image {
            Some(n) => n,
            None => match t.turns.get(self.step) {
                Some(turn) if !turn.observations.is_empty() => turn.observations[self.observation.min(turn.observations.len() - 1)].number,
                _ => {
                    // The latest image the model had seen by the end of this step.
                    let last_obs = t.turns.iter().take(self.step + 1).flat_map(|x| x.observations.iter()).map(|o| o.number).max();
                    match last_obs {
                        Some(n) => n,
                        None if inputs > 0 => self.frames.as_ref().map(|f| f.current as u32 + 1).unwrap_or(1).min(inputs),
                        None => return None,
                    }
                }
            },
        };
        if options.show_pixels {
            return Some(CanvasTarget { number, pixels_of: number, vectors: false });
        }
        // Vectors over the input the chain of observations started from.
        let mut root = number;
        let mut guard = 0;
        while let Some(on) = item.overlays.get(root).and_then(|o| o.drawn_on) {
            if on == root || guard > 64 {
                break;
            }
            root = on;
            guard += 1;
        }
        let known_chain = root <= inputs;
        Some(CanvasTarget { number, pixels_of: if known_chain { root } else { number }, vectors: known_chain })
    }

    /// Draw the whole pane. `compact` hides the long header (compare mode).
    pub fn ui(&mut self, ui: &mut egui::Ui, item: &LoadedItem, images: &mut ImageCache, options: &mut ViewOptions, compact: bool) {
        self.sync_item(item);
        let t = item.trajectory.clone();
        header_ui(ui, item, compact);
        ui.separator();
        let id = ui.scope_id().with(("pane", compact));
        egui::Panel::bottom(id.with("lineage")).resizable(false).show(ui, |ui| {
            self.lineage_ui(ui, item, images, options);
        });
        egui::Panel::left(id.with("steps"))
            .resizable(true)
            .default_size(if compact { 220.0 } else { 300.0 })
            .size_range(180.0..=900.0)
            .show(ui, |ui| {
                self.steps_ui(ui, &t, item);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.canvas_area_ui(ui, item, images, options);
        });
    }

    fn canvas_area_ui(&mut self, ui: &mut egui::Ui, item: &LoadedItem, images: &mut ImageCache, options: &mut ViewOptions) {
        let target = self.canvas_target(item, options);
        ui.horizontal_wrapped(|ui| {
            ui.toggle_value(&mut options.show_pixels, "Observation pixels")
                .on_hover_text("Show the rendered observation exactly as the model saw it, instead of vector shapes over the input (P)");
            ui.add_enabled(!options.show_pixels, egui::Checkbox::new(&mut options.emphasise_new, "Emphasise new shapes"));
            if ui.button("Fit").on_hover_text("Reset zoom and pan (double-click the canvas)").clicked() {
                self.view = CanvasView::default();
            }
            if let Some(tg) = &target {
                let how = if tg.vectors && tg.pixels_of != tg.number {
                    format!("image {} · vectors over image {}", tg.number, tg.pixels_of)
                } else {
                    format!("image {}", tg.number)
                };
                ui.label(RichText::new(how).weak());
            }
            if let Some(turn) = item.trajectory.turns.get(self.step) {
                if turn.observations.len() > 1 {
                    ui.separator();
                    for (k, o) in turn.observations.iter().enumerate() {
                        if ui.selectable_label(self.observation == k && self.pinned_image.is_none(), format!("#{}", o.number)).clicked() {
                            self.observation = k;
                            self.pinned_image = None;
                        }
                    }
                }
            }
        });
        let Some(target) = target else {
            canvas::canvas_ui(ui, &mut self.view, &no_image_input("This record names no image."));
            return;
        };
        let all = item.trajectory.all_images();
        let Some(img_ref) = all.get(target.pixels_of as usize - 1).copied() else {
            let msg = format!("Image {} is not part of this trajectory.", target.pixels_of);
            canvas::canvas_ui(ui, &mut self.view, &no_image_input(&msg));
            return;
        };
        let path = self.image_path(item, target.pixels_of, &img_ref.path);
        let empty: Vec<Shape> = Vec::new();
        let overlay: Option<&ImageOverlay> = item.overlays.get(target.number);
        let shapes: Vec<Shape> = if target.vectors { overlay.map(|o| o.shapes().cloned().collect()).unwrap_or_default() } else { empty };
        let describe = |s: &Shape| -> String {
            item.trajectory
                .turns
                .get(s.source.turn)
                .and_then(|t| t.actions.get(s.source.action))
                .map(|a| serde_json::to_string_pretty(&a.raw).unwrap_or_default())
                .unwrap_or_default()
        };
        let state = images.get(&path, ImageSize::Full);
        let (texture, size, message) = match state {
            ImageState::Ready(tex, size) => (Some(tex.clone()), size, None),
            ImageState::Loading => (None, [1, 1], Some(("Loading image…".to_string(), false))),
            ImageState::Failed(e) => (None, [1, 1], Some((format!("Cannot show image {}: {e}", target.pixels_of), true))),
        };
        let model = model_size(size, item.trajectory.profile.as_deref());
        if texture.is_some() && model != size {
            ui.label(
                RichText::new(format!(
                    "Coordinates are model pixels {}x{}: the file is {}x{}, resized as fetch_image does for the {} profile.",
                    model[0],
                    model[1],
                    size[0],
                    size[1],
                    item.trajectory.profile.as_deref().unwrap_or("eval")
                ))
                .color(theme::WARN)
                .small(),
            );
        }
        let input = CanvasInput {
            texture: texture.as_ref(),
            image_px: size,
            model_px: model,
            shapes: &shapes,
            selected: self.selected_action,
            emphasise_new: options.emphasise_new,
            message: message.as_ref().map(|(m, e)| (m.as_str(), *e)),
            describe: &describe,
        };
        let out = canvas::canvas_ui(ui, &mut self.view, &input);
        self.last_canvas = out.image_rect.map(|r| (r, model));
        if let Some(id) = out.clicked {
            self.selected_action = Some(id);
            self.scroll_pending = true;
            if id.turn != self.step {
                self.step = id.turn;
            }
        }
    }

    fn image_path(&self, item: &LoadedItem, number: u32, path: &str) -> std::path::PathBuf {
        let inputs = item.trajectory.sample.media.images().len() as u32;
        if number <= inputs {
            if let Some(f) = &self.frames {
                if let Some(p) = f.frame_path(number as usize - 1) {
                    return p;
                }
            }
        }
        item.resolve(path)
    }

    fn steps_ui(&mut self, ui: &mut egui::Ui, t: &Trajectory, item: &LoadedItem) {
        if t.turns.is_empty() {
            ui.label(RichText::new(if item.sample_only { "This record is a sample: it holds no model output." } else { "No assistant turns." }).weak());
            return;
        }
        let dark = ui.visuals().dark_mode;
        let scroll_pending = std::mem::take(&mut self.scroll_pending);
        ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            for (k, turn) in t.turns.iter().enumerate() {
                let selected = k == self.step;
                let bg = match (selected, dark) {
                    (true, true) => theme::SELECTED_STEP_BG_DARK,
                    (true, false) => theme::SELECTED_STEP_BG_LIGHT,
                    _ => Color32::TRANSPARENT,
                };
                let frame = egui::Frame::group(ui.style()).fill(bg);
                // The step's own click sense is registered before its contents, so the action rows
                // inside it keep their clicks.
                let resp = ui
                    .scope_builder(egui::UiBuilder::new().sense(Sense::click()), |ui| {
                        frame.show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        ui.horizontal(|ui| {
                            ui.label(RichText::new(format!("Step {}", k + 1)).strong());
                            if let Some(f) = &turn.finish_reason {
                                badge(ui, f.as_str(), theme::finish_color(f.as_str()));
                            }
                            if !turn.actions.is_empty() {
                                ui.label(RichText::new(format!("{} actions", turn.actions.len())).weak());
                            }
                            if !turn.observations.is_empty() {
                                let nums: Vec<String> = turn.observations.iter().map(|o| format!("#{}", o.number)).collect();
                                ui.label(RichText::new(format!("-> {}", nums.join(" "))).weak());
                            }
                            if let Some(ms) = turn.timings.generate_ms {
                                ui.label(RichText::new(format!("{ms:.0} ms")).weak());
                            }
                        });
                        for seg in segments(&turn.assistant_text) {
                            let color = theme::segment_color(seg.kind, dark);
                            match seg.kind {
                                SegmentKind::JsonBlock => {
                                    ui.label(RichText::new(seg.text.trim_end()).monospace().color(color));
                                }
                                SegmentKind::Tool => {
                                    ui.label(RichText::new(seg.text).monospace().color(color));
                                }
                                SegmentKind::Answer => {
                                    ui.label(RichText::new(seg.text).strong().color(color));
                                }
                                SegmentKind::ActionLine => {
                                    ui.label(RichText::new(seg.text).strong().color(color));
                                }
                                SegmentKind::Think => {
                                    ui.label(RichText::new(seg.text).italics().color(color));
                                }
                                SegmentKind::Text => {
                                    let trimmed = seg.text.trim();
                                    if !trimmed.is_empty() {
                                        ui.label(RichText::new(trimmed).color(color));
                                    }
                                }
                            }
                        }
                        for (a, act) in turn.actions.iter().enumerate() {
                            let id = ActionId { turn: k, action: a };
                            let on = self.action_image.get(&id).copied();
                            let position = on
                                .and_then(|n| item.overlays.get(n))
                                .and_then(|o| o.shapes().find(|s| s.source == id))
                                .map(|s| (s.kind, s.position));
                            let swatch = match position {
                                Some((ActionKind::Box, p)) => theme::box_color(p),
                                Some((_, _)) => theme::line_color(),
                                None => ui.visuals().weak_text_color(),
                            };
                            let text = action_text(act, on);
                            let is_sel = self.selected_action == Some(id);
                            let r = ui
                                .horizontal(|ui| {
                                    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), Sense::hover());
                                    ui.painter().rect_filled(rect, 2.0, swatch);
                                    ui.selectable_label(is_sel, RichText::new(text).monospace().small())
                                })
                                .inner;
                            let r = r.on_hover_text(serde_json::to_string_pretty(&act.raw).unwrap_or_default());
                            if r.clicked() {
                                self.select_action(id);
                            }
                            if is_sel && scroll_pending {
                                r.scroll_to_me(Some(egui::Align::Center));
                            }
                        }
                        for n in &turn.notes {
                            ui.label(RichText::new(n).color(theme::WARN).small());
                        }
                        if let Some(obs) = &turn.observation_text {
                            egui::CollapsingHeader::new(RichText::new("observation turn").small().weak())
                                .id_salt(("obs", k))
                                .show(ui, |ui| {
                                    ui.label(RichText::new(obs).monospace().small());
                                });
                        }
                        })
                    })
                    .response;
                if resp.clicked() {
                    self.set_step(k);
                }
                if selected && scroll_pending && self.selected_action.is_none() {
                    resp.scroll_to_me(Some(egui::Align::TOP));
                }
            }
        });
    }

    fn lineage_ui(&mut self, ui: &mut egui::Ui, item: &LoadedItem, images: &mut ImageCache, options: &ViewOptions) {
        let t = &item.trajectory;
        let target = self.canvas_target(item, options).map(|x| x.number);
        let inputs = t.sample.media.images().len();
        if let Some(frames) = &mut self.frames {
            ui.horizontal(|ui| {
                ui.label(RichText::new("Video frames").strong());
                match frames.status() {
                    Some(msg) => {
                        ui.label(RichText::new(msg).color(theme::WARN));
                    }
                    None => {
                        let n = frames.len();
                        if n > 0 {
                            let mut cur = frames.current;
                            if ui.add(egui::Slider::new(&mut cur, 0..=n - 1).custom_formatter(|v, _| format!("frame {}", v as usize + 1))).changed() {
                                frames.current = cur;
                                self.pinned_image = Some(cur as u32 + 1);
                            }
                        }
                    }
                }
            });
        }
        let all = t.all_images();
        ScrollArea::horizontal().id_salt("lineage-scroll").show(ui, |ui| {
            ui.horizontal(|ui| {
                for (i, img) in all.iter().enumerate() {
                    let number = i as u32 + 1;
                    let path = self.image_path(item, number, &img.path);
                    let ov = item.overlays.get(number);
                    let caption = if (i) < inputs {
                        if t.sample.media.is_video() { format!("{number} · frame") } else { format!("{number} · input") }
                    } else {
                        match (ov.and_then(|o| o.drawn_on), ov.and_then(|o| o.created_by)) {
                            (Some(on), Some(step)) => format!("{number} <- {on} · step {}", step + 1),
                            (None, Some(step)) => format!("{number} · step {}", step + 1),
                            _ => format!("{number}"),
                        }
                    };
                    let selected = target == Some(number);
                    ui.vertical(|ui| {
                        let size = egui::vec2(theme::THUMB_SIZE, theme::THUMB_SIZE);
                        let (rect, resp) = ui.allocate_exact_size(size, Sense::click());
                        let painter = ui.painter_at(rect);
                        painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
                        match images.get(&path, ImageSize::Thumb) {
                            ImageState::Ready(tex, _) => {
                                let ts = tex.size_vec2();
                                let s = (size.x / ts.x).min(size.y / ts.y);
                                let r = egui::Rect::from_center_size(rect.center(), ts * s);
                                painter.image(tex.id(), r, egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)), Color32::WHITE);
                            }
                            ImageState::Loading => {
                                painter.text(rect.center(), egui::Align2::CENTER_CENTER, "…", egui::FontId::proportional(14.0), ui.visuals().weak_text_color());
                            }
                            ImageState::Failed(e) => {
                                painter.text(rect.center(), egui::Align2::CENTER_CENTER, "missing", egui::FontId::proportional(12.0), theme::ERROR_TEXT);
                                let e = e.to_string();
                                resp.clone().on_hover_text(e);
                            }
                        }
                        if selected {
                            painter.rect_stroke(rect, 2.0, egui::Stroke::new(2.0, theme::HIGHLIGHT), egui::StrokeKind::Inside);
                        }
                        ui.label(RichText::new(caption).small());
                        if resp.clicked() {
                            self.pinned_image = Some(number);
                            if let Some(step) = ov.and_then(|o| o.created_by) {
                                self.step = step;
                            }
                            if let Some(f) = &mut self.frames {
                                if (i) < inputs {
                                    f.current = i;
                                }
                            }
                        }
                    });
                }
            });
        });
    }
}

fn no_image_input(msg: &str) -> CanvasInput<'_> {
    CanvasInput {
        texture: None,
        image_px: [1, 1],
        model_px: [1, 1],
        shapes: &[],
        selected: None,
        emphasise_new: false,
        message: Some((msg, false)),
        describe: &|_| String::new(),
    }
}

/// The coordinate space a model wrote in for an image file of `size`: the file itself when it is
/// already a valid model size (multiples of 28 within the profile's budget), else its
/// `smart_resize` (protocol §1.2).
pub fn model_size(size: [u32; 2], profile: Option<&str>) -> [u32; 2] {
    let budget = if profile == Some("rl") { resize::VILASR_RL_MAX_PIXELS } else { resize::VILASR_EVAL_MAX_PIXELS };
    let [w, h] = size;
    let valid = w % 28 == 0 && h % 28 == 0 && (w as f64 * h as f64) <= budget;
    if valid || w <= 1 || h <= 1 {
        return size;
    }
    match resize::smart_resize(h, w, resize::FACTOR, resize::DEFAULT_MIN_PIXELS, budget) {
        Ok((rh, rw)) if rh > 0 && rw > 0 => [rw as u32, rh as u32],
        _ => size,
    }
}

fn action_text(a: &crate::core::trajectory::ActionRecord, on: Option<u32>) -> String {
    let f = |v: f64| if v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v}") };
    let label = a.label.as_deref().unwrap_or("");
    let idx = a.index.map(|i| format!("img {i}")).unwrap_or_else(|| "no index".into());
    let target = on.map(|n| format!(" -> #{n}")).unwrap_or_default();
    match a.kind {
        ActionKind::Box => match a.bbox_2d {
            Some(b) => format!("box \"{label}\" [{}, {}, {}, {}] {idx}{target}", f(b[0]), f(b[1]), f(b[2]), f(b[3])),
            None => format!("box \"{label}\" (malformed bbox) {idx}"),
        },
        ActionKind::Line => match (a.start_point_2d, a.end_point_2d) {
            (Some(s), Some(e)) => format!("line \"{label}\" ({}, {}) -> ({}, {}) {idx}{target}", f(s[0]), f(s[1]), f(e[0]), f(e[1])),
            _ => format!("line \"{label}\" (malformed points) {idx}"),
        },
        ActionKind::Region => {
            let q = a.query.as_deref().unwrap_or("");
            match a.bbox_2d {
                Some(b) => format!("region [{}, {}, {}, {}] image {} \"{q}\"", f(b[0]), f(b[1]), f(b[2]), f(b[3]), a.index.unwrap_or(-1)),
                None => format!("region image {} \"{q}\"", a.index.unwrap_or(-1)),
            }
        }
    }
}

fn badge(ui: &mut egui::Ui, text: &str, color: Color32) -> egui::Response {
    egui::Frame::new()
        .fill(color.gamma_multiply(0.25))
        .corner_radius(4.0)
        .inner_margin(egui::Margin::symmetric(5, 1))
        .show(ui, |ui| {
            ui.label(RichText::new(text).color(color).small().strong());
        })
        .response
}

/// Sample, answer, finish reason and rewards with their reasons.
fn header_ui(ui: &mut egui::Ui, item: &LoadedItem, compact: bool) {
    let t = &item.trajectory;
    let s = &t.sample;
    ui.horizontal_wrapped(|ui| {
        ui.heading(&t.id);
        badge(ui, &s.data_type, ui.visuals().hyperlink_color);
        badge(ui, &s.question_type, ui.visuals().hyperlink_color);
        if let Some(f) = &t.finish_reason {
            badge(ui, &format!("finish: {f}"), theme::finish_color(f.as_str()));
        }
        if let Some(r) = &t.rewards {
            let c = if r.overall >= 1.0 { theme::GOOD } else if r.overall > 0.0 { theme::WARN } else { theme::BAD };
            let mut text = format!("overall {} · format {} · accuracy {}", num(r.overall), num(r.format), num(r.accuracy));
            if let Some(x) = r.reflection {
                text.push_str(&format!(" · reflection {}", num(x)));
            }
            badge(ui, &text, c).on_hover_text(if item.rewards_computed {
                "Computed by Sightline with the ViLaSR RL reward (the data did not store rewards)."
            } else {
                "As stored with the trajectory."
            });
        }
        if let Some(fork) = &t.fork_of {
            ui.label(RichText::new(format!("fork of {} at step {}", fork.parent_id, fork.turn + 1)).weak());
        }
        for tag in &t.tags {
            ui.label(RichText::new(format!("#{tag}")).weak().small());
        }
    });
    ui.label(RichText::new(&s.question).strong());
    if compact {
        return;
    }
    if let Some(opts) = &s.options {
        ui.label(RichText::new(opts.join("   ")).small());
    }
    ui.horizontal_wrapped(|ui| {
        if let Some(gt) = &s.ground_truth {
            ui.label(format!("ground truth: {gt}"));
        }
        if let Some(ans) = t.final_text().and_then(crate::core::rewards::vilasr::answer_tag) {
            ui.label(format!("· answer: {}", ans.trim()));
        }
        if let Some(m) = &t.model {
            ui.label(RichText::new(format!("· model: {m}")).weak());
        }
        if let Some(p) = &t.profile {
            ui.label(RichText::new(format!("· profile: {p}")).weak());
        }
    });
    if let Some(r) = &t.rewards {
        if !r.reasons.is_empty() {
            ui.label(RichText::new(format!("reward reasons: {}", r.reasons.join(" · "))).small().weak());
        }
    }
    for n in &item.notes {
        ui.label(RichText::new(n).small().color(theme::WARN));
    }
    if t.system_prompt.is_some() || t.first_user_text.is_some() {
        egui::CollapsingHeader::new(RichText::new("prompt (system and first user turn, as the model saw them)").small()).id_salt("prompt").show(ui, |ui| {
            ScrollArea::vertical().max_height(220.0).show(ui, |ui| {
                if let Some(sys) = &t.system_prompt {
                    ui.label(RichText::new("system").strong().small());
                    ui.label(RichText::new(sys).monospace().small());
                }
                if let Some(u) = &t.first_user_text {
                    ui.label(RichText::new("user").strong().small());
                    ui.label(RichText::new(u).monospace().small());
                }
            });
        });
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_size_keeps_valid_images_and_resizes_others() {
        assert_eq!(model_size([448, 336], None), [448, 336]);
        assert_eq!(model_size([640, 480], None), [644, 476]);
        assert_eq!(model_size([640, 480], Some("rl")), [504, 364]);
    }
}
