//! The core layer stays plain: no burn, egui, eframe or wgpu, and nothing from the layers above.
//! (CI also builds and tests the crate with `--no-default-features`, which leaves burn out.)

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn core_depends_on_no_gui_or_tensor_crate_and_no_upper_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "src/core should hold the core modules");
    let forbidden = ["burn", "egui", "eframe", "wgpu", "clap", "indicatif"];
    let upper = ["crate::model", "crate::rollout", "crate::train", "crate::ui", "crate::cli"];
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for c in forbidden {
                if code.contains(&format!("{c}::")) || code.contains(&format!("use {c}")) || code.contains(&format!("extern crate {c}")) {
                    problems.push(format!("{}:{}: uses `{c}`", f.display(), n + 1));
                }
            }
            for u in upper {
                if code.contains(u) {
                    problems.push(format!("{}:{}: reaches up to `{u}`", f.display(), n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "core layering violated:\n{}", problems.join("\n"));
}

#[test]
fn model_and_synth_never_reach_up_to_the_studio() {
    // Arrows point one way: core ← model ← rollout ← train ← ui. The model layer (and the synthetic
    // world, which sits on core) must not use egui/eframe or anything above them.
    for (dir, upper) in [
        ("src/model", &["crate::rollout", "crate::train", "crate::ui", "egui::", "eframe::", "use egui", "use eframe"][..]),
        ("src/synth", &["crate::model", "crate::rollout", "crate::train", "crate::ui", "egui::", "eframe::", "burn::"][..]),
    ] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        assert!(!files.is_empty(), "{dir} should exist");
        let mut problems = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for u in upper {
                    if code.contains(u) {
                        problems.push(format!("{}:{}: reaches up to `{u}`", f.display(), n + 1));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{dir} layering violated:\n{}", problems.join("\n"));
    }
}
