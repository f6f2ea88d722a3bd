//! Replay: push a recorded ViLaSR trajectory's assistant turns through the executor without a
//! model and compare every stored observation image with what the executor renders now (size and
//! pixels), plus the observation numbering and texts.

use super::resolve;
use crate::core::executor::{ExecutorFixes, Profile};
use crate::core::resize::{fetch_image, DEFAULT_MIN_PIXELS};
use crate::core::session::VilasrSession;
use crate::core::trajectory::{FinishReason, Protocol, Trajectory};
use image::RgbImage;
use std::path::Path;

/// What a replay found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Turns pushed through the executor.
    pub turns: usize,
    /// Stored observation images compared.
    pub observations_checked: usize,
    /// Each names the turn, the image number and the differing pixel count or size.
    pub mismatches: Vec<String>,
}

fn open(base: &Path, p: &str) -> Result<RgbImage, String> {
    let path = resolve(base, p);
    image::open(&path).map(|i| i.to_rgb8()).map_err(|e| format!("{}: cannot open image: {e}", path.display()))
}

/// Replay `traj`, whose image paths are relative to `base_dir` (its folder).
pub fn replay(traj: &Trajectory, base_dir: &Path) -> Result<ReplayReport, String> {
    if traj.protocol != Protocol::Vilasr {
        return Err(format!("trajectory {:?}: replay of {} trajectories is not implemented (ViLaSR only)", traj.id, traj.protocol));
    }
    let profile = match traj.profile.as_deref() {
        Some("rl") => Profile::Rl,
        _ => Profile::Eval,
    };
    let mut inputs = Vec::new();
    for r in traj.sample.media.images() {
        let img = open(base_dir, &r.path)?;
        // Trajectories store their inputs as the model saw them; others are resized as a run would.
        let sized = r.width.zip(r.height).is_some_and(|wh| wh == img.dimensions());
        inputs.push(if sized {
            img
        } else {
            fetch_image(image::DynamicImage::ImageRgb8(img), DEFAULT_MIN_PIXELS, profile.limits().max_pixels)
                .map_err(|e| format!("{}: {e}", resolve(base_dir, &r.path).display()))?
        });
    }
    if inputs.is_empty() {
        return Err(format!("trajectory {:?} has no input images", traj.id));
    }
    let maze = traj.sample.grid_size.is_some() || traj.sample.data_type == "maze";
    let mut session = VilasrSession::new(inputs, profile, maze, None, ExecutorFixes::default());
    let mut rep = ReplayReport::default();
    for (t, turn) in traj.turns.iter().enumerate() {
        match &turn.finish_reason {
            // Partial or budget-cut turns were never executed (or their observation was not added).
            Some(FinishReason::Cancelled) | Some(FinishReason::MaxTokens) => {
                if !turn.observations.is_empty() {
                    rep.mismatches.push(format!("turn {t}: finished {} but stores {} observation(s)", turn.finish_reason.as_ref().unwrap(), turn.observations.len()));
                }
                rep.turns += 1;
                break;
            }
            _ => {}
        }
        if !session.can_generate() {
            // The empty closing turn of a sample that was not scheduled again.
            if !turn.assistant_text.is_empty() || !turn.observations.is_empty() {
                rep.mismatches.push(format!("turn {t}: the executor would not schedule another generation, but the trajectory has one"));
            }
            rep.turns += 1;
            continue;
        }
        let gen = if turn.finish_reason == Some(FinishReason::Length) { FinishReason::Length } else { FinishReason::Stop };
        let applied = session.apply(&turn.assistant_text, gen);
        rep.turns += 1;
        if applied.new_images.len() != turn.observations.len() {
            rep.mismatches.push(format!("turn {t}: the executor renders {} observation(s), the trajectory stores {}", applied.new_images.len(), turn.observations.len()));
        }
        // Imported conversations store no finish reasons: compare only what was stored.
        if turn.finish_reason.is_some() && applied.finish_reason != turn.finish_reason {
            rep.mismatches.push(format!(
                "turn {t}: finish reason {} now, {} stored",
                applied.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("none"),
                turn.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("none")
            ));
        }
        // Imported conversations store the observation turn's user content only.
        let stored_text = turn.observation_text.as_ref().map(|o| {
            if o.starts_with("<|im_end|>") {
                o.clone()
            } else {
                format!("<|im_end|>\n<|im_start|>user\n{o}<|im_end|>\n<|im_start|>assistant\n")
            }
        });
        if stored_text.is_some() && applied.observation_text != stored_text {
            rep.mismatches.push(format!("turn {t}: the observation text differs"));
        }
        for (o, (n, on)) in turn.observations.iter().zip(&applied.new_images) {
            // drawn_on 0: the imported data does not say which image it was drawn on.
            if o.number as usize != *n || (o.drawn_on != 0 && o.drawn_on as usize != *on) {
                rep.mismatches.push(format!("turn {t}: image {} drawn on {} stored, the executor made image {n} drawn on {on}", o.number, o.drawn_on));
            }
            let stored = open(base_dir, &o.image.path)?;
            let now = &session.images[n - 1];
            rep.observations_checked += 1;
            if stored.dimensions() != now.dimensions() {
                let (a, b) = (stored.dimensions(), now.dimensions());
                rep.mismatches.push(format!("turn {t}, image {}: stored {}×{}, rendered {}×{}", o.number, a.0, a.1, b.0, b.1));
                continue;
            }
            let diff = stored.pixels().zip(now.pixels()).filter(|(a, b)| a != b).count();
            if diff > 0 {
                rep.mismatches.push(format!("turn {t}, image {}: {diff} pixel(s) differ", o.number));
            }
        }
        if session.finished.is_some() {
            if t + 1 < traj.turns.len() {
                rep.mismatches.push(format!("turn {t} ends the sample but the trajectory has {} more turn(s)", traj.turns.len() - t - 1));
            }
            break;
        }
    }
    Ok(rep)
}
