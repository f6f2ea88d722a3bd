//! Model-layer speed on the CPU (`flex`, f32; plain `main`, `harness = false`) for the ~44M
//! `bench-44m` configuration: prefill of a 512-token text prompt, 128 greedy decode steps on the
//! KV cache, n conversations decoded together against one after the other (`--batch N`, default
//! 4), and the vision tower on one 448×448 image, each on both paths; median of repeats, peak RSS.
//!
//! `cargo bench --bench model` (random weights), or `-- --model DIR` to load the checkpoint that
//! `tools/bench_torch.py --save DIR` wrote, so both sides run the same weights. Other options:
//! `--prefill N`, `--decode N`, `--image SIDE` (0 skips the vision tower), `--repeats R`,
//! `--paths both|kernels|burn` (the host decoder on the CPU kernels, burn's decoder, or both,
//! alternated round by round). Threads: the flex backend's rayon pool (`RAYON_NUM_THREADS`,
//! default one per core).

use burn::backend::Flex;
use burn::tensor::DType;
use sightline::model::config::Qwen25VlConfig;
use sightline::model::generate::argmax;
use sightline::model::loader::load_model;
use sightline::model::preprocess::{preprocess_image, PreprocessConfig};
use sightline::model::qwen::{ModelInput, Qwen25Vl};
use sightline::model::text::KvCache;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `min–max` of the runs, to show the spread beside a median.
fn spread(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.3}–{hi:.3} s")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let prefill_n: usize = arg("--prefill").and_then(|v| v.parse().ok()).unwrap_or(512);
    let decode_n: usize = arg("--decode").and_then(|v| v.parse().ok()).unwrap_or(128);
    let side: u32 = arg("--image").and_then(|v| v.parse().ok()).unwrap_or(448);
    let repeats: usize = arg("--repeats").and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let dev = Default::default();
    let t = Instant::now();
    let mut model: Qwen25Vl<Flex> = match arg("--model") {
        Some(dir) => load_model::<Flex>(std::path::Path::new(&dir), &dev, DType::F32).unwrap_or_else(|e| panic!("{e}")),
        None => Qwen25Vl::random(Qwen25VlConfig::bench_44m(), dev, DType::F32),
    };
    let cfg = model.cfg.clone();
    println!("bench-44m: text hidden {} × {} layers, vocab {}; vision depth {}, hidden {}", cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.vocab_size, cfg.vision.depth, cfg.vision.hidden_size);
    println!("load/init: {:.2} s, threads: {}", t.elapsed().as_secs_f64(), std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| format!("{} (cores)", std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1))));

    // A deterministic text prompt (ids below the special tokens).
    let ids: Vec<u32> = (0..prefill_n as u64).map(|i| ((i * 7919 + 13) % (cfg.text.vocab_size as u64 - 8)) as u32).collect();
    let input = ModelInput { ids, ..Default::default() };
    let layers = cfg.text.num_hidden_layers;
    // Both decoders (the host one on the CPU kernels, and burn's) alternated round by round, so
    // that both see the same machine; `--paths kernels|burn` runs one.
    let paths: Vec<bool> = match arg("--paths").as_deref() {
        Some("kernels") => vec![true],
        Some("burn") => vec![false],
        _ => vec![true, false],
    };
    let mut prefills: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut cache = KvCache::new(layers);
    let mut logits = Vec::new();
    let mut delta = 0;
    for round in 0..=repeats {
        for (pi, &kernels) in paths.iter().enumerate() {
            model.set_host_kernels(kernels);
            cache = KvCache::new(layers);
            let t = Instant::now();
            let (out, d) = model.prefill(&input, &mut cache, false, false).unwrap();
            if round > 0 {
                prefills[pi].push(t.elapsed().as_secs_f64()); // round 0 warms up
            }
            logits = out.logits;
            delta = d;
        }
    }
    let rows: usize = arg("--batch").and_then(|v| v.parse().ok()).unwrap_or(4).max(1);
    let steps = (decode_n / 4).max(1);
    let first = argmax(&logits) as u32;
    let mut single: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut together: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut apart: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut names = vec![String::new(); paths.len()];
    for _round in 0..repeats.min(3) {
        for (pi, &kernels) in paths.iter().enumerate() {
            model.set_host_kernels(kernels);
            names[pi] = match model.host_kernels() {
                Some(k) => format!("host decoder on the CPU kernels, {:?} weights ({:.0} MB packed)", k.storage(), k.bytes() as f64 / 1e6),
                None => "burn decoder".to_string(),
            };
            let mut c = cache.clone();
            let mut tok = first;
            let t = Instant::now();
            for _ in 0..decode_n {
                let l = model.decode_step(tok, delta, &mut c).unwrap();
                tok = argmax(&l) as u32;
            }
            single[pi].push(t.elapsed().as_secs_f64());
            // n conversations decoded together (one batched step feeds a token to each) against
            // the same n decoded one after the other, from the same cached prompt.
            let t = Instant::now();
            let mut caches: Vec<KvCache<Flex>> = (0..rows).map(|_| cache.clone()).collect();
            let mut toks = vec![first; rows];
            for _ in 0..steps {
                let mut refs: Vec<&mut KvCache<Flex>> = caches.iter_mut().collect();
                let out = model.decode_rows(&toks, &vec![delta; rows], &mut refs).unwrap();
                toks = out.iter().map(|l| argmax(l) as u32).collect();
            }
            together[pi].push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..rows {
                let mut c = cache.clone();
                let mut tok = first;
                for _ in 0..steps {
                    tok = argmax(&model.decode_step(tok, delta, &mut c).unwrap()) as u32;
                }
            }
            apart[pi].push(t.elapsed().as_secs_f64());
        }
    }
    let total = (rows * steps) as f64;
    for pi in 0..paths.len() {
        let d = median(single[pi].clone());
        let (b, o) = (median(together[pi].clone()), median(apart[pi].clone()));
        let p = median(prefills[pi].clone());
        println!("[{}]:", names[pi]);
        println!("  prefill {prefill_n} tokens: median {:.3} s ({:.0} tokens/s; runs {})", p, prefill_n as f64 / p, spread(&prefills[pi]));
        println!("  {decode_n} tokens after the prompt: median {:.3} s ({:.1} ms/token, {:.1} tokens/s; runs {})", d, d * 1000.0 / decode_n as f64, decode_n as f64 / d, spread(&single[pi]));
        println!(
            "  {rows} conversations × {steps} tokens: batched {:.3} s ({:.1} tokens/s), one after the other {:.3} s ({:.1} tokens/s), speed-up {:.2}×",
            b,
            total / b,
            o,
            total / o,
            o / b
        );
    }
    model.set_host_kernels(true);
    println!("peak RSS after prefill and decoding {:.0} MB", peak_rss_mb());

    if side == 0 {
        return; // `--image 0`: text model only
    }
    // Vision tower on one image (deterministic noise, already a multiple of 28).
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let h = (x as u64).wrapping_mul(2654435761) ^ (y as u64).wrapping_mul(40503);
        image::Rgb([(h & 255) as u8, ((h >> 8) & 255) as u8, ((h >> 16) & 255) as u8])
    });
    let v = preprocess_image(&img, &cfg.vision, &PreprocessConfig::default()).unwrap();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 0..=repeats {
        for (pi, &kernels) in paths.iter().enumerate() {
            model.set_host_kernels(kernels);
            let t = Instant::now();
            let out = model.encode_vision(&[&v]).unwrap();
            let _ = sightline::model::layers::to_vec(out);
            if round > 0 {
                times[pi].push(t.elapsed().as_secs_f64()); // round 0 warms up
            }
        }
    }
    for (pi, t) in times.into_iter().enumerate() {
        println!("vision tower {side}×{side} ({} patches → {} tokens) [{}]: median {:.3} s (runs {})", v.grid.patches(), v.grid.tokens(2), names[pi], median(t.clone()), spread(&t));
    }
    println!("peak RSS {:.0} MB", peak_rss_mb());
}
