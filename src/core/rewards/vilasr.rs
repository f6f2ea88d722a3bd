//! ViLaSR scoring: the RL reward `gcot_compute_score` (protocol §3.1) and `eval/evaluate.py`
//! (protocol §3.2).

use super::mra::{mra_inclusive, mra_strict};
use super::pyfmt::{py_float, py_repr_str, py_round};
use super::{RewardParts, ScoreError};
use crate::core::actions;
use crate::core::prompts::{py_strip, IMAGE_TRIPLE};
use crate::core::pyliteral::py_isspace;
use regex::Regex;
use std::borrow::Cow;
use std::sync::OnceLock;


/// Content of a parsed dialogue message. Borrows from the decoded sequence; owned only where
/// `parse_dialog` removed a prefix in the middle of the text (`replace(…, "", 1)` not at the start).
#[derive(Clone, Debug, PartialEq)]
pub enum DialogContent<'a> {
    Text(Cow<'a, str>),
    /// A user turn: optional image stub, then its text.
    User { has_image: bool, text: Cow<'a, str> },
}

impl DialogContent<'_> {
    /// What Python's `str()` gives for this content (a list for user turns).
    pub fn py_str(&self) -> Cow<'_, str> {
        match self {
            DialogContent::Text(t) => Cow::Borrowed(t),
            DialogContent::User { has_image, text } => {
                let mut s = String::from("[");
                if *has_image {
                    s.push_str("{'type': 'image', 'image': 'image_path', 'nframes': 'args.max_frames'}, ");
                }
                s.push_str("{'type': 'text', 'text': ");
                s.push_str(&py_repr_str(text));
                s.push_str("}]");
                Cow::Owned(s)
            }
        }
    }
}

/// One message of `parse_dialog`.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogMessage<'a> {
    pub role: &'static str,
    pub content: DialogContent<'a>,
}

/// `re.split(r'<\|im_start\|>|<\|im_end\|>', sequence)`.
fn split_chat_markers(sequence: &str) -> Vec<&str> {
    // `re.split(r'<\|im_start\|>|<\|im_end\|>', …)`: the leftmost occurrence of either marker,
    // then the next one after it (non-overlapping, like `re`). Each marker is found with its own
    // SIMD `memmem` searcher (a whole marker has rarer byte pairs than a shared `<|im_` prefix);
    // the next position of each is cached until the scan passes it.
    const START: &[u8] = b"<|im_start|>";
    const END: &[u8] = b"<|im_end|>";
    let bytes = sequence.as_bytes();
    let find = |f: &memchr::memmem::Finder<'_>, from: usize| f.find(&bytes[from..]).map(|p| p + from);
    let mut segments: Vec<&str> = Vec::with_capacity(16);
    let mut last = 0;
    let mut next_start = find(finder!(START), 0);
    let mut next_end = find(finder!(END), 0);
    loop {
        let (p, len) = match (next_start, next_end) {
            (Some(s), Some(e)) if s < e => (s, START.len()),
            (_, Some(e)) => (e, END.len()),
            (Some(s), None) => (s, START.len()),
            (None, None) => break,
        };
        segments.push(&sequence[last..p]);
        last = p + len;
        // The two markers cannot overlap each other, so a cached position before `last` is
        // the one just consumed.
        if next_start.is_some_and(|s| s < last) {
            next_start = find(finder!(START), last);
        }
        if next_end.is_some_and(|e| e < last) {
            next_end = find(finder!(END), last);
        }
    }
    segments.push(&sequence[last..]);
    segments
}

/// ViLaSR `parse_dialog`: split on `<|im_start|>`/`<|im_end|>`, drop empty pieces (no strip),
/// system from a leading `system` piece (minus a first `system\n\n`), user and assistant pieces by
/// prefix, everything else dropped. Errors where the reference raises (no pieces at all).
pub fn parse_dialog(sequence: &str) -> Result<Vec<DialogMessage<'_>>, ScoreError> {
    let mut segments = split_chat_markers(sequence);
    segments.retain(|s| !s.is_empty());
    let first = segments
        .first()
        .ok_or_else(|| ScoreError::ReferenceRaises("parse_dialog: the sequence has no text outside the chat markers (segments[0] raises IndexError)".into()))?;
    let mut out = Vec::with_capacity(segments.len());
    let mut start = 0;
    if first.starts_with("system") {
        let sys = replace_first(first, finder!(b"system\n\n"));
        start = 1;
        if !sys.is_empty() {
            out.push(DialogMessage { role: "system", content: DialogContent::Text(sys) });
        }
    }
    for seg in &segments[start..] {
        if seg.starts_with("user") {
            let has_image = finder!(IMAGE_TRIPLE.as_bytes()).find(seg.as_bytes()).is_some();
            // `.replace("user\n", "", 1).replace(f"{IMAGE_TRIPLE}\n", "", 1)`, in that order (the
            // first removal can in principle create an occurrence of the second pattern).
            let text = match replace_first(seg, finder!(b"user\n")) {
                Cow::Borrowed(t) => replace_first(t, finder!(IMAGE_TRIPLE_NL.as_bytes())),
                Cow::Owned(t) => Cow::Owned(replace_first(&t, finder!(IMAGE_TRIPLE_NL.as_bytes())).into_owned()),
            };
            out.push(DialogMessage { role: "user", content: DialogContent::User { has_image, text } });
        } else if seg.starts_with("assistant") {
            out.push(DialogMessage { role: "assistant", content: DialogContent::Text(replace_first(seg, finder!(b"assistant\n"))) });
        }
    }
    Ok(out)
}

/// `IMAGE_TRIPLE` followed by a newline, as `parse_dialog` removes it from user turns.
const IMAGE_TRIPLE_NL: &str = "<|vision_start|><|image_pad|><|vision_end|>\n";

/// Python `s.replace(pat, "", 1)` (`pat` non-empty): borrowed when `pat` does not occur or
/// occurs at the very start (the common case: a role line), copied only when it is in the middle.
fn replace_first<'a>(s: &'a str, pat: &memchr::memmem::Finder<'_>) -> Cow<'a, str> {
    let pat_len = pat.needle().len();
    match pat.find(s.as_bytes()) {
        None => Cow::Borrowed(s),
        Some(0) => Cow::Borrowed(&s[pat_len..]),
        Some(p) => {
            let mut out = String::with_capacity(s.len() - pat_len);
            out.push_str(&s[..p]);
            out.push_str(&s[p + pat_len..]);
            Cow::Owned(out)
        }
    }
}

/// `re.fullmatch(r'<think>(.*?)</think>\s*Action:\s*(.*?)(?=\n|$)', content, re.DOTALL)`:
/// starts with `<think>` and some later `</think>` is followed by optional whitespace and `Action:`.
pub fn think_action_fullmatch(content: &str) -> bool {
    let Some(rest) = content.strip_prefix("<think>") else { return false };
    let mut from = 0;
    while let Some(p) = finder!(b"</think>").find(&rest.as_bytes()[from..]) {
        let after = &rest[from + p + 8..];
        if after.trim_start_matches(py_isspace).starts_with("Action:") {
            return true;
        }
        from += p + 8;
    }
    false
}

/// ViLaSR RL `format_reward`: (format ∈ {0, 1}, reflection ∈ {0, 1}, reason).
pub fn format_and_reflection(conv: &[DialogMessage]) -> Result<(f64, f64, String), ScoreError> {
    let n = conv.len();
    // `''.join(contents)`: borrowed while there is a single turn, built only for two or more.
    let mut total: Cow<'_, str> = Cow::Borrowed("");
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
        let has_open = finder!(b"<answer>").find(content.as_bytes()).is_some();
        let has_close = finder!(b"</answer>").find(content.as_bytes()).is_some();
        if !think_action_fullmatch(content) {
            return Ok((0.0, 0.0, format!("format 0: assistant turn {} does not match `<think>…</think> Action:` (must start with <think>)", i / 2)));
        }
        if i == n - 1 && !(has_open && has_close) {
            return Ok((0.0, 0.0, format!("format 0: the last turn ({}) lacks <answer>…</answer>", i / 2)));
        }
        if i != n - 1 && (has_open || has_close) {
            return Ok((0.0, 0.0, format!("format 0: non-final turn {} contains an answer tag", i / 2)));
        }
        if i == 2 {
            total = Cow::Borrowed(content);
        } else {
            total.to_mut().push_str(content);
        }
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

/// The regex that [`answer_tag`] implements by hand (kept as the test oracle).
#[cfg(test)]
fn answer_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<answer>\s*(.*?)\s*</answer>").unwrap())
}

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[-+]?\d*\.?\d+").unwrap())
}

/// `<answer>\s*(.*?)\s*</answer>` (DOTALL) group 1, or `None`.
///
/// Done without the regex engine: a match exists iff some `</answer>` follows the first
/// `<answer>`, and then it starts at that first `<answer>` and ends at the first `</answer>` after
/// it. The greedy leading `\s*` takes all leading whitespace and the lazy `.*?` stops where only
/// whitespace remains before that `</answer>`, so group 1 is the text in between with Unicode
/// whitespace (`\s` = `White_Space` = `char::is_whitespace`) trimmed on both sides.
/// `tests::answer_tag_matches_regex` checks this against the regex.
pub fn answer_tag(text: &str) -> Option<&str> {
    let open = finder!(b"<answer>").find(text.as_bytes())? + "<answer>".len();
    let close = finder!(b"</answer>").find(&text.as_bytes()[open..])? + open;
    Some(text[open..close].trim())
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
    fn chat_marker_split_matches_regex() {
        let re = Regex::new(r"<\|im_start\|>|<\|im_end\|>").unwrap();
        let pieces = ["<|im_start|>", "<|im_end|>", "<|im_", "start|>", "end|>", "<|", "<", "x", "\n", "é"];
        let mut state = 0xC0FFEE_u64;
        for _ in 0..30_000 {
            let mut t = String::new();
            for _ in 0..(state % 12) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t.push_str(pieces[((state >> 33) % pieces.len() as u64) as usize]);
            }
            assert_eq!(split_chat_markers(&t), re.split(&t).collect::<Vec<_>>(), "{t:?}");
        }
    }

    #[test]
    fn image_triple_nl_constant() {
        assert_eq!(IMAGE_TRIPLE_NL, format!("{IMAGE_TRIPLE}\n"));
    }

    #[test]
    fn answer_tag_matches_regex() {
        let re = answer_re();
        let pieces = ["<answer>", "</answer>", "<answer", "answer>", "</", " ", "\n", "\t", "\u{a0}", "\u{2003}", "\u{85}", "\x1c", "\x1f", "B", "é", "x y", "<"];
        let mut state = 0xA5A5_u64;
        for _ in 0..50_000 {
            let mut t = String::new();
            for _ in 0..(state % 10) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t.push_str(pieces[((state >> 33) % pieces.len() as u64) as usize]);
            }
            let want = re.captures(&t).map(|c| c.get(1).unwrap().as_str());
            assert_eq!(answer_tag(&t), want, "{t:?}");
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
