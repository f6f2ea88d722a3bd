//! Tests of format detection, the streaming index, error messages and robustness against
//! truncated, garbled and random input.

use super::*;
use std::io::Write;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

const SHAREGPT: &str = r#"[{"conversations": [{"role": "user", "content": "<image>Q"}, {"role": "assistant", "content": "A"}], "images": ["a.png"]}]"#;
const SFT: &str = r#"[{"conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}], "images": ["a.png"]}]"#;
const VILASR_RL: &str = r#"{"question": "q", "answer": "A", "image_path": ["a.png"], "data_type": "maze", "question_type": "free-form", "grid_size": 5}"#;
const VILAVT_RL: &str = r#"{"question": "q", "answer": "A", "image_path": ["a.png"], "max_pixels": 1, "max_num_steps": null, "question_type": "math", "data_type": "image"}"#;
const BENCH: &str = r#"[{"question_id": 0, "question": "q", "answer": "A", "problem_type": "multiple choice", "images": ["a.png"]}]"#;
const RESULTS: &str = r#"{"question": "q", "image_path": [], "conversations": [{"role": "user", "content": [{"type": "text", "text": "q"}]}, {"role": "assistant", "content": "A"}], "model_output": "A", "model_id": "m", "sample_dir": null}"#;

#[test]
fn detects_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        ("sg.json", SHAREGPT, DatasetFormat::Sharegpt),
        ("sft.json", SFT, DatasetFormat::VilavtSft),
        ("rl.jsonl", VILASR_RL, DatasetFormat::VilasrRl),
        ("vt.jsonl", VILAVT_RL, DatasetFormat::VilavtRl),
        ("ERQA.json", BENCH, DatasetFormat::Benchmark),
        ("out.jsonl", RESULTS, DatasetFormat::VilasrResults),
        ("results.jsonl", "", DatasetFormat::VilasrResults),
        (
            "registry.json",
            "{\n  \"x\": {\n    \"file_name\": \"sg.json\",\n    \"formatting\": \"sharegpt\"\n  }\n}\n",
            DatasetFormat::LlamaFactory,
        ),
    ];
    for (name, text, want) in cases {
        let p = write(d, name, text);
        assert_eq!(detect_format(&p).unwrap(), want, "{name}");
    }
    write(d, "lf/dataset_info.json", "{}");
    assert_eq!(detect_format(d.join("lf")).unwrap(), DatasetFormat::LlamaFactory);
    assert_eq!(detect_format(d.join("lf/dataset_info.json")).unwrap(), DatasetFormat::LlamaFactory);
    // Unknown keys name the keys; empty files and directories without a registry are refused.
    let p = write(d, "odd.jsonl", "{\"foo\": 1, \"bar\": 2}\n");
    let e = detect_format(&p).unwrap_err().to_string();
    assert!(e.contains("odd.jsonl: record 0") && e.contains("[foo, bar]"), "{e}");
    let p = write(d, "empty.json", "  ");
    assert!(detect_format(&p).unwrap_err().to_string().contains("no records"));
    assert!(detect_format(d).is_err());
    assert!(detect_format(d.join("nope.json")).unwrap_err().to_string().contains("cannot read"));
    for f in DatasetFormat::ALL {
        assert_eq!(DatasetFormat::from_name(f.name()), Some(f));
    }
}

#[test]
fn index_reads_records_by_span() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{VILASR_RL}\n\n{}\n", VILASR_RL.replace("\"q\"", "\"second\""));
    let p = write(dir.path(), "rl.jsonl", &text);
    let index = DatasetIndex::open(&p).unwrap();
    assert_eq!((index.format, index.len()), (DatasetFormat::VilasrRl, 2));
    assert_eq!(index.root, std::fs::canonicalize(dir.path()).unwrap());
    let r = index.record(1).unwrap();
    assert_eq!(r.fields["question"], "second");
    assert_eq!(r.file_record, 1);
    let s = r.to_sample().unwrap();
    assert_eq!(s.media.images()[0].path, index.root.join("a.png").to_string_lossy());
    assert_eq!(s.grid_size, Some(5));
    let e = index.record(2).unwrap_err().to_string();
    assert!(e.contains("record 2 is out of range") && e.contains("2 records"), "{e}");
    assert_eq!(index.iter().filter(|r| r.is_ok()).count(), 2);
}

#[test]
fn open_options_override_root_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "sub/rl.jsonl", VILASR_RL);
    let index =
        DatasetIndex::open_with(&p, &OpenOptions { root: Some(dir.path().to_path_buf()), ..Default::default() }).unwrap();
    assert_eq!(index.root, std::fs::canonicalize(dir.path()).unwrap());
    let index = DatasetIndex::open_as(&p, DatasetFormat::Benchmark).unwrap();
    assert_eq!(index.format, DatasetFormat::Benchmark);
}

#[test]
fn llamafactory_registry_with_custom_tags_and_selection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "dataset_info.json",
        r#"{
  "mine": {"file_name": "cold/mine.json", "formatting": "sharegpt",
           "columns": {"messages": "msgs", "images": "pics", "system": "sys"},
           "tags": {"role_tag": "r", "content_tag": "c", "user_tag": "U", "assistant_tag": "A"}},
  "plain": {"file_name": "plain.jsonl", "formatting": "sharegpt", "columns": {"images": "images"}},
  "alp": {"file_name": "alp.json"},
  "gone": {"file_name": "gone.json", "formatting": "sharegpt"},
  "hub": {"hf_hub_url": "x/y", "formatting": "sharegpt"},
  "evil": {"file_name": "../evil.json", "formatting": "sharegpt"}
}"#,
    );
    write(
        d,
        "cold/mine.json",
        r#"[{"msgs": [{"r": "U", "c": "<image>What?"}, {"r": "A", "c": "That."}], "pics": ["p/1.png"], "sys": "S"},
            {"msgs": [{"r": "U", "c": "again"}, {"r": "A", "c": "ok"}], "pics": []}]"#,
    );
    // LLaMA-Factory's default sharegpt tags are from/value/human/gpt.
    write(d, "plain.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}, {\"from\": \"gpt\", \"value\": \"yo\"}]}\n");
    let index = DatasetIndex::open(d).unwrap();
    assert_eq!(index.len(), 3);
    assert_eq!(index.files().len(), 2);
    assert_eq!(index.skipped().len(), 4, "{:?}", index.skipped());
    assert!(index.skipped().iter().any(|s| s.starts_with("evil:") && s.contains("escapes")));
    let t = index.record(0).unwrap().to_trajectory().unwrap();
    assert_eq!(t.system_prompt.as_deref(), Some("S"));
    assert_eq!(t.sample.question, "What?");
    assert_eq!(t.turns[0].assistant_text, "That.");
    assert!(t.sample.media.images()[0].path.ends_with("p/1.png"));
    let r = index.record(2).unwrap();
    assert_eq!((r.file_record, r.dataset.as_deref()), (0, Some("plain")));
    assert_eq!(r.to_trajectory().unwrap().turns[0].assistant_text, "yo");
    // A lone sharegpt file registered there uses the registry's folder as root and its tags.
    let lone = DatasetIndex::open_as(d.join("cold/mine.json"), DatasetFormat::Sharegpt).unwrap();
    assert_eq!(lone.root, std::fs::canonicalize(d).unwrap());
    assert_eq!(lone.record(0).unwrap().to_trajectory().unwrap().turns[0].assistant_text, "That.");
    // Selecting entries.
    let only = DatasetIndex::open_with(d, &OpenOptions { datasets: Some(vec!["plain".into()]), ..Default::default() }).unwrap();
    assert_eq!(only.len(), 1);
    let e = DatasetIndex::open_with(d, &OpenOptions { datasets: Some(vec!["nope".into()]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("no dataset named \"nope\""), "{e}");
}

#[test]
fn error_messages_name_file_record_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(&str, &[u8], DatasetFormat, &str)> = vec![
        ("trunc.json", b"[{\"a\": 1}, {\"b\": \"x", DatasetFormat::Benchmark, "trunc.json: record 1: truncated JSON: unterminated string"),
        ("open.json", b"[{\"a\": 1}", DatasetFormat::Benchmark, "open.json: record 0: truncated JSON: unterminated array"),
        ("garbage.json", b"hello", DatasetFormat::Benchmark, "garbage.json: invalid JSON: expected a JSON array"),
    ];
    for (name, bytes, format, want) in cases {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        let e = DatasetIndex::open_as(&p, format).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}", p.display())), "{e}");
        assert!(e.contains(want.split_once(": ").unwrap().1), "{e} vs {want}");
    }
    // Record-level problems: bad UTF-8, bad JSON, a truncated last line, a non-object record.
    let p = d.join("rl.jsonl");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(VILASR_RL.as_bytes()).unwrap();
    f.write_all(b"\n{\"question\": \"\xff\xfe\"}\n{\"question\": }\n[1, 2]\n{\"question\": \"cut").unwrap();
    drop(f);
    let index = DatasetIndex::open_as(&p, DatasetFormat::VilasrRl).unwrap();
    assert_eq!(index.len(), 5);
    let shown = p.display().to_string();
    let msgs: Vec<String> = (1..5).map(|i| index.record(i).unwrap_err().to_string()).collect();
    assert!(msgs[0].starts_with(&format!("{shown}: record 1: not valid UTF-8")), "{}", msgs[0]);
    assert!(msgs[1].starts_with(&format!("{shown}: record 2: invalid JSON")), "{}", msgs[1]);
    assert_eq!(msgs[2], format!("{shown}: record 3: wrong shape: expected a JSON object, found list"));
    assert!(msgs[3].starts_with(&format!("{shown}: record 4: truncated JSON")), "{}", msgs[3]);
    // The file changing under the index is an I/O error, not a panic.
    std::fs::write(&p, "{}").unwrap();
    assert!(index.record(4).unwrap_err().to_string().contains("cannot read"));
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INSERT: &[u8] = b"[]{}\",:\\\n\xff";

/// Open, read, convert and validate whatever the bytes hold; only errors are allowed.
fn exercise(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let _ = detect_format(&p);
    for format in DatasetFormat::ALL {
        let Ok(index) = DatasetIndex::open_as(&p, format) else { continue };
        for i in 0..index.len().min(50) {
            if let Ok(r) = index.record(i) {
                let _ = r.to_sample();
                let _ = r.to_trajectory();
                let _ = r.image_paths();
            }
        }
        let _ = validate(&index, true);
    }
}

#[test]
fn never_panics_on_truncated_garbled_or_random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let results_obs = RESULTS.replace(
        r#"{"role": "assistant", "content": "A"}"#,
        r#"{"role": "assistant", "content": "A"}, {"role": "user", "content": [{"type": "text", "text": "<|vision_start|><|image_pad|><|vision_end|>x"}]}"#,
    );
    let seeds: Vec<(String, &str)> = vec![
        (SHAREGPT.to_string(), "s.json"),
        (SFT.to_string(), "t.json"),
        (format!("{VILASR_RL}\n{VILASR_RL}\n"), "r.jsonl"),
        (format!("{VILAVT_RL}\n"), "v.jsonl"),
        (BENCH.to_string(), "b.json"),
        (format!("{RESULTS}\n{results_obs}\n"), "results.jsonl"),
        (r#"{"x": {"file_name": "s.json", "formatting": "sharegpt"}}"#.to_string(), "dataset_info.json"),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (text, name) in &seeds {
        let bytes = text.as_bytes();
        // Every truncation.
        for cut in 0..bytes.len() {
            exercise(d, name, &bytes[..cut]);
        }
        // Random byte flips, insertions of structural bytes and deletions.
        for _ in 0..150 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(4) {
                    0 => b[at] = rng.next() as u8,
                    1 => b.insert(at, INSERT[rng.below(INSERT.len())]),
                    2 => {
                        b.remove(at);
                    }
                    _ => b[at] = INSERT[rng.below(INSERT.len() - 1)],
                }
                if b.is_empty() {
                    break;
                }
            }
            exercise(d, name, &b);
        }
    }
    // Pure noise, and pathological nesting.
    for len in [1usize, 7, 64, 1000, 70_000] {
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(d, "noise.json", &noise);
        let mut bracketed = b"[".to_vec();
        bracketed.extend(&noise);
        exercise(d, "noise2.json", &bracketed);
    }
    exercise(d, "deep.json", &[b'['; 100_000]);
    let mut deep = vec![b'['; 10_000];
    deep.extend(vec![b']'; 10_000]);
    exercise(d, "deep2.json", &deep);
}

/// Synthetic datasets the size of SR-91k: the index must hold every record.
#[test]
fn indexes_91k_records() {
    const N: usize = 91_000;
    let dir = tempfile::tempdir().unwrap();
    let array = dir.path().join("SR_91k.json");
    let lines = dir.path().join("rl.jsonl");
    {
        let mut a = std::io::BufWriter::new(std::fs::File::create(&array).unwrap());
        let mut l = std::io::BufWriter::new(std::fs::File::create(&lines).unwrap());
        a.write_all(b"[\n").unwrap();
        for i in 0..N {
            if i > 0 {
                a.write_all(b",\n").unwrap();
            }
            write!(
                a,
                r#"  {{"conversations": [{{"role": "user", "content": "<image>\n### Question:\nWhat is at [{i}, \"]\"]?\n"}}, {{"role": "assistant", "content": "<think>{{\"x\": {i}}}</think> <answer>A</answer>"}}], "images": ["imgs/{i}.png"]}}"#
            )
            .unwrap();
            writeln!(
                l,
                r#"{{"question": "q{i} \"{{[\"", "answer": "A", "image_path": ["imgs/{i}.png"], "data_type": "vqa", "question_type": "multiple choice", "grid_size": null}}"#
            )
            .unwrap();
        }
        a.write_all(b"\n]\n").unwrap();
    }
    let index = DatasetIndex::open(&array).unwrap();
    assert_eq!((index.format, index.len()), (DatasetFormat::Sharegpt, N));
    let last = index.record(N - 1).unwrap().to_trajectory().unwrap();
    assert_eq!(last.sample.question, format!("What is at [{}, \"]\"]?", N - 1));
    assert_eq!(last.turns[0].assistant_text, format!("<think>{{\"x\": {}}}</think> <answer>A</answer>", N - 1));
    let index = DatasetIndex::open(&lines).unwrap();
    assert_eq!((index.format, index.len()), (DatasetFormat::VilasrRl, N));
    assert_eq!(index.record(45_500).unwrap().to_sample().unwrap().question, "q45500 \"{[\"");
}

#[test]
fn index_and_records_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DatasetIndex>();
    assert_send_sync::<Record>();
    assert_send_sync::<DatasetError>();
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..64).map(|i| VILASR_RL.replace("\"q\"", &format!("\"q{i}\"")) + "\n").collect();
    let p = write(dir.path(), "rl.jsonl", &text);
    let index = DatasetIndex::open(&p).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let index = &index;
            s.spawn(move || {
                for i in (t..64).step_by(4) {
                    assert_eq!(index.record(i).unwrap().to_sample().unwrap().question, format!("q{i}"));
                }
            });
        }
    });
}

#[test]
fn byte_order_marks_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "b.json", &format!("\u{feff}{BENCH}"));
    assert_eq!(detect_format(&p).unwrap(), DatasetFormat::Benchmark);
    assert_eq!(DatasetIndex::open(&p).unwrap().record(0).unwrap().to_sample().unwrap().id, "0");
    write(dir.path(), "sg.json", SHAREGPT);
    let info = write(dir.path(), DATASET_INFO, "\u{feff}{\"x\": {\"file_name\": \"sg.json\", \"formatting\": \"sharegpt\", \"columns\": {\"images\": \"images\"}, \"tags\": {\"role_tag\": \"role\", \"content_tag\": \"content\", \"user_tag\": \"user\", \"assistant_tag\": \"assistant\"}}}");
    let index = DatasetIndex::open(&info).unwrap();
    assert_eq!(index.record(0).unwrap().to_trajectory().unwrap().turns[0].assistant_text, "A");
}
