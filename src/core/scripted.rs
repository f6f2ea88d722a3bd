//! Run a fixed list of assistant responses through the ViLaSR protocol without a model: build
//! the first prompt, apply each response with a [`VilasrSession`], append observation turns, close
//! the sequence with EOS, and score it with the RL reward. The result is a trajectory in the core
//! format plus the exact decoded sequence the reward saw.
//!
//! Used by the quick-start demo, by teacher-trajectory generators and by replay.

use super::executor::{ExecutorFixes, Profile};
use super::prompts::{self, PromptError, QuestionSpec, VilasrPromptStyle, EOS_TEXT};
use super::rewards::vilasr;
use super::session::VilasrSession;
use super::trajectory::{write_atomic, FinishReason, ImageRef, Media, Observation, Protocol, Sample, Trajectory, TrajectoryError, Turn};
use image::RgbImage;

/// A scripted run: the trajectory, the decoded sequence and every image (inputs, then observations).
#[derive(Clone, Debug)]
pub struct ScriptedRun {
    pub trajectory: Trajectory,
    pub sequence: String,
    pub images: Vec<RgbImage>,
}

/// The first turn of a ViLaSR sample as the model sees it: the rendered chat (system turn, first user
/// turn, `<|im_start|>assistant\n`), the system prompt and the first user turn's text parts joined
/// (vision triples included). Used by scripted runs and by the live rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstPrompt {
    pub prompt: String,
    pub system: String,
    pub first_user_text: String,
}

/// Build [`FirstPrompt`] for `sample` over its (already resized) input images.
pub fn first_prompt(sample: &Sample, inputs: &[RgbImage], style: VilasrPromptStyle) -> Result<FirstPrompt, PromptError> {
    let (w, h) = inputs.first().map(|i| i.dimensions()).ok_or(PromptError::NoImages)?;
    let opts = sample.options.clone();
    let spec = QuestionSpec {
        question: &sample.question,
        question_type: &sample.question_type,
        options: Some(opts.as_deref()),
        data_type: &sample.data_type,
        original_question_type: sample.extra.get("original_question_type").and_then(|v| v.as_str()),
        num_images: inputs.len(),
        first_size: (w, h),
    };
    let spec = if opts.is_none() { QuestionSpec { options: None, ..spec } } else { spec };
    let content = prompts::vilasr_first_user(style, &spec)?;
    let system = prompts::vilasr_system(w, h);
    let messages = vec![
        prompts::Message { role: "system".into(), content: vec![prompts::ContentItem::text(system.clone())] },
        prompts::Message { role: "user".into(), content: content.clone() },
    ];
    let prompt = prompts::render_chat(&messages, true);
    let first_user_text = content
        .iter()
        .map(|c| match c {
            prompts::ContentItem::Image => prompts::IMAGE_TRIPLE.to_string(),
            prompts::ContentItem::Video => prompts::VIDEO_TRIPLE.to_string(),
            prompts::ContentItem::Text { text } => text.clone(),
        })
        .collect();
    Ok(FirstPrompt { prompt, system, first_user_text })
}

/// Apply `responses` to `sample` whose (already resized) input images are `inputs`.
pub fn run_scripted(
    id: &str,
    sample: &Sample,
    inputs: Vec<RgbImage>,
    style: VilasrPromptStyle,
    profile: Profile,
    responses: &[String],
) -> Result<ScriptedRun, PromptError> {
    let FirstPrompt { prompt: mut sequence, system, first_user_text } = first_prompt(sample, &inputs, style)?;

    let mut traj = Trajectory::new(id, Protocol::Vilasr, sample.clone());
    traj.system_prompt = Some(system);
    traj.first_user_text = Some(first_user_text);
    traj.profile = Some(match profile {
        Profile::Eval => "eval".into(),
        Profile::Rl => "rl".into(),
    });
    let maze = sample.grid_size.is_some() || sample.data_type == "maze";
    let mut session = VilasrSession::new(inputs, profile, maze, None, ExecutorFixes::default());
    let mut last_finish = None;
    for text in responses {
        let applied = session.apply(text, FinishReason::Stop);
        let mut turn = Turn { assistant_text: text.clone(), actions: applied.actions.clone(), notes: applied.notes.clone(), ..Default::default() };
        if applied.kind != "regenerate" {
            sequence.push_str(text);
        }
        for (n, on) in &applied.new_images {
            let img = &session.images[n - 1];
            turn.observations.push(Observation {
                number: *n as u32,
                drawn_on: *on as u32,
                image: ImageRef::with_size(format!("images/image-{n}.png"), img.width(), img.height()),
            });
        }
        if let Some(t) = &applied.observation_text {
            sequence.push_str(t);
            turn.observation_text = Some(t.clone());
        }
        turn.finish_reason = applied.finish_reason.clone();
        last_finish = applied.finish_reason.clone().or(last_finish);
        traj.turns.push(turn);
        if session.finished.is_some() {
            break;
        }
    }
    if last_finish.as_ref() != Some(&FinishReason::Length) {
        sequence.push_str(EOS_TEXT);
    }
    traj.finish_reason = session.finished.clone();
    if let Some(gt) = &sample.ground_truth {
        if let Ok(parts) = vilasr::rl_score(&sequence, gt, &sample.question_type) {
            traj.rewards = Some(parts.to_rewards());
        }
    }
    Ok(ScriptedRun { trajectory: traj, sequence, images: session.images })
}

impl ScriptedRun {
    /// Save as a trajectory folder: inputs as `images/input-N.png`, observations as
    /// `images/image-N.png`, then `trajectory.json` (written last, atomically).
    pub fn save(&self, dir: &std::path::Path) -> Result<(), TrajectoryError> {
        let n_inputs = self.trajectory.sample.media.images().len();
        let mut traj = self.trajectory.clone();
        let mut inputs = Vec::new();
        for (i, img) in self.images.iter().enumerate() {
            let rel = if i < n_inputs { format!("images/input-{}.png", i + 1) } else { format!("images/image-{}.png", i + 1) };
            write_png(img, &dir.join(&rel))?;
            if i < n_inputs {
                inputs.push(ImageRef::with_size(rel, img.width(), img.height()));
            }
        }
        traj.sample.media = match &traj.sample.media {
            Media::Images { .. } => Media::Images { images: inputs },
            Media::VideoFrames { video, .. } => Media::VideoFrames { frames: inputs, video: video.clone() },
        };
        traj.save_dir(dir).map(|_| ())
    }
}

/// PNG-encode and write atomically.
pub fn write_png(img: &RgbImage, path: &std::path::Path) -> Result<(), TrajectoryError> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| TrajectoryError::Io { file: path.display().to_string(), message: e.to_string() })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_run_scores_and_saves() {
        let sample = Sample {
            id: "s".into(),
            question: "Q?".into(),
            question_type: "multiple choice".into(),
            options: Some(vec!["A. a".into(), "B. b".into()]),
            ground_truth: Some("B".into()),
            data_type: "vqa".into(),
            media: Media::Images { images: vec![ImageRef::new("x.png")] },
            ..Default::default()
        };
        let img = RgbImage::from_pixel(56, 56, image::Rgb([9, 9, 9]));
        let responses = vec![
            "<think>box it</think> Action: Object Mapper\n```json\n[{\"index\": 1, \"bbox_2d\": [2, 2, 20, 20], \"label\": \"a\"}]\n```".to_string(),
            "<think>done</think> Action: Answer\n<answer>B</answer>".to_string(),
        ];
        let run = run_scripted("t", &sample, vec![img], VilasrPromptStyle::Rl, Profile::Rl, &responses).unwrap();
        let r = run.trajectory.rewards.as_ref().unwrap();
        assert_eq!((r.overall, r.format, r.accuracy), (1.0, 1.0, 1.0));
        assert!(run.sequence.ends_with("<answer>B</answer><|im_end|>"));
        assert_eq!(run.images.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        run.save(dir.path()).unwrap();
        let back = Trajectory::load_dir(dir.path()).unwrap();
        assert!(dir.path().join(&back.sample.media.images()[0].path).exists());
        assert!(dir.path().join(&back.turns[0].observations[0].image.path).exists());
    }
}
