//! Every embedded prompt file is byte-exact with the reference manifest (sha256, length, trailing
//! newline), and every reference prompt file is embedded.

use sha2::{Digest, Sha256};
use sightline::core::prompts::ALL_PROMPT_FILES;

#[test]
fn prompt_files_match_manifest() {
    let manifest: serde_json::Value = serde_json::from_str(include_str!("fixtures/prompts_manifest.json")).unwrap();
    let entries = manifest.as_object().unwrap();
    let mut checked = 0;
    for (name, meta) in entries {
        if !name.ends_with(".txt") {
            continue;
        }
        let (_, text) = ALL_PROMPT_FILES.iter().find(|(f, _)| f == name).unwrap_or_else(|| panic!("{name} is not embedded"));
        let digest = format!("{:x}", Sha256::digest(text.as_bytes()));
        assert_eq!(digest, meta["sha256"].as_str().unwrap(), "{name}: sha256");
        assert_eq!(text.len() as u64, meta["bytes"].as_u64().unwrap(), "{name}: length");
        assert_eq!(text.ends_with('\n'), meta["ends_with_newline"].as_bool().unwrap(), "{name}: trailing newline");
        for p in meta["placeholders"].as_array().into_iter().flatten() {
            let p = p.as_str().unwrap();
            assert!(text.contains(&format!("{{{p}}}")), "{name}: placeholder {p}");
        }
        checked += 1;
    }
    assert_eq!(checked, ALL_PROMPT_FILES.len(), "manifest and embedded files differ in count");
}
