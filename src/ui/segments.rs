//! Splits an assistant turn into the parts the step list shows in distinct styles: `<think>`
//! reasoning, the `Action: …` line, ```` ```json ```` action blocks, ViLaVT `<tool>` calls,
//! `<answer>` and plain text. Pure string work (no egui), so it is unit-tested here.

/// What a piece of an assistant turn is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    Think,
    ActionLine,
    JsonBlock,
    Tool,
    Answer,
    Text,
}

/// A piece of text with its kind; concatenating the `text` of all segments gives the input back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub kind: SegmentKind,
    pub text: &'a str,
}

/// Tag pairs recognised as spans (opening, closing, kind).
const SPANS: [(&str, &str, SegmentKind); 4] = [
    ("<think>", "</think>", SegmentKind::Think),
    ("<answer>", "</answer>", SegmentKind::Answer),
    ("<tool>", "</tool>", SegmentKind::Tool),
    ("```json", "```", SegmentKind::JsonBlock),
];

/// Split `text` into segments. Unclosed spans run to the end of the text.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        // Earliest opening tag from here.
        let next = SPANS
            .iter()
            .filter_map(|(open, close, kind)| text[pos..].find(open).map(|p| (pos + p, *open, *close, *kind)))
            .min_by_key(|x| x.0);
        let Some((start, open, close, kind)) = next else {
            push_text(&mut out, &text[pos..]);
            break;
        };
        push_text(&mut out, &text[pos..start]);
        let body_from = start + open.len();
        let end = text[body_from..].find(close).map(|p| body_from + p + close.len()).unwrap_or(text.len());
        out.push(Segment { kind, text: &text[start..end] });
        pos = end;
    }
    out
}

/// Plain text, with `Action: …` lines split out.
fn push_text<'a>(out: &mut Vec<Segment<'a>>, text: &'a str) {
    if text.is_empty() {
        return;
    }
    let mut rest = text;
    while let Some(p) = rest.find("Action:") {
        let line_end = rest[p..].find('\n').map(|e| p + e).unwrap_or(rest.len());
        if p > 0 {
            out.push(Segment { kind: SegmentKind::Text, text: &rest[..p] });
        }
        out.push(Segment { kind: SegmentKind::ActionLine, text: &rest[p..line_end] });
        rest = &rest[line_end..];
    }
    if !rest.is_empty() {
        out.push(Segment { kind: SegmentKind::Text, text: rest });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SegmentKind::*;

    fn kinds(t: &str) -> Vec<(SegmentKind, &str)> {
        segments(t).into_iter().map(|s| (s.kind, s.text)).collect()
    }

    #[test]
    fn vilasr_turn_splits_into_its_parts_and_round_trips() {
        let t = "<think> look </think> Action: Object Mapper\n```json\n[{\"index\": 1}]\n```";
        let k = kinds(t);
        assert_eq!(
            k,
            vec![
                (Think, "<think> look </think>"),
                (Text, " "),
                (ActionLine, "Action: Object Mapper"),
                (Text, "\n"),
                (JsonBlock, "```json\n[{\"index\": 1}]\n```"),
            ]
        );
        assert_eq!(k.iter().map(|x| x.1).collect::<String>(), t);
    }

    #[test]
    fn answer_and_unclosed_spans() {
        let k = kinds("<think> a </think> Action: Answer\n<answer>B</answer>");
        assert_eq!(k.last().unwrap(), &(Answer, "<answer>B</answer>"));
        let k = kinds("<think> never closed");
        assert_eq!(k, vec![(Think, "<think> never closed")]);
        let k = kinds("x <tool>{\"q\": 1}</tool> y");
        assert_eq!(k[1], (Tool, "<tool>{\"q\": 1}</tool>"));
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        let t = "前 <answer>数</answer> 後";
        assert_eq!(segments(t).iter().map(|s| s.text).collect::<String>(), t);
    }
}
