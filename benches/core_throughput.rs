//! Core throughput benchmark (plain `main`, `harness = false`): ViLaSR RL scoring, ViLaVT RL
//! scoring and ViLaSR observation rendering (parse + merge + draw per response), single-threaded,
//! best of several runs, in items per second.
//!
//! It first generates a deterministic corpus (fixed seeds, no randomness from the machine) and
//! writes it to `target/bench-corpus/` — `vilasr_rl.json`, `vilavt_rl.json`, `render.json` and the
//! input PNGs — so that `tools/bench_reference.py` can run the reference Python functions on
//! exactly the same inputs. It also writes `rust_outputs.json` (every score and the SHA-256 of every
//! rendered observation, for the Python side to cross-check) and `rust_results.json` (throughput).
//!
//! Run with `cargo bench --no-default-features --bench core_throughput` (options after `--`:
//! `--runs N`, `--out DIR`, `--quick` for a 10× smaller corpus, `--only vilasr|vilavt|render` to run one
//! workload alone for `perf record`), or use `tools/bench_core.sh` to
//! run both sides in one go.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sightline::core::actions::{parse_actions, BlockMode};
use sightline::core::executor::{execute_response, AnnotationState, ExecutorFixes, Profile, StepOutcome};
use sightline::core::prompts::{
    render_chat, vilasr_first_prompt, vilasr_observation_turn, vilavt_first_prompt, vilavt_tool_response, Message, NewImage,
    QuestionSpec, VilasrPromptStyle,
};
use sightline::core::rewards::{vilasr, vilavt};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Corpus generator version; bump when the generated inputs change.
const GENERATOR: &str = "sightline core_throughput corpus v1";
const SEED_VILASR: u64 = 0x5EED_0001;
const SEED_VILAVT: u64 = 0x5EED_0002;
const SEED_RENDER: u64 = 0x5EED_0003;

// ---------------------------------------------------------------------------------------------
// Deterministic generator
// ---------------------------------------------------------------------------------------------

/// splitmix64: tiny, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "the", "chair", "is", "left", "of", "table", "and", "closer", "to", "camera", "I", "need", "to", "check", "distance",
    "between", "sofa", "window", "door", "lamp", "so", "let", "me", "mark", "them", "first", "then", "compare", "their",
    "positions", "in", "image", "frame", "appears", "behind", "bed", "which", "means", "path", "goes", "around", "wall",
    "box", "seems", "slightly", "off", "adjust", "it", "now", "looks", "right", "relative", "size", "suggests", "about",
    "meters", "from", "view", "direction", "rotate", "forward", "corner", "shelf", "counter", "refrigerator", "plant",
];

const OBJECTS: &[&str] = &[
    "chair", "table", "sofa", "window", "door", "lamp", "bed", "tv", "shelf", "plant", "refrigerator", "sink", "toilet",
    "monitor", "backpack", "red cup", "blue chair", "wooden table", "ceiling light", "trash can", "picture frame",
];

fn words(rng: &mut Rng, lo: i64, hi: i64) -> String {
    let n = rng.range(lo, hi);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
    }
    s.push('.');
    s
}

fn label(rng: &mut Rng, k: usize) -> String {
    if rng.chance(70) {
        rng.pick(OBJECTS).to_string()
    } else {
        format!("{} {}", rng.pick(OBJECTS), k + 1)
    }
}

/// A box item as the models write them (Python-literal-compatible JSON).
fn box_item(rng: &mut Rng, index: i64, w: i64, h: i64, label: &str) -> String {
    let x1 = rng.range(0, w - 40);
    let y1 = rng.range(0, h - 40);
    let x2 = rng.range(x1 + 20, w - 1);
    let y2 = rng.range(y1 + 20, h - 1);
    format!("{{\"index\": {index}, \"bbox_2d\": [{x1}, {y1}, {x2}, {y2}], \"label\": \"{label}\"}}")
}

fn line_item(rng: &mut Rng, index: i64, w: i64, h: i64, label: &str) -> String {
    let (xs, ys, xe, ye) = (rng.range(0, w - 1), rng.range(0, h - 1), rng.range(0, w - 1), rng.range(0, h - 1));
    format!("{{\"index\": {index}, \"start_point_2d\": [{xs}, {ys}], \"end_point_2d\": [{xe}, {ye}], \"label\": \"{label}\"}}")
}

fn json_block(items: &[String]) -> String {
    format!("```json\n[\n    {}\n]\n```", items.join(",\n    "))
}

struct ScoreItem {
    sequence: String,
    ground_truth: String,
    question_type: String,
    data_type: String,
}

fn mc_options() -> Vec<String> {
    ["A. chair", "B. table", "C. sofa", "D. lamp"].iter().map(|s| s.to_string()).collect()
}

/// One ViLaSR RL answer and its ground truth for a question type.
fn answer_pair(rng: &mut Rng, qtype: &str) -> (String, String) {
    match qtype {
        "multiple choice" => {
            let gt = rng.pick(&["A", "B", "C", "D"]).to_string();
            let out = match rng.range(0, 9) {
                0..=4 => gt.clone(),
                5..=6 => rng.pick(&["A", "B", "C", "D"]).to_string(),
                7 => format!("{gt}. chair"),
                _ => format!("The answer is {gt}"),
            };
            (out, gt)
        }
        _ => {
            let gt = rng.range(5, 5000) as f64 / 10.0;
            let out = match rng.range(0, 9) {
                0..=2 => format!("{gt}"),
                3..=7 => format!("{:.1}", gt * (0.5 + rng.range(0, 100) as f64 / 100.0)),
                8 => format!("about {:.0} meters", gt),
                _ => "1,200".to_string(),
            };
            (out, format!("{gt}"))
        }
    }
}

/// ~2,000 decoded ViLaSR RL sequences: the real first prompt, 1–5 tool turns with boxes and lines
/// and the real observation turns, an answer turn; ~12% malformed in various ways.
fn gen_vilasr(n: usize) -> Vec<ScoreItem> {
    let mut rng = Rng(SEED_VILASR);
    let opts = mc_options();
    let mut out = Vec::with_capacity(n);
    for qi in 0..n {
        let qtype = *rng.pick(&["multiple choice", "multiple choice", "numerical", "regression"]);
        let data_type = *rng.pick(&["vqa", "vqa", "maze", "video", "spatial_r1"]);
        let num_images = if matches!(data_type, "video" | "spatial_r1") { 16 } else { 1 };
        let (w, h) = *rng.pick(&[(448u32, 448u32), (616, 616), (640, 476)]);
        let question = format!("Question {qi}: {}", words(&mut rng, 8, 25));
        let spec = QuestionSpec {
            question: &question,
            question_type: qtype,
            options: if qtype == "multiple choice" { Some(Some(&opts)) } else { None },
            data_type,
            original_question_type: None,
            num_images,
            first_size: (w, h),
        };
        let mut seq = vilasr_first_prompt(VilasrPromptStyle::Rl, &spec).expect("first prompt");
        let turns = rng.range(1, 5) as usize;
        let mut prev_labels: Vec<(String, String)> = Vec::new(); // (label, box text) for reflection
        let malformed = if rng.chance(12) { rng.range(1, 7) } else { 0 };
        // `images`: images in the conversation before this turn (inputs, then one per tool turn).
        for (t, images) in (0..turns).zip(num_images..) {
            let index = if rng.chance(70) { images as i64 } else { rng.range(1, images as i64) };
            let mut items = Vec::new();
            let lines_turn = rng.chance(30);
            let k = rng.range(1, 4) as usize;
            for j in 0..k {
                if lines_turn {
                    let l = format!("path {}", j + 1);
                    items.push(line_item(&mut rng, index, w as i64, h as i64, &l));
                } else {
                    let l = if !prev_labels.is_empty() && rng.chance(30) {
                        rng.pick(&prev_labels).0.clone()
                    } else {
                        label(&mut rng, j)
                    };
                    let b = box_item(&mut rng, index, w as i64, h as i64, &l);
                    prev_labels.push((l, b.clone()));
                    items.push(b);
                }
            }
            if malformed == 1 && t == 0 {
                items.push("{\"index\": 1, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"x\", \"visible\": true}".into());
            }
            let action = if lines_turn { "Path Tracer" } else { "Object Mapper" };
            let lead = if malformed == 2 && t == 0 { " " } else { "" };
            let mut resp = format!("{lead}<think> {} </think> Action: {action}\n{}", words(&mut rng, 20, 90), json_block(&items));
            if malformed == 3 && t == turns - 1 {
                resp.push_str("\n<answer>too early</answer>");
            }
            if malformed == 4 && t == 0 {
                // An unterminated block with a Python comment: literal_eval still fails on the tail.
                resp = format!("<think> {} </think> Action: {action}\n```json\n[  # boxes\n    {}\n", words(&mut rng, 10, 30), items.join(",\n    "));
            }
            seq.push_str(&resp);
            let new = [NewImage { number: images + 1, width: w, height: h }];
            seq.push_str(&vilasr_observation_turn(&new, images, 42, false, false).text);
        }
        let (ans, gt) = answer_pair(&mut rng, qtype);
        let answer_turn = match malformed {
            5 => format!("<think> {} </think> Action: Answer\n{ans}", words(&mut rng, 10, 40)),
            6 => format!("<think> {} </think> Action: Answer\n<answer>{ans}</answ", words(&mut rng, 10, 40)),
            7 => format!("<think> {} </think> Action: Answer\n<answer>{ans}</answer>", words(&mut rng, 10, 40)),
            _ => format!("<think> {} </think> Action: Answer\n<answer>{ans}</answer>", words(&mut rng, 10, 40)),
        };
        seq.push_str(&answer_turn);
        if malformed != 7 {
            seq.push_str("<|im_end|>");
        }
        out.push(ScoreItem { sequence: seq, ground_truth: gt, question_type: qtype.into(), data_type: data_type.into() });
    }
    out
}

/// ~1,000 decoded ViLaVT RL sequences: real first prompt, 0–3 `<tool>` zoom-in turns with tool
/// responses, an answer turn; mixed question types; ~12% malformed.
fn gen_vilavt(n: usize) -> Vec<ScoreItem> {
    let mut rng = Rng(SEED_VILAVT);
    let mut out = Vec::with_capacity(n);
    for qi in 0..n {
        let qtype = *rng.pick(&["multiple choice", "multiple choice", "numerical", "regression", "judgment", "math"]);
        let data_type = *rng.pick(&["spar", "vsi", "vqa"]);
        let num_images = *rng.pick(&[1usize, 1, 4, 8]);
        let (w, h) = *rng.pick(&[(448u32, 448u32), (616, 616), (640, 476)]);
        let mut question = format!("Question {qi}: {}", words(&mut rng, 8, 25));
        if qtype == "multiple choice" {
            question.push_str("\nA. chair\nB. table\nC. sofa\nD. lamp");
        }
        let mut seq = vilavt_first_prompt(num_images, (w, h), &question).expect("first prompt");
        let turns = rng.range(0, 3) as usize;
        let malformed = if rng.chance(12) { rng.range(1, 6) } else { 0 };
        let mut images = num_images;
        for t in 0..turns {
            let regions = rng.range(1, 3);
            let mut rs = Vec::new();
            for _ in 0..regions {
                let idx = rng.range(0, images as i64 - 1);
                let x1 = rng.range(0, w as i64 - 60);
                let y1 = rng.range(0, h as i64 - 60);
                let (x2, y2) = (rng.range(x1 + 28, w as i64), rng.range(y1 + 28, h as i64));
                let (x1, x2) = if malformed == 1 && t == 0 { (x2, x1) } else { (x1, x2) };
                rs.push(format!("{{\"index\": {idx}, \"bbox_2d\": [{x1}, {y1}, {x2}, {y2}]}}"));
            }
            let query = rng.pick(OBJECTS).to_string();
            let mut tool = format!("{{\"region\": [{}], \"query\": \"{query}\"}}", rs.join(", "));
            if malformed == 2 && t == 0 {
                tool = tool.replace('"', "'");
            }
            if malformed == 3 && t == 0 {
                tool = format!("{{\"region\": [{}]}}", rs.join(", "));
            }
            let open = if malformed == 4 && t == 0 { "" } else { "<think>" };
            seq.push_str(&format!("{open} {} </think>\n<tool> {tool} </tool><|im_end|>\n", words(&mut rng, 20, 80)));
            let zooms: Vec<(usize, u32, u32)> = (0..regions as usize).map(|r| (images + r, rng.range(112, 600) as u32, rng.range(112, 600) as u32)).collect();
            images += regions as usize;
            let msg = Message { role: "user".into(), content: vilavt_tool_response(&zooms, t + 1 == 3) };
            let chat = render_chat(&[msg], true);
            // render_chat adds a default system turn; drop it.
            let chat = &chat[chat.find("<|im_start|>user").expect("user turn")..];
            seq.push_str(chat);
        }
        let (ans, gt) = match qtype {
            "judgment" => {
                let gt = rng.pick(&["Yes", "No"]).to_string();
                (rng.pick(&["Yes", "No", "yes, it is", "No. The chair is farther."]).to_string(), gt)
            }
            "math" => {
                let gt = format!("{}", rng.range(1, 99));
                let out = if rng.chance(50) { gt.clone() } else { format!("\\boxed{{{}}}", rng.range(1, 99)) };
                (out, gt)
            }
            "numerical" | "regression" => {
                let gt = rng.range(5, 5000) as f64 / 10.0;
                let out = if rng.chance(40) { format!("{gt}") } else { format!("{:.2}", gt * (0.5 + rng.range(0, 100) as f64 / 100.0)) };
                (out, format!("{gt}"))
            }
            _ => {
                let gt = rng.pick(&["A", "B", "C", "D"]).to_string();
                (if rng.chance(60) { gt.clone() } else { format!("{}. table", rng.pick(&["A", "B", "C", "D"])) }, gt)
            }
        };
        match malformed {
            5 => seq.push_str(&format!("<think> {} </think>\n<answer>{ans}", words(&mut rng, 10, 40))),
            6 => seq.push_str(&format!("<think> {} </think> <think>\n<answer>{ans}</answer><|im_end|>\n", words(&mut rng, 10, 40))),
            _ => seq.push_str(&format!("<think> {} </think>\n<answer>{ans}</answer><|im_end|>\n", words(&mut rng, 10, 40))),
        }
        out.push(ScoreItem { sequence: seq, ground_truth: gt, question_type: qtype.into(), data_type: data_type.into() });
    }
    out
}

struct RenderStep {
    input: usize,
    responses: Vec<String>,
}

/// Input images: 4 at 448×448 and 4 at 616×616, a smooth pattern with some structure.
fn gen_inputs() -> Vec<image::RgbImage> {
    (0..8u32)
        .map(|k| {
            let s = if k < 4 { 448 } else { 616 };
            image::RgbImage::from_fn(s, s, |x, y| {
                let checker = (((x / 37) + (y / 53) + k) % 3) as u8 * 40;
                image::Rgb([(x * 255 / s) as u8 ^ (k as u8 * 17), (y * 255 / s) as u8, checker.wrapping_add(((x + y) % 97) as u8)])
            })
        })
        .collect()
}

/// ~500 rendering steps: 1–3 responses each, 2–8 boxes and 0–3 lines per response (one
/// ```` ```json ```` block per tool), labels reused across turns; ~10% of responses touch two
/// images (two observations).
fn gen_render(n: usize, inputs: &[image::RgbImage]) -> Vec<RenderStep> {
    let mut rng = Rng(SEED_RENDER);
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let input = rng.range(0, inputs.len() as i64 - 1) as usize;
        let (w, h) = (inputs[input].width() as i64, inputs[input].height() as i64);
        let turns = rng.range(1, 3) as usize;
        let mut images = 1i64;
        let mut labels: Vec<String> = Vec::new();
        let mut responses = Vec::new();
        for _ in 0..turns {
            let two = images > 1 && rng.chance(10);
            let index = if rng.chance(80) { images } else { rng.range(1, images) };
            let nb = rng.range(2, 8) as usize;
            let nl = rng.range(0, 3) as usize;
            let mut boxes = Vec::new();
            for j in 0..nb {
                let idx = if two && j % 2 == 1 { 1 } else { index };
                let l = if !labels.is_empty() && rng.chance(35) { rng.pick(&labels).clone() } else { label(&mut rng, j) };
                labels.push(l.clone());
                boxes.push(box_item(&mut rng, idx, w, h, &l));
            }
            let mut resp = format!("<think> {} </think> Action: Object Mapper\n{}", words(&mut rng, 20, 80), json_block(&boxes));
            if nl > 0 {
                let lines: Vec<String> = (0..nl).map(|j| line_item(&mut rng, index, w, h, &format!("route {}", j + 1))).collect();
                resp.push_str(&format!("\n<think> {} </think> Action: Path Tracer\n{}", words(&mut rng, 10, 40), json_block(&lines)));
            }
            let groups = if two && index != 1 { 2 } else { 1 };
            images += groups;
            responses.push(resp);
        }
        steps.push(RenderStep { input, responses });
    }
    steps
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

fn score_vilasr(items: &[ScoreItem]) -> Vec<Value> {
    items
        .iter()
        .map(|it| match vilasr::rl_score(&it.sequence, &it.ground_truth, &it.question_type) {
            Ok(r) => json!([r.overall, r.format, r.accuracy, r.reflection.unwrap_or(0.0)]),
            Err(_) => Value::Null,
        })
        .collect()
}

fn score_vilavt(items: &[ScoreItem]) -> Vec<Value> {
    items
        .iter()
        .map(|it| match vilavt::rl_score(&it.sequence, &it.ground_truth, &it.question_type) {
            Ok(r) => json!([r.overall, r.format, r.accuracy]),
            Err(_) => Value::Null,
        })
        .collect()
}

/// Execute every response of every step (the executor core of `process_single_response`); calls
/// `sink` with each new observation. `pools[k]` starts as `[input k]`; a step appends its
/// observations and truncates back afterwards, so the input itself is never copied (the Python
/// side likewise starts each step from the loaded input object).
fn render_all(steps: &[RenderStep], pools: &mut [Vec<image::RgbImage>], mut sink: impl FnMut(usize, usize, &image::RgbImage)) -> usize {
    let mut responses = 0;
    for (si, step) in steps.iter().enumerate() {
        let images = &mut pools[step.input];
        let mut state = AnnotationState::for_inputs(1);
        for (ri, resp) in step.responses.iter().enumerate() {
            let report = execute_response(resp, images, &mut state, Profile::Eval, ExecutorFixes::default());
            responses += 1;
            if let StepOutcome::Observations(obs) = report.outcome {
                for o in obs {
                    sink(si, ri, &o.image);
                    images.push(o.image);
                }
            }
        }
        black_box(&images);
        images.truncate(1);
    }
    responses
}

/// Best (shortest) wall time of `runs` runs of `f`, in seconds.
fn best_of<R>(runs: usize, mut f: impl FnMut() -> R) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).expect("json")).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let quick = args.iter().any(|a| a == "--quick");
    let runs: usize = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(7);
    let out: PathBuf = arg("--out").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("bench-corpus")
    });
    let scale = if quick { 10 } else { 1 };
    // `--only KEY` (vilasr | vilavt | render): run just that workload `runs` times and nothing
    // else (no files written) — for `perf record`.
    let only = arg("--only");

    // --- corpus ---
    let t = Instant::now();
    let sr = gen_vilasr(2000 / scale);
    let vt = gen_vilavt(1000 / scale);
    let inputs = gen_inputs();
    let steps = gen_render(500 / scale, &inputs);
    if let Some(only) = only {
        let t = match only.as_str() {
            "vilasr" => best_of(runs, || score_vilasr(&sr)) / sr.len() as f64,
            "vilavt" => best_of(runs, || score_vilavt(&vt)) / vt.len() as f64,
            "render" => {
                let mut pools: Vec<Vec<image::RgbImage>> = inputs.iter().map(|im| vec![im.clone()]).collect();
                best_of(runs, || render_all(&steps, &mut pools, |_, _, im| { black_box(im); })) / steps.iter().map(|s| s.responses.len()).sum::<usize>() as f64
            }
            other => panic!("--only {other}: expected vilasr, vilavt or render"),
        };
        println!("{only} alone in a fresh process: best {:.1} µs per item = {:.0} items/s (best of {runs})", t * 1e6, 1.0 / t);
        return;
    }
    std::fs::create_dir_all(&out).expect("create corpus dir");
    let mut input_files = Vec::new();
    for (k, im) in inputs.iter().enumerate() {
        let name = format!("render_input_{k}_{}x{}.png", im.width(), im.height());
        im.save(out.join(&name)).expect("save input png");
        input_files.push(name);
    }
    let score_json = |items: &[ScoreItem]| -> Value {
        json!({
            "generator": GENERATOR,
            "items": items.iter().map(|i| json!({
                "sequence": i.sequence, "ground_truth": i.ground_truth,
                "question_type": i.question_type, "data_type": i.data_type,
            })).collect::<Vec<_>>(),
        })
    };
    write_json(&out.join("vilasr_rl.json"), &score_json(&sr));
    write_json(&out.join("vilavt_rl.json"), &score_json(&vt));
    write_json(
        &out.join("render.json"),
        &json!({
            "generator": GENERATOR,
            "inputs": input_files,
            "steps": steps.iter().map(|s| json!({"input": s.input, "responses": s.responses})).collect::<Vec<_>>(),
        }),
    );
    let n_resp: usize = steps.iter().map(|s| s.responses.len()).sum();
    let bytes_sr: usize = sr.iter().map(|i| i.sequence.len()).sum();
    let bytes_vt: usize = vt.iter().map(|i| i.sequence.len()).sum();
    println!(
        "corpus: {} ViLaSR sequences ({:.1} KiB avg), {} ViLaVT sequences ({:.1} KiB avg), {} render steps / {} responses; generated in {:.2?} -> {}",
        sr.len(),
        bytes_sr as f64 / sr.len() as f64 / 1024.0,
        vt.len(),
        bytes_vt as f64 / vt.len() as f64 / 1024.0,
        steps.len(),
        n_resp,
        t.elapsed(),
        out.display()
    );

    // --- outputs for cross-checking (untimed) ---
    let sr_out = score_vilasr(&sr);
    let vt_out = score_vilavt(&vt);
    let mut hashes: Vec<Vec<Vec<String>>> = steps.iter().map(|s| vec![Vec::new(); s.responses.len()]).collect();
    let mut observations = 0usize;
    let mut pools: Vec<Vec<image::RgbImage>> = inputs.iter().map(|im| vec![im.clone()]).collect();
    render_all(&steps, &mut pools, |si, ri, im| {
        hashes[si][ri].push(format!("{:x}", Sha256::digest(im.as_raw())));
        observations += 1;
    });
    write_json(&out.join("rust_outputs.json"), &json!({"vilasr_rl": sr_out, "vilavt_rl": vt_out, "render_sha256": hashes}));

    // --- timing ---
    let t_sr = best_of(runs, || score_vilasr(&sr));
    let t_vt = best_of(runs, || score_vilavt(&vt));
    let t_render = best_of(runs, || render_all(&steps, &mut pools, |_, _, im| {
        black_box(im);
    }));
    // Sub-steps, to see where the time goes.
    let t_sr_parse = best_of(runs, || sr.iter().map(|i| vilasr::parse_dialog(&i.sequence).map(|c| c.len()).unwrap_or(0)).sum::<usize>());
    let t_render_parse = best_of(runs, || {
        steps.iter().flat_map(|s| s.responses.iter()).map(|r| parse_actions(r, BlockMode::Executor).map(|p| p.boxes.len()).unwrap_or(0)).sum::<usize>()
    });
    let t_clone = best_of(runs, || {
        // The image copies alone: one base-image copy (allocation + memcpy) per response.
        let mut n = 0;
        for s in &steps {
            for _ in 0..s.responses.len() {
                n += black_box(inputs[s.input].clone()).len();
            }
        }
        n
    });

    let rows = [
        ("vilasr_rl_score", "ViLaSR RL scoring", "conversations", sr.len(), t_sr),
        ("vilavt_rl_score", "ViLaVT RL scoring", "conversations", vt.len(), t_vt),
        ("render", "Rendering (parse+merge+draw)", "responses", n_resp, t_render),
    ];
    println!("\nsingle-threaded, best of {runs} runs");
    println!("{:<30} {:>8} {:<14} {:>12} {:>14}", "workload", "items", "unit", "best (ms)", "items/s");
    for (_, name, unit, n, t) in rows {
        println!("{name:<30} {n:>8} {unit:<14} {:>12.2} {:>14.0}", t * 1e3, n as f64 / t);
    }
    println!("  sub-step: ViLaSR parse_dialog only      {:>10.0} conversations/s", sr.len() as f64 / t_sr_parse);
    println!("  sub-step: executor action parsing only  {:>10.0} responses/s", n_resp as f64 / t_render_parse);
    println!("  sub-step: one base-image copy per response {:>7.0} responses/s", n_resp as f64 / t_clone);
    println!("  ({observations} observation images drawn per render pass)");

    let results = json!({
        "side": "rust",
        "generator": GENERATOR,
        "runs": runs,
        "quick": quick,
        "results": rows.iter().map(|(key, name, unit, n, t)| json!({
            "key": key, "name": name, "unit": unit, "items": n, "best_s": t, "items_per_s": *n as f64 / t,
        })).collect::<Vec<_>>(),
        "sub_steps": {
            "vilasr_parse_dialog_per_s": sr.len() as f64 / t_sr_parse,
            "render_action_parse_per_s": n_resp as f64 / t_render_parse,
            "render_image_copies_per_s": n_resp as f64 / t_clone,
        },
        "render_observations": observations,
    });
    write_json(&out.join("rust_results.json"), &results);
    println!("results -> {}", out.join("rust_results.json").display());
}
