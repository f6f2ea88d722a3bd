//! The ViLaVT loop (protocol §7.3) on a standard Qwen2.5-VL checkpoint: generate, execute the
//! response with the core's [`VilavtSession`] (the first `<tool>` call's zoom-ins, cropped from the
//! original files), append the zoom-in images in a `<tool_response>` user turn, and continue until
//! an answer, `length`, `Zoomin failed`, `TooManyImages` (52 images) or the step counter
//! (`max_num_steps`, default 5) runs out. Forks re-execute the kept turns the same way; saved
//! trajectories keep the original files as their inputs and the `max_pixels` / `max_num_steps`
//! used, so they can be forked and replayed. ViLaVT's text-conditioned vision encoder is not
//! implemented: queries do not reach the vision tower.

use super::{generate_turn, resolve, safe_name, save, turn_seed, Emitter, Job, Responder, RolloutConfig, RolloutEvent};
use crate::core::prompts::{self, ContentItem, EOS_TEXT};
use crate::core::resize::{fetch_image, DEFAULT_MIN_PIXELS};
use crate::core::rewards::vilavt as vt_reward;
use crate::core::trajectory::{FinishReason, ForkOrigin, ImageRef, Observation, Protocol, Sample, Trajectory, Turn};
use crate::core::vilavt_session::{streamed_regions, VilavtApplied, VilavtSession, VILAVT_DEFAULT_MAX_PIXELS, VILAVT_DEFAULT_MAX_STEPS};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Said once per run.
pub const VILAVT_ENCODER_NOTICE: &str = "ViLaVT's text-conditioned vision encoder is not implemented: using the checkpoint as a standard Qwen2.5-VL";

/// What every trajectory of a ViLaVT run starts from.
pub struct Context {
    files: Vec<RgbImage>,
    shown: Vec<RgbImage>,
    prompt: String,
    first_user_text: String,
    max_pixels: f64,
    max_steps: usize,
}

/// A number in the sample's record (`max_pixels`, `max_num_steps`); `None` when absent or null.
fn record_number(sample: &Sample, key: &str) -> Option<f64> {
    sample.extra.get(key).and_then(|v| v.as_f64())
}

/// The image budget and step count of a ViLaVT run: the given overrides, else the record's own
/// (`max_pixels`, `max_num_steps`), else the reference's defaults.
pub(super) fn run_settings(sample: &Sample, max_pixels: Option<f64>, max_steps: Option<usize>) -> Result<(f64, usize), String> {
    let max_pixels = max_pixels.or_else(|| record_number(sample, "max_pixels")).unwrap_or(VILAVT_DEFAULT_MAX_PIXELS);
    let max_steps = max_steps.or_else(|| record_number(sample, "max_num_steps").map(|v| v as usize)).unwrap_or(VILAVT_DEFAULT_MAX_STEPS);
    if !(max_pixels >= 1.0) {
        return Err(format!("sample {:?}: max_pixels must be at least 1, got {max_pixels}", sample.id));
    }
    Ok((max_pixels, max_steps))
}

/// The sample's input files and the same images resized as the model sees them.
pub(super) fn open_inputs(sample: &Sample, base: &Path, max_pixels: f64) -> Result<(Vec<RgbImage>, Vec<RgbImage>), String> {
    let refs = sample.media.images();
    if refs.is_empty() {
        return Err(format!("sample {:?} has no input images", sample.id));
    }
    let (mut files, mut shown) = (Vec::new(), Vec::new());
    for r in refs {
        let path = resolve(base, &r.path);
        let img = image::open(&path).map_err(|e| format!("{}: cannot open image: {e}", path.display()))?;
        let file = img.to_rgb8();
        shown.push(fetch_image(img, DEFAULT_MIN_PIXELS, max_pixels).map_err(|e| format!("{}: {e}", path.display()))?);
        files.push(file);
    }
    Ok((files, shown))
}

impl Context {
    /// The run's inputs, with [`run_settings`] from the run's settings and the record.
    pub fn new(sample: &Sample, base: &Path, cfg: &RolloutConfig) -> Result<Self, String> {
        let (max_pixels, max_steps) = run_settings(sample, cfg.vilavt_max_pixels, cfg.max_turns)?;
        let (files, shown) = open_inputs(sample, base, max_pixels)?;
        let content = prompts::vilavt_first_user(shown.len(), shown[0].dimensions(), &sample.question).map_err(|e| format!("sample {:?}: {e}", sample.id))?;
        let messages = vec![
            prompts::Message { role: "system".into(), content: vec![ContentItem::text(prompts::VILAVT_SYSTEM)] },
            prompts::Message { role: "user".into(), content: content.clone() },
        ];
        let prompt = prompts::render_chat(&messages, true);
        let first_user_text = content
            .iter()
            .map(|c| match c {
                ContentItem::Image => prompts::IMAGE_TRIPLE.to_string(),
                ContentItem::Video => prompts::VIDEO_TRIPLE.to_string(),
                ContentItem::Text { text } => text.clone(),
            })
            .collect();
        Ok(Context { files, shown, prompt, first_user_text, max_pixels, max_steps })
    }

    /// A fresh executor for one trajectory.
    pub fn session(&self) -> VilavtSession {
        VilavtSession::new(self.files.clone(), self.shown.clone(), self.max_pixels, self.max_steps)
    }
}

/// A recorded turn from what the executor made of a response.
fn turn_of(text: &str, applied: &VilavtApplied, session: &VilavtSession) -> Turn {
    let mut turn = Turn { assistant_text: text.to_string(), actions: applied.actions.clone(), notes: applied.notes.clone(), finish_reason: applied.finish_reason.clone(), ..Default::default() };
    for &(n, on) in &applied.new_images {
        let img = &session.images[n - 1];
        turn.observations.push(Observation { number: n as u32, drawn_on: on as u32, image: ImageRef::with_size(format!("images/image-{n}.png"), img.width(), img.height()) });
    }
    turn.observation_text = applied.observation_text.clone();
    turn
}

pub(super) fn run_one(job: &Job, responder: &mut dyn Responder, em: &Emitter, k: usize, ctx: &Context, root: &Path) -> Result<(Trajectory, Option<PathBuf>), String> {
    let cfg = &job.config;
    let sample = &job.sample;
    if k == 0 {
        em.send(RolloutEvent::Status(VILAVT_ENCODER_NOTICE.into()));
    }
    let id = match &job.fork {
        Some((parent, fork)) => format!("{}-fork{}-{k}", parent.id, fork.turn),
        None => format!("{}-{k}", sample.id),
    };
    let dir = root.join(safe_name(&id));
    let mut traj = Trajectory::new(id, Protocol::Vilavt, sample.clone());
    traj.system_prompt = Some(prompts::VILAVT_SYSTEM.to_string());
    traj.first_user_text = Some(ctx.first_user_text.clone());
    traj.profile = Some("rl".into());
    traj.model = Some(responder.name());
    traj.fork_of = job.fork.as_ref().map(|(p, f)| ForkOrigin { parent_id: p.id.clone(), turn: f.turn });
    // Record the settings used, so a fork or replay of this trajectory uses them too.
    traj.sample.extra.insert("max_pixels".into(), serde_json::json!(ctx.max_pixels));
    traj.sample.extra.insert("max_num_steps".into(), serde_json::json!(ctx.max_steps));
    responder.begin(k, &ctx.prompt, &ctx.shown, &mut |s| em.send(RolloutEvent::Status(s)))?;

    let mut session = ctx.session();
    let mut sequence = ctx.prompt.clone();
    let mut last_gen: Option<FinishReason> = None;
    let max_new = cfg.max_new_tokens.unwrap_or(1024);
    let temperature = cfg.temperature.unwrap_or(1.0);
    let top_p = cfg.top_p.unwrap_or(1.0);

    // Fork: the kept prefix, executed again (and the edited turn, when given).
    if let Some((parent, fork)) = &job.fork {
        let mut kept: Vec<String> = parent.turns[..fork.turn].iter().map(|t| t.assistant_text.clone()).collect();
        if let Some(e) = &fork.edited_text {
            kept.push(e.clone());
        }
        for (t, text) in kept.iter().enumerate() {
            let t1 = Instant::now();
            let applied = session.apply(text, FinishReason::Stop);
            let mut turn = turn_of(text, &applied, &session);
            turn.notes.insert(0, if t < fork.turn { format!("kept from {}", parent.id) } else { "edited by the user".into() });
            write_observations(&turn, &session, &dir, em, k, t)?;
            turn.timings.execute_ms = Some(t1.elapsed().as_secs_f64() * 1e3);
            last_gen = Some(FinishReason::Stop);
            if !applied.regenerate {
                sequence.push_str(text);
                responder.append(text, &[], &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
            if let Some(obs) = &turn.observation_text {
                sequence.push_str(obs);
                let new: Vec<RgbImage> = applied.new_images.iter().map(|(n, _)| session.images[n - 1].clone()).collect();
                responder.append(obs, &new, &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
            em.send(RolloutEvent::TurnFinished { k, turn: t, record: turn.clone() });
            traj.turns.push(turn);
            if session.finished.is_some() || !session.can_generate() {
                break;
            }
        }
    }

    while session.can_generate() {
        let turn_no = traj.turns.len();
        let seed = turn_seed(cfg, k, turn_no);
        // The call's regions, once, when its `</tool>` arrives.
        let mut emitted = false;
        let mut detect = |so_far: &str| {
            if emitted {
                return Vec::new();
            }
            let actions = streamed_regions(so_far);
            emitted = actions.is_some();
            actions.unwrap_or_default()
        };
        let (g, generate_ms) = generate_turn(responder, em, k, turn_no, (max_new, temperature, top_p, seed), &mut detect)?;
        let t1 = Instant::now();
        last_gen = Some(g.finish.clone());
        let applied = session.apply(&g.text, g.finish.clone());
        let mut turn = turn_of(&g.text, &applied, &session);
        if !applied.regenerate {
            sequence.push_str(&g.text);
        }
        write_observations(&turn, &session, &dir, em, k, turn_no)?;
        if let Some(obs) = &turn.observation_text {
            sequence.push_str(obs);
        }
        turn.timings = g.timings(generate_ms, Some(t1.elapsed().as_secs_f64() * 1e3));
        if session.finished.is_none() && !applied.regenerate {
            responder.accept_generated()?;
            if let Some(text) = &turn.observation_text {
                let new: Vec<RgbImage> = applied.new_images.iter().map(|(n, _)| session.images[n - 1].clone()).collect();
                responder.append(text, &new, &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
        }
        em.send(RolloutEvent::TurnFinished { k, turn: turn_no, record: turn.clone() });
        traj.turns.push(turn);
    }
    if session.finished.is_none() {
        if let Some(t) = traj.turns.last_mut() {
            t.notes.push("the step counter ran out: the trajectory ends after a tool response, as in the reference".into());
        }
    }
    if last_gen.as_ref() != Some(&FinishReason::Length) {
        sequence.push_str(EOS_TEXT);
    }
    traj.finish_reason = session.finished.clone().or(last_gen);
    if traj.finish_reason != Some(FinishReason::Cancelled) {
        if let Some(gt) = &sample.ground_truth {
            match vt_reward::rl_score(&sequence, gt, &sample.question_type) {
                Ok(parts) => traj.rewards = Some(parts.to_rewards()),
                Err(e) => traj.tags.push(format!("unscored: {e}")),
            }
        }
    }
    // The inputs are saved as the original files: zoom-ins crop those, not the resized images.
    let saved = save(&traj, &ctx.files, &dir)?;
    Ok((saved, Some(dir)))
}

/// Write a turn's zoom-in images under `dir` and announce each.
fn write_observations(turn: &Turn, session: &VilavtSession, dir: &Path, em: &Emitter, k: usize, turn_no: usize) -> Result<(), String> {
    for o in &turn.observations {
        let path = dir.join(&o.image.path);
        crate::core::scripted::write_png(&session.images[o.number as usize - 1], &path).map_err(|e| e.to_string())?;
        em.send(RolloutEvent::Observation { k, turn: turn_no, number: o.number, drawn_on: o.drawn_on, path });
    }
    Ok(())
}
