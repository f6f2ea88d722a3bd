//! Replay: push a recorded trajectory's assistant turns through the executor without a model and
//! compare every stored observation image with what the executor renders now (size and pixels),
//! plus the observation numbering, texts and finish reasons. ViLaSR trajectories go through the
//! drawing executor ([`VilasrSession`]), ViLaVT ones through the zoom-in executor
//! ([`VilavtSession`]; the inputs must be the original files, as Sightline saves them).

use super::resolve;
use crate::core::executor::{ExecutorFixes, Profile};
use crate::core::resize::{fetch_image, DEFAULT_MIN_PIXELS};
use crate::core::session::VilasrSession;
use crate::core::trajectory::{FinishReason, Observation, Protocol, Trajectory};
use crate::core::vilavt_session::VilavtSession;
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
    if traj.protocol == Protocol::Vilavt {
        return replay_vilavt(traj, base_dir);
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
    let mut session = VilasrSession::new(inputs, profile, super::is_maze(&traj.sample), None, ExecutorFixes::default());
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
        let stored_text = turn.observation_span();
        if stored_text.is_some() && applied.observation_text != stored_text {
            rep.mismatches.push(format!("turn {t}: the observation text differs"));
        }
        compare_observations(&mut rep, t, &turn.observations, &applied.new_images, &session.images, base_dir)?;
        if session.finished.is_some() {
            if t + 1 < traj.turns.len() {
                rep.mismatches.push(format!("turn {t} ends the sample but the trajectory has {} more turn(s)", traj.turns.len() - t - 1));
            }
            break;
        }
    }
    Ok(rep)
}

/// Compare the stored observations of turn `t` with the executor's new images `(number, drawn on)`.
fn compare_observations(rep: &mut ReplayReport, t: usize, stored: &[Observation], made: &[(usize, usize)], images: &[RgbImage], base_dir: &Path) -> Result<(), String> {
    for (o, (n, on)) in stored.iter().zip(made) {
        // drawn_on 0: the imported data does not say which image it was drawn on.
        if o.number as usize != *n || (o.drawn_on != 0 && o.drawn_on as usize != *on) {
            rep.mismatches.push(format!("turn {t}: image {} drawn on {} stored, the executor made image {n} drawn on {on}", o.number, o.drawn_on));
        }
        let img = open(base_dir, &o.image.path)?;
        let now = &images[n - 1];
        rep.observations_checked += 1;
        if img.dimensions() != now.dimensions() {
            let (a, b) = (img.dimensions(), now.dimensions());
            rep.mismatches.push(format!("turn {t}, image {}: stored {}×{}, rendered {}×{}", o.number, a.0, a.1, b.0, b.1));
            continue;
        }
        let diff = img.pixels().zip(now.pixels()).filter(|(a, b)| a != b).count();
        if diff > 0 {
            rep.mismatches.push(format!("turn {t}, image {}: {diff} pixel(s) differ", o.number));
        }
    }
    Ok(())
}

/// Replay a ViLaVT trajectory: each response through the zoom-in executor, with the image budget
/// and step count its record carries (`max_pixels`, `max_num_steps`; else the defaults).
fn replay_vilavt(traj: &Trajectory, base_dir: &Path) -> Result<ReplayReport, String> {
    let (max_pixels, max_steps) = super::vilavt::run_settings(&traj.sample, None, None)?;
    let (files, shown) = super::vilavt::open_inputs(&traj.sample, base_dir, max_pixels)?;
    let mut session = VilavtSession::new(files, shown, max_pixels, max_steps);
    let mut rep = ReplayReport::default();
    for (t, turn) in traj.turns.iter().enumerate() {
        rep.turns += 1;
        if turn.finish_reason == Some(FinishReason::Cancelled) {
            if !turn.observations.is_empty() {
                rep.mismatches.push(format!("turn {t}: cancelled but stores {} observation(s)", turn.observations.len()));
            }
            break;
        }
        if !session.can_generate() {
            rep.mismatches.push(format!("turn {t}: the step counter or image limit allows no further generation, but the trajectory has one"));
            break;
        }
        let gen = match turn.finish_reason {
            Some(FinishReason::Length) => FinishReason::Length,
            Some(FinishReason::Rule) => FinishReason::Rule,
            _ => FinishReason::Stop,
        };
        let applied = session.apply(&turn.assistant_text, gen);
        if applied.new_images.len() != turn.observations.len() {
            rep.mismatches.push(format!("turn {t}: the executor makes {} zoom-in(s), the trajectory stores {}", applied.new_images.len(), turn.observations.len()));
        }
        if applied.finish_reason != turn.finish_reason {
            rep.mismatches.push(format!(
                "turn {t}: finish reason {} now, {} stored",
                applied.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("none"),
                turn.finish_reason.as_ref().map(|f| f.as_str()).unwrap_or("none")
            ));
        }
        if applied.observation_text != turn.observation_text {
            rep.mismatches.push(format!("turn {t}: the tool-response text differs"));
        }
        compare_observations(&mut rep, t, &turn.observations, &applied.new_images, &session.images, base_dir)?;
        if session.finished.is_some() {
            if t + 1 < traj.turns.len() {
                rep.mismatches.push(format!("turn {t} ends the trajectory but it has {} more turn(s)", traj.turns.len() - t - 1));
            }
            break;
        }
    }
    Ok(rep)
}
