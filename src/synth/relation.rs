//! Relative position and distance comparison: a 448×336 scene of distinct coloured shapes. The
//! questions (multiple choice) ask which option is closest to or farthest from a reference
//! object, where one object is relative to another, or which of two is closer. Every question is
//! unambiguous by a clear margin. The teacher boxes the objects involved, then draws auxiliary
//! lines from the reference object and reads lengths and directions off them.

use super::rng::Rng;
use super::scene::{self, Clutter, Object, Shape, BACKDROPS, PALETTE};
use super::teacher::{box_centre, bx, join_and, ln, pt, BoxItem, Script};
use super::{shuffled_options, Difficulty, Draft};
use serde_json::json;

pub const WIDTH: u32 = 448;
pub const HEIGHT: u32 = 336;

/// A question about the scene.
#[derive(Clone, Debug)]
enum Question {
    /// Which candidate is closest to (or farthest from) `reference`.
    Extreme { reference: usize, candidates: Vec<usize>, closest: bool },
    /// Where `subject` is relative to `reference`.
    Direction { subject: usize, reference: usize },
    /// Which of two candidates is closer to `reference`.
    Compare { reference: usize, a: usize, b: usize },
}

/// Objects with distinct (colour, shape) pairs.
fn scene_objects(rng: &mut Rng, n: usize) -> Vec<Object> {
    let spots = scene::place_in_slots(rng, (0, 0, WIDTH as i32, HEIGHT as i32), 8, 6, n, 18);
    let mut pairs: Vec<(usize, usize)> = (0..PALETTE.len()).flat_map(|c| (0..Shape::ALL.len()).map(move |s| (c, s))).collect();
    rng.shuffle(&mut pairs);
    spots
        .iter()
        .zip(pairs)
        .map(|((_, cx, cy), (c, s))| Object { colour: PALETTE[c], shape: Shape::ALL[s], cx: *cx, cy: *cy, r: rng.range(12, 18) as i32 })
        .collect()
}

/// The dominant direction of `subject` seen from `reference`, if clear (one axis at least twice
/// the other and 50 px or more).
fn direction(objs: &[Object], subject: usize, reference: usize) -> Option<&'static str> {
    let dx = objs[subject].cx - objs[reference].cx;
    let dy = objs[subject].cy - objs[reference].cy;
    if dx.abs() >= 50 && dx.abs() >= 2 * dy.abs() {
        Some(if dx < 0 { "left" } else { "right" })
    } else if dy.abs() >= 50 && dy.abs() >= 2 * dx.abs() {
        Some(if dy < 0 { "above" } else { "below" })
    } else {
        None
    }
}

fn d(objs: &[Object], a: usize, b: usize) -> i32 {
    scene::dist(objs[a].centre(), objs[b].centre())
}

/// Whether `best` beats every other distance by 15 % and 12 px.
fn clear_winner(dists: &[i32], closest: bool) -> Option<usize> {
    let best = if closest {
        (0..dists.len()).min_by_key(|&i| dists[i])?
    } else {
        (0..dists.len()).max_by_key(|&i| dists[i])?
    };
    let ok = (0..dists.len()).filter(|&i| i != best).all(|i| {
        let (near, far) = if closest { (dists[best], dists[i]) } else { (dists[i], dists[best]) };
        far * 100 >= near * 115 && far - near >= 12
    });
    ok.then_some(best)
}

fn pick_question(rng: &mut Rng, objs: &[Object], n_candidates: usize) -> Option<Question> {
    let n = objs.len();
    let kind = rng.below(4);
    for _ in 0..40 {
        let reference = rng.below(n as u64) as usize;
        let others: Vec<usize> = (0..n).filter(|&i| i != reference).collect();
        match kind {
            0 | 1 => {
                let mut c = others.clone();
                rng.shuffle(&mut c);
                c.truncate(n_candidates);
                let dists: Vec<i32> = c.iter().map(|&i| d(objs, reference, i)).collect();
                if clear_winner(&dists, kind == 0).is_some() {
                    return Some(Question::Extreme { reference, candidates: c, closest: kind == 0 });
                }
            }
            2 => {
                let subject = *rng.pick(&others);
                if direction(objs, subject, reference).is_some() {
                    return Some(Question::Direction { subject, reference });
                }
            }
            _ => {
                let mut c = others.clone();
                rng.shuffle(&mut c);
                if c.len() >= 2 && clear_winner(&[d(objs, reference, c[0]), d(objs, reference, c[1])], true).is_some() {
                    return Some(Question::Compare { reference, a: c[0], b: c[1] });
                }
            }
        }
    }
    None
}

pub(crate) fn draft(rng: &mut Rng, teach: &mut Rng, difficulty: Difficulty, reflective: bool) -> Draft {
    let n = match difficulty {
        Difficulty::Easy => rng.range_usize(4, 5),
        Difficulty::Medium => rng.range_usize(5, 7),
        Difficulty::Hard => rng.range_usize(7, 9),
    };
    let n_candidates = difficulty.pick(3, 3, 4);
    let mut attempt = 0;
    let (objs, q) = loop {
        let objs = scene_objects(rng, n);
        attempt += 1;
        if let Some(q) = pick_question(rng, &objs, n_candidates) {
            break (objs, q);
        }
        if attempt >= 64 {
            // Practically unreachable; a compare question on the clearest pair is always valid.
            let reference = 0;
            let mut others: Vec<usize> = (1..objs.len()).collect();
            others.sort_by_key(|&i| d(&objs, reference, i));
            let (a, b) = (others[0], others[others.len() - 1]);
            break (objs, Question::Compare { reference, a, b });
        }
    };
    let base = *rng.pick(&BACKDROPS);
    let clutter = Clutter::random(rng, difficulty != Difficulty::Easy);
    let mut image = scene::backdrop(WIDTH, HEIGHT, base, clutter);
    for o in &objs {
        o.draw(&mut image);
    }
    let name = |i: usize| objs[i].name();
    let bbox = |i: usize| objs[i].bbox(WIDTH, HEIGHT);

    // Question text, options, answer; involved objects (reference first).
    let (kind, question, options, answer, involved, reference) = match &q {
        Question::Extreme { reference, candidates, closest } => {
            let texts: Vec<String> = candidates.iter().map(|&i| name(i)).collect();
            let dists: Vec<i32> = candidates.iter().map(|&i| d(&objs, *reference, i)).collect();
            let best = clear_winner(&dists, *closest).unwrap_or(0);
            let (opts, ans) = shuffled_options(rng, &texts, best);
            let word = if *closest { "closest to" } else { "farthest from" };
            let mut inv = vec![*reference];
            inv.extend(candidates.iter().copied());
            (
                if *closest { "closest" } else { "farthest" },
                format!("Which of these objects is {word} the {}?", name(*reference)),
                opts,
                ans,
                inv,
                *reference,
            )
        }
        Question::Direction { subject, reference } => {
            let texts: Vec<String> = ["left", "right", "above", "below"].iter().map(|s| s.to_string()).collect();
            let dir = direction(&objs, *subject, *reference).unwrap_or("left");
            let correct = texts.iter().position(|t| t == dir).unwrap_or(0);
            let (opts, ans) = shuffled_options(rng, &texts, correct);
            (
                "direction",
                format!("Where is the {} relative to the {}?", name(*subject), name(*reference)),
                opts,
                ans,
                vec![*reference, *subject],
                *reference,
            )
        }
        Question::Compare { reference, a, b } => {
            let texts = vec![name(*a), name(*b)];
            let correct = if d(&objs, *reference, *a) <= d(&objs, *reference, *b) { 0 } else { 1 };
            let (opts, ans) = shuffled_options(rng, &texts, correct);
            (
                "compare",
                format!("Which is closer to the {}: the {} or the {}?", name(*reference), name(*a), name(*b)),
                opts,
                ans,
                vec![*reference, *a, *b],
                *reference,
            )
        }
    };

    // Teacher: boxes, (correction), lines, answer.
    let mut s = Script::new(1);
    let boxes: Vec<BoxItem> = involved.iter().map(|&i| bx(1, bbox(i), name(i))).collect();
    let located = join_and(
        &involved.iter().map(|&i| format!("the {} ({}, around {})", name(i), scene::region_name(objs[i].centre(), WIDTH, HEIGHT), pt(objs[i].centre()))).collect::<Vec<_>>(),
    );
    let plan = match &q {
        Question::Direction { .. } => "I will box both objects, then connect them with a line.",
        _ => "I will box them first, then compare distances with lines from the reference.",
    };
    let mut made_mistake = false;
    let mut last;
    if reflective {
        // One box lands on a different object first.
        let wrong_k = teach.below(involved.len() as u64) as usize;
        let spare: Vec<usize> = (0..objs.len()).filter(|i| !involved.contains(i)).collect();
        let pool: Vec<usize> = if spare.is_empty() { involved.iter().copied().filter(|&i| i != involved[wrong_k]).collect() } else { spare };
        let decoy = *teach.pick(&pool);
        let mut shown = boxes.clone();
        shown[wrong_k].bbox = bbox(decoy);
        let believed = join_and(
            &involved
                .iter()
                .enumerate()
                .map(|(k, &i)| format!("the {} (around {})", name(i), pt(box_centre(shown[k].bbox))))
                .collect::<Vec<_>>(),
        );
        let img = s.boxes(&format!("The question involves {believed}. {plan}"), &shown)[0];
        let who = involved[wrong_k];
        last = s.boxes(
            &format!(
                "Image {img} shows {} around the {}, not around the {} — the box is on the wrong object. The {} is at {} ({}). I will redraw the boxes on image 1 with \"{}\" moved onto it.",
                s.box_ref(img, &name(who)),
                name(decoy),
                name(who),
                name(who),
                pt(objs[who].centre()),
                scene::region_name(objs[who].centre(), WIDTH, HEIGHT),
                name(who)
            ),
            &boxes,
        )[0];
        made_mistake = true;
    } else {
        last = s.boxes(&format!("The question involves {located}. {plan}"), &boxes)[0];
    }
    let boxed = last;
    let colours = join_and(&involved.iter().map(|&i| format!("the {} box around the {}", s.box_colour(boxed, &name(i)), name(i))).collect::<Vec<_>>());
    let rc = box_centre(bbox(reference));
    match &q {
        Question::Direction { subject, reference } => {
            let sc = box_centre(bbox(*subject));
            last = s.lines(
                &format!(
                    "Image {boxed} shows {colours}. I will draw a line from the centre of the {} box to the centre of the {} box to see the direction.",
                    name(*reference),
                    name(*subject)
                ),
                &[ln(boxed, rc, sc, format!("{} to {}", name(*reference), name(*subject)))],
            )[0];
            let dx = sc[0] - rc[0];
            let dy = sc[1] - rc[1];
            let horiz = format!("{} px to the {}", dx.abs(), if dx < 0 { "left" } else { "right" });
            let vert = format!("{} px {}", dy.abs(), if dy < 0 { "up" } else { "down" });
            let dir = direction(&objs, *subject, *reference).unwrap_or("left");
            let (major, minor, axis) = if dx.abs() >= dy.abs() { (horiz, vert, "horizontal") } else { (vert, horiz, "vertical") };
            let course = if dx == 0 || dy == 0 { format!("{major} and not at all sideways") } else { format!("{major} and only {minor}") };
            let rel = match dir {
                "left" => "to the left of",
                "right" => "to the right of",
                "above" => "above",
                _ => "below",
            };
            s.answer(
                &format!(
                    "Image {last} shows the line from the red dot on the {} to the blue dot on the {}: it goes {course}, so it is mainly {axis}. The {} is {rel} the {}, which is option {answer}.",
                    name(*reference),
                    name(*subject),
                    name(*subject),
                    name(*reference)
                ),
                &answer,
            );
        }
        _ => {
            let cands: Vec<usize> = involved[1..].to_vec();
            let items: Vec<_> = cands.iter().map(|&i| ln(boxed, rc, box_centre(bbox(i)), format!("{} to {}", name(reference), name(i)))).collect();
            last = s.lines(
                &format!(
                    "Image {boxed} shows {colours}. To compare distances I will draw a line from the centre of the {} box to the centre of each other box.",
                    name(reference)
                ),
                &items,
            )[0];
            let lens: Vec<(usize, i32)> = cands.iter().map(|&i| (i, scene::dist(rc, box_centre(bbox(i))))).collect();
            let listing = join_and(&lens.iter().map(|(i, l)| format!("to the {} about {l} px", name(*i))).collect::<Vec<_>>());
            let closest = !matches!(q, Question::Extreme { closest: false, .. });
            let win = if closest { lens.iter().min_by_key(|x| x.1) } else { lens.iter().max_by_key(|x| x.1) };
            let win = win.map(|x| x.0).unwrap_or(cands[0]);
            let (adj, which) = if closest { ("shortest", "closest to") } else { ("longest", "farthest from") };
            s.answer(
                &format!(
                    "Image {last} shows {} lines starting at the red dot on the {}. Measured between their end points: {listing}. The {adj} line goes to the {}, so the {} is {which} the {}, which is option {answer}.",
                    lens.len(),
                    name(reference),
                    name(win),
                    name(win),
                    name(reference)
                ),
                &answer,
            );
        }
    }
    let truth = json!({
        "clutter": clutter.name(),
        "objects": objs.iter().map(|o| o.to_json()).collect::<Vec<_>>(),
        "involved": involved.iter().map(|&i| name(i)).collect::<Vec<_>>(),
    });
    Draft {
        kind,
        question,
        question_type: "multiple choice",
        options: Some(options),
        answer,
        inputs: vec![image],
        grid_size: None,
        script: s,
        reflective: made_mistake,
        truth,
    }
}
