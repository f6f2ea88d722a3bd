//! Short video: 16 frames (224×168) of coloured shapes, some gliding in straight lines, some
//! still. Questions: the direction a given object moves (multiple choice), which object moves
//! farthest (multiple choice), and how many objects move (numerical). The teacher boxes the
//! objects in the first and the last frame in one turn (two image indices), then draws each
//! moving object's path on the last-frame observation.

use super::rng::Rng;
use super::scene::{self, Clutter, Object, Shape, BACKDROPS, PALETTE};
use super::teacher::{a_an, box_centre, bx, join_and, ln, number_word, pt, BoxItem, Script};
use super::{shuffled_options, Difficulty, Draft};
use image::RgbImage;
use serde_json::json;

pub const WIDTH: u32 = 224;
pub const HEIGHT: u32 = 168;
/// Frames per video (the ViLaSR RL prompt hard-codes 16).
pub const FRAMES: usize = 16;
const LAST: i32 = FRAMES as i32 - 1;

/// An object's track: from `start` at frame 1 to `end` at frame 16 in equal steps.
#[derive(Clone, Copy, Debug)]
struct Track {
    colour: scene::Colour,
    shape: Shape,
    r: i32,
    start: [i32; 2],
    end: [i32; 2],
}

impl Track {
    fn name(&self) -> String {
        format!("{} {}", self.colour.name, self.shape.name())
    }
    /// Position in 0-based frame `t`.
    fn at(&self, t: i32) -> [i32; 2] {
        [self.start[0] + (self.end[0] - self.start[0]) * t / LAST, self.start[1] + (self.end[1] - self.start[1]) * t / LAST]
    }
    fn object(&self, t: i32) -> Object {
        let p = self.at(t);
        Object { colour: self.colour, shape: self.shape, cx: p[0], cy: p[1], r: self.r }
    }
    fn moves(&self) -> bool {
        self.start != self.end
    }
    fn length(&self) -> i32 {
        scene::dist(self.start, self.end)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Direction,
    Farthest,
    CountMoving,
}

/// The dominant direction of a displacement, if clear (one axis ≥ 2× the other and ≥ 40 px).
fn direction(d: [i32; 2]) -> Option<&'static str> {
    if d[0].abs() >= 40 && d[0].abs() >= 2 * d[1].abs() {
        Some(if d[0] < 0 { "left" } else { "right" })
    } else if d[1].abs() >= 40 && d[1].abs() >= 2 * d[0].abs() {
        Some(if d[1] < 0 { "up" } else { "down" })
    } else {
        None
    }
}

fn bounds(r: i32) -> (i32, i32, i32, i32) {
    (r + 6, WIDTH as i32 - r - 7, r + 6, HEIGHT as i32 - r - 7)
}

/// A start point such that `start` and `start + d` stay inside the frame, or `None`.
fn place(rng: &mut Rng, r: i32, d: [i32; 2]) -> Option<[i32; 2]> {
    let (x0, x1, y0, y1) = bounds(r);
    let (lx, hx) = (x0 - d[0].min(0), x1 - d[0].max(0));
    let (ly, hy) = (y0 - d[1].min(0), y1 - d[1].max(0));
    if lx > hx || ly > hy {
        return None;
    }
    Some([rng.range(i64::from(lx), i64::from(hx)) as i32, rng.range(i64::from(ly), i64::from(hy)) as i32])
}

fn apart(tracks: &[Track]) -> bool {
    for t in 0..=LAST {
        for (i, a) in tracks.iter().enumerate() {
            for b in &tracks[i + 1..] {
                let (pa, pb) = (a.at(t), b.at(t));
                let need = a.r + b.r + 10;
                if scene::dist2(pa, pb) < i64::from(need * need) {
                    return false;
                }
            }
        }
    }
    true
}

/// Displacements per object for a question kind: `subject` (index 0) gets the property the
/// question is about.
fn displacements(rng: &mut Rng, kind: Kind, n: usize) -> Vec<[i32; 2]> {
    let free = |rng: &mut Rng| -> [i32; 2] {
        loop {
            let d = [rng.range(-100, 100) as i32, rng.range(-90, 90) as i32];
            let l = scene::dist([0, 0], d);
            if (40..=110).contains(&l) {
                return d;
            }
        }
    };
    let dominant = |rng: &mut Rng| -> [i32; 2] {
        let major = rng.range(50, 95) as i32 * if rng.chance(0.5) { -1 } else { 1 };
        let minor = rng.range(-i64::from(major.abs() / 3), i64::from(major.abs() / 3)) as i32;
        if rng.chance(0.5) {
            [major, minor]
        } else {
            [minor, major]
        }
    };
    match kind {
        Kind::Direction => (0..n).map(|i| if i == 0 { dominant(rng) } else if rng.chance(0.6) { free(rng) } else { [0, 0] }).collect(),
        Kind::Farthest => (0..n).map(|_| if rng.chance(0.8) { free(rng) } else { [0, 0] }).collect(),
        Kind::CountMoving => {
            let k = rng.range_usize(1, n);
            let mut movers = rng.sample_indices(n, k);
            movers.sort();
            (0..n).map(|i| if movers.contains(&i) { free(rng) } else { [0, 0] }).collect()
        }
    }
}

/// The clearly farthest mover (25 % and 20 px ahead of every other), if any.
fn clear_farthest(tracks: &[Track]) -> Option<usize> {
    let best = (0..tracks.len()).max_by_key(|&i| tracks[i].length())?;
    let bl = tracks[best].length();
    (0..tracks.len()).filter(|&i| i != best).all(|i| bl * 100 >= tracks[i].length() * 125 && bl - tracks[i].length() >= 20).then_some(best)
}

fn valid(kind: Kind, tracks: &[Track]) -> bool {
    apart(tracks)
        && match kind {
            Kind::Direction => direction([tracks[0].end[0] - tracks[0].start[0], tracks[0].end[1] - tracks[0].start[1]]).is_some(),
            Kind::Farthest => clear_farthest(tracks).is_some(),
            Kind::CountMoving => tracks.iter().any(|t| t.moves()),
        }
}

/// Horizontal lanes, one object each: always valid for every kind.
fn lanes(looks: &[(scene::Colour, Shape, i32)], kind: Kind) -> Vec<Track> {
    let n = looks.len() as i32;
    let lane_h = HEIGHT as i32 / n.max(1);
    looks
        .iter()
        .enumerate()
        .map(|(i, &(colour, shape, r))| {
            let dx = match (kind, i) {
                (Kind::Farthest, _) => [100, 50, 20, 0][i.min(3)],
                (_, 0) => 80,
                _ => 0,
            };
            let y = lane_h * i as i32 + lane_h / 2;
            Track { colour, shape, r, start: [r + 8, y], end: [r + 8 + dx, y] }
        })
        .collect()
}

pub(crate) fn draft(rng: &mut Rng, teach: &mut Rng, difficulty: Difficulty, reflective: bool) -> Draft {
    let n = difficulty.pick(2, 3, 4);
    let kind = *rng.pick(&[Kind::Direction, Kind::Farthest, Kind::CountMoving]);
    let mut pairs: Vec<(usize, usize)> = (0..PALETTE.len()).flat_map(|c| (0..Shape::ALL.len()).map(move |s| (c, s))).collect();
    rng.shuffle(&mut pairs);
    let looks: Vec<(scene::Colour, Shape, i32)> =
        (0..n).map(|i| (PALETTE[pairs[i].0], Shape::ALL[pairs[i].1], rng.range(9, 12) as i32)).collect();
    let mut tracks = Vec::new();
    for attempt in 0..=100 {
        if attempt == 100 {
            tracks = lanes(&looks, kind);
            break;
        }
        let ds = displacements(rng, kind, n);
        let mut ts = Vec::new();
        for (&(colour, shape, r), d) in looks.iter().zip(&ds) {
            match place(rng, r, *d) {
                Some(s) => ts.push(Track { colour, shape, r, start: s, end: [s[0] + d[0], s[1] + d[1]] }),
                None => break,
            }
        }
        if ts.len() == n && valid(kind, &ts) {
            tracks = ts;
            break;
        }
    }
    let base = *rng.pick(&BACKDROPS);
    let clutter = Clutter::random(rng, difficulty == Difficulty::Hard);
    let backdrop = scene::backdrop(WIDTH, HEIGHT, base, clutter);
    let frames: Vec<RgbImage> = (0..FRAMES as i32)
        .map(|t| {
            let mut img = backdrop.clone();
            for tr in &tracks {
                tr.object(t).draw(&mut img);
            }
            img
        })
        .collect();

    let name = |i: usize| tracks[i].name();
    let all_names = join_and(&(0..n).map(|i| a_an(&name(i))).collect::<Vec<_>>());
    let intro = format!("The video shows {all_names}.");
    let (kind_name, question, question_type, options, answer, involved) = match kind {
        Kind::Direction => {
            let d = [tracks[0].end[0] - tracks[0].start[0], tracks[0].end[1] - tracks[0].start[1]];
            let texts: Vec<String> = ["left", "right", "up", "down"].iter().map(|s| s.to_string()).collect();
            let correct = texts.iter().position(|t| Some(t.as_str()) == direction(d)).unwrap_or(0);
            let (opts, ans) = shuffled_options(rng, &texts, correct);
            ("direction", format!("{intro} In which direction does the {} move during the video?", name(0)), "multiple choice", Some(opts), ans, vec![0])
        }
        Kind::Farthest => {
            let texts: Vec<String> = (0..n).map(name).collect();
            let best = clear_farthest(&tracks).unwrap_or(0);
            let (opts, ans) = shuffled_options(rng, &texts, best);
            ("farthest", format!("{intro} Which object moves the farthest between the first and the last frame?"), "multiple choice", Some(opts), ans, (0..n).collect())
        }
        Kind::CountMoving => {
            let k = tracks.iter().filter(|t| t.moves()).count();
            ("count_moving", format!("{intro} How many of the objects move during the video?"), "numerical", None, k.to_string(), (0..n).collect::<Vec<_>>())
        }
    };

    // Teacher.
    let last = FRAMES;
    let mut s = Script::new(FRAMES);
    let label = |i: usize, f: usize| format!("{} (frame {f})", name(i));
    let bbox_at = |i: usize, f: usize| tracks[i].object(f as i32 - 1).bbox(WIDTH, HEIGHT);
    let frame_boxes = |f: usize| -> Vec<BoxItem> { involved.iter().map(|&i| bx(f, bbox_at(i, f), label(i, f))).collect() };
    let mut first_turn = frame_boxes(1);
    first_turn.extend(frame_boxes(last));
    let them = if involved.len() == 1 { format!("the {}", name(involved[0])) } else { "every object".to_string() };
    let plan = format!(
        "To see how {} moves over the {FRAMES} frames, I will box {them} in the first frame (image 1) and in the last frame (image {last}).",
        if involved.len() == 1 { format!("the {}", name(involved[0])) } else { "each object".into() }
    );
    let mut obs;
    let mut made_mistake = false;
    if reflective {
        // A last-frame box first drawn where a moving object was in frame 1.
        let movers: Vec<usize> = involved.iter().copied().filter(|&i| tracks[i].moves()).collect();
        let who = *teach.pick(&movers);
        let k = involved.iter().position(|&i| i == who).unwrap_or(0);
        let mut shown = first_turn.clone();
        shown[involved.len() + k].bbox = bbox_at(who, 1);
        obs = s.boxes(&format!("{intro} {plan}"), &shown);
        let bad = obs[1];
        let fixed = s.boxes(
            &format!(
                "Image {bad} shows {} at {}, but that is where the {} was in frame 1; in frame {last} it has moved to {}. The box is misplaced, so I will redraw the frame-{last} boxes on image {last}.",
                s.box_ref(bad, &label(who, last)),
                pt(tracks[who].at(0)),
                name(who),
                pt(tracks[who].at(LAST))
            ),
            &frame_boxes(last),
        )[0];
        obs[1] = fixed;
        made_mistake = true;
    } else {
        obs = s.boxes(&format!("{intro} {plan}"), &first_turn);
    }
    let (o1, o16) = (obs[0], obs[1]);
    let movers: Vec<usize> = involved.iter().copied().filter(|&i| tracks[i].moves()).collect();
    let still: Vec<usize> = involved.iter().copied().filter(|&i| !tracks[i].moves()).collect();
    let still_note = if still.is_empty() {
        String::new()
    } else {
        format!(
            " The {} {} at the same place in both frames.",
            join_and(&still.iter().map(|&i| name(i)).collect::<Vec<_>>()),
            if still.len() == 1 { "box is" } else { "boxes are" }
        )
    };
    let lines: Vec<_> = movers
        .iter()
        .map(|&i| ln(o16, box_centre(bbox_at(i, 1)), box_centre(bbox_at(i, last)), format!("{} motion", name(i))))
        .collect();
    let traced = s.lines(
        &format!(
            "Image {o1} shows the boxes in frame 1 and image {o16} the boxes in frame {last}.{still_note} I will draw the path of {} on image {o16}, from {} frame-1 position to its frame-{last} position.",
            join_and(&movers.iter().map(|&i| format!("the {}", name(i))).collect::<Vec<_>>()),
            if movers.len() == 1 { "its" } else { "each one's" },
        ),
        &lines,
    )[0];
    match kind {
        Kind::Direction => {
            let a = box_centre(bbox_at(0, 1));
            let b = box_centre(bbox_at(0, last));
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let dir = direction([dx, dy]).unwrap_or("left");
            s.answer(
                &format!(
                    "Image {traced} shows the path of the {} from the red dot (frame 1, {}) to the blue dot (frame {last}, {}): {} px to the {} and {} px {}. The motion is mainly {dir}, which is option {answer}.",
                    name(0),
                    pt(a),
                    pt(b),
                    dx.abs(),
                    if dx < 0 { "left" } else { "right" },
                    dy.abs(),
                    if dy < 0 { "up" } else { "down" }
                ),
                &answer,
            );
        }
        Kind::Farthest => {
            let lens = join_and(&movers.iter().map(|&i| format!("the {} about {} px", name(i), tracks[i].length())).collect::<Vec<_>>());
            let stills = if still.is_empty() { String::new() } else { format!(", and the {} did not move", join_and(&still.iter().map(|&i| name(i)).collect::<Vec<_>>())) };
            let best = clear_farthest(&tracks).unwrap_or(0);
            s.answer(
                &format!(
                    "Image {traced} shows the motion lines: {lens}{stills}. The longest line belongs to the {}, so it moves the farthest, which is option {answer}.",
                    name(best)
                ),
                &answer,
            );
        }
        Kind::CountMoving => {
            let k = movers.len();
            s.answer(
                &format!(
                    "Image {traced} shows motion lines for {}{}. So {}.",
                    join_and(&movers.iter().map(|&i| format!("the {}", name(i))).collect::<Vec<_>>()),
                    if still.is_empty() { String::new() } else { format!("; the {} stayed in place", join_and(&still.iter().map(|&i| name(i)).collect::<Vec<_>>())) },
                    match (k, n) {
                        (2, 2) => "both objects move".to_string(),
                        (k, n) if k == n => format!("all {} objects move", number_word(n)),
                        (1, n) => format!("one of the {} objects moves", number_word(n)),
                        (k, n) => format!("{} of the {} objects move", number_word(k), number_word(n)),
                    }
                ),
                &answer,
            );
        }
    }
    let truth = json!({
        "frames": FRAMES,
        "clutter": clutter.name(),
        "tracks": tracks.iter().map(|t| json!({"colour": t.colour.name, "shape": t.shape.name(), "r": t.r, "start": t.start, "end": t.end})).collect::<Vec<_>>(),
    });
    Draft {
        kind: kind_name,
        question,
        question_type,
        options,
        answer,
        inputs: frames,
        grid_size: None,
        script: s,
        reflective: made_mistake,
        truth,
    }
}
