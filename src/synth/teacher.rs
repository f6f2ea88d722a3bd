//! Teacher scripts: assistant turns written in the exact ViLaSR format the system prompt asks for
//! (`<think> … </think> Action: Object Mapper|Path Tracer` + a ```` ```json ```` action list, and a
//! final `Action: Answer` turn with `<answer>…</answer>`), plus a mirror of the executor's image
//! numbering and merge-by-label state, so the reasoning of a later turn can name the image an
//! earlier turn created and the colour its boxes were drawn in.

use crate::core::colors::BBOX_COLOR_CYCLE;

/// An Object Mapper item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxItem {
    /// 1-based image index.
    pub index: usize,
    pub bbox: [i32; 4],
    pub label: String,
}

/// A Path Tracer item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineItem {
    pub index: usize,
    pub start: [i32; 2],
    pub end: [i32; 2],
    pub label: String,
}

pub fn bx(index: usize, bbox: [i32; 4], label: impl Into<String>) -> BoxItem {
    BoxItem { index, bbox, label: label.into() }
}

pub fn ln(index: usize, start: [i32; 2], end: [i32; 2], label: impl Into<String>) -> LineItem {
    LineItem { index, start, end, label: label.into() }
}

/// The assistant turns of one teacher trajectory, with the image bookkeeping the executor does.
#[derive(Clone, Debug)]
pub struct Script {
    /// Box labels per image (0-based slot), in the merged order the executor draws them.
    boxes: Vec<Vec<String>>,
    /// Line labels per image.
    lines: Vec<Vec<String>>,
    pub responses: Vec<String>,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Merge-by-label as the executor does it: replace in place, append the rest in first-occurrence
/// order (a repeated label keeps its first position).
fn merge(base: &[String], new: &[&str]) -> Vec<String> {
    let mut pending: Vec<&str> = Vec::new();
    for l in new {
        if !pending.contains(l) {
            pending.push(l);
        }
    }
    let mut out = Vec::with_capacity(base.len() + pending.len());
    for e in base {
        if let Some(p) = pending.iter().position(|l| l == e) {
            out.push(pending.remove(p).to_string());
        } else {
            out.push(e.clone());
        }
    }
    out.extend(pending.into_iter().map(String::from));
    out
}

impl Script {
    pub fn new(inputs: usize) -> Self {
        Script { boxes: vec![Vec::new(); inputs], lines: vec![Vec::new(); inputs], responses: Vec::new() }
    }

    /// Images so far (inputs and planned observations); the newest has this number.
    pub fn image_count(&self) -> usize {
        self.boxes.len()
    }

    /// Group indices in first-appearance order and create one image per group.
    fn add_groups(&mut self, indices: &[usize], box_labels: &[(usize, &str)], line_labels: &[(usize, &str)]) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::new();
        for i in indices {
            if !order.contains(i) {
                order.push(*i);
            }
        }
        let mut created = Vec::new();
        for idx in order {
            let base = idx.saturating_sub(1).min(self.boxes.len().saturating_sub(1));
            let nb: Vec<&str> = box_labels.iter().filter(|(i, _)| *i == idx).map(|(_, l)| *l).collect();
            let nl: Vec<&str> = line_labels.iter().filter(|(i, _)| *i == idx).map(|(_, l)| *l).collect();
            let b = if nb.is_empty() { self.boxes[base].clone() } else { merge(&self.boxes[base], &nb) };
            let l = if nl.is_empty() { self.lines[base].clone() } else { merge(&self.lines[base], &nl) };
            self.boxes.push(b);
            self.lines.push(l);
            created.push(self.boxes.len());
        }
        created
    }

    /// An Object Mapper turn; returns the numbers of the images it creates (one per index, in
    /// first-appearance order).
    pub fn boxes(&mut self, think: &str, items: &[BoxItem]) -> Vec<usize> {
        let mut text = format!("<think> {think} </think> Action: Object Mapper\n```json\n[\n");
        for (k, b) in items.iter().enumerate() {
            text.push_str(&format!(
                "    {{\"index\": {}, \"bbox_2d\": [{}, {}, {}, {}], \"label\": {}}}{}\n",
                b.index,
                b.bbox[0],
                b.bbox[1],
                b.bbox[2],
                b.bbox[3],
                json_str(&b.label),
                if k + 1 < items.len() { "," } else { "" }
            ));
        }
        text.push_str("]\n```");
        self.responses.push(text);
        let indices: Vec<usize> = items.iter().map(|b| b.index).collect();
        let labels: Vec<(usize, &str)> = items.iter().map(|b| (b.index, b.label.as_str())).collect();
        self.add_groups(&indices, &labels, &[])
    }

    /// A Path Tracer turn; returns the numbers of the images it creates.
    pub fn lines(&mut self, think: &str, items: &[LineItem]) -> Vec<usize> {
        let mut text = format!("<think> {think} </think> Action: Path Tracer\n```json\n[\n");
        for (k, l) in items.iter().enumerate() {
            text.push_str(&format!(
                "    {{\"index\": {}, \"start_point_2d\": [{}, {}], \"end_point_2d\": [{}, {}], \"label\": {}}}{}\n",
                l.index,
                l.start[0],
                l.start[1],
                l.end[0],
                l.end[1],
                json_str(&l.label),
                if k + 1 < items.len() { "," } else { "" }
            ));
        }
        text.push_str("]\n```");
        self.responses.push(text);
        let indices: Vec<usize> = items.iter().map(|l| l.index).collect();
        let labels: Vec<(usize, &str)> = items.iter().map(|l| (l.index, l.label.as_str())).collect();
        self.add_groups(&indices, &[], &labels)
    }

    /// The final turn.
    pub fn answer(&mut self, think: &str, answer: &str) {
        self.responses.push(format!("<think> {think} </think> Action: Answer\n<answer>{answer}</answer>"));
    }

    /// The outline colour the executor gives the box `label` on image `image` (1-based).
    pub fn box_colour(&self, image: usize, label: &str) -> &'static str {
        self.boxes
            .get(image.wrapping_sub(1))
            .and_then(|v| v.iter().position(|l| l == label))
            .map(|i| BBOX_COLOR_CYCLE[i % BBOX_COLOR_CYCLE.len()].0)
            .unwrap_or("red")
    }

    /// "the red box labelled \"start\"".
    pub fn box_ref(&self, image: usize, label: &str) -> String {
        format!("the {} box \"{label}\"", self.box_colour(image, label))
    }
}

/// "a", "a and b", "a, b and c".
pub fn join_and(items: &[String]) -> String {
    match items.len() {
        0 => String::new(),
        1 => items[0].clone(),
        n => format!("{} and {}", items[..n - 1].join(", "), items[n - 1]),
    }
}

/// "A", "B", … for option `i`.
pub fn letter(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

/// `["A. x", "B. y", …]`.
pub fn lettered(options: &[String]) -> Vec<String> {
    options.iter().enumerate().map(|(i, o)| format!("{}. {o}", letter(i))).collect()
}

/// "(x, y)".
pub fn pt(p: [i32; 2]) -> String {
    format!("({}, {})", p[0], p[1])
}

/// Centre of a box.
pub fn box_centre(b: [i32; 4]) -> [i32; 2] {
    [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]
}

/// "a red star", "an orange hexagon".
pub fn a_an(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {noun}")
}

/// English number words for small counts (digits beyond twelve).
pub fn number_word(n: usize) -> String {
    const W: [&str; 13] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    W.get(n).map(|s| s.to_string()).unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_and_merge_follow_the_executor() {
        let mut s = Script::new(2);
        let made = s.boxes("x", &[bx(1, [1, 2, 3, 4], "a"), bx(2, [1, 2, 3, 4], "b"), bx(1, [5, 6, 7, 8], "c")]);
        assert_eq!(made, vec![3, 4]);
        assert_eq!(s.box_colour(3, "a"), "red");
        assert_eq!(s.box_colour(3, "c"), "green");
        let made = s.boxes("y", &[bx(3, [0, 0, 9, 9], "d"), bx(3, [1, 1, 8, 8], "a")]);
        assert_eq!(made, vec![5]);
        assert_eq!(s.box_colour(5, "a"), "red");
        assert_eq!(s.box_colour(5, "d"), "blue");
        let made = s.lines("z", &[ln(5, [0, 0], [5, 5], "l")]);
        assert_eq!(made, vec![6]);
        assert_eq!(s.box_colour(6, "d"), "blue");
        assert!(s.responses[0].starts_with("<think> x </think> Action: Object Mapper\n```json\n[\n    {\"index\": 1"));
        assert!(s.responses[2].ends_with("\"label\": \"l\"}\n]\n```"));
    }
}
