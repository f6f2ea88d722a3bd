//! Synthetic-world throughput (plain `main`, `harness = false`): how fast `sightline synth`
//! produces teacher trajectories.
//!
//! 1. Teacher only, one thread, per family: generate the scene and the teacher turns, run them
//!    through the executor and score them (no PNG encoding, no files).
//! 2. The full workspace, as `sightline synth --task all` writes it: N samples (default 10,000)
//!    over every family, on one worker per core, into a temporary folder — PNG encoding, RL
//!    jsonl, SFT files and trajectory folders included. Best of `--runs` runs (default 1).
//!
//! Run with `cargo bench --no-default-features --bench synth` (options after `--`: `--n N`,
//! `--threads T`, `--runs R`, `--per-family K` for part 1).

use sightline::synth::{self, Family, Settings, WorkspacePlan};
use std::time::Instant;

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn main() {
    let n = arg("--n").unwrap_or(10_000);
    let per_family = arg("--per-family").unwrap_or(1_000);
    let runs = arg("--runs").unwrap_or(1).max(1);
    let threads = arg("--threads").unwrap_or_else(|| std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1));
    let settings = Settings::default();

    println!("teacher only (generate + executor + RL reward), 1 thread, {per_family} samples per family:");
    let mut total = 0.0;
    for family in Family::ALL {
        let t = Instant::now();
        let mut images = 0usize;
        for i in 0..per_family {
            let (_, run) = synth::teacher_run(family, 1, i, &settings).expect("teacher trajectory");
            images += run.images.len();
        }
        let s = t.elapsed().as_secs_f64();
        total += s;
        println!(
            "  {:<9} {:>8.0} samples/s  ({:.2} ms per sample, {:.1} images per sample)",
            family.name(),
            per_family as f64 / s,
            1e3 * s / per_family as f64,
            images as f64 / per_family as f64
        );
    }
    println!("  all       {:>8.0} samples/s", (per_family * Family::ALL.len()) as f64 / total);

    println!("full workspace (sightline synth --task all --n {n}), {threads} threads, best of {runs}:");
    let mut best = f64::MAX;
    let mut summary = None;
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut plan = WorkspacePlan::new(None, n, 1, settings);
        plan.threads = threads;
        let t = Instant::now();
        let s = synth::write_workspace(dir.path(), &plan, &|_| {}).expect("workspace");
        best = best.min(t.elapsed().as_secs_f64());
        summary = Some(s);
    }
    let s = summary.expect("one run");
    println!(
        "  {} samples in {best:.1} s = {:.0} samples/s; {} files, {:.1} MB",
        s.samples,
        s.samples as f64 / best,
        s.files,
        s.bytes as f64 / 1e6
    );
}
