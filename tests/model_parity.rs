//! Parity of the burn Qwen2.5-VL with Hugging Face transformers 4.57 on the tiny random checkpoints
//! in `tests/fixtures/qwen25vl/` (made by `tools/qwen_fixtures.py`): preprocessing, tokenisation
//! with pad expansion, M-RoPE position ids, vision tower outputs, every decoder layer, logits
//! (max |Δ| ≤ 1e-4) and greedy generation (identical tokens), for text-only, one-image,
//! two-image and video prompts, tied and untied embeddings.
#![cfg(feature = "model")]

use burn::backend::Flex;
use burn::tensor::DType;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use sightline::model::generate::{SamplingParams, Session};
use sightline::model::loader::load_model;
use sightline::model::preprocess::{preprocess_image, preprocess_video, PreprocessConfig, VisionInput};
use sightline::model::qwen::{ModelInput, Qwen25Vl};
use sightline::model::rope::{get_rope_index, window_index, GridThw, VideoTime};
use sightline::model::text::KvCache;
use sightline::model::tokenizer::QwenTokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LOGIT_TOL: f32 = 1e-4;

fn fix() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl")
}

struct Tensor {
    shape: Vec<usize>,
    f: Vec<f32>,
    i: Vec<i64>,
}

fn read_case(file: &Path) -> HashMap<String, Tensor> {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = HashMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let (f, i) = match v.dtype() {
            Dtype::F32 => (d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), vec![]),
            Dtype::I64 => (vec![], d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()),
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        out.insert(name.to_string(), Tensor { shape: v.shape().to_vec(), f, i });
    }
    out
}

struct Case {
    name: String,
    model: String,
    meta: Value,
    t: HashMap<String, Tensor>,
}

fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(fix().join("manifest.json")).unwrap()).unwrap();
    let all = m["cases"].as_object().unwrap();
    let mut out = Vec::new();
    for (name, meta) in all {
        let mut t = read_case(&root.join(meta["file"].as_str().unwrap()));
        if let Some(from) = meta.get("pixel_values_from").and_then(|v| v.as_str()) {
            let other = read_case(&root.join(all[from]["file"].as_str().unwrap()));
            for (k, v) in other {
                if k == "pixel_values" {
                    t.insert(k, v);
                }
            }
        }
        out.push(Case { name: name.clone(), model: name.split("__").next().unwrap().to_string(), meta: meta.clone(), t });
    }
    assert!(out.len() >= 6, "expected the six fixture cases");
    out
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn load(name: &str) -> Qwen25Vl<Flex> {
    load_model::<Flex>(&fix().join(name), &Default::default(), DType::F32).unwrap()
}

fn grids(t: &Tensor) -> Vec<GridThw> {
    t.i.chunks(3).map(|c| GridThw { t: c[0] as usize, h: c[1] as usize, w: c[2] as usize }).collect()
}

fn rgb(name: &str) -> image::RgbImage {
    image::open(fix().join("images").join(name)).unwrap().to_rgb8()
}

/// The case's model input from the recorded pixel values (exact transformers inputs).
fn recorded_input(c: &Case) -> ModelInput {
    let ids: Vec<u32> = c.t["input_ids"].i.iter().map(|&x| x as u32).collect();
    let split = |pv: &str, g: &str| -> Vec<VisionInput> {
        let Some(p) = c.t.get(pv) else { return vec![] };
        let dim = p.shape[1];
        let mut off = 0;
        grids(&c.t[g])
            .into_iter()
            .map(|grid| {
                let n = grid.patches() * dim;
                let v = VisionInput { pixel_values: p.f[off..off + n].to_vec(), grid };
                off += n;
                v
            })
            .collect()
    };
    let spg = c.t.get("second_per_grid_ts").map(|t| t.f.iter().map(|&x| x as f64).collect()).unwrap_or_default();
    ModelInput { ids, images: split("pixel_values", "image_grid_thw"), videos: split("pixel_values_videos", "video_grid_thw"), second_per_grid_ts: spg }
}

#[test]
fn preprocessing_matches_the_hf_processors() {
    let pc = PreprocessConfig::from_dir(&fix().join("tiny_untied")).unwrap();
    let vc = load("tiny_untied").cfg.vision;
    for c in cases() {
        if let Some(pv) = c.t.get("pixel_values") {
            let mut mine = Vec::new();
            for img in c.meta["images"].as_array().unwrap() {
                let v = preprocess_image(&rgb(img.as_str().unwrap()), &vc, &pc).unwrap();
                mine.push(v.grid);
                let _ = v;
            }
            assert_eq!(mine, grids(&c.t["image_grid_thw"]), "{}: grids", c.name);
            let all: Vec<f32> = c.meta["images"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|i| preprocess_image(&rgb(i.as_str().unwrap()), &vc, &pc).unwrap().pixel_values)
                .collect();
            let e = max_abs(&all, &pv.f);
            assert!(e <= 1e-5, "{}: pixel values differ by {e}", c.name);
        }
        if let Some(pv) = c.t.get("pixel_values_videos") {
            let frames: Vec<_> = (0..4).map(|k| rgb(&format!("video_frame_{k}.png"))).collect();
            let v = preprocess_video(&frames, &vc, &pc).unwrap();
            assert_eq!(vec![v.grid], grids(&c.t["video_grid_thw"]));
            let e = max_abs(&v.pixel_values, &pv.f);
            assert!(e <= 1e-5, "{}: video pixel values differ by {e}", c.name);
        }
    }
}

#[test]
fn tokenizer_and_pad_expansion_match_the_processor() {
    let tok = QwenTokenizer::from_dir(&fix().join("tiny_untied")).unwrap();
    for c in cases() {
        let prompt = c.meta["prompt"].as_str().unwrap();
        let unexpanded = tok.encode(prompt).unwrap();
        let want: Vec<u32> = c.t["prompt_ids_unexpanded"].i.iter().map(|&x| x as u32).collect();
        assert_eq!(unexpanded, want, "{}: tokenisation", c.name);
        let input = recorded_input(&c);
        let expanded = tok.expand_pads(&unexpanded, &input.images, &input.videos, 2).unwrap();
        assert_eq!(expanded, input.ids, "{}: pad expansion", c.name);
    }
}

#[test]
fn rope_index_and_vision_windows_match_transformers() {
    let m = load("tiny_untied");
    for c in cases() {
        let input = recorded_input(&c);
        let r = m.rope_index(&input).unwrap();
        let want = &c.t["position_ids"].i;
        let n = input.ids.len();
        for k in 0..3 {
            assert_eq!(r.positions[k], want[k * n..(k + 1) * n], "{}: position ids row {k}", c.name);
        }
        assert_eq!(r.delta, c.t["rope_deltas"].i[0], "{}: rope delta", c.name);
        if let Some(p) = c.t.get("position_ids_spg0p5_hf457") {
            let vg: Vec<GridThw> = input.videos.iter().map(|v| v.grid).collect();
            for (time, key, dkey) in [
                (VideoTime::Transformers, "position_ids_spg0p5_hf457", "rope_deltas_spg0p5_hf457"),
                (VideoTime::Float, "position_ids_spg0p5_float", "rope_deltas_spg0p5_float"),
            ] {
                let r = get_rope_index(&m.cfg, &input.ids, &[], &vg, &[0.5], time).unwrap();
                let want = &c.t[key].i;
                let flat: Vec<i64> = r.positions.concat();
                assert_eq!(&flat, want, "{}: {key}", c.name);
                assert_eq!(r.delta, c.t[dkey].i[0], "{}: {dkey}", c.name);
                let _ = p;
            }
        }
        for kind in ["image", "video"] {
            let Some(w) = c.t.get(&format!("{kind}_vision_window_index")) else { continue };
            let g = grids(&c.t[&format!("{kind}_grid_thw")]);
            let (idx, cu) = window_index(&m.cfg.vision, &g);
            assert_eq!(idx.iter().map(|&x| x as i64).collect::<Vec<_>>(), w.i, "{}: window index", c.name);
            let cuw = &c.t[&format!("{kind}_vision_cu_window_seqlens")].i;
            assert_eq!(cu.iter().map(|&x| x as i64).collect::<Vec<_>>(), *cuw, "{}: cu_window_seqlens", c.name);
        }
    }
}

#[test]
fn forward_matches_transformers_layer_by_layer() {
    // Both decoders: the host one on the CPU kernels (on by default for f32 on the CPU) and burn's.
    for kernels in [true, false] {
        forward_matches_layer_by_layer(kernels);
    }
}

fn forward_matches_layer_by_layer(kernels: bool) {
    let mut models: HashMap<&str, Qwen25Vl<Flex>> = [("tiny_untied", load("tiny_untied")), ("tiny_tied", load("tiny_tied"))].into();
    for m in models.values_mut() {
        m.set_host_kernels(kernels);
        assert_eq!(m.host_kernels().is_some(), kernels);
        assert_eq!(m.host_vision_kernels().is_some(), kernels, "the vision tower follows the text model");
    }
    let mut report = vec![format!("host decoder and vision tower: {kernels}")];
    for c in cases() {
        let m = &models[c.model.as_str()];
        let input = recorded_input(&c);
        for (kind, items) in [("image", &input.images), ("video", &input.videos)] {
            if items.is_empty() {
                continue;
            }
            let refs: Vec<&VisionInput> = items.iter().collect();
            let got = sightline::model::layers::to_vec(m.encode_vision(&refs).unwrap());
            let e = max_abs(&got, &c.t[&format!("{kind}_embeds")].f);
            report.push(format!("{} {kind}_embeds {e:.2e}", c.name));
            assert!(e <= 1e-4, "{}: {kind} embeds differ by {e}", c.name);
        }
        let mut cache = KvCache::new(m.cfg.text.num_hidden_layers);
        let (out, _) = m.prefill(&input, &mut cache, true, true).unwrap();
        let e = max_abs(&out.hidden[0], &c.t["inputs_embeds"].f);
        assert!(e <= 1e-5, "{}: inputs_embeds differ by {e}", c.name);
        let layers = m.cfg.text.num_hidden_layers;
        for l in 0..layers {
            let e = max_abs(&out.hidden[1 + l], &c.t[&format!("decoder_layer_{l}_out")].f);
            assert!(e <= 1e-4, "{}: decoder layer {l} differs by {e}", c.name);
        }
        let e = max_abs(&out.hidden[1 + layers], &c.t["final_norm_out"].f);
        assert!(e <= 1e-4, "{}: final norm differs by {e}", c.name);
        let v = m.cfg.text.vocab_size;
        let last = &c.t["logits_last"];
        let k = last.shape[0];
        let e = max_abs(&out.logits[(out.rows - k) * v..], &last.f);
        report.push(format!("{} logits {e:.2e}", c.name));
        assert!(e <= LOGIT_TOL, "{}: logits differ by {e}", c.name);
        let argmax: Vec<i64> = out.logits.chunks(v).map(|r| sightline::model::generate::argmax(r) as i64).collect();
        assert_eq!(argmax, c.t["logits_argmax"].i, "{}: argmax per position", c.name);
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn greedy_generation_matches_transformers() {
    // Both decode paths: the CPU kernels (on by default for f32 on the CPU) and burn's
    // matrix products.
    for kernels in [true, false] {
        greedy_generation_matches(kernels);
    }
}

fn greedy_generation_matches(kernels: bool) {
    let mut models: HashMap<&str, Qwen25Vl<Flex>> = [("tiny_untied", load("tiny_untied")), ("tiny_tied", load("tiny_tied"))].into();
    for m in models.values_mut() {
        m.set_host_kernels(kernels);
        assert_eq!(m.host_kernels().is_some(), kernels);
    }
    for c in cases() {
        let m = &models[c.model.as_str()];
        let input = recorded_input(&c);
        let want: Vec<u32> = c.t["generated_ids"].i.iter().map(|&x| x as u32).collect();
        let params = SamplingParams { max_new_tokens: want.len(), record_logits: true, ..Default::default() };
        let mut s = Session::new(m);
        let out = s.generate(m, None, &input, &params, &mut |_| {}, None).unwrap();
        assert_eq!(out[0].token_ids, want, "{} (kernels {kernels}): greedy tokens", c.name);
        let step = &c.t["generation_step_logits"].f;
        let got: Vec<f32> = out[0].step_logits.concat();
        let e = max_abs(&got, step);
        assert!(e <= LOGIT_TOL, "{} (kernels {kernels}): step logits differ by {e}", c.name);
    }
}

#[test]
fn batched_decoding_of_different_conversations_matches_transformers() {
    // Every case of one model decoded together, one row per conversation: caches of different
    // lengths, different rope deltas (text, images, video). Each row's step logits must match what
    // transformers recorded for that case alone. Both decode paths (CPU kernels, burn).
    for kernels in [true, false] {
        batched_decoding_matches(kernels);
    }
}

fn batched_decoding_matches(kernels: bool) {
    let mut models: HashMap<&str, Qwen25Vl<Flex>> = [("tiny_untied", load("tiny_untied")), ("tiny_tied", load("tiny_tied"))].into();
    for m in models.values_mut() {
        m.set_host_kernels(kernels);
        assert_eq!(m.host_kernels().is_some(), kernels);
    }
    for name in ["tiny_untied", "tiny_tied"] {
        let m = &models[name];
        let cs: Vec<Case> = cases().into_iter().filter(|c| c.model == name).collect();
        assert!(cs.len() >= 2, "{name}: several cases batched together");
        let vocab = m.cfg.text.vocab_size;
        let mut caches = Vec::new();
        let mut deltas = Vec::new();
        let mut want = Vec::new();
        let mut greedy = Vec::new();
        for c in &cs {
            let mut cache = KvCache::new(m.cfg.text.num_hidden_layers);
            let (out, delta) = m.prefill(&recorded_input(c), &mut cache, false, false).unwrap();
            let steps = &c.t["generation_step_logits"].f;
            assert!(max_abs(&out.logits, &steps[..vocab]) <= LOGIT_TOL);
            caches.push(cache);
            deltas.push(delta);
            want.push(steps.clone());
            greedy.push(c.t["generated_ids"].i.iter().map(|&x| x as u32).collect::<Vec<_>>());
        }
        let steps = greedy.iter().map(|g| g.len()).min().unwrap();
        assert!(steps >= 2);
        for step in 1..steps {
            let toks: Vec<u32> = greedy.iter().map(|g| g[step - 1]).collect();
            let mut refs: Vec<&mut KvCache<Flex>> = caches.iter_mut().collect();
            let rows = m.decode_rows(&toks, &deltas, &mut refs).unwrap();
            for (i, row) in rows.iter().enumerate() {
                let e = max_abs(row, &want[i][step * vocab..(step + 1) * vocab]);
                assert!(e <= LOGIT_TOL, "{} (kernels {kernels}): batched step {step} logits differ by {e}", cs[i].name);
                assert_eq!(sightline::model::generate::argmax(row) as u32, greedy[i][step], "{}: greedy token {step}", cs[i].name);
            }
        }
        // Mismatched arguments are an error, not a panic.
        let mut refs: Vec<&mut KvCache<Flex>> = caches.iter_mut().collect();
        assert!(m.decode_rows(&[1], &deltas, &mut refs).is_err());
    }
}

#[test]
fn a_conversation_can_switch_between_the_host_and_burn_decoders() {
    // Prefill on one decoder, decode on the other: the cache changes form (host panels ↔ burn
    // tensors) and the step logits stay transformers'.
    let mut m = load("tiny_untied");
    let c = cases().into_iter().find(|c| c.name == "tiny_untied__two_images").unwrap();
    let input = recorded_input(&c);
    let vocab = m.cfg.text.vocab_size;
    let steps = &c.t["generation_step_logits"].f;
    let greedy: Vec<u32> = c.t["generated_ids"].i.iter().map(|&x| x as u32).collect();
    for first in [true, false] {
        m.set_host_kernels(first);
        let mut cache = KvCache::new(m.cfg.text.num_hidden_layers);
        let (out, delta) = m.prefill(&input, &mut cache, false, false).unwrap();
        assert!(max_abs(&out.logits, &steps[..vocab]) <= LOGIT_TOL);
        for step in 1..3 {
            // Alternate: the other decoder first, then back.
            m.set_host_kernels(if step == 1 { !first } else { first });
            let row = m.decode_step(greedy[step - 1], delta, &mut cache).unwrap();
            let e = max_abs(&row, &steps[step * vocab..(step + 1) * vocab]);
            assert!(e <= LOGIT_TOL, "prefill on host decoder {first}, step {step}: logits differ by {e}");
        }
        // Truncating the converted cache and prefilling the rest again gives the same logits.
        cache.truncate(input.ids.len() - 3);
        let (again, _) = m.prefill(&input, &mut cache, false, false).unwrap();
        assert!(max_abs(&again.logits, &steps[..vocab]) <= LOGIT_TOL, "re-prefill after truncation (host decoder {first})");
    }
}

#[test]
fn prefix_reuse_prefills_only_the_new_suffix_and_changes_nothing() {
    let m = load("tiny_untied");
    let tok = QwenTokenizer::from_dir(&fix().join("tiny_untied")).unwrap();
    let c = cases().into_iter().find(|c| c.name == "tiny_untied__two_images").unwrap();
    let first = recorded_input(&c);
    let params = SamplingParams { max_new_tokens: 5, record_logits: true, ..Default::default() };
    let mut s = Session::new(&m);
    let a = s.generate(&m, Some(&tok), &first, &params, &mut |_| {}, None).unwrap();
    assert_eq!(s.reused_tokens, 0);
    // The conversation grows by the answer and a new user turn.
    let mut grown = first.clone();
    grown.ids.extend_from_slice(&a[0].token_ids);
    grown.ids.extend(tok.encode("<|im_end|>\n<|im_start|>user\nAnd now?<|im_end|>\n<|im_start|>assistant\n").unwrap());
    let b = s.generate(&m, Some(&tok), &grown, &params, &mut |_| {}, None).unwrap();
    assert_eq!(s.reused_tokens, first.ids.len() + a[0].token_ids.len() - 1, "cache kept the prompt and the fed answer");
    assert!(s.prefilled_tokens < 20);
    let mut fresh = Session::new(&m);
    let f = fresh.generate(&m, Some(&tok), &grown, &params, &mut |_| {}, None).unwrap();
    assert_eq!(fresh.reused_tokens, 0);
    assert_eq!(b[0].token_ids, f[0].token_ids);
    let e = max_abs(&b[0].step_logits.concat(), &f[0].step_logits.concat());
    assert!(e <= 1e-5, "reused cache changes logits by {e}");
    // A different image at the same place is not reused.
    let mut other = grown.clone();
    other.images.swap(0, 1);
    let mut swapped = Session::new(&m);
    swapped.generate(&m, None, &grown, &SamplingParams { max_new_tokens: 1, ..Default::default() }, &mut |_| {}, None).unwrap();
    let r = swapped.generate(&m, None, &other, &SamplingParams { max_new_tokens: 1, ..Default::default() }, &mut |_| {}, None);
    // Swapping images of different sizes breaks the pad runs: an error, never a panic.
    if r.is_ok() {
        assert!(swapped.reused_tokens <= grown.ids.iter().position(|&t| t == m.cfg.image_token_id).unwrap());
    }
}

#[test]
fn sampling_is_seeded_and_n_samples_share_one_prefill() {
    let m = load("tiny_tied");
    let tok = QwenTokenizer::from_dir(&fix().join("tiny_tied")).unwrap();
    let c = cases().into_iter().find(|c| c.name == "tiny_tied__text_only").unwrap();
    let input = recorded_input(&c);
    let params = SamplingParams { max_new_tokens: 6, temperature: 1.5, top_p: 0.9, top_k: 50, seed: 3, n: 3, ..Default::default() };
    let mut streamed = vec![Vec::new(); 3];
    let mut s = Session::new(&m);
    let a = s.generate(&m, Some(&tok), &input, &params, &mut |e| streamed[e.sample].push(e.token), None).unwrap();
    assert_eq!(a.len(), 3);
    for (i, c) in a.iter().enumerate() {
        assert_eq!(streamed[i], c.token_ids, "streamed tokens are the completion");
    }
    let mut text = String::new();
    let g = Session::new(&m)
        .generate(&m, Some(&tok), &input, &SamplingParams { max_new_tokens: 16, ..Default::default() }, &mut |e| text.push_str(e.text_delta), None)
        .unwrap();
    assert_eq!(text, g[0].text, "streamed text is the completion's text");
    let mut s2 = Session::new(&m);
    let b = s2.generate(&m, Some(&tok), &input, &params, &mut |_| {}, None).unwrap();
    assert_eq!(a.iter().map(|c| &c.token_ids).collect::<Vec<_>>(), b.iter().map(|c| &c.token_ids).collect::<Vec<_>>());
    assert!(a.iter().any(|c| c.token_ids != a[0].token_ids), "different seeds per sample");
    // The n samples are decoded together; each is what a single sample with its seed gives.
    for (i, c) in a.iter().enumerate() {
        let one = SamplingParams { n: 1, seed: params.seed + i as u64, ..params.clone() };
        let r = Session::new(&m).generate(&m, Some(&tok), &input, &one, &mut |_| {}, None).unwrap();
        assert_eq!(r[0].token_ids, c.token_ids, "sample {i} batched vs alone");
    }
    // Cancellation before the first token.
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let r = Session::new(&m).generate(&m, Some(&tok), &input, &params, &mut |_| {}, Some(&cancel)).unwrap();
    assert_eq!(r[0].finish, sightline::model::generate::FinishReason::Cancelled);
    assert!(r[0].token_ids.is_empty());
    // EOS and stop strings end a completion.
    let greedy: Vec<u32> = c.t["generated_ids"].i.iter().map(|&x| x as u32).collect();
    let eos = SamplingParams { max_new_tokens: 16, eos_token_ids: vec![greedy[2]], ..Default::default() };
    let r = Session::new(&m).generate(&m, Some(&tok), &input, &eos, &mut |_| {}, None).unwrap();
    assert_eq!(r[0].token_ids, greedy[..3]);
    assert_eq!(r[0].finish, sightline::model::generate::FinishReason::Eos);
    let text = tok.decode(&greedy[..4], true).unwrap();
    let stop_at = text.char_indices().nth(text.chars().count() / 2).map(|x| x.0).unwrap_or(0);
    let stop: String = text[stop_at..].chars().take(2).collect();
    if !stop.trim().is_empty() {
        let st = SamplingParams { max_new_tokens: 16, stop_strings: vec![stop.clone()], ..Default::default() };
        let mut streamed = String::new();
        let r = Session::new(&m).generate(&m, Some(&tok), &input, &st, &mut |e| streamed.push_str(e.text_delta), None).unwrap();
        assert_eq!(r[0].finish, sightline::model::generate::FinishReason::Stop(stop.clone()));
        assert!(!r[0].text.contains(&stop));
        assert_eq!(streamed, r[0].text, "the stop string is never streamed");
    } else {
        panic!("the fixture's greedy text gave no usable stop string: {text:?}");
    }
}

#[test]
fn nested_config_layout_and_bad_checkpoints_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = fix().join("tiny_untied");
    std::fs::copy(src.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    std::fs::copy(src.join("config_hf_nested.json"), dir.path().join("config.json")).unwrap();
    let nested = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).unwrap();
    assert_eq!(nested.cfg, load("tiny_untied").cfg);

    // Wrong shapes: claim a larger hidden size.
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = 96.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("model.safetensors") && e.contains("mlp.gate_proj.weight") && e.contains("shape"), "{e}");

    // Untied config on tied weights: lm_head is missing.
    let tied = fix().join("tiny_tied");
    std::fs::copy(tied.join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(tied.join("config.json")).unwrap()).unwrap();
    cfg["tie_word_embeddings"] = false.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("missing") && e.contains("lm_head.weight"), "{e}");

    // Fewer layers than the weights: unexpected tensors are named.
    cfg["tie_word_embeddings"] = true.into();
    cfg["num_hidden_layers"] = 1.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("unexpected tensor") && e.contains("model.layers.1."), "{e}");

    // No weights, broken JSON, truncated safetensors.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("no model.safetensors"), "{e}");
    std::fs::write(dir.path().join("model.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    assert!(load_model::<Flex>(dir.path(), &Default::default(), DType::F32).is_err());
    std::fs::write(dir.path().join("config.json"), "{").unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
}

#[test]
fn sharded_checkpoint_with_new_key_layout_loads_to_the_same_model() {
    use safetensors::tensor::TensorView;
    let src = fix().join("tiny_untied");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    assert!(names.iter().any(|n| n.starts_with("visual.") || n.starts_with("model.visual.")));
    // transformers ≥ 4.52 / 5 key names, split over two shards.
    let rename = |n: &str| {
        if let Some(r) = n.strip_prefix("visual.") {
            format!("model.visual.{r}")
        } else if let Some(r) = n.strip_prefix("model.layers.") {
            format!("model.language_model.layers.{r}")
        } else if let Some(r) = n.strip_prefix("model.embed_tokens.") {
            format!("model.language_model.embed_tokens.{r}")
        } else if let Some(r) = n.strip_prefix("model.norm.") {
            format!("model.language_model.norm.{r}")
        } else {
            n.to_string()
        }
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let half = names.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (k, chunk) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let views: Vec<(String, TensorView)> = chunk.iter().map(|n| (rename(n), st.tensor(n).unwrap())).collect();
        for (n, _) in &views {
            weight_map.insert(n.clone(), file.clone().into());
        }
        safetensors::serialize_to_file(views, None, &dir.path().join(&file)).unwrap();
    }
    std::fs::write(dir.path().join("model.safetensors.index.json"), serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string()).unwrap();
    let sharded = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).unwrap();
    let single = load("tiny_untied");
    let c = cases().into_iter().find(|c| c.name == "tiny_untied__one_image").unwrap();
    let input = recorded_input(&c);
    let a = sharded.prefill(&input, &mut KvCache::new(3), false, false).unwrap().0.logits;
    let b = single.prefill(&input, &mut KvCache::new(3), false, false).unwrap().0.logits;
    assert_eq!(a, b);
    // A shard named by the index but absent is named in the error.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let e = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).err().unwrap().to_string();
    assert!(e.contains("model-00002-of-00002.safetensors") && e.contains("missing"), "{e}");
}

#[test]
fn a_bf16_checkpoint_keeps_bf16_kernel_weights_and_decodes_as_burn_does() {
    // The released checkpoints are bf16: write the tiny fixture's weights as bf16 (truncated), as
    // such a checkpoint would hold them. On the CPU the kernels keep them in bf16 (lossless), and
    // decoding must give burn's f32 results on the same (upcast) weights.
    use safetensors::tensor::TensorView;
    let src = fix().join("tiny_untied");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in st.names() {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32);
        let bf16: Vec<u8> = t.data().chunks(4).flat_map(|c| [c[2], c[3]]).collect();
        data.push((name.to_string(), t.shape().to_vec(), bf16));
    }
    let views: Vec<(String, TensorView)> = data.iter().map(|(n, shape, b)| (n.clone(), TensorView::new(Dtype::BF16, shape.clone(), b).unwrap())).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();

    let mut m = load_model::<Flex>(dir.path(), &Default::default(), DType::F32).unwrap();
    let k = m.host_kernels().expect("CPU kernels are on by default for f32 on the CPU");
    assert_eq!(k.storage(), sightline::model::host_kernels::WeightStorage::Bf16);
    let bf16_bytes = k.bytes();
    let f32_bytes = load("tiny_untied").host_kernels().unwrap().bytes();
    assert_eq!(bf16_bytes * 2, f32_bytes, "bf16 panels are half the f32 ones");

    let c = cases().into_iter().find(|c| c.name == "tiny_untied__two_images").unwrap();
    let input = recorded_input(&c);
    let params = SamplingParams { max_new_tokens: 6, record_logits: true, ..Default::default() };
    let with_kernels = Session::new(&m).generate(&m, None, &input, &params, &mut |_| {}, None).unwrap();
    m.set_host_kernels(false);
    assert!(m.host_kernels().is_none());
    let with_burn = Session::new(&m).generate(&m, None, &input, &params, &mut |_| {}, None).unwrap();
    assert_eq!(with_kernels[0].token_ids, with_burn[0].token_ids);
    let e = max_abs(&with_kernels[0].step_logits.concat(), &with_burn[0].step_logits.concat());
    assert!(e <= 1e-5, "kernel and burn decoding differ by {e} on the same bf16 weights");
}
