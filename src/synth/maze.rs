//! Maze navigation: a perfect grid maze (randomised depth-first carving) drawn on a 392×392
//! image with a start and a goal marker. Questions ask for the number of moves or turns of the
//! shortest route (numerical) or its first move or full move sequence (multiple choice). The
//! teacher boxes the start and goal cells, then traces the route with Path Tracer lines between
//! cell centres a few straight segments per turn, the way ViLaSR's maze cold-start data does.

use super::rng::Rng;
use super::scene::{self, Colour, Object, Shape, BACKDROPS, PALETTE};
use super::teacher::{bx, join_and, ln, pt, Script};
use super::{shuffled_options, Difficulty, Draft};
use image::RgbImage;
use serde_json::json;

/// Image side (14 × 28).
pub const SIZE: u32 = 392;
/// The grid spans at most this many pixels.
const SPAN: i32 = 336;
/// Wall thickness.
pub const WALL: i32 = 4;

const WALL_COLOURS: [[u8; 3]; 5] = [[50, 60, 80], [70, 50, 40], [30, 70, 60], [60, 60, 60], [40, 40, 110]];
const FLOORS: [[u8; 3]; 4] = [[252, 252, 250], [250, 248, 240], [244, 248, 252], [246, 250, 244]];

/// A direction on the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Up,
    Right,
    Down,
    Left,
}

impl Dir {
    pub const ALL: [Dir; 4] = [Dir::Up, Dir::Right, Dir::Down, Dir::Left];

    pub fn name(self) -> &'static str {
        match self {
            Dir::Up => "up",
            Dir::Right => "right",
            Dir::Down => "down",
            Dir::Left => "left",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Dir::Up => 1,
            Dir::Right => 2,
            Dir::Down => 4,
            Dir::Left => 8,
        }
    }

    fn delta(self) -> (i32, i32) {
        match self {
            Dir::Up => (-1, 0),
            Dir::Right => (0, 1),
            Dir::Down => (1, 0),
            Dir::Left => (0, -1),
        }
    }

    pub fn opposite(self) -> Dir {
        match self {
            Dir::Up => Dir::Down,
            Dir::Right => Dir::Left,
            Dir::Down => Dir::Up,
            Dir::Left => Dir::Right,
        }
    }
}

/// A `g × g` maze: for each cell the directions with an opening.
#[derive(Clone, Debug)]
pub struct Maze {
    pub g: i32,
    open: Vec<u8>,
}

impl Maze {
    /// Carve a perfect maze (exactly one simple route between any two cells).
    pub fn carve(rng: &mut Rng, g: i32) -> Maze {
        let n = (g * g) as usize;
        let mut m = Maze { g, open: vec![0; n] };
        let mut seen = vec![false; n];
        let start = rng.below(n as u64) as usize;
        let mut stack = vec![start];
        seen[start] = true;
        while let Some(&cell) = stack.last() {
            let (r, c) = (cell as i32 / g, cell as i32 % g);
            let next: Vec<Dir> = Dir::ALL
                .into_iter()
                .filter(|d| {
                    let (dr, dc) = d.delta();
                    let (nr, nc) = (r + dr, c + dc);
                    nr >= 0 && nr < g && nc >= 0 && nc < g && !seen[(nr * g + nc) as usize]
                })
                .collect();
            if next.is_empty() {
                stack.pop();
                continue;
            }
            let d = *rng.pick(&next);
            let (dr, dc) = d.delta();
            let nb = ((r + dr) * g + c + dc) as usize;
            m.open[cell] |= d.bit();
            m.open[nb] |= d.opposite().bit();
            seen[nb] = true;
            stack.push(nb);
        }
        m
    }

    pub fn is_open(&self, r: i32, c: i32, d: Dir) -> bool {
        r >= 0 && r < self.g && c >= 0 && c < self.g && self.open[(r * self.g + c) as usize] & d.bit() != 0
    }

    /// Breadth-first distances from `(r, c)` (−1 = unreachable).
    pub fn distances(&self, from: (i32, i32)) -> Vec<i32> {
        let g = self.g;
        let mut dist = vec![-1; (g * g) as usize];
        let mut queue = std::collections::VecDeque::new();
        dist[(from.0 * g + from.1) as usize] = 0;
        queue.push_back(from);
        while let Some((r, c)) = queue.pop_front() {
            for d in Dir::ALL {
                if self.is_open(r, c, d) {
                    let (dr, dc) = d.delta();
                    let k = ((r + dr) * g + c + dc) as usize;
                    if dist[k] < 0 {
                        dist[k] = dist[(r * g + c) as usize] + 1;
                        queue.push_back((r + dr, c + dc));
                    }
                }
            }
        }
        dist
    }

    /// The shortest route from `a` to `b` as cells (both ends included).
    pub fn route(&self, a: (i32, i32), b: (i32, i32)) -> Vec<(i32, i32)> {
        let g = self.g;
        let dist = self.distances(b);
        let mut out = vec![a];
        let mut cur = a;
        while cur != b {
            let here = dist[(cur.0 * g + cur.1) as usize];
            let step = Dir::ALL.into_iter().find(|d| {
                let (dr, dc) = d.delta();
                self.is_open(cur.0, cur.1, *d) && dist[((cur.0 + dr) * g + cur.1 + dc) as usize] == here - 1
            });
            match step {
                Some(d) => {
                    let (dr, dc) = d.delta();
                    cur = (cur.0 + dr, cur.1 + dc);
                    out.push(cur);
                }
                None => break,
            }
        }
        out
    }

    /// Walk `moves` from `a`; the end cell, or `None` when a move hits a wall or leaves the grid.
    pub fn walk(&self, a: (i32, i32), moves: &[(Dir, i32)]) -> Option<(i32, i32)> {
        let mut cur = a;
        for &(d, n) in moves {
            for _ in 0..n {
                if !self.is_open(cur.0, cur.1, d) {
                    return None;
                }
                let (dr, dc) = d.delta();
                cur = (cur.0 + dr, cur.1 + dc);
            }
        }
        Some(cur)
    }
}

/// Straight runs of a route: (direction, cells, end cell).
fn segments(route: &[(i32, i32)]) -> Vec<(Dir, i32, (i32, i32))> {
    let mut out: Vec<(Dir, i32, (i32, i32))> = Vec::new();
    for w in route.windows(2) {
        let d = Dir::ALL.into_iter().find(|d| d.delta() == (w[1].0 - w[0].0, w[1].1 - w[0].1)).unwrap_or(Dir::Up);
        match out.last_mut() {
            Some(last) if last.0 == d => {
                last.1 += 1;
                last.2 = w[1];
            }
            _ => out.push((d, 1, w[1])),
        }
    }
    out
}

fn route_text(moves: &[(Dir, i32)]) -> String {
    moves.iter().map(|(d, n)| format!("{} {n}", d.name())).collect::<Vec<_>>().join(", ")
}

/// Pixel geometry of the grid.
#[derive(Clone, Copy, Debug)]
struct Grid {
    origin: i32,
    cell: i32,
}

impl Grid {
    fn centre(&self, (r, c): (i32, i32)) -> [i32; 2] {
        [self.origin + c * self.cell + self.cell / 2, self.origin + r * self.cell + self.cell / 2]
    }
    fn cell_box(&self, (r, c): (i32, i32)) -> [i32; 4] {
        let (x, y) = (self.origin + c * self.cell, self.origin + r * self.cell);
        [x + 4, y + 4, x + self.cell - 4, y + self.cell - 4]
    }
}

fn rc(cell: (i32, i32)) -> String {
    format!("row {}, column {}", cell.0 + 1, cell.1 + 1)
}

fn render(m: &Maze, grid: Grid, floor: [u8; 3], checker: bool, wall: [u8; 3], backdrop: [u8; 3], markers: &[Object]) -> RgbImage {
    let mut img = scene::backdrop(SIZE, SIZE, backdrop, scene::Clutter::Plain);
    let (o, cs, g) = (grid.origin, grid.cell, m.g);
    for r in 0..g {
        for c in 0..g {
            let tint = if checker && (r + c) % 2 == 1 { scene::shade(floor, 8) } else { floor };
            scene::fill_rect(&mut img, o + c * cs, o + r * cs, o + (c + 1) * cs, o + (r + 1) * cs, tint);
        }
    }
    let h = WALL / 2;
    for r in 0..g {
        for c in 0..g {
            let (x, y) = (o + c * cs, o + r * cs);
            if !m.is_open(r, c, Dir::Up) {
                scene::fill_rect(&mut img, x - h, y - h, x + cs + h, y + h, wall);
            }
            if !m.is_open(r, c, Dir::Left) {
                scene::fill_rect(&mut img, x - h, y - h, x + h, y + cs + h, wall);
            }
            if !m.is_open(r, c, Dir::Down) {
                scene::fill_rect(&mut img, x - h, y + cs - h, x + cs + h, y + cs + h, wall);
            }
            if !m.is_open(r, c, Dir::Right) {
                scene::fill_rect(&mut img, x + cs - h, y - h, x + cs + h, y + cs + h, wall);
            }
        }
    }
    for mk in markers {
        mk.draw(&mut img);
    }
    img
}

/// Marker colours: never red or blue (the Path Tracer's start and end dots) nor gray.
const MARKER_COLOURS: [&str; 7] = ["green", "yellow", "orange", "purple", "pink", "cyan", "brown"];

pub(crate) fn draft(rng: &mut Rng, teach: &mut Rng, difficulty: Difficulty, reflective: bool) -> Draft {
    let g = match difficulty {
        Difficulty::Easy => rng.range(4, 5),
        Difficulty::Medium => rng.range(5, 7),
        Difficulty::Hard => rng.range(7, 8),
    } as i32;
    let maze = Maze::carve(rng, g);
    let cell = SPAN / g;
    let grid = Grid { origin: (SIZE as i32 - g * cell) / 2, cell };
    let min_moves = difficulty.pick(3, g + 1, 2 * g);
    let start = (rng.below(g as u64) as i32, rng.below(g as u64) as i32);
    let dist = maze.distances(start);
    let far: Vec<usize> = (0..dist.len()).filter(|&k| dist[k] >= min_moves).collect();
    let goal_k = if far.is_empty() {
        (0..dist.len()).max_by_key(|&k| (dist[k], std::cmp::Reverse(k))).unwrap_or(0)
    } else {
        *rng.pick(&far)
    };
    let goal = (goal_k as i32 / g, goal_k as i32 % g);

    // Markers and decoys.
    let mut colours: Vec<&str> = MARKER_COLOURS.to_vec();
    rng.shuffle(&mut colours);
    let start_colour = scene::colour(colours[0]);
    let goal_colour = scene::colour(colours[1]);
    let start_shape = *rng.pick(&[Shape::Circle, Shape::Diamond, Shape::Hexagon]);
    let goal_shape = *rng.pick(&[Shape::Star, Shape::Square, Shape::Triangle]);
    let mr = (cell * 3 / 10).max(6);
    let marker = |c: Colour, s: Shape, at: (i32, i32)| {
        let p = grid.centre(at);
        Object { colour: c, shape: s, cx: p[0], cy: p[1], r: mr }
    };
    let start_obj = marker(start_colour, start_shape, start);
    let goal_obj = marker(goal_colour, goal_shape, goal);
    let mut markers = vec![start_obj, goal_obj];
    let decoys = difficulty.pick(0, rng.range_usize(0, 2), rng.range_usize(1, 3));
    let mut decoy_names = Vec::new();
    let free: Vec<usize> = (0..(g * g) as usize).filter(|&k| k != goal_k && k != (start.0 * g + start.1) as usize).collect();
    let spots = {
        let mut f = free.clone();
        rng.shuffle(&mut f);
        f.truncate(decoys);
        f
    };
    for k in spots {
        let allowed: Vec<Colour> = PALETTE
            .iter()
            .copied()
            .filter(|c| !matches!(c.name, "red" | "blue") && *c != start_colour && *c != goal_colour)
            .collect();
        let c = *rng.pick(&allowed);
        let p = grid.centre((k as i32 / g, k as i32 % g));
        let o = Object { colour: c, shape: Shape::Circle, cx: p[0], cy: p[1], r: (cell / 6).max(4) };
        decoy_names.push(format!("{} dot", c.name));
        markers.push(o);
    }
    let floor = *rng.pick(&FLOORS);
    let wall = *rng.pick(&WALL_COLOURS);
    let backdrop = *rng.pick(&BACKDROPS);
    let checker = difficulty != Difficulty::Easy && rng.chance(0.5);
    let image = render(&maze, grid, floor, checker, wall, backdrop, &markers);

    let route = maze.route(start, goal);
    let segs = segments(&route);
    let moves: Vec<(Dir, i32)> = segs.iter().map(|s| (s.0, s.1)).collect();
    let n_moves = (route.len() - 1) as i32;
    let turns = segs.len().saturating_sub(1);
    let start_desc = format!("{} {}", start_colour.name, start_shape.name());
    let goal_desc = format!("{} {}", goal_colour.name, goal_shape.name());
    let intro = format!(
        "The maze is drawn on a {g}×{g} grid. The {start_desc} marks the start and the {goal_desc} marks the goal. You can only move between neighbouring cells that are not separated by a wall."
    );

    // Question.
    let kinds = ["moves", "turns", "first_move", "route"];
    let mut kind = *rng.pick(&kinds);
    let mut route_options: Option<(Vec<String>, String)> = None;
    if kind == "route" {
        route_options = route_choices(rng, &maze, start, goal, &moves);
        if route_options.is_none() {
            kind = "first_move";
        }
    }
    let (question, question_type, options, answer) = match kind {
        "moves" => (
            format!("{intro} How many moves does the shortest route from the start to the goal take?"),
            "numerical",
            None,
            n_moves.to_string(),
        ),
        "turns" => (
            format!("{intro} How many times does the shortest route from the start to the goal change direction?"),
            "numerical",
            None,
            turns.to_string(),
        ),
        "route" => {
            let (opts, ans) = route_options.clone().unwrap_or_default();
            (
                format!("{intro} Which sequence of moves leads from the start to the goal without passing through a wall? (\"right 2\" means two cells to the right.)"),
                "multiple choice",
                Some(opts),
                ans,
            )
        }
        _ => {
            let dirs: Vec<String> = Dir::ALL.iter().map(|d| d.name().to_string()).collect();
            let correct = Dir::ALL.iter().position(|d| *d == moves[0].0).unwrap_or(0);
            let (opts, ans) = shuffled_options(rng, &dirs, correct);
            (
                format!("{intro} In which direction is the first move of the shortest route from the start to the goal?"),
                "multiple choice",
                Some(opts),
                ans,
            )
        }
    };

    // Teacher.
    let mut s = Script::new(1);
    let decoy_note = if decoy_names.is_empty() {
        String::new()
    } else {
        format!(" The small {} only decorate cells and do not block the way.", join_and(&plural_unique(&decoy_names)))
    };
    let geometry = format!(
        "The maze is a {g}×{g} grid of {cell}-pixel cells starting at ({o}, {o}); I count rows from the top and columns from the left.",
        o = grid.origin
    );
    let start_box = bx(1, grid.cell_box(start), "start");
    let goal_box = bx(1, grid.cell_box(goal), "goal");
    let mut made_mistake = false;
    let mut last_image;
    if reflective {
        // Box one marker in a neighbouring cell first.
        let wrong_label = if teach.chance(0.5) { "goal" } else { "start" };
        let (right_cell, other_cell) = if wrong_label == "goal" { (goal, start) } else { (start, goal) };
        let near: Vec<(i32, i32)> = Dir::ALL
            .into_iter()
            .map(|d| (right_cell.0 + d.delta().0, right_cell.1 + d.delta().1))
            .filter(|&(r, c)| r >= 0 && r < g && c >= 0 && c < g && (r, c) != other_cell)
            .collect();
        let wrong_cell = *teach.pick(&near);
        let (shown_start, shown_goal) = if wrong_label == "goal" { (start, wrong_cell) } else { (wrong_cell, goal) };
        let first = vec![bx(1, grid.cell_box(shown_start), "start"), bx(1, grid.cell_box(shown_goal), "goal")];
        let img = s.boxes(
            &format!(
                "{geometry} The {start_desc} seems to be in {} and the {goal_desc} in {}.{decoy_note} I will box both cells before tracing the route.",
                rc(shown_start),
                rc(shown_goal)
            ),
            &first,
        )[0];
        let (desc, dir) = if wrong_label == "goal" { (&goal_desc, step_dir(wrong_cell, goal)) } else { (&start_desc, step_dir(wrong_cell, start)) };
        last_image = s.boxes(
            &format!(
                "Image {img} shows {} on {}, but the {desc} is not in that cell: it is one cell {} of it, in {} (centre {}). The box is misplaced, so I will redraw the boxes on image 1 with \"{wrong_label}\" moved to the right cell.",
                s.box_ref(img, wrong_label),
                rc(wrong_cell),
                dir.name(),
                rc(right_cell),
                pt(grid.centre(right_cell)),
            ),
            &[start_box.clone(), goal_box.clone()],
        )[0];
        made_mistake = true;
    } else {
        last_image = s.boxes(
            &format!(
                "{geometry} The {start_desc} is in {} (centre {}) and the {goal_desc} is in {} (centre {}).{decoy_note} I will box both cells before tracing the route.",
                rc(start),
                pt(grid.centre(start)),
                rc(goal),
                pt(grid.centre(goal))
            ),
            &[start_box, goal_box],
        )[0];
    }

    // Trace the route a few straight segments per turn (at most three turns).
    let chunk = segs.len().div_ceil(3).max(3);
    let mut from = start;
    let mut k = 0usize;
    let total = segs.len();
    while k < total {
        let part = &segs[k..(k + chunk).min(total)];
        let mut items = Vec::new();
        let mut descs = Vec::new();
        let mut p = from;
        for (j, (d, n, end)) in part.iter().enumerate() {
            items.push(ln(last_image, grid.centre(p), grid.centre(*end), format!("segment {}: {} {n}", k + j + 1, d.name())));
            descs.push(format!("{} {} to {}", d.name(), cells(*n), rc(*end)));
            p = *end;
        }
        let reaches = if k + part.len() == total { ", which reaches the goal cell" } else { "" };
        let think = if k == 0 {
            format!(
                "Image {last_image} shows {} around the start cell and {} around the goal cell. From the start the open passage leads {}. Following the corridors: {}{reaches}. I will trace {} between cell centres.",
                s.box_ref(last_image, "start"),
                s.box_ref(last_image, "goal"),
                part[0].0.name(),
                descs.join(", then "),
                if part.len() == 1 { "this segment".to_string() } else { format!("these {} segments", part.len()) }
            )
        } else {
            format!(
                "Image {last_image} shows the route so far: a black line from the red dot at the start to the blue dot in {} ({}), staying inside open corridors. From there the passage continues {}{reaches}. I will trace {}.",
                rc(from),
                pt(grid.centre(from)),
                descs.join(", then "),
                if part.len() == 1 { "this segment".to_string() } else { format!("these {} segments", part.len()) }
            )
        };
        last_image = s.lines(&think, &items)[0];
        from = p;
        k += part.len();
    }
    let listing = route_text(&moves);
    let summary = format!(
        "Image {last_image} shows a continuous black route from the start box to the goal box made of {} straight segment{} ({listing}) that never crosses a wall.",
        segs.len(),
        if segs.len() == 1 { "" } else { "s" }
    );
    let conclusion = match kind {
        "moves" => format!(
            "Adding up the segment lengths: {} = {n_moves} moves.",
            moves.iter().map(|m| m.1.to_string()).collect::<Vec<_>>().join(" + ")
        ),
        "turns" => format!(
            "The direction changes once between each pair of consecutive segments, so {} segment{} give{} {turns} change{} of direction.",
            segs.len(),
            if segs.len() == 1 { "" } else { "s" },
            if segs.len() == 1 { "s" } else { "" },
            if turns == 1 { "" } else { "s" }
        ),
        "route" => format!("The traced moves \"{listing}\" match option {answer}."),
        _ => format!("The first segment goes {}, which is option {answer}.", moves[0].0.name()),
    };
    s.answer(&format!("{summary} {conclusion}"), &answer);

    let truth = json!({
        "grid_size": g,
        "origin": [grid.origin, grid.origin],
        "cell": cell,
        "wall_thickness": WALL,
        "start": [start.0, start.1],
        "goal": [goal.0, goal.1],
        "moves": n_moves,
        "turns": turns,
        "route": listing,
    });
    Draft {
        kind,
        question,
        question_type,
        options,
        answer,
        inputs: vec![image],
        grid_size: Some(g as u32),
        script: s,
        reflective: made_mistake,
        truth,
    }
}

fn cells(n: i32) -> String {
    if n == 1 {
        "1 cell".into()
    } else {
        format!("{n} cells")
    }
}

/// Unique plurals ("orange dot", "orange dot" → "orange dots").
fn plural_unique(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in v {
        let p = format!("{x}s");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn step_dir(from: (i32, i32), to: (i32, i32)) -> Dir {
    Dir::ALL.into_iter().find(|d| d.delta() == (to.0 - from.0, to.1 - from.1)).unwrap_or(Dir::Up)
}

/// Four route options (one correct) as lettered options and the answer letter; `None` when
/// three wrong routes cannot be built.
fn route_choices(rng: &mut Rng, maze: &Maze, start: (i32, i32), goal: (i32, i32), moves: &[(Dir, i32)]) -> Option<(Vec<String>, String)> {
    let correct = route_text(moves);
    let mut cands: Vec<Vec<(Dir, i32)>> = Vec::new();
    // Reversed route (goal to start).
    cands.push(moves.iter().rev().map(|(d, n)| (d.opposite(), *n)).collect());
    for j in 0..moves.len() {
        for d in Dir::ALL {
            if d != moves[j].0 {
                let mut m = moves.to_vec();
                m[j].0 = d;
                cands.push(m);
            }
        }
        for delta in [-1, 1] {
            let mut m = moves.to_vec();
            m[j].1 += delta;
            if m[j].1 >= 1 {
                cands.push(m);
            }
        }
    }
    for j in 0..moves.len().saturating_sub(1) {
        let mut m = moves.to_vec();
        m.swap(j, j + 1);
        cands.push(m);
    }
    rng.shuffle(&mut cands);
    let mut wrong: Vec<String> = Vec::new();
    for c in cands {
        let t = route_text(&c);
        if t == correct || wrong.contains(&t) || maze.walk(start, &c) == Some(goal) {
            continue;
        }
        wrong.push(t);
        if wrong.len() == 3 {
            break;
        }
    }
    if wrong.len() < 3 {
        return None;
    }
    let mut texts = vec![correct];
    texts.extend(wrong);
    Some(shuffled_options(rng, &texts, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carved_mazes_connect_every_cell() {
        let mut rng = Rng::new(11);
        for g in 3..9 {
            let m = Maze::carve(&mut rng, g);
            let d = m.distances((0, 0));
            assert!(d.iter().all(|&x| x >= 0));
            // A perfect maze on n cells has n − 1 passages.
            let passages: u32 = m.open.iter().map(|b| b.count_ones()).sum::<u32>() / 2;
            assert_eq!(passages as i32, g * g - 1);
            let r = m.route((0, 0), (g - 1, g - 1));
            assert_eq!(r.len() as i32 - 1, d[(g * g - 1) as usize]);
            let segs = segments(&r);
            let moves: Vec<(Dir, i32)> = segs.iter().map(|s| (s.0, s.1)).collect();
            assert_eq!(m.walk((0, 0), &moves), Some((g - 1, g - 1)));
        }
    }
}
