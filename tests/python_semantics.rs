//! Differential test of `sightline::core::pyliteral` and `sightline::core::actions` against
//! CPython: `tests/fixtures/pyliteral_cases.json` holds inputs and what CPython 3.11.7 (and
//! verbatim copies of the reference functions) produced for them — `ast.literal_eval`,
//! `json.loads`, ViLaSR `parse_json`/`parse_bbox_and_movement` (executor and RL-reward variants,
//! with the reward's reflection check), ViLaVT rollout `parse_output`, the ViLaVT per-message
//! format rule, and Python `==`/`in`/iteration/ordering/`float()`/`repr()`/hashing.
//! The fixture header names the Python version and the recursion budgets measured where the
//! generator called the functions.

use serde_json::Value;
use sightline::core::actions::{self, BlockMode, VilavtParse};
use sightline::core::pyliteral::{self, float_repr, CompareOp, LiteralErrorKind, PyValue};

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pyliteral_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn src(case: &Value) -> String {
    if let Some(s) = case.get("src").and_then(Value::as_str) {
        return s.to_string();
    }
    case["gen"]
        .as_array()
        .expect("src or gen")
        .iter()
        .map(|p| p[0].as_str().unwrap().repeat(p[1].as_u64().unwrap() as usize))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Does the tagged CPython value `e` equal `v` (types, exact float/complex reprs, order except
/// inside sets)?
fn matches(e: &Value, v: &PyValue) -> bool {
    let tag = e[0].as_str().unwrap_or("");
    match (tag, v) {
        ("n", PyValue::None) | ("e", PyValue::Ellipsis) => true,
        ("b", PyValue::Bool(b)) => e[1].as_bool() == Some(*b),
        ("i", PyValue::Int(i)) => e[1].as_str() == Some(i.to_string().as_str()),
        ("i", PyValue::BigInt(s)) => e[1].as_str() == Some(s.as_str()),
        ("f", PyValue::Float(f)) => e[1].as_str() == Some(float_repr(*f).as_str()),
        ("c", PyValue::Complex { re, im }) => {
            e[1].as_str() == Some(float_repr(*re).as_str()) && e[2].as_str() == Some(float_repr(*im).as_str())
        }
        ("s", PyValue::Str(s)) => e[1].as_str() == Some(s.as_str()),
        ("y", PyValue::Bytes(b)) => e[1].as_str() == Some(hex(b).as_str()),
        ("t", PyValue::Tuple(x)) | ("l", PyValue::List(x)) => {
            let items = e[1].as_array().unwrap();
            items.len() == x.len() && items.iter().zip(x).all(|(a, b)| matches(a, b))
        }
        ("S", PyValue::Set(x)) => {
            let items = e[1].as_array().unwrap();
            let mut used = vec![false; x.len()];
            items.len() == x.len()
                && items.iter().all(|a| match (0..x.len()).find(|&i| !used[i] && matches(a, &x[i])) {
                    Some(i) => {
                        used[i] = true;
                        true
                    }
                    None => false,
                })
        }
        ("d", PyValue::Dict(x)) => {
            let items = e[1].as_array().unwrap();
            items.len() == x.len() && items.iter().zip(x).all(|(kv, (k, v))| matches(&kv[0], k) && matches(&kv[1], v))
        }
        _ => false,
    }
}

fn all_match(e: &Value, v: &[PyValue]) -> bool {
    let items = e.as_array().unwrap();
    items.len() == v.len() && items.iter().zip(v).all(|(a, b)| matches(a, b))
}

fn short(s: &str) -> String {
    let t: String = s.chars().take(100).collect();
    if t.len() < s.len() {
        format!("{t:?}…({} chars)", s.chars().count())
    } else {
        format!("{t:?}")
    }
}

fn report(section: &str, bad: &[String], total: usize) {
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(25).collect();
        panic!("{section}: {} of {total} cases differ from CPython:\n{}", bad.len(), shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"));
    }
}

#[test]
fn fixture_header_names_python() {
    let f = fixture();
    assert!(f["header"]["python"].as_str().unwrap().starts_with("3.11"), "the fixture must come from CPython 3.11");
}

#[test]
fn literal_eval_matches_cpython() {
    let f = fixture();
    let budget = f["header"]["ast_depth_budget"].as_u64().unwrap() as usize;
    let cases = f["literal_eval"].as_array().unwrap();
    let mut bad = Vec::new();
    let mut unsupported = 0;
    for c in cases {
        let s = src(c);
        let got = pyliteral::literal_eval_with_budget(&s, budget);
        if let Err(e) = &got {
            if e.kind == LiteralErrorKind::Unsupported {
                unsupported += 1; // \N{NAME}: documented divergence
                continue;
            }
        }
        match (c.get("exc").and_then(Value::as_str), &got) {
            (Some(exc), Err(e)) if e.kind.python_exception() == exc => {}
            (Some(exc), _) => bad.push(format!("{}: CPython raised {exc}, got {:?}", short(&s), got.as_ref().map(|v| v.py_repr()))),
            (None, Ok(v)) => {
                if let Some(enc) = c.get("ok") {
                    if !matches(enc, v) {
                        bad.push(format!("{}: value {} does not match {}", short(&s), v.py_repr(), enc));
                        continue;
                    }
                }
                if let Some(r) = c.get("repr").and_then(Value::as_str) {
                    if v.py_repr() != r {
                        bad.push(format!("{}: repr {} != CPython {}", short(&s), short(&v.py_repr()), short(r)));
                    }
                }
            }
            (None, Err(e)) => bad.push(format!("{}: CPython parsed it, got {e} ({:?})", short(&s), e.kind)),
        }
    }
    assert!(unsupported <= 3, "too many Unsupported results: {unsupported}");
    report("literal_eval", &bad, cases.len());
}

#[test]
fn json_loads_matches_cpython() {
    let f = fixture();
    let depth = f["header"]["json_depth_limit"].as_u64().unwrap() as usize;
    let cases = f["json_loads"].as_array().unwrap();
    let mut bad = Vec::new();
    for c in cases {
        let s = src(c);
        let got = pyliteral::json_loads_with_depth(&s, depth);
        match (c.get("exc").and_then(Value::as_str), &got) {
            (Some(exc), Err(e)) if e.kind.python_exception() == exc => {
                if let Some(msg) = c.get("msg").and_then(Value::as_str) {
                    if e.to_string() != msg {
                        bad.push(format!("{}: message {:?} != CPython {:?}", short(&s), e.to_string(), msg));
                    }
                }
            }
            (Some(exc), _) => bad.push(format!("{}: CPython raised {exc}, got {:?}", short(&s), got.as_ref().map(|v| v.py_repr()))),
            (None, Ok(v)) => {
                if let Some(enc) = c.get("ok") {
                    if !matches(enc, v) {
                        bad.push(format!("{}: value {} does not match {}", short(&s), v.py_repr(), enc));
                    }
                }
                if let Some(r) = c.get("repr").and_then(Value::as_str) {
                    if v.py_repr() != r {
                        bad.push(format!("{}: repr differs", short(&s)));
                    }
                }
            }
            (None, Err(e)) => bad.push(format!("{}: CPython parsed it, got {e}", short(&s))),
        }
    }
    report("json.loads", &bad, cases.len());
}

#[test]
fn responses_match_reference_parsers() {
    let f = fixture();
    let cases = f["responses"].as_array().unwrap();
    let mut bad = Vec::new();
    let mut skipped = 0;
    for c in cases {
        let r = src(c);
        // `\N{NAME}` escapes are a documented divergence (no Unicode name database).
        if actions::extract_json_blocks(&r, BlockMode::Reward)
            .iter()
            .chain(actions::extract_json_blocks(&r, BlockMode::Executor).iter())
            .any(|b| matches!(pyliteral::literal_eval(&b.text), Err(e) if e.kind == LiteralErrorKind::Unsupported))
        {
            skipped += 1;
            continue;
        }
        let texts = |m| actions::extract_json_blocks(&r, m).into_iter().map(|b| b.text).collect::<Vec<_>>();
        let want = |k: &str| c[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>();
        if texts(BlockMode::Executor) != want("blocks_executor") {
            bad.push(format!("{}: executor blocks {:?} != {:?}", short(&r), texts(BlockMode::Executor), want("blocks_executor")));
        }
        if texts(BlockMode::Reward) != want("blocks_reward") {
            bad.push(format!("{}: reward blocks differ", short(&r)));
        }
        // executor parse_bbox_and_movement
        let ex = &c["executor"];
        match (ex.get("exc").and_then(Value::as_str), actions::parse_actions(&r, BlockMode::Executor)) {
            (Some(exc), Err(e)) if e.python_exception == exc => {}
            (Some(exc), got) => bad.push(format!("{}: executor: CPython raised {exc}, got {got:?}", short(&r))),
            (None, Ok(p)) => {
                if !all_match(&ex["boxes"], &p.boxes) || !all_match(&ex["lines"], &p.lines) {
                    bad.push(format!("{}: executor boxes/lines differ: {:?} / {:?}", short(&r), p.boxes, p.lines));
                }
            }
            (None, Err(e)) => bad.push(format!("{}: executor: CPython returned, got {e}", short(&r))),
        }
        // reward parse + reflection
        let rw = &c["reward"];
        match (rw.get("exc").and_then(Value::as_str), actions::reward_format_parse(&r)) {
            (Some(exc), Err(e)) if e.python_exception == exc => {}
            (Some(exc), got) => bad.push(format!("{}: reward: CPython raised {exc}, got {got:?}", short(&r))),
            (None, Ok(p)) => {
                if rw["ok"].as_bool() != Some(p.ok) {
                    bad.push(format!("{}: reward ok {} != CPython {} ({:?})", short(&r), p.ok, rw["ok"], p.reason));
                }
                if !all_match(&rw["boxes"], &p.boxes) || !all_match(&rw["lines"], &p.lines) {
                    bad.push(format!("{}: reward boxes/lines differ", short(&r)));
                }
                let refl = actions::reflection_flag(&p.boxes);
                match (&rw["reflection"], refl) {
                    (Value::Bool(b), Ok(x)) if *b == x => {}
                    (Value::Object(o), Err(e)) if o.get("exc").and_then(Value::as_str) == Some(e.exc.name()) => {}
                    (want, got) => bad.push(format!("{}: reflection {got:?} != CPython {want}", short(&r))),
                }
            }
            (None, Err(e)) => bad.push(format!("{}: reward: CPython returned, got {e}", short(&r))),
        }
    }
    assert!(skipped <= 2, "too many responses skipped: {skipped}");
    report("responses", &bad, cases.len());
}

#[test]
fn vilavt_parse_matches_rollout() {
    let f = fixture();
    let cases = f["vilavt_parse"].as_array().unwrap();
    let mut bad = Vec::new();
    for c in cases {
        let t = src(c);
        let got = actions::parse_vilavt_tool(&t);
        let ok = match (&got, c.get("exc"), c.get("value"), c.get("repr")) {
            (VilavtParse::Raised { exception, .. }, Some(exc), _, _) => exc.as_str() == Some(exception.as_str()),
            (VilavtParse::NoneResult { .. }, None, Some(Value::Null), _) => true,
            (VilavtParse::Parsed { value, .. }, None, Some(enc), _) if !enc.is_null() => matches(enc, value),
            (VilavtParse::Parsed { value, .. }, None, None, Some(r)) => r.as_str() == Some(value.py_repr().as_str()),
            _ => false,
        };
        if !ok {
            bad.push(format!("{}: got {got:?}, CPython {c}", short(&t)));
        }
    }
    report("vilavt parse_output", &bad, cases.len());
}

#[test]
fn vilavt_format_matches_reward() {
    let f = fixture();
    let cases = f["vilavt_format"].as_array().unwrap();
    let mut bad = Vec::new();
    for c in cases {
        let t = src(c);
        let got = actions::vilavt_tool_format_ok(&t);
        if got.is_ok() != c["ok"].as_bool().unwrap() {
            bad.push(format!("{}: got {got:?}, CPython format {}", short(&t), c["ok"]));
        }
    }
    report("vilavt format", &bad, cases.len());
}

#[test]
fn value_semantics_match_cpython() {
    let f = fixture();
    let cases = f["semantics"].as_array().unwrap();
    let mut bad = Vec::new();
    for c in cases {
        let (op, a, b, res) = (c[0].as_str().unwrap(), c[1].as_str().unwrap(), c[2].as_str(), &c[3]);
        let x = pyliteral::literal_eval(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        let y = b.map(|b| pyliteral::literal_eval(b).unwrap_or_else(|e| panic!("{b}: {e}")));
        let want_exc = res.get("exc").and_then(Value::as_str);
        let exc_ok = |name: &str| want_exc == Some(name);
        let ok = match op {
            "iter" => match x.py_iter() {
                Ok(items) => all_match(&res["ok"], &items),
                Err(e) => exc_ok(e.exc.name()),
            },
            "float" => match x.py_float() {
                Ok(v) => res["ok"].as_str() == Some(float_repr(v).as_str()),
                Err(e) => exc_ok(e.exc.name()),
            },
            "repr" => res["ok"].as_str() == Some(x.py_repr().as_str()) && res["str"].as_str() == Some(x.py_str().as_str()),
            "hash" => match x.py_key() {
                Ok(_) => res["ok"].as_bool() == Some(true),
                Err(e) => exc_ok(e.exc.name()),
            },
            "eq" => res["ok"].as_bool() == Some(x.py_eq(y.as_ref().unwrap())),
            "contains" => match x.py_contains(y.as_ref().unwrap()) {
                Ok(v) => res["ok"].as_bool() == Some(v),
                Err(e) => exc_ok(e.exc.name()),
            },
            "ge" | "lt" => {
                let cmp = if op == "ge" { CompareOp::Ge } else { CompareOp::Lt };
                match x.py_compare(y.as_ref().unwrap(), cmp) {
                    Ok(v) => res["ok"].as_bool() == Some(v),
                    Err(e) => exc_ok(e.exc.name()),
                }
            }
            "samekey" => match (x.py_key(), y.as_ref().unwrap().py_key()) {
                (Ok(k1), Ok(k2)) => res["ok"].as_bool() == Some(k1 == k2),
                _ => exc_ok("TypeError"),
            },
            other => panic!("unknown op {other}"),
        };
        if !ok {
            bad.push(format!("{op}({a}, {b:?}): CPython {res}"));
        }
    }
    report("value semantics", &bad, cases.len());
}
