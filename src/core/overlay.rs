//! Vector overlays of a trajectory: for every image, the boxes and lines the executor drew on it,
//! reconstructed from the recorded actions with the reference's grouping and merge-by-label rules
//! (protocol §2.5–§2.7), so a viewer can draw them as shapes instead of reading pixels.
//!
//! Each turn's actions are grouped by `index` (first appearance, boxes before lines); the k-th group
//! created the turn's k-th observation, drawn on image `index` (1-based over inputs and earlier
//! observations). The new image's state is its base image's state merged by label with the group's
//! items; the i-th box of the merged list has colour `CYCLE[i mod 171]`. Observations recorded with
//! `drawn_on = 0` (imported data that does not say) get their base from the group's index.
//! Negative indices are resolved from the end of the image list, as Python does (§11.14).

use super::trajectory::{ActionKind, Trajectory};

/// Which recorded action a shape comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ActionId {
    /// 0-based turn.
    pub turn: usize,
    /// Position in that turn's `actions`.
    pub action: usize,
}

/// One box or line as drawn on an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub source: ActionId,
    pub kind: ActionKind,
    /// `[x1, y1, x2, y2]` for boxes; `[sx, sy, ex, ey]` for lines (model pixels, as written).
    pub coords: [f64; 4],
    pub label: Option<String>,
    /// Position in the image's box list (selects the colour); lines: position in the line list.
    pub position: usize,
    /// Added (or re-labelled) by the turn that created this image, rather than carried over.
    pub new_here: bool,
}

/// The drawing state of one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageOverlay {
    /// 1-based image number.
    pub number: u32,
    /// 1-based image it was drawn on (`None` for inputs and for images whose base is unknown).
    pub drawn_on: Option<u32>,
    /// 0-based turn that created it (`None` for inputs).
    pub created_by: Option<usize>,
    pub boxes: Vec<Shape>,
    pub lines: Vec<Shape>,
}

impl ImageOverlay {
    /// Boxes, then lines: the drawing order of the executor.
    pub fn shapes(&self) -> impl Iterator<Item = &Shape> {
        self.boxes.iter().chain(self.lines.iter())
    }
}

/// Per-image overlays of a whole trajectory, indexed by `number - 1`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlays {
    pub images: Vec<ImageOverlay>,
}

impl Overlays {
    pub fn get(&self, number: u32) -> Option<&ImageOverlay> {
        (number as usize).checked_sub(1).and_then(|i| self.images.get(i))
    }
}

/// Rebuild every image's overlay from the trajectory's recorded actions and observations.
pub fn overlays(traj: &Trajectory) -> Overlays {
    let inputs = traj.sample.media.images().len();
    let mut images: Vec<ImageOverlay> = (0..inputs)
        .map(|i| ImageOverlay { number: i as u32 + 1, ..Default::default() })
        .collect();
    for (t, turn) in traj.turns.iter().enumerate() {
        if turn.observations.is_empty() {
            continue;
        }
        // Group by index: boxes first, then lines, first appearance.
        let mut groups: Vec<(i64, Vec<usize>, Vec<usize>)> = Vec::new();
        for kind in [ActionKind::Box, ActionKind::Line] {
            for (a, act) in turn.actions.iter().enumerate() {
                if act.kind != kind {
                    continue;
                }
                let Some(ix) = act.index else { continue };
                let g = match groups.iter().position(|g| g.0 == ix) {
                    Some(g) => g,
                    None => {
                        groups.push((ix, Vec::new(), Vec::new()));
                        groups.len() - 1
                    }
                };
                if kind == ActionKind::Box {
                    groups[g].1.push(a);
                } else {
                    groups[g].2.push(a);
                }
            }
        }
        for (k, obs) in turn.observations.iter().enumerate() {
            let group = groups.get(k);
            let count = images.len() as i64;
            let base_slot: Option<usize> = if obs.drawn_on > 0 {
                Some(obs.drawn_on as usize - 1)
            } else {
                group.and_then(|g| {
                    let slot = g.0 - 1;
                    let slot = if slot < 0 { count + slot } else { slot };
                    (0..count).contains(&slot).then_some(slot as usize)
                })
            };
            let base = base_slot.and_then(|s| images.get(s)).cloned();
            let mut new = ImageOverlay {
                number: obs.number,
                drawn_on: base_slot.map(|s| s as u32 + 1),
                created_by: Some(t),
                ..Default::default()
            };
            let carried = |v: &[Shape]| -> Vec<Shape> { v.iter().cloned().map(|s| Shape { new_here: false, ..s }).collect() };
            let (base_boxes, base_lines) = match &base {
                Some(b) => (carried(&b.boxes), carried(&b.lines)),
                None => (Vec::new(), Vec::new()),
            };
            match group {
                Some((_, box_ids, line_ids)) => {
                    new.boxes = merge(base_boxes, box_ids, t, turn, ActionKind::Box);
                    new.lines = merge(base_lines, line_ids, t, turn, ActionKind::Line);
                }
                None => {
                    new.boxes = base_boxes;
                    new.lines = base_lines;
                }
            }
            for (i, s) in new.boxes.iter_mut().enumerate() {
                s.position = i;
            }
            for (i, s) in new.lines.iter_mut().enumerate() {
                s.position = i;
            }
            // Keep `images[number - 1]` aligned with image numbers even for odd recorded numbering.
            let slot = obs.number as usize;
            while images.len() + 1 < slot {
                let n = images.len() as u32 + 1;
                images.push(ImageOverlay { number: n, ..Default::default() });
            }
            if slot >= 1 && slot <= images.len() {
                images[slot - 1] = new;
            } else {
                images.push(new);
            }
        }
    }
    Overlays { images }
}

/// Merge-by-label (§2.6): replace base items whose label is re-used, in place, then append the
/// remaining new items in first-occurrence order (the value is the last item with that label).
fn merge(base: Vec<Shape>, ids: &[usize], turn_no: usize, turn: &super::trajectory::Turn, kind: ActionKind) -> Vec<Shape> {
    if ids.is_empty() {
        return base;
    }
    // label → last item, in first-occurrence order. Unlabelled items key on `None`.
    let mut new_by_label: Vec<(Option<String>, Shape)> = Vec::new();
    for &a in ids {
        let act = &turn.actions[a];
        let coords = match kind {
            ActionKind::Box => act.bbox_2d,
            _ => match (act.start_point_2d, act.end_point_2d) {
                (Some(s), Some(e)) => Some([s[0], s[1], e[0], e[1]]),
                _ => None,
            },
        };
        let Some(coords) = coords else { continue };
        let shape = Shape {
            source: ActionId { turn: turn_no, action: a },
            kind,
            coords,
            label: act.label.clone(),
            position: 0,
            new_here: true,
        };
        match new_by_label.iter_mut().find(|(l, _)| *l == act.label) {
            Some(slot) => slot.1 = shape,
            None => new_by_label.push((act.label.clone(), shape)),
        }
    }
    let mut out = Vec::with_capacity(base.len() + new_by_label.len());
    for e in base {
        match new_by_label.iter().position(|(l, _)| *l == e.label) {
            Some(p) => out.push(new_by_label.remove(p).1),
            None => out.push(e),
        }
    }
    out.extend(new_by_label.into_iter().map(|(_, s)| s));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::trajectory::{ActionRecord, ImageRef, Media, Observation, Protocol, Sample, Turn};

    fn bx(index: i64, label: &str, b: [f64; 4]) -> ActionRecord {
        ActionRecord {
            kind: ActionKind::Box,
            index: Some(index),
            bbox_2d: Some(b),
            start_point_2d: None,
            end_point_2d: None,
            label: Some(label.into()),
            query: None,
            block: 0,
            raw: serde_json::json!({}),
        }
    }

    fn line(index: i64, s: [f64; 2], e: [f64; 2]) -> ActionRecord {
        ActionRecord { kind: ActionKind::Line, bbox_2d: None, start_point_2d: Some(s), end_point_2d: Some(e), ..bx(index, "l", [0.0; 4]) }
    }

    fn traj(turns: Vec<Turn>) -> Trajectory {
        let sample = Sample {
            media: Media::Images { images: vec![ImageRef::new("a.png")] },
            ..Default::default()
        };
        let mut t = Trajectory::new("t", Protocol::Vilasr, sample);
        t.turns = turns;
        t
    }

    fn obs(number: u32, drawn_on: u32) -> Observation {
        Observation { number, drawn_on, image: ImageRef::new(format!("image-{number}.png")) }
    }

    #[test]
    fn relabelled_box_replaces_in_place_and_keeps_its_colour_position() {
        let t = traj(vec![
            Turn { actions: vec![bx(1, "a", [0.0, 0.0, 5.0, 5.0]), bx(1, "b", [1.0, 1.0, 6.0, 6.0])], observations: vec![obs(2, 1)], ..Default::default() },
            Turn { actions: vec![bx(2, "c", [2.0, 2.0, 3.0, 3.0]), bx(2, "a", [9.0, 9.0, 10.0, 10.0])], observations: vec![obs(3, 2)], ..Default::default() },
        ]);
        let o = overlays(&t);
        let img3 = o.get(3).unwrap();
        let labels: Vec<_> = img3.boxes.iter().map(|s| s.label.clone().unwrap()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
        assert_eq!(img3.boxes[0].coords, [9.0, 9.0, 10.0, 10.0]);
        assert!(img3.boxes[0].new_here && !img3.boxes[1].new_here && img3.boxes[2].new_here);
        assert_eq!(img3.boxes[2].position, 2);
        assert_eq!(img3.drawn_on, Some(2));
        assert_eq!(o.get(1).unwrap().boxes.len(), 0);
    }

    #[test]
    fn two_indices_make_two_observations_in_first_appearance_order_boxes_first() {
        // A line on image 1 written before a box on image 2: boxes group first, so image 2's group
        // comes first and creates observation 3; image 1's line group creates observation 4.
        let mut t = traj(vec![Turn { actions: vec![bx(1, "a", [0.0, 0.0, 4.0, 4.0])], observations: vec![obs(2, 1)], ..Default::default() }]);
        t.turns.push(Turn {
            actions: vec![line(1, [0.0, 0.0], [3.0, 3.0]), bx(2, "z", [1.0, 1.0, 2.0, 2.0])],
            observations: vec![obs(3, 0), obs(4, 0)],
            ..Default::default()
        });
        let o = overlays(&t);
        assert_eq!(o.get(3).unwrap().drawn_on, Some(2));
        assert_eq!(o.get(3).unwrap().boxes.len(), 2, "carried 'a' + new 'z'");
        let four = o.get(4).unwrap();
        assert_eq!(four.drawn_on, Some(1));
        assert_eq!((four.boxes.len(), four.lines.len()), (0, 1));
    }

    #[test]
    fn negative_index_resolves_from_the_end() {
        // index -1 is list slot -2: with images [1, 2] Python's images[-2] is image 1.
        let t = traj(vec![
            Turn { actions: vec![bx(1, "a", [0.0, 0.0, 4.0, 4.0])], observations: vec![obs(2, 1)], ..Default::default() },
            Turn { actions: vec![bx(-1, "b", [0.0, 0.0, 4.0, 4.0])], observations: vec![obs(3, 0)], ..Default::default() },
        ]);
        assert_eq!(overlays(&t).get(3).unwrap().drawn_on, Some(1));
    }
}
