//! Differential test of the ViLaSR executor and loop control against the reference Python.
//!
//! `tests/fixtures/executor_cases.json` is produced by `tools/executor_fixtures.py`, which drives
//! the reference `process_single_response` (eval `eval/infer.py` and the RL rollout) turn by turn
//! the way the reference rollout loop does, with Pillow 12.3.0. Every case is replayed here
//! through [`VilasrSession`] (kinds, finish reasons, kept/dropped images, final-prompt choice,
//! scheduling) and, for every executed turn, through [`execute_response`] on a copy of the
//! session's state (all images the executor returned, including those the image cap drops):
//! base indices, sizes and sha256 of the RGB bytes must be identical.
//!
//! `SIGHTLINE_EXECUTOR_CASES=path` replays another file written by the generator instead.
//! Not covered (see the generator's docstring): coordinates beyond the C `int` range, where
//! Pillow's result is C undefined behaviour.

use std::collections::BTreeMap;

use image::{Rgb, RgbImage};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sightline::core::executor::{execute_response, ExecutorFixes, Profile, StepOutcome};
use sightline::core::session::VilasrSession;
use sightline::core::trajectory::FinishReason;

fn build_image(spec: &[Value]) -> RgbImage {
    let v: Vec<u64> = spec.iter().map(|x| x.as_u64().expect("image spec numbers")).collect();
    let (w, h, r, g, b) = (v[0] as u32, v[1] as u32, v[2], v[3], v[4]);
    if v.len() == 5 {
        return RgbImage::from_pixel(w, h, Rgb([r as u8, g as u8, b as u8]));
    }
    let (a, b2, c) = (v[5], v[6], v[7]);
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (u64::from(x), u64::from(y));
        Rgb([((r + a * x) % 256) as u8, ((g + b2 * y) % 256) as u8, ((b + c * (x + y)) % 256) as u8])
    })
}

fn sha(img: &RgbImage) -> String {
    let d = Sha256::digest(img.as_raw());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn reason(s: &str) -> FinishReason {
    FinishReason::parse(s)
}

fn kind_of(outcome: &StepOutcome) -> String {
    match outcome {
        StepOutcome::Observations(o) => format!("observations({})", o.len()),
        StepOutcome::Terminal { reason, detail } => format!("terminal {} ({detail})", reason.as_str()),
        StepOutcome::NoResult { detail } => format!("none ({detail})"),
    }
}

/// Replay one case under one profile; returns the mismatches found.
fn replay(case: &Value, profile: Profile, run: &Value, stats: &mut BTreeMap<String, usize>) -> Vec<String> {
    let id = case["id"].as_u64().unwrap();
    let tag = case["tag"].as_str().unwrap();
    let pname = match profile {
        Profile::Eval => "eval",
        Profile::Rl => "rl",
    };
    let mut errs = Vec::new();
    let mut err = |turn: usize, msg: String| errs.push(format!("case {id} ({tag}) {pname} turn {turn}: {msg}"));

    let inputs: Vec<RgbImage> = case["images"].as_array().unwrap().iter().map(|s| build_image(s.as_array().unwrap())).collect();
    let responses: Vec<&str> = case["responses"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let length: Vec<u64> = case.get("length").and_then(|l| l.as_array()).map(|l| l.iter().map(|x| x.as_u64().unwrap()).collect()).unwrap_or_default();
    let steps = case["steps"].as_u64().unwrap() as usize;
    let fixes = ExecutorFixes::default();
    let maze = case.get("maze").and_then(|m| m.as_bool()).unwrap_or(false);
    let mut s = VilasrSession::new(inputs, profile, maze, Some(steps), fixes);

    for (ti, want) in run["turns"].as_array().unwrap().iter().enumerate() {
        if !s.can_generate() {
            err(ti, "the session would not schedule this turn".into());
            return errs;
        }
        let response = responses[ti];
        let gen = if length.contains(&(ti as u64)) { FinishReason::Length } else { FinishReason::Stop };
        let k = want["k"].as_str().unwrap();
        *stats.entry(format!("{pname} {k}{}", want.get("r").and_then(|r| r.as_str()).map(|r| format!(" {r}")).unwrap_or_default())).or_default() += 1;

        // The executor itself, on copies (the session below does the same call for real).
        let direct = matches!(k, "obs" | "terminal" | "none").then(|| {
            let mut state = s.state.clone();
            execute_response(response, &s.images, &mut state, profile, fixes)
        });
        let before = s.images.len();
        let t = s.apply(response, gen.clone());

        match k {
            "obs" => {
                if t.kind != "executed" {
                    err(ti, format!("expected observations, session says {} {:?} {:?}", t.kind, t.finish_reason, t.notes));
                    continue;
                }
                let want_imgs = want["img"].as_array().unwrap();
                let want_bases = want["b"].as_array().unwrap();
                let outcome = &direct.as_ref().unwrap().outcome;
                let StepOutcome::Observations(obs) = outcome else {
                    err(ti, format!("executor: expected observations, got {}", kind_of(outcome)));
                    continue;
                };
                if obs.len() != want_imgs.len() {
                    err(ti, format!("{} observations, reference {}", obs.len(), want_imgs.len()));
                    continue;
                }
                for (j, (o, w)) in obs.iter().zip(want_imgs).enumerate() {
                    let raw = want_bases[j].as_i64().unwrap();
                    let base = if raw < 0 { raw + before as i64 } else { raw };
                    if o.base as i64 != base {
                        err(ti, format!("image {j}: base slot {} , reference {raw} (→ {base})", o.base));
                    }
                    if o.slot != before + j {
                        err(ti, format!("image {j}: slot {} , expected {}", o.slot, before + j));
                    }
                    let (wh, ww, whh) = (w[0].as_str().unwrap(), w[1].as_u64().unwrap() as u32, w[2].as_u64().unwrap() as u32);
                    if o.image.dimensions() != (ww, whh) {
                        err(ti, format!("image {j}: size {:?}, reference {ww}x{whh}", o.image.dimensions()));
                    } else if sha(&o.image) != wh {
                        err(ti, format!("image {j} (base {}): pixels differ from the reference", o.base));
                    }
                }
                let kept = want["kept"].as_u64().unwrap() as usize;
                if t.new_images.len() != kept || t.dropped_images != want_imgs.len() - kept {
                    err(ti, format!("kept {} / dropped {}, reference kept {kept} of {}", t.new_images.len(), t.dropped_images, want_imgs.len()));
                }
                for (j, &(num, on)) in t.new_images.iter().enumerate() {
                    if num != before + j + 1 || Some(on - 1) != obs.get(j).map(|o| o.base) {
                        err(ti, format!("session new image {j} = ({num}, {on})"));
                    }
                    if s.images.get(before + j).map(sha) != obs.get(j).map(|o| sha(&o.image)) {
                        err(ti, format!("session image {} differs from the executor's", before + j + 1));
                    }
                }
                let fin = t.observation_text.as_deref().unwrap_or("").contains("you can not invoke");
                if fin != want["final"].as_bool().unwrap() {
                    err(ti, format!("final prompt {fin}, reference {}", want["final"]));
                }
            }
            "terminal" => {
                let r = reason(want["r"].as_str().unwrap());
                if t.kind != "terminal" || t.finish_reason.as_ref() != Some(&r) {
                    err(ti, format!("expected terminal {}, session says {} {:?} {:?}", r.as_str(), t.kind, t.finish_reason, t.notes));
                }
                let outcome = &direct.as_ref().unwrap().outcome;
                if !matches!(outcome, StepOutcome::Terminal { reason, .. } if *reason == r) {
                    err(ti, format!("executor: expected terminal {}, got {}", r.as_str(), kind_of(outcome)));
                }
            }
            "none" => {
                if t.kind != "regenerate" {
                    err(ti, format!("expected None (regenerate), session says {} {:?} {:?}", t.kind, t.finish_reason, t.notes));
                }
                let outcome = &direct.as_ref().unwrap().outcome;
                if !matches!(outcome, StepOutcome::NoResult { .. }) {
                    err(ti, format!("executor: expected None, got {}", kind_of(outcome)));
                }
            }
            "answer" | "last" => {
                let want_kind = if k == "answer" { "answer" } else { "last_generation" };
                let r = reason(want["r"].as_str().unwrap());
                if t.kind != want_kind || t.finish_reason.as_ref() != Some(&r) {
                    err(ti, format!("expected {want_kind} {}, session says {} {:?}", r.as_str(), t.kind, t.finish_reason));
                }
            }
            other => panic!("unknown turn kind {other}"),
        }
    }
    let end = run["end"].as_str().unwrap();
    let n = run["turns"].as_array().unwrap().len();
    match end {
        "stopped" if s.can_generate() => err(n, "the reference stops here, the session would generate again".into()),
        "exhausted" if !s.can_generate() => err(n, "the reference would generate again, the session stops".into()),
        _ => {}
    }
    errs
}

#[test]
fn executor_matches_reference_fixtures() {
    // `SIGHTLINE_EXECUTOR_CASES=path` replays another file written by the generator (`--out`).
    let other = std::env::var("SIGHTLINE_EXECUTOR_CASES").ok();
    let fx: Value = match &other {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
        None => serde_json::from_str(include_str!("fixtures/executor_cases.json")).unwrap(),
    };
    let header = &fx["header"];
    assert_eq!(header["pillow"], "12.3.0", "fixtures must come from Pillow 12.3.0");
    assert_eq!(header["max_images"]["eval"].as_u64().unwrap() as usize, Profile::Eval.limits().max_images);
    assert_eq!(header["max_images"]["rl"].as_u64().unwrap() as usize, Profile::Rl.limits().max_images);
    let cases = fx["cases"].as_array().unwrap();
    assert!(other.is_some() || cases.len() >= 200, "only {} cases", cases.len());

    let mut stats = BTreeMap::new();
    let mut errs = Vec::new();
    for case in cases {
        for (profile, key) in [(Profile::Eval, "eval"), (Profile::Rl, "rl")] {
            let run = match &case[key] {
                Value::String(other) => &case[other.as_str()],
                v => v,
            };
            errs.extend(replay(case, profile, run, &mut stats));
        }
    }
    eprintln!("{} cases replayed under eval and RL; turns: {stats:?}", cases.len());
    if !errs.is_empty() {
        for e in errs.iter().take(40) {
            eprintln!("{e}");
        }
        panic!("{} mismatches with the reference (first {} shown)", errs.len(), errs.len().min(40));
    }
}
