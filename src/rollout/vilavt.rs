//! The ViLaVT loop (protocol §7.3) on a standard Qwen2.5-VL checkpoint: generate, parse the
//! first `<tool>` call, validate and plan it with `core::zoomin` (crops from the original file,
//! at most 2× the current resolution, Lanczos then `fetch_image`), append the zoom-in images in a
//! `<tool_response>` user turn, and continue until an answer, `length`, `Zoomin failed`,
//! `TooManyImages` (52 images) or the step counter (`max_num_steps`, default 5) runs out.
//! ViLaVT's text-conditioned vision encoder is not implemented: queries do not reach the vision
//! tower.

use super::{resolve, safe_name, save, Emitter, Generated, Job, Responder, RolloutConfig, RolloutEvent};
use crate::core::actions::{parse_vilavt_tool, VilavtParse};
use crate::core::prompts::{self, ContentItem, EOS_TEXT};
use crate::core::pyliteral::PyValue;
use crate::core::resize::{fetch_image, DEFAULT_MIN_PIXELS};
use crate::core::rewards::vilavt as vt_reward;
use crate::core::trajectory::{ActionKind, ActionRecord, FinishReason, ImageRef, Observation, Protocol, Sample, Trajectory, Turn, TurnTimings};
use crate::core::zoomin::{plan_zoomin, render_zoomin, ShownImage};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The ViLaVT RL rollout's image limit.
pub const VILAVT_MAX_IMAGES: usize = 52;
/// The RL run's default image budget (records may carry their own `max_pixels`).
pub const VILAVT_DEFAULT_MAX_PIXELS: f64 = 200_704.0;
/// Said once per run.
pub const VILAVT_ENCODER_NOTICE: &str = "ViLaVT's text-conditioned vision encoder is not implemented: using the checkpoint as a standard Qwen2.5-VL";

/// What every trajectory of a ViLaVT run starts from.
pub struct Context {
    files: Vec<RgbImage>,
    shown: Vec<RgbImage>,
    prompt: String,
    first_user_text: String,
    max_pixels: f64,
}

impl Context {
    pub fn new(sample: &Sample, base: &Path, cfg: &RolloutConfig) -> Result<Self, String> {
        let max_pixels = cfg.vilavt_max_pixels.unwrap_or(VILAVT_DEFAULT_MAX_PIXELS);
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
        Ok(Context { files, shown, prompt, first_user_text, max_pixels })
    }
}

fn region_records(value: &PyValue, query: &str) -> Vec<ActionRecord> {
    let Some(PyValue::List(items)) = value.get("region") else { return Vec::new() };
    items
        .iter()
        .map(|r| ActionRecord {
            kind: ActionKind::Region,
            index: match r.get("index") {
                Some(PyValue::Int(i)) => Some(*i),
                _ => None,
            },
            bbox_2d: match r.get("bbox_2d") {
                Some(PyValue::List(v)) | Some(PyValue::Tuple(v)) if v.len() == 4 => (|| Some([v[0].as_f64()?, v[1].as_f64()?, v[2].as_f64()?, v[3].as_f64()?]))(),
                _ => None,
            },
            start_point_2d: None,
            end_point_2d: None,
            label: None,
            query: Some(query.to_string()),
            block: 0,
            raw: r.to_json(),
        })
        .collect()
}

/// The parsed `<tool>` call of a streamed text, once its `</tool>` has arrived.
pub(super) fn streamed_regions(text: &str) -> Option<Vec<ActionRecord>> {
    if !text.contains("</tool>") {
        return None;
    }
    match parse_vilavt_tool(text) {
        VilavtParse::Parsed { value, .. } => {
            let q = value.get("query").map(|q| q.py_str()).unwrap_or_default();
            Some(region_records(&value, &q))
        }
        _ => Some(Vec::new()),
    }
}

fn tool_response_text(zoomins: &[(usize, u32, u32)], final_prompt: bool) -> String {
    let mut s = String::from("<|im_end|>\n<|im_start|>user\n");
    for c in prompts::vilavt_tool_response(zoomins, final_prompt) {
        match c {
            ContentItem::Image => s.push_str(prompts::IMAGE_TRIPLE),
            ContentItem::Video => s.push_str(prompts::VIDEO_TRIPLE),
            ContentItem::Text { text } => s.push_str(&text),
        }
    }
    s.push_str("<|im_end|>\n<|im_start|>assistant\n");
    s
}

pub(super) fn run_one(job: &Job, responder: &mut dyn Responder, em: &Emitter, k: usize, ctx: &Context, root: &Path) -> Result<(Trajectory, Option<PathBuf>), String> {
    let cfg = &job.config;
    let sample = &job.sample;
    if k == 0 {
        em.send(RolloutEvent::Status(VILAVT_ENCODER_NOTICE.into()));
    }
    let id = format!("{}-{k}", sample.id);
    let dir = root.join(safe_name(&id));
    let mut traj = Trajectory::new(id, Protocol::Vilavt, sample.clone());
    traj.system_prompt = Some(prompts::VILAVT_SYSTEM.to_string());
    traj.first_user_text = Some(ctx.first_user_text.clone());
    traj.profile = Some("rl".into());
    traj.model = Some(responder.name());
    responder.begin(k, &ctx.prompt, &ctx.shown, &mut |s| em.send(RolloutEvent::Status(s)))?;

    let mut images = ctx.shown.clone();
    let mut info: Vec<ShownImage> = ctx
        .shown
        .iter()
        .zip(&ctx.files)
        .map(|(s, f)| ShownImage { width: s.width(), height: s.height(), region: [0.0, 0.0, 1.0, 1.0], file_width: f.width(), file_height: f.height() })
        .collect();
    // The source file of every image (zoom-ins crop their source's file).
    let mut file_of: Vec<usize> = (0..images.len()).collect();
    let mut sequence = ctx.prompt.clone();
    let mut counter = cfg.max_turns.unwrap_or(5).max(1) as i64;
    let mut finished: Option<FinishReason> = None;
    let mut last_gen: Option<FinishReason> = None;
    let max_new = cfg.max_new_tokens.unwrap_or(1024);
    let temperature = cfg.temperature.unwrap_or(1.0);
    let top_p = cfg.top_p.unwrap_or(1.0);

    while counter > 0 && images.len() <= VILAVT_MAX_IMAGES {
        let turn_no = traj.turns.len();
        let seed = cfg.seed.wrapping_add(1_000_003u64.wrapping_mul(k as u64)).wrapping_add(turn_no as u64);
        let mut so_far = String::new();
        let mut emitted = false;
        let t0 = Instant::now();
        let g: Generated = responder.generate(
            max_new,
            temperature,
            top_p,
            seed,
            &mut |delta: &str| {
                if delta.is_empty() {
                    return;
                }
                so_far.push_str(delta);
                em.send(RolloutEvent::Token { k, turn: turn_no, text: delta.to_string() });
                if !emitted {
                    if let Some(actions) = streamed_regions(&so_far) {
                        emitted = true;
                        for action in actions {
                            em.send(RolloutEvent::Action { k, turn: turn_no, action });
                        }
                    }
                }
            },
            &em.cancel,
        )?;
        let generate_ms = t0.elapsed().as_secs_f64() * 1e3;
        counter -= 1;
        let t1 = Instant::now();
        let mut turn = Turn { assistant_text: g.text.clone(), ..Default::default() };
        last_gen = Some(g.finish.clone());
        let mut new_images: Vec<RgbImage> = Vec::new();
        let done = match &g.finish {
            FinishReason::Cancelled => {
                turn.notes.push("stopped by the user".into());
                Some(FinishReason::Cancelled)
            }
            FinishReason::Length | FinishReason::Rule => Some(g.finish.clone()),
            FinishReason::Stop if g.text.contains("<answer>") && g.text.contains("</answer>") => Some(FinishReason::Stop),
            _ => None,
        };
        if let Some(r) = done {
            sequence.push_str(&g.text);
            turn.finish_reason = Some(r.clone());
            finished = Some(r);
        } else {
            let parsed = parse_vilavt_tool(&g.text);
            let value = match &parsed {
                VilavtParse::Parsed { value, .. } => Some(value),
                VilavtParse::NoneResult { reason } => {
                    turn.notes.push(reason.clone());
                    None
                }
                VilavtParse::Raised { exception, message } => {
                    turn.notes.push(format!("parsing raised {exception}: {message}; the reference generates this turn again"));
                    turn.timings = TurnTimings { generate_ms: Some(generate_ms), execute_ms: Some(t1.elapsed().as_secs_f64() * 1e3), generated_tokens: Some(g.tokens as u32) };
                    em.send(RolloutEvent::TurnFinished { k, turn: turn_no, record: turn.clone() });
                    traj.turns.push(turn);
                    continue;
                }
            };
            sequence.push_str(&g.text);
            match plan_zoomin(&info, value) {
                Err(feedback) => {
                    turn.notes.push(feedback);
                    turn.finish_reason = Some(FinishReason::ZoominFailed);
                    finished = Some(FinishReason::ZoominFailed);
                }
                Ok(call) => {
                    turn.actions = value.map(|v| region_records(v, &call.query)).unwrap_or_default();
                    if images.len() + call.plans.len() > VILAVT_MAX_IMAGES {
                        turn.notes.push(format!("{} images plus {} zoom-ins exceed {VILAVT_MAX_IMAGES}", images.len(), call.plans.len()));
                        turn.finish_reason = Some(FinishReason::TooManyImages);
                        finished = Some(FinishReason::TooManyImages);
                    } else {
                        let mut failed = None;
                        let mut zoomins = Vec::new();
                        for plan in &call.plans {
                            let src = file_of[plan.source_index];
                            match render_zoomin(&ctx.files[src], plan, ctx.max_pixels) {
                                Ok(img) => {
                                    let n = images.len() + new_images.len();
                                    zoomins.push((n, img.width(), img.height()));
                                    info.push(ShownImage { width: img.width(), height: img.height(), region: plan.norm_box, file_width: ctx.files[src].width(), file_height: ctx.files[src].height() });
                                    file_of.push(src);
                                    turn.observations.push(Observation {
                                        number: n as u32 + 1,
                                        drawn_on: plan.source_index as u32 + 1,
                                        image: ImageRef::with_size(format!("images/image-{}.png", n + 1), img.width(), img.height()),
                                    });
                                    new_images.push(img);
                                }
                                Err(e) => {
                                    failed = Some(format!("Zoom-in failed: {e}"));
                                    break;
                                }
                            }
                        }
                        if let Some(f) = failed {
                            info.truncate(images.len());
                            file_of.truncate(images.len());
                            turn.observations.clear();
                            new_images.clear();
                            turn.notes.push(f);
                            turn.finish_reason = Some(FinishReason::ZoominFailed);
                            finished = Some(FinishReason::ZoominFailed);
                        } else {
                            for (o, img) in turn.observations.iter().zip(&new_images) {
                                let path = dir.join(&o.image.path);
                                crate::core::scripted::write_png(img, &path).map_err(|e| e.to_string())?;
                                em.send(RolloutEvent::Observation { k, turn: turn_no, number: o.number, drawn_on: o.drawn_on, path });
                            }
                            images.extend(new_images.iter().cloned());
                            let final_prompt = counter <= 1 || images.len() >= VILAVT_MAX_IMAGES;
                            let text = tool_response_text(&zoomins, final_prompt);
                            sequence.push_str(&text);
                            turn.observation_text = Some(text);
                        }
                    }
                }
            }
        }
        turn.timings = TurnTimings { generate_ms: Some(generate_ms), execute_ms: Some(t1.elapsed().as_secs_f64() * 1e3), generated_tokens: Some(g.tokens as u32) };
        if finished.is_none() {
            responder.accept_generated()?;
            if let Some(text) = &turn.observation_text {
                responder.append(text, &new_images, &mut |s| em.send(RolloutEvent::Status(s)))?;
            }
        }
        em.send(RolloutEvent::TurnFinished { k, turn: turn_no, record: turn.clone() });
        traj.turns.push(turn);
        if finished.is_some() {
            break;
        }
    }
    if finished.is_none() {
        if let Some(t) = traj.turns.last_mut() {
            t.notes.push("the step counter ran out: the trajectory ends after a tool response, as in the reference".into());
        }
    }
    if last_gen.as_ref() != Some(&FinishReason::Length) {
        sequence.push_str(EOS_TEXT);
    }
    traj.finish_reason = finished.or(last_gen);
    if traj.finish_reason != Some(FinishReason::Cancelled) {
        if let Some(gt) = &sample.ground_truth {
            match vt_reward::rl_score(&sequence, gt, &sample.question_type) {
                Ok(parts) => traj.rewards = Some(parts.to_rewards()),
                Err(e) => traj.tags.push(format!("unscored: {e}")),
            }
        }
    }
    let saved = save(&traj, &images[..ctx.shown.len()], &dir)?;
    Ok((saved, Some(dir)))
}
