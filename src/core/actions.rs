//! ViLaSR action extraction and ViLaVT tool-call parsing, reproducing the reference Python
//! exactly (protocol.md §2.3–2.5, §3.1, §3.3, §7.3 step 1).
//!
//! * [`extract_json_blocks`] / [`parse_actions`] — `parse_json` + `parse_bbox_and_movement` of
//!   `verl/utils/edit_image_video.py` (the executor, [`BlockMode::Executor`]); blocks are read with
//!   a faithful `ast.literal_eval` ([`super::pyliteral`]), failed blocks are dropped, parsed values
//!   are iterated with Python semantics and every element is classified with Python `in`.
//! * [`reward_format_parse`] / [`reflection_flag`] — the RL reward's own variant of the same parse
//!   and its reflection check (`verl/utils/reward_score/gcot.py` in ViLaSR).
//! * [`parse_vilavt_tool`] — `parse_output` of ViLaVT's `verl/utils/vilavt_utils.py` (the RL
//!   rollout), with Python `json.loads` semantics (NaN/Infinity, duplicate keys: last wins).
//! * [`vilavt_tool_format_ok`] — the per-assistant-message rule of ViLaVT's `cal_format_reward`.
//!
//! Where the reference raises, these functions return `Err` with what was wrong and where
//! (block number, fence line, line/column inside the block); the caller decides what a raise
//! means (executor: "the step returned nothing"; reward: a worker crash).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pyliteral::{json_loads, literal_eval, py_strip, CompareOp, LiteralError, LiteralErrorKind, PyKey, PyOpError, PyValue};

// ---------------------------------------------------------------------------------------------
// Lines and fenced blocks
// ---------------------------------------------------------------------------------------------

/// Python `str.splitlines()`: breaks on `\n`, `\r\n`, `\r`, `\v`, `\f`, `\x1c`, `\x1d`, `\x1e`,
/// `\x85`, `\u2028`, `\u2029`; no trailing empty line; `""` → `[]`.
pub fn split_python_lines(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    if only_lf_breaks(b) {
        // Common case: `\n` is the only break (and no C2/E2 lead byte at all): split with memchr.
        let mut out = Vec::with_capacity(b.len() / 32 + 1);
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', b) {
            out.push(&s[start..i]);
            start = i + 1;
        }
        if start < s.len() {
            out.push(&s[start..]);
        }
        return out;
    }
    // Byte scan: every break is either an ASCII control byte or one of the UTF-8 sequences
    // C2 85 (U+0085), E2 80 A8 (U+2028), E2 80 A9 (U+2029); those lead bytes never occur
    // inside another character, so matching them on bytes is exact.
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // Skip bytes that cannot start a break (almost all of them) with one table lookup each.
        if !BREAK_CANDIDATE[b[i] as usize] {
            i += 1;
            continue;
        }
        let (brk, len) = match b[i] {
            b'\n' | b'\x0b' | b'\x0c' | b'\x1c' | b'\x1d' | b'\x1e' => (true, 1),
            b'\r' => (true, if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 }),
            0xC2 if b.get(i + 1) == Some(&0x85) => (true, 2),
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => (true, 3),
            _ => (false, 1),
        };
        if brk {
            out.push(&s[start..i]);
            start = i + len;
        }
        i += len;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Whether `b` holds no break candidate other than `\n` (see [`BREAK_CANDIDATE`]). Branch-free
/// over fixed 64-byte chunks so that it vectorises (a per-byte table walk costs ~10× more).
fn only_lf_breaks(b: &[u8]) -> bool {
    #[inline(always)]
    fn odd(c: u8) -> u8 {
        u8::from(c.wrapping_sub(0x0b) < 3) | u8::from(c.wrapping_sub(0x1c) < 3) | u8::from(c == 0xC2) | u8::from(c == 0xE2)
    }
    let mut chunks = b.chunks_exact(64);
    for chunk in &mut chunks {
        let chunk: &[u8; 64] = chunk.try_into().expect("64-byte chunk");
        if chunk.iter().fold(0u8, |acc, &c| acc | odd(c)) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&c| odd(c) == 0)
}

/// Bytes that may start a `str.splitlines()` break: `\n \x0b \x0c \r \x1c \x1d \x1e` and the
/// UTF-8 lead bytes of U+0085 (`C2`) and U+2028/U+2029 (`E2`).
static BREAK_CANDIDATE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let bytes = [b'\n', 0x0b, 0x0c, b'\r', 0x1c, 0x1d, 0x1e, 0xC2, 0xE2];
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

/// How an unterminated block (no closing ```` ``` ```` after the fence) ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockMode {
    /// Executor (`edit_image_video.parse_json`): text before the first `</think>`, stripped.
    Executor,
    /// RL reward (`gcot.parse_json`): everything to the end of the text, not stripped.
    Reward,
}

/// One candidate block: the text after a line whose stripped content is exactly ```` ```json ````.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonBlock {
    /// What the reference hands to `ast.literal_eval`. Line breaks are normalised to `\n`
    /// (the reference re-joins `splitlines()` output), so `\r`, `\v`, `\f`, `\u2028`… inside the
    /// block, even inside string literals, have become `\n`.
    pub text: String,
    /// 0-based index (in `splitlines()`) of the ```` ```json ```` line.
    pub fence_line: usize,
    /// Whether a ```` ``` ```` followed the fence line.
    pub terminated: bool,
}

/// First occurrence of `needle` in `hay` at or after byte `start` (a char boundary), by SIMD
/// `memmem` (the byte offset of a UTF-8 needle in UTF-8 text is always a char boundary).
fn find_from(hay: &str, needle: &str, start: usize) -> Option<usize> {
    memchr::memmem::find(&hay.as_bytes()[start..], needle.as_bytes()).map(|p| p + start)
}

/// `parse_json` of the reference: for every line whose `strip()` is ```` ```json ````, the rest
/// of the text (lines re-joined with `\n`) up to the first ```` ``` ```` — or, unterminated, up
/// to the first `</think>` and stripped ([`BlockMode::Executor`]) / to the end (`Reward`).
/// A ```` ```json ```` line inside another block starts its own block as well.
pub fn extract_json_blocks(response: &str, mode: BlockMode) -> Vec<JsonBlock> {
    // A line whose strip() is ```json contains that text, so without it there is no block.
    if !response.contains("```json") {
        return Vec::new();
    }
    let lines = split_python_lines(response);
    // `"\n".join(lines)` and where each line starts in it. When `\n` is the only break, the
    // joined text is `response` itself minus one trailing `\n` (which splitlines drops), and the
    // lines are slices of it at their own offsets: no copy needed.
    let (joined, line_start): (std::borrow::Cow<'_, str>, Vec<usize>) = if only_lf_breaks(response.as_bytes()) {
        let base = response.as_ptr() as usize;
        let starts = lines.iter().map(|l| l.as_ptr() as usize - base).collect();
        (std::borrow::Cow::Borrowed(response.strip_suffix('\n').unwrap_or(response)), starts)
    } else {
        let mut joined = String::with_capacity(response.len());
        let mut line_start = Vec::with_capacity(lines.len() + 1);
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                joined.push('\n');
            }
            line_start.push(joined.len());
            joined.push_str(l);
        }
        (std::borrow::Cow::Owned(joined), line_start)
    };
    let joined: &str = &joined;
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        // Cheap pre-check: a fence line contains a backtick.
        if memchr::memchr(b'`', l.as_bytes()).is_none() || py_strip(l) != "```json" {
            continue;
        }
        // "\n".join(lines[i+1:])
        let start = if i + 1 < lines.len() { line_start[i + 1] } else { joined.len() };
        match find_from(joined, "```", start) {
            Some(p) => out.push(JsonBlock { text: joined[start..p].to_string(), fence_line: i, terminated: true }),
            None => {
                let text = match mode {
                    BlockMode::Reward => joined[start..].to_string(),
                    BlockMode::Executor => {
                        let end = find_from(joined, "</think>", start).unwrap_or(joined.len());
                        py_strip(&joined[start..end]).to_string()
                    }
                };
                out.push(JsonBlock { text, fence_line: i, terminated: false });
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Executor parse (parse_bbox_and_movement)
// ---------------------------------------------------------------------------------------------

/// A block that `safe_eval` swallowed (`SyntaxError`/`ValueError`), so the reference dropped it.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockFailure {
    /// 0-based index among all extracted blocks.
    pub block: usize,
    /// 0-based line of the ```` ```json ```` fence in the response.
    pub fence_line: usize,
    /// Line/column are relative to the block text (line 1 = the line after the fence).
    pub error: LiteralError,
}

impl fmt::Display for BlockFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block {} (```json on response line {}): {} at block line {}, column {} (response line {}): {}",
            self.block + 1,
            self.fence_line + 1,
            self.error.kind.python_exception(),
            self.error.line,
            self.error.column,
            self.fence_line + 1 + self.error.line,
            self.error.message
        )
    }
}

/// What `parse_bbox_and_movement` produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedActions {
    /// Number of ```` ```json ```` blocks found.
    pub blocks: usize,
    /// Elements with `"bbox_2d" in el and "label" in el`, in order (usually dicts, but a string
    /// containing both words or a list holding both strings qualifies too).
    pub boxes: Vec<PyValue>,
    /// Elements (not boxes) with `start_point_2d`, `end_point_2d` and `label` in them.
    pub lines: Vec<PyValue>,
    /// Blocks dropped because `literal_eval` raised `SyntaxError`/`ValueError`.
    pub rejected_blocks: Vec<BlockFailure>,
    /// Blocks whose value was `None` (the `is not None` filter drops them; the reward counts
    /// them as failed blocks).
    pub none_blocks: Vec<usize>,
    /// Elements that are neither boxes nor lines: (block index, element).
    pub ignored_elements: Vec<(usize, PyValue)>,
}

/// Why the reference raises while extracting actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionErrorKind {
    /// `ast.literal_eval` raised something `safe_eval` does not catch
    /// (`TypeError`, `OverflowError`, `RecursionError`, `MemoryError`).
    LiteralEval(LiteralErrorKind),
    /// `for item in value`: the block's value is not iterable (`5`, `True`, `1.5`, `...`).
    NotIterable,
    /// `"bbox_2d" in item`: the element does not support `in` (`[1, 2]` → `1`, `None`, bytes).
    Membership,
}

/// The reference raised: the executor step returns nothing / the reward worker crashes.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionError {
    pub kind: ActionErrorKind,
    /// 0-based block index.
    pub block: usize,
    /// 0-based line of the block's ```` ```json ```` fence in the response.
    pub fence_line: usize,
    /// 0-based index of the offending element inside the block's value, if any.
    pub element: Option<usize>,
    /// Python exception class, e.g. `TypeError`.
    pub python_exception: String,
    pub message: String,
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in block {} (```json on response line {})", self.python_exception, self.block + 1, self.fence_line + 1)?;
        if let Some(e) = self.element {
            write!(f, ", element {}", e + 1)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ActionError {}

/// How an element is classified by the reference's `in` tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElementKind {
    Box,
    Line,
    Neither,
}

/// `"bbox_2d" in el and "label" in el` → box, elif `start_point_2d`, `end_point_2d`, `label`
/// all `in el` → line, else neither (Python short-circuit order; `in` may raise).
pub fn classify_element(el: &PyValue) -> Result<ElementKind, PyOpError> {
    let has = |k: &str| match el {
        // `str in dict` compares keys by text only; skip building the needle and the keys.
        PyValue::Dict(items) => Ok(items.iter().any(|(key, _)| matches!(key, PyValue::Str(s) if s == k))),
        _ => el.py_contains(&PyValue::Str(k.to_string())),
    };
    if has("bbox_2d")? && has("label")? {
        return Ok(ElementKind::Box);
    }
    if has("start_point_2d")? && has("end_point_2d")? && has("label")? {
        return Ok(ElementKind::Line);
    }
    Ok(ElementKind::Neither)
}

fn describe_value(v: &PyValue) -> String {
    let r = v.py_repr();
    if r.chars().count() > 80 {
        format!("{}…", r.chars().take(80).collect::<String>())
    } else {
        r
    }
}

/// Evaluate every block like `[safe_eval(item) for item in parsed_list]`: `Ok(None)` for a
/// swallowed failure, `Err` for the first exception `safe_eval` lets through.
fn eval_blocks(blocks: &[JsonBlock]) -> Result<Vec<Result<PyValue, LiteralError>>, ActionError> {
    let mut out = Vec::with_capacity(blocks.len());
    for (bi, b) in blocks.iter().enumerate() {
        match literal_eval(&b.text) {
            Ok(v) => out.push(Ok(v)),
            Err(e) if e.kind.caught_by_safe_eval() => out.push(Err(e)),
            Err(e) => {
                return Err(ActionError {
                    kind: ActionErrorKind::LiteralEval(e.kind),
                    block: bi,
                    fence_line: b.fence_line,
                    element: None,
                    python_exception: e.kind.python_exception().to_string(),
                    message: format!(
                        "ast.literal_eval raised at block line {}, column {} (response line {}): {}",
                        e.line,
                        e.column,
                        b.fence_line + 1 + e.line,
                        e.message
                    ),
                })
            }
        }
    }
    Ok(out)
}

/// `list(iter(value))`, consuming `value` (lists, tuples and sets hand over their items without
/// the copy [`PyValue::py_iter`] makes).
fn iterate_block(value: PyValue, bi: usize, block: &JsonBlock) -> Result<Vec<PyValue>, ActionError> {
    let value = match value {
        PyValue::List(items) | PyValue::Tuple(items) | PyValue::Set(items) => return Ok(items),
        other => other,
    };
    value.py_iter().map_err(|e| ActionError {
        kind: ActionErrorKind::NotIterable,
        block: bi,
        fence_line: block.fence_line,
        element: None,
        python_exception: e.exc.name().to_string(),
        message: format!("iterating the block's value {} raised: {}", describe_value(&value), e.message),
    })
}

fn classify_or_raise(el: &PyValue, bi: usize, ei: usize, block: &JsonBlock) -> Result<ElementKind, ActionError> {
    classify_element(el).map_err(|e| ActionError {
        kind: ActionErrorKind::Membership,
        block: bi,
        fence_line: block.fence_line,
        element: Some(ei),
        python_exception: e.exc.name().to_string(),
        message: format!("`\"bbox_2d\" in item` on {} raised: {}", describe_value(el), e.message),
    })
}

/// `parse_bbox_and_movement` (executor, `edit_image_video.py`): evaluate every block, drop the
/// failed ones and those that are `None`, iterate each value (a dict yields its keys, a string
/// its characters) and classify every element.
pub fn parse_actions(response: &str, mode: BlockMode) -> Result<ParsedActions, ActionError> {
    let blocks = extract_json_blocks(response, mode);
    let values = eval_blocks(&blocks)?;
    let mut out = ParsedActions { blocks: blocks.len(), ..Default::default() };
    for (bi, v) in values.into_iter().enumerate() {
        let value = match v {
            Ok(PyValue::None) => {
                out.none_blocks.push(bi);
                continue;
            }
            Ok(v) => v,
            Err(error) => {
                out.rejected_blocks.push(BlockFailure { block: bi, fence_line: blocks[bi].fence_line, error });
                continue;
            }
        };
        for (ei, el) in iterate_block(value, bi, &blocks[bi])?.into_iter().enumerate() {
            match classify_or_raise(&el, bi, ei, &blocks[bi])? {
                ElementKind::Box => out.boxes.push(el),
                ElementKind::Line => out.lines.push(el),
                ElementKind::Neither => out.ignored_elements.push((bi, el)),
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// RL reward variant (ViLaSR gcot.py)
// ---------------------------------------------------------------------------------------------

/// Result of the reward's `parse_bbox_and_movement` on the concatenated assistant turns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FormatParse {
    /// `True` iff no block failed (or was `None`) and every element is a box or a line.
    pub ok: bool,
    /// The first reason for `ok == false`.
    pub reason: Option<String>,
    pub boxes: Vec<PyValue>,
    pub lines: Vec<PyValue>,
    /// Blocks that failed `literal_eval` (`SyntaxError`/`ValueError`).
    pub rejected_blocks: Vec<BlockFailure>,
    /// Blocks whose value is `None` (counted as failures by the reward).
    pub none_blocks: Vec<usize>,
    /// Elements that are neither a box nor a line: (block index, element).
    pub non_action_elements: Vec<(usize, PyValue)>,
}

/// The reward's parse (`gcot.parse_bbox_and_movement` + the check in `format_reward`):
/// unterminated blocks run to the end of the text; every block must evaluate to a non-`None`
/// value and every element must be a box or a line (`index` is not required). `Err` where the
/// reference raises (uncaught `literal_eval` exceptions, a non-iterable value such as `5`, or
/// `in` on an element such as the ints of `[1, 2]`) — all blocks are still evaluated first and
/// iterated in order, so a raise in a later block wins over an earlier failure.
pub fn reward_format_parse(concatenated: &str) -> Result<FormatParse, ActionError> {
    let blocks = extract_json_blocks(concatenated, BlockMode::Reward);
    let values = eval_blocks(&blocks)?;
    let mut out = FormatParse::default();
    let mut reason: Option<String> = None;
    for (bi, v) in values.into_iter().enumerate() {
        let b = &blocks[bi];
        let value = match v {
            Ok(PyValue::None) => {
                out.none_blocks.push(bi);
                reason.get_or_insert_with(|| format!("```json block {} (response line {}) evaluates to None", bi + 1, b.fence_line + 1));
                continue;
            }
            Ok(v) => v,
            Err(error) => {
                let f = BlockFailure { block: bi, fence_line: b.fence_line, error };
                reason.get_or_insert_with(|| format!("```json {f}"));
                out.rejected_blocks.push(f);
                continue;
            }
        };
        for (ei, el) in iterate_block(value, bi, b)?.into_iter().enumerate() {
            match classify_or_raise(&el, bi, ei, b)? {
                ElementKind::Box => out.boxes.push(el),
                ElementKind::Line => out.lines.push(el),
                ElementKind::Neither => {
                    reason.get_or_insert_with(|| {
                        format!(
                            "element {} of ```json block {} (response line {}) is neither a box (bbox_2d + label) nor a line (start_point_2d + end_point_2d + label): {}",
                            ei + 1,
                            bi + 1,
                            b.fence_line + 1,
                            describe_value(&el)
                        )
                    });
                    out.non_action_elements.push((bi, el));
                }
            }
        }
    }
    out.ok = reason.is_none();
    out.reason = reason;
    Ok(out)
}

/// `x[key]` for a box element with a str key, as the reflection loop does it.
fn subscript_str<'a>(v: &'a PyValue, key: &str) -> Result<&'a PyValue, PyOpError> {
    match v {
        PyValue::Dict(_) => v.get(key).ok_or_else(|| PyOpError { exc: super::pyliteral::PyExc::TypeError, message: format!("KeyError: '{key}'") }),
        other => Err(PyOpError {
            exc: super::pyliteral::PyExc::TypeError,
            message: format!("'{}' object is not subscriptable with a str", other.type_name()),
        }),
    }
}

/// The reward's reflection check: for each box, `tuple(map(float, box['bbox_2d']))` and
/// `box['label']`; true when some label occurs with two different tuples. Boxes whose conversion
/// raises `TypeError`/`ValueError` are skipped (non-dict boxes, non-iterable or non-numeric
/// `bbox_2d` such as `None`/`[1, None]`/`"abc"`, unhashable labels); note `float()` accepts
/// numeric strings (`"12"`, `" 1e3 "`, `"nan"` — NaN never equals itself, so a NaN box always
/// counts as changed) and `map(float, "12")` iterates characters. `Err(OverflowError)` when a
/// coordinate is an int too large for a float (the reference does not catch that).
pub fn reflection_flag(boxes: &[PyValue]) -> Result<bool, PyOpError> {
    let mut seen: Vec<(PyKey, Vec<Vec<f64>>)> = Vec::new();
    let mut changed = false;
    'boxes: for b in boxes {
        let Ok(raw) = subscript_str(b, "bbox_2d") else { continue };
        let Ok(items) = raw.py_iter() else { continue };
        let mut coords = Vec::with_capacity(items.len());
        for it in &items {
            match it.py_float() {
                Ok(x) => coords.push(x),
                Err(e) if e.exc == super::pyliteral::PyExc::OverflowError => return Err(e),
                Err(_) => continue 'boxes,
            }
        }
        let Ok(label) = subscript_str(b, "label") else { continue };
        let Ok(key) = label.py_key() else { continue };
        let same = |a: &Vec<f64>| a.len() == coords.len() && a.iter().zip(&coords).all(|(x, y)| x == y);
        match seen.iter_mut().find(|(k, _)| *k == key) {
            None => seen.push((key, vec![coords])),
            Some((_, set)) => {
                if !set.iter().any(same) {
                    changed = true;
                    set.push(coords);
                }
            }
        }
    }
    Ok(changed)
}

// ---------------------------------------------------------------------------------------------
// Typed views
// ---------------------------------------------------------------------------------------------

fn quad(v: &PyValue) -> Option<[f64; 4]> {
    match v {
        PyValue::List(x) | PyValue::Tuple(x) if x.len() == 4 => Some([x[0].as_f64()?, x[1].as_f64()?, x[2].as_f64()?, x[3].as_f64()?]),
        _ => None,
    }
}

fn pair(v: &PyValue) -> Option<[f64; 2]> {
    match v {
        PyValue::List(x) | PyValue::Tuple(x) if x.len() == 2 => Some([x[0].as_f64()?, x[1].as_f64()?]),
        _ => None,
    }
}

fn json_obj(fields: &[(&str, Option<&PyValue>)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_string(), v.to_json());
        }
    }
    serde_json::Value::Object(m)
}

/// Serialize the present fields as a JSON object, in the given order.
fn serialize_fields<S: Serializer>(s: S, fields: &[(&str, Option<&PyValue>)]) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(fields.iter().filter(|(_, v)| v.is_some()).count()))?;
    for (k, v) in fields {
        if let Some(v) = v {
            m.serialize_entry(k, &v.to_json())?;
        }
    }
    m.end()
}

fn field(obj: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<PyValue> {
    obj.get(k).map(PyValue::from_json)
}

/// A box action for display and drawing: `{"index": 1, "bbox_2d": [x1, y1, x2, y2], "label": ".."}`.
/// Missing keys become `None` (`index` stays absent). The executor keeps using [`PyValue`].
#[derive(Clone, Debug, PartialEq)]
pub struct BoxAction {
    pub index: Option<PyValue>,
    pub bbox_2d: PyValue,
    pub label: PyValue,
}

impl BoxAction {
    pub fn from_value(v: &PyValue) -> Self {
        BoxAction {
            index: v.get("index").cloned(),
            bbox_2d: v.get("bbox_2d").cloned().unwrap_or(PyValue::None),
            label: v.get("label").cloned().unwrap_or(PyValue::None),
        }
    }
    /// `[x1, y1, x2, y2]` when `bbox_2d` is a list/tuple of four real numbers.
    pub fn bbox_f64(&self) -> Option<[f64; 4]> {
        quad(&self.bbox_2d)
    }
    pub fn label_str(&self) -> Option<&str> {
        match &self.label {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        json_obj(&[("index", self.index.as_ref()), ("bbox_2d", Some(&self.bbox_2d)), ("label", Some(&self.label))])
    }
}

impl Serialize for BoxAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fields(s, &[("index", self.index.as_ref()), ("bbox_2d", Some(&self.bbox_2d)), ("label", Some(&self.label))])
    }
}

impl<'de> Deserialize<'de> for BoxAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let obj = v.as_object().ok_or_else(|| serde::de::Error::custom("a box action must be a JSON object"))?;
        Ok(BoxAction {
            index: field(obj, "index"),
            bbox_2d: field(obj, "bbox_2d").unwrap_or(PyValue::None),
            label: field(obj, "label").unwrap_or(PyValue::None),
        })
    }
}

/// A line action: `{"index": 1, "start_point_2d": [x, y], "end_point_2d": [x, y], "label": ".."}`.
#[derive(Clone, Debug, PartialEq)]
pub struct LineAction {
    pub index: Option<PyValue>,
    pub start_point_2d: PyValue,
    pub end_point_2d: PyValue,
    pub label: PyValue,
}

impl LineAction {
    pub fn from_value(v: &PyValue) -> Self {
        LineAction {
            index: v.get("index").cloned(),
            start_point_2d: v.get("start_point_2d").cloned().unwrap_or(PyValue::None),
            end_point_2d: v.get("end_point_2d").cloned().unwrap_or(PyValue::None),
            label: v.get("label").cloned().unwrap_or(PyValue::None),
        }
    }
    pub fn start_f64(&self) -> Option<[f64; 2]> {
        pair(&self.start_point_2d)
    }
    pub fn end_f64(&self) -> Option<[f64; 2]> {
        pair(&self.end_point_2d)
    }
    pub fn label_str(&self) -> Option<&str> {
        match &self.label {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn to_json(&self) -> serde_json::Value {
        json_obj(&[
            ("index", self.index.as_ref()),
            ("start_point_2d", Some(&self.start_point_2d)),
            ("end_point_2d", Some(&self.end_point_2d)),
            ("label", Some(&self.label)),
        ])
    }
}

impl Serialize for LineAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fields(
            s,
            &[
                ("index", self.index.as_ref()),
                ("start_point_2d", Some(&self.start_point_2d)),
                ("end_point_2d", Some(&self.end_point_2d)),
                ("label", Some(&self.label)),
            ],
        )
    }
}

impl<'de> Deserialize<'de> for LineAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let obj = v.as_object().ok_or_else(|| serde::de::Error::custom("a line action must be a JSON object"))?;
        Ok(LineAction {
            index: field(obj, "index"),
            start_point_2d: field(obj, "start_point_2d").unwrap_or(PyValue::None),
            end_point_2d: field(obj, "end_point_2d").unwrap_or(PyValue::None),
            label: field(obj, "label").unwrap_or(PyValue::None),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ViLaVT
// ---------------------------------------------------------------------------------------------

/// Which tag the rollout's `parse_output` read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VilavtSource {
    Tool,
    Answer,
}

/// Outcome of the ViLaVT rollout's `parse_output` (`verl/utils/vilavt_utils.py`).
#[derive(Clone, Debug, PartialEq)]
pub enum VilavtParse {
    /// It returned a value. From `<tool>` any JSON value (not necessarily a dict); from
    /// `<answer>` a JSON value of any type, or a Python-literal dict.
    Parsed { source: VilavtSource, value: PyValue },
    /// It returned `None` (the zoom-in then fails: `tool_args must be a dictionary`).
    NoneResult { reason: String },
    /// It raised (only possible in the `<tool>` branch: `json.loads` `RecursionError` past
    /// [`super::pyliteral::JSON_DEPTH_LIMIT`] nesting, or `ValueError` for an integer with more
    /// than 4300 digits). The rollout's worker catches it and returns `None`, so the sample is
    /// simply generated again.
    Raised { exception: String, message: String },
}

/// `re.search(r'<open>(.*?)<close>', text, re.DOTALL)`: the text between the first `open` and the
/// first `close` after it.
fn tag_inner<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = memchr::memmem::find(text.as_bytes(), open.as_bytes())? + open.len();
    let j = memchr::memmem::find(&text.as_bytes()[i..], close.as_bytes())?;
    Some(&text[i..i + j])
}

/// The ViLaVT RL rollout's `parse_output` (protocol §7.3 step 1): if the text contains `<tool>`,
/// the first `<tool>(.*?)</tool>` (dot-all), stripped, through `json.loads` (`JSONDecodeError` →
/// `None`); otherwise `<answer>(.*?)</answer>` through `json.loads`, then `ast.literal_eval`
/// requiring a dict (any failure → `None`); otherwise `None`.
pub fn parse_vilavt_tool(response: &str) -> VilavtParse {
    if response.contains("<tool>") {
        let Some(inner) = tag_inner(response, "<tool>", "</tool>") else {
            return VilavtParse::NoneResult { reason: "<tool> has no closing </tool>".into() };
        };
        return match json_loads(py_strip(inner)) {
            Ok(value) => VilavtParse::Parsed { source: VilavtSource::Tool, value },
            Err(e) if e.kind == super::pyliteral::JsonErrorKind::Decode => {
                VilavtParse::NoneResult { reason: format!("the <tool> content is not valid JSON: {e}") }
            }
            Err(e) => VilavtParse::Raised { exception: e.kind.python_exception().to_string(), message: e.to_string() },
        };
    }
    let Some(inner) = tag_inner(response, "<answer>", "</answer>") else {
        return VilavtParse::NoneResult { reason: "no <tool> and no <answer>…</answer>".into() };
    };
    let coords = py_strip(inner);
    match json_loads(coords) {
        Ok(value) => VilavtParse::Parsed { source: VilavtSource::Answer, value },
        Err(e) if e.kind == super::pyliteral::JsonErrorKind::Decode => match literal_eval(coords) {
            Ok(value @ PyValue::Dict(_)) => VilavtParse::Parsed { source: VilavtSource::Answer, value },
            Ok(other) => VilavtParse::NoneResult {
                reason: format!("the <answer> content is a Python {} literal, not a dict", other.type_name()),
            },
            Err(le) => VilavtParse::NoneResult {
                reason: format!("the <answer> content is neither JSON ({e}) nor a Python literal ({le})"),
            },
        },
        Err(e) => VilavtParse::NoneResult { reason: format!("json.loads of the <answer> content raised {e}") },
    }
}

/// The `<think>` checks of ViLaVT's `validate_think_tags`, in its order: both tags present, equal
/// counts, then a left-to-right stack walk (every `</think>` closes an earlier `<think>`, none
/// left open). One pass over the `<` bytes gathers everything the checks need.
fn think_tags_ok(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the message is empty".into());
    }
    let b = text.as_bytes();
    let (mut opens, mut closes, mut depth) = (0usize, 0usize, 0usize);
    let mut first_unmatched_close: Option<usize> = None;
    let mut i = 0;
    while let Some(p) = text[i..].find('<') {
        let at = i + p;
        if b[at..].starts_with(b"<think>") {
            opens += 1;
            depth += 1;
            i = at + 7;
        } else if b[at..].starts_with(b"</think>") {
            closes += 1;
            if depth == 0 {
                first_unmatched_close.get_or_insert(at);
            } else {
                depth -= 1;
            }
            i = at + 8;
        } else {
            i = at + 1;
        }
    }
    if opens == 0 {
        return Err("missing <think>".into());
    }
    if closes == 0 {
        return Err("missing </think>".into());
    }
    if opens != closes {
        return Err(format!("{opens} <think> but {closes} </think>"));
    }
    if let Some(i) = first_unmatched_close {
        let at = text[..i].chars().count();
        return Err(format!("</think> at character {at} closes no open <think>"));
    }
    if depth > 0 {
        return Err("a <think> is never closed".into());
    }
    Ok(())
}

/// ViLaVT `validate_tool_call` on a parsed `<tool>` JSON value.
fn tool_call_ok(data: &PyValue) -> Result<(), String> {
    if !matches!(data, PyValue::Dict(_)) {
        return Err(format!("the <tool> JSON is a {}, not an object", data.type_name()));
    }
    let (Some(regions), Some(query)) = (data.get("region"), data.get("query")) else {
        return Err("the <tool> JSON needs both \"region\" and \"query\"".into());
    };
    let PyValue::List(regions) = regions else {
        return Err(format!("\"region\" is a {}, not a list", regions.type_name()));
    };
    if regions.is_empty() {
        return Err("\"region\" is an empty list".into());
    }
    for (i, r) in regions.iter().enumerate() {
        if !matches!(r, PyValue::Dict(_)) {
            return Err(format!("region {} is a {}, not an object", i + 1, r.type_name()));
        }
        let (Some(_), Some(bbox)) = (r.get("index"), r.get("bbox_2d")) else {
            return Err(format!("region {} lacks \"index\" or \"bbox_2d\"", i + 1));
        };
        let PyValue::List(b) = bbox else {
            return Err(format!("region {}: bbox_2d is a {}, not a list", i + 1, bbox.type_name()));
        };
        if b.len() != 4 {
            return Err(format!("region {}: bbox_2d has {} elements, not 4", i + 1, b.len()));
        }
        let bad_x = b[0].py_compare(&b[2], CompareOp::Ge).map_err(|e| format!("region {}: comparing x1 >= x2 raised {e}", i + 1))?;
        if bad_x {
            return Err(format!("region {}: x1 {} >= x2 {}", i + 1, b[0].py_repr(), b[2].py_repr()));
        }
        let bad_y = b[1].py_compare(&b[3], CompareOp::Ge).map_err(|e| format!("region {}: comparing y1 >= y2 raised {e}", i + 1))?;
        if bad_y {
            return Err(format!("region {}: y1 {} >= y2 {}", i + 1, b[1].py_repr(), b[3].py_repr()));
        }
    }
    match query {
        PyValue::Str(q) if !py_strip(q).is_empty() => Ok(()),
        PyValue::Str(_) => Err("\"query\" is blank".into()),
        other => Err(format!("\"query\" is a {}, not a string", other.type_name())),
    }
}

/// The ViLaVT format rule for one assistant message (`cal_format_reward` in ViLaVT's
/// `gcot.py`, protocol §3.3): balanced `<think>`…`</think>` (equal counts, every `</think>` closes
/// an earlier `<think>`, none left open); then if it contains `<tool>`: the first
/// `<tool>(.*?)</tool>` must hold strict JSON (NaN/Infinity allowed, as `json.loads` does) for an
/// object with a non-empty `region` list of objects each with `index` and a 4-element list
/// `bbox_2d` with `x1 < x2`, `y1 < y2` (Python comparisons: numbers, strings or lists compare,
/// mixed types or `null` fail; NaN passes), and a non-blank string `query`; else if it contains
/// `<answer>`: `<answer>(.*?)</answer>` must exist (any content); else it passes.
/// `Err` carries the failing rule.
pub fn vilavt_tool_format_ok(text: &str) -> Result<(), String> {
    think_tags_ok(text)?;
    let has_tool = finder!(b"<tool>").find(text.as_bytes()).is_some();
    let has_answer = finder!(b"<answer>").find(text.as_bytes()).is_some();
    if !has_tool && !has_answer {
        return Ok(());
    }
    if has_tool {
        let Some(inner) = tag_inner(text, "<tool>", "</tool>") else {
            return Err("<tool> without a closing </tool>".into());
        };
        let parsed = json_loads(py_strip(inner)).map_err(|e| format!("the <tool> content is not strict JSON: {e}"))?;
        tool_call_ok(&parsed)?;
        // `validate_answer(parsed)` when <answer> is also present: a non-empty dict, which a
        // valid tool call always is.
        return Ok(());
    }
    if tag_inner(text, "<answer>", "</answer>").is_none() {
        return Err("<answer> without a closing </answer>".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> PyValue {
        PyValue::Str(x.into())
    }

    /// The previous, literal transcription of `validate_think_tags`, as an oracle.
    fn think_tags_oracle(text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("the message is empty".into());
        }
        if !text.contains("<think>") {
            return Err("missing <think>".into());
        }
        if !text.contains("</think>") {
            return Err("missing </think>".into());
        }
        let opens = text.matches("<think>").count();
        let closes = text.matches("</think>").count();
        if opens != closes {
            return Err(format!("{opens} <think> but {closes} </think>"));
        }
        let mut depth = 0usize;
        let b = text.as_bytes();
        for i in 0..b.len() {
            if b[i..].starts_with(b"<think>") {
                depth += 1;
            } else if b[i..].starts_with(b"</think>") {
                if depth == 0 {
                    let at = text[..i].chars().count();
                    return Err(format!("</think> at character {at} closes no open <think>"));
                }
                depth -= 1;
            }
        }
        if depth > 0 {
            return Err("a <think> is never closed".into());
        }
        Ok(())
    }

    #[test]
    fn think_tags_single_pass_matches_oracle() {
        // Every sequence of up to 5 pieces from this alphabet (covers nesting, order, counts,
        // partial tags and non-ASCII before a bad close).
        let pieces = ["<think>", "</think>", "<", "<thin", "</think", "é", "x", "<<think>"];
        let mut texts = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for t in &frontier {
                for p in pieces {
                    next.push(format!("{t}{p}"));
                }
            }
            texts.extend(next.iter().cloned());
            frontier = next;
        }
        for t in &texts {
            assert_eq!(think_tags_ok(t), think_tags_oracle(t), "{t:?}");
        }
    }

    /// The straightforward `char`-based split the byte scan replaced.
    fn split_lines_oracle(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut it = s.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            if !matches!(c, '\n' | '\r' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}' | '\u{2029}') {
                continue;
            }
            out.push(&s[start..i]);
            let mut next = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = it.peek() {
                    it.next();
                    next = j + 1;
                }
            }
            start = next;
        }
        if start < s.len() {
            out.push(&s[start..]);
        }
        out
    }

    #[test]
    fn splitlines_byte_scan_matches_char_oracle() {
        let pieces = ["a", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\u{85}", "\u{2028}", "\u{2029}", "\u{2027}", "\u{202a}", "é", "\u{c5}", "\u{1085}", "\u{e280}", "€", "😀", " "];
        let mut state = 0x1234_5678_u64;
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(state % 12) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t.push_str(pieces[((state >> 33) % pieces.len() as u64) as usize]);
            }
            assert_eq!(split_python_lines(&t), split_lines_oracle(&t), "{t:?}");
        }
    }

    #[test]
    fn splitlines_matches_python() {
        let t = "a\nb\r\nc\rd\x0be\x0cf\x1cg\x1dh\x1ei\u{85}j\u{2028}k\u{2029}l\x1fm";
        assert_eq!(split_python_lines(t), vec!["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l\x1fm"]);
        assert!(split_python_lines("").is_empty());
        assert_eq!(split_python_lines("\n"), vec![""]);
        assert_eq!(split_python_lines("a\n\n"), vec!["a", ""]);
        assert_eq!(split_python_lines("a\r"), vec!["a"]);
        assert_eq!(split_python_lines("\r\n\r\n"), vec!["", ""]);
    }

    #[test]
    fn blocks_executor_and_reward() {
        let r = "<think>x</think> Action: Object Mapper\n```json\n[{\"bbox_2d\": [1,2,3,4], \"label\": \"a\"}]\n```\n";
        let b = extract_json_blocks(r, BlockMode::Executor);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].fence_line, 1);
        assert!(b[0].terminated);
        assert_eq!(b[0].text, "[{\"bbox_2d\": [1,2,3,4], \"label\": \"a\"}]\n");
        // unterminated: executor stops at </think> and strips; reward runs to the end
        let r2 = "```json\n  [1, 2]  \n</think> tail";
        assert_eq!(extract_json_blocks(r2, BlockMode::Executor)[0].text, "[1, 2]");
        assert_eq!(extract_json_blocks(r2, BlockMode::Reward)[0].text, "  [1, 2]  \n</think> tail");
        // fence with surrounding whitespace, and a fence inside a block starts another block
        let r3 = "  ```json \t\n[1]\n```json\n[2]\n```";
        let b3 = extract_json_blocks(r3, BlockMode::Executor);
        assert_eq!(b3.len(), 2);
        assert_eq!(b3[0].text, "[1]\n");
        assert_eq!(b3[1].text, "[2]\n");
        // text on the closing fence line is cut at the ```
        let r4 = "```json\n[1]```trailing\n";
        assert_eq!(extract_json_blocks(r4, BlockMode::Reward)[0].text, "[1]");
        // a ```json on the last line yields an empty block
        let r5 = "x\n```json";
        let b5 = extract_json_blocks(r5, BlockMode::Executor);
        assert_eq!(b5[0].text, "");
        assert!(!b5[0].terminated);
        // ```JSON and ```json5 are not fences
        assert!(extract_json_blocks("```JSON\n[1]\n```", BlockMode::Executor).is_empty());
        // \r\n and \u2028 are normalised to \n inside the block
        let r6 = "```json\r\n['a\u{2028}b']\r\n```";
        assert_eq!(extract_json_blocks(r6, BlockMode::Executor)[0].text, "['a\nb']\n");
    }

    #[test]
    fn parse_actions_basic() {
        let r = "<think>t</think> Action: Object Mapper\n```json\n[\n  {\"index\": 1, \"bbox_2d\": [10, 20, 30, 40], \"label\": \"chair\"}, # c\n  {'index': 1, 'start_point_2d': (1, 2), 'end_point_2d': [3, 4], 'label': 'p'},\n  {'label': 'x'},\n]\n```";
        let p = parse_actions(r, BlockMode::Executor).unwrap();
        assert_eq!(p.blocks, 1);
        assert_eq!(p.boxes.len(), 1);
        assert_eq!(p.lines.len(), 1);
        assert_eq!(p.ignored_elements.len(), 1);
        let b = BoxAction::from_value(&p.boxes[0]);
        assert_eq!(b.bbox_f64(), Some([10.0, 20.0, 30.0, 40.0]));
        assert_eq!(b.label_str(), Some("chair"));
        assert_eq!(b.index, Some(PyValue::Int(1)));
        let l = LineAction::from_value(&p.lines[0]);
        assert_eq!(l.start_f64(), Some([1.0, 2.0]));
        assert_eq!(l.end_f64(), Some([3.0, 4.0]));
    }

    #[test]
    fn parse_actions_json_true_drops_block() {
        let r = "```json\n[{\"bbox_2d\": [1,2,3,4], \"label\": \"a\", \"ok\": true}]\n```\n```json\n[{\"bbox_2d\": [1,2,3,4], \"label\": \"b\"}]\n```";
        let p = parse_actions(r, BlockMode::Executor).unwrap();
        assert_eq!(p.rejected_blocks.len(), 1);
        assert_eq!(p.rejected_blocks[0].block, 0);
        assert_eq!(p.rejected_blocks[0].error.kind, LiteralErrorKind::Value);
        let msg = p.rejected_blocks[0].to_string();
        assert!(msg.contains("block 1") && msg.contains("true") && msg.contains("line 1, column"), "{msg}");
        assert_eq!(p.boxes.len(), 1);
        assert_eq!(BoxAction::from_value(&p.boxes[0]).label_str(), Some("b"));
    }

    #[test]
    fn parse_actions_quirks() {
        // a dict block iterates its keys: the key strings are tested with substring `in`
        let p = parse_actions("```json\n{'bbox_2d label': 1, 'x': 2}\n```", BlockMode::Executor).unwrap();
        assert_eq!(p.boxes, vec![s("bbox_2d label")]);
        assert_eq!(p.ignored_elements, vec![(0, s("x"))]);
        // a literal None block is filtered like a failure (recorded separately)
        let p = parse_actions("```json\nNone\n```", BlockMode::Executor).unwrap();
        assert_eq!(p.none_blocks, vec![0]);
        // indented closing fence leaves a whitespace-only last line: IndentationError → dropped
        let p = parse_actions("```json\n[{'bbox_2d': [1,2,3,4], 'label': 'a'}]\n  ```", BlockMode::Executor).unwrap();
        assert_eq!(p.rejected_blocks.len(), 1);
        assert_eq!(p.rejected_blocks[0].error.kind, LiteralErrorKind::Syntax);
        // [1, 2]: `in` on an int raises
        let e = parse_actions("```json\n[1, 2]\n```", BlockMode::Executor).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::Membership);
        assert_eq!(e.python_exception, "TypeError");
        assert_eq!(e.element, Some(0));
        // a number block is not iterable
        let e = parse_actions("```json\n5\n```", BlockMode::Executor).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::NotIterable);
        // an unhashable key raises TypeError from literal_eval (not swallowed)
        let e = parse_actions("```json\n[1]\n```\n```json\n{[1]: 2}\n```", BlockMode::Executor).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::LiteralEval(LiteralErrorKind::Type));
        assert_eq!(e.block, 1);
        assert!(e.to_string().contains("block 2"), "{e}");
        // literal_eval errors of all blocks come before iteration errors
        let e = parse_actions("```json\n5\n```\n```json\n{[1]: 2}\n```", BlockMode::Executor).unwrap_err();
        assert_eq!(e.block, 1);
        // Ellipsis placeholder elements raise on `in`
        let e = parse_actions("```json\n[...]\n```", BlockMode::Executor).unwrap_err();
        assert_eq!(e.kind, ActionErrorKind::Membership);
        // unterminated block in executor mode stops at </think>
        let p = parse_actions("```json\n[{'bbox_2d': [1,2,3,4], 'label': 'a'}]</think>junk", BlockMode::Executor).unwrap();
        assert_eq!(p.boxes.len(), 1);
        let p = parse_actions("```json\n[{'bbox_2d': [1,2,3,4], 'label': 'a'}]</think>junk", BlockMode::Reward).unwrap();
        assert_eq!(p.rejected_blocks.len(), 1);
    }

    #[test]
    fn reward_parse() {
        let ok = reward_format_parse("<think>a</think> Action: x\n```json\n[{'bbox_2d': [1,2,3,4], 'label': 'a'}]\n```").unwrap();
        assert!(ok.ok, "{:?}", ok.reason);
        assert_eq!(ok.boxes.len(), 1);
        let bad = reward_format_parse("```json\n[{'bbox_2d': [1,2,3,4], 'label': 'a'}, {'index': 1}]\n```").unwrap();
        assert!(!bad.ok);
        assert!(bad.reason.unwrap().contains("neither a box"));
        let none = reward_format_parse("```json\nNone\n```").unwrap();
        assert!(!none.ok);
        assert_eq!(none.none_blocks, vec![0]);
        let fail = reward_format_parse("```json\n[true]\n```").unwrap();
        assert!(!fail.ok);
        assert_eq!(fail.rejected_blocks.len(), 1);
        // raising elements crash the reward even after an earlier failure
        assert!(reward_format_parse("```json\n[true]\n```\n```json\n[1, 2]\n```").is_err());
        // no blocks at all: ok
        assert!(reward_format_parse("<think>a</think> Action: Answer\n<answer>B</answer>").unwrap().ok);
    }

    fn boxv(label: PyValue, bbox: PyValue) -> PyValue {
        PyValue::Dict(vec![(s("bbox_2d"), bbox), (s("label"), label)])
    }

    fn ints(v: &[i64]) -> PyValue {
        PyValue::List(v.iter().map(|&x| PyValue::Int(x)).collect())
    }

    #[test]
    fn reflection() {
        let a = boxv(s("a"), ints(&[1, 2, 3, 4]));
        let a_same = boxv(s("a"), PyValue::Tuple(vec![PyValue::Float(1.0), PyValue::Int(2), PyValue::Bool(true), PyValue::Int(4)]));
        let a2 = boxv(s("a"), ints(&[1, 2, 3, 5]));
        let b = boxv(s("b"), ints(&[1, 2, 3, 5]));
        assert!(!reflection_flag(&[a.clone(), b.clone()]).unwrap());
        assert!(reflection_flag(&[a.clone(), a2.clone()]).unwrap());
        // True == 1.0 but (1,2,True,4) != (1,2,3,4)
        assert!(reflection_flag(&[a.clone(), a_same]).unwrap());
        assert!(!reflection_flag(&[a.clone(), a.clone()]).unwrap());
        // non-numeric bbox skipped; numeric strings convert; "nan" never equals itself
        let junk = boxv(s("a"), PyValue::List(vec![PyValue::None; 4]));
        assert!(!reflection_flag(&[a.clone(), junk]).unwrap());
        let strs = boxv(s("a"), PyValue::List(vec![s("1"), s(" 2 "), s("3e0"), s("4")]));
        assert!(!reflection_flag(&[a.clone(), strs]).unwrap());
        let nan = boxv(s("n"), PyValue::List(vec![s("nan")]));
        assert!(reflection_flag(&[nan.clone(), nan]).unwrap());
        // labels compare as dict keys: 1 == 1.0 == True
        let l1 = boxv(PyValue::Int(1), ints(&[0]));
        let l2 = boxv(PyValue::Bool(true), ints(&[1]));
        assert!(reflection_flag(&[l1, l2]).unwrap());
        // unhashable label skipped
        let ul = boxv(PyValue::List(vec![]), ints(&[0]));
        assert!(!reflection_flag(&[ul.clone(), ul]).unwrap());
        // a string "box" is not subscriptable by str → skipped
        assert!(!reflection_flag(&[s("bbox_2d label"), s("bbox_2d label")]).unwrap());
        // huge int → OverflowError escapes
        let big = boxv(s("a"), PyValue::List(vec![PyValue::BigInt("1".to_string() + &"0".repeat(400))]));
        assert_eq!(reflection_flag(&[big]).unwrap_err().exc, super::super::pyliteral::PyExc::OverflowError);
    }

    #[test]
    fn typed_views_serde() {
        let v = PyValue::Dict(vec![(s("index"), PyValue::Int(1)), (s("bbox_2d"), ints(&[1, 2, 3, 4])), (s("label"), s("c"))]);
        let b = BoxAction::from_value(&v);
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(j, r#"{"index":1,"bbox_2d":[1,2,3,4],"label":"c"}"#);
        let back: BoxAction = serde_json::from_str(&j).unwrap();
        assert_eq!(back, b);
        let nb = BoxAction::from_value(&s("x"));
        assert_eq!(nb.index, None);
        assert_eq!(serde_json::to_string(&nb).unwrap(), r#"{"bbox_2d":null,"label":null}"#);
        let l: LineAction = serde_json::from_str(r#"{"start_point_2d":[1,2],"end_point_2d":[3.5,4],"label":"p"}"#).unwrap();
        assert_eq!(l.end_f64(), Some([3.5, 4.0]));
        assert_eq!(l.index, None);
    }

    #[test]
    fn vilavt_parse() {
        let t = r#"<think>x</think><tool> {"region": [{"index": 0, "bbox_2d": [1, 2, 3, 4]}], "query": "q", "query": "q2"} </tool>"#;
        match parse_vilavt_tool(t) {
            VilavtParse::Parsed { source: VilavtSource::Tool, value } => {
                assert_eq!(value.get("query"), Some(&s("q2")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_vilavt_tool("<tool>{'a': 1}</tool>"), VilavtParse::NoneResult { .. }));
        assert!(matches!(parse_vilavt_tool("<tool>[1]"), VilavtParse::NoneResult { .. }));
        match parse_vilavt_tool("<tool>[NaN, -Infinity]</tool>") {
            VilavtParse::Parsed { value: PyValue::List(v), .. } => assert!(matches!(v[0], PyValue::Float(x) if x.is_nan())),
            other => panic!("{other:?}"),
        }
        // <answer>: JSON of any type, else a Python dict literal, else None
        assert!(matches!(parse_vilavt_tool("<answer> 42 </answer>"), VilavtParse::Parsed { source: VilavtSource::Answer, value: PyValue::Int(42) }));
        assert!(matches!(parse_vilavt_tool("<answer>{'a': (1, 2)}</answer>"), VilavtParse::Parsed { value: PyValue::Dict(_), .. }));
        assert!(matches!(parse_vilavt_tool("<answer>B</answer>"), VilavtParse::NoneResult { .. }));
        assert!(matches!(parse_vilavt_tool("<answer>[1, 2,]</answer>"), VilavtParse::NoneResult { .. }));
        assert!(matches!(parse_vilavt_tool("no tags"), VilavtParse::NoneResult { .. }));
        // deep JSON in <tool> raises (the rollout retries), in <answer> it is None
        let deep = format!("<tool>{}{}</tool>", "[".repeat(2000), "]".repeat(2000));
        assert!(matches!(parse_vilavt_tool(&deep), VilavtParse::Raised { .. }));
        let deep_a = format!("<answer>{}{}</answer>", "[".repeat(2000), "]".repeat(2000));
        assert!(matches!(parse_vilavt_tool(&deep_a), VilavtParse::NoneResult { .. }));
        let longint = format!("<tool>{}</tool>", "1".repeat(4301));
        assert!(matches!(parse_vilavt_tool(&longint), VilavtParse::Raised { .. }));
    }

    #[test]
    fn vilavt_format() {
        let good = r#"<think>look</think>
<tool>{"region": [{"index": 0, "bbox_2d": [1, 2, 3, 4]}], "query": "what"}</tool>"#;
        assert_eq!(vilavt_tool_format_ok(good), Ok(()));
        assert!(vilavt_tool_format_ok("<think>a</think> plain").is_ok());
        assert!(vilavt_tool_format_ok("<think>a</think><answer>x</answer>").is_ok());
        assert!(vilavt_tool_format_ok("<think>a</think><answer>x").is_err());
        assert!(vilavt_tool_format_ok("").is_err());
        assert!(vilavt_tool_format_ok("</think><think>").is_err());
        assert!(vilavt_tool_format_ok("<think><think></think>").is_err());
        assert!(vilavt_tool_format_ok("<think></think></think><think>").is_err());
        let bad = |t: &str| vilavt_tool_format_ok(&format!("<think>a</think><tool>{t}</tool>"));
        assert!(bad(r#"{"region": [], "query": "q"}"#).is_err());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [3, 2, 1, 4]}], "query": "q"}"#).is_err());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [1, 2, 3, 4]}], "query": "  "}"#).is_err());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [1, null, 3, 4]}], "query": "q"}"#).is_err());
        assert!(bad(r#"{"region": [{"bbox_2d": [1, 2, 3, 4]}], "query": "q"}"#).is_err());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [1, 2, 3, 4]}], "query": 5}"#).is_err());
        assert!(bad(r#"{'region': [{"index": 0, "bbox_2d": [1, 2, 3, 4]}], "query": "q"}"#).is_err());
        // quirks that pass: any index, NaN coordinates, string coordinates, list coordinates
        assert!(bad(r#"{"region": [{"index": "x", "bbox_2d": [NaN, NaN, NaN, NaN]}], "query": "q"}"#).is_ok());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": ["a", "a", "b", "b"]}], "query": "q"}"#).is_ok());
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [[1], [1], [2], [2]]}], "query": "q"}"#).is_ok());
        // x1 >= x2 is checked first: a true x-check hides a y-check that would raise
        assert!(bad(r#"{"region": [{"index": 0, "bbox_2d": [1, "a", 3, 4]}], "query": "q"}"#).is_err());
    }
}
