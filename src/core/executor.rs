//! The ViLaSR executor: group a response's actions by image index, merge them by label into the
//! per-image annotation state, draw one observation per group, and decide the finish reason —
//! exactly as the reference's `process_single_response` does (protocol §2.4–2.9), in its two
//! variants (`eval/infer.py` and the RL rollout).
//!
//! Python semantics matter here: the reference keys its state by Python values, lets negative
//! indices wrap, and turns different exceptions into different outcomes. Every such path is kept:
//! [`StepOutcome::NoResult`] is the reference returning `None` (the sample is silently regenerated
//! with its state already mutated), [`StepOutcome::Terminal`] a finish reason.

use super::actions::{self, BlockMode};
use super::colors::{bbox_color, END_DOT_COLOR, LINE_COLOR, START_DOT_COLOR};
use super::pillow;
use super::pyliteral::{unicode_decimal, PyValue};
use super::trajectory::{ActionKind, ActionRecord, FinishReason};
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Which reference code path the executor follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// `eval/infer.py`: 45 images, 10 generations (20 for maze), T=0.75, top-p 0.9.
    #[default]
    Eval,
    /// The RL rollout: 42 images, call counters, 1,024 tokens per turn, 13,312 in total.
    Rl,
}

/// Limits and sampling settings of a profile (protocol §2.9).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ProfileLimits {
    pub max_images: usize,
    pub max_generations: usize,
    pub max_generations_maze: usize,
    pub max_new_tokens_per_turn: usize,
    pub total_response_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub max_pixels: f64,
}

impl Profile {
    pub fn limits(self) -> ProfileLimits {
        match self {
            Profile::Eval => ProfileLimits {
                max_images: 45,
                max_generations: 10,
                max_generations_maze: 20,
                max_new_tokens_per_turn: 16_384,
                total_response_tokens: None,
                temperature: 0.75,
                top_p: 0.9,
                max_pixels: super::resize::VILASR_EVAL_MAX_PIXELS,
            },
            Profile::Rl => ProfileLimits {
                max_images: 42,
                max_generations: 10,
                max_generations_maze: 20,
                max_new_tokens_per_turn: 1024,
                total_response_tokens: Some(13_312),
                temperature: 1.0,
                top_p: 1.0,
                max_pixels: super::resize::VILASR_RL_MAX_PIXELS,
            },
        }
    }
}

/// Options that depart from the reference; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorFixes {
    /// Refuse `index ≤ −1` groups instead of letting Python wrap them to the end of the image
    /// list (protocol §11.14).
    pub no_negative_wrap: bool,
}

/// A slot value `index − 1` as Python holds it (int or float).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Int(i128),
    Float(f64),
}

impl Slot {
    fn num(self) -> f64 {
        match self {
            Slot::Int(i) => i as f64,
            Slot::Float(f) => f,
        }
    }
    fn same_key(self, other: Slot) -> bool {
        match (self, other) {
            (Slot::Int(a), Slot::Int(b)) => a == b,
            _ => self.num() == other.num(),
        }
    }
}

/// Per-image annotation state: the reference's `bbox_list` / `movement_list` dicts.
#[derive(Clone, Debug, Default)]
pub struct AnnotationState {
    boxes: Vec<(Slot, Vec<PyValue>)>,
    lines: Vec<(Slot, Vec<PyValue>)>,
}

fn map_get<'a>(m: &'a [(Slot, Vec<PyValue>)], k: Slot) -> Option<&'a Vec<PyValue>> {
    m.iter().find(|(s, _)| s.same_key(k)).map(|(_, v)| v)
}

fn map_set(m: &mut Vec<(Slot, Vec<PyValue>)>, k: Slot, v: Vec<PyValue>) {
    if let Some(e) = m.iter_mut().find(|(s, _)| s.same_key(k)) {
        e.1 = v;
    } else {
        m.push((k, v));
    }
}

impl AnnotationState {
    /// State for `n` input images: every input slot starts with empty lists.
    pub fn for_inputs(n: usize) -> Self {
        let slots: Vec<(Slot, Vec<PyValue>)> = (0..n).map(|i| (Slot::Int(i as i128), Vec::new())).collect();
        AnnotationState { boxes: slots.clone(), lines: slots }
    }
    /// Boxes recorded for a 0-based image slot.
    pub fn boxes_of(&self, slot: usize) -> &[PyValue] {
        map_get(&self.boxes, Slot::Int(slot as i128)).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// Lines recorded for a 0-based image slot.
    pub fn lines_of(&self, slot: usize) -> &[PyValue] {
        map_get(&self.lines, Slot::Int(slot as i128)).map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// One observation produced by a step.
#[derive(Clone, Debug)]
pub struct NewObservation {
    /// 0-based slot of the new image.
    pub slot: usize,
    /// 0-based slot of the image it was drawn on.
    pub base: usize,
    pub image: RgbImage,
}

/// What executing one response did.
#[derive(Clone, Debug)]
pub enum StepOutcome {
    /// One new image per index group, in group order.
    Observations(Vec<NewObservation>),
    /// The sample stops with this reason; the response is kept.
    Terminal { reason: FinishReason, detail: String },
    /// The reference returns `None`: the sequence is left unchanged and the turn is generated
    /// again (its round still counts). `detail` says which exception the reference hit.
    NoResult { detail: String },
}

/// Everything one executed response produced, for display and for the trajectory.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub outcome: StepOutcome,
    pub actions: Vec<ActionRecord>,
    pub notes: Vec<String>,
}

enum PyErr {
    /// An exception the RL variant catches as `IndexError`.
    Index(String),
    /// Any other exception (→ `None`).
    Other(String),
}

fn idx_err(s: impl Into<String>) -> PyErr {
    PyErr::Index(s.into())
}
fn other(s: impl Into<String>) -> PyErr {
    PyErr::Other(s.into())
}

/// Python `dict[key]` on an action item (items reaching grouping may be any iterable element).
fn subscript_key<'a>(item: &'a PyValue, key: &str) -> Result<&'a PyValue, PyErr> {
    match item {
        PyValue::Dict(_) => item.get(key).ok_or_else(|| other(format!("KeyError: '{key}'"))),
        other_v => Err(other(format!("TypeError: {} indices must be integers, not str (item {})", type_name(other_v), other_v.py_repr()))),
    }
}

fn type_name(v: &PyValue) -> &'static str {
    v.type_name()
}

fn is_hashable(v: &PyValue) -> bool {
    match v {
        PyValue::List(_) | PyValue::Dict(_) | PyValue::Set(_) => false,
        PyValue::Tuple(items) => items.iter().all(is_hashable),
        _ => true,
    }
}

/// `index - 1` as Python evaluates it.
fn minus_one(v: &PyValue) -> Result<Slot, PyErr> {
    match v {
        PyValue::Int(i) => Ok(Slot::Int(*i as i128 - 1)),
        PyValue::Bool(b) => Ok(Slot::Int(*b as i128 - 1)),
        PyValue::BigInt(s) => Ok(Slot::Int(s.parse::<i128>().map(|x| x.saturating_sub(1)).unwrap_or(if s.starts_with('-') { i128::MIN } else { i128::MAX }))),
        PyValue::Float(f) => Ok(Slot::Float(f - 1.0)),
        other_v => Err(other(format!("TypeError: unsupported operand type(s) for -: '{}' and 'int'", type_name(other_v)))),
    }
}

/// `int(x)` for an element of a point list.
fn py_int(v: &PyValue) -> Result<i128, PyErr> {
    match v {
        PyValue::Int(i) => Ok(*i as i128),
        PyValue::Bool(b) => Ok(*b as i128),
        PyValue::BigInt(s) => s.parse::<i128>().map_err(|_| other("OverflowError: integer too large")),
        PyValue::Float(f) if f.is_nan() => Err(other("ValueError: cannot convert float NaN to integer")),
        PyValue::Float(f) if f.is_infinite() => Err(other("OverflowError: cannot convert float infinity to integer")),
        PyValue::Float(f) => Ok(f.trunc() as i128),
        PyValue::Str(s) => {
            // `int(str)`: Unicode whitespace stripped, an optional sign, then Unicode decimal
            // digits (`'１２'` is 12) with single underscores between them.
            let t = super::prompts::py_strip(s);
            let (neg, body) = match t.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, t.strip_prefix('+').unwrap_or(t)),
            };
            let ok = !body.is_empty()
                && !body.starts_with('_')
                && !body.ends_with('_')
                && !body.contains("__")
                && body.chars().all(|c| c == '_' || unicode_decimal(c).is_some());
            if !ok {
                return Err(other(format!("ValueError: invalid literal for int() with base 10: {}", v.py_repr())));
            }
            let digits: String = body.chars().filter_map(unicode_decimal).filter_map(|d| char::from_digit(d, 10)).collect();
            let n: i128 = digits.parse().map_err(|_| other("OverflowError: integer too large"))?;
            Ok(if neg { -n } else { n })
        }
        other_v => Err(other(format!("TypeError: int() argument must be a string or a real number, not '{}'", type_name(other_v)))),
    }
}

/// A number usable in `x / input_width * width` (int, bool or float).
fn py_number(v: &PyValue) -> Result<f64, PyErr> {
    match v {
        PyValue::Int(i) => Ok(*i as f64),
        PyValue::Bool(b) => Ok(*b as u8 as f64),
        PyValue::BigInt(s) => s.parse::<f64>().map_err(|_| other("OverflowError")),
        PyValue::Float(f) => Ok(*f),
        other_v => Err(other(format!("TypeError: unsupported operand type(s) for /: '{}' and 'int'", type_name(other_v)))),
    }
}

/// `int(float)` with Python's errors; then the C `(int)` cast Pillow applies (saturating here).
fn trunc_to_i32(x: f64) -> Result<i32, PyErr> {
    if x.is_nan() {
        return Err(other("ValueError: cannot convert float NaN to integer"));
    }
    if x.is_infinite() {
        return Err(other("OverflowError: cannot convert float infinity to integer"));
    }
    Ok(x.trunc().clamp(i32::MIN as f64, i32::MAX as f64) as i32)
}

/// Python `len()` of a value, or TypeError.
fn py_len(v: &PyValue) -> Result<usize, PyErr> {
    match v {
        PyValue::Str(s) => Ok(s.chars().count()),
        PyValue::Bytes(b) => Ok(b.len()),
        PyValue::Tuple(x) | PyValue::List(x) | PyValue::Set(x) => Ok(x.len()),
        PyValue::Dict(d) => Ok(d.len()),
        other_v => Err(other(format!("TypeError: object of type '{}' has no len()", type_name(other_v)))),
    }
}

/// Python `seq[i]` for non-negative `i` on the value types a coordinate list can be.
fn py_item(v: &PyValue, i: usize) -> Result<PyValue, PyErr> {
    match v {
        PyValue::Tuple(x) | PyValue::List(x) => x.get(i).cloned().ok_or_else(|| idx_err(format!("IndexError: {} index out of range", type_name(v)))),
        PyValue::Str(s) => s
            .chars()
            .nth(i)
            .map(|c| PyValue::Str(c.to_string()))
            .ok_or_else(|| idx_err("IndexError: string index out of range")),
        PyValue::Bytes(b) => b.get(i).map(|x| PyValue::Int(*x as i64)).ok_or_else(|| idx_err("IndexError: index out of range")),
        PyValue::Dict(d) => d
            .iter()
            .find(|(k, _)| k.py_eq(&PyValue::Int(i as i64)))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| other(format!("KeyError: {i}"))),
        other_v => Err(other(format!("TypeError: '{}' object is not subscriptable", type_name(other_v)))),
    }
}

/// Draw the merged boxes of one observation (`plot_bounding_boxes`).
fn plot_boxes(img: &mut RgbImage, boxes: &[PyValue], in_w: u32, in_h: u32) -> Result<(), PyErr> {
    let (w, h) = img.dimensions();
    for (i, b) in boxes.iter().enumerate() {
        let bbox = subscript_key(b, "bbox_2d")?;
        if py_len(bbox)? != 4 {
            continue;
        }
        let color = bbox_color(i);
        let conv = |k: usize, inp: u32, out: u32| -> Result<i32, PyErr> {
            let x = py_number(&py_item(bbox, k)?)?;
            trunc_to_i32(x / inp as f64 * out as f64)
        };
        let (mut x1, mut y1, mut x2, mut y2) = (conv(0, in_w, w)?, conv(1, in_h, h)?, conv(2, in_w, w)?, conv(3, in_h, h)?);
        if x1 > x2 {
            std::mem::swap(&mut x1, &mut x2);
        }
        if y1 > y2 {
            std::mem::swap(&mut y1, &mut y2);
        }
        pillow::draw_rectangle_outline(img, x1, y1, x2, y2, color, 4);
        if let Some(label) = b.get("label") {
            let text = match label {
                PyValue::Str(s) => s.clone(),
                PyValue::Bytes(bytes) => bytes.iter().map(|&c| c as char).collect(),
                other_v => return Err(other(format!("TypeError: label must be str, not {}", type_name(other_v)))),
            };
            pillow::draw_text(img, x1.saturating_add(8), y1.saturating_add(6), &text, color);
        }
    }
    Ok(())
}

/// Draw the merged lines of one observation (`plot_movement`).
fn plot_lines(img: &mut RgbImage, lines: &[PyValue], in_w: u32, in_h: u32) -> Result<(), PyErr> {
    let (w, h) = img.dimensions();
    for l in lines {
        let start = l.get("start_point_2d").filter(|v| !matches!(v, PyValue::None));
        let end = l.get("end_point_2d").filter(|v| !matches!(v, PyValue::None));
        let (Some(start), Some(end)) = (start, end) else { return Ok(()) };
        let px = |p: &PyValue, k: usize, inp: u32, out: u32| -> Result<f64, PyErr> { Ok(py_int(&py_item(p, k)?)? as f64 / inp as f64 * out as f64) };
        let (xs, ys) = (px(start, 0, in_w, w)?, px(start, 1, in_h, h)?);
        let (xe, ye) = (px(end, 0, in_w, w)?, px(end, 1, in_h, h)?);
        pillow::draw_line(img, xs, ys, xe, ye, LINE_COLOR, 4);
        for (p, color) in [(start, START_DOT_COLOR), (end, END_DOT_COLOR)] {
            let (x, y) = (px(p, 0, in_w, w)?, px(p, 1, in_h, h)?);
            pillow::draw_filled_ellipse(img, x - 4.0, y - 4.0, x + 4.0, y + 4.0, color);
        }
    }
    Ok(())
}

/// Merge one kind of item (`merge_bbox_list` / `merge_movement_list`); returns the base slot or −1.
fn merge_kind(state: &mut Vec<(Slot, Vec<PyValue>)>, new_items: &[PyValue], new_slot: Slot) -> Result<Option<Slot>, PyErr> {
    if new_items.is_empty() {
        return Ok(None);
    }
    // new_label_dict: first occurrence position, last value.
    let mut new_by_label: Vec<(PyValue, PyValue)> = Vec::new();
    for it in new_items {
        let label = subscript_key(it, "label")?.clone();
        if !is_hashable(&label) {
            return Err(other(format!("TypeError: unhashable type: '{}'", type_name(&label))));
        }
        if let Some(e) = new_by_label.iter_mut().find(|(k, _)| k.py_eq(&label)) {
            e.1 = it.clone();
        } else {
            new_by_label.push((label, it.clone()));
        }
    }
    // `[bb['index'] - 1 for bb in items][0]`: every item is evaluated, the first value is kept.
    let mut slots = Vec::with_capacity(new_items.len());
    for it in new_items {
        slots.push(minus_one(subscript_key(it, "index")?)?);
    }
    let base = slots[0];
    if map_get(state, base).is_none() {
        state.push((base, Vec::new()));
    }
    let mut merged = Vec::new();
    for e in map_get(state, base).cloned().unwrap_or_default() {
        let label = subscript_key(&e, "label")?;
        if let Some(pos) = new_by_label.iter().position(|(k, _)| k.py_eq(label)) {
            merged.push(new_by_label.remove(pos).1);
        } else {
            merged.push(e);
        }
    }
    merged.extend(new_by_label.into_iter().map(|(_, v)| v));
    map_set(state, new_slot, merged);
    Ok(Some(base))
}

/// Turn parsed items into display records.
pub fn action_records(parsed: &actions::ParsedActions) -> Vec<ActionRecord> {
    let num = |v: Option<&PyValue>| v.and_then(|x| x.as_f64());
    let pair = |v: Option<&PyValue>| -> Option<[f64; 2]> {
        match v? {
            PyValue::List(x) | PyValue::Tuple(x) if x.len() == 2 => Some([x[0].as_f64()?, x[1].as_f64()?]),
            _ => None,
        }
    };
    let quad = |v: Option<&PyValue>| -> Option<[f64; 4]> {
        match v? {
            PyValue::List(x) | PyValue::Tuple(x) if x.len() == 4 => Some([x[0].as_f64()?, x[1].as_f64()?, x[2].as_f64()?, x[3].as_f64()?]),
            _ => None,
        }
    };
    let label = |v: &PyValue| match v.get("label") {
        Some(PyValue::Str(s)) => Some(s.clone()),
        Some(other_v) => Some(other_v.py_str()),
        None => None,
    };
    let index = |v: &PyValue| match v.get("index") {
        Some(PyValue::Int(i)) => Some(*i),
        Some(PyValue::Bool(b)) => Some(*b as i64),
        Some(x) => num(Some(x)).filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64),
        None => None,
    };
    let mut out = Vec::new();
    for b in &parsed.boxes {
        out.push(ActionRecord {
            kind: ActionKind::Box,
            index: index(b),
            bbox_2d: quad(b.get("bbox_2d")),
            start_point_2d: None,
            end_point_2d: None,
            label: label(b),
            query: None,
            block: 0,
            raw: b.to_json(),
        });
    }
    for l in &parsed.lines {
        out.push(ActionRecord {
            kind: ActionKind::Line,
            index: index(l),
            bbox_2d: None,
            start_point_2d: pair(l.get("start_point_2d")),
            end_point_2d: pair(l.get("end_point_2d")),
            label: label(l),
            query: None,
            block: 0,
            raw: l.to_json(),
        });
    }
    out
}

/// Execute one unfinished response against the current images and annotation state
/// (`process_single_response`). `images` are the images so far (inputs, then observations).
pub fn execute_response(
    response: &str,
    images: &[RgbImage],
    state: &mut AnnotationState,
    profile: Profile,
    fixes: ExecutorFixes,
) -> StepReport {
    let max_images = profile.limits().max_images;
    let mut notes = Vec::new();
    let parsed = match actions::parse_actions(response, BlockMode::Executor) {
        Ok(p) => p,
        Err(e) => {
            return StepReport { outcome: StepOutcome::NoResult { detail: format!("parsing raised: {e}") }, actions: Vec::new(), notes };
        }
    };
    for r in &parsed.rejected_blocks {
        notes.push(format!("dropped ```json block: {r}"));
    }
    let records = action_records(&parsed);
    let report = |outcome, notes| StepReport { outcome, actions: records.clone(), notes };

    // Grouping by `index` (boxes first, then lines), preserving first appearance.
    struct Group {
        key: PyValue,
        boxes: Vec<PyValue>,
        lines: Vec<PyValue>,
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut gen_error: Option<String> = None;
    'grouping: for (items, is_box) in [(&parsed.boxes, true), (&parsed.lines, false)] {
        for it in items.iter() {
            let key = match subscript_key(it, "index") {
                Ok(k) => k.clone(),
                Err(PyErr::Other(e)) | Err(PyErr::Index(e)) => {
                    gen_error = Some(e);
                    break 'grouping;
                }
            };
            if !is_hashable(&key) {
                gen_error = Some(format!("TypeError: unhashable type: '{}'", type_name(&key)));
                break 'grouping;
            }
            let g = match groups.iter_mut().position(|g| g.key.py_eq(&key)) {
                Some(p) => &mut groups[p],
                None => {
                    groups.push(Group { key, boxes: Vec::new(), lines: Vec::new() });
                    groups.last_mut().unwrap()
                }
            };
            if is_box {
                g.boxes.push(it.clone());
            } else {
                g.lines.push(it.clone());
            }
        }
    }
    let terminal = |reason: FinishReason, detail: String, notes: Vec<String>| report(StepOutcome::Terminal { reason, detail }, notes);
    if groups.is_empty() {
        let detail = match &gen_error {
            Some(e) => format!("no action could be grouped ({e})"),
            None => "the response has no box or line items".to_string(),
        };
        return terminal(FinishReason::ToolError, detail, notes);
    }
    if images.len() > max_images {
        return terminal(FinishReason::TooManyImages, format!("{} images already (cap {max_images})", images.len()), notes);
    }
    if let Some(e) = gen_error {
        return terminal(FinishReason::ToolGenError, format!("grouping raised {e}"), notes);
    }

    let current = images.len();
    let mut out = Vec::new();
    for (cnt, g) in groups.iter().enumerate() {
        let new_slot = current + cnt;
        let ns = Slot::Int(new_slot as i128);
        let step = (|| -> Result<Option<Slot>, PyErr> {
            let b = merge_kind(&mut state.boxes, &g.boxes, ns)?;
            let l = merge_kind(&mut state.lines, &g.lines, ns)?;
            let idx1 = b.map(|s| s.num()).unwrap_or(-1.0);
            let idx2 = l.map(|s| s.num()).unwrap_or(-1.0);
            if idx1 >= 0.0 && idx2 == -1.0 {
                let src = b.unwrap();
                match (map_get(&state.lines, src).cloned(), profile) {
                    (Some(v), _) => map_set(&mut state.lines, ns, v),
                    (None, Profile::Rl) => map_set(&mut state.lines, ns, Vec::new()),
                    (None, Profile::Eval) => return Err(other(format!("KeyError: {}", src.num()))),
                }
            }
            if idx2 >= 0.0 && idx1 == -1.0 {
                let src = l.unwrap();
                match (map_get(&state.boxes, src).cloned(), profile) {
                    (Some(v), _) => map_set(&mut state.boxes, ns, v),
                    (None, Profile::Rl) => map_set(&mut state.boxes, ns, Vec::new()),
                    (None, Profile::Eval) => return Err(other(format!("KeyError: {}", src.num()))),
                }
            }
            if map_get(&state.boxes, ns).is_none() {
                map_set(&mut state.boxes, ns, Vec::new());
            }
            if map_get(&state.lines, ns).is_none() {
                map_set(&mut state.lines, ns, Vec::new());
            }
            // max([idx1, idx2]) keeping the Python value (int or float).
            Ok(match (b, l) {
                (Some(x), Some(y)) => Some(if y.num() > x.num() { y } else { x }),
                (Some(x), None) => Some(if x.num() >= -1.0 { x } else { Slot::Int(-1) }),
                (None, Some(y)) => Some(if y.num() >= -1.0 { y } else { Slot::Int(-1) }),
                (None, None) => None,
            })
        })();
        let base = match step {
            Ok(Some(s)) => s,
            Ok(None) => Slot::Int(-1),
            Err(PyErr::Other(e)) | Err(PyErr::Index(e)) => {
                return report(StepOutcome::NoResult { detail: format!("merging group {} raised {e}", g.key.py_repr()) }, notes);
            }
        };
        if base.num() == -1.0 {
            return terminal(FinishReason::ToolError, format!("image index {} gives base slot -1", g.key.py_repr()), notes);
        }
        // images[base]: Python list indexing.
        let base_slot = match base {
            Slot::Float(_) => {
                return report(StepOutcome::NoResult { detail: "TypeError: list indices must be integers or slices, not float".into() }, notes);
            }
            Slot::Int(i) => {
                let n = images.len() as i128;
                let wrapped = if i < 0 { i + n } else { i };
                if i < 0 && fixes.no_negative_wrap {
                    return terminal(FinishReason::ToolError, format!("negative image index {} refused (fix enabled)", g.key.py_repr()), notes);
                }
                if wrapped < 0 || wrapped >= n {
                    let detail = format!("IndexError: image index {} is outside the {} images", g.key.py_repr(), n);
                    return match profile {
                        Profile::Rl => terminal(FinishReason::IndexError, detail, notes),
                        Profile::Eval => report(StepOutcome::NoResult { detail }, notes),
                    };
                }
                wrapped as usize
            }
        };
        let mut img = images[base_slot].clone();
        let (in_w, in_h) = img.dimensions();
        let boxes = map_get(&state.boxes, ns).cloned().unwrap_or_default();
        let lines = map_get(&state.lines, ns).cloned().unwrap_or_default();
        let drawn = plot_boxes(&mut img, &boxes, in_w, in_h).and_then(|_| plot_lines(&mut img, &lines, in_w, in_h));
        match drawn {
            Ok(()) => out.push(NewObservation { slot: new_slot, base: base_slot, image: img }),
            Err(PyErr::Index(e)) if profile == Profile::Rl => return terminal(FinishReason::IndexError, format!("drawing raised {e}"), notes),
            Err(PyErr::Index(e)) | Err(PyErr::Other(e)) => {
                return report(StepOutcome::NoResult { detail: format!("drawing raised {e}") }, notes);
            }
        }
    }
    report(StepOutcome::Observations(out), notes)
}

/// Is a generation finished before execution (protocol §2.9): `length`, `rule`, or EOS with both
/// answer tags.
pub fn is_finished(finish_reason: &FinishReason, response: &str) -> bool {
    match finish_reason {
        FinishReason::Length | FinishReason::Rule => true,
        FinishReason::Stop => response.contains("<answer>") && response.contains("</answer>"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! One test per finish reason / outcome of `process_single_response`, and the merge-by-label
    //! rules (protocol §2.5–2.6, §2.9). The differential fixtures (`tests/executor_parity.rs`)
    //! cover the same paths against the reference itself.
    use super::*;

    fn grey(w: u32, h: u32) -> RgbImage {
        RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]))
    }

    fn imgs(n: usize) -> Vec<RgbImage> {
        (0..n).map(|_| grey(56, 56)).collect()
    }

    fn tool(items: &str) -> String {
        format!("<think> t </think> Action: Object Mapper\n```json\n[{items}]\n```")
    }

    fn run(resp: &str, images: &[RgbImage], state: &mut AnnotationState, profile: Profile) -> StepOutcome {
        execute_response(resp, images, state, profile, ExecutorFixes::default()).outcome
    }

    fn fresh(resp: &str, n: usize, profile: Profile) -> StepOutcome {
        run(resp, &imgs(n), &mut AnnotationState::for_inputs(n), profile)
    }

    fn reason(o: &StepOutcome) -> Option<FinishReason> {
        match o {
            StepOutcome::Terminal { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }

    fn is_none(o: &StepOutcome) -> bool {
        matches!(o, StepOutcome::NoResult { .. })
    }

    /// (new slot, base slot) of each observation.
    fn obs(o: &StepOutcome) -> Vec<(usize, usize)> {
        match o {
            StepOutcome::Observations(v) => v.iter().map(|x| (x.slot, x.base)).collect(),
            other => panic!("expected observations, got {other:?}"),
        }
    }

    fn labels(items: &[PyValue]) -> Vec<String> {
        items.iter().map(|i| i.get("label").unwrap().py_str()).collect()
    }

    fn first_coord(items: &[PyValue], key: &str) -> Vec<i64> {
        items
            .iter()
            .map(|i| match i.get(key) {
                Some(PyValue::List(v)) => match v[0] {
                    PyValue::Int(x) => x,
                    ref other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect()
    }

    const B1: &str = r#"{"index": 1, "bbox_2d": [2, 3, 30, 40], "label": "a"}"#;

    #[test]
    fn tool_error_without_items_and_for_index_zero() {
        for p in [Profile::Eval, Profile::Rl] {
            assert_eq!(reason(&fresh("<think> no tools </think> Action: Answer", 1, p)), Some(FinishReason::ToolError));
            // JSON `true` makes the only block fail: no items at all.
            let json_true = tool(r#"{"index": 1, "bbox_2d": [1, 2, 3, 4], "label": "a", "x": true}"#);
            assert_eq!(reason(&fresh(&json_true, 1, p)), Some(FinishReason::ToolError));
            let zero = tool(r#"{"index": 0, "bbox_2d": [2, 3, 30, 40], "label": "a"}"#);
            assert_eq!(reason(&fresh(&zero, 2, p)), Some(FinishReason::ToolError));
            let zero_line = tool(r#"{"index": 0, "start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}"#);
            assert_eq!(reason(&fresh(&zero_line, 2, p)), Some(FinishReason::ToolError));
            // A later group with index 0 ends the whole response, after earlier groups merged.
            let later = tool(&format!(r#"{B1}, {{"index": 0, "bbox_2d": [2, 3, 30, 40], "label": "b"}}"#));
            assert_eq!(reason(&fresh(&later, 1, p)), Some(FinishReason::ToolError));
        }
    }

    #[test]
    fn missing_index_is_tool_error_first_and_tool_gen_error_later() {
        let no_index = r#"{"bbox_2d": [2, 3, 30, 40], "label": "b"}"#;
        for p in [Profile::Eval, Profile::Rl] {
            // Grouping raises on the first item: nothing was grouped, so ToolGenError is
            // relabelled ToolError by the `len(allindex) == 0` check.
            assert_eq!(reason(&fresh(&tool(&format!("{no_index}, {B1}")), 1, p)), Some(FinishReason::ToolError));
            assert_eq!(reason(&fresh(&tool(&format!("{B1}, {no_index}")), 1, p)), Some(FinishReason::ToolGenError));
            // Lines are grouped after every box: a line without index after a box also counts.
            let line = r#"{"start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}"#;
            assert_eq!(reason(&fresh(&tool(&format!("{line}, {B1}")), 1, p)), Some(FinishReason::ToolGenError));
        }
    }

    #[test]
    fn too_many_images_only_past_the_cap() {
        let r = tool(B1);
        assert_eq!(reason(&fresh(&r, 46, Profile::Eval)), Some(FinishReason::TooManyImages));
        assert_eq!(obs(&fresh(&r, 45, Profile::Eval)), vec![(45, 0)]);
        assert_eq!(reason(&fresh(&r, 43, Profile::Rl)), Some(FinishReason::TooManyImages));
        assert_eq!(obs(&fresh(&r, 42, Profile::Rl)), vec![(42, 0)]);
        // No items is checked first; a grouping error only after the cap.
        assert_eq!(reason(&fresh("nothing", 46, Profile::Eval)), Some(FinishReason::ToolError));
        let gen_err = tool(&format!(r#"{B1}, {{"bbox_2d": [1, 2, 3, 4], "label": "b"}}"#));
        assert_eq!(reason(&fresh(&gen_err, 46, Profile::Eval)), Some(FinishReason::TooManyImages));
    }

    #[test]
    fn out_of_range_index_is_index_error_in_rl_and_none_in_eval() {
        for (items, what) in [
            (r#"{"index": 3, "bbox_2d": [2, 3, 30, 40], "label": "a"}"#, "box"),
            (r#"{"index": 3, "start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}"#, "line"),
        ] {
            let r = tool(items);
            assert_eq!(reason(&fresh(&r, 2, Profile::Rl)), Some(FinishReason::IndexError), "{what}");
            assert!(is_none(&fresh(&r, 2, Profile::Eval)), "{what}");
        }
        // A too-short point list raises IndexError while drawing.
        let short = tool(r#"{"index": 1, "start_point_2d": [5], "end_point_2d": [9, 9], "label": "l"}"#);
        assert_eq!(reason(&fresh(&short, 1, Profile::Rl)), Some(FinishReason::IndexError));
        assert!(is_none(&fresh(&short, 1, Profile::Eval)));
    }

    #[test]
    fn bad_coordinates_and_labels_return_none() {
        for p in [Profile::Eval, Profile::Rl] {
            for items in [
                r#"{"index": 1, "bbox_2d": ["abc", 3, 30, 40], "label": "a"}"#,
                r#"{"index": 1, "bbox_2d": [None, 3, 30, 40], "label": "a"}"#,
                r#"{"index": 1, "bbox_2d": ["12", 3, 30, 40], "label": "a"}"#,
                r#"{"index": 1, "start_point_2d": ["x", 2], "end_point_2d": [9, 9], "label": "l"}"#,
                r#"{"index": 1, "bbox_2d": [2, 3, 30, 40], "label": 5}"#,
                r#"{"index": 1, "bbox_2d": [2, 3, 30, 40], "label": None}"#,
                r#"{"index": 1, "bbox_2d": [2, 3, 30, 40], "label": ["unhashable"]}"#,
                r#"{"index": "1", "bbox_2d": [2, 3, 30, 40], "label": "a"}"#,
            ] {
                assert!(is_none(&fresh(&tool(items), 1, p)), "{p:?} {items}");
            }
            // Points are passed through int(): a numeric string is fine there, and a string
            // point is indexed character by character.
            let ok = tool(r#"{"index": 1, "start_point_2d": ["12", " 7 "], "end_point_2d": "34", "label": "l"}"#);
            assert_eq!(obs(&fresh(&ok, 1, p)), vec![(1, 0)]);
            // int() takes any Unicode decimal digits (full-width, Arabic-Indic), not '²'.
            let wide = tool(r#"{"index": 1, "start_point_2d": ["１２", "٣"], "end_point_2d": [9, 9], "label": "l"}"#);
            assert_eq!(obs(&fresh(&wide, 1, p)), vec![(1, 0)]);
            assert!(is_none(&fresh(&wide.replace("٣", "²"), 1, p)));
        }
    }

    #[test]
    fn negative_index_wraps_only_with_both_kinds() {
        let both = tool(r#"{"index": -1, "bbox_2d": [2, 3, 30, 40], "label": "a"}, {"index": -1, "start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}"#);
        for p in [Profile::Eval, Profile::Rl] {
            // index −1 → slot −2 → the second-to-last of three images.
            assert_eq!(obs(&fresh(&both, 3, p)), vec![(3, 1)]);
            let boxes_only = tool(r#"{"index": -1, "bbox_2d": [2, 3, 30, 40], "label": "a"}"#);
            assert_eq!(reason(&fresh(&boxes_only, 3, p)), Some(FinishReason::ToolError));
            let fixes = ExecutorFixes { no_negative_wrap: true };
            let out = execute_response(&both, &imgs(3), &mut AnnotationState::for_inputs(3), p, fixes).outcome;
            assert_eq!(reason(&out), Some(FinishReason::ToolError));
        }
        // Wrapping past the start is an IndexError.
        let far = both.replace("-1", "-5");
        assert_eq!(reason(&fresh(&far, 3, Profile::Rl)), Some(FinishReason::IndexError));
        assert!(is_none(&fresh(&far, 3, Profile::Eval)));
    }

    #[test]
    fn float_index() {
        for p in [Profile::Eval, Profile::Rl] {
            // 1.0 − 1 = 0.0: Python cannot index a list with a float → None.
            let f = tool(r#"{"index": 1.0, "bbox_2d": [2, 3, 30, 40], "label": "a"}"#);
            assert!(is_none(&fresh(&f, 1, p)));
            // 0.0 − 1 = −1.0 == −1 → ToolError.
            assert_eq!(reason(&fresh(&f.replace("1.0", "0.0"), 1, p)), Some(FinishReason::ToolError));
            // 1, 1.0 and True are one dict key: a single group, keyed (and drawn) by the int.
            let mixed = tool(&format!(r#"{B1}, {{"index": 1.0, "bbox_2d": [5, 5, 9, 9], "label": "b"}}, {{"index": True, "bbox_2d": [6, 6, 9, 9], "label": "c"}}"#));
            let mut st = AnnotationState::for_inputs(1);
            assert_eq!(obs(&run(&mixed, &imgs(1), &mut st, p)), vec![(1, 0)]);
            assert_eq!(labels(st.boxes_of(1)), ["a", "b", "c"]);
        }
    }

    #[test]
    fn merge_by_label_order() {
        for p in [Profile::Eval, Profile::Rl] {
            let mut st = AnnotationState::for_inputs(1);
            let mut images = imgs(1);
            let step = |resp: &str, images: &mut Vec<RgbImage>, st: &mut AnnotationState| {
                let out = execute_response(resp, images, st, p, ExecutorFixes::default()).outcome;
                let StepOutcome::Observations(v) = out else { panic!("{out:?}") };
                images.extend(v.into_iter().map(|o| o.image));
            };
            // Duplicate labels in one response: the last value, at the first one's position.
            step(
                &tool(r#"{"index": 1, "bbox_2d": [1, 1, 10, 10], "label": "a"}, {"index": 1, "bbox_2d": [2, 2, 10, 10], "label": "b"}, {"index": 1, "bbox_2d": [3, 3, 10, 10], "label": "a"}"#),
                &mut images,
                &mut st,
            );
            assert_eq!(labels(st.boxes_of(1)), ["a", "b"]);
            assert_eq!(first_coord(st.boxes_of(1), "bbox_2d"), [3, 2]);
            assert!(st.boxes_of(0).is_empty(), "the base image's state is not touched");
            // Re-labelled boxes on the observation keep their position; new labels are appended.
            step(
                &tool(r#"{"index": 2, "bbox_2d": [7, 7, 20, 20], "label": "c"}, {"index": 2, "bbox_2d": [8, 8, 20, 20], "label": "a"}"#),
                &mut images,
                &mut st,
            );
            assert_eq!(labels(st.boxes_of(2)), ["a", "b", "c"]);
            assert_eq!(first_coord(st.boxes_of(2), "bbox_2d"), [8, 2, 7]);
            // Labels are case-sensitive.
            step(&tool(r#"{"index": 3, "bbox_2d": [9, 9, 20, 20], "label": "A"}"#), &mut images, &mut st);
            assert_eq!(labels(st.boxes_of(3)), ["a", "b", "c", "A"]);
            // Lines only: the boxes of the base are carried over.
            step(
                &tool(r#"{"index": 4, "start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}, {"index": 4, "start_point_2d": [3, 4], "end_point_2d": [9, 9], "label": "m"}"#),
                &mut images,
                &mut st,
            );
            assert_eq!(labels(st.boxes_of(4)), ["a", "b", "c", "A"]);
            assert_eq!(labels(st.lines_of(4)), ["l", "m"]);
            // Boxes only: the lines of the base are carried over.
            step(&tool(r#"{"index": 5, "bbox_2d": [4, 4, 20, 20], "label": "b"}"#), &mut images, &mut st);
            assert_eq!(labels(st.lines_of(5)), ["l", "m"]);
            assert_eq!(first_coord(st.boxes_of(5), "bbox_2d"), [8, 4, 7, 9]);
            // Both kinds: each merges with its own base list.
            step(
                &tool(r#"{"index": 6, "bbox_2d": [5, 5, 20, 20], "label": "z"}, {"index": 6, "start_point_2d": [5, 6], "end_point_2d": [9, 9], "label": "l"}"#),
                &mut images,
                &mut st,
            );
            assert_eq!(labels(st.boxes_of(6)), ["a", "b", "c", "A", "z"]);
            assert_eq!(first_coord(st.lines_of(6), "start_point_2d"), [5, 3]);
            assert_eq!(images.len(), 7);
        }
    }

    #[test]
    fn several_indices_make_one_observation_each_in_first_appearance_order() {
        let r = tool(r#"{"index": 2, "start_point_2d": [1, 2], "end_point_2d": [9, 9], "label": "l"}, {"index": 1, "bbox_2d": [2, 3, 30, 40], "label": "a"}, {"index": 2, "bbox_2d": [2, 3, 30, 40], "label": "b"}"#);
        // Boxes are grouped first: index 1 (first box), then index 2.
        assert_eq!(obs(&fresh(&r, 2, Profile::Eval)), vec![(2, 0), (3, 1)]);
    }
}
