//! Integration tests of the dataset layer on copies of real benchmark records
//! (`tests/fixtures/benchmarks/*.sample.json`, from the reference `data/` folder).

use sightline::core::datasets::{
    detect_format, validate, write_llamafactory, DatasetError, DatasetFormat, DatasetIndex, ImagePaths, WriteOptions,
};
use sightline::core::trajectory::{Media, Protocol, Trajectory, Turn};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/benchmarks")
}

fn open(name: &str) -> DatasetIndex {
    let p = fixtures().join(name);
    assert_eq!(detect_format(&p).unwrap(), DatasetFormat::Benchmark, "{name}");
    DatasetIndex::open(&p).unwrap()
}

#[test]
fn every_fixture_is_a_benchmark_with_the_expected_record_count() {
    for (name, n) in [
        ("ERQA.sample.json", 4),
        ("EmbSpatial.sample.json", 3),
        ("HRBench4K.sample.json", 4),
        ("HRBench8K.sample.json", 4),
        ("SpatialEval_spatialreal.sample.json", 4),
        ("mmsi_bench.sample.json", 11),
        ("viewspatial_bench.sample.json", 5),
    ] {
        let index = open(name);
        assert_eq!(index.len(), n, "{name}");
        let report = validate(&index, false);
        assert!(report.is_ok(), "{name}: {}", report.summary(5));
        assert_eq!(report.question_types.get("multiple choice"), Some(&n), "{name}");
        assert_eq!(index.root, std::fs::canonicalize(fixtures()).unwrap());
    }
}

#[test]
fn erqa_many_image_record() {
    let index = open("ERQA.sample.json");
    let r = index.record(3).unwrap();
    assert_eq!(r.fields["question_id"], 167);
    let s = r.to_sample().unwrap();
    assert_eq!(s.id, "167");
    assert_eq!(s.question_type, "multiple choice");
    assert_eq!(s.options, None);
    assert_eq!(s.ground_truth.as_deref(), Some("B"));
    assert_eq!(s.data_type, "");
    assert!(matches!(s.media, Media::Images { .. }));
    let images = s.media.images();
    assert_eq!(images.len(), 16);
    assert_eq!(Path::new(&images[15].path), index.root.join("ERQA/167_15.jpg"));
    // The question embeds one <image> per image (protocol §4.5), kept verbatim.
    assert!(s.question.starts_with(&"<image>".repeat(16)));
    assert!(s.question.ends_with("Please answer directly with only the letter of the correct option and nothing else."));
    assert_eq!(s.extra["category"], "Other");
    assert_eq!(s.extra["cycle_category"], serde_json::Value::Null);
    assert_eq!(s.extra["num_images"], 16);
    assert_eq!(s.extra["visual_indices"].as_array().unwrap().len(), 16);
    assert_eq!(s.extra["question_id"], 167);
    let src = s.source.unwrap();
    assert_eq!((src.record, src.dataset.as_deref()), (3, Some("ERQA.sample")));
    for i in 0..index.len() {
        let s = index.record(i).unwrap().to_sample().unwrap();
        assert_eq!(s.question.matches("<image>").count() as u64, s.extra["num_images"].as_u64().unwrap());
    }
    // Benchmarks hold no conversation.
    let e = index.record(0).unwrap().to_trajectory().unwrap_err().to_string();
    assert!(e.contains("record 0") && e.contains("no conversation"), "{e}");
}

#[test]
fn embspatial_hrbench_spatialeval_fields() {
    let s = open("EmbSpatial.sample.json").record(1).unwrap().to_sample().unwrap();
    assert_eq!(s.id, "ai2thor_0");
    assert_eq!(s.data_type, "image");
    assert_eq!(s.ground_truth.as_deref(), Some("A"));
    assert_eq!(s.options.as_ref().unwrap()[0], "A. The spoon is beneath the toaster.");
    assert_eq!(s.options.as_ref().unwrap().len(), 4);
    assert!(s.media.images()[0].path.ends_with("EmbSpatial/FloorPlan23_ai2thor_0.jpg"));
    assert_eq!(s.extra.keys().collect::<Vec<_>>(), vec!["dataset", "task", "split", "question_id"]);
    assert_eq!(s.extra["task"], "ai2thor");

    let s = open("HRBench8K.sample.json").record(2).unwrap().to_sample().unwrap();
    assert_eq!(s.id, "8");
    assert_eq!(s.question, "Is the mailbox on the left or right side of the woman?");
    assert_eq!(s.options.unwrap(), vec!["A. Right", "B. Left", "C. In front", "D. Directly above"]);
    assert_eq!(s.extra["category"], "cross");
    assert_eq!(s.extra["cycle_category"], 0);
    let s4 = open("HRBench4K.sample.json").record(3).unwrap().to_sample().unwrap();
    assert_eq!((s4.ground_truth.as_deref(), s4.extra["cycle_category"].as_u64()), (Some("B"), Some(1)));

    let s = open("SpatialEval_spatialreal.sample.json").record(0).unwrap().to_sample().unwrap();
    assert_eq!(s.id, "spatialreal.vqa.sa_1543979.0");
    assert!(s.question.contains("Available options:\nA. eight\nB. ten\nC. four\nD. six\n"));
    assert_eq!(s.ground_truth.as_deref(), Some("D"));
    assert_eq!(s.options, None);
}

#[test]
fn multi_view_benchmarks() {
    let index = open("mmsi_bench.sample.json");
    let s = index.record(4).unwrap().to_sample().unwrap();
    assert_eq!(s.id, "12");
    assert_eq!(s.data_type, "multi_view");
    assert_eq!(s.media.images().len(), 3);
    assert!(s.media.images()[2].path.ends_with("mmsi_bench/sample_000012/002.jpg"));
    assert_eq!(s.extra["original_question_type"], "MSR");
    assert_eq!(s.extra["data_source"], "MMSI-Bench");
    assert!(s.extra["thought"].as_str().unwrap().starts_with("1. In Figure 2"));
    assert_eq!(s.ground_truth.as_deref(), Some("C"));

    let index = open("viewspatial_bench.sample.json");
    let s = index.record(4).unwrap().to_sample().unwrap();
    assert_eq!(s.id, "4607");
    assert_eq!(s.ground_truth.as_deref(), Some("A. front"));
    assert_eq!(s.media.images().len(), 9);
    assert!(!s.media.is_video());
    assert_eq!(s.extra["original_question_type"], "Person perspective - Scene Simulation Relative Direction");
}

#[test]
fn image_checks_report_missing_files() {
    // The fixtures ship without images: every reference is reported, each file once.
    let index = open("mmsi_bench.sample.json");
    let r = validate(&index, true);
    assert_eq!(r.valid, 0);
    assert_eq!(r.images_referenced, 23);
    assert_eq!((r.images_checked, r.images_missing), (23, 23));
    let first = r.problems[0].error.to_string();
    assert!(first.contains("mmsi_bench.sample.json: record 0"), "{first}");
    assert!(first.contains("\"mmsi_bench/sample_000000/000.jpg\" does not exist"), "{first}");
}

#[test]
fn escaping_paths_in_a_real_record_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixtures().join("ERQA.sample.json")).unwrap();
    let p = dir.path().join("ERQA.json");
    std::fs::write(&p, text.replace("\"ERQA/78_1.jpg\"", "\"../../etc/78_1.jpg\"")).unwrap();
    let index = DatasetIndex::open(&p).unwrap();
    let e = index.record(1).unwrap().to_sample().unwrap_err();
    assert!(matches!(e, DatasetError::PathEscape { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: record 1: field \"images[1]\": image path \"../../etc/78_1.jpg\" escapes the dataset root (`..` climbs above it)",
            p.display()
        )
    );
    assert!(index.record(0).unwrap().to_sample().is_ok());
}

#[test]
fn vsi_benchmarks_are_video_frames() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<String> = (0..32).map(|i| format!("\"vsi/scene0/{i:02}.jpg\"")).collect();
    let p = dir.path().join("vsibench_32frame.json");
    std::fs::write(
        &p,
        format!(
            "[{{\"question\": \"How many chairs?\", \"answer\": \"4\", \"options\": null, \"problem_type\": \"numerical\", \"original_question_type\": \"object_counting\", \"images\": [{}]}}]",
            frames.join(", ")
        ),
    )
    .unwrap();
    let s = DatasetIndex::open(&p).unwrap().record(0).unwrap().to_sample().unwrap();
    assert!(s.media.is_video());
    assert_eq!(s.media.images().len(), 32);
    assert_eq!(s.id, "vsibench_32frame-0");
}

#[test]
fn benchmark_samples_export_to_llamafactory_and_read_back() {
    // A benchmark sample answered in one turn, exported and re-read as LLaMA-Factory data.
    let out = tempfile::tempdir().unwrap();
    let out = std::fs::canonicalize(out.path()).unwrap();
    let index = open("HRBench4K.sample.json");
    let mut ts = Vec::new();
    for i in 0..index.len() {
        let mut sample = index.record(i).unwrap().to_sample().unwrap();
        // Point the inputs into the output folder.
        let rel = Path::new(&sample.media.images()[0].path).strip_prefix(&index.root).unwrap().to_path_buf();
        sample.media = Media::Images { images: vec![sightline::core::trajectory::ImageRef::new(out.join(&rel).to_string_lossy())] };
        let answer = sample.ground_truth.clone().unwrap();
        let mut t = Trajectory::new(sample.id.clone(), Protocol::Vilasr, sample);
        t.turns.push(Turn { assistant_text: format!("<answer>{answer}</answer>"), ..Default::default() });
        ts.push(t);
    }
    let summary = write_llamafactory(&out, "hr4k", &ts, &WriteOptions { image_paths: ImagePaths::Relative, ..Default::default() })
        .unwrap();
    assert_eq!((summary.records, summary.images), (4, 4));
    let back = DatasetIndex::open(&out).unwrap();
    assert_eq!(back.len(), 4);
    let t = back.record(2).unwrap().to_trajectory().unwrap();
    assert_eq!(t.sample.question, ts[2].sample.question);
    assert_eq!(t.sample.media, ts[2].sample.media);
    assert_eq!(t.turns[0].assistant_text, "<answer>A</answer>");
    assert_eq!(t.first_user_text.as_deref(), Some(format!("<|vision_start|><|image_pad|><|vision_end|>{}", ts[2].sample.question).as_str()));
}
