//! The Qwen2 language model of Qwen2.5-VL: token embedding, decoder layers (GQA attention with
//! q/k/v biases and multimodal rotary, RMSNorm, SwiGLU), the final norm, and a tied or separate
//! `lm_head`; plus the per-layer KV cache used for incremental decoding and prefix reuse.

use super::config::TextConfig;
use super::host_decoder::HostKv;
use super::layers::{apply_rotary, linear, softmax_f32, tensor, to_vec, Mlp, RmsNorm};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{DType, Int, Tensor};

#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    pub self_attn: SelfAttention<B>,
    pub mlp: Mlp<B>,
    pub input_layernorm: RmsNorm<B>,
    pub post_attention_layernorm: RmsNorm<B>,
}

#[derive(Module, Debug)]
pub struct TextModel<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
}

/// Keys and values of every layer: as burn tensors (`[kv_heads, len, head_dim]` each) for burn's
/// decoder, or on the host for the host decoder (`host_decoder`). Each path takes the cache over
/// in its own form, converting what the other left, so a conversation can switch paths.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
    host: Vec<HostKv>,
    pub len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![None; layers], host: Vec::new(), len: 0 }
    }

    /// Keep only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for l in self.layers.iter_mut() {
            *l = if len == 0 { None } else { l.take().map(|(k, v)| (k.narrow(1, 0, len), v.narrow(1, 0, len))) };
        }
        for h in self.host.iter_mut() {
            h.truncate(len);
        }
        self.len = len;
    }

    /// The per-layer host caches (the host decoder's form), converting burn tensors if burn's
    /// decoder filled the cache.
    pub fn host_layers(&mut self, kv_heads: usize, head_dim: usize) -> &mut [HostKv] {
        if self.host.len() != self.layers.len() {
            let len = self.len;
            self.host = self
                .layers
                .iter_mut()
                .map(|l| match l.take() {
                    Some((k, v)) => HostKv::from_heads_major(&to_vec(k), &to_vec(v), kv_heads, len, head_dim),
                    None => HostKv::new(kv_heads, head_dim),
                })
                .collect();
        }
        &mut self.host
    }

    /// Hand host caches over to burn's decoder as tensors.
    fn hand_to_burn(&mut self, device: &B::Device, dtype: DType) {
        if self.host.is_empty() {
            return;
        }
        for (l, h) in self.layers.iter_mut().zip(std::mem::take(&mut self.host)) {
            let (k, v) = h.to_heads_major();
            let shape = [h.kv_heads(), h.len(), h.head_dim()];
            *l = (!h.is_empty()).then(|| (tensor::<B, 3>(k, shape, device, dtype), tensor::<B, 3>(v, shape, device, dtype)));
        }
    }
}

impl<B: Backend> TextModel<B> {
    pub fn new(tc: &TextConfig, device: &B::Device) -> Self {
        let (d, hd) = (tc.hidden_size, tc.head_dim());
        let kv = tc.num_key_value_heads * hd;
        TextModel {
            embed_tokens: EmbeddingConfig::new(tc.vocab_size, d).init(device),
            layers: (0..tc.num_hidden_layers)
                .map(|_| DecoderLayer {
                    self_attn: SelfAttention {
                        q_proj: linear(d, tc.num_attention_heads * hd, true, device),
                        k_proj: linear(d, kv, true, device),
                        v_proj: linear(d, kv, true, device),
                        o_proj: linear(tc.num_attention_heads * hd, d, false, device),
                    },
                    mlp: Mlp::new(d, tc.intermediate_size, false, device),
                    input_layernorm: RmsNorm::new(d, device),
                    post_attention_layernorm: RmsNorm::new(d, device),
                })
                .collect(),
            norm: RmsNorm::new(d, device),
        }
    }

    /// Embedding rows for token ids, `[len, hidden]`.
    pub fn embed(&self, ids: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.embed_tokens.weight.val().select(0, ids)
    }

    /// Run the decoder over `x` (`[len, hidden]`, positions after `cache.len`), appending to the
    /// cache. `cos`/`sin` are `[len, 1, head_dim]`. Returns the normed hidden states and, when
    /// `collect` is set, every layer's output followed by the final normed output.
    pub fn forward(
        &self,
        tc: &TextConfig,
        mut x: Tensor<B, 2>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        cache: &mut KvCache<B>,
        collect: bool,
    ) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        let [len, _] = x.dims();
        cache.hand_to_burn(&x.device(), x.dtype());
        let past = cache.len;
        let mut hidden = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(x.clone(), tc.rms_norm_eps);
            let h = layer.self_attn.forward(tc, h, cos, sin, &mut cache.layers[i]);
            x = x.add(h);
            let h = layer.mlp.forward(layer.post_attention_layernorm.forward(x.clone(), tc.rms_norm_eps));
            x = x.add(h);
            if collect {
                hidden.push(x.clone());
            }
        }
        cache.len = past + len;
        let out = self.norm.forward(x, tc.rms_norm_eps);
        if collect {
            hidden.push(out.clone());
        }
        (out, hidden)
    }

    /// One new token per conversation: row `b` of `x` (`[rows, hidden]`) is the next token of
    /// `caches[b]`, with its own position in `cos`/`sin` (`[rows, 1, head_dim]`). Every linear layer
    /// runs once over all rows (the weights are read once per step), attention row by row.
    pub fn forward_rows(&self, tc: &TextConfig, mut x: Tensor<B, 2>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>, caches: &mut [&mut KvCache<B>]) -> Tensor<B, 2> {
        for c in caches.iter_mut() {
            c.hand_to_burn(&x.device(), x.dtype());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(x.clone(), tc.rms_norm_eps);
            let mut layer_caches: Vec<&mut Option<(Tensor<B, 3>, Tensor<B, 3>)>> = caches.iter_mut().map(|c| &mut c.layers[i]).collect();
            let h = layer.self_attn.forward_rows(tc, h, cos, sin, &mut layer_caches);
            x = x.add(h);
            let h = layer.mlp.forward(layer.post_attention_layernorm.forward(x.clone(), tc.rms_norm_eps));
            x = x.add(h);
        }
        for c in caches.iter_mut() {
            c.len += 1;
        }
        self.norm.forward(x, tc.rms_norm_eps)
    }
}

impl<B: Backend> SelfAttention<B> {
    /// Rotated queries and keys and the values of `x`'s rows: `[h, len, hd]`, `[kvh, len, hd]` ×2.
    fn project(&self, tc: &TextConfig, x: Tensor<B, 2>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let [len, _] = x.dims();
        let (h, kvh, hd) = (tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim());
        let (q, k, v) = (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x));
        let q = apply_rotary(q.reshape([len, h, hd]), cos, sin).swap_dims(0, 1);
        let k = apply_rotary(k.reshape([len, kvh, hd]), cos, sin).swap_dims(0, 1);
        let v = v.reshape([len, kvh, hd]).swap_dims(0, 1);
        (q, k, v)
    }

    /// Append `k`/`v` to the cache and attend `q` (positions after the cached ones) to it;
    /// returns `[len, h * hd]` before `o_proj`.
    fn attend(tc: &TextConfig, q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>, cache: &mut Option<(Tensor<B, 3>, Tensor<B, 3>)>) -> Tensor<B, 2> {
        let len = q.dims()[1];
        let (h, kvh, hd) = (tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim());
        let rep = h / kvh;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1)),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let total = k.dims()[1];
        let scale = (hd as f64).powf(-0.5);
        if len == 1 {
            // Decoding: query heads grouped by their KV head, [kvh, rep, hd] against [kvh, total, hd]
            // (faster than the fused kernel for one query row).
            let qg = q.reshape([kvh, rep, hd]);
            let p = softmax_f32(qg.matmul(k.swap_dims(1, 2)).mul_scalar(scale));
            p.matmul(v).reshape([1, h * hd])
        } else {
            // Prefill: fused scaled-dot-product attention with bottom-right causal masking (query i
            // sees keys up to past + i); KV heads repeated for grouped-query attention.
            let expand = |t: Tensor<B, 3>| t.unsqueeze_dim::<4>(1).expand([kvh, rep, total, hd]).reshape([1, h, total, hd]);
            let opts = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: true };
            let o = attention(q.unsqueeze_dim::<4>(0), expand(k), expand(v), None, None, opts);
            o.reshape([h, len, hd]).swap_dims(0, 1).reshape([len, h * hd])
        }
    }

    fn forward(
        &self,
        tc: &TextConfig,
        x: Tensor<B, 2>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        cache: &mut Option<(Tensor<B, 3>, Tensor<B, 3>)>,
    ) -> Tensor<B, 2> {
        let (q, k, v) = self.project(tc, x, cos, sin);
        self.o_proj.forward(Self::attend(tc, q, k, v, cache))
    }

    /// One new token for each of several conversations (row `b` of `x` continues `caches[b]`):
    /// the projections run on all rows at once, attention per row against its own cache.
    #[allow(clippy::type_complexity)]
    fn forward_rows(
        &self,
        tc: &TextConfig,
        x: Tensor<B, 2>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        caches: &mut [&mut Option<(Tensor<B, 3>, Tensor<B, 3>)>],
    ) -> Tensor<B, 2> {
        let (q, k, v) = self.project(tc, x, cos, sin);
        let rows: Vec<Tensor<B, 2>> = caches
            .iter_mut()
            .enumerate()
            .map(|(b, cache)| Self::attend(tc, q.clone().narrow(1, b, 1), k.clone().narrow(1, b, 1), v.clone().narrow(1, b, 1), cache))
            .collect();
        self.o_proj.forward(Tensor::cat(rows, 0))
    }
}
