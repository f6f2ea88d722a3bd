//! Index-building benchmark (plain `main`, `harness = false`): generates SR-91k-sized synthetic
//! datasets — a sharegpt JSON array and a ViLaSR RL JSON-lines file, 91,000 records each — and
//! prints how long indexing, reading every record and converting every record take.
//!
//! Run with `cargo bench --bench dataset_index` (optionally `-- <records>`).

use sightline::core::datasets::{DatasetIndex, DatasetFormat};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(91_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let array = dir.path().join("SR_91k.json");
    let lines = dir.path().join("vilasr_rl_data.jsonl");
    let t = Instant::now();
    generate(&array, &lines, n);
    println!("generated {n} records per file in {:.2?}", t.elapsed());
    for (path, format) in [(&array, DatasetFormat::Sharegpt), (&lines, DatasetFormat::VilasrRl)] {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut best = f64::MAX;
        let mut index = None;
        for _ in 0..5 {
            let t = Instant::now();
            let ix = DatasetIndex::open(path).expect("index");
            best = best.min(t.elapsed().as_secs_f64());
            index = Some(ix);
        }
        let index = index.expect("index");
        assert_eq!(index.format, format);
        assert_eq!(index.len(), n);
        let t = Instant::now();
        let mut bytes = 0usize;
        for i in 0..index.len() {
            bytes += index.record(i).expect("record").fields.len();
        }
        let read = t.elapsed();
        let t = Instant::now();
        for i in 0..index.len() {
            let r = index.record(i).expect("record");
            if format.has_conversation() {
                r.to_trajectory().expect("trajectory");
            } else {
                r.to_sample().expect("sample");
            }
        }
        let convert = t.elapsed();
        println!(
            "{:<22} {:>7.1} MiB  index (best of 5) {:>8.1} ms ({:.0} MiB/s)  read all {:>8.1} ms  read+convert all {:>8.1} ms  [{bytes} fields]",
            path.file_name().unwrap().to_string_lossy(),
            size as f64 / (1 << 20) as f64,
            best * 1e3,
            size as f64 / (1 << 20) as f64 / best,
            read.as_secs_f64() * 1e3,
            convert.as_secs_f64() * 1e3,
        );
    }
}

fn generate(array: &Path, lines: &Path, n: usize) {
    let mut a = std::io::BufWriter::new(std::fs::File::create(array).expect("create"));
    let mut l = std::io::BufWriter::new(std::fs::File::create(lines).expect("create"));
    a.write_all(b"[\n").unwrap();
    for i in 0..n {
        if i > 0 {
            a.write_all(b",\n").unwrap();
        }
        // Roughly the shape of a ViLaSR cold-start record: system prompt, question, two tool
        // turns with observations, an answer turn.
        write!(
            a,
            concat!(
                r####"  {{"conversations": ["####,
                r####"{{"role": "system", "content": "### Guidance:\nYou are a spatial reasoning assistant with access to two powerful visualization tools. {pad}"}}, "####,
                r####"{{"role": "user", "content": "<image>\n### Question:\nHow far is the chair from the table in record {i}? \"quoted\" [brackets] {{braces}}\n\nBegin your reasoning. After each tool use, critically evaluate the visualization and adjust if needed:\n"}}, "####,
                r####"{{"role": "assistant", "content": "<think>Locate both objects.</think> Action: Object Mapper\n```json\n[{{\"index\": 1, \"bbox_2d\": [10, 20, 110, 220], \"label\": \"chair\"}}]\n```"}}, "####,
                r####"{{"role": "user", "content": "<image>\nThe index of the given image is 2 (width: 448, height: 448). Continue your reasoning.\n"}}, "####,
                r####"{{"role": "assistant", "content": "<think>Trace the path.</think> Action: Path Tracer\n```json\n[{{\"index\": 2, \"start_point_2d\": [60, 120], \"end_point_2d\": [300, 320], \"label\": \"d\"}}]\n```"}}, "####,
                r####"{{"role": "user", "content": "<image>\nThe index of the given image is 3 (width: 448, height: 448). Continue your reasoning.\n"}}, "####,
                r####"{{"role": "assistant", "content": "<think>About 2 m.</think> Action: Answer\n<answer>2.0</answer>"}}"####,
                r####"], "images": ["SR_91k/{i}/in.jpg", "SR_91k/{i}/obs2.png", "SR_91k/{i}/obs3.png"]}}"####
            ),
            i = i,
            pad = "x".repeat(200),
        )
        .unwrap();
        writeln!(
            l,
            r#"{{"question": "How many chairs are in scene {i}?", "answer": "{a}", "image_path": ["rl/GPT4Scene-All/{i}/0.png", "rl/GPT4Scene-All/{i}/1.png"], "data_type": "video", "question_type": "numerical", "options": null, "grid_size": null, "source": "GPT4Scene"}}"#,
            a = i % 7
        )
        .unwrap();
    }
    a.write_all(b"\n]\n").unwrap();
    a.flush().unwrap();
    l.flush().unwrap();
}
