//! The browser panel: a virtualized table of the source's rows (only visible rows are laid out,
//! so 91,000 records scroll as fast as 10) with a text filter, a dataset picker for LLaMA-Factory
//! registries, column sorting and keyboard Up/Down.

use std::time::{Duration, Instant};

use egui::RichText;
use egui_extras::{Column, TableBuilder};

use crate::ui::data::{RowSummary, Source};
use crate::ui::theme;

/// Sortable columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SortKey {
    Row,
    Id,
    DataType,
    QuestionType,
    Question,
    Steps,
    Finish,
    Overall,
    Format,
    Accuracy,
    Reflection,
}

/// Row summaries as they stream in, with the lower-cased filter text of each.
#[derive(Default)]
pub struct Summaries {
    pub rows: Vec<Option<(RowSummary, String)>>,
    pub done: bool,
    pub ms: Option<f64>,
    /// Bumped whenever rows arrive.
    pub version: u64,
}

impl Summaries {
    pub fn new(n: usize) -> Self {
        Summaries { rows: vec![None; n], done: n == 0, ms: None, version: 0 }
    }
    pub fn insert(&mut self, start: usize, rows: Vec<RowSummary>) {
        for (i, r) in rows.into_iter().enumerate() {
            if let Some(slot) = self.rows.get_mut(start + i) {
                let hay = r.haystack();
                *slot = Some((r, hay));
            }
        }
        self.version += 1;
    }
    pub fn known(&self) -> usize {
        self.rows.iter().filter(|r| r.is_some()).count()
    }
    pub fn get(&self, row: usize) -> Option<&RowSummary> {
        self.rows.get(row).and_then(|r| r.as_ref().map(|x| &x.0))
    }
}

pub struct Browser {
    pub filter: String,
    pub sort: Option<(SortKey, bool)>,
    /// LLaMA-Factory dataset shown (None: all).
    pub dataset: Option<String>,
    /// Source rows in display order after filtering and sorting.
    view: Vec<usize>,
    view_key: Option<(String, Option<(SortKey, bool)>, Option<String>, u64, usize)>,
    last_rebuild: Option<Instant>,
    scroll_to: Option<usize>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser { filter: String::new(), sort: None, dataset: None, view: Vec::new(), view_key: None, last_rebuild: None, scroll_to: None }
    }
}

/// What the user did in the browser.
#[derive(Default, Debug, PartialEq)]
pub struct BrowserOutput {
    pub select: Option<usize>,
    pub compare: Option<usize>,
}

impl Browser {
    /// Reset for a newly opened source.
    pub fn reset(&mut self) {
        self.view.clear();
        self.view_key = None;
        self.dataset = None;
        self.scroll_to = None;
    }

    /// Rows in display order.
    pub fn view(&self) -> &[usize] {
        &self.view
    }

    fn rebuild(&mut self, source: &Source, sums: &Summaries) {
        let key = (self.filter.clone(), self.sort, self.dataset.clone(), sums.version, source.entries.len());
        if self.view_key.as_ref() == Some(&key) {
            return;
        }
        let only_progress = self.view_key.as_ref().is_some_and(|k| k.0 == key.0 && k.1 == key.1 && k.2 == key.2 && k.4 == key.4);
        // While summaries stream in, re-filter at most 4 times a second.
        if only_progress && !sums.done && self.last_rebuild.is_some_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return;
        }
        self.last_rebuild = Some(Instant::now());
        let needle = self.filter.trim().to_lowercase();
        let n = source.entries.len();
        let mut view: Vec<usize> = (0..n)
            .filter(|&r| match &self.dataset {
                Some(d) => source.dataset_of(r) == Some(d.as_str()),
                None => true,
            })
            .filter(|&r| needle.is_empty() || sums.rows.get(r).and_then(|x| x.as_ref()).is_some_and(|(_, hay)| needle.split_whitespace().all(|w| hay.contains(w))))
            .collect();
        if let Some((k, asc)) = self.sort {
            let get = |r: usize| sums.get(r);
            view.sort_by(|&a, &b| {
                let ord = compare(k, a, b, get(a), get(b));
                if asc {
                    ord
                } else {
                    ord.reverse()
                }
            });
        }
        self.view = view;
        self.view_key = Some(key);
    }

    /// Move the selection by `delta` rows in display order; returns the new source row.
    pub fn step_selection(&mut self, current: Option<usize>, delta: isize) -> Option<usize> {
        if self.view.is_empty() {
            return None;
        }
        let pos = current.and_then(|c| self.view.iter().position(|&r| r == c));
        let next = match pos {
            None => 0,
            Some(p) => (p as isize + delta).clamp(0, self.view.len() as isize - 1) as usize,
        };
        self.scroll_to = Some(next);
        Some(self.view[next])
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, source: &Source, sums: &Summaries, selected: Option<usize>, compare: Option<usize>) -> BrowserOutput {
        let mut out = BrowserOutput::default();
        ui.horizontal(|ui| {
            ui.label("Filter");
            let r = ui.add(egui::TextEdit::singleline(&mut self.filter).hint_text("id, question, type, tag, finish…").desired_width(f32::INFINITY));
            if r.changed() {
                self.scroll_to = Some(0);
            }
        });
        if !source.dataset_names.is_empty() {
            ui.horizontal(|ui| {
                ui.label("Dataset");
                let shown = self.dataset.clone().unwrap_or_else(|| "all".into());
                egui::ComboBox::from_id_salt("dataset-picker").selected_text(shown).show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.dataset, None, "all");
                    for n in &source.dataset_names {
                        ui.selectable_value(&mut self.dataset, Some(n.clone()), n);
                    }
                });
            });
        }
        self.rebuild(source, sums);
        ui.horizontal(|ui| {
            let shown = self.view.len();
            let total = source.entries.len();
            let mut s = if shown == total { format!("{total} rows") } else { format!("{shown} of {total} rows") };
            if !sums.done {
                s.push_str(&format!(" · reading summaries {}/{}", sums.known(), total));
            }
            ui.label(RichText::new(s).weak().small());
        });
        for n in &source.notes {
            ui.label(RichText::new(n).small().color(theme::WARN));
        }
        let row_h = 20.0;
        // Clicks on cell text select the row (not the text).
        ui.style_mut().interaction.selectable_labels = false;
        let mut table = TableBuilder::new(ui)
            .striped(true)
            .resizable(true)
            .sense(egui::Sense::click())
            .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
            .column(Column::initial(92.0).at_least(40.0).clip(true))
            .column(Column::initial(44.0).clip(true))
            .column(Column::initial(64.0).clip(true))
            .column(Column::remainder().at_least(80.0).clip(true))
            .column(Column::initial(34.0))
            .column(Column::initial(44.0).clip(true))
            .column(Column::initial(40.0))
            .column(Column::initial(40.0))
            .column(Column::initial(32.0))
            .column(Column::initial(30.0))
            .column(Column::initial(64.0).clip(true));
        if let Some(pos) = self.scroll_to.take() {
            table = table.scroll_to_row(pos, None);
        }
        let headers = [
            ("id", SortKey::Id),
            ("data", SortKey::DataType),
            ("q. type", SortKey::QuestionType),
            ("question", SortKey::Question),
            ("steps", SortKey::Steps),
            ("finish", SortKey::Finish),
            ("overall", SortKey::Overall),
            ("format", SortKey::Format),
            ("acc.", SortKey::Accuracy),
            ("refl.", SortKey::Reflection),
            ("tags", SortKey::Row),
        ];
        let mut new_sort = None;
        table
            .header(row_h, |mut header| {
                for (name, key) in headers {
                    header.col(|ui| {
                        let arrow = match self.sort {
                            Some((k, true)) if k == key && name != "tags" => " ^",
                            Some((k, false)) if k == key && name != "tags" => " v",
                            _ => "",
                        };
                        if name == "tags" {
                            ui.strong(name);
                        } else if ui.add(egui::Button::new(RichText::new(format!("{name}{arrow}")).strong()).frame(false)).clicked() {
                            new_sort = Some(key);
                        }
                    });
                }
            })
            .body(|body| {
                body.rows(row_h, self.view.len(), |mut row| {
                    let r = self.view[row.index()];
                    row.set_selected(selected == Some(r) || compare == Some(r));
                    let s = sums.get(r);
                    let weak = |t: &str| RichText::new(t.to_string()).weak();
                    match s {
                        None => {
                            row.col(|ui| {
                                ui.label(weak(&format!("row {r}")));
                            });
                            for _ in 0..10 {
                                row.col(|ui| {
                                    ui.label(weak("…"));
                                });
                            }
                        }
                        Some(s) if s.error.is_some() => {
                            row.col(|ui| {
                                ui.label(RichText::new(&s.id).color(theme::ERROR_TEXT));
                            });
                            row.col(|ui| {
                                ui.label(RichText::new("error").color(theme::ERROR_TEXT));
                            });
                            for _ in 0..8 {
                                row.col(|_| {});
                            }
                            row.col(|ui| {
                                ui.label(RichText::new(s.error.as_deref().unwrap_or("")).color(theme::ERROR_TEXT).small())
                                    .on_hover_text(s.error.as_deref().unwrap_or(""));
                            });
                        }
                        Some(s) => {
                            row.col(|ui| {
                                ui.label(&s.id);
                            });
                            row.col(|ui| {
                                ui.label(&s.data_type);
                            });
                            row.col(|ui| {
                                ui.label(&s.question_type);
                            });
                            row.col(|ui| {
                                ui.label(&s.question).on_hover_text(&s.question);
                            });
                            row.col(|ui| {
                                ui.label(s.steps.map(|n| n.to_string()).unwrap_or_else(|| "—".into()));
                            });
                            row.col(|ui| {
                                if let Some(f) = &s.finish {
                                    ui.label(RichText::new(f).color(theme::finish_color(f)));
                                }
                            });
                            let rw = s.rewards.as_ref();
                            for v in [rw.map(|r| r.overall), rw.map(|r| r.format), rw.map(|r| r.accuracy)] {
                                row.col(|ui| {
                                    if let Some(v) = v {
                                        ui.label(short(v));
                                    }
                                });
                            }
                            row.col(|ui| {
                                match s.reflective {
                                    Some(true) => ui.label(RichText::new("yes").color(theme::GOOD)).on_hover_text("reflective: a box was redrawn under the same label"),
                                    Some(false) => ui.label(weak("·")),
                                    None => ui.label(""),
                                };
                            });
                            row.col(|ui| {
                                ui.label(RichText::new(s.tags.join(" ")).small());
                            });
                        }
                    }
                    let resp = row.response();
                    if resp.clicked() {
                        if ui_modifiers(&resp).ctrl || ui_modifiers(&resp).command {
                            out.compare = Some(r);
                        } else {
                            out.select = Some(r);
                        }
                    }
                    resp.context_menu(|ui| {
                        if ui.button("Open").clicked() {
                            out.select = Some(r);
                            ui.close();
                        }
                        if ui.button("Compare with the open trajectory").clicked() {
                            out.compare = Some(r);
                            ui.close();
                        }
                    });
                });
            });
        if let Some(key) = new_sort {
            self.sort = match self.sort {
                Some((k, true)) if k == key => Some((key, false)),
                Some((k, false)) if k == key => None,
                _ => Some((key, true)),
            };
        }
        out
    }
}

fn ui_modifiers(r: &egui::Response) -> egui::Modifiers {
    r.ctx.input(|i| i.modifiers)
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn compare(k: SortKey, a: usize, b: usize, sa: Option<&RowSummary>, sb: Option<&RowSummary>) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (sa, sb) = match (sa, sb) {
        (Some(x), Some(y)) => (x, y),
        (Some(_), None) => return Ordering::Less,
        (None, Some(_)) => return Ordering::Greater,
        (None, None) => return a.cmp(&b),
    };
    let f = |x: Option<f64>, y: Option<f64>| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    let ord = match k {
        SortKey::Row => Ordering::Equal,
        SortKey::Id => sa.id.cmp(&sb.id),
        SortKey::DataType => sa.data_type.cmp(&sb.data_type),
        SortKey::QuestionType => sa.question_type.cmp(&sb.question_type),
        SortKey::Question => sa.question.cmp(&sb.question),
        SortKey::Steps => sa.steps.cmp(&sb.steps),
        SortKey::Finish => sa.finish.cmp(&sb.finish),
        SortKey::Overall => f(sa.rewards.as_ref().map(|r| r.overall), sb.rewards.as_ref().map(|r| r.overall)),
        SortKey::Format => f(sa.rewards.as_ref().map(|r| r.format), sb.rewards.as_ref().map(|r| r.format)),
        SortKey::Accuracy => f(sa.rewards.as_ref().map(|r| r.accuracy), sb.rewards.as_ref().map(|r| r.accuracy)),
        SortKey::Reflection => sa.reflective.cmp(&sb.reflective),
    };
    ord.then(a.cmp(&b))
}
