//! Fuzz the dataset indexers and record readers with arbitrary file contents in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline::core::datasets::{DatasetFormat, DatasetIndex};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    for (format, name) in [
        (DatasetFormat::Sharegpt, "data.json"),
        (DatasetFormat::VilasrRl, "rl.jsonl"),
        (DatasetFormat::VilavtSft, "sft.json"),
        (DatasetFormat::VilavtRl, "vt.jsonl"),
        (DatasetFormat::Benchmark, "bench.json"),
        (DatasetFormat::VilasrResults, "results.jsonl"),
        (DatasetFormat::LlamaFactory, "dataset_info.json"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let _ = sightline::core::datasets::detect_format(&path);
        if let Ok(index) = DatasetIndex::open_as(&path, format) {
            for i in 0..index.len().min(64) {
                if let Ok(r) = index.record(i) {
                    let _ = r.to_sample();
                    let _ = r.to_trajectory();
                    let _ = r.image_paths();
                }
            }
        }
    }
});
