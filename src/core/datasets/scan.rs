//! Streaming record-boundary scanners: find where each record of a JSON-lines file or each
//! top-level element of a JSON array starts and ends, without parsing the records.
//!
//! Both scanners read the file in fixed-size chunks and keep only a little state (string/escape
//! flags and a bracket stack for the element being scanned), so memory stays flat and a 91k-record
//! file is indexed at disk speed. Record contents are validated later, when a record is read.

use std::io::Read;

/// Chunk size for streaming reads.
const CHUNK: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Byte range of one record inside its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawSpan {
    pub offset: u64,
    pub len: u64,
}

/// How the file lays out its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Nothing but whitespace (or a byte-order mark).
    Empty,
    /// One JSON value per line.
    Lines,
    /// One top-level JSON array.
    Array,
}

/// Why scanning failed. `record` is the 0-based number of the record being scanned.
#[derive(Debug)]
pub(crate) enum ScanError {
    Io(std::io::Error),
    Truncated { record: Option<usize>, detail: String },
    Syntax { record: Option<usize>, detail: String },
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Scan a whole file (or up to `limit` records) and return its layout and record spans.
pub(crate) fn scan<R: Read>(mut reader: R, limit: Option<usize>) -> Result<(Layout, Vec<RawSpan>), ScanError> {
    let mut buf = vec![0u8; CHUNK];
    let mut base: u64 = 0;
    let mut machine = Machine::Start;
    let mut spans = Vec::new();
    let limit = limit.unwrap_or(usize::MAX);
    loop {
        let n = read_some(&mut reader, &mut buf).map_err(ScanError::Io)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        let mut chunk_base = base;
        if base == 0 && chunk.starts_with(BOM) {
            chunk = &chunk[BOM.len()..];
            chunk_base = BOM.len() as u64;
        }
        let stop = machine.feed(chunk_base, chunk, &mut spans, limit)?;
        base += n as u64;
        if stop {
            let layout = machine.layout();
            return Ok((layout, spans));
        }
    }
    machine.finish(&mut spans)?;
    Ok((machine.layout(), spans))
}

/// Find the span of the first complete JSON value of a file whose first non-blank byte is `{`
/// (used to sniff pretty-printed objects such as `dataset_info.json`). Returns `None` for a file
/// without one. Reads at most `max_bytes`.
pub(crate) fn first_object<R: Read>(mut reader: R, max_bytes: u64) -> Result<Option<RawSpan>, ScanError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut base: u64 = 0;
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escape = false;
    let mut start: Option<u64> = None;
    loop {
        if base >= max_bytes {
            return Err(ScanError::Truncated {
                record: Some(0),
                detail: format!("the first value is longer than {max_bytes} bytes"),
            });
        }
        let n = read_some(&mut reader, &mut buf).map_err(ScanError::Io)?;
        if n == 0 {
            break;
        }
        let mut from = 0;
        if base == 0 && buf[..n].starts_with(BOM) {
            from = BOM.len();
        }
        for (i, &b) in buf[from..n].iter().enumerate() {
            let pos = base + (from + i) as u64;
            if in_string {
                if escape {
                    escape = false;
                } else if b == b'\\' {
                    escape = true;
                } else if b == b'"' {
                    in_string = false;
                }
                continue;
            }
            match start {
                None => {
                    if is_ws(b) {
                        continue;
                    }
                    if b != b'{' {
                        return Ok(None);
                    }
                    start = Some(pos);
                    depth = 1;
                }
                Some(s) => match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(Some(RawSpan { offset: s, len: pos + 1 - s }));
                        }
                    }
                    _ => {}
                },
            }
        }
        base += n as u64;
    }
    match start {
        None => Ok(None),
        Some(_) => Err(ScanError::Truncated {
            record: Some(0),
            detail: if in_string {
                "the file ends inside a string".into()
            } else {
                "the file ends before the first value is complete".into()
            },
        }),
    }
}

/// `read` that retries on `Interrupted`.
fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

enum Machine {
    Start,
    Lines(LinesState),
    Array(ArrayState),
}

impl Machine {
    fn layout(&self) -> Layout {
        match self {
            Machine::Start => Layout::Empty,
            Machine::Lines(_) => Layout::Lines,
            Machine::Array(_) => Layout::Array,
        }
    }

    /// Feed one chunk; returns true once `limit` spans were found.
    fn feed(&mut self, base: u64, chunk: &[u8], spans: &mut Vec<RawSpan>, limit: usize) -> Result<bool, ScanError> {
        let mut chunk = chunk;
        let mut base = base;
        if let Machine::Start = self {
            let Some(i) = chunk.iter().position(|&b| !is_ws(b)) else {
                return Ok(false);
            };
            let b = chunk[i];
            let pos = base + i as u64;
            match b {
                b'[' => {
                    *self = Machine::Array(ArrayState::new());
                    chunk = &chunk[i + 1..];
                    base = pos + 1;
                }
                b'{' => {
                    *self = Machine::Lines(LinesState::default());
                    chunk = &chunk[i..];
                    base = pos;
                }
                _ => {
                    return Err(ScanError::Syntax {
                        record: None,
                        detail: format!(
                            "expected a JSON array (`[`) or JSON lines (one `{{…}}` object per line), found {} at byte {pos}",
                            describe_byte(b)
                        ),
                    })
                }
            }
        }
        match self {
            Machine::Start => Ok(false),
            Machine::Lines(s) => Ok(s.feed(base, chunk, spans, limit)),
            Machine::Array(s) => s.feed(base, chunk, spans, limit),
        }
    }

    fn finish(&mut self, spans: &mut Vec<RawSpan>) -> Result<(), ScanError> {
        match self {
            Machine::Start => Ok(()),
            Machine::Lines(s) => {
                s.finish(spans);
                Ok(())
            }
            Machine::Array(s) => s.finish(spans.as_slice()),
        }
    }
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// JSON lines: a record is a line with non-blank content; blank lines are skipped.
#[derive(Default)]
struct LinesState {
    /// Start of the current line's content (first non-blank byte).
    start: Option<u64>,
    /// One past the last non-blank byte seen on the current line.
    end: u64,
}

impl LinesState {
    fn feed(&mut self, base: u64, chunk: &[u8], spans: &mut Vec<RawSpan>, limit: usize) -> bool {
        let mut i = 0;
        let n = chunk.len();
        while i < n {
            if self.start.is_some() {
                // Inside a line: jump to its end.
                match chunk[i..].iter().position(|&b| b == b'\n') {
                    Some(k) => {
                        let nl = i + k;
                        if let Some(last) = chunk[i..nl].iter().rposition(|&b| !is_ws(b)) {
                            self.end = base + (i + last) as u64 + 1;
                        }
                        let s = self.start.take().unwrap_or(0);
                        spans.push(RawSpan { offset: s, len: self.end.saturating_sub(s) });
                        if spans.len() >= limit {
                            return true;
                        }
                        i = nl + 1;
                    }
                    None => {
                        if let Some(last) = chunk[i..].iter().rposition(|&b| !is_ws(b)) {
                            self.end = base + (i + last) as u64 + 1;
                        }
                        return false;
                    }
                }
            } else {
                // Between lines: skip blanks.
                match chunk[i..].iter().position(|&b| !is_ws(b)) {
                    Some(k) => {
                        let p = i + k;
                        self.start = Some(base + p as u64);
                        self.end = base + p as u64 + 1;
                        i = p;
                    }
                    None => return false,
                }
            }
        }
        false
    }

    fn finish(&mut self, spans: &mut Vec<RawSpan>) {
        if let Some(s) = self.start.take() {
            spans.push(RawSpan { offset: s, len: self.end.saturating_sub(s) });
        }
    }
}

/// Elements of one top-level JSON array.
struct ArrayState {
    /// Open brackets inside the current element.
    stack: Vec<u8>,
    in_string: bool,
    escape: bool,
    string_start: u64,
    elem_start: Option<u64>,
    elem_end: u64,
    after_comma: bool,
    closed: bool,
    closed_at: u64,
}

impl ArrayState {
    fn new() -> Self {
        ArrayState {
            stack: Vec::new(),
            in_string: false,
            escape: false,
            string_start: 0,
            elem_start: None,
            elem_end: 0,
            after_comma: false,
            closed: false,
            closed_at: 0,
        }
    }

    fn syntax(&self, spans: &[RawSpan], detail: String) -> ScanError {
        ScanError::Syntax { record: Some(spans.len()), detail }
    }

    fn begin(&mut self, pos: u64) {
        if self.stack.is_empty() && self.elem_start.is_none() {
            self.elem_start = Some(pos);
            self.after_comma = false;
        }
    }

    fn feed(&mut self, base: u64, chunk: &[u8], spans: &mut Vec<RawSpan>, limit: usize) -> Result<bool, ScanError> {
        let n = chunk.len();
        let mut i = 0;
        while i < n {
            if self.closed {
                if let Some(k) = chunk[i..].iter().position(|&b| !is_ws(b)) {
                    let pos = base + (i + k) as u64;
                    return Err(ScanError::Syntax {
                        record: None,
                        detail: format!(
                            "unexpected {} at byte {pos} after the closing `]` of the top-level array (byte {})",
                            describe_byte(chunk[i + k]),
                            self.closed_at
                        ),
                    });
                }
                return Ok(false);
            }
            if self.in_string {
                if self.escape {
                    self.escape = false;
                    i += 1;
                    continue;
                }
                match chunk[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(k) => {
                        let p = i + k;
                        if chunk[p] == b'\\' {
                            self.escape = true;
                        } else {
                            self.in_string = false;
                            self.elem_end = base + p as u64 + 1;
                        }
                        i = p + 1;
                    }
                    None => return Ok(false),
                }
                continue;
            }
            let b = chunk[i];
            let pos = base + i as u64;
            i += 1;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'"' => {
                    self.begin(pos);
                    self.in_string = true;
                    self.string_start = pos;
                }
                b'[' | b'{' => {
                    self.begin(pos);
                    self.stack.push(b);
                }
                b']' | b'}' => match self.stack.pop() {
                    Some(open) => {
                        let want = if open == b'[' { b']' } else { b'}' };
                        if b != want {
                            return Err(self.syntax(
                                spans,
                                format!("mismatched `{}` at byte {pos} (expected `{}`)", b as char, want as char),
                            ));
                        }
                        self.elem_end = pos + 1;
                    }
                    None => {
                        if b == b'}' {
                            return Err(self.syntax(spans, format!("unexpected `}}` at byte {pos}")));
                        }
                        if let Some(s) = self.elem_start.take() {
                            spans.push(RawSpan { offset: s, len: self.elem_end.saturating_sub(s) });
                        } else if self.after_comma {
                            return Err(self.syntax(spans, format!("trailing comma before the closing `]` at byte {pos}")));
                        }
                        self.closed = true;
                        self.closed_at = pos;
                        if spans.len() >= limit {
                            return Ok(true);
                        }
                    }
                },
                b',' => {
                    if self.stack.is_empty() {
                        match self.elem_start.take() {
                            Some(s) => {
                                spans.push(RawSpan { offset: s, len: self.elem_end.saturating_sub(s) });
                                self.after_comma = true;
                                if spans.len() >= limit {
                                    return Ok(true);
                                }
                            }
                            None => return Err(self.syntax(spans, format!("empty array element at byte {pos}"))),
                        }
                    }
                }
                _ => {
                    self.begin(pos);
                    if self.stack.is_empty() {
                        self.elem_end = pos + 1;
                    }
                }
            }
        }
        Ok(false)
    }

    fn finish(&mut self, spans: &[RawSpan]) -> Result<(), ScanError> {
        if self.closed {
            return Ok(());
        }
        let record = Some(spans.len());
        let detail = if self.in_string {
            format!("unterminated string starting at byte {}", self.string_start)
        } else if let Some(s) = self.elem_start.filter(|_| !self.stack.is_empty()) {
            format!("the file ends inside this record (it starts at byte {s})")
        } else if self.elem_start.is_some() {
            "unterminated array: the file ends after this record, without `,` or the closing `]`".to_string()
        } else {
            "unterminated array: the file ends before the closing `]`".to_string()
        };
        Err(ScanError::Truncated { record, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans_of(text: &str) -> Result<(Layout, Vec<String>), ScanError> {
        let (layout, spans) = scan(text.as_bytes(), None)?;
        Ok((
            layout,
            spans.iter().map(|s| text[s.offset as usize..(s.offset + s.len) as usize].to_string()).collect(),
        ))
    }

    #[test]
    fn array_elements_are_found_without_parsing() {
        let text = "\u{feff} [ {\"a\": \"x,]}\\\"\"} , [1,[2]] ,\"s\\\\\", 42 ,{} ]\n";
        let (layout, s) = spans_of(text).unwrap();
        assert_eq!(layout, Layout::Array);
        assert_eq!(s, vec!["{\"a\": \"x,]}\\\"\"}", "[1,[2]]", "\"s\\\\\"", "42", "{}"]);
        let (layout, s) = spans_of("  [ ]  ").unwrap();
        assert_eq!((layout, s.len()), (Layout::Array, 0));
    }

    #[test]
    fn lines_skip_blanks_and_trim_crlf() {
        let text = "\n{\"a\":1}\r\n  \n {\"b\": \"2\"} \n{\"c\":3}";
        let (layout, s) = spans_of(text).unwrap();
        assert_eq!(layout, Layout::Lines);
        assert_eq!(s, vec!["{\"a\":1}", "{\"b\": \"2\"}", "{\"c\":3}"]);
        assert_eq!(spans_of(" \n\t").unwrap().0, Layout::Empty);
        assert_eq!(spans_of("").unwrap().1.len(), 0);
    }

    #[test]
    fn limit_stops_early() {
        let (_, spans) = scan("[{\"a\":1},{\"b\":2},".as_bytes(), Some(1)).unwrap();
        assert_eq!(spans.len(), 1);
        let (_, spans) = scan("{\"a\":1}\n{\"b\":".as_bytes(), Some(1)).unwrap();
        assert_eq!(spans.len(), 1);
    }

    #[test]
    fn truncation_and_garbage_are_reported() {
        for (text, want) in [
            ("[{\"a\": 1}, {\"b\": \"unterminated", "unterminated string"),
            ("[{\"a\": 1}, {\"b\": 2", "ends inside this record"),
            ("[{\"a\": 1}, ", "closing `]`"),
            ("[{\"a\": 1}, ]", "trailing comma"),
            ("[{\"a\": 1},, {}]", "empty array element"),
            ("[{\"a\": 1]]", "mismatched"),
            ("[1] x", "after the closing"),
            ("hello", "expected a JSON array"),
        ] {
            let err = scan(text.as_bytes(), None).unwrap_err();
            let detail = match err {
                ScanError::Truncated { detail, .. } | ScanError::Syntax { detail, .. } => detail,
                ScanError::Io(e) => e.to_string(),
            };
            assert!(detail.contains(want), "{text:?}: {detail}");
        }
        match scan("[{}, {}, {\"x\": \"".as_bytes(), None).unwrap_err() {
            ScanError::Truncated { record, .. } => assert_eq!(record, Some(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        // A reader that hands out one byte at a time exercises every boundary.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[0];
                self.0 = &self.0[1..];
                Ok(1)
            }
        }
        let text = "[ {\"a\": \"x\\\\\\\"]\"}, {\"b\": [1, 2]} ]";
        let whole = scan(text.as_bytes(), None).unwrap();
        let bytewise = scan(OneByte(text.as_bytes()), None).unwrap();
        assert_eq!(whole.1, bytewise.1);
        assert_eq!(whole.1.len(), 2);
        let text = "{\"a\": 1}  \r\n\n{\"b\": 2}\n";
        assert_eq!(scan(text.as_bytes(), None).unwrap().1, scan(OneByte(text.as_bytes()), None).unwrap().1);
        let obj = "\n {\"x\": {\"y\": \"}\"}}\n{}";
        let span = first_object(OneByte(obj.as_bytes()), 1 << 20).unwrap().unwrap();
        assert_eq!(&obj[span.offset as usize..(span.offset + span.len) as usize], "{\"x\": {\"y\": \"}\"}}");
    }
}
