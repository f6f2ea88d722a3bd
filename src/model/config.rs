//! Qwen2.5-VL hyper-parameters: parsed from a checkpoint's `config.json` (the flat layout of the
//! released checkpoints and transformers 5's nested `text_config`), presets named after the real
//! checkpoints, and tiny configurations for tests and benchmarks.

use serde_json::Value;
use std::path::Path;

/// The vision tower (`vision_config`).
#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub out_hidden_size: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    pub tokens_per_second: f64,
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Values per flattened patch: channels × temporal patch × patch².
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// Merged patches per side of one attention window (112 / 14 / 2 = 4).
    pub fn merged_window(&self) -> usize {
        self.window_size / self.spatial_merge_size / self.patch_size
    }
    /// Pixels per merged token side (28).
    pub fn factor(&self) -> usize {
        self.patch_size * self.spatial_merge_size
    }
}

/// The language model (flat keys or `text_config`).
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Rotary sections over half the head dimension for (temporal, height, width).
    pub mrope_section: [usize; 3],
    pub tie_word_embeddings: bool,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A whole Qwen2.5-VL model.
#[derive(Clone, Debug, PartialEq)]
pub struct Qwen25VlConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// End-of-sequence ids from config.json (`<|im_end|>` for the instruct checkpoints).
    pub eos_token_ids: Vec<u32>,
}

/// A config problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

fn vision_7b() -> VisionConfig {
    VisionConfig {
        depth: 32,
        hidden_size: 1280,
        intermediate_size: 3420,
        num_heads: 16,
        in_channels: 3,
        out_hidden_size: 3584,
        patch_size: 14,
        spatial_merge_size: 2,
        temporal_patch_size: 2,
        window_size: 112,
        fullatt_block_indexes: vec![7, 15, 23, 31],
        tokens_per_second: 2.0,
    }
}

fn special_ids() -> (u32, u32, u32, u32, Vec<u32>) {
    (151655, 151656, 151652, 151653, vec![151645])
}

impl Qwen25VlConfig {
    fn with_ids(text: TextConfig, vision: VisionConfig) -> Self {
        let (image_token_id, video_token_id, vision_start_token_id, vision_end_token_id, eos_token_ids) = special_ids();
        Qwen25VlConfig { text, vision, image_token_id, video_token_id, vision_start_token_id, vision_end_token_id, eos_token_ids }
    }

    /// Qwen/Qwen2.5-VL-7B-Instruct.
    pub fn qwen25vl_7b() -> Self {
        Self::with_ids(
            TextConfig {
                vocab_size: 152064,
                hidden_size: 3584,
                intermediate_size: 18944,
                num_hidden_layers: 28,
                num_attention_heads: 28,
                num_key_value_heads: 4,
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
                mrope_section: [16, 24, 24],
                tie_word_embeddings: false,
            },
            vision_7b(),
        )
    }

    /// Qwen/Qwen2.5-VL-3B-Instruct.
    pub fn qwen25vl_3b() -> Self {
        Self::with_ids(
            TextConfig {
                vocab_size: 151936,
                hidden_size: 2048,
                intermediate_size: 11008,
                num_hidden_layers: 36,
                num_attention_heads: 16,
                num_key_value_heads: 2,
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
                mrope_section: [16, 24, 24],
                tie_word_embeddings: true,
            },
            VisionConfig { out_hidden_size: 2048, ..vision_7b() },
        )
    }

    /// The ~44M benchmark configuration (text hidden 512, 8 layers, 8 heads, 2 KV heads,
    /// intermediate 1408, vocab 32k; vision depth 4, hidden 256).
    pub fn bench_44m() -> Self {
        Self::with_ids(
            TextConfig {
                vocab_size: 32000,
                hidden_size: 512,
                intermediate_size: 1408,
                num_hidden_layers: 8,
                num_attention_heads: 8,
                num_key_value_heads: 2,
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
                mrope_section: [8, 12, 12],
                tie_word_embeddings: false,
            },
            VisionConfig {
                depth: 4,
                hidden_size: 256,
                intermediate_size: 512,
                num_heads: 4,
                out_hidden_size: 512,
                fullatt_block_indexes: vec![1, 3],
                ..vision_7b()
            },
        )
        .with_small_vocab_ids(32000)
    }

    /// A tiny configuration for unit tests (random weights).
    pub fn tiny() -> Self {
        Self::with_ids(
            TextConfig {
                vocab_size: 300,
                hidden_size: 64,
                intermediate_size: 96,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                rms_norm_eps: 1e-6,
                rope_theta: 1e6,
                mrope_section: [2, 3, 3],
                tie_word_embeddings: true,
            },
            VisionConfig {
                depth: 2,
                hidden_size: 32,
                intermediate_size: 48,
                num_heads: 2,
                out_hidden_size: 64,
                fullatt_block_indexes: vec![1],
                ..vision_7b()
            },
        )
        .with_small_vocab_ids(300)
    }

    /// Special ids placed at the top of a small vocabulary (for the tiny and bench presets).
    fn with_small_vocab_ids(mut self, vocab: u32) -> Self {
        self.vision_start_token_id = vocab - 6;
        self.vision_end_token_id = vocab - 5;
        self.image_token_id = vocab - 4;
        self.video_token_id = vocab - 3;
        self.eos_token_ids = vec![vocab - 2];
        self
    }

    /// A preset by name (`qwen2.5-vl-3b`, `qwen2.5-vl-7b`, `bench-44m`, `tiny`).
    pub fn preset(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "qwen2.5-vl-7b" | "qwen2.5-vl-7b-instruct" => Some(Self::qwen25vl_7b()),
            "qwen2.5-vl-3b" | "qwen2.5-vl-3b-instruct" => Some(Self::qwen25vl_3b()),
            "bench-44m" => Some(Self::bench_44m()),
            "tiny" => Some(Self::tiny()),
            _ => None,
        }
    }

    /// Read and validate `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError { file: file.clone(), message: format!("cannot read: {e}") })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ConfigError { file: file.clone(), message: format!("not valid JSON: {e}") })?;
        Self::from_json(&v).map_err(|message| ConfigError { file, message })
    }

    /// Parse a config.json value (flat or nested `text_config`).
    pub fn from_json(v: &Value) -> Result<Self, String> {
        if !v.is_object() {
            return Err("the top level is not a JSON object".into());
        }
        let empty = Value::Object(Default::default());
        let tc = v.get("text_config").filter(|t| t.is_object()).unwrap_or(&empty);
        // Text keys: `text_config` first, then the top level.
        let tget = |k: &str| tc.get(k).filter(|x| !x.is_null()).or_else(|| v.get(k).filter(|x| !x.is_null()));
        let tusize = |k: &str| -> Result<usize, String> {
            match tget(k) {
                Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| format!("`{k}` is not a non-negative integer: {x}")),
                None => Err(format!("missing `{k}`")),
            }
        };
        let rope = tget("rope_parameters").or_else(|| tget("rope_scaling"));
        let mrope_section = match rope.and_then(|r| r.get("mrope_section")) {
            Some(Value::Array(a)) if a.len() == 3 && a.iter().all(|x| x.as_u64().is_some()) => {
                [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize, a[2].as_u64().unwrap() as usize]
            }
            Some(x) => return Err(format!("`mrope_section` must be three integers, found {x}")),
            None => return Err("missing `rope_scaling.mrope_section` (or `rope_parameters.mrope_section`)".into()),
        };
        let rope_theta = match tget("rope_theta").or_else(|| rope.and_then(|r| r.get("rope_theta"))) {
            Some(x) => x.as_f64().ok_or_else(|| format!("`rope_theta` is not a number: {x}"))?,
            None => 1e6,
        };
        let rms_norm_eps = match tget("rms_norm_eps") {
            Some(x) => x.as_f64().ok_or_else(|| format!("`rms_norm_eps` is not a number: {x}"))?,
            None => 1e-6,
        };
        let tie_word_embeddings = match v.get("tie_word_embeddings").or_else(|| tc.get("tie_word_embeddings")) {
            Some(Value::Bool(b)) => *b,
            Some(x) => return Err(format!("`tie_word_embeddings` is not a boolean: {x}")),
            None => false,
        };
        let text = TextConfig {
            vocab_size: tusize("vocab_size")?,
            hidden_size: tusize("hidden_size")?,
            intermediate_size: tusize("intermediate_size")?,
            num_hidden_layers: tusize("num_hidden_layers")?,
            num_attention_heads: tusize("num_attention_heads")?,
            num_key_value_heads: tusize("num_key_value_heads")?,
            rms_norm_eps,
            rope_theta,
            mrope_section,
            tie_word_embeddings,
        };

        let vc = v.get("vision_config").filter(|x| x.is_object()).ok_or("missing `vision_config` object")?;
        let d = vision_7b();
        let vusize = |k: &str, default: usize| -> Result<usize, String> {
            match vc.get(k).filter(|x| !x.is_null()) {
                Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| format!("`vision_config.{k}` is not a non-negative integer: {x}")),
                None => Ok(default),
            }
        };
        let fullatt_block_indexes = match vc.get("fullatt_block_indexes") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_u64().map(|n| n as usize).ok_or_else(|| format!("`vision_config.fullatt_block_indexes` holds a non-integer: {x}")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(x) => return Err(format!("`vision_config.fullatt_block_indexes` is not a list: {x}")),
            None => d.fullatt_block_indexes.clone(),
        };
        let in_channels = match vc.get("in_channels").or_else(|| vc.get("in_chans")) {
            Some(x) => x.as_u64().ok_or_else(|| format!("`vision_config.in_channels` is not an integer: {x}"))? as usize,
            None => 3,
        };
        let tokens_per_second = match vc.get("tokens_per_second").filter(|x| !x.is_null()) {
            Some(x) => x.as_f64().ok_or_else(|| format!("`vision_config.tokens_per_second` is not a number: {x}"))?,
            None => 2.0,
        };
        let vision = VisionConfig {
            depth: vusize("depth", d.depth)?,
            hidden_size: vusize("hidden_size", d.hidden_size)?,
            intermediate_size: vusize("intermediate_size", d.intermediate_size)?,
            num_heads: vusize("num_heads", d.num_heads)?,
            in_channels,
            out_hidden_size: vusize("out_hidden_size", text.hidden_size)?,
            patch_size: vusize("patch_size", d.patch_size)?,
            spatial_merge_size: vusize("spatial_merge_size", d.spatial_merge_size)?,
            temporal_patch_size: vusize("temporal_patch_size", d.temporal_patch_size)?,
            window_size: vusize("window_size", d.window_size)?,
            fullatt_block_indexes,
            tokens_per_second,
        };
        let id = |k: &str, default: u32| -> Result<u32, String> {
            match v.get(k).filter(|x| !x.is_null()).or_else(|| tc.get(k).filter(|x| !x.is_null())) {
                Some(x) => x.as_u64().map(|n| n as u32).ok_or_else(|| format!("`{k}` is not a token id: {x}")),
                None => Ok(default),
            }
        };
        let (img, vid, vs, ve, eos_default) = special_ids();
        let eos_token_ids = match v.get("eos_token_id").or_else(|| tc.get("eos_token_id")) {
            Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().map(|n| n as u32).ok_or_else(|| format!("`eos_token_id` holds a non-integer: {x}"))).collect::<Result<Vec<_>, _>>()?,
            Some(x) if x.is_u64() => vec![x.as_u64().unwrap() as u32],
            Some(Value::Null) | None => eos_default,
            Some(x) => return Err(format!("`eos_token_id` is not a token id: {x}")),
        };
        let cfg = Qwen25VlConfig {
            text,
            vision,
            image_token_id: id("image_token_id", img)?,
            video_token_id: id("video_token_id", vid)?,
            vision_start_token_id: id("vision_start_token_id", vs)?,
            vision_end_token_id: id("vision_end_token_id", ve)?,
            eos_token_ids,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Consistency checks that would otherwise surface as shape panics.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.text;
        let v = &self.vision;
        let nz = [
            ("hidden_size", t.hidden_size),
            ("num_attention_heads", t.num_attention_heads),
            ("num_key_value_heads", t.num_key_value_heads),
            ("num_hidden_layers", t.num_hidden_layers),
            ("vocab_size", t.vocab_size),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
        ];
        for (k, n) in nz {
            if n == 0 {
                return Err(format!("`{k}` must be positive"));
            }
        }
        if t.hidden_size % t.num_attention_heads != 0 {
            return Err(format!("hidden_size {} is not divisible by num_attention_heads {}", t.hidden_size, t.num_attention_heads));
        }
        if t.num_attention_heads % t.num_key_value_heads != 0 {
            return Err(format!("num_attention_heads {} is not divisible by num_key_value_heads {}", t.num_attention_heads, t.num_key_value_heads));
        }
        let hd = t.head_dim();
        if hd % 2 != 0 || t.mrope_section.iter().sum::<usize>() * 2 != hd {
            return Err(format!("mrope_section {:?} must sum to half the head dimension {hd}", t.mrope_section));
        }
        if v.hidden_size % v.num_heads != 0 || v.head_dim() % 4 != 0 {
            return Err(format!("vision hidden_size {} / num_heads {} must give a head dimension divisible by 4", v.hidden_size, v.num_heads));
        }
        if v.merged_window() == 0 {
            return Err(format!("vision window_size {} is smaller than one merged patch", v.window_size));
        }
        if let Some(&b) = v.fullatt_block_indexes.iter().find(|&&b| b >= v.depth) {
            return Err(format!("vision fullatt_block_indexes holds {b}, beyond depth {}", v.depth));
        }
        for (k, id) in [("image_token_id", self.image_token_id), ("video_token_id", self.video_token_id), ("vision_start_token_id", self.vision_start_token_id)] {
            if id as usize >= t.vocab_size {
                return Err(format!("`{k}` {id} is outside the vocabulary ({})", t.vocab_size));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flat_7b() -> Value {
        json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "bos_token_id": 151643, "eos_token_id": 151645,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "image_token_id": 151655, "video_token_id": 151656,
            "hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28, "num_hidden_layers": 28,
            "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false,
            "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2},
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064
        })
    }

    #[test]
    fn flat_released_layout_matches_the_7b_preset() {
        assert_eq!(Qwen25VlConfig::from_json(&flat_7b()).unwrap(), Qwen25VlConfig::qwen25vl_7b());
    }

    #[test]
    fn nested_text_config_layout_parses() {
        let mut v = flat_7b();
        let o = v.as_object_mut().unwrap();
        let mut tc = serde_json::Map::new();
        for k in ["hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "vocab_size"] {
            tc.insert(k.into(), o.remove(k).unwrap());
        }
        o.remove("rope_theta");
        o.remove("rope_scaling");
        tc.insert("rope_parameters".into(), json!({"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}));
        o.insert("text_config".into(), Value::Object(tc));
        assert_eq!(Qwen25VlConfig::from_json(&v).unwrap(), Qwen25VlConfig::qwen25vl_7b());
    }

    #[test]
    fn bad_configs_name_the_key() {
        let mut v = flat_7b();
        v.as_object_mut().unwrap().remove("hidden_size");
        assert!(Qwen25VlConfig::from_json(&v).unwrap_err().contains("hidden_size"));
        let mut v = flat_7b();
        v["rope_scaling"]["mrope_section"] = json!([16, 24, 23]);
        assert!(Qwen25VlConfig::from_json(&v).unwrap_err().contains("mrope_section"));
        let mut v = flat_7b();
        v["num_key_value_heads"] = json!(5);
        assert!(Qwen25VlConfig::from_json(&v).unwrap_err().contains("num_key_value_heads"));
        assert!(Qwen25VlConfig::from_json(&json!([1])).is_err());
    }

    #[test]
    fn presets_validate() {
        for p in ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "bench-44m", "tiny"] {
            Qwen25VlConfig::preset(p).unwrap().validate().unwrap();
        }
    }
}
