//! The whole Qwen2.5-VL model on one burn backend: the weight tree (`visual`, `model`, `lm_head`,
//! mirroring the checkpoint keys), vision encoding, the multimodal embedding merge (image/video
//! features scattered into their pad tokens), prefill of a prompt suffix on top of a KV cache, and
//! single-token decoding with the rope delta.

use super::config::Qwen25VlConfig;
use super::host_decoder::{Segment, BlockShape};
use super::host_vision::VisionKernels;
use super::vision::VISION_EPS;
use super::host_kernels::{side_by_side, LayerKernels, MatrixPart, PackedLinear, TextKernels};
use super::layers::{index_tensor, linear, tensor, to_vec};
use super::preprocess::VisionInput;
use super::rope::{get_rope_index, text_cos_sin, GridThw, RopeIndex, VideoTime};
use super::text::{KvCache, TextModel};
use super::vision::VisionTower;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use std::sync::Arc;

/// Every weight of a checkpoint, named as the remapped safetensors keys.
#[derive(Module, Debug)]
pub struct Qwen25VlWeights<B: Backend> {
    pub visual: VisionTower<B>,
    pub model: TextModel<B>,
    /// Absent when the embeddings are tied.
    pub lm_head: Option<Linear<B>>,
}

impl<B: Backend> Qwen25VlWeights<B> {
    /// The module tree for `cfg`, parameters lazily initialised (random or constant).
    pub fn new(cfg: &Qwen25VlConfig, device: &B::Device) -> Self {
        Qwen25VlWeights {
            visual: VisionTower::new(&cfg.vision, device),
            model: TextModel::new(&cfg.text, device),
            lm_head: if cfg.text.tie_word_embeddings { None } else { Some(linear(cfg.text.hidden_size, cfg.text.vocab_size, false, device)) },
        }
    }
}

/// A prompt ready for the model: expanded token ids (one pad token per merged patch) plus the
/// images and videos in prompt order.
#[derive(Clone, Debug, Default)]
pub struct ModelInput {
    pub ids: Vec<u32>,
    pub images: Vec<VisionInput>,
    pub videos: Vec<VisionInput>,
    /// Seconds per temporal grid step, one per video (1.0 when absent).
    pub second_per_grid_ts: Vec<f64>,
}

/// Where each image/video sits in the token sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct VisionSpan {
    pub video: bool,
    /// Index among the images (or videos).
    pub index: usize,
    pub start: usize,
    pub len: usize,
    pub fingerprint: u64,
}

/// What one forward pass returns (host copies).
#[derive(Clone, Debug, Default)]
pub struct ForwardOutput {
    /// Logits `[rows][vocab]` row-major: every new position with `all_logits`, else the last.
    pub logits: Vec<f32>,
    pub rows: usize,
    /// With `collect_hidden`: the input embeddings, then each decoder layer's output, then the
    /// final norm output, each `[new positions][hidden]`.
    pub hidden: Vec<Vec<f32>>,
    /// Wall time of the embedding step of a prefill: the vision tower over the new images and
    /// videos (the device is synchronised before the clock stops).
    pub vision_ms: f64,
}

/// Qwen2.5-VL on backend `B` with compute dtype `dtype` (f32 on the CPU, bf16 on CUDA).
pub struct Qwen25Vl<B: Backend> {
    pub cfg: Qwen25VlConfig,
    pub weights: Qwen25VlWeights<B>,
    pub device: B::Device,
    pub dtype: DType,
    /// How video time positions are computed (transformers 4.57 truncates seconds per grid).
    pub video_time: VideoTime,
    /// The text model and vision tower packed for the CPU kernels (`host_kernels`): built for f32
    /// models on the CPU backend unless `SIGHTLINE_CPU_KERNELS=off`. Repack (`set_host_kernels`
    /// off, then on) after changing `weights`.
    host: Option<Arc<HostWeights>>,
}

/// Both towers' packed weights (on and off together).
struct HostWeights {
    text: TextKernels,
    vision: VisionKernels,
}

/// Whether `B` is burn's CPU backend (the CPU kernels run on the host).
fn is_cpu_backend<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::Flex>()
}

/// `SIGHTLINE_CPU_KERNELS=off` (or `0`/`false`) turns the CPU kernels off.
fn cpu_kernels_wanted() -> bool {
    !matches!(std::env::var("SIGHTLINE_CPU_KERNELS").map(|v| v.to_ascii_lowercase()).as_deref(), Ok("off" | "0" | "false" | "no"))
}

impl<B: Backend> Qwen25Vl<B> {
    /// A randomly initialised model (tests and benchmarks).
    pub fn random(cfg: Qwen25VlConfig, device: B::Device, dtype: DType) -> Self {
        let weights = Qwen25VlWeights::new(&cfg, &device);
        Self::from_weights(cfg, weights, device, dtype)
    }

    /// A model over loaded weights; packs the CPU kernels where they apply.
    pub fn from_weights(cfg: Qwen25VlConfig, weights: Qwen25VlWeights<B>, device: B::Device, dtype: DType) -> Self {
        let mut model = Qwen25Vl { cfg, weights, device, dtype, video_time: VideoTime::default(), host: None };
        model.set_host_kernels(cpu_kernels_wanted());
        model
    }

    /// Turn the CPU kernels on (packing the current weights, unless already on) or off. They
    /// apply only to f32 models on the CPU backend; elsewhere this leaves them off. After
    /// changing `weights`, turn them off and on again to repack.
    pub fn set_host_kernels(&mut self, on: bool) {
        if !(on && self.dtype == DType::F32 && is_cpu_backend::<B>()) {
            self.host = None;
        } else if self.host.is_none() {
            self.host = Some(Arc::new(HostWeights { text: self.pack_text_kernels(), vision: self.pack_vision_kernels() }));
        }
    }

    /// The packed CPU kernels, when on.
    pub fn host_kernels(&self) -> Option<&TextKernels> {
        self.host.as_deref().map(|h| &h.text)
    }

    /// The packed vision tower, when the CPU kernels are on.
    pub fn host_vision_kernels(&self) -> Option<&VisionKernels> {
        self.host.as_deref().map(|h| &h.vision)
    }

    /// Pack the text model's linear layers (q/k/v fused, gate/up fused) and the output layer,
    /// with the norms' weights, for the host decoder.
    fn pack_text_kernels(&self) -> TextKernels {
        let tc = &self.cfg.text;
        let d = tc.hidden_size;
        let layers = self
            .weights
            .model
            .layers
            .iter()
            .map(|layer| {
                let (a, m) = (&layer.self_attn, &layer.mlp);
                LayerKernels {
                    qkv: pack_fused(&[&a.q_proj, &a.k_proj, &a.v_proj]),
                    o: pack_linear(&a.o_proj),
                    gate_up: pack_fused(&[&m.gate_proj, &m.up_proj]),
                    down: pack_linear(&m.down_proj),
                    input_norm: to_vec(layer.input_layernorm.weight.val()),
                    post_norm: to_vec(layer.post_attention_layernorm.weight.val()),
                }
            })
            .collect();
        let lm_head = match &self.weights.lm_head {
            Some(h) => pack_linear(h),
            None => PackedLinear::from_out_in(tc.vocab_size, d, &to_vec(self.weights.model.embed_tokens.weight.val())),
        };
        let shape = BlockShape { hidden: d, heads: tc.num_attention_heads, kv_heads: tc.num_key_value_heads, head_dim: tc.head_dim(), rms_norm_eps: tc.rms_norm_eps as f32 };
        TextKernels { layers, lm_head, norm: to_vec(self.weights.model.norm.weight.val()), shape }
    }

    /// Pack the vision tower's patch embedding and blocks for the host (`host_vision`).
    fn pack_vision_kernels(&self) -> VisionKernels {
        let vc = &self.cfg.vision;
        let v = &self.weights.visual;
        let d = vc.hidden_size;
        // The Conv3d weight `[hidden, C, T, P, P]` is `[hidden][patch_dim]` row-major.
        let patch = PackedLinear::from_out_in(d, vc.patch_dim(), &to_vec(v.patch_embed.proj.weight.val()));
        let blocks = v
            .blocks
            .iter()
            .map(|b| LayerKernels {
                qkv: pack_linear(&b.attn.qkv),
                o: pack_linear(&b.attn.proj),
                gate_up: pack_fused(&[&b.mlp.gate_proj, &b.mlp.up_proj]),
                down: pack_linear(&b.mlp.down_proj),
                input_norm: to_vec(b.norm1.weight.val()),
                post_norm: to_vec(b.norm2.weight.val()),
            })
            .collect();
        let shape = BlockShape { hidden: d, heads: vc.num_heads, kv_heads: vc.num_heads, head_dim: vc.head_dim(), rms_norm_eps: VISION_EPS as f32 };
        VisionKernels { patch, blocks, shape }
    }

    /// Locate every image and video in `input` and check the pad counts against the grids.
    pub fn vision_spans(&self, input: &ModelInput) -> Result<Vec<VisionSpan>, String> {
        let m = self.cfg.vision.spatial_merge_size;
        let mut spans = Vec::new();
        for (video, tok, items) in [(false, self.cfg.image_token_id, &input.images), (true, self.cfg.video_token_id, &input.videos)] {
            let what = if video { "video" } else { "image" };
            let mut i = 0;
            let mut k = 0;
            let ids = &input.ids;
            while i < ids.len() {
                if ids[i] != tok {
                    i += 1;
                    continue;
                }
                let item = items.get(k).ok_or_else(|| format!("the prompt holds more {what} pad runs than the {} {what}(s) given", items.len()))?;
                let need = item.grid.tokens(m);
                let run = ids[i..].iter().take_while(|&&t| t == tok).count();
                if run < need {
                    return Err(format!("{what} {k} needs {need} pad tokens but the prompt has a run of {run}"));
                }
                spans.push(VisionSpan { video, index: k, start: i, len: need, fingerprint: item.fingerprint() });
                i += need;
                k += 1;
            }
            if k != items.len() {
                return Err(format!("{} {what}(s) given but the prompt has pad tokens for {k}", items.len()));
            }
        }
        spans.sort_by_key(|s| s.start);
        Ok(spans)
    }

    /// M-RoPE positions of the whole prompt.
    pub fn rope_index(&self, input: &ModelInput) -> Result<RopeIndex, String> {
        let ig: Vec<GridThw> = input.images.iter().map(|v| v.grid).collect();
        let vg: Vec<GridThw> = input.videos.iter().map(|v| v.grid).collect();
        get_rope_index(&self.cfg, &input.ids, &ig, &vg, &input.second_per_grid_ts, self.video_time)
    }

    /// Run the vision tower over some items (one batch), returning `[tokens, hidden]`.
    pub fn encode_vision(&self, items: &[&VisionInput]) -> Result<Tensor<B, 2>, String> {
        let dim = self.cfg.vision.patch_dim();
        let mut pixels = Vec::new();
        let mut grids = Vec::new();
        for it in items {
            if it.pixel_values.len() != it.grid.patches() * dim {
                return Err(format!("pixel values hold {} floats, grid {:?} needs {}", it.pixel_values.len(), it.grid, it.grid.patches() * dim));
            }
            pixels.extend_from_slice(&it.pixel_values);
            grids.push(it.grid);
        }
        let n = pixels.len() / dim;
        let t = tensor::<B, 2>(pixels, [n, dim], &self.device, self.dtype);
        self.weights.visual.forward(&self.cfg.vision, t, &grids, self.host_vision_kernels())
    }

    /// Embeddings of `input.ids[start..]` with vision features in their pad positions; the
    /// images/videos wholly before `start` are not encoded (they are in the cache).
    pub fn embed_suffix(&self, input: &ModelInput, spans: &[VisionSpan], start: usize) -> Result<Tensor<B, 2>, String> {
        let ids = &input.ids[start..];
        let len = ids.len();
        let idt: Vec<usize> = ids.iter().map(|&t| t as usize).collect();
        if let Some(&bad) = idt.iter().find(|&&t| t >= self.cfg.text.vocab_size) {
            return Err(format!("token id {bad} is outside the vocabulary ({})", self.cfg.text.vocab_size));
        }
        let text = self.weights.model.embed(index_tensor::<B>(&idt, &self.device));
        let needed: Vec<&VisionSpan> = spans.iter().filter(|s| s.start + s.len > start).collect();
        if let Some(s) = needed.iter().find(|s| s.start < start) {
            return Err(format!("the cached prefix ends inside an image or video (tokens {}..{})", s.start, s.start + s.len));
        }
        if needed.is_empty() {
            return Ok(text);
        }
        let mut parts = vec![text];
        let mut select: Vec<usize> = (0..len).collect();
        let mut offset = len;
        for video in [false, true] {
            let items: Vec<&VisionSpan> = needed.iter().copied().filter(|s| s.video == video).collect();
            if items.is_empty() {
                continue;
            }
            let src = if video { &input.videos } else { &input.images };
            let feats = self.encode_vision(&items.iter().map(|s| &src[s.index]).collect::<Vec<_>>())?;
            for s in &items {
                for k in 0..s.len {
                    select[s.start - start + k] = offset + k;
                }
                offset += s.len;
            }
            parts.push(feats.cast(self.dtype));
        }
        Ok(Tensor::cat(parts, 0).select(0, index_tensor::<B>(&select, &self.device)))
    }

    /// Prefill `input.ids[cache.len..]` on top of `cache` (whose contents must be the prompt's
    /// first `cache.len` tokens). Returns the logits and the prompt's rope delta.
    pub fn prefill(&self, input: &ModelInput, cache: &mut KvCache<B>, all_logits: bool, collect_hidden: bool) -> Result<(ForwardOutput, i64), String> {
        let start = cache.len;
        if start >= input.ids.len() {
            return Err(format!("nothing to prefill: the cache holds {start} of {} tokens", input.ids.len()));
        }
        let spans = self.vision_spans(input)?;
        let rope = self.rope_index(input)?;
        let t0 = std::time::Instant::now();
        let x = self.embed_suffix(input, &spans, start)?;
        let _ = B::sync(&self.device);
        let vision_ms = t0.elapsed().as_secs_f64() * 1e3;
        let positions = [rope.positions[0][start..].to_vec(), rope.positions[1][start..].to_vec(), rope.positions[2][start..].to_vec()];
        let mut out = self.forward_embeds(x, &positions, cache, all_logits, collect_hidden);
        out.vision_ms = vision_ms;
        Ok((out, rope.delta))
    }

    /// Feed one token at the next position (`cache.len + delta`) and return its logits.
    pub fn decode_step(&self, token: u32, delta: i64, cache: &mut KvCache<B>) -> Result<Vec<f32>, String> {
        if token as usize >= self.cfg.text.vocab_size {
            return Err(format!("token id {token} is outside the vocabulary ({})", self.cfg.text.vocab_size));
        }
        let x = self.weights.model.embed(index_tensor::<B>(&[token as usize], &self.device));
        let p = cache.len as i64 + delta;
        let positions = [vec![p], vec![p], vec![p]];
        Ok(self.forward_embeds(x, &positions, cache, false, false).logits)
    }

    /// Feed one token to each of several conversations at once (`tokens[b]` continues `caches[b]`
    /// at position `caches[b].len + deltas[b]`) and return each row's logits. The linear layers
    /// run once over all rows, so n conversations cost far less than n single steps.
    pub fn decode_rows(&self, tokens: &[u32], deltas: &[i64], caches: &mut [&mut KvCache<B>]) -> Result<Vec<Vec<f32>>, String> {
        let rows = tokens.len();
        if deltas.len() != rows || caches.len() != rows {
            return Err(format!("decode_rows: {rows} tokens, {} deltas, {} caches", deltas.len(), caches.len()));
        }
        if rows == 0 {
            return Ok(Vec::new());
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.text.vocab_size) {
            return Err(format!("token id {t} is outside the vocabulary ({})", self.cfg.text.vocab_size));
        }
        let tc = &self.cfg.text;
        let hd = tc.head_dim();
        let ids: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        let x = self.weights.model.embed(index_tensor::<B>(&ids, &self.device)).cast(self.dtype);
        let p: Vec<i64> = caches.iter().zip(deltas).map(|(c, d)| c.len as i64 + d).collect();
        let (cos, sin) = text_cos_sin(tc, &[p.clone(), p.clone(), p]);
        let flat = match self.host_kernels() {
            Some(k) => {
                let kvh = tc.num_key_value_heads;
                let mut segments: Vec<Segment> = caches.iter_mut().map(|c| Segment { cache: c.host_layers(kvh, hd), rows: 1 }).collect();
                let out = k.forward(to_vec(x), &cos, &sin, &mut segments, None);
                for c in caches.iter_mut() {
                    c.len += 1;
                }
                k.lm_head.forward(&out, rows)
            }
            None => {
                let cos = tensor::<B, 3>(cos, [rows, 1, hd], &self.device, DType::F32);
                let sin = tensor::<B, 3>(sin, [rows, 1, hd], &self.device, DType::F32);
                to_vec(self.lm_head(self.weights.model.forward_rows(tc, x, &cos, &sin, caches)))
            }
        };
        let vocab = tc.vocab_size;
        Ok(flat.chunks(vocab).map(|c| c.to_vec()).collect())
    }

    /// burn's output layer (the host decoder has its own).
    fn lm_head(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.weights.lm_head {
            Some(h) => h.forward(hidden),
            None => hidden.matmul(self.weights.model.embed_tokens.weight.val().transpose()),
        }
    }

    /// The decoder over given embeddings and positions: the host decoder when the CPU kernels
    /// are on, burn's otherwise.
    pub fn forward_embeds(&self, x: Tensor<B, 2>, positions: &[Vec<i64>; 3], cache: &mut KvCache<B>, all_logits: bool, collect_hidden: bool) -> ForwardOutput {
        let tc = &self.cfg.text;
        let [len, d] = x.dims();
        let hd = tc.head_dim();
        let (cos, sin) = text_cos_sin(tc, positions);
        let rows = if all_logits { len } else { 1 };
        if let Some(k) = self.host_kernels() {
            let x = to_vec(x);
            let mut hidden = Vec::new();
            if collect_hidden {
                hidden.push(x.clone());
            }
            let mut segment = [Segment { cache: cache.host_layers(tc.num_key_value_heads, hd), rows: len }];
            let out = k.forward(x, &cos, &sin, &mut segment, collect_hidden.then_some(&mut hidden));
            cache.len += len;
            let logits = k.lm_head.forward(&out[(len - rows) * d..], rows);
            return ForwardOutput { logits, rows, hidden, vision_ms: 0.0 };
        }
        let cos = tensor::<B, 3>(cos, [len, 1, hd], &self.device, DType::F32);
        let sin = tensor::<B, 3>(sin, [len, 1, hd], &self.device, DType::F32);
        let x = x.cast(self.dtype);
        let embeds = if collect_hidden { Some(x.clone()) } else { None };
        let (out, layers) = self.weights.model.forward(tc, x, &cos, &sin, cache, collect_hidden);
        let last = if all_logits { out.clone() } else { out.clone().narrow(0, len - 1, 1) };
        let logits = self.lm_head(last);
        let mut hidden = Vec::new();
        if let Some(e) = embeds {
            hidden.push(to_vec(e));
            for h in layers {
                hidden.push(to_vec(h));
            }
        }
        ForwardOutput { logits: to_vec(logits), rows, hidden, vision_ms: 0.0 }
    }
}

/// A linear layer's host weights `[in][out]`, its sizes and bias.
fn host_linear<B: Backend>(l: &Linear<B>) -> (Vec<f32>, usize, usize, Option<Vec<f32>>) {
    let [k, n] = l.weight.dims();
    (to_vec(l.weight.val()), k, n, l.bias.as_ref().map(|b| to_vec(b.val())))
}

/// One linear layer packed (bf16 when lossless).
fn pack_linear<B: Backend>(l: &Linear<B>) -> PackedLinear {
    let (w, k, n, b) = host_linear(l);
    PackedLinear::from_in_out(k, n, &w, b)
}

/// Linear layers over the same input packed side by side as one.
fn pack_fused<B: Backend>(ls: &[&Linear<B>]) -> PackedLinear {
    let parts: Vec<_> = ls.iter().map(|l| host_linear(l)).collect();
    let k = parts[0].1;
    let views: Vec<MatrixPart> = parts.iter().map(|(w, _, n, b)| (w.as_slice(), *n, b.as_deref())).collect();
    let (w, n, b) = side_by_side(k, &views);
    PackedLinear::from_in_out(k, n, &w, b)
}
