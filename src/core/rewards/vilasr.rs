//! ViLaSR scoring: the RL reward `gcot_compute_score` (protocol §3.1) and `eval/evaluate.py`
//! (protocol §3.2).

use super::mra::{mra_inclusive, mra_strict};
use super::pyfmt::{py_float, py_repr_str, py_round};
use super::{RewardParts, ScoreError};
use crate::core::actions;
use crate::core::prompts::{py_strip, IMAGE_TRIPLE, PY_WS};
use regex::Regex;
use std::sync::OnceLock;

/// Content of a parsed dialogue message.
#[derive(Clone, Debug, PartialEq)]
pub enum DialogContent {
    Text(String),
    /// A user turn: optional image stub, then its text.
    User { has_image: bool, text: String },
}

impl DialogContent {
    /// What Python's `str()` gives for this content (a list for user turns).
    pub fn py_str(&self) -> String {
        match self {
            DialogContent::Text(t) => t.clone(),
            DialogContent::User { has_image, text } => {
                let mut s = String::from("[");
                if *has_image {
                    s.push_str("{'type': 'image', 'image': 'image_path', 'nframes': 'args.max_frames'}, ");
                }
                s.push_str("{'type': 'text', 'text': ");
                s.push_str(&py_repr_str(text));
                s.push_str("}]");
                s
            }
        }
    }
}

/// One message of `parse_dialog`.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogMessage {
    pub role: &'static str,
    pub content: DialogContent,
}

/// ViLaSR `parse_dialog`: split on `<|im_start|>`/`<|im_end|>`, drop empty pieces (no strip),
/// system from a leading `system` piece (minus a first `system\n\n`), user and assistant pieces by
/// prefix, everything else dropped. Errors where the reference raises (no pieces at all).
pub fn parse_dialog(sequence: &str) -> Result<Vec<DialogMessage>, ScoreError> {
    // `re.split(r'<\|im_start\|>|<\|im_end\|>', …)`: a literal alternation, which the regex
    // crate searches with its SIMD prefilter (one pass instead of two `str::find`s per piece).
    let mut segments: Vec<&str> = Vec::new();
    let mut last = 0;
    for m in marker_re().find_iter(sequence) {
        segments.push(&sequence[last..m.start()]);
        last = m.end();
    }
    segments.push(&sequence[last..]);
    segments.retain(|s| !s.is_empty());
    let first = segments
        .first()
        .ok_or_else(|| ScoreError::ReferenceRaises("parse_dialog: the sequence has no text outside the chat markers (segments[0] raises IndexError)".into()))?;
    let mut out = Vec::new();
    let mut start = 0;
    if first.starts_with("system") {
        let sys = first.replacen("system\n\n", "", 1);
        start = 1;
        if !sys.is_empty() {
            out.push(DialogMessage { role: "system", content: DialogContent::Text(sys) });
        }
    }
    let triple_nl = format!("{IMAGE_TRIPLE}\n");
    for seg in &segments[start..] {
        if seg.starts_with("user") {
            let has_image = seg.contains(IMAGE_TRIPLE);
            let text = seg.replacen("user\n", "", 1).replacen(&triple_nl, "", 1);
            out.push(DialogMessage { role: "user", content: DialogContent::User { has_image, text } });
        } else if seg.starts_with("assistant") {
            out.push(DialogMessage { role: "assistant", content: DialogContent::Text(seg.replacen("assistant\n", "", 1)) });
        }
    }
    Ok(out)
}

/// `re.fullmatch(r'<think>(.*?)</think>\s*Action:\s*(.*?)(?=\n|$)', content, re.DOTALL)`:
/// starts with `<think>` and some later `</think>` is followed by optional whitespace and `Action:`.
pub fn think_action_fullmatch(content: &str) -> bool {
    let Some(rest) = content.strip_prefix("<think>") else { return false };
    let mut from = 0;
    while let Some(p) = rest[from..].find("</think>") {
        let after = &rest[from + p + 8..];
        if after.trim_start_matches(PY_WS).starts_with("Action:") {
            return true;
        }
        from += p + 8;
    }
    false
}

/// ViLaSR RL `format_reward`: (format ∈ {0, 1}, reflection ∈ {0, 1}, reason).
pub fn format_and_reflection(conv: &[DialogMessage]) -> Result<(f64, f64, String), ScoreError> {
    let n = conv.len();
    let mut total = String::new();
    let mut i = 2;
    while i < n {
        let content = match &conv[i].content {
            DialogContent::Text(t) => t,
            DialogContent::User { .. } => {
                return Err(ScoreError::ReferenceRaises(format!(
                    "format_reward: message {i} is a user turn (a list) where an assistant turn is expected; re.fullmatch raises TypeError"
                )))
            }
        };
        let has_open = content.contains("<answer>");
        let has_close = content.contains("</answer>");
        if !think_action_fullmatch(content) {
            return Ok((0.0, 0.0, format!("format 0: assistant turn {} does not match `<think>…</think> Action:` (must start with <think>)", i / 2)));
        }
        if i == n - 1 && !(has_open && has_close) {
            return Ok((0.0, 0.0, format!("format 0: the last turn ({}) lacks <answer>…</answer>", i / 2)));
        }
        if i != n - 1 && (has_open || has_close) {
            return Ok((0.0, 0.0, format!("format 0: non-final turn {} contains an answer tag", i / 2)));
        }
        total.push_str(content);
        i += 2;
    }
    let parsed = actions::reward_format_parse(&total).map_err(|e| ScoreError::ReferenceRaises(format!("format_reward: {e}")))?;
    if !parsed.ok {
        return Ok((0.0, 0.0, format!("format 0: {}", parsed.reason.unwrap_or_else(|| "a ```json block is invalid".into()))));
    }
    let reflection = match actions::reflection_flag(&parsed.boxes) {
        Ok(true) => 1.0,
        Ok(false) => 0.0,
        Err(e) => return Err(ScoreError::ReferenceRaises(format!("reflection: {e}"))),
    };
    let why = if reflection > 0.0 { "format 1; reflection: a label was redrawn with new coordinates" } else { "format 1" };
    Ok((1.0, reflection, why.to_string()))
}

fn marker_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<\|im_start\|>|<\|im_end\|>").unwrap())
}

fn answer_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<answer>\s*(.*?)\s*</answer>").unwrap())
}

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[-+]?\d*\.?\d+").unwrap())
}

/// `<answer>\s*(.*?)\s*</answer>` group 1, or `None`.
pub fn answer_tag(text: &str) -> Option<&str> {
    answer_re().captures(text).map(|c| c.get(1).unwrap().as_str())
}

/// RL `extract_answer`: tag content stripped, else the whole text stripped.
pub fn rl_extract(text: &str) -> &str {
    py_strip(answer_tag(text).unwrap_or(text))
}

/// RL `normalize_number`: first `[-+]?\d*\.?\d+` match as a float.
fn rl_number(s: &str) -> Option<f64> {
    let m = number_re().find(s)?;
    py_float(m.as_str().trim_end_matches('.'))
}

/// ViLaSR RL `accuracy_reward` on the last message's text (already `str()`-ed).
pub fn rl_accuracy(output: &str, ground_truth: &str, question_type: &str) -> f64 {
    let out = rl_extract(output);
    let gt = rl_extract(ground_truth);
    match question_type {
        "multiple choice" => {
            if py_strip(out) == py_strip(gt) {
                1.0
            } else {
                0.0
            }
        }
        "regression" | "numerical" => match (rl_number(gt), rl_number(out)) {
            (Some(g), Some(o)) => mra_strict(o, g),
            _ => 0.0,
        },
        _ => 0.0,
    }
}

/// ViLaSR RL reward on a decoded conversation (`gcot_compute_score`).
pub fn rl_score(sequence: &str, ground_truth: &str, question_type: &str) -> Result<RewardParts, ScoreError> {
    let conv = parse_dialog(sequence)?;
    let (format, reflection, why) = format_and_reflection(&conv)?;
    let last = conv
        .last()
        .ok_or_else(|| ScoreError::ReferenceRaises("the parsed conversation is empty (conversations[-1] raises IndexError)".into()))?;
    let accuracy = rl_accuracy(&last.content.py_str(), ground_truth, question_type);
    let acc_why = match &last.content {
        DialogContent::User { .. } => format!("accuracy {accuracy}: the conversation ends on a user turn"),
        DialogContent::Text(t) if answer_tag(t).is_none() => format!("accuracy {accuracy}: no <answer> tag; the whole last turn was scored"),
        _ => format!("accuracy {accuracy}"),
    };
    Ok(RewardParts::gated(format, accuracy, Some(reflection), vec![why, acc_why]))
}

/// `eval/evaluate.py` `extract_answer`: tag content stripped, else the whole text unstripped.
pub fn eval_extract(text: &str) -> &str {
    match answer_tag(text) {
        Some(t) => py_strip(t),
        None => text,
    }
}

fn eval_number(s: &str) -> Option<f64> {
    py_float(&s.replace(',', ""))
}

/// `parse_instruction`: comma-separated `key:value` pairs, `float(value)`; any malformed pair fails.
fn parse_vci(s: &str) -> Option<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for item in s.split(',') {
        let parts: Vec<&str> = item.split(':').collect();
        if parts.len() != 2 {
            return None;
        }
        let v = py_float(parts[1])?;
        // dict semantics: a repeated key keeps its first position, last value.
        if let Some(e) = out.iter_mut().find(|(k, _)| k == parts[0]) {
            e.1 = v;
        } else {
            out.push((parts[0].to_string(), v));
        }
    }
    Some(out)
}

/// The SPAR view-change score (`compute_vci_score`).
pub fn vci_score(out: &str, gt: &str) -> f64 {
    const PAIRS: [(&str, &str); 5] = [
        ("move_right", "move_left"),
        ("move_up", "move_down"),
        ("move_forward", "move_backward"),
        ("rotate_right", "rotate_left"),
        ("rotate_up", "rotate_down"),
    ];
    let (Some(a), Some(g)) = (parse_vci(out), parse_vci(gt)) else { return 0.0 };
    let get = |d: &[(String, f64)], k: &str| d.iter().find(|(x, _)| x == k).map(|(_, v)| *v).unwrap_or(0.0);
    let sum: f64 = PAIRS
        .iter()
        .map(|(p, n)| mra_inclusive(get(&a, p) - get(&a, n), get(&g, p) - get(&g, n)))
        .sum();
    sum / 5.0
}

/// `eval/evaluate.py` `reward_fn` (also ViLaVT `cal_metrics.py`).
pub fn eval_score(model_output: &str, ground_truth: &str, problem_type: &str) -> Result<f64, ScoreError> {
    let out = eval_extract(model_output);
    let gt = eval_extract(ground_truth);
    Ok(match problem_type {
        "multiple choice" => {
            let (Some(o), Some(g)) = (py_strip(out).chars().next(), py_strip(gt).chars().next()) else {
                return Err(ScoreError::ReferenceRaises("multiple choice: empty answer (`strip()[0]` raises IndexError)".into()));
            };
            if o.to_lowercase().eq(g.to_lowercase()) {
                1.0
            } else {
                0.0
            }
        }
        "numerical" => {
            let dec = |s: &str| s.contains('.') || s.contains(',');
            if dec(gt) != dec(out) {
                0.0
            } else {
                match (eval_number(gt), eval_number(out)) {
                    (Some(g), Some(o)) if py_round(g, 2) == py_round(o, 2) => 1.0,
                    _ => 0.0,
                }
            }
        }
        "regression" => match (eval_number(gt), eval_number(out)) {
            (Some(g), Some(o)) => mra_inclusive(o, g),
            _ => 0.0,
        },
        "vci" => vci_score(out, gt),
        _ => 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/reward_and_geometry_test_vectors.json")).unwrap()
    }

    #[test]
    fn rl_accuracy_vectors() {
        let v = vectors();
        for c in v["vilasr_rl_accuracy"].as_array().unwrap() {
            let got = rl_accuracy(c["final_turn"].as_str().unwrap(), c["gt"].as_str().unwrap(), c["type"].as_str().unwrap());
            assert_eq!(got, c["accuracy"].as_f64().unwrap(), "{c}");
        }
    }

    #[test]
    fn eval_score_vectors() {
        let v = vectors();
        for c in v["vilasr_eval_score"].as_array().unwrap() {
            let got = eval_score(c["model_output"].as_str().unwrap(), c["gt"].as_str().unwrap(), c["problem_type"].as_str().unwrap());
            match &c["score"] {
                serde_json::Value::String(s) if s.starts_with("EXCEPTION") => assert!(got.is_err(), "{c}"),
                s => assert_eq!(got.unwrap(), s.as_f64().unwrap(), "{c}"),
            }
        }
    }

    #[test]
    fn sequence_vectors() {
        let v = vectors();
        for c in v["vilasr_rl_score_on_sequences"].as_array().unwrap() {
            let got = rl_score(c["decoded_sequence"].as_str().unwrap(), c["gt"].as_str().unwrap(), c["question_type"].as_str().unwrap());
            let r = &c["result"];
            if r == "EXCEPTION" || r.is_string() {
                assert!(got.is_err(), "{}: {:?}", c["case"], got);
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{}: {e}", c["case"]));
            assert_eq!(got.overall, r["overall"].as_f64().unwrap(), "{}", c["case"]);
            assert_eq!(got.format, r["format"].as_f64().unwrap(), "{}", c["case"]);
            assert_eq!(got.accuracy, r["accuracy"].as_f64().unwrap(), "{}", c["case"]);
            assert_eq!(got.reflection.unwrap(), r["reflection"].as_f64().unwrap(), "{}", c["case"]);
        }
    }

    #[test]
    fn think_action_rule() {
        assert!(think_action_fullmatch("<think>a</think> Action: Answer\n<answer>B</answer>"));
        assert!(think_action_fullmatch("<think>a</think>x</think>\n Action:"));
        assert!(!think_action_fullmatch(" <think>a</think> Action: x"));
        assert!(!think_action_fullmatch("<think>a</think> Act: x"));
    }

    #[test]
    fn vci_and_numerical_rules() {
        assert_eq!(vci_score("move_right:1,rotate_up:2", "move_right:1,rotate_up:2"), 1.0);
        assert_eq!(vci_score("garbage", "move_right:1"), 0.0);
        assert_eq!(eval_score("3.141", "3.142", "numerical").unwrap(), 1.0);
        assert_eq!(eval_score("3", "3.0", "numerical").unwrap(), 0.0);
        assert_eq!(eval_score("1,234", "1234", "numerical").unwrap(), 0.0);
        assert!(eval_score("", "B", "multiple choice").is_err());
    }

    #[test]
    fn user_turn_is_stringified_like_python() {
        let c = DialogContent::User { has_image: true, text: "it's 5".into() };
        assert_eq!(c.py_str(), "[{'type': 'image', 'image': 'image_path', 'nframes': 'args.max_frames'}, {'type': 'text', 'text': \"it's 5\"}]");
        // RL regression picks the first number anywhere, even inside the stub list.
        assert_eq!(rl_accuracy(&c.py_str(), "5", "regression"), 1.0);
    }
}
