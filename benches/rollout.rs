//! Rollout-engine overheads on the tiny fixture checkpoint (CPU, `flex`; plain `main`,
//! `harness = false`): time from `rollout::start` to the first token event (device probe, model
//! load, first-prompt prefill with its image), and per turn the executor's parse + render cost
//! against generation (which includes prefilling the new observation image and its text) when a
//! 6-turn demo maze trajectory is forked at its last turn (5 kept turns re-executed and appended).
//!
//! `cargo bench --bench rollout` [`-- --repeats R --tokens N`]. The tiny model makes the model side
//! nearly free, so these numbers are the engine's own overhead, not a model benchmark.

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
    let _ = std::fs::remove_dir_all(&out);
    println!("rollout on tiny_tied (cpu), fork of {} at turn {}, {repeats} repeats (medians):", parent.id, parent.turns.len() - 1);
    println!("  start → first token event      {:>9.1} ms  (device probe, load, 5 kept turns executed, prefill incl. 6 images)", median(first_token));
    println!("  executor per kept turn          {:>9.2} ms  (parse + merge + render one observation)", median(exec_kept));
    println!("  generation of the last turn     {:>9.1} ms  ({gen_tokens} tokens, prefill of the whole conversation included)", median(gen_last));
    println!("  whole run                       {:>9.1} ms", median(total));
}
