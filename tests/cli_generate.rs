//! `sightline generate` end to end on the tiny fixture checkpoint: images-then-prompt and
//! `--messages` (two images, a video) reproduce transformers' greedy tokens; bad input exits 2
//! with the file named, never a panic.
#![cfg(feature = "model")]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fix() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl")
}

fn sightline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sightline")).args(args).output().unwrap()
}

fn expected(case: &str) -> Vec<u64> {
    let m: Value = serde_json::from_str(&std::fs::read_to_string(fix().join("manifest.json")).unwrap()).unwrap();
    m["cases"][case]["generated_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
}

#[test]
fn image_then_prompt_reproduces_the_greedy_tokens() {
    let model = fix().join("tiny_untied");
    let img = fix().join("images/image_b.png");
    let o = sightline(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "The index of the given image is 1. How many squares are red?",
        "--max-new-tokens",
        "16",
        "--device",
        "cpu",
        "--json",
    ]);
    let v = json_out(&o);
    let ids: Vec<u64> = v["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids, expected("tiny_untied__one_image"));
    assert!(v["text"].is_string());
}

#[test]
fn messages_files_with_two_images_or_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let model = fix().join("tiny_untied");
    let im = |n: &str| fix().join("images").join(n).to_str().unwrap().to_string();
    let two = json!([{"role": "user", "content": [
        {"type": "image", "image": im("image_a.png")}, {"type": "text", "text": "Image 1 (168x112).\n"},
        {"type": "image", "image": im("image_c.png")}, {"type": "text", "text": "Image 2 (84x56).\nWhich image is wider?"}]}]);
    let video = json!([{"role": "user", "content": [
        {"type": "video", "video": (0..4).map(|k| im(&format!("video_frame_{k}.png"))).collect::<Vec<_>>(), "fps": 2.0},
        {"type": "text", "text": "What moves in the video?"}]}]);
    for (name, msgs, case) in [("two.json", two, "tiny_untied__two_images"), ("video.json", video, "tiny_untied__video")] {
        let f = dir.path().join(name);
        std::fs::write(&f, msgs.to_string()).unwrap();
        let o = sightline(&["generate", "--model", model.to_str().unwrap(), "--messages", f.to_str().unwrap(), "--max-new-tokens", "16", "--device", "cpu", "--json"]);
        let v = json_out(&o);
        let ids: Vec<u64> = v["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(ids, expected(case), "{case}");
    }
}

#[test]
fn streaming_sampling_and_bad_input() {
    let model = fix().join("tiny_tied");
    let m = model.to_str().unwrap();
    // Streams text (no JSON) and reports the device on stderr.
    let o = sightline(&["generate", "--model", m, "Hello", "--max-new-tokens", "4", "--temperature", "0.8", "--top-k", "20", "--seed", "5", "--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cpu"));
    // Two samples with --json: two lines.
    let o = sightline(&["generate", "--model", m, "Hello", "--max-new-tokens", "3", "--temperature", "1.0", "--num-samples", "2", "--device", "cpu", "--json"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    // Streamed samples (decoded together): sample 0 live, the others after it, each headed once.
    let o = sightline(&["generate", "--model", m, "Hello", "--max-new-tokens", "5", "--temperature", "1.0", "--num-samples", "3", "--device", "cpu"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let at: Vec<usize> = (0..3).map(|i| text.find(&format!("--- sample {i} ---")).unwrap_or_else(|| panic!("no header {i}: {text:?}"))).collect();
    assert!(at[0] < at[1] && at[1] < at[2], "{text:?}");
    assert_eq!(text.matches("--- sample ").count(), 3, "{text:?}");

    let bad = |args: &[&str], needle: &str| {
        let o = sightline(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    bad(&["generate", "--model", "/nonexistent/ckpt", "hi", "--device", "cpu"], "/nonexistent/ckpt");
    bad(&["generate", "--model", m, "--image", "/nonexistent.png", "hi", "--device", "cpu"], "/nonexistent.png");
    bad(&["generate", "--model", m, "hi", "--device", "gpu"], "unknown device");
    bad(&["generate", "--model", m, "hi", "--device", "cpu", "--top-p", "0"], "top-p");
    bad(&["generate", "--model", m, "--device", "cpu"], "PROMPT");
    // An explicit CUDA request without a usable GPU is an error message, not a panic.
    let o = sightline(&["generate", "--model", m, "hi", "--device", "cuda:7", "--max-new-tokens", "1"]);
    assert_ne!(o.status.code(), Some(101), "panicked: {}", String::from_utf8_lossy(&o.stderr));
}
