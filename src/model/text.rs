//! The Qwen2 language model of Qwen2.5-VL: token embedding, decoder layers (GQA attention with
//! q/k/v biases and multimodal rotary, RMSNorm, SwiGLU), the final norm, and a tied or separate
//! `lm_head`; plus the per-layer KV cache used for incremental decoding and prefix reuse.

use super::config::TextConfig;
use super::host_kernels::{TextKernels, LayerKernels};
use super::layers::{apply_rotary, linear, on_host, softmax_f32, Mlp, RmsNorm};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Int, Tensor};

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

/// Keys and values of every layer, `[kv_heads, len, head_dim]` each.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<Option<(Tensor<B, 3>, Tensor<B, 3>)>>,
    pub len: usize,
}

impl<B: Backend> KvCache<B> {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![None; layers], len: 0 }
    }

    /// Keep only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for l in self.layers.iter_mut() {
            *l = if len == 0 { None } else { l.take().map(|(k, v)| (k.narrow(1, 0, len), v.narrow(1, 0, len))) };
        }
        self.len = len;
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
    /// `collect` is set, every layer's output followed by the final normed output. With
    /// `kernels`, the linear layers run on the CPU kernels instead of burn's matrix products.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        tc: &TextConfig,
        mut x: Tensor<B, 2>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        cache: &mut KvCache<B>,
        collect: bool,
        kernels: Option<&TextKernels>,
    ) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        let [len, _] = x.dims();
        let past = cache.len;
        let mut hidden = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let lk = kernels.map(|k| &k.layers[i]);
            let h = layer.input_layernorm.forward(x.clone(), tc.rms_norm_eps);
            let h = layer.self_attn.forward(tc, h, cos, sin, &mut cache.layers[i], lk);
            x = x.add(h);
            let h = layer.mlp_forward(layer.post_attention_layernorm.forward(x.clone(), tc.rms_norm_eps), lk);
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
    /// With `kernels`, the linear layers run on the CPU kernels.
    pub fn forward_rows(
        &self,
        tc: &TextConfig,
        mut x: Tensor<B, 2>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        caches: &mut [&mut KvCache<B>],
        kernels: Option<&TextKernels>,
    ) -> Tensor<B, 2> {
        for (i, layer) in self.layers.iter().enumerate() {
            let lk = kernels.map(|k| &k.layers[i]);
            let h = layer.input_layernorm.forward(x.clone(), tc.rms_norm_eps);
            let mut layer_caches: Vec<&mut Option<(Tensor<B, 3>, Tensor<B, 3>)>> = caches.iter_mut().map(|c| &mut c.layers[i]).collect();
            let h = layer.self_attn.forward_rows(tc, h, cos, sin, &mut layer_caches, lk);
            x = x.add(h);
            let h = layer.mlp_forward(layer.post_attention_layernorm.forward(x.clone(), tc.rms_norm_eps), lk);
            x = x.add(h);
        }
        for c in caches.iter_mut() {
            c.len += 1;
        }
        self.norm.forward(x, tc.rms_norm_eps)
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// The SwiGLU MLP, on the CPU kernels when given.
    fn mlp_forward(&self, x: Tensor<B, 2>, kernels: Option<&LayerKernels>) -> Tensor<B, 2> {
        match kernels {
            Some(lk) => on_host(x, lk.down.n, |xs, rows| lk.mlp(xs, rows)),
            None => self.mlp.forward(x),
        }
    }
}

impl<B: Backend> SelfAttention<B> {
    /// Rotated queries and keys and the values of `x`'s rows: `[h, len, hd]`, `[kvh, len, hd]` ×2.
    fn project(&self, tc: &TextConfig, x: Tensor<B, 2>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>, kernels: Option<&LayerKernels>) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        let [len, _] = x.dims();
        let (h, kvh, hd) = (tc.num_attention_heads, tc.num_key_value_heads, tc.head_dim());
        let (q, k, v) = match kernels {
            Some(lk) => {
                let qkv = on_host(x, lk.qkv.n, |xs, rows| lk.qkv.forward(xs, rows));
                (qkv.clone().narrow(1, 0, h * hd), qkv.clone().narrow(1, h * hd, kvh * hd), qkv.narrow(1, (h + kvh) * hd, kvh * hd))
            }
            None => (self.q_proj.forward(x.clone()), self.k_proj.forward(x.clone()), self.v_proj.forward(x)),
        };
        let q = apply_rotary(q.reshape([len, h, hd]), cos, sin).swap_dims(0, 1);
        let k = apply_rotary(k.reshape([len, kvh, hd]), cos, sin).swap_dims(0, 1);
        let v = v.reshape([len, kvh, hd]).swap_dims(0, 1);
        (q, k, v)
    }

    /// `o_proj`, on the CPU kernels when given.
    fn output(&self, x: Tensor<B, 2>, kernels: Option<&LayerKernels>) -> Tensor<B, 2> {
        match kernels {
            Some(lk) => on_host(x, lk.o.n, |xs, rows| lk.o.forward(xs, rows)),
            None => self.o_proj.forward(x),
        }
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
        kernels: Option<&LayerKernels>,
    ) -> Tensor<B, 2> {
        let (q, k, v) = self.project(tc, x, cos, sin, kernels);
        self.output(Self::attend(tc, q, k, v, cache), kernels)
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
        kernels: Option<&LayerKernels>,
    ) -> Tensor<B, 2> {
        let (q, k, v) = self.project(tc, x, cos, sin, kernels);
        let rows: Vec<Tensor<B, 2>> = caches
            .iter_mut()
            .enumerate()
            .map(|(b, cache)| Self::attend(tc, q.clone().narrow(1, b, 1), k.clone().narrow(1, b, 1), v.clone().narrow(1, b, 1), cache))
            .collect();
        self.output(Tensor::cat(rows, 0), kernels)
    }
}
