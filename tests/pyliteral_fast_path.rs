//! Differential test of the `literal_eval` fast path (`sightline::core::pyliteral::literal_eval_fast`)
//! against the full evaluator (`literal_eval_full`): wherever the fast path accepts an input, its
//! value must be identical to the full evaluator's `Ok` value — structurally (floats compared
//! bit for bit) and by `repr` — and the fast path never reports an error of its own (it can only
//! decline, after which `literal_eval` runs the full evaluator, so errors are unchanged).
//!
//! Inputs: every source in `tests/fixtures/pyliteral_cases.json` (CPython-generated), every
//! ```` ```json ```` block of the fixture responses, blocks in the benchmark's shapes
//! (`benches/core_throughput.rs`: box and line items, the `true` and `# boxes` malformed variants)
//! plus, when present, the blocks of the benchmark corpus in `target/bench-corpus/`, and a few
//! hundred thousand random mutations of typical blocks (fixed seeds).

use serde_json::Value;
use sightline::core::actions::{extract_json_blocks, BlockMode};
use sightline::core::pyliteral::{literal_eval, literal_eval_fast, literal_eval_full, PyValue};

/// Structural equality with floats compared by bits (the derived `PartialEq` has `0.0 == -0.0`).
fn same(a: &PyValue, b: &PyValue) -> bool {
    use PyValue::*;
    match (a, b) {
        (Float(x), Float(y)) => x.to_bits() == y.to_bits(),
        (Complex { re: a, im: b }, Complex { re: c, im: d }) => a.to_bits() == c.to_bits() && b.to_bits() == d.to_bits(),
        (Tuple(x), Tuple(y)) | (List(x), List(y)) | (Set(x), Set(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        (Dict(x), Dict(y)) => x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2)),
        _ => a == b,
    }
}

#[derive(Default)]
struct Stats {
    checked: usize,
    accepted: usize,
}

/// Run both evaluators on `src`; panics on any difference. Returns whether the fast path accepted.
fn check(src: &str, stats: &mut Stats) -> bool {
    stats.checked += 1;
    let Some(fast) = literal_eval_fast(src) else { return false };
    stats.accepted += 1;
    match literal_eval_full(src) {
        Ok(full) => {
            assert!(same(&fast, &full), "fast path value differs for {src:?}:\n fast {fast:?}\n full {full:?}");
            assert_eq!(fast.py_repr(), full.py_repr(), "repr differs for {src:?}");
            // And the public entry point agrees as well.
            let public = literal_eval(src).expect("literal_eval");
            assert!(same(&public, &full), "literal_eval differs for {src:?}");
        }
        Err(e) => panic!("fast path accepted {src:?} as {fast:?}, the full evaluator raises {e}"),
    }
    true
}

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pyliteral_cases.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read fixture")).expect("fixture is JSON")
}

fn fixture_src(case: &Value) -> Option<String> {
    if let Some(s) = case.get("src").and_then(Value::as_str) {
        return Some(s.to_string());
    }
    let parts = case.get("gen")?.as_array()?;
    Some(parts.iter().map(|p| p[0].as_str().unwrap().repeat(p[1].as_u64().unwrap() as usize)).collect())
}

/// splitmix64, as in the benchmark.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const LABELS: &[&str] = &["chair", "table 2", "red cup", "ceiling light", "path 1", "it's", "a \\\"b\\\"", "tab\there", "x # not a comment", ""];

/// A box or line item in the benchmark's format, with some variation in quoting and numbers.
fn item(rng: &mut Rng) -> String {
    let label = *rng.pick(LABELS);
    let num = |rng: &mut Rng| -> String {
        match rng.below(10) {
            0 => format!("{}.{}", rng.range(0, 999), rng.range(0, 99)),
            1 => format!("-{}", rng.range(0, 50)),
            2 => "0".into(),
            _ => rng.range(0, 999).to_string(),
        }
    };
    let mut s = if rng.below(3) == 0 {
        format!(
            "{{\"index\": {}, \"start_point_2d\": [{}, {}], \"end_point_2d\": [{}, {}], \"label\": \"{label}\"}}",
            rng.range(0, 20),
            num(rng),
            num(rng),
            num(rng),
            num(rng)
        )
    } else {
        format!("{{\"index\": {}, \"bbox_2d\": [{}, {}, {}, {}], \"label\": \"{label}\"}}", rng.range(0, 20), num(rng), num(rng), num(rng), num(rng))
    };
    if rng.below(8) == 0 && !label.contains('\'') && !label.contains('\\') {
        s = s.replace('"', "'");
    }
    s
}

/// A block in the benchmark's layout (`[\n    item,\n    item\n]\n`) or a compact one.
fn block(rng: &mut Rng, max_items: i64) -> String {
    let items: Vec<String> = (0..rng.range(1, max_items)).map(|_| item(rng)).collect();
    match rng.below(4) {
        0 => format!("[{}]", items.join(", ")),
        1 => format!("[  # boxes\n    {},\n]\n", items.join(",\n    ")),
        _ => format!("[\n    {}\n]\n", items.join(",\n    ")),
    }
}

/// Hand-picked shapes around the edges of the accepted subset.
const EXTRA: &[&str] = &[
    "[]", "()", "{}", "(1)", "(1,)", "(1, 2,)", "((1, 2), [3.5, -0.0])", "[True, False, None]", "None", "-0", "-0.0", "0.0",
    "123456789012345678", "1234567890123456789", "-999999999999999999", "1.7976931348623157", "0.1000000000000000055511151231257827",
    "{'a': 1, 'a': 2, 'b': 3, 'a': 4}", "{'a': 1, \"a\": 2}", "{'k': {'k': {'k': [1]}}}", "'a' 'b'", "'''x'''", "\"\"\"x\"\"\"", "''", "\"\"",
    "'\\n\\t\\r\\\\\\'\\\"'", "'\\x41'", "'\\q'", "'a\\\nb'", "[1,\n2]", "[1]\n", "[1]\n\n", "[1]  ", "[1] # c", "[1] # c\n\n", "[1]\n  ",
    "[1]\n  \n", "[1]\n# c\n", " \t[1]", "\n[1]", "[1,,2]", "[,]", "(,)", "{,}", "{1: 2}", "{(1, 2): 3}", "{'a'}", "{'a': 1,}", "[1 2]",
    "1, 2", "-1", "- 1", "+1", "--1", "1e5", "1.5e3", "1j", "1_0", "1.", ".5", "00", "01", "0x1", "1.2.3", "True.real", "Truex", "true",
    "null", "[...]", "[1]\r\n", "[1\r\n]", "[1\x0c]", "[1\0]", "'\0'", "[\"é\"]", "#c\n[1]", "[1][0]", "(1)(2)", "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]",
    "[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]", "[1 if 1 else 2]", "[1if 1 else 2]", "[1or 2]", "{'a':1}", "{'a' : 1 , 'b' :2}",
];

#[test]
fn fast_path_matches_full_evaluator() {
    let mut stats = Stats::default();

    // 1. Every fixture input.
    let fx = fixture();
    for case in fx["literal_eval"].as_array().unwrap() {
        if let Some(s) = fixture_src(case) {
            check(&s, &mut stats);
        }
    }
    for case in fx["responses"].as_array().unwrap() {
        let src = case["src"].as_str().unwrap();
        check(src, &mut stats);
        for mode in [BlockMode::Reward, BlockMode::Executor] {
            for b in extract_json_blocks(src, mode) {
                check(&b.text, &mut stats);
            }
        }
    }
    for key in ["vilavt_parse", "vilavt_format", "json_loads"] {
        for case in fx[key].as_array().unwrap() {
            if let Some(s) = fixture_src(case) {
                check(&s, &mut stats);
            }
        }
    }
    for s in EXTRA {
        check(s, &mut stats);
    }
    let fixture_accepted = stats.accepted;
    assert!(fixture_accepted > 100, "the fast path accepted only {fixture_accepted} fixture inputs");

    // 2. Blocks in the benchmark's shapes: every well-formed one must take the fast path.
    let mut rng = Rng(0x5EED_FA57);
    for _ in 0..3000 {
        let b = block(&mut rng, 5);
        assert!(check(&b, &mut stats), "the fast path declined a well-formed block: {b:?}");
    }
    for bad in ["[{\"index\": 1, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"x\", \"visible\": true}]\n", "[  # boxes\n    {\"index\": 1}\n"] {
        assert!(!check(bad, &mut stats));
    }
    //    The benchmark corpus itself, when it has been generated (`cargo bench --bench core_throughput`).
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-corpus");
    for name in ["vilasr_rl.json", "render.json"] {
        let Ok(text) = std::fs::read_to_string(corpus.join(name)) else {
            eprintln!("note: {} not found; skipping the corpus blocks", corpus.join(name).display());
            continue;
        };
        let v: Value = serde_json::from_str(&text).expect("corpus JSON");
        let mut texts = Vec::new();
        collect_strings(&v, &mut texts);
        let mut n = 0;
        for t in texts.iter().filter(|t| t.contains("```json")) {
            for b in extract_json_blocks(t, BlockMode::Reward) {
                check(&b.text, &mut stats);
                n += 1;
            }
        }
        eprintln!("{name}: {n} corpus blocks checked");
    }

    // 3. Random mutations of typical blocks, on two threads.
    const MUTANTS: usize = 300_000;
    let results: Vec<Stats> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64).map(|t| s.spawn(move || mutate_and_check(0xD1FF_0000 + t, MUTANTS / 2))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (m_checked, m_accepted) = results.iter().fold((0, 0), |(c, a), r| (c + r.checked, a + r.accepted));
    eprintln!(
        "fast path: {} inputs checked ({} accepted) before mutation; {m_checked} mutants, {m_accepted} accepted",
        stats.checked, stats.accepted
    );
    // The mutants must exercise both outcomes substantially.
    assert!(m_accepted > m_checked / 10 && m_accepted < m_checked * 9 / 10, "{m_accepted} of {m_checked} mutants accepted");
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// Pieces inserted by mutations: the fast path's delimiters, things just outside its subset, and
/// bytes it must decline.
const PIECES: &[&str] = &[
    "\"", "'", "\\", "#", ",", ":", "[", "]", "(", ")", "{", "}", "-", "+", ".", "0", "1", "9", "e", "E", "j", "x", "_", " ", "\t", "\n",
    "\r", "\x0c", "\0", "\x01", "\x7f", "é", "\u{2028}", "True", "False", "None", "true", "null", "...", "1e5", "\"\"\"", "'''", "\\n",
    "\\x41", "\\u00e9", "#c\n", " if ", "*", "**", "{}", "()", "[]", "set()", "00", "1.5", "-0.0", "\\\n", "\n  ", ",,",
    "123456789012345678", "9999999999999999999",
];

fn mutate_and_check(seed: u64, n: usize) -> Stats {
    let mut rng = Rng(seed);
    let mut stats = Stats::default();
    for _ in 0..n {
        let mut s = if rng.below(4) == 0 { EXTRA[rng.below(EXTRA.len())].to_string() } else { block(&mut rng, 2) };
        for _ in 0..rng.range(1, 3) {
            mutate(&mut rng, &mut s);
        }
        check(&s, &mut stats);
    }
    stats
}

fn mutate(rng: &mut Rng, s: &mut String) {
    // Char boundaries, so that mutations keep the text valid UTF-8.
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect();
    let k = rng.below(bounds.len());
    let p = bounds[k];
    // A range of up to `max` chars starting at `p`.
    let span = |rng: &mut Rng, max: usize| bounds[(k + rng.below(max + 1)).min(bounds.len() - 1)];
    match rng.below(6) {
        0 | 1 => {
            let piece = PIECES[rng.below(PIECES.len())];
            s.insert_str(p, piece);
        }
        2 => {
            let e = span(rng, 4);
            s.replace_range(p..e, "");
        }
        3 => {
            let e = span(rng, 3);
            let piece = PIECES[rng.below(PIECES.len())];
            s.replace_range(p..e, piece);
        }
        4 => {
            let e = span(rng, 12);
            let piece = s[p..e].to_string();
            let q = bounds[rng.below(bounds.len())];
            s.insert_str(q, &piece);
        }
        _ => s.truncate(p),
    }
}
