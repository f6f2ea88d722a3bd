//! Loading a Hugging Face checkpoint folder: `config.json`, then `model.safetensors` or the shards
//! named by `model.safetensors.index.json`, through burn-store with one key-remap table (the
//! transformers 4.5x keys `model.layers.*`/`visual.*`/`lm_head` and the newer
//! `model.language_model.*`/`model.visual.*`). Weights are cast to the compute dtype on the way in;
//! missing, unexpected and mis-shaped tensors are named in the error with their file.

use super::config::Qwen25VlConfig;
use super::qwen::{Qwen25Vl, Qwen25VlWeights};
use burn::tensor::backend::Backend;
use burn::tensor::DType;
use burn_store::{ApplyError, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, TensorSnapshot};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Checkpoint key → module path, applied in order (the only remapping there is).
pub const KEY_REMAP: &[(&str, &str)] = &[
    // transformers ≥ 4.52 / 5 layout
    (r"^model\.language_model\.", "model."),
    (r"^model\.visual\.", "visual."),
    // vLLM-style prefixes
    (r"^language_model\.model\.", "model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    // nn.Sequential indices of the merger MLP → named fields
    (r"^visual\.merger\.mlp\.(\d+)\.", "visual.merger.mlp_${1}."),
];

/// A checkpoint that cannot be used, with the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LoadError {
    pub path: String,
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> LoadError {
    LoadError { path: path.display().to_string(), message: message.into() }
}

/// Casts float tensors to the compute dtype as they are read.
#[derive(Clone)]
struct CastAdapter(DType);

impl ModuleAdapter for CastAdapter {
    fn adapt(&self, s: &TensorSnapshot) -> TensorSnapshot {
        let target = self.0;
        if s.dtype == target || !matches!(s.dtype, DType::F32 | DType::F16 | DType::BF16 | DType::F64) {
            return s.clone();
        }
        let f = s.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(f()?.convert_dtype(target))),
            target,
            s.shape.clone(),
            s.path_stack.clone().unwrap_or_default(),
            s.container_stack.clone().unwrap_or_default(),
            s.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

/// The safetensors files of a checkpoint folder.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| err(&index, format!("cannot read: {e}")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(&index, format!("not valid JSON: {e}")))?;
        let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| err(&index, "missing `weight_map` object"))?;
        let mut files = BTreeSet::new();
        for (k, f) in map {
            let f = f.as_str().ok_or_else(|| err(&index, format!("`weight_map.{k}` is not a file name")))?;
            if f.contains('/') || f.contains('\\') || f.contains("..") {
                return Err(err(&index, format!("shard name {f:?} leaves the checkpoint folder")));
            }
            files.insert(f.to_string());
        }
        let mut out = Vec::new();
        for f in files {
            let p = dir.join(&f);
            if !p.is_file() {
                return Err(err(&p, "shard named by model.safetensors.index.json is missing"));
            }
            out.push(p);
        }
        if out.is_empty() {
            return Err(err(&index, "the weight map is empty"));
        }
        return Ok(out);
    }
    Err(err(dir, "no model.safetensors or model.safetensors.index.json in the checkpoint folder"))
}

fn remapper() -> KeyRemapper {
    KeyRemapper::from_patterns(KEY_REMAP.to_vec()).expect("the key-remap table is valid regex")
}

/// Load weights from safetensors files into a fresh module tree for `cfg`.
pub fn load_weights<B: Backend>(cfg: &Qwen25VlConfig, files: &[PathBuf], device: &B::Device, dtype: DType) -> Result<Qwen25VlWeights<B>, LoadError> {
    let mut weights = Qwen25VlWeights::<B>::new(cfg, device);
    // The module's tensor paths, from the first apply (collecting them up front would materialise
    // every lazily initialised parameter).
    let mut expected: Option<BTreeSet<String>> = None;
    let mut applied = BTreeSet::new();
    let mut problems = Vec::new();
    for f in files {
        let mut store = SafetensorsStore::from_file(f)
            .remap(remapper())
            .with_from_adapter(PyTorchToBurnAdapter.chain(CastAdapter(dtype)))
            .allow_partial(true)
            .validate(false);
        let res = weights.load_from(&mut store).map_err(|e| err(f, format!("cannot read safetensors: {e}")))?;
        for e in &res.errors {
            problems.push(match e {
                ApplyError::ShapeMismatch { path, expected, found } => {
                    format!("{}: tensor `{path}` has shape {:?}, the config needs {:?}", f.display(), found.as_slice(), expected.as_slice())
                }
                other => format!("{}: {other}", f.display()),
            });
        }
        for u in &res.unused {
            // A tied checkpoint may still store lm_head.weight; it is not used.
            if cfg.text.tie_word_embeddings && u == "lm_head.weight" {
                continue;
            }
            problems.push(format!("{}: unexpected tensor `{u}` (after key remapping)", f.display()));
        }
        if expected.is_none() {
            expected = Some(res.applied.iter().cloned().chain(res.missing.iter().map(|m| m.0.clone())).collect());
        }
        applied.extend(res.applied.iter().cloned());
    }
    let expected = expected.unwrap_or_default();
    let missing: Vec<&String> = expected.iter().filter(|p| !applied.contains(*p)).collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(8).map(|s| s.as_str()).collect();
        problems.push(format!(
            "{} tensor(s) missing from the checkpoint: {}{}",
            missing.len(),
            shown.join(", "),
            if missing.len() > 8 { ", …" } else { "" }
        ));
    }
    if !problems.is_empty() {
        let dir = files.first().and_then(|f| f.parent()).unwrap_or(Path::new("."));
        return Err(err(dir, problems.join("; ")));
    }
    Ok(weights)
}

/// Load a checkpoint folder (config.json + safetensors) onto `device`.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device, dtype: DType) -> Result<Qwen25Vl<B>, LoadError> {
    if !dir.is_dir() {
        return Err(err(dir, "not a folder"));
    }
    let cfg_path = dir.join("config.json");
    let cfg = Qwen25VlConfig::from_file(&cfg_path).map_err(|e| LoadError { path: e.file, message: e.message })?;
    let files = weight_files(dir)?;
    let weights = load_weights::<B>(&cfg, &files, device, dtype)?;
    Ok(Qwen25Vl::from_weights(cfg, weights, device.clone(), dtype))
}
