//! ViLaVT scoring: the RL reward (`verl/utils/reward_score/gcot.py`, protocol §3.3). Its
//! evaluation scoring (`eval/cal_metrics.py`, §3.4) uses the same rules as ViLaSR's evaluator and
//! lives in [`super::vilasr::eval_score`].

use super::mra::mra_strict;
use super::pyfmt::{py_float, py_repr_str};
use super::{RewardParts, ScoreError};
use crate::core::actions;
use crate::core::prompts::{py_strip, IMAGE_TRIPLE};
use regex::Regex;
use std::sync::OnceLock;

/// One item of a ViLaVT user message.
#[derive(Clone, Debug, PartialEq)]
pub enum UserItem {
    Image,
    Text(String),
}

/// Content of a ViLaVT parsed message.
#[derive(Clone, Debug, PartialEq)]
pub enum VtContent {
    Text(String),
    User(Vec<UserItem>),
}

impl VtContent {
    /// Python `str()` of the content.
    pub fn py_str(&self) -> String {
        match self {
            VtContent::Text(t) => t.clone(),
            VtContent::User(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        UserItem::Image => "{'type': 'image'}".to_string(),
                        UserItem::Text(t) => format!("{{'type': 'text', 'text': {}}}", py_repr_str(t)),
                    })
                    .collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }
}

/// One message of ViLaVT `parse_dialogue`.
#[derive(Clone, Debug, PartialEq)]
pub struct VtMessage {
    pub role: String,
    pub content: VtContent,
}

/// The inner texts of `re.findall(r'<\|im_start\|>(.*?)<\|im_end\|>', s, re.DOTALL)`: from
/// the leftmost `<|im_start|>`, the text up to the first `<|im_end|>` after it; the next search
/// starts after that `<|im_end|>`. (When the leftmost `<|im_start|>` has no `<|im_end|>` after
/// it, no later one has either.) Both markers are plain literals, searched with SIMD `memmem`.
fn turn_bodies(sequence: &str) -> impl Iterator<Item = &str> {
    const START: &str = "<|im_start|>";
    const END: &str = "<|im_end|>";
    let b = sequence.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        let open = finder!(START.as_bytes()).find(&b[pos..])? + pos + START.len();
        let close = finder!(END.as_bytes()).find(&b[open..])? + open;
        pos = close + END.len();
        Some(&sequence[open..close])
    })
}

/// `text.split(IMAGE_TRIPLE)` with a prebuilt SIMD searcher (non-overlapping, left to right,
/// like `str.split`).
fn split_image_triple(text: &str) -> impl Iterator<Item = &str> {
    let mut last = 0;
    let mut matches = finder!(IMAGE_TRIPLE.as_bytes()).find_iter(text.as_bytes());
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match matches.next() {
            Some(p) => {
                let piece = &text[last..p];
                last = p + IMAGE_TRIPLE.len();
                Some(piece)
            }
            None => {
                done = true;
                Some(&text[last..])
            }
        }
    })
}

/// ViLaVT `parse_dialogue` (protocol §3.3): complete `<|im_start|>…<|im_end|>` turns only.
pub fn parse_dialogue(sequence: &str) -> Vec<VtMessage> {
    let mut out = Vec::new();
    for body in turn_bodies(sequence) {
        let m = py_strip(body);
        if m.is_empty() {
            continue;
        }
        let Some((role, content)) = m.split_once('\n') else { continue };
        let role = py_strip(role);
        match role {
            "system" | "assistant" => out.push(VtMessage { role: role.to_string(), content: VtContent::Text(content.to_string()) }),
            "user" => {
                let mut items = Vec::new();
                for (i, part) in split_image_triple(content).enumerate() {
                    if i > 0 {
                        items.push(UserItem::Image);
                    }
                    let s = py_strip(part);
                    if !s.is_empty() {
                        items.push(UserItem::Text(s.to_string()));
                    }
                }
                if items.is_empty() {
                    items.push(UserItem::Text(String::new()));
                }
                out.push(VtMessage { role: "user".into(), content: VtContent::User(items) });
            }
            _ => {}
        }
    }
    out
}

/// ViLaVT `cal_format_reward`: 1 when every assistant message passes, with the first failure.
pub fn format_reward(conv: &[VtMessage]) -> (f64, String) {
    for (i, m) in conv.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let text = match &m.content {
            VtContent::Text(t) => t.clone(),
            VtContent::User(_) => continue,
        };
        if let Err(why) = actions::vilavt_tool_format_ok(&text) {
            return (0.0, format!("format 0: message {i}: {why}"));
        }
    }
    (1.0, "format 1".into())
}

/// The regex that [`extract`] implements through [`super::vilasr::answer_tag`] (test oracle).
#[cfg(test)]
fn answer_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?s)<answer>\s*(.*?)\s*</answer>").unwrap())
}

fn boxed_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\\boxed\{(.*?)\}").unwrap())
}

fn yes_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\byes\b").unwrap())
}

fn no_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"\bno\b").unwrap())
}

/// `extract_answer` on `str(text).strip()`.
pub fn extract(text: &str) -> String {
    let t = py_strip(text);
    // `re.search(r'<answer>\s*(.*?)\s*</answer>', t, re.DOTALL)` group 1 (see `answer_tag`).
    match super::vilasr::answer_tag(t) {
        Some(g) => py_strip(g).to_string(),
        None => t.to_string(),
    }
}

/// `extract_box_answer`: balanced content after the last `\boxed{` (unbalanced → the rest).
pub fn extract_boxed(response: &str) -> String {
    let resp = response.rsplit("\\boxed{").next().unwrap_or(response);
    let chars: Vec<char> = resp.chars().collect();
    let mut counter = 1i64;
    let mut end = None;
    for (i, &c) in chars.iter().enumerate() {
        if c == '{' {
            counter += 1;
        } else if c == '}' {
            counter -= 1;
        }
        if counter == 0 {
            end = Some(i);
            break;
        } else if i == chars.len() - 1 {
            end = Some(chars.len());
            break;
        }
    }
    match end {
        Some(e) => chars[..e].iter().collect(),
        None => response.to_string(),
    }
}

/// ViLaVT `cal_outcome_reward` (output `None` or empty scores 0).
pub fn rl_outcome(output: Option<&str>, ground_truth: &str, question_type: &str) -> f64 {
    let Some(output) = output else { return 0.0 };
    if output.is_empty() || ground_truth.is_empty() || question_type.is_empty() {
        return 0.0;
    }
    let mut out = extract(output);
    if boxed_re().is_match(&out) {
        out = extract_boxed(&out);
    }
    let gt = extract(ground_truth);
    if out.is_empty() || gt.is_empty() {
        return 0.0;
    }
    let qt = py_strip(&question_type.to_lowercase()).to_string();
    match qt.as_str() {
        "multiple choice" => {
            let (o, g) = (py_strip(&out), py_strip(&gt));
            match (o.chars().next(), g.chars().next()) {
                (Some(a), Some(b)) if a.to_lowercase().eq(b.to_lowercase()) => 1.0,
                _ => 0.0,
            }
        }
        // math_verify on raw strings reduces to stripped equality of non-empty strings
        // (protocol §3.3 [ext, unverified]).
        "math" => {
            if py_strip(&out) == py_strip(&gt) {
                1.0
            } else {
                0.0
            }
        }
        "regression" | "numerical" => match (py_float(&gt.replace(',', "")), py_float(&out.replace(',', ""))) {
            (Some(g), Some(o)) => mra_strict(o, g).clamp(0.0, 1.0),
            _ => 0.0,
        },
        "judgment" => {
            let (o, g) = (out.to_lowercase(), gt.to_lowercase());
            let (yes, no) = (yes_re(), no_re());
            let o = py_strip(&o);
            let g = py_strip(&g);
            if (yes.is_match(o) && yes.is_match(g)) || (no.is_match(o) && no.is_match(g)) {
                1.0
            } else {
                0.0
            }
        }
        _ => 0.0,
    }
}

/// ViLaVT RL reward on a decoded conversation.
pub fn rl_score(sequence: &str, ground_truth: &str, question_type: &str) -> Result<RewardParts, ScoreError> {
    let conv = parse_dialogue(sequence);
    let (format, why) = format_reward(&conv);
    let last = conv
        .last()
        .ok_or_else(|| ScoreError::ReferenceRaises("no complete <|im_start|>…<|im_end|> turn (conversations[-1] raises IndexError)".into()))?;
    let text = last.content.py_str();
    let accuracy = rl_outcome(Some(&text), ground_truth, question_type);
    let acc_why = if last.role == "user" { format!("accuracy {accuracy}: the conversation ends on a user turn") } else { format!("accuracy {accuracy}") };
    Ok(RewardParts::gated(format, accuracy, None, vec![why, acc_why]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../tests/fixtures/reward_and_geometry_test_vectors.json")).unwrap()
    }

    #[test]
    fn searchers_match_regex_and_split() {
        let pieces = ["<answer>", "</answer>", "<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|>", " ", "\n", "\u{a0}", "x", "é"];
        let mut state = 0x5A5A_u64;
        for _ in 0..30_000 {
            let mut t = String::new();
            for _ in 0..(state % 9) {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t.push_str(pieces[((state >> 33) % pieces.len() as u64) as usize]);
            }
            let stripped = py_strip(&t);
            let want = match answer_re().captures(stripped) {
                Some(c) => py_strip(c.get(1).unwrap().as_str()).to_string(),
                None => stripped.to_string(),
            };
            assert_eq!(extract(&t), want, "{t:?}");
            assert_eq!(split_image_triple(&t).collect::<Vec<_>>(), t.split(IMAGE_TRIPLE).collect::<Vec<_>>(), "{t:?}");
        }
    }

    #[test]
    fn outcome_vectors() {
        let v = vectors();
        for c in v["vilavt_rl_outcome"].as_array().unwrap() {
            let got = rl_outcome(c["final_turn"].as_str(), c["gt"].as_str().unwrap(), c["type"].as_str().unwrap());
            assert_eq!(got, c["accuracy"].as_f64().unwrap(), "{c}");
        }
    }

    #[test]
    fn sequence_vectors() {
        let v = vectors();
        for c in v["vilavt_rl_score_on_sequences"].as_array().unwrap() {
            let r = &c["result"];
            let got = rl_score(c["decoded_sequence"].as_str().unwrap(), c["gt"].as_str().unwrap(), c["question_type"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", c["case"]));
            assert_eq!(got.overall, r["overall"].as_f64().unwrap(), "{}", c["case"]);
            assert_eq!(got.format, r["format"].as_f64().unwrap(), "{} {:?}", c["case"], got.reasons);
            assert_eq!(got.accuracy, r["accuracy"].as_f64().unwrap(), "{}", c["case"]);
        }
    }

    #[test]
    fn turn_scan_matches_the_reference_regex() {
        let re = Regex::new(r"(?s)<\|im_start\|>(.*?)<\|im_end\|>").unwrap();
        let cases = [
            "",
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA",
            "<|im_start|>a<|im_start|>b<|im_end|><|im_end|>x<|im_start|>c<|im_end|>",
            "<|im_end|><|im_start|><|im_end|><|im_start|>\n<|im_end|>",
            "<|im_start|><|im_end|>|>",
            "<|im_start|>tail without end",
            "x<|im_start|>é\r\n<|im_end|>y<|im_start|>z",
        ];
        for c in cases {
            let want: Vec<&str> = re.captures_iter(c).map(|m| m.get(1).unwrap().as_str()).collect();
            let got: Vec<&str> = turn_bodies(c).collect();
            assert_eq!(got, want, "{c:?}");
        }
    }

    #[test]
    fn boxed_extraction() {
        assert_eq!(extract_boxed("x \\boxed{a{b}c} y"), "a{b}c");
        assert_eq!(extract_boxed("\\boxed{abc"), "abc");
        assert_eq!(rl_outcome(Some("<answer>\\boxed{B}</answer>"), "B", "multiple choice"), 1.0);
        assert_eq!(rl_outcome(Some("yes, it is"), "Yes", "judgment"), 1.0);
    }
}
