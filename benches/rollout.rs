//! Rollout-engine overheads on the tiny fixture checkpoint (CPU, `flex`; plain `main`,
//! `harness = false`): time from `rollout::start` to the first token event (device probe, model
//! load, first-prompt prefill with its image), and per turn the executor's parse + render cost next
//! to generation, split into the vision tower's encoding of the observation images, the rest of
//! the prefill, and decoding, when a 6-turn demo maze trajectory is forked at its last turn (5 kept
//! turns re-executed and appended). Then pass@k: n sampled trajectories generated together
//! (batched decoding) against the same n one after the other, in one run.
//!
//! `cargo bench --bench rollout` [`-- --repeats R --tokens N --n K`]. The tiny model makes the
//! model side nearly free, so these numbers are the engine's own overhead, not a model benchmark.

use sightline::core::trajectory::Trajectory;
use sightline::rollout::{self, ForkSpec, RolloutConfig, RolloutEvent, RunProfile};
use std::path::Path;
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let repeats: usize = arg("--repeats").and_then(|v| v.parse().ok()).unwrap_or(5);
    let tokens: usize = arg("--tokens").and_then(|v| v.parse().ok()).unwrap_or(32);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("assets/demo/trajectories/maze-000022");
    let parent = Trajectory::load_dir(&dir).expect("demo trajectory");
    let out = std::env::temp_dir().join(format!("sightline-bench-rollout-{}", std::process::id()));
    let cfg = RolloutConfig {
        model_dir: root.join("tests/fixtures/qwen25vl/tiny_tied"),
        device: "cpu".into(),
        profile: RunProfile::Rl,
        temperature: Some(0.0),
        max_new_tokens: Some(tokens),
        out_dir: Some(out.clone()),
        ..Default::default()
    };
    let (mut first_token, mut total) = (Vec::new(), Vec::new());
    let (mut exec_kept, mut gen_last, mut gen_tokens) = (Vec::new(), Vec::new(), 0);
    let (mut prefill_last, mut vision_last) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let t0 = Instant::now();
        let fork = ForkSpec { turn: parent.turns.len() - 1, edited_text: None };
        let h = rollout::start_fork(&parent, dir.clone(), fork, cfg.clone(), Box::new(|| {}));
        let mut first = None;
        loop {
            let Some(e) = h.recv_timeout(Duration::from_secs(60)) else { panic!("no event in 60 s") };
            match e {
                RolloutEvent::Token { .. } if first.is_none() => first = Some(t0.elapsed().as_secs_f64() * 1e3),
                RolloutEvent::TurnFinished { record, .. } => match record.timings.generate_ms {
                    None => exec_kept.push(record.timings.execute_ms.unwrap_or(0.0)),
                    Some(g) => {
                        gen_last.push(g);
                        prefill_last.push(record.timings.prefill_ms.unwrap_or(f64::NAN));
                        vision_last.push(record.timings.vision_ms.unwrap_or(f64::NAN));
                        gen_tokens = record.timings.generated_tokens.unwrap_or(0);
                    }
                },
                RolloutEvent::Failed { message, .. } => panic!("{message}"),
                RolloutEvent::Done { .. } => break,
                _ => {}
            }
        }
        first_token.push(first.unwrap_or(f64::NAN));
        total.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let n: usize = arg("--n").and_then(|v| v.parse().ok()).unwrap_or(4);
    let sample = parent.sample.clone();
    let pass_cfg = RolloutConfig { n, temperature: Some(1.0), max_new_tokens: Some(tokens), max_turns: Some(1), ..cfg.clone() };
    let (mut together, mut one_by_one) = (Vec::new(), Vec::new());
    let mut generated = (0usize, 0usize);
    for _ in 0..repeats {
        for batch in [true, false] {
            let c = RolloutConfig { batch, ..pass_cfg.clone() };
            let t0 = Instant::now();
            let h = rollout::start(sample.clone(), dir.clone(), c, Box::new(|| {}));
            let mut toks = 0;
            loop {
                let Some(e) = h.recv_timeout(Duration::from_secs(60)) else { panic!("no event in 60 s") };
                match e {
                    RolloutEvent::TurnFinished { record, .. } => toks += record.timings.generated_tokens.unwrap_or(0) as usize,
                    RolloutEvent::Failed { message, .. } => panic!("{message}"),
                    RolloutEvent::Done { .. } => break,
                    _ => {}
                }
            }
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            if batch {
                together.push(ms);
                generated.0 = toks;
            } else {
                one_by_one.push(ms);
                generated.1 = toks;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    let (gl, pl, vl) = (median(gen_last), median(prefill_last), median(vision_last));
    println!("rollout on tiny_tied (cpu), fork of {} at turn {}, {repeats} repeats (medians):", parent.id, parent.turns.len() - 1);
    println!("  start → first token event      {:>9.1} ms  (device probe, load, 5 kept turns executed, prefill incl. 6 images)", median(first_token));
    println!("  executor per kept turn          {:>9.2} ms  (parse + merge + render one observation)", median(exec_kept));
    println!("  generation of the last turn     {gl:>9.1} ms  ({gen_tokens} tokens), of which:");
    println!("    vision tower (6 images)       {vl:>9.1} ms");
    println!("    rest of the prefill           {:>9.1} ms  (the whole conversation's text, first time on this model)", pl - vl);
    println!("    decoding                      {:>9.1} ms", gl - pl);
    println!("  whole run                       {:>9.1} ms", median(total));
    println!("pass@{n}, one turn of {tokens} tokens at T=1 (load and first prefill included):");
    println!("  generated together (batched)    {:>9.1} ms  ({} tokens)", median(together), generated.0);
    println!("  one after the other             {:>9.1} ms  ({} tokens)", median(one_by_one), generated.1);
}
