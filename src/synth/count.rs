//! Object counting: a 448×336 scene of coloured shapes on a cluttered backdrop; the question asks
//! how many objects of a colour, a shape, or both there are (numerical, scored with MRA). Near
//! misses (same colour other shape, same shape other colour) are always among the distractors.
//! The teacher boxes every target object in reading order, in one turn or two.

use super::rng::Rng;
use super::scene::{self, Clutter, Colour, Object, Shape, BACKDROPS, PALETTE};
use super::teacher::{bx, join_and, number_word, pt, BoxItem, Script};
use super::{Difficulty, Draft};
use serde_json::json;

pub const WIDTH: u32 = 448;
pub const HEIGHT: u32 = 336;
const COLS: i32 = 8;
const ROWS: i32 = 6;
const R_MAX: i32 = 17;

/// What the question counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    ColourShape(Colour, Shape),
    Shape(Shape),
    Colour(Colour),
}

impl Target {
    fn matches(self, o: &Object) -> bool {
        match self {
            Target::ColourShape(c, s) => o.colour == c && o.shape == s,
            Target::Shape(s) => o.shape == s,
            Target::Colour(c) => o.colour == c,
        }
    }
    /// Singular noun used in labels ("red triangle", "triangle", "red object").
    fn noun(self) -> String {
        match self {
            Target::ColourShape(c, s) => format!("{} {}", c.name, s.name()),
            Target::Shape(s) => s.name().to_string(),
            Target::Colour(c) => format!("{} object", c.name),
        }
    }
    fn plural(self) -> String {
        match self {
            Target::ColourShape(c, s) => format!("{} {}", c.name, s.plural()),
            Target::Shape(s) => s.plural().to_string(),
            Target::Colour(c) => format!("{} objects", c.name),
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Target::ColourShape(..) => "colour_shape",
            Target::Shape(_) => "shape",
            Target::Colour(_) => "colour",
        }
    }
}

fn other_colour(rng: &mut Rng, not: Colour) -> Colour {
    let v: Vec<Colour> = PALETTE.iter().copied().filter(|c| *c != not).collect();
    *rng.pick(&v)
}

fn other_shape(rng: &mut Rng, not: Shape) -> Shape {
    let v: Vec<Shape> = Shape::ALL.iter().copied().filter(|s| *s != not).collect();
    *rng.pick(&v)
}

/// A distractor's (colour, shape) that does not match `target`; `near` prefers near misses.
fn distractor(rng: &mut Rng, target: Target, near: bool) -> (Colour, Shape) {
    match target {
        Target::ColourShape(c, s) => {
            if near {
                if rng.chance(0.5) {
                    (c, other_shape(rng, s))
                } else {
                    (other_colour(rng, c), s)
                }
            } else {
                (other_colour(rng, c), other_shape(rng, s))
            }
        }
        Target::Shape(s) => (*rng.pick(&PALETTE), other_shape(rng, s)),
        Target::Colour(c) => (other_colour(rng, c), *rng.pick(&Shape::ALL)),
    }
}

/// Counts of distractors by name, most frequent first ("3 red circles").
fn describe_group(objs: &[&Object]) -> Vec<String> {
    let mut names: Vec<(String, usize)> = Vec::new();
    for o in objs {
        let n = format!("{} {}", o.colour.name, o.shape.name());
        match names.iter_mut().find(|(m, _)| *m == n) {
            Some(e) => e.1 += 1,
            None => names.push((n, 1)),
        }
    }
    names.sort_by_key(|n| std::cmp::Reverse(n.1));
    names
        .into_iter()
        .map(|(n, k)| {
            if k == 1 {
                format!("one {n}")
            } else {
                let (c, s) = n.split_once(' ').unwrap_or(("", &n));
                let plural = Shape::ALL.iter().find(|x| x.name() == s).map(|x| x.plural()).unwrap_or(s);
                format!("{} {c} {plural}", number_word(k))
            }
        })
        .collect()
}

pub(crate) fn draft(rng: &mut Rng, teach: &mut Rng, difficulty: Difficulty, reflective: bool) -> Draft {
    let n_target = match difficulty {
        Difficulty::Easy => rng.range_usize(1, 4),
        Difficulty::Medium => rng.range_usize(3, 7),
        Difficulty::Hard => rng.range_usize(5, 10),
    };
    let n_distract = match difficulty {
        Difficulty::Easy => rng.range_usize(2, 5),
        Difficulty::Medium => rng.range_usize(5, 10),
        Difficulty::Hard => rng.range_usize(10, 18),
    };
    let tc = *rng.pick(&PALETTE);
    let ts = *rng.pick(&Shape::ALL);
    let target = match rng.below(4) {
        0 => Target::Shape(ts),
        1 => Target::Colour(tc),
        _ => Target::ColourShape(tc, ts),
    };
    let spots = scene::place_in_slots(rng, (0, 0, WIDTH as i32, HEIGHT as i32), COLS, ROWS, n_target + n_distract, R_MAX);
    let mut objects: Vec<Object> = Vec::new();
    for (k, (_, cx, cy)) in spots.iter().enumerate() {
        let r = rng.range(11, i64::from(R_MAX)) as i32;
        let (colour, shape) = if k < n_target {
            match target {
                Target::ColourShape(c, s) => (c, s),
                Target::Shape(s) => (*rng.pick(&PALETTE), s),
                Target::Colour(c) => (c, *rng.pick(&Shape::ALL)),
            }
        } else {
            // The first two distractors are near misses.
            let near = k < n_target + 2 || rng.chance(0.4);
            distractor(rng, target, near)
        };
        objects.push(Object { colour, shape, cx: *cx, cy: *cy, r });
    }
    let base = *rng.pick(&BACKDROPS);
    let clutter = Clutter::random(rng, difficulty == Difficulty::Hard);
    let mut image = scene::backdrop(WIDTH, HEIGHT, base, clutter);
    for o in &objects {
        o.draw(&mut image);
    }

    // Targets in reading order: by slot row, then x.
    let row_of = |o: &Object| o.cy * ROWS / HEIGHT as i32;
    let mut targets: Vec<Object> = objects.iter().copied().filter(|o| target.matches(o)).collect();
    targets.sort_by_key(|o| (row_of(o), o.cx));
    let distractors: Vec<&Object> = objects.iter().filter(|o| !target.matches(o)).collect();
    let n = targets.len();
    let noun = target.noun();
    let plural = target.plural();
    let question = format!("How many {plural} are in the image?");
    let label = |i: usize| format!("{noun} {}", i + 1);
    let near: Vec<&Object> = distractors
        .iter()
        .copied()
        .filter(|o| match target {
            Target::ColourShape(c, s) => o.colour == c || o.shape == s,
            _ => true,
        })
        .collect();
    let near_note = if near.is_empty() {
        String::new()
    } else {
        let groups = describe_group(&near);
        let shown: Vec<String> = groups.into_iter().take(3).collect();
        format!(" Objects such as {} do not count.", join_and(&shown))
    };

    let mut s = Script::new(1);
    let split = if n > 5 { n.div_ceil(2) } else { n };
    let first: Vec<BoxItem> = targets[..split].iter().enumerate().map(|(i, o)| bx(1, o.bbox(WIDTH, HEIGHT), label(i))).collect();
    let positions = |objs: &[Object]| join_and(&objs.iter().map(|o| pt(o.centre())).collect::<Vec<_>>());
    let scope = if split < n {
        "the ones in the upper part first"
    } else if n == 1 {
        "it"
    } else {
        "each of them"
    };
    let mut made_mistake = false;
    let mut last;
    if reflective {
        // One box of the first turn goes wrong: around a near miss, or shifted off its object.
        let wrong_i = teach.below(split as u64) as usize;
        let mut shown = first.clone();
        let right = targets[wrong_i];
        let decoy = if near.is_empty() { None } else { Some(**teach.pick(&near)) };
        let (wrong_box, why) = match decoy {
            Some(d) if teach.chance(0.6) => (
                d.bbox(WIDTH, HEIGHT),
                format!("encloses a {} {} at {}, which is not a {noun}", d.colour.name, d.shape.name(), pt(d.centre())),
            ),
            _ => {
                let dx = (right.r + 8) * if right.cx > WIDTH as i32 / 2 { -1 } else { 1 };
                let b = right.bbox(WIDTH, HEIGHT);
                (
                    [(b[0] + dx).max(0), b[1], (b[2] + dx).min(WIDTH as i32 - 1), b[3]],
                    format!("is shifted sideways and covers mostly background next to the {noun}"),
                )
            }
        };
        shown[wrong_i].bbox = wrong_box;
        let believed: Vec<[i32; 2]> = shown.iter().map(|b| super::teacher::box_centre(b.bbox)).collect();
        let img = s.boxes(
            &format!(
                "I need to count the {plural}.{near_note} Scanning from top to bottom and left to right, I find {} at {}. I will box {scope}.",
                plural_or_one(split, &noun, &plural),
                join_and(&believed.iter().map(|p| pt(*p)).collect::<Vec<_>>())
            ),
            &shown,
        )[0];
        last = s.boxes(
            &format!(
                "Image {img} shows {split} box{}, but {} {why}. That box is misplaced: the {} {noun} is at {}. I will redraw the boxes on image 1 with \"{}\" around it.",
                if split == 1 { "" } else { "es" },
                s.box_ref(img, &label(wrong_i)),
                ordinal(wrong_i + 1),
                pt(right.centre()),
                label(wrong_i)
            ),
            &first,
        )[0];
        made_mistake = true;
    } else {
        last = s.boxes(
            &format!(
                "I need to count the {plural}.{near_note} Scanning from top to bottom and left to right, I find {} at {}. I will box {scope}.",
                plural_or_one(split, &noun, &plural),
                positions(&targets[..split])
            ),
            &first,
        )[0];
    }
    if split < n {
        let rest: Vec<BoxItem> =
            targets[split..].iter().enumerate().map(|(i, o)| bx(last, o.bbox(WIDTH, HEIGHT), label(split + i))).collect();
        let img = last;
        last = s.boxes(
            &format!(
                "Image {img} shows {split} boxes labelled \"{}\" to \"{}\" in the upper part, each around one {noun}. Further down there are {} more: at {}. I will box them on image {img}.",
                label(0),
                label(split - 1),
                n - split,
                positions(&targets[split..])
            ),
            &rest,
        )[0];
    }
    let unboxed = if distractors.is_empty() {
        String::new()
    } else {
        let groups = describe_group(&distractors);
        let mut shown: Vec<String> = groups.iter().take(4).cloned().collect();
        if groups.len() > 4 {
            shown.push("a few other objects".into());
        }
        format!(" The other objects ({}) are left unboxed.", join_and(&shown))
    };
    let boxes_text = if n == 1 { format!("one box labelled \"{}\"", label(0)) } else { format!("{n} boxes labelled \"{}\" to \"{}\"", label(0), label(n - 1)) };
    s.answer(
        &format!(
            "Image {last} shows {boxes_text}, {} exactly one {noun}.{unboxed} No {noun} is left without a box, so there {} {n} {}.",
            if n == 1 { "enclosing" } else { "each enclosing" },
            if n == 1 { "is" } else { "are" },
            if n == 1 { noun.clone() } else { plural.clone() }
        ),
        &n.to_string(),
    );
    let truth = json!({
        "target": {"kind": target.kind(), "colour": match target { Target::ColourShape(c, _) | Target::Colour(c) => Some(c.name), _ => None },
                   "shape": match target { Target::ColourShape(_, sh) | Target::Shape(sh) => Some(sh.name()), _ => None }},
        "count": n,
        "clutter": clutter.name(),
        "objects": objects.iter().map(|o| o.to_json()).collect::<Vec<_>>(),
    });
    Draft {
        kind: target.kind(),
        question,
        question_type: "numerical",
        options: None,
        answer: n.to_string(),
        inputs: vec![image],
        grid_size: None,
        script: s,
        reflective: made_mistake,
        truth,
    }
}

fn plural_or_one(k: usize, noun: &str, plural: &str) -> String {
    if k == 1 {
        format!("one {noun}")
    } else {
        format!("{} {plural}", number_word(k))
    }
}

pub(crate) fn ordinal(n: usize) -> String {
    match n {
        1 => "first".into(),
        2 => "second".into(),
        3 => "third".into(),
        4 => "fourth".into(),
        5 => "fifth".into(),
        6 => "sixth".into(),
        7 => "seventh".into(),
        8 => "eighth".into(),
        9 => "ninth".into(),
        10 => "tenth".into(),
        _ => format!("{n}th"),
    }
}
