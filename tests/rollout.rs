//! The rollout engine end to end: the tiny fixture checkpoint through the live loop (event order,
//! limits, cancellation, determinism, forks), the executor path with a scripted responder (every
//! finish reason the loop decides, image cap, RL budget, rewards, pass@k), and replay over the
//! demo trajectories plus a tampered observation.
#![cfg(feature = "model")]

use sightline::core::trajectory::{FinishReason, ImageRef, Media, Sample, Trajectory};
use sightline::rollout::{self, ForkSpec, RolloutConfig, RolloutEvent, RolloutHandle, RunProfile, ScriptedResponder};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fix() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl")
}

fn sample(gt: Option<&str>) -> Sample {
    Sample {
        id: "s1".into(),
        question: "Which colour is the square?".into(),
        question_type: "multiple choice".into(),
        options: Some(vec!["A. red".into(), "B. blue".into()]),
        ground_truth: gt.map(str::to_string),
        data_type: "vqa".into(),
        media: Media::Images { images: vec![ImageRef::new("images/image_a.png")] },
        ..Default::default()
    }
}

fn config(out: &Path) -> RolloutConfig {
    RolloutConfig {
        model_dir: fix().join("tiny_tied"),
        device: "cpu".into(),
        profile: RunProfile::Rl,
        n: 1,
        seed: 7,
        temperature: Some(0.0),
        max_new_tokens: Some(6),
        out_dir: Some(out.to_path_buf()),
        ..Default::default()
    }
}

fn collect(h: &RolloutHandle) -> Vec<RolloutEvent> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(e) = h.recv_timeout(Duration::from_millis(200)) {
            let done = matches!(e, RolloutEvent::Done { .. });
            out.push(e);
            if done {
                assert!(h.is_finished());
                return out;
            }
        }
    }
    panic!("no Done event within 120 s; got {} events", out.len());
}

/// The finished trajectories in k order (trajectories generated together finish in any order).
fn finished(events: &[RolloutEvent]) -> Vec<(Trajectory, PathBuf)> {
    let mut out: Vec<(usize, Trajectory, PathBuf)> = events
        .iter()
        .filter_map(|e| match e {
            RolloutEvent::Finished { k, trajectory, dir } => Some((*k, trajectory.clone(), dir.clone().unwrap())),
            _ => None,
        })
        .collect();
    out.sort_by_key(|x| x.0);
    out.into_iter().map(|(_, t, d)| (t, d)).collect()
}

fn failures(events: &[RolloutEvent]) -> Vec<String> {
    events.iter().filter_map(|e| if let RolloutEvent::Failed { message, .. } = e { Some(message.clone()) } else { None }).collect()
}

fn kind(e: &RolloutEvent) -> &'static str {
    match e {
        RolloutEvent::Status(_) => "status",
        RolloutEvent::Started { .. } => "started",
        RolloutEvent::Token { .. } => "token",
        RolloutEvent::Action { .. } => "action",
        RolloutEvent::Observation { .. } => "observation",
        RolloutEvent::TurnFinished { .. } => "turn",
        RolloutEvent::Finished { .. } => "finished",
        RolloutEvent::Failed { .. } => "failed",
        RolloutEvent::Done { .. } => "done",
    }
}

fn scripted(s: Sample, cfg: RolloutConfig, scripts: Vec<Vec<&str>>) -> Vec<RolloutEvent> {
    let scripts = scripts.into_iter().map(|v| v.into_iter().map(str::to_string).collect()).collect();
    let h = rollout::start_with_responder(s, fix(), cfg, Box::new(ScriptedResponder::new(scripts)), Box::new(|| {}));
    collect(&h)
}

const BOX: &str = "<think>Locate it.</think> Action: Object Mapper\n```json\n[{\"index\": 1, \"bbox_2d\": [10, 10, 60, 60], \"label\": \"square\"}]\n```";
const ANSWER_B: &str = "<think>Image 2 shows the square; it is blue.</think> Action: Answer\n<answer>B</answer>";
const ANSWER_A: &str = "<think>It looks red.</think> Action: Answer\n<answer>A</answer>";

// ---------------------------------------------------------------- the model path

#[test]
fn model_run_streams_events_in_order_and_stops_at_the_token_limit() {
    let out = tempfile::tempdir().unwrap();
    let woken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = woken.clone();
    let h = rollout::start(sample(Some("B")), fix(), config(out.path()), Box::new(move || {
        w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }));
    let events = collect(&h);
    assert!(failures(&events).is_empty(), "{:?}", failures(&events));
    let kinds: Vec<&str> = events.iter().map(kind).filter(|k| *k != "status").collect();
    assert_eq!(kinds.first(), Some(&"started"));
    let first_turn = kinds.iter().position(|k| *k == "turn").unwrap();
    assert!(kinds[1..first_turn].iter().all(|k| *k == "token" || *k == "action"), "{kinds:?}");
    assert!(kinds[1..first_turn].contains(&"token"));
    assert_eq!(&kinds[kinds.len() - 2..], &["finished", "done"]);
    // `wake` runs right after each send; give the worker a moment to make the last call.
    let t0 = Instant::now();
    while woken.load(std::sync::atomic::Ordering::Relaxed) < events.len() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(woken.load(std::sync::atomic::Ordering::Relaxed), events.len());
    let (t, dir) = finished(&events).remove(0);
    assert_eq!(t.finish_reason, Some(FinishReason::Length), "6 tokens of a random model end with `length`");
    assert_eq!(t.turns.len(), 1);
    assert_eq!(t.turns[0].timings.generated_tokens, Some(6));
    assert!(t.turns[0].timings.generate_ms.is_some());
    let deltas: Vec<&str> = events.iter().filter_map(|e| if let RolloutEvent::Token { text, .. } = e { Some(text.as_str()) } else { None }).collect();
    assert!(!deltas.is_empty() && deltas.len() <= 6 && deltas.iter().all(|d| !d.is_empty()));
    assert!(t.rewards.is_some(), "scored against the ground truth");
    // Saved, and loadable.
    let back = Trajectory::load_dir(&dir).unwrap();
    assert_eq!(back.turns, t.turns);
    assert!(dir.join(&back.sample.media.images()[0].path).is_file());
    assert!(matches!(events.last(), Some(RolloutEvent::Done { pass_at_k: Some(_) })));
}

#[test]
fn greedy_model_output_is_deterministic_and_n_trajectories_run() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.n = 2;
    let a = finished(&collect(&rollout::start(sample(None), fix(), cfg.clone(), Box::new(|| {}))));
    let out2 = tempfile::tempdir().unwrap();
    cfg.out_dir = Some(out2.path().to_path_buf());
    let b = finished(&collect(&rollout::start(sample(None), fix(), cfg, Box::new(|| {}))));
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].0.turns[0].assistant_text, b[0].0.turns[0].assistant_text);
    assert_eq!(a[0].0.turns[0].assistant_text, a[1].0.turns[0].assistant_text, "greedy: every k is the same");
    assert_eq!(a[1].0.id, "s1-1");
    assert!(a[0].0.rewards.is_none());
    // Sampling at T=1 with another seed differs from greedy (on 6 tokens of a 1,024-token vocabulary).
    let out3 = tempfile::tempdir().unwrap();
    let mut cfg = config(out3.path());
    cfg.temperature = Some(1.0);
    cfg.max_new_tokens = Some(12);
    let s1 = finished(&collect(&rollout::start(sample(None), fix(), cfg.clone(), Box::new(|| {}))));
    let s2 = finished(&collect(&rollout::start(sample(None), fix(), cfg.clone(), Box::new(|| {}))));
    assert_eq!(s1[0].0.turns[0].assistant_text, s2[0].0.turns[0].assistant_text, "same seed, same sample");
    cfg.seed = 8;
    let s3 = finished(&collect(&rollout::start(sample(None), fix(), cfg, Box::new(|| {}))));
    assert_ne!(s1[0].0.turns[0].assistant_text, s3[0].0.turns[0].assistant_text);
}

#[test]
fn cancel_after_the_first_token_ends_cancelled_and_still_saves() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.max_new_tokens = Some(5000);
    cfg.n = 3;
    let h = rollout::start(sample(Some("B")), fix(), cfg, Box::new(|| {}));
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        assert!(start.elapsed() < Duration::from_secs(120));
        if let Some(e) = h.recv_timeout(Duration::from_millis(100)) {
            let tok = matches!(e, RolloutEvent::Token { .. });
            let done = matches!(e, RolloutEvent::Done { .. });
            events.push(e);
            if tok {
                h.cancel();
            }
            if done {
                break;
            }
        }
    }
    let f = finished(&events);
    assert_eq!(f.len(), 3, "the three trajectories run together and all stop");
    for (t, dir) in &f {
        assert_eq!(t.finish_reason, Some(FinishReason::Cancelled));
        assert_eq!(t.turns.last().unwrap().finish_reason, Some(FinishReason::Cancelled));
        assert!(t.turns[0].timings.generated_tokens.unwrap() < 5000);
        assert!(t.rewards.is_none(), "a cancelled trajectory is not scored");
        assert!(Trajectory::load_dir(dir).is_ok());
    }
    assert!(matches!(events.last(), Some(RolloutEvent::Done { pass_at_k: None })));
}

#[test]
fn fork_keeps_the_prefix_reexecutes_it_and_records_fork_of() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.max_new_tokens = None;
    let parent_ev = scripted(sample(Some("B")), cfg.clone(), vec![vec![BOX, ANSWER_B]]);
    cfg.max_new_tokens = Some(6);
    let (parent, pdir) = finished(&parent_ev).remove(0);
    assert_eq!(parent.turns.len(), 2);
    // Regenerate turn 1 with the model.
    let h = rollout::start_fork(&parent, pdir.clone(), ForkSpec { turn: 1, edited_text: None }, cfg.clone(), Box::new(|| {}));
    let ev = collect(&h);
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    let (f, fdir) = finished(&ev).remove(0);
    assert_eq!(f.fork_of.as_ref().map(|o| (o.parent_id.as_str(), o.turn)), Some((parent.id.as_str(), 1)));
    assert_eq!(f.turns.len(), 2);
    assert_eq!(f.turns[0].assistant_text, parent.turns[0].assistant_text);
    assert_eq!(f.turns[0].observations.len(), 1, "the kept turn is executed again");
    assert_eq!(f.turns[1].finish_reason, Some(FinishReason::Length));
    assert!(fdir.join("images/image-2.png").is_file());
    assert_ne!(fdir, pdir);
    // Edit turn 1 (scripted): the edited answer is applied and scored.
    let ev = {
        let h = rollout::start_fork_with_responder(
            &parent,
            pdir.clone(),
            ForkSpec { turn: 1, edited_text: Some(ANSWER_A.into()) },
            cfg.clone(),
            Box::new(ScriptedResponder::new(vec![vec![]])),
            Box::new(|| {}),
        );
        collect(&h)
    };
    let (e, _) = finished(&ev).remove(0);
    assert_eq!(e.turns.len(), 2);
    assert_eq!(e.turns[1].assistant_text, ANSWER_A);
    assert_eq!(e.rewards.as_ref().unwrap().accuracy, 0.0);
    // Forking past a finished turn is refused with a message.
    let h = rollout::start_fork(&parent, pdir, ForkSpec { turn: 2, edited_text: None }, cfg, Box::new(|| {}));
    let ev = collect(&h);
    assert!(failures(&ev)[0].contains("turn 1 ended it"), "{:?}", failures(&ev));
}

// ---------------------------------------------------------------- the executor path (scripted)

#[test]
fn scripted_loop_draws_observes_scores_and_replays() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.max_new_tokens = None;
    let ev = scripted(sample(Some("B")), cfg, vec![vec![BOX, ANSWER_B]]);
    let kinds: Vec<&str> = ev.iter().map(kind).filter(|k| *k != "status" && *k != "token").collect();
    assert_eq!(kinds, ["started", "action", "observation", "turn", "turn", "finished", "done"]);
    let action = ev.iter().find_map(|e| if let RolloutEvent::Action { action, .. } = e { Some(action.clone()) } else { None }).unwrap();
    assert_eq!(action.bbox_2d, Some([10.0, 10.0, 60.0, 60.0]));
    let path = ev.iter().find_map(|e| if let RolloutEvent::Observation { path, number: 2, drawn_on: 1, .. } = e { Some(path.clone()) } else { None }).unwrap();
    assert!(path.is_file());
    let (t, dir) = finished(&ev).remove(0);
    assert_eq!(t.finish_reason, Some(FinishReason::Stop));
    let r = t.rewards.unwrap();
    assert_eq!((r.overall, r.format, r.accuracy), (1.0, 1.0, 1.0));
    assert!(t.turns[0].observation_text.as_ref().unwrap().starts_with("<|im_end|>\n<|im_start|>user\n"));
    assert!(matches!(ev.last(), Some(RolloutEvent::Done { pass_at_k: Some(p) }) if *p == 1.0));
    let saved = Trajectory::load_dir(&dir).unwrap();
    let rep = rollout::replay(&saved, &dir).unwrap();
    assert_eq!((rep.turns, rep.observations_checked), (2, 1));
    assert!(rep.mismatches.is_empty(), "{:?}", rep.mismatches);
}

#[test]
fn scripted_finish_reasons_of_the_executor() {
    let out = tempfile::tempdir().unwrap();
    let cfg = config(out.path());
    let reason = |cfg: &RolloutConfig, resp: &str| {
        let ev = scripted(sample(Some("B")), cfg.clone(), vec![vec![resp]]);
        finished(&ev).remove(0).0.finish_reason.unwrap()
    };
    let mut rl = cfg.clone();
    rl.max_new_tokens = None;
    assert_eq!(reason(&rl, "<think>no tool, no answer</think>"), FinishReason::ToolError);
    // A valid box then one without `index`: grouping raises after something was grouped.
    assert_eq!(
        reason(&rl, "<think>x</think>\n```json\n[{\"index\": 1, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}, {\"bbox_2d\": [1, 2, 3, 4], \"label\": \"b\"}]\n```"),
        FinishReason::ToolGenError
    );
    assert_eq!(reason(&rl, "<think>x</think>\n```json\n[{\"index\": 5, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}]\n```"), FinishReason::IndexError);
    assert_eq!(reason(&rl, ANSWER_B), FinishReason::Stop);
    assert_eq!(reason(&cfg, "one two three four five six seven eight"), FinishReason::Length);
    // RL budget: the observation would reach it → max_tokens, response kept, no observation.
    let mut small = rl.clone();
    small.max_total_tokens = Some(40);
    let ev = scripted(sample(Some("B")), small, vec![vec![BOX, ANSWER_B]]);
    let (t, _) = finished(&ev).remove(0);
    assert_eq!(t.finish_reason, Some(FinishReason::MaxTokens));
    assert_eq!(t.turns.len(), 1);
    assert!(t.turns[0].observations.is_empty());
    // Turn cap: the last allowed generation is appended unexecuted.
    let mut two = rl.clone();
    two.max_turns = Some(2);
    let ev = scripted(sample(Some("B")), two, vec![vec![BOX, BOX, BOX]]);
    let (t, _) = finished(&ev).remove(0);
    assert_eq!(t.turns.len(), 2);
    assert!(t.turns[1].observations.is_empty());
    assert_eq!(t.finish_reason, Some(FinishReason::Stop));
}

#[test]
fn image_cap_drops_images_and_closes_with_an_empty_turn() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.max_new_tokens = None;
    cfg.max_turns = Some(10);
    cfg.max_total_tokens = Some(1_000_000);
    // Each turn boxes every image so far: 1 → 2 → 4 → … images, past the RL cap of 42.
    let turn = |n: usize| {
        let items: Vec<String> = (1..=n).map(|i| format!("{{\"index\": {i}, \"bbox_2d\": [1, 1, 20, 20], \"label\": \"x\"}}")).collect();
        format!("<think>box</think> Action: Object Mapper\n```json\n[{}]\n```", items.join(", "))
    };
    let texts: Vec<String> = [1, 2, 4, 8, 16, 32, 42].iter().map(|&n| turn(n)).collect();
    let mut s = sample(Some("B"));
    s.media = Media::Images { images: vec![ImageRef::new("images/image_c.png")] };
    let ev = scripted(s, cfg, vec![texts.iter().map(String::as_str).collect()]);
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    let (t, _) = finished(&ev).remove(0);
    let images: usize = 1 + t.turns.iter().map(|t| t.observations.len()).sum::<usize>();
    assert_eq!(images, 43, "the cap keeps one image past 42 and drops the rest");
    assert!(t.turns[5].notes.iter().any(|n| n.contains("dropped at the image cap")));
    assert!(t.turns[5].observation_text.as_ref().unwrap().contains("you can not invoke"));
    let last = t.turns.last().unwrap();
    assert!(last.assistant_text.is_empty() && last.notes[0].contains("not generated again"));
    assert_eq!(t.rewards.unwrap().overall, 0.0);
}

#[test]
fn pass_at_k_counts_accuracy_one() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.max_new_tokens = None;
    cfg.n = 2;
    let ev = scripted(sample(Some("B")), cfg.clone(), vec![vec![ANSWER_A], vec![ANSWER_A]]);
    assert!(matches!(ev.last(), Some(RolloutEvent::Done { pass_at_k: Some(p) }) if *p == 0.0));
    let ev = scripted(sample(Some("B")), cfg, vec![vec![ANSWER_A], vec![ANSWER_B]]);
    assert!(matches!(ev.last(), Some(RolloutEvent::Done { pass_at_k: Some(p) }) if *p == 1.0));
}

#[test]
fn bad_input_fails_with_the_file_named_and_done_last() {
    let out = tempfile::tempdir().unwrap();
    let mut s = sample(None);
    s.media = Media::Images { images: vec![ImageRef::new("images/missing.png")] };
    let ev = collect(&rollout::start(s, fix(), config(out.path()), Box::new(|| {})));
    assert!(failures(&ev)[0].contains("missing.png"), "{:?}", failures(&ev));
    let mut cfg = config(out.path());
    cfg.model_dir = out.path().join("no-model");
    let ev = collect(&rollout::start(sample(None), fix(), cfg, Box::new(|| {})));
    assert!(failures(&ev)[0].contains("no-model"), "{:?}", failures(&ev));
    assert!(matches!(ev.last(), Some(RolloutEvent::Done { pass_at_k: None })));
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_of_every_demo_trajectory_matches() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/trajectories");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("trajectory.json").is_file()).collect();
    dirs.sort();
    assert_eq!(dirs.len(), 225);
    let mut checked = 0;
    for d in &dirs {
        let t = Trajectory::load_dir(d).unwrap();
        let rep = rollout::replay(&t, d).unwrap();
        assert!(rep.mismatches.is_empty(), "{}: {:?}", d.display(), rep.mismatches);
        assert_eq!(rep.turns, t.turns.len());
        checked += rep.observations_checked;
    }
    assert!(checked > 225, "observations compared: {checked}");
}

#[test]
fn replay_detects_a_tampered_observation() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/trajectories/count-000000");
    let t = Trajectory::load_dir(&src).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trajectories/count-000000");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("trajectory.json"), dir.join("trajectory.json")).unwrap();
    let pool_src = src.join("../../images/count-000000");
    let pool = tmp.path().join("images/count-000000");
    std::fs::create_dir_all(&pool).unwrap();
    for e in std::fs::read_dir(&pool_src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, pool.join(p.file_name().unwrap())).unwrap();
    }
    assert!(rollout::replay(&t, &dir).unwrap().mismatches.is_empty());
    let obs = pool.join("image-2.png");
    let mut img = image::open(&obs).unwrap().to_rgb8();
    for x in 0..3 {
        img.put_pixel(x, 0, image::Rgb([1, 2, 3]));
    }
    img.save(&obs).unwrap();
    let rep = rollout::replay(&t, &dir).unwrap();
    assert_eq!(rep.mismatches.len(), 1, "{:?}", rep.mismatches);
    assert!(rep.mismatches[0].contains("image 2") && rep.mismatches[0].contains("3 pixel(s) differ"), "{:?}", rep.mismatches);
    image::RgbImage::new(10, 10).save(&obs).unwrap();
    let rep = rollout::replay(&t, &dir).unwrap();
    assert!(rep.mismatches[0].contains("stored 10×10"), "{:?}", rep.mismatches);
}

// ---------------------------------------------------------------- the command line

fn sightline(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sightline")).args(args).output().unwrap()
}

#[test]
fn cli_run_writes_trajectories_and_replay_checks_them() {
    let out = tempfile::tempdir().unwrap();
    let model = fix().join("tiny_tied");
    let img = fix().join("images/image_b.png");
    let o = sightline(&[
        "run", "--model", model.to_str().unwrap(), "--image", img.to_str().unwrap(), "--question", "How many?",
        "--question-type", "numerical", "--ground-truth", "3", "--profile", "rl", "--n", "2", "--device", "cpu",
        "--temperature", "0", "--max-new-tokens", "5", "--out", out.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("trajectory 0: 1 turn(s), finish length") && stdout.contains("trajectory 1:"), "{stdout}");
    assert!(stdout.contains("pass@2: 0.0000"), "{stdout}");
    assert!(out.path().join("sample-1/trajectory.json").is_file());
    // Replay over the run folder (a folder of trajectory folders): no observations, no mismatches.
    let o = sightline(&["replay", out.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 trajectory(ies)"));
    // A demo trajectory as --sample, and a record of a dataset file.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let o = sightline(&[
        "run", "--model", model.to_str().unwrap(), "--sample", demo.join("trajectories/count-000000").to_str().unwrap(),
        "--device", "cpu", "--max-new-tokens", "3", "--out", out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(out.path().join("count-000000-0/trajectory.json").is_file());
    // Fork a demo trajectory at turn 0 with an edited answer (no generation needed after it).
    let edit = out.path().join("edit.txt");
    std::fs::write(&edit, "<think>Counting again.</think> Action: Answer\n<answer>3</answer>").unwrap();
    let o = sightline(&[
        "run", "--model", model.to_str().unwrap(), "--sample", demo.join("trajectories/count-000000").to_str().unwrap(),
        "--fork-at", "0", "--edit", edit.to_str().unwrap(), "--profile", "rl", "--device", "cpu", "--max-new-tokens", "3", "--out", out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let forked = Trajectory::load_dir(&out.path().join("count-000000-fork0-0")).unwrap();
    assert_eq!(forked.fork_of.as_ref().map(|f| f.turn), Some(0));
    assert_eq!(forked.turns.len(), 1);
    assert!(forked.turns[0].assistant_text.contains("<answer>3</answer>"));
    assert_eq!(forked.finish_reason, Some(FinishReason::Stop));
    let o = sightline(&["run", "--model", model.to_str().unwrap(), "--sample", demo.join("trajectories/count-000000").to_str().unwrap(), "--fork-at", "99", "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot fork at turn 99"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sightline(&["run", "--model", model.to_str().unwrap(), "--sample", demo.join("rl_count.jsonl").to_str().unwrap(), "--device", "cpu", "--max-new-tokens", "3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--record"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sightline(&[
        "run", "--model", model.to_str().unwrap(), "--sample", demo.join("rl_count.jsonl").to_str().unwrap(), "--record", "2",
        "--device", "cpu", "--max-new-tokens", "3", "--out", out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    // Bad model folder: exit 2, the folder named.
    let o = sightline(&["run", "--model", "/nonexistent-model", "--image", img.to_str().unwrap(), "--question", "Q", "--question-type", "numerical", "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent-model"));
}

#[test]
fn cli_replay_of_the_demo_workspace_passes_and_a_tampered_copy_fails() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let o = sightline(&["replay", demo.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("225 trajectory(ies)"), "{}", String::from_utf8_lossy(&o.stdout));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trajectories/count-000001");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(demo.join("trajectories/count-000001/trajectory.json"), dir.join("trajectory.json")).unwrap();
    let pool = tmp.path().join("images/count-000001");
    std::fs::create_dir_all(&pool).unwrap();
    for e in std::fs::read_dir(demo.join("images/count-000001")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, pool.join(p.file_name().unwrap())).unwrap();
    }
    let mut img = image::open(pool.join("image-2.png")).unwrap().to_rgb8();
    img.put_pixel(5, 5, image::Rgb([0, 255, 0]));
    img.save(pool.join("image-2.png")).unwrap();
    let o = sightline(&["replay", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("image 2: 1 pixel(s) differ"), "{}", String::from_utf8_lossy(&o.stdout));
}

// ---------------------------------------------------------------- ViLaVT

fn vilavt_config(out: &Path) -> RolloutConfig {
    let mut c = config(out);
    c.protocol = sightline::core::trajectory::Protocol::Vilavt;
    c.max_new_tokens = None;
    c
}

const TOOL: &str = "<think>Look closer.</think> <tool>{\"region\": [{\"index\": 0, \"bbox_2d\": [14, 14, 154, 98]}], \"query\": \"what colour is it?\"}</tool>";

#[test]
fn vilavt_zooms_into_regions_and_answers() {
    let out = tempfile::tempdir().unwrap();
    let ev = scripted(sample(Some("B")), vilavt_config(out.path()), vec![vec![TOOL, ANSWER_B]]);
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    assert!(ev.iter().any(|e| matches!(e, RolloutEvent::Status(s) if s.contains("text-conditioned vision encoder is not implemented"))));
    let kinds: Vec<&str> = ev.iter().map(kind).filter(|k| *k != "status" && *k != "token").collect();
    assert_eq!(kinds, ["started", "action", "observation", "turn", "turn", "finished", "done"]);
    let (t, dir) = finished(&ev).remove(0);
    assert_eq!(t.protocol, sightline::core::trajectory::Protocol::Vilavt);
    assert_eq!(t.finish_reason, Some(FinishReason::Stop));
    let a = &t.turns[0].actions[0];
    assert_eq!((a.index, a.bbox_2d, a.query.as_deref()), (Some(0), Some([14.0, 14.0, 154.0, 98.0]), Some("what colour is it?")));
    let o = &t.turns[0].observations[0];
    assert_eq!((o.number, o.drawn_on), (2, 1));
    let obs = image::open(dir.join(&o.image.path)).unwrap();
    assert_eq!((obs.width(), obs.height()), (o.image.width.unwrap(), o.image.height.unwrap()));
    let text = t.turns[0].observation_text.as_ref().unwrap();
    assert!(text.starts_with("<|im_end|>\n<|im_start|>user\n<tool_response><|vision_start|><|image_pad|><|vision_end|>") && text.ends_with("</tool_response><|im_end|>\n<|im_start|>assistant\n"), "{text}");
    assert!(text.contains("1"), "the zoom-in is announced with its 0-based number");
    assert_eq!(t.rewards.as_ref().unwrap().accuracy, 1.0);
}

#[test]
fn vilavt_invalid_calls_end_with_zoomin_failed_and_the_model_path_runs() {
    let out = tempfile::tempdir().unwrap();
    let bad = TOOL.replace("\"index\": 0", "\"index\": 3");
    let ev = scripted(sample(Some("B")), vilavt_config(out.path()), vec![vec![&bad]]);
    let (t, _) = finished(&ev).remove(0);
    assert_eq!(t.finish_reason, Some(FinishReason::ZoominFailed));
    assert!(t.turns[0].notes.iter().any(|n| n.contains("Zoom-in failed: Image index 3 out of range")), "{:?}", t.turns[0].notes);
    let ev = scripted(sample(Some("B")), vilavt_config(out.path()), vec![vec!["<think>no call</think>"]]);
    assert_eq!(finished(&ev).remove(0).0.finish_reason, Some(FinishReason::ZoominFailed));
    // The step counter: 2 steps of tool calls end after a tool response (final prompt on the last).
    let mut two = vilavt_config(out.path());
    two.max_turns = Some(2);
    let ev = scripted(sample(Some("B")), two, vec![vec![TOOL, TOOL, ANSWER_B]]);
    let (t, _) = finished(&ev).remove(0);
    assert_eq!(t.turns.len(), 2);
    assert_eq!(t.turns[1].observations[0].number, 3);
    assert_ne!(t.turns[0].observation_text, t.turns[1].observation_text);
    // The tiny checkpoint through the ViLaVT loop.
    let mut m = vilavt_config(out.path());
    m.max_new_tokens = Some(5);
    let ev = collect(&rollout::start(sample(Some("B")), fix(), m, Box::new(|| {})));
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    assert_eq!(finished(&ev).remove(0).0.finish_reason, Some(FinishReason::Length));
}

#[test]
fn vilavt_trajectories_replay_and_fork() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = vilavt_config(out.path());
    cfg.vilavt_max_pixels = Some(50_000.0);
    let ev = scripted(sample(Some("B")), cfg.clone(), vec![vec![TOOL, TOOL, ANSWER_A]]);
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    let (t, dir) = finished(&ev).remove(0);
    assert_eq!(t.turns.len(), 3);
    // Saved with the original file as its input and the settings used.
    let input = image::open(dir.join(&t.sample.media.images()[0].path)).unwrap();
    let original = image::open(fix().join("images/image_a.png")).unwrap();
    assert_eq!(input.to_rgb8(), original.to_rgb8(), "the input is the original file");
    assert_eq!(t.sample.extra["max_pixels"].as_f64(), Some(50_000.0));
    // Replay re-renders every zoom-in exactly.
    let back = Trajectory::load_dir(&dir).unwrap();
    let rep = rollout::replay(&back, &dir).unwrap();
    assert_eq!((rep.turns, rep.observations_checked), (3, 2));
    assert!(rep.mismatches.is_empty(), "{:?}", rep.mismatches);
    // A changed zoom-in is caught.
    let o = &back.turns[1].observations[0];
    let mut img = image::open(dir.join(&o.image.path)).unwrap().to_rgb8();
    img.put_pixel(0, 0, image::Rgb([1, 2, 3]));
    img.save(dir.join(&o.image.path)).unwrap();
    let rep = rollout::replay(&back, &dir).unwrap();
    assert_eq!(rep.mismatches.len(), 1, "{:?}", rep.mismatches);
    assert!(rep.mismatches[0].contains("image 3"), "{:?}", rep.mismatches);
    // Fork at turn 1 with an edited answer: turn 0 kept (its zoom-in made again), the edit ends it.
    let out2 = tempfile::tempdir().unwrap();
    let mut fcfg = vilavt_config(out2.path());
    fcfg.protocol = sightline::core::trajectory::Protocol::Vilasr; // a fork follows its parent
    let fork = ForkSpec { turn: 1, edited_text: Some(ANSWER_B.into()) };
    let scripts = vec![vec!["unused".to_string()]];
    let h = rollout::start_fork_with_responder(&back, dir.clone(), fork, fcfg, Box::new(ScriptedResponder::new(scripts)), Box::new(|| {}));
    let ev = collect(&h);
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    let (f, fdir) = finished(&ev).remove(0);
    assert_eq!(f.protocol, sightline::core::trajectory::Protocol::Vilavt);
    assert_eq!(f.fork_of.as_ref().map(|o| (o.parent_id.as_str(), o.turn)), Some((back.id.as_str(), 1)));
    assert_eq!(f.turns.len(), 2);
    assert_eq!(f.turns[0].observation_text, back.turns[0].observation_text);
    assert_eq!(f.turns[1].assistant_text, ANSWER_B);
    assert_eq!(f.rewards.as_ref().unwrap().accuracy, 1.0, "the edited answer is scored");
    let a = image::open(fdir.join(&f.turns[0].observations[0].image.path)).unwrap();
    let b = image::open(dir.join(&back.turns[0].observations[0].image.path)).unwrap();
    assert_eq!(a.to_rgb8(), b.to_rgb8(), "the kept zoom-in is made again, the same");
    assert!(rollout::replay(&f, &fdir).unwrap().mismatches.is_empty());
    // Forking past the end is refused with the reason.
    let bad = ForkSpec { turn: 9, edited_text: None };
    let h = rollout::start_fork_with_responder(&back, dir, bad, vilavt_config(out2.path()), Box::new(ScriptedResponder::new(vec![vec![]])), Box::new(|| {}));
    assert!(failures(&collect(&h)).iter().any(|m| m.contains("cannot fork at turn 9")));
}

#[test]
fn pass_at_k_trajectories_of_a_model_are_decoded_together() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(out.path());
    cfg.n = 3;
    cfg.temperature = Some(1.0);
    cfg.max_new_tokens = Some(16);
    let ev = collect(&rollout::start(sample(Some("B")), fix(), cfg.clone(), Box::new(|| {})));
    assert!(failures(&ev).is_empty(), "{:?}", failures(&ev));
    assert!(ev.iter().any(|e| matches!(e, RolloutEvent::Status(s) if s.contains("3 trajectories generated together"))));
    // All three start before any of them finishes, and their tokens interleave.
    let started: Vec<usize> = ev.iter().enumerate().filter(|(_, e)| matches!(e, RolloutEvent::Started { .. })).map(|(i, _)| i).collect();
    let first_finish = ev.iter().position(|e| matches!(e, RolloutEvent::Finished { .. })).unwrap();
    assert_eq!(started.len(), 3);
    assert!(started.iter().all(|&i| i < first_finish));
    let ks: Vec<usize> = ev.iter().filter_map(|e| if let RolloutEvent::Token { k, .. } = e { Some(*k) } else { None }).collect();
    let first_token_of_last = ks.iter().position(|&k| k == 2).unwrap();
    assert!(ks[first_token_of_last..].iter().any(|&k| k != 2), "tokens of different trajectories interleave: {ks:?}");
    let got = finished(&ev);
    assert_eq!(got.iter().map(|t| t.0.id.as_str()).collect::<Vec<_>>(), ["s1-0", "s1-1", "s1-2"]);
    // Each trajectory is what a run of it alone samples (k's seeds), and its prefill was timed.
    for (t, _) in &got {
        assert!(t.turns[0].timings.prefill_ms.is_some() && t.turns[0].timings.vision_ms.is_some());
    }
    let out2 = tempfile::tempdir().unwrap();
    let mut one = cfg.clone();
    one.n = 1;
    one.out_dir = Some(out2.path().to_path_buf());
    let alone = finished(&collect(&rollout::start(sample(Some("B")), fix(), one, Box::new(|| {}))));
    assert_eq!(alone[0].0.turns[0].assistant_text, got[0].0.turns[0].assistant_text);
    assert!(matches!(ev.last(), Some(RolloutEvent::Done { pass_at_k: Some(_) })));
}

#[test]
fn replay_of_an_imported_llamafactory_dataset_matches_and_a_tampered_copy_does_not() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let run = |p: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sightline")).arg("replay").arg(p).args(["--profile", "rl"]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = run(&demo.join("dataset_info.json"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("225 conversation(s)") && text.contains("611 observation(s) compared: 0 with mismatches"), "{text}");

    // A copy of the maze cold-start set whose first observation lost a pixel.
    let dir = tempfile::tempdir().unwrap();
    let recs: serde_json::Value = serde_json::from_slice(&std::fs::read(demo.join("sft/cold_start/maze.json")).unwrap()).unwrap();
    let first = &recs[0];
    let images: Vec<String> = first["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    for rel in &images {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(demo.join(rel), &to).unwrap();
    }
    let obs = dir.path().join(&images[1]);
    let mut img = image::open(&obs).unwrap().to_rgb8();
    let p = img.get_pixel(5, 5).0;
    img.put_pixel(5, 5, image::Rgb([p[0] ^ 0xff, p[1], p[2]]));
    img.save(&obs).unwrap();
    std::fs::write(dir.path().join("one.json"), serde_json::to_vec(&serde_json::json!([first])).unwrap()).unwrap();
    let (code, text) = run(&dir.path().join("one.json"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("one.json record 0") && text.contains("1 with mismatches"), "{text}");
}
