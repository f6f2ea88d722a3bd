//! Video frames for the viewer. Samples whose frames are listed as image files use them directly;
//! a frame entry naming a folder lists the images inside it; a sample that only names a video
//! file (`.mp4`, …) gets its frames extracted with `ffmpeg` on a background thread into a cache
//! folder. Without ffmpeg the strip says so and everything else keeps working.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use crate::core::trajectory::{Media, Trajectory};

enum State {
    Ready(Vec<PathBuf>),
    Extracting(Receiver<Result<Vec<PathBuf>, String>>),
    Failed(String),
}

/// Frames of one video sample.
pub struct FrameSource {
    state: State,
    /// 0-based frame under the scrubber.
    pub current: usize,
}

const IMAGE_EXTS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

impl FrameSource {
    pub fn new(t: &Trajectory, base_dir: &Path) -> Self {
        let resolve = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            }
        };
        let Media::VideoFrames { frames, video } = &t.sample.media else {
            return FrameSource { state: State::Ready(Vec::new()), current: 0 };
        };
        if frames.len() == 1 && resolve(&frames[0].path).is_dir() {
            let dir = resolve(&frames[0].path);
            return FrameSource { state: list_frames(&dir).map(State::Ready).unwrap_or_else(State::Failed), current: 0 };
        }
        if !frames.is_empty() {
            return FrameSource { state: State::Ready(frames.iter().map(|f| resolve(&f.path)).collect()), current: 0 };
        }
        let Some(video) = video else {
            return FrameSource { state: State::Failed("this video sample names no frames and no video file".into()), current: 0 };
        };
        let video = resolve(video);
        if video.is_dir() {
            return FrameSource { state: list_frames(&video).map(State::Ready).unwrap_or_else(State::Failed), current: 0 };
        }
        let (tx, rx) = sync_channel(1);
        let _ = std::thread::Builder::new().name("sightline-ffmpeg".into()).spawn(move || {
            let _ = tx.send(extract_frames(&video, &cache_dir(&video)));
        });
        FrameSource { state: State::Extracting(rx), current: 0 }
    }

    /// A message while frames are not available (extracting, or why they cannot be).
    pub fn status(&mut self) -> Option<String> {
        if let State::Extracting(rx) = &self.state {
            match rx.try_recv() {
                Ok(Ok(v)) => self.state = State::Ready(v),
                Ok(Err(e)) => self.state = State::Failed(e),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Some("extracting frames with ffmpeg…".into()),
                Err(_) => self.state = State::Failed("frame extraction stopped unexpectedly".into()),
            }
        }
        match &self.state {
            State::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.state {
            State::Ready(v) => v.len(),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file of frame `i` once known.
    pub fn frame_path(&self, i: usize) -> Option<PathBuf> {
        match &self.state {
            State::Ready(v) => v.get(i).cloned(),
            _ => None,
        }
    }
}

fn list_frames(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str())))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(format!("{}: the frame folder holds no images", dir.display()));
    }
    Ok(v)
}

fn cache_dir(video: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    video.hash(&mut h);
    if let Ok(m) = std::fs::metadata(video) {
        m.len().hash(&mut h);
        m.modified().ok().hash(&mut h);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sightline").join("frames").join(format!("{:016x}", h.finish()))
}

/// Extract frames (2 per second, at most 64) with `ffmpeg` from PATH into `out` (reused when present).
pub fn extract_frames(video: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    extract_frames_with(Path::new("ffmpeg"), video, out)
}

/// [`extract_frames`] with an explicit ffmpeg program.
pub fn extract_frames_with(ffmpeg: &Path, video: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    if !video.is_file() {
        return Err(format!("{}: video file not found", video.display()));
    }
    if let Ok(v) = list_frames(out) {
        return Ok(v);
    }
    let probe = std::process::Command::new(ffmpeg).arg("-version").output();
    if probe.is_err() {
        return Err(format!(
            "{}: ffmpeg is not installed, so .mp4 frames cannot be shown (install ffmpeg, or point the sample at a folder of frames)",
            video.display()
        ));
    }
    let tmp = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let status = std::process::Command::new(ffmpeg)
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(video)
        .args(["-vf", "fps=2", "-frames:v", "64"])
        .arg(tmp.join("frame-%04d.png"))
        .output()
        .map_err(|e| format!("running ffmpeg: {e}"))?;
    if !status.status.success() {
        return Err(format!("{}: ffmpeg failed: {}", video.display(), String::from_utf8_lossy(&status.stderr).trim()));
    }
    let _ = std::fs::remove_dir_all(out);
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    list_frames(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_video_frames() -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/images/video-000000");
        list_frames(&dir).unwrap().into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("input-")).collect()
    }

    #[test]
    fn missing_ffmpeg_is_a_clear_message_naming_the_video() {
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("clip.mp4");
        std::fs::write(&video, b"not really a video").unwrap();
        let e = extract_frames_with(Path::new("/nonexistent/ffmpeg"), &video, &dir.path().join("out")).unwrap_err();
        assert!(e.contains("ffmpeg is not installed") && e.contains("clip.mp4"), "{e}");
        let e = extract_frames(&dir.path().join("absent.mp4"), &dir.path().join("out")).unwrap_err();
        assert!(e.contains("absent.mp4") && e.contains("not found"), "{e}");
    }

    #[test]
    fn frames_are_extracted_from_an_mp4_with_ffmpeg() {
        // CI installs ffmpeg (.ci/run); make a 16-frame, 8 fps clip from the demo's video frames.
        let frames = demo_video_frames();
        assert_eq!(frames.len(), 16);
        let dir = tempfile::tempdir().unwrap();
        for (i, f) in frames.iter().enumerate() {
            std::fs::copy(f, dir.path().join(format!("f{i:02}.png"))).unwrap();
        }
        let video = dir.path().join("clip.mp4");
        let made = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-framerate", "8", "-i"])
            .arg(dir.path().join("f%02d.png"))
            .args(["-pix_fmt", "yuv420p"])
            .arg(&video)
            .status()
            .expect("ffmpeg is needed for this test (apt-get install ffmpeg)");
        assert!(made.success());
        let out = dir.path().join("frames");
        let got = extract_frames(&video, &out).unwrap();
        assert_eq!(got.len(), 4, "2 s of video at 2 frames per second");
        let img = image::open(&got[0]).unwrap();
        assert_eq!((img.width(), img.height()), (224, 168));
        // A second call reuses the extracted frames.
        assert_eq!(extract_frames(&video, &out).unwrap(), got);
    }
}
