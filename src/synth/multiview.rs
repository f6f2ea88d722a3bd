//! Multi-view: objects on an 8×8 table grid, shown in two or three 336×252 views (front, a side,
//! and on hard samples the back). In every view left–right is one table axis at 36 px per cell
//! and depth is drawn as height on the table, so a horizontal offset in the front view is an
//! east–west distance and in the side view a front–back distance. Objects sit in distinct rows
//! and columns, so nothing overlaps in any view. Questions (multiple choice): which object is
//! closest to a reference on the table (needs both views), which is nearest the front edge, and
//! which would appear leftmost from the back. Actions address several image indices at once.

use super::rng::Rng;
use super::scene::{self, Object, Shape, BACKDROPS, PALETTE};
use super::teacher::{box_centre, bx, join_and, ln, BoxItem, Script};
use super::{shuffled_options, Difficulty, Draft};
use image::RgbImage;
use serde_json::json;

pub const WIDTH: u32 = 336;
pub const HEIGHT: u32 = 252;
/// Table cells per side.
const CELLS: i32 = 8;
/// Pixels per table cell, horizontally, in every view.
pub const CELL_PX: i32 = 36;

const TABLES: [[u8; 3]; 4] = [[222, 196, 160], [200, 170, 130], [215, 215, 205], [190, 205, 190]];
const FLOORS: [[u8; 3]; 3] = [[180, 170, 160], [170, 180, 190], [200, 195, 185]];

/// Where a view's camera stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Front,
    Right,
    Left,
    Back,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Front => "front",
            View::Right => "right side",
            View::Left => "left side",
            View::Back => "back",
        }
    }
    /// (lateral, depth) cell coordinates of table cell (x east, y back) in this view.
    fn project(self, x: i32, y: i32) -> (i32, i32) {
        let m = CELLS - 1;
        match self {
            View::Front => (x, y),
            View::Right => (y, m - x),
            View::Left => (m - y, x),
            View::Back => (m - x, m - y),
        }
    }
}

/// An object on the table: colour, shape and cell.
#[derive(Clone, Copy, Debug)]
struct Item {
    colour: scene::Colour,
    shape: Shape,
    x: i32,
    y: i32,
}

impl Item {
    fn name(&self) -> String {
        format!("{} {}", self.colour.name, self.shape.name())
    }
    /// The drawn object in `view`.
    fn in_view(&self, view: View) -> Object {
        let (lat, dep) = view.project(self.x, self.y);
        let r = 15 - dep;
        let base = 234 - dep * 15;
        Object { colour: self.colour, shape: self.shape, cx: 42 + lat * CELL_PX, cy: base - r, r }
    }
}

fn render(items: &[Item], view: View, wall: [u8; 3], table: [u8; 3], floor: [u8; 3]) -> RgbImage {
    let mut img = scene::backdrop(WIDTH, HEIGHT, wall, scene::Clutter::Plain);
    scene::fill_rect(&mut img, 0, 200, WIDTH as i32, HEIGHT as i32, floor);
    scene::fill_polygon(&mut img, &[(36.0, 108.0), (300.0, 108.0), (326.0, 246.0), (10.0, 246.0)], scene::shade(table, 40));
    scene::fill_polygon(&mut img, &[(38.0, 110.0), (298.0, 110.0), (322.0, 242.0), (14.0, 242.0)], table);
    // Far objects first.
    let mut order: Vec<(i32, Object)> = items.iter().map(|it| (view.project(it.x, it.y).1, it.in_view(view))).collect();
    order.sort_by_key(|(dep, o)| (-dep, o.cx));
    for (_, o) in &order {
        let base = o.cy + o.r;
        crate::core::pillow::draw_filled_ellipse(
            &mut img,
            f64::from(o.cx - o.r),
            f64::from(base - 3),
            f64::from(o.cx + o.r),
            f64::from(base + 3),
            scene::shade(table, 30),
        );
        o.draw(&mut img);
    }
    img
}

#[derive(Clone, Debug)]
enum Question {
    Closest { reference: usize, candidates: Vec<usize> },
    FrontMost { options: Vec<usize> },
    BackLeftmost { options: Vec<usize> },
}

fn d2(items: &[Item], a: usize, b: usize) -> i32 {
    let (dx, dy) = (items[a].x - items[b].x, items[a].y - items[b].y);
    dx * dx + dy * dy
}

/// The candidate at the clearly smallest squared distance (30 % margin).
fn clear_closest(items: &[Item], reference: usize, cands: &[usize]) -> Option<usize> {
    let best = *cands.iter().min_by_key(|&&c| d2(items, reference, c))?;
    let bd = d2(items, reference, best);
    cands.iter().filter(|&&c| c != best).all(|&c| bd * 13 <= d2(items, reference, c) * 10).then_some(best)
}

pub(crate) fn draft(rng: &mut Rng, teach: &mut Rng, difficulty: Difficulty, reflective: bool) -> Draft {
    let n = match difficulty {
        Difficulty::Easy => rng.range_usize(3, 4),
        Difficulty::Medium => rng.range_usize(4, 5),
        Difficulty::Hard => rng.range_usize(5, 6),
    };
    let cols = rng.sample_indices(CELLS as usize, n);
    let rows = rng.sample_indices(CELLS as usize, n);
    let mut pairs: Vec<(usize, usize)> = (0..PALETTE.len()).flat_map(|c| (0..Shape::ALL.len()).map(move |s| (c, s))).collect();
    rng.shuffle(&mut pairs);
    let items: Vec<Item> = (0..n)
        .map(|i| Item { colour: PALETTE[pairs[i].0], shape: Shape::ALL[pairs[i].1], x: cols[i] as i32, y: rows[i] as i32 })
        .collect();
    let side = if rng.chance(0.5) { View::Right } else { View::Left };
    let mut views = vec![View::Front, side];
    if difficulty == Difficulty::Hard {
        views.push(View::Back);
    }
    let wall = *rng.pick(&BACKDROPS);
    let table = *rng.pick(&TABLES);
    let floor = *rng.pick(&FLOORS);
    let inputs: Vec<RgbImage> = views.iter().map(|v| render(&items, *v, wall, table, floor)).collect();
    let n_opts = difficulty.pick(3, 3, 4).min(n);

    // Question.
    let mut question = None;
    if rng.below(3) == 0 {
        for _ in 0..40 {
            let reference = rng.below(n as u64) as usize;
            let mut c: Vec<usize> = (0..n).filter(|&i| i != reference).collect();
            rng.shuffle(&mut c);
            c.truncate(n_opts.min(n - 1));
            if c.len() >= 2 && clear_closest(&items, reference, &c).is_some() {
                question = Some(Question::Closest { reference, candidates: c });
                break;
            }
        }
    }
    let question = question.unwrap_or_else(|| {
        let mut o: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut o);
        o.truncate(n_opts);
        if rng.chance(0.5) {
            Question::FrontMost { options: o }
        } else {
            Question::BackLeftmost { options: o }
        }
    });
    let name = |i: usize| items[i].name();
    let side_name = side.name();
    let view_list = join_and(
        &views.iter().enumerate().map(|(k, v)| format!("image {} from the {}", k + 1, v.name())).collect::<Vec<_>>(),
    );
    let intro = format!("The {} images show the same table from different sides: {view_list}. The objects do not move.", views.len());
    let front_side = if side == View::Right { "left" } else { "right" };

    let (kind, qtext, texts, correct, involved, boxed_views): (&str, String, Vec<String>, usize, Vec<usize>, Vec<usize>) = match &question {
        Question::Closest { reference, candidates } => {
            let best = clear_closest(&items, *reference, candidates).unwrap_or(candidates[0]);
            let mut inv = vec![*reference];
            inv.extend(candidates);
            (
                "closest",
                format!("{intro} On the table, which object is closest to the {}?", name(*reference)),
                candidates.iter().map(|&i| name(i)).collect(),
                candidates.iter().position(|&c| c == best).unwrap_or(0),
                inv,
                vec![1, 2],
            )
        }
        Question::FrontMost { options } => {
            let best = *options.iter().min_by_key(|&&i| items[i].y).unwrap_or(&options[0]);
            (
                "front_most",
                format!("{intro} Which object is closest to the front edge of the table (the edge nearest the camera of image 1)?"),
                options.iter().map(|&i| name(i)).collect(),
                options.iter().position(|&c| c == best).unwrap_or(0),
                options.clone(),
                vec![1, 2],
            )
        }
        Question::BackLeftmost { options } => {
            let best = *options.iter().max_by_key(|&&i| items[i].x).unwrap_or(&options[0]);
            let mut bv = vec![1];
            if views.len() > 2 {
                bv.push(3);
            }
            (
                "back_leftmost",
                format!("{intro} Seen from the back of the table (facing the camera of image 1), which object appears leftmost?"),
                options.iter().map(|&i| name(i)).collect(),
                options.iter().position(|&c| c == best).unwrap_or(0),
                options.clone(),
                bv,
            )
        }
    };
    let (options, answer) = shuffled_options(rng, &texts, correct);

    // Teacher: boxes in the views it needs (one turn, several indices), maybe a correction.
    let mut s = Script::new(views.len());
    let label = |i: usize, v: usize| format!("{} (image {v})", name(i));
    let obj_in = |i: usize, v: usize| items[i].in_view(views[v - 1]);
    let boxes_for = |v: usize| -> Vec<BoxItem> { involved.iter().map(|&i| bx(v, obj_in(i, v).bbox(WIDTH, HEIGHT), label(i, v))).collect() };
    let all: Vec<BoxItem> = boxed_views.iter().flat_map(|&v| boxes_for(v)).collect();
    let why = match kind {
        "closest" => format!(
            "Left–right in image 1 is the east–west position on the table; in image 2, taken from the {side_name}, left–right is the front–back position (the front edge is on its {front_side}). A distance on the table needs both, so I will box the {} and the candidates in images 1 and 2.",
            name(involved[0])
        ),
        "front_most" => format!(
            "In image 2, taken from the {side_name}, left–right is the front–back position with the front edge on its {front_side}. I will box the options in images 1 and 2."
        ),
        _ => format!(
            "From the back, left and right are swapped compared with image 1, so the object that appears leftmost from the back is the rightmost one in image 1. I will box the options in image 1{}.",
            if boxed_views.len() > 1 { " and in image 3, which is taken from the back" } else { "" }
        ),
    };
    let mut obs: Vec<usize>;
    let mut made_mistake = false;
    if reflective {
        let vk = teach.below(boxed_views.len() as u64) as usize;
        let v = boxed_views[vk];
        let wrong_k = teach.below(involved.len() as u64) as usize;
        let who = involved[wrong_k];
        let others: Vec<usize> = (0..n).filter(|&i| i != who).collect();
        let decoy = *teach.pick(&others);
        let mut shown = all.clone();
        let pos = vk * involved.len() + wrong_k;
        shown[pos].bbox = obj_in(decoy, v).bbox(WIDTH, HEIGHT);
        obs = s.boxes(&why, &shown);
        let bad = obs[vk];
        let fixed = s.boxes(
            &format!(
                "Image {bad} shows {} around the {}, not the {}: in image {v} the {} is the one at x ≈ {}. The box is on the wrong object, so I will redraw the boxes on image {v} with \"{}\" moved.",
                s.box_ref(bad, &label(who, v)),
                name(decoy),
                name(who),
                name(who),
                obj_in(who, v).cx,
                label(who, v)
            ),
            &boxes_for(v),
        )[0];
        obs[vk] = fixed;
        made_mistake = true;
    } else {
        obs = s.boxes(&why, &all);
    }
    let xs = |i: usize, v: usize| obj_in(i, v).cx;
    match &question {
        Question::Closest { reference, candidates } => {
            let (o1, o2) = (obs[0], obs[1]);
            let mut items_l = Vec::new();
            for (o, v) in [(o1, 1usize), (o2, 2usize)] {
                let rc = box_centre(obj_in(*reference, v).bbox(WIDTH, HEIGHT));
                for &c in candidates {
                    items_l.push(ln(o, rc, box_centre(obj_in(c, v).bbox(WIDTH, HEIGHT)), format!("{} to {} (image {v})", name(*reference), name(c))));
                }
            }
            let made = s.lines(
                &format!(
                    "Image {o1} shows the boxes in the front view and image {o2} in the {side_name} view; the {} is in the {} box in both. I will draw lines from the {} to each candidate in both views and compare their horizontal extents.",
                    name(*reference),
                    s.box_colour(o1, &label(*reference, 1)),
                    name(*reference)
                ),
                &items_l,
            );
            let (l1, l2) = (made[0], made[1]);
            let parts: Vec<String> = candidates
                .iter()
                .map(|&c| {
                    let a = (xs(c, 1) - xs(*reference, 1)).abs();
                    let b = (xs(c, 2) - xs(*reference, 2)).abs();
                    let dd = f64::from(a * a + b * b).sqrt().round() as i32;
                    format!("the {} {a} px and {b} px, about {dd} px in all", name(c))
                })
                .collect();
            let best = clear_closest(&items, *reference, candidates).unwrap_or(candidates[0]);
            s.answer(
                &format!(
                    "In image {l1} (front) and image {l2} ({side_name}) the lines from the {} span horizontally: {}. One table cell is {CELL_PX} px in both views, so these offsets combine like the sides of a right triangle. The {} is the closest on the table, which is option {answer}.",
                    name(*reference),
                    parts.join("; "),
                    name(best)
                ),
                &answer,
            );
        }
        Question::FrontMost { options } => {
            let o2 = obs[1];
            let mut by_x: Vec<usize> = options.clone();
            by_x.sort_by_key(|&i| xs(i, 2));
            if side == View::Left {
                by_x.reverse();
            }
            let order = join_and(&by_x.iter().map(|&i| format!("the {} (x ≈ {})", name(i), xs(i, 2))).collect::<Vec<_>>());
            s.answer(
                &format!(
                    "Image {o2} shows the boxes in the {side_name} view. Going from its {front_side} edge (the front of the table) towards the back: {order}. The {} is nearest the front edge, which is option {answer}.",
                    name(by_x[0])
                ),
                &answer,
            );
        }
        Question::BackLeftmost { options } => {
            let o1 = obs[0];
            let mut by_x: Vec<usize> = options.clone();
            by_x.sort_by_key(|&i| -xs(i, 1));
            let order = join_and(&by_x.iter().map(|&i| format!("the {} (x ≈ {})", name(i), xs(i, 1))).collect::<Vec<_>>());
            let confirm = if obs.len() > 1 {
                format!(" Image {} (the back view) agrees: the {} box is the leftmost there.", obs[1], name(by_x[0]))
            } else {
                String::new()
            };
            s.answer(
                &format!(
                    "Image {o1} shows the boxes in the front view; from right to left: {order}. The rightmost from the front is the leftmost from the back, so it is the {}.{confirm} That is option {answer}.",
                    name(by_x[0])
                ),
                &answer,
            );
        }
    }
    let truth = json!({
        "views": views.iter().map(|v| v.name()).collect::<Vec<_>>(),
        "cell_px": CELL_PX,
        "objects": items.iter().map(|it| json!({"colour": it.colour.name, "shape": it.shape.name(), "cell": [it.x, it.y]})).collect::<Vec<_>>(),
    });
    Draft {
        kind,
        question: qtext,
        question_type: "multiple choice",
        options: Some(options),
        answer,
        inputs,
        grid_size: None,
        script: s,
        reflective: made_mistake,
        truth,
    }
}
