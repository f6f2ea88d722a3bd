//! Fast path for [`super::literal_eval`]: a byte-level, single-pass evaluator for the shapes that
//! models actually write in ```` ```json ```` blocks, e.g.
//!
//! ```text
//! [
//!     {"index": 1, "bbox_2d": [23, 335, 60, 477], "label": "toilet"},
//!     {"index": 1, "start_point_2d": [72, 94], "end_point_2d": [15, 419], "label": "path 1"}
//! ]
//! ```
//!
//! The full evaluator (`char` tokenizer, PEG parser with CPython's depth accounting, AST, then
//! `_convert`) is general and exact but allocates a token vector, a `Vec<char>` copy of the source
//! and one AST node per value. This fast path builds the [`PyValue`] directly from the bytes.
//!
//! **Contract.** [`try_literal_eval`] returns either `Some(v)` where `v` is exactly (structurally)
//! what the full evaluator returns as `Ok(v)`, or `None` ("declined"), in which case the caller
//! runs the full evaluator. It never produces an error of its own, so every error kind, message
//! and position still comes from the full evaluator. It declines on *any* byte or construct outside
//! this accepted subset:
//!
//! * the whole source is ASCII, with no `\r`, form feed, NUL or other control bytes except `\t`
//!   and `\n` (the latter only between tokens inside brackets or in the trailer);
//! * leading spaces/tabs (which `literal_eval` strips), then one value, then a trailer of
//!   `[ \t]*`, an optional `#` comment, and `\n`s only (no indented or whitespace-only last line);
//! * values: lists, parenthesised tuples (and parenthesised single values), dicts whose keys are
//!   all strings (at most [`MAX_DICT_KEYS`] distinct keys; duplicates keep the first key's
//!   position and the last value, like Python), nesting at most [`MAX_NESTING`] brackets deep;
//! * strings: `"..."` or `'...'` without prefix, not triple-quoted, made of printable ASCII and
//!   tabs, with only the escapes `\\`, `\'`, `\"`, `\n`, `\t`, `\r`; no implicit concatenation;
//! * numbers: an optional `-` glued to the digits, then a decimal int of at most 18 digits without
//!   leading zeros or `_` (so it always fits an `i64`), or `digits.digits` (a float, parsed with
//!   Rust's correctly rounded `f64` parser, as CPython's is); nothing alphanumeric, `_` or `.` may
//!   follow (that would be `1e5`, `1j`, `1_0`, `1.2.3`, `1if …`);
//! * `True`, `False`, `None` (not followed by an identifier character);
//! * between tokens inside brackets: spaces, tabs, `\n` and `#` comments (printable ASCII + tab).
//!
//! Anything else — sets, bare top-level tuples (`1, 2`), `+1`, `- 1`, exponents, `.5`, `1.`,
//! hex/octal/binary, complex, bytes, `...`, names (`true`, `null`, `x1`), backslash
//! continuations, `\r\n`, non-ASCII text, unterminated brackets or strings — is declined.
//!
//! The depth limits of the full evaluator (200 nested brackets, CPython's parser stack, the AST
//! recursion budget) cannot be reached within [`MAX_NESTING`] levels; callers only use the fast
//! path when the AST depth budget is at least [`MIN_AST_BUDGET`].
//!
//! Differential tests: `tests/pyliteral_fast_path.rs` runs both evaluators on every fixture input,
//! on the benchmark's block shapes and on a few hundred thousand random mutations of them.

use super::PyValue;

/// Deepest bracket nesting the fast path accepts (deeper input is declined).
pub const MAX_NESTING: usize = 16;

/// Most distinct keys in one dict the fast path accepts (it de-duplicates keys by linear search).
pub const MAX_DICT_KEYS: usize = 64;

/// Smallest AST depth budget for which the fast path may be used: a value nested
/// [`MAX_NESTING`] brackets deep is at most `MAX_NESTING + 1` AST nodes deep.
pub const MIN_AST_BUDGET: usize = 2 * MAX_NESTING + 2;

/// Most decimal digits of an int literal the fast path accepts (`10^18 - 1` fits an `i64`).
const MAX_INT_DIGITS: usize = 18;

/// `ast.literal_eval(src)` for the common subset described in the module docs; `None` when
/// declined (then the full evaluator decides, including every error).
pub fn try_literal_eval(src: &str) -> Option<PyValue> {
    if !src.is_ascii() {
        return None;
    }
    let mut p = Scanner { s: src, b: src.as_bytes(), pos: 0 };
    // `literal_eval` strips leading spaces and tabs only.
    while matches!(p.peek(), Some(b' ' | b'\t')) {
        p.pos += 1;
    }
    let v = p.value(0)?;
    // Trailer: `[ \t]*`, an optional comment, then newlines to the end. A whitespace-only last
    // line without its newline is an IndentationError in CPython, so it is declined.
    while matches!(p.peek(), Some(b' ' | b'\t')) {
        p.pos += 1;
    }
    if p.peek() == Some(b'#') {
        p.skip_comment()?;
    }
    while p.peek() == Some(b'\n') {
        p.pos += 1;
    }
    (p.pos == p.b.len()).then_some(v)
}

/// Cursor over the source bytes. Every method returns `None` to decline.
struct Scanner<'a> {
    /// The source (ASCII), for slicing out text without re-validating it.
    s: &'a str,
    /// `s.as_bytes()`.
    b: &'a [u8],
    pos: usize,
}

/// Bytes that would continue a number or keyword into something else (`1e5`, `1j`, `1_0`,
/// `1.2.3`, `Truex`, `1if`).
fn continues_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Skip a `#` comment up to (not including) the next `\n` or the end; decline on bytes a
    /// comment rarely holds (control characters other than tab).
    fn skip_comment(&mut self) -> Option<()> {
        debug_assert_eq!(self.peek(), Some(b'#'));
        while let Some(c) = self.peek() {
            match c {
                b'\n' => break,
                b'\t' | 0x20..=0x7e => self.pos += 1,
                _ => return None,
            }
        }
        Some(())
    }

    /// Whitespace between tokens inside brackets: spaces, tabs, newlines and comments.
    fn skip_ws(&mut self) -> Option<()> {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' => self.pos += 1,
                b'#' => self.skip_comment()?,
                _ => break,
            }
        }
        Some(())
    }

    /// One value starting exactly at `pos`; `depth` = enclosing brackets.
    fn value(&mut self, depth: usize) -> Option<PyValue> {
        match self.peek()? {
            b'[' => self.list(depth),
            b'(' => self.paren(depth),
            b'{' => self.dict(depth),
            q @ (b'"' | b'\'') => self.string(q).map(PyValue::Str),
            b'0'..=b'9' => self.number(false),
            b'-' => {
                self.pos += 1;
                match self.peek() {
                    Some(b'0'..=b'9') => self.number(true),
                    _ => None,
                }
            }
            b'T' => self.keyword("True", PyValue::Bool(true)),
            b'F' => self.keyword("False", PyValue::Bool(false)),
            b'N' => self.keyword("None", PyValue::None),
            _ => None,
        }
    }

    fn keyword(&mut self, word: &str, v: PyValue) -> Option<PyValue> {
        let end = self.pos + word.len();
        if self.b.get(self.pos..end)? != word.as_bytes() {
            return None;
        }
        // `Truex` is a name, `True.real` an attribute access: neither is this literal.
        if self.b.get(end).is_some_and(|&c| continues_token(c)) {
            return None;
        }
        self.pos = end;
        Some(v)
    }

    /// A decimal int (≤ 18 digits, no leading zero) or `digits.digits` float; `neg` when a `-`
    /// was glued in front (already consumed).
    fn number(&mut self, neg: bool) -> Option<PyValue> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let int_end = self.pos;
        let n = int_end - start;
        if n > 1 && self.b[start] == b'0' {
            return None; // `00`, `01`, `00.5`: leave the odd cases to the full parser
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let frac_start = self.pos;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
            if self.pos == frac_start || self.peek().is_some_and(continues_token) {
                return None;
            }
            // ASCII digits, a dot, ASCII digits: always a valid Rust float.
            let f: f64 = self.s[start..self.pos].parse().ok()?;
            return Some(PyValue::Float(if neg { -f } else { f }));
        }
        if n > MAX_INT_DIGITS || self.peek().is_some_and(continues_token) {
            return None;
        }
        let mut i: i64 = 0;
        for &d in &self.b[start..int_end] {
            i = i * 10 + i64::from(d - b'0');
        }
        Some(PyValue::Int(if neg { -i } else { i }))
    }

    /// A quoted string starting at the quote `q`; declines on prefixes (never reached: a prefix
    /// is a letter), triple quotes, control bytes, a line break and any escape other than
    /// `\\ \' \" \n \t \r`.
    fn string(&mut self, q: u8) -> Option<String> {
        let b = self.b;
        let open = self.pos;
        if b.get(open + 1) == Some(&q) && b.get(open + 2) == Some(&q) {
            return None; // triple-quoted
        }
        let start = open + 1;
        let mut i = start;
        // Plain run up to the closing quote or the first escape.
        loop {
            let c = *b.get(i)?;
            if c == q {
                self.pos = i + 1;
                return Some(self.s[start..i].to_owned());
            }
            match c {
                b'\\' => break,
                b'\t' | 0x20..=0x7e => i += 1,
                _ => return None,
            }
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.s[start..i]);
        loop {
            let c = *b.get(i)?;
            if c == q {
                self.pos = i + 1;
                return Some(out);
            }
            match c {
                b'\\' => {
                    let e = match *b.get(i + 1)? {
                        b'\\' => '\\',
                        b'\'' => '\'',
                        b'"' => '"',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        _ => return None,
                    };
                    out.push(e);
                    i += 2;
                }
                b'\t' | 0x20..=0x7e => {
                    out.push(c as char);
                    i += 1;
                }
                _ => return None,
            }
        }
    }

    /// After an element inside brackets: skip whitespace, then `,` (returns `false`, more may
    /// follow) or the closer (returns `true`, consumed); anything else declines.
    /// A trailing comma before the closer is allowed and consumed here too.
    fn after_element(&mut self, close: u8) -> Option<bool> {
        self.skip_ws()?;
        match self.peek()? {
            c if c == close => {
                self.pos += 1;
                Some(true)
            }
            b',' => {
                self.pos += 1;
                self.skip_ws()?;
                if self.peek()? == close {
                    self.pos += 1;
                    return Some(true);
                }
                Some(false)
            }
            _ => None,
        }
    }

    /// Open a bracket at `depth`: consume it and the whitespace after it.
    fn open(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_NESTING {
            return None;
        }
        self.pos += 1;
        self.skip_ws()
    }

    fn list(&mut self, depth: usize) -> Option<PyValue> {
        self.open(depth)?;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(PyValue::List(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.after_element(b']')? {
                return Some(PyValue::List(items));
            }
        }
    }

    /// `()` → empty tuple, `(x)` → `x`, `(x,)` / `(x, y, …)` → tuple.
    fn paren(&mut self, depth: usize) -> Option<PyValue> {
        self.open(depth)?;
        if self.peek()? == b')' {
            self.pos += 1;
            return Some(PyValue::Tuple(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        self.skip_ws()?;
        match self.peek()? {
            b')' => {
                self.pos += 1;
                return Some(first);
            }
            b',' => {}
            _ => return None,
        }
        let mut items = vec![first];
        // Re-use `after_element` for the comma just seen.
        if self.after_element(b')')? {
            return Some(PyValue::Tuple(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.after_element(b')')? {
                return Some(PyValue::Tuple(items));
            }
        }
    }

    /// A dict display with string keys only; a repeated key keeps its first position and takes
    /// the last value (string keys are equal in Python exactly when their text is).
    fn dict(&mut self, depth: usize) -> Option<PyValue> {
        self.open(depth)?;
        let mut items: Vec<(PyValue, PyValue)> = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(PyValue::Dict(items));
        }
        loop {
            let q = self.peek()?;
            if q != b'"' && q != b'\'' {
                return None;
            }
            let key = self.string(q)?;
            self.skip_ws()?;
            if self.peek()? != b':' {
                return None; // a set display, or not a literal
            }
            self.pos += 1;
            self.skip_ws()?;
            let value = self.value(depth + 1)?;
            match items.iter_mut().find(|(k, _)| matches!(k, PyValue::Str(s) if *s == key)) {
                Some(slot) => slot.1 = value,
                None => {
                    if items.len() >= MAX_DICT_KEYS {
                        return None;
                    }
                    items.push((PyValue::Str(key), value));
                }
            }
            if self.after_element(b'}')? {
                return Some(PyValue::Dict(items));
            }
        }
    }
}
