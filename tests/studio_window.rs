//! A real studio window: the `sightline` binary under Xvfb (software rendering through Mesa) opens
//! the demo, draws the first trajectory and saves a screenshot, which must be a full-size, varied
//! image. The PNG is kept at `target/tmp/studio-window.png` for a person to look at.
//! Needs `xvfb-run` (Debian package `xvfb`) and Mesa; `.ci/run` installs them.
#![cfg(feature = "gui")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn studio_window_under_xvfb_draws_the_demo_and_saves_a_screenshot() {
    let have_xvfb = Command::new("sh").args(["-c", "command -v xvfb-run"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    assert!(have_xvfb, "xvfb-run is not installed: `apt-get install xvfb xauth mesa-vulkan-drivers libgl1-mesa-dri libegl1` (see .ci/run)");
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = out_dir.join("studio-window.png");
    let _ = std::fs::remove_file(&shot);
    let home = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let mut child = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1440x900x24"])
        .arg(env!("CARGO_BIN_EXE_sightline"))
        .arg("studio")
        .arg(&demo)
        .arg("--fresh")
        .arg("--screenshot")
        .arg(&shot)
        .env("HOME", home.path())
        .env("XDG_CACHE_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xvfb-run");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("the studio window did not take its screenshot within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(status.success(), "sightline studio exited with {status}:\n{log}");
    let img = image::open(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", shot.display())).to_rgb8();
    assert!(img.width() >= 800 && img.height() >= 500, "window is {}×{}", img.width(), img.height());
    let mut colours = std::collections::HashSet::new();
    for p in img.pixels().step_by(7) {
        colours.insert(p.0);
    }
    assert!(colours.len() > 200, "the screenshot looks blank ({} colours)", colours.len());
}
