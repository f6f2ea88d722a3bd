//! Image path safety: dataset records name images by paths relative to a dataset root; those
//! paths must stay inside the root, lexically and (when the file exists) after resolving symlinks.

use super::{DatasetError, Location};
use std::path::{Component, Path, PathBuf};

/// Resolve an image path written in a dataset record against the dataset root.
///
/// * `rel` must be relative. Absolute paths (`/x`, `C:\x`, `\\server\x`) are refused.
/// * The path is normalised lexically (`.` dropped, `a/../b` folded); a `..` that would climb
///   above the root is refused.
/// * When the resolved file exists, it and the root are canonicalised and the file must still lie
///   inside the root, which catches symlinks that point outside.
///
/// The returned path is `root` joined with the normalised relative path (not canonicalised).
/// Errors name the root and the path; callers that know the record add it with
/// [`DatasetError::at`].
///
/// Which directory is the root depends on the format (see the module documentation): for
/// LLaMA-Factory it is the folder holding `dataset_info.json`; for ViLaSR RL data, whose paths
/// the reference opens "relative to the working directory", it is the folder holding the `.jsonl`.
pub fn resolve_image(root: &Path, rel: &str) -> Result<PathBuf, DatasetError> {
    resolve_checked(root, None, rel)
}

/// [`resolve_image`] with the canonical root already known (saves a syscall per image).
pub(crate) fn resolve_checked(root: &Path, canonical_root: Option<&Path>, rel: &str) -> Result<PathBuf, DatasetError> {
    let normalised = normalise_relative(rel).map_err(|reason| escape(root, rel, reason))?;
    let joined = root.join(&normalised);
    if let Ok(real) = std::fs::canonicalize(&joined) {
        let canon_root = match canonical_root {
            Some(c) => c.to_path_buf(),
            None => std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
        };
        if !real.starts_with(&canon_root) {
            return Err(escape(
                root,
                rel,
                format!("resolves (through a symlink) to {}, outside the dataset root {}", real.display(), canon_root.display()),
            ));
        }
    }
    Ok(joined)
}

fn escape(root: &Path, rel: &str, reason: String) -> DatasetError {
    DatasetError::PathEscape { loc: Location::file(root.display().to_string()), path: rel.to_string(), reason }
}

/// Fold `.` and `..` in a relative path; refuse absolute paths and paths climbing out.
pub(crate) fn normalise_relative(rel: &str) -> Result<PathBuf, String> {
    if rel.is_empty() {
        return Err("is empty".into());
    }
    if rel.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    // Windows-style absolute forms are refused on every platform: a dataset written on one OS
    // must not reach outside its root on another.
    let b = rel.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if rel.starts_with('/') || rel.starts_with('\\') || drive {
        return Err("is absolute; only paths relative to the dataset root are allowed".into());
    }
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err("escapes the dataset root (`..` climbs above it)".into());
                }
            }
            Component::Normal(s) => {
                // A backslash `..\` is a parent step on Windows.
                if s.to_str().is_some_and(|s| s.split('\\').any(|p| p == "..")) {
                    return Err("contains a `..\\` component, which is refused".into());
                }
                out.push(s)
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute; only paths relative to the dataset root are allowed".into())
            }
        }
    }
    if out.is_empty() {
        return Err("names the dataset root itself, not a file".into());
    }
    Ok(out.iter().collect())
}

/// A relative path as a `/`-separated string (the form written into dataset files).
pub(crate) fn to_slash(p: &Path) -> String {
    let parts: Vec<String> = p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_inside_the_root() {
        let root = Path::new("/data/set");
        assert_eq!(resolve_image(root, "a/b.png").unwrap(), Path::new("/data/set/a/b.png"));
        assert_eq!(resolve_image(root, "./a/../c/./d.jpg").unwrap(), Path::new("/data/set/c/d.jpg"));
    }

    #[test]
    fn escapes_and_absolute_paths_are_refused() {
        let root = Path::new("/data/set");
        for (p, want) in [
            ("../x.png", "escapes"),
            ("a/../../x.png", "escapes"),
            ("/etc/passwd", "absolute"),
            ("\\\\server\\x.png", "absolute"),
            ("C:\\x.png", "absolute"),
            ("a\\..\\..\\x", "..\\"),
            ("", "empty"),
            (".", "root itself"),
        ] {
            let err = resolve_image(root, p).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(want), "{p}: {msg}");
            assert!(msg.contains("/data/set"), "{msg}");
            assert!(msg.contains(&format!("\"{p}\"")), "{msg}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_pointing_outside_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.png"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("ok.png"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.png"), root.path().join("link.png")).unwrap();
        std::os::unix::fs::symlink(root.path().join("ok.png"), root.path().join("inner.png")).unwrap();
        assert!(resolve_image(root.path(), "ok.png").is_ok());
        assert!(resolve_image(root.path(), "inner.png").is_ok());
        let err = resolve_image(root.path(), "link.png").unwrap_err().to_string();
        assert!(err.contains("symlink") && err.contains("link.png"), "{err}");
    }
}
