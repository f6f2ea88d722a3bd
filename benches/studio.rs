//! Studio benchmarks (plain `main`, `harness = false`, needs the `gui` feature):
//!
//! 1. Canvas frame time: a trajectory of 45 images (1 input + 44 observations) with 50 shapes on
//!    every image, the pointer sweeping over the shapes (hit tests and tooltips) and the steps
//!    changing every 10 frames. Each frame is the CPU work of the whole studio UI: layout of every
//!    panel plus tessellation of what is drawn (GPU submission excluded; the 2-core machine
//!    renders in software). Reports p50 / p95 / max over `--frames` frames (default 600).
//! 2. Open a 91,000-record LLaMA-Factory file and time until its first trajectory is on screen
//!    with its image decoded, frames stepped as eframe would.
//!
//! 3. Run → first token on screen: the Run window's Run on one demo image with the tiny parity
//!    checkpoint (`tests/fixtures/qwen25vl/tiny_tied`, CPU), timed from the click to the frame that
//!    first shows streamed text (model load, prompt, image encoding and prefill included).
//!
//! Run with `cargo bench --bench studio` (options after `--`: `--frames N`, `--records N`, `--runs N`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sightline::core::trajectory::{ActionKind, ActionRecord, ImageRef, Media, Observation, Protocol, Sample, Trajectory, Turn};
use sightline::ui::{StudioApp, StudioOptions};

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn raw_input(t: f64, pointer: Option<egui::Pos2>) -> egui::RawInput {
    let mut input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1440.0, 900.0))),
        time: Some(t),
        ..Default::default()
    };
    if let Some(p) = pointer {
        input.events.push(egui::Event::PointerMoved(p));
    }
    input
}

/// One frame: the studio UI plus tessellation; returns the CPU time.
fn frame(ctx: &egui::Context, app: &mut StudioApp, t: f64, pointer: Option<egui::Pos2>, keys: &[egui::Key]) -> Duration {
    let mut input = raw_input(t, pointer);
    for &key in keys {
        input.events.push(egui::Event::Key { key, physical_key: None, pressed: true, repeat: false, modifiers: Default::default() });
    }
    let t0 = Instant::now();
    let out = ctx.run_ui(input, |ui| app.ui(ui));
    let _prims = ctx.tessellate(out.shapes, out.pixels_per_point);
    t0.elapsed()
}

fn settle(ctx: &egui::Context, app: &mut StudioApp, t: &mut f64) {
    let t0 = Instant::now();
    while !app.is_idle() && t0.elapsed() < Duration::from_secs(120) {
        *t += 1.0 / 60.0;
        frame(ctx, app, *t, None, &[]);
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..3 {
        *t += 1.0 / 60.0;
        frame(ctx, app, *t, None, &[]);
    }
}

/// A 45-image trajectory folder with 50 shapes on every image.
fn heavy_trajectory(dir: &Path) {
    let (w, h) = (448u32, 336u32);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for n in 1..=45u32 {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, (n * 5) as u8]));
        img.save(images.join(format!("image-{n}.png"))).unwrap();
    }
    let sample = Sample {
        id: "heavy".into(),
        question: "A stress test: 45 images with 50 shapes each.".into(),
        question_type: "numerical".into(),
        data_type: "vqa".into(),
        media: Media::Images { images: vec![ImageRef::with_size("images/image-1.png", w, h)] },
        ..Default::default()
    };
    let mut t = Trajectory::new("heavy", Protocol::Vilasr, sample);
    let mut seed = 7u64;
    let mut rnd = |m: f64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64) * m
    };
    for k in 0..44u32 {
        // Turn k draws on image k+1 (the newest): 40 boxes on the first turn, then 1 new box and
        // 1 relabelled box per turn keep 40 boxes + 10 lines per image (lines re-labelled too).
        let mut actions = Vec::new();
        let count = if k == 0 { 40 } else { 2 };
        for b in 0..count {
            let (x, y) = (rnd(380.0), rnd(280.0));
            let label = if k == 0 { format!("object {b}") } else { format!("object {}", (k as usize * 2 + b) % 40) };
            actions.push(ActionRecord {
                kind: ActionKind::Box,
                index: Some(k as i64 + 1),
                bbox_2d: Some([x, y, x + 20.0 + rnd(40.0), y + 20.0 + rnd(40.0)]),
                start_point_2d: None,
                end_point_2d: None,
                label: Some(label.clone()),
                query: None,
                block: 0,
                raw: serde_json::json!({"index": k + 1, "label": label}),
            });
        }
        let lines = if k == 0 { 10 } else { 1 };
        for l in 0..lines {
            let label = format!("path {}", (k as usize + l) % 10);
            actions.push(ActionRecord {
                kind: ActionKind::Line,
                index: Some(k as i64 + 1),
                bbox_2d: None,
                start_point_2d: Some([rnd(448.0), rnd(336.0)]),
                end_point_2d: Some([rnd(448.0), rnd(336.0)]),
                label: Some(label.clone()),
                query: None,
                block: 0,
                raw: serde_json::json!({"index": k + 1, "label": label}),
            });
        }
        let text = format!("<think> step {k} </think> Action: Object Mapper\n```json\n[...]\n```");
        t.turns.push(Turn {
            assistant_text: text,
            actions,
            observations: vec![Observation { number: k + 2, drawn_on: k + 1, image: ImageRef::with_size(format!("images/image-{}.png", k + 2), w, h) }],
            ..Default::default()
        });
    }
    t.save_dir(dir).unwrap();
}

/// A LLaMA-Factory registry with `n` sharegpt records (the demo's records repeated), with a copy
/// of the demo's images.
fn big_dataset(dir: &Path, n: usize) -> PathBuf {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let src: serde_json::Value = serde_json::from_slice(&std::fs::read(demo.join("sft/cold_start/count.json")).unwrap()).unwrap();
    let recs = src.as_array().unwrap();
    let mut out = String::from("[\n");
    for i in 0..n {
        if i > 0 {
            out.push_str(",\n");
        }
        out.push_str(&serde_json::to_string(&recs[i % recs.len()]).unwrap());
    }
    out.push_str("\n]\n");
    std::fs::write(dir.join("big.json"), out).unwrap();
    // Images must lie inside the dataset root (a symlink out of it is refused): copy them.
    copy_dir(&demo.join("images"), &dir.join("images"));
    let info = serde_json::json!({"big": {"file_name": "big.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}}});
    std::fs::write(dir.join("dataset_info.json"), serde_json::to_string_pretty(&info).unwrap()).unwrap();
    dir.join("dataset_info.json")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let frames = arg("--frames").unwrap_or(600);
    let records = arg("--records").unwrap_or(91_000);
    let tmp = tempfile::tempdir().unwrap();

    // 1. Canvas frame time.
    let traj_dir = tmp.path().join("heavy");
    heavy_trajectory(&traj_dir);
    let ctx = egui::Context::default();
    let mut app = StudioApp::new(&ctx, None, StudioOptions { open: Some(traj_dir.clone()), screenshot: None, fresh: true });
    app.stable_status = true;
    let mut t = 0.0;
    settle(&ctx, &mut app, &mut t);
    let shapes_per_image = {
        let item = app.primary.as_ref().and_then(|p| p.item()).expect("heavy trajectory loaded");
        item.overlays.images.iter().map(|o| o.boxes.len() + o.lines.len()).max().unwrap_or(0)
    };
    let mut times = Vec::with_capacity(frames);
    for f in 0..frames {
        t += 1.0 / 60.0;
        // Sweep the pointer over the canvas area (right of the steps list).
        let x = 1000.0 + 300.0 * ((f as f32) * 0.05).sin();
        let y = 400.0 + 200.0 * ((f as f32) * 0.031).cos();
        let keys: &[egui::Key] = if f % 10 == 9 { &[egui::Key::ArrowRight] } else { &[] };
        if f % 440 == 439 {
            app.pane.set_step(0);
        }
        times.push(frame(&ctx, &mut app, t, Some(egui::pos2(x, y)), keys).as_secs_f64() * 1e3);
    }
    let max = times.iter().cloned().fold(0.0, f64::max);
    let (p50, p95) = (percentile(&mut times.clone(), 0.5), percentile(&mut times.clone(), 0.95));
    let (full, thumbs) = app.images.resident();
    println!(
        "canvas frame (45 images, {shapes_per_image} shapes per image, {frames} frames): p50 {p50:.2} ms, p95 {p95:.2} ms, max {max:.2} ms; textures resident {full} full + {thumbs} thumbnails"
    );

    // 2. Open a large dataset to the first trajectory on screen.
    let big = tmp.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let info = big_dataset(&big, records);
    let size = std::fs::metadata(big.join("big.json")).unwrap().len();
    println!("wrote {records} records ({:.1} MB)", size as f64 / 1e6);
    let ctx = egui::Context::default();
    let t0 = Instant::now();
    let mut app = StudioApp::new(&ctx, None, StudioOptions { open: Some(info), screenshot: None, fresh: true });
    let mut t = 0.0;
    let mut shown = None;
    while t0.elapsed() < Duration::from_secs(120) {
        t += 1.0 / 60.0;
        frame(&ctx, &mut app, t, None, &[]);
        if app.milestones.first_trajectory.is_some() && app.images.pending() == 0 && app.images.resident().0 > 0 {
            shown = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let Some(shown) = shown else {
        panic!(
            "first trajectory never shown: open error {:?}, opening {:?}, primary {}",
            app.open_error,
            app.opening,
            match &app.primary {
                None => "none".to_string(),
                Some(sightline::ui::ItemState::Loading(r)) => format!("loading {r}"),
                Some(sightline::ui::ItemState::Failed(r, e)) => format!("row {r} failed: {e}"),
                Some(sightline::ui::ItemState::Loaded(..)) => format!("loaded; images pending {} resident {:?}", app.images.pending(), app.images.resident()),
            }
        );
    };
    let rows = app.source.as_ref().map(|s| s.entries.len()).unwrap_or(0);
    let open_ms = app.source.as_ref().map(|s| s.open_ms).unwrap_or(0.0);
    println!(
        "open {rows} records ({:.1} MB): first trajectory with its image on screen after {:.0} ms (indexing {open_ms:.0} ms)",
        size as f64 / 1e6,
        shown.as_secs_f64() * 1e3
    );
    let t1 = Instant::now();
    while !app.summaries.done && t1.elapsed() < Duration::from_secs(300) {
        t += 1.0 / 60.0;
        frame(&ctx, &mut app, t, None, &[]);
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("all {rows} row summaries read {:.0} ms after opening (the browser is usable meanwhile)", t0.elapsed().as_secs_f64() * 1e3);

    // 3. Run -> first token on screen.
    let runs = arg("--runs").unwrap_or(5);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl/tiny_tied");
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/images/count-000000/input-1.png");
    let mut firsts = Vec::new();
    for r in 0..runs {
        let ws = tmp.path().join(format!("ws-{r}"));
        std::fs::create_dir_all(&ws).unwrap();
        let ctx = egui::Context::default();
        let mut app = StudioApp::new(&ctx, None, StudioOptions { open: Some(traj_dir.clone()), screenshot: None, fresh: true });
        let mut t = 0.0;
        settle(&ctx, &mut app, &mut t);
        app.run.model_dir = model.display().to_string();
        app.run.device = "cpu".into();
        app.run.max_new_tokens = "8".into();
        app.run.images = vec![image.clone()];
        app.run.question = "How many brown objects are in the image?".into();
        app.run.question_type = "numerical".into();
        let t0 = Instant::now();
        app.run.start(&ctx, Some(&ws));
        let mut first = None;
        while t0.elapsed() < Duration::from_secs(60) {
            t += 1.0 / 60.0;
            frame(&ctx, &mut app, t, None, &[]);
            if app.run.first_token.is_some() {
                first = Some(t0.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = first.unwrap_or_else(|| panic!("no token within 60 s: {:?} {:?}", app.run.error, app.run.status));
        firsts.push(first.as_secs_f64() * 1e3);
        app.run.stop();
    }
    let best = firsts.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("Run -> first token on screen (tiny checkpoint, CPU, 1 image): median {:.0} ms, best {best:.0} ms over {runs} runs", percentile(&mut firsts.clone(), 0.5));
}
