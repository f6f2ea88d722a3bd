//! The synthetic task world end to end: every teacher trajectory of every family scores format 1
//! and accuracy 1 under the ViLaSR RL reward (reflection exactly on the reflective ones), maze
//! answers agree with a BFS over the drawn walls, counting answers with the drawn objects, the
//! outputs read back cleanly through the core readers and share one image pool (every image
//! stored once), generation is byte-identical for any thread count, and `assets/demo` is exactly
//! what its documented command regenerates.

use sha2::{Digest, Sha256};
use sightline::core::datasets::{validate, DatasetFormat, DatasetIndex};
use sightline::core::resize::{fetch_image, DEFAULT_MIN_PIXELS, VILASR_RL_MAX_PIXELS};
use sightline::core::rewards::vilasr::rl_score;
use sightline::core::trajectory::Trajectory;
use sightline::synth::{self, scene, DifficultySetting, Family, Settings, WorkspacePlan};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

const PER_FAMILY: usize = 200;

fn settings(share: f64) -> Settings {
    Settings { difficulty: DifficultySetting::Mixed, reflective_share: share }
}

/// Relative path → sha256 of every file under `root`.
fn hashes(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                let digest = Sha256::digest(std::fs::read(&p).unwrap());
                out.insert(rel, digest.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn generate_into(dir: &Path, family: Option<Family>, n: usize, seed: u64, share: f64, threads: usize) -> synth::WorkspaceSummary {
    let mut plan = WorkspacePlan::new(family, n, seed, settings(share));
    plan.threads = threads;
    synth::write_workspace(dir, &plan, &|_| {}).unwrap()
}

#[test]
fn every_teacher_trajectory_scores_full_marks_and_reflects_exactly_when_planned() {
    for family in Family::ALL {
        let (mut reflective, mut plain) = (0, 0);
        let mut kinds = BTreeMap::new();
        for i in 0..PER_FAMILY {
            let seed = 7919 * i as u64 + 3;
            let (ts, run) = synth::teacher_run(family, seed, i, &settings(0.3)).unwrap_or_else(|e| panic!("{e}"));
            let r = rl_score(&run.sequence, ts.sample.ground_truth.as_deref().unwrap(), &ts.sample.question_type).unwrap();
            assert_eq!((r.format, r.accuracy, r.overall), (1.0, 1.0, 1.0), "{}: {:?}", ts.id, r.reasons);
            assert_eq!(r.reflection, Some(if ts.reflective { 1.0 } else { 0.0 }), "{}", ts.id);
            if ts.reflective {
                reflective += 1;
            } else {
                plain += 1;
            }
            *kinds.entry(ts.kind).or_insert(0) += 1;
            // The model sees the inputs exactly as drawn: sides multiples of 28, within the RL budget.
            for img in &ts.inputs {
                assert_eq!((img.width() % 28, img.height() % 28), (0, 0), "{}", ts.id);
                let seen = fetch_image(image::DynamicImage::ImageRgb8(img.clone()), DEFAULT_MIN_PIXELS, VILASR_RL_MAX_PIXELS).unwrap();
                assert!(seen == *img, "{}: fetch_image changed an input", ts.id);
            }
            assert_eq!(ts.sample.data_type, family.data_type());
            if family == Family::Video {
                assert_eq!(ts.inputs.len(), 16);
            }
        }
        assert!(reflective > 20 && plain > 100, "{family:?}: {reflective} reflective, {plain} plain");
        assert!(kinds.len() >= 3, "{family:?}: question kinds {kinds:?}");
    }
}

#[test]
fn share_zero_and_one_are_respected() {
    for family in Family::ALL {
        for i in 0..10 {
            assert!(!synth::generate(family, 5, i, &settings(0.0)).reflective);
            let (ts, run) = synth::teacher_run(family, 5, i, &settings(1.0)).unwrap();
            assert!(ts.reflective);
            assert_eq!(run.trajectory.rewards.unwrap().reflection, Some(1.0));
        }
    }
}

/// The colour named right before `marker` in the question ("The orange circle marks the start").
fn named_colour(question: &str, marker: &str) -> [u8; 3] {
    let at = question.find(marker).unwrap();
    let words: Vec<&str> = question[..at].split_whitespace().collect();
    scene::colour(words[words.len() - 2]).rgb
}

#[test]
fn maze_answers_agree_with_a_bfs_over_the_drawn_walls() {
    for i in 0..PER_FAMILY {
        let ts = synth::generate(Family::Maze, 11 * i as u64 + 1, i, &settings(0.3));
        let t = &ts.truth;
        let g = t["grid_size"].as_i64().unwrap() as i32;
        let o = t["origin"][0].as_i64().unwrap() as i32;
        let cell = t["cell"].as_i64().unwrap() as i32;
        let start = (t["start"][0].as_i64().unwrap() as i32, t["start"][1].as_i64().unwrap() as i32);
        let goal = (t["goal"][0].as_i64().unwrap() as i32, t["goal"][1].as_i64().unwrap() as i32);
        assert_eq!(ts.sample.grid_size, Some(g as u32));
        let img = &ts.inputs[0];
        let px = |x: i32, y: i32| img.get_pixel(x as u32, y as u32).0;
        // The markers the question names are drawn in the start and goal cells.
        let centre = |(r, c): (i32, i32)| (o + c * cell + cell / 2, o + r * cell + cell / 2);
        let (sx, sy) = centre(start);
        let (gx, gy) = centre(goal);
        assert_eq!(px(sx, sy), named_colour(&ts.sample.question, "marks the start"), "{}", ts.id);
        assert_eq!(px(gx, gy), named_colour(&ts.sample.question, "marks the goal"), "{}", ts.id);
        // Walls read from the pixels: the colour of the outer wall, sampled on cell boundaries.
        let wall = px(o, o + cell / 2);
        let open = |(r, c): (i32, i32), (dr, dc): (i32, i32)| -> bool {
            let (nr, nc) = (r + dr, c + dc);
            if nr < 0 || nr >= g || nc < 0 || nc >= g {
                return false;
            }
            let (x, y) = match (dr, dc) {
                (0, 1) => (o + (c + 1) * cell, o + r * cell + cell / 2),
                (0, -1) => (o + c * cell, o + r * cell + cell / 2),
                (1, 0) => (o + c * cell + cell / 2, o + (r + 1) * cell),
                _ => (o + c * cell + cell / 2, o + r * cell),
            };
            px(x, y) != wall
        };
        let dirs = [((-1, 0), "up"), ((0, 1), "right"), ((1, 0), "down"), ((0, -1), "left")];
        let mut prev = vec![None; (g * g) as usize];
        let mut seen = vec![false; (g * g) as usize];
        let mut q = VecDeque::from([start]);
        seen[(start.0 * g + start.1) as usize] = true;
        while let Some(cur) = q.pop_front() {
            for (d, name) in dirs {
                if open(cur, d) {
                    let next = (cur.0 + d.0, cur.1 + d.1);
                    let k = (next.0 * g + next.1) as usize;
                    if !seen[k] {
                        seen[k] = true;
                        prev[k] = Some((cur, name));
                        q.push_back(next);
                    }
                }
            }
        }
        let mut steps = Vec::new();
        let mut cur = goal;
        while cur != start {
            let (p, name) = prev[(cur.0 * g + cur.1) as usize].unwrap_or_else(|| panic!("{}: goal unreachable", ts.id));
            steps.push(name);
            cur = p;
        }
        steps.reverse();
        let mut runs: Vec<(&str, usize)> = Vec::new();
        for s in &steps {
            match runs.last_mut() {
                Some(r) if r.0 == *s => r.1 += 1,
                _ => runs.push((s, 1)),
            }
        }
        let route = runs.iter().map(|(d, n)| format!("{d} {n}")).collect::<Vec<_>>().join(", ");
        let answer = ts.sample.ground_truth.clone().unwrap();
        let option_text = || {
            let opts = ts.sample.options.as_ref().unwrap();
            opts.iter().find(|o| o.starts_with(&format!("{answer}. "))).unwrap()[answer.len() + 2..].to_string()
        };
        match ts.kind {
            "moves" => assert_eq!(answer, steps.len().to_string(), "{}", ts.id),
            "turns" => assert_eq!(answer, (runs.len() - 1).to_string(), "{}", ts.id),
            "first_move" => assert_eq!(option_text(), steps[0], "{}", ts.id),
            "route" => assert_eq!(option_text(), route, "{}", ts.id),
            other => panic!("unknown maze kind {other}"),
        }
    }
}

/// 8-connected components of exactly `rgb`.
fn components(img: &image::RgbImage, rgb: [u8; 3]) -> usize {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut seen = vec![false; (w * h) as usize];
    let mut n = 0;
    for y in 0..h {
        for x in 0..w {
            if seen[(y * w + x) as usize] || img.get_pixel(x as u32, y as u32).0 != rgb {
                continue;
            }
            n += 1;
            let mut stack = vec![(x, y)];
            seen[(y * w + x) as usize] = true;
            while let Some((cx, cy)) = stack.pop() {
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (cx + dx, cy + dy);
                        if nx >= 0 && ny >= 0 && nx < w && ny < h && !seen[(ny * w + nx) as usize] && img.get_pixel(nx as u32, ny as u32).0 == rgb {
                            seen[(ny * w + nx) as usize] = true;
                            stack.push((nx, ny));
                        }
                    }
                }
            }
        }
    }
    n
}

#[test]
fn counting_answers_equal_the_drawn_target_objects() {
    for i in 0..PER_FAMILY {
        let ts = synth::generate(Family::Count, 13 * i as u64 + 2, i, &settings(0.3));
        let objects = ts.truth["objects"].as_array().unwrap();
        let target = &ts.truth["target"];
        // Every object listed is drawn as one blob of its colour, and nothing else is.
        for c in scene::PALETTE {
            let listed = objects.iter().filter(|o| o["colour"] == c.name).count();
            assert_eq!(components(&ts.inputs[0], c.rgb), listed, "{}: {} blobs", ts.id, c.name);
        }
        let matches = objects
            .iter()
            .filter(|o| {
                (target["colour"].is_null() || o["colour"] == target["colour"]) && (target["shape"].is_null() || o["shape"] == target["shape"])
            })
            .count();
        assert!(matches >= 1);
        assert_eq!(ts.sample.ground_truth.as_deref(), Some(matches.to_string().as_str()), "{}", ts.id);
        assert_eq!(ts.sample.question_type, "numerical");
        // The question names exactly the target.
        let q = &ts.sample.question;
        if let Some(c) = target["colour"].as_str() {
            assert!(q.contains(c), "{q}");
        }
        if let Some(s) = target["shape"].as_str() {
            assert!(q.contains(s), "{q}");
        }
    }
}

#[test]
fn outputs_read_back_cleanly_through_the_core_readers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let summary = generate_into(out, None, 30, 17, 0.4, 2);
    assert_eq!(summary.samples, 30);
    assert!(summary.reflective > 0 && summary.reflective < 30);
    let canon = out.canonicalize().unwrap();
    // Every image the trajectories name, as a path relative to `out`.
    let mut named = BTreeSet::new();
    for family in Family::ALL {
        let rl = out.join(format!("rl_{}.jsonl", family.name()));
        let index = DatasetIndex::open(&rl).unwrap();
        assert_eq!((index.format, index.len()), (DatasetFormat::VilasrRl, 6));
        assert_eq!(index.root, canon);
        let report = validate(&index, true);
        assert!(report.is_ok(), "{}", report.summary(5));
        for k in 0..index.len() {
            let s = index.record(k).unwrap().to_sample().unwrap();
            let folder = out.join("trajectories").join(&s.id);
            let t = Trajectory::load_dir(&folder).unwrap();
            assert_eq!(s.question, t.sample.question);
            assert_eq!(s.ground_truth, t.sample.ground_truth);
            assert_eq!(s.data_type, family.data_type());
            assert_eq!(s.grid_size.is_some(), family == Family::Maze);
            assert_eq!(s.media.is_video(), family == Family::Video || family == Family::Multiview);
            // The RL record and the trajectory name the same input files in the pool.
            let inputs = t.sample.media.images();
            assert_eq!(s.media.images().len(), inputs.len());
            for (k, (a, b)) in s.media.images().iter().zip(inputs).enumerate() {
                assert_eq!(b.path, format!("../../images/{}/input-{}.png", s.id, k + 1));
                assert_eq!(Path::new(&a.path), canon.join(format!("images/{}/input-{}.png", s.id, k + 1)));
            }
            for img in t.all_images() {
                let rel = img.path.strip_prefix("../../").unwrap_or_else(|| panic!("{}: {}", s.id, img.path));
                assert!(rel.starts_with(&format!("images/{}/", s.id)), "{}: {}", s.id, img.path);
                assert!(folder.join(&img.path).is_file(), "{}: {}", s.id, img.path);
                named.insert(rel.to_string());
            }
            let r = t.rewards.as_ref().unwrap();
            assert_eq!((r.format, r.accuracy), (1.0, 1.0));
        }
    }
    // One pool: every image file is named by a trajectory, and no other PNG exists anywhere.
    let files = hashes(out);
    let pngs: BTreeSet<String> = files.keys().filter(|p| p.ends_with(".png")).cloned().collect();
    assert_eq!(pngs, named);
    let top: BTreeSet<String> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(top, synth::output::MANAGED.iter().map(|m| m.to_string()).collect());
    let info = out.join("dataset_info.json");
    let index = DatasetIndex::open(&info).unwrap();
    assert_eq!((index.format, index.len()), (DatasetFormat::LlamaFactory, 30));
    assert_eq!(index.root, canon);
    assert!(index.skipped().is_empty(), "{:?}", index.skipped());
    let report = validate(&index, true);
    assert!(report.is_ok(), "{}", report.summary(5));
    assert_eq!(report.trajectories, 30);
    let names: Vec<String> = index.files().iter().filter_map(|f| f.dataset.clone()).collect();
    for family in Family::ALL {
        assert!(names.contains(&format!("{}_cold_start", family.name())), "{names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with("_reflective")));
    // Each SFT conversation is the trajectory's, turn for turn; reflective ones sit in the
    // reflective subset.
    for k in 0..index.len() {
        let rec = index.record(k).unwrap();
        let back = rec.to_trajectory().unwrap();
        let first_image = &back.sample.media.images()[0].path;
        let id = Path::new(first_image).parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let folder = out.join("trajectories").join(&id);
        let t = Trajectory::load_dir(&folder).unwrap();
        // The SFT record names the same pool files as the trajectory (the trailing observation,
        // which has no assistant reply after it, is not in the conversation).
        let sft_images: Vec<std::path::PathBuf> = back.all_images().iter().map(|i| std::path::PathBuf::from(&i.path)).collect();
        let traj_images: Vec<std::path::PathBuf> =
            t.all_images().iter().map(|i| folder.join(&i.path).canonicalize().unwrap()).collect();
        assert!(!sft_images.is_empty() && sft_images.len() <= traj_images.len());
        assert_eq!(sft_images[..], traj_images[..sft_images.len()], "{id}");
        assert_eq!(back.turns.len(), t.turns.len());
        for (a, b) in back.turns.iter().zip(&t.turns) {
            assert_eq!(a.assistant_text, b.assistant_text);
        }
        assert_eq!(back.system_prompt, t.system_prompt);
        let reflective = t.tags.iter().any(|x| x == "reflective");
        assert_eq!(rec.dataset.as_deref().unwrap().ends_with("_reflective"), reflective);
    }
}

#[test]
fn generation_is_byte_identical_for_any_thread_count() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    generate_into(a.path(), None, 15, 99, 0.5, 1);
    generate_into(b.path(), None, 15, 99, 0.5, 3);
    let (ha, hb) = (hashes(a.path()), hashes(b.path()));
    assert!(ha.len() > 100);
    assert_eq!(ha, hb);
    // A single family run gives the same samples as the same family inside `all`.
    let c = tempfile::tempdir().unwrap();
    generate_into(c.path(), Some(Family::Video), 3, 99, 0.5, 2);
    let hc = hashes(c.path());
    for (path, h) in &hc {
        if path.starts_with("trajectories/") || path.starts_with("images/") {
            assert_eq!(ha.get(path), Some(h), "{path}");
        }
    }
    // Another seed gives other data.
    let d = tempfile::tempdir().unwrap();
    generate_into(d.path(), None, 15, 100, 0.5, 2);
    assert_ne!(ha.get("rl_maze.jsonl"), hashes(d.path()).get("rl_maze.jsonl"));
}

#[test]
fn assets_demo_is_what_its_command_regenerates() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join(synth::DEMO_WORKSPACE);
    assert!(committed.join("synth.json").is_file(), "assets/demo is missing; see README \"Synthetic data\"");
    let dir = tempfile::tempdir().unwrap();
    let plan = WorkspacePlan::new(None, synth::DEMO_SAMPLES, synth::DEMO_SEED, Settings::default());
    synth::write_workspace(dir.path(), &plan, &|_| {}).unwrap();
    let (want, got) = (hashes(&committed), hashes(dir.path()));
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "assets/demo differs from a regenerated copy: missing {missing:?}, extra {extra:?}, different {differ:?}"
    );
    let total: u64 = want.keys().map(|k| std::fs::metadata(committed.join(k)).unwrap().len()).sum();
    assert!(total <= 8_000_000, "assets/demo holds {total} bytes");
    // A few hundred trajectories over every family, a share of them reflective.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(committed.join("synth.json")).unwrap()).unwrap();
    assert!(synth::DEMO_SAMPLES >= 200 && doc["samples"] == synth::DEMO_SAMPLES, "{}", doc["samples"]);
    for family in Family::ALL {
        let f = &doc["families"][family.name()];
        assert!(f["samples"].as_u64().unwrap() >= 40 && f["reflective"].as_u64().unwrap() >= 1, "{family:?}: {f}");
    }
}

fn sightline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sightline")).args(args).output().unwrap()
}

#[test]
fn cli_generates_validates_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ws");
    let out_s = out.to_str().unwrap();
    let o = sightline(&["synth", "--task", "relation", "--n", "4", "--seed", "3", "--out", out_s, "--reflective-share", "0.5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("generated 4 samples"));
    for f in ["rl_relation.jsonl", "dataset_info.json"] {
        let o = sightline(&["dataset", "validate", out.join(f).to_str().unwrap(), "--check-images"]);
        assert!(o.status.success(), "{f}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    }
    // An existing workspace is not replaced without --overwrite; with it, only the workspace's
    // own entries are replaced.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = sightline(&["synth", "--task", "relation", "--n", "4", "--seed", "3", "--out", out_s]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    let o = sightline(&["synth", "--task", "maze", "--n", "2", "--seed", "3", "--out", out_s, "--overwrite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("rl_relation.jsonl").exists() && out.join("rl_maze.jsonl").exists());
    assert!(!out.join("images/relation-000000").exists() && out.join("images/maze-000001").is_dir());
    assert!(!out.join("sft/cold_start/relation.json").exists() && !out.join("trajectories/relation-000000").exists());
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    // Out-of-range arguments: clear error, exit 2.
    let bad_out = dir.path().join("bad");
    for bad in [
        vec!["--task", "maze", "--n", "0", "--seed", "1"],
        vec!["--task", "maze", "--n", "2000000", "--seed", "1"],
        vec!["--task", "maze", "--n", "3", "--seed", "1", "--reflective-share", "1.5"],
        vec!["--task", "maze", "--n", "3", "--seed", "1", "--reflective-share", "nan"],
        vec!["--task", "tetris", "--n", "3", "--seed", "1"],
        vec!["--task", "maze", "--n", "3", "--seed", "-4"],
        vec!["--task", "maze", "--n", "3", "--seed", "1", "--threads", "0"],
    ] {
        let mut args = vec!["synth"];
        args.extend(bad.iter().copied());
        args.extend(["--out", bad_out.to_str().unwrap()]);
        let o = sightline(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).trim().is_empty(), "{bad:?}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{bad:?}");
    }
}

#[test]
fn synth_depends_only_on_core() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/synth");
    let mut problems = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("//!"), "{} must start with a //! summary", p.display());
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in ["burn", "egui", "eframe", "wgpu", "clap", "indicatif"] {
                if code.contains(&format!("{bad}::")) || code.contains(&format!("use {bad}")) {
                    problems.push(format!("{}:{}: uses {bad}", p.display(), n + 1));
                }
            }
            for up in ["crate::model", "crate::cli", "crate::rollout", "crate::train", "crate::ui"] {
                if code.contains(up) {
                    problems.push(format!("{}:{}: reaches up to {up}", p.display(), n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
