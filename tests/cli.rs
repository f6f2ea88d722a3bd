//! The command line end to end, as a user scripts it: JSON lines in and out, clear errors and
//! non-zero exit codes on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sightline(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn resize_prints_width_height_or_fails() {
    let o = sightline(&["resize", "640", "480", "--max-pixels", "351232"], None);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "644 476");
    let o = sightline(&["resize", "1", "500"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("aspect ratio"));
}

#[test]
fn score_reproduces_published_sequences_and_reports_reference_crashes() {
    let v: serde_json::Value = serde_json::from_str(include_str!("fixtures/reward_and_geometry_test_vectors.json")).unwrap();
    let cases = v["vilasr_rl_score_on_sequences"].as_array().unwrap();
    let input: String = cases
        .iter()
        .map(|c| {
            serde_json::json!({"sequence": c["decoded_sequence"], "ground_truth": c["gt"], "question_type": c["question_type"], "data_type": c["data_type"]}).to_string() + "\n"
        })
        .collect();
    let o = sightline(&["score", "--protocol", "vilasr", "-"], Some(&input));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out.len(), cases.len());
    for (c, got) in cases.iter().zip(&out) {
        let r = &c["result"];
        if r.is_string() {
            assert!(got.get("error").is_some(), "{}: {got}", c["case"]);
        } else {
            for k in ["overall", "format", "accuracy", "reflection"] {
                assert_eq!(got[k].as_f64(), r[k].as_f64(), "{} {k}", c["case"]);
            }
        }
    }
}

#[test]
fn score_rejects_malformed_lines_with_line_and_field() {
    let input = "{\"sequence\": 3, \"ground_truth\": \"B\", \"question_type\": \"multiple choice\"}\nnot json\n[1]\n";
    let o = sightline(&["score", "--protocol", "vilavt", "-"], Some(input));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 1: field \"sequence\""), "{err}");
    assert!(err.contains("line 2: invalid JSON"), "{err}");
    assert!(err.contains("line 3: expected a JSON object"), "{err}");
    assert_eq!(lines(&o).len(), 3);
}

#[test]
fn score_answer_all_scorers() {
    let input = "{\"final_turn\": \"<answer>B. chair</answer>\", \"ground_truth\": \"B\", \"question_type\": \"multiple choice\"}\n";
    let want = [("vilasr-rl", 0.0), ("vilasr-eval", 1.0), ("vilavt-rl", 1.0), ("vilavt-eval", 1.0)];
    for (scorer, score) in want {
        let o = sightline(&["score-answer", "--scorer", scorer, "-"], Some(input));
        assert!(o.status.success());
        assert_eq!(lines(&o)[0]["score"].as_f64(), Some(score), "{scorer}");
    }
    let o = sightline(&["score-answer", "--scorer", "vilasr-eval", "-"], Some("{\"final_turn\": \"\", \"ground_truth\": \"B\", \"question_type\": \"multiple choice\"}\n"));
    assert!(lines(&o)[0]["error"].as_str().unwrap().contains("IndexError"));
}

#[test]
fn render_writes_images_and_steps() {
    let dir = tempfile::tempdir().unwrap();
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/draw/vilasr_draw_fixture.json")).unwrap();
    let r1 = dir.path().join("r1.txt");
    let r2 = dir.path().join("r2.txt");
    let r3 = dir.path().join("r3.txt");
    std::fs::write(&r1, fx["turn1_assistant_response"].as_str().unwrap()).unwrap();
    std::fs::write(&r2, fx["turn2_assistant_response"].as_str().unwrap()).unwrap();
    std::fs::write(&r3, "<think>done</think> Action: Answer\n<answer>B</answer>").unwrap();
    let out = dir.path().join("out");
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/draw/vilasr_draw_fixture_image1_input.png");
    let o = sightline(
        &["render", "--image", input, "--response", r1.to_str().unwrap(), "--response", r2.to_str().unwrap(), "--response", r3.to_str().unwrap(), "--out", out.to_str().unwrap()],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for n in 1..=3 {
        assert!(out.join(format!("image-{n}.png")).exists());
    }
    assert!(!out.join("image-4.png").exists(), "the answer turn is not executed");
    let steps: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("steps.json")).unwrap()).unwrap();
    assert_eq!(steps["steps"][0]["new_images"][0]["image"], 2);
    assert_eq!(steps["steps"][1]["new_images"][0]["drawn_on"], 2);
    assert_eq!(steps["steps"][2]["kind"], "answer");
    let img = image::open(out.join("image-3.png")).unwrap().to_rgb8();
    assert_eq!(img.get_pixel(350, 20).0, [0, 0, 255]);
}

#[test]
fn render_reports_missing_and_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.txt");
    std::fs::write(&r, "x").unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    for img in [dir.path().join("missing.png"), bad.clone()] {
        let o = sightline(&["render", "--image", img.to_str().unwrap(), "--response", r.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()], None);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(img.file_name().unwrap().to_str().unwrap()), "{err}");
    }
    std::fs::write(&r, [0xff, 0xfe, 0x00]).unwrap();
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/draw/vilasr_draw_fixture_image1_input.png");
    let o = sightline(&["render", "--image", input, "--response", r.to_str().unwrap(), "--out", dir.path().join("o").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not valid UTF-8"));
}

#[test]
fn demo_runs_and_saves_a_trajectory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = sightline(&["demo", "--out", out.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("reward: overall 1 (format 1, accuracy 1, reflection 1)"), "{stdout}");
    let t = sightline::core::trajectory::Trajectory::load_dir(&out).unwrap();
    assert_eq!(t.turns.len(), 3);
    assert_eq!(t.turns[1].observations[0].number, 3);
    assert!(out.join(&t.turns[1].observations[0].image.path).exists());
}

#[test]
fn dataset_inspect_validate_convert_on_benchmark_records() {
    let bench = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/benchmarks/mmsi_bench.sample.json");
    let o = sightline(&["dataset", "inspect", bench], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["format"], "benchmark");
    assert!(v["records"].as_u64().unwrap() > 0);

    let o = sightline(&["dataset", "inspect", bench, "--record", "0"], None);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sample"]["data_type"], "multi_view");

    // The sample files ship without their images: validation without image checks passes, with them it fails.
    let o = sightline(&["dataset", "validate", bench], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = sightline(&["dataset", "validate", bench, "--check-images"], None);
    assert_eq!(o.status.code(), Some(1));

    let dir = tempfile::tempdir().unwrap();
    let o = sightline(&["dataset", "convert", bench, "--to", "samples", "--out", dir.path().to_str().unwrap()], None);
    assert!(o.status.success());
    let text = std::fs::read_to_string(dir.path().join("samples.jsonl")).unwrap();
    assert_eq!(text.lines().count() as u64, serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(bench).unwrap()).unwrap().as_array().unwrap().len() as u64);
    // Benchmarks hold no conversations.
    let o = sightline(&["dataset", "convert", bench, "--to", "llamafactory", "--out", dir.path().to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds no conversations"));
}

#[test]
fn dataset_round_trip_llamafactory_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("imgs")).unwrap();
    image::RgbImage::new(28, 28).save(dir.path().join("imgs/a.png")).unwrap();
    let records = serde_json::json!([{
        "conversations": [
            {"role": "user", "content": "<image>\n### Question:\nWhich?"},
            {"role": "assistant", "content": "<think>x</think> Action: Object Mapper\n```json\n[{\"index\": 1, \"bbox_2d\": [1, 2, 3, 4], \"label\": \"a\"}]\n```"},
            {"role": "user", "content": "<image>\nThe index of the given image is 2 (width: 28, height: 28). Continue your reasoning."},
            {"role": "assistant", "content": "<think>y</think> Action: Answer\n<answer>A</answer>"}
        ],
        "images": ["imgs/a.png", "imgs/a.png"]
    }]);
    std::fs::write(dir.path().join("set.json"), records.to_string()).unwrap();
    std::fs::write(
        dir.path().join("dataset_info.json"),
        serde_json::json!({"set": {"file_name": "set.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}}}).to_string(),
    )
    .unwrap();
    let info = dir.path().join("dataset_info.json");
    let o = sightline(&["dataset", "validate", info.to_str().unwrap(), "--check-images"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let out = dir.path().join("out");
    let o = sightline(&["dataset", "convert", info.to_str().unwrap(), "--to", "llamafactory", "--name", "copy", "--copy-images", "--out", out.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sightline(&["dataset", "inspect", out.join("dataset_info.json").to_str().unwrap(), "--record", "0"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trajectory"]["turns"].as_array().unwrap().len(), 2);
    // A path escaping the root is refused with the record named.
    let bad = serde_json::json!([{"conversations": [{"role": "user", "content": "<image>q"}, {"role": "assistant", "content": "a"}], "images": ["../../etc/passwd"]}]);
    std::fs::write(dir.path().join("set.json"), bad.to_string()).unwrap();
    let o = sightline(&["dataset", "validate", info.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("record 0") && s.contains("escapes"), "{s}");
}
