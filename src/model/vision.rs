//! The Qwen2.5-VL vision tower: patch embedding (the stride-equals-kernel Conv3d as one matmul
//! over the flattened patch), 2-D rotary, window attention with full-attention blocks at
//! `fullatt_block_indexes`, RMSNorm + SwiGLU blocks, and the patch merger (ln_q + 2-layer MLP).
//! Field names mirror the checkpoint keys (`visual.blocks.N.attn.qkv`, `visual.merger.mlp.0`, …).

use super::config::VisionConfig;
use super::host_vision::{VisionKernels, VisionLayout};
use super::layers::{apply_rotary, index_tensor, linear, tensor, to_vec, Mlp, RmsNorm};
use super::rope::{frame_seqlens, vision_cos_sin, vision_pos_ids, window_index, GridThw};
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear};
use burn::tensor::activation;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// RMSNorm epsilon inside the vision tower (fixed in transformers).
pub(crate) const VISION_EPS: f64 = 1e-6;

/// `Conv3d(3, hidden, kernel=(2,14,14), stride=kernel, bias=False)`; weight `[hidden, C, T, P, P]`.
#[derive(Module, Debug)]
pub struct PatchProj<B: Backend> {
    pub weight: Param<Tensor<B, 5>>,
}

#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    pub proj: PatchProj<B>,
}

#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
}

#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    pub norm1: RmsNorm<B>,
    pub norm2: RmsNorm<B>,
    pub attn: VisionAttention<B>,
    pub mlp: Mlp<B>,
}

/// `PatchMerger`: `ln_q`, then `mlp.0` → GELU → `mlp.2` over 2×2 merged patches.
#[derive(Module, Debug)]
pub struct PatchMerger<B: Backend> {
    pub ln_q: RmsNorm<B>,
    pub mlp_0: Linear<B>,
    pub mlp_2: Linear<B>,
}

#[derive(Module, Debug)]
pub struct VisionTower<B: Backend> {
    pub patch_embed: PatchEmbed<B>,
    pub blocks: Vec<VisionBlock<B>>,
    pub merger: PatchMerger<B>,
}

impl<B: Backend> VisionTower<B> {
    pub fn new(vc: &VisionConfig, device: &B::Device) -> Self {
        let d = vc.hidden_size;
        let merged = d * vc.spatial_merge_size * vc.spatial_merge_size;
        VisionTower {
            patch_embed: PatchEmbed {
                proj: PatchProj {
                    weight: Initializer::Zeros.init([d, vc.in_channels, vc.temporal_patch_size, vc.patch_size, vc.patch_size], device),
                },
            },
            blocks: (0..vc.depth)
                .map(|_| VisionBlock {
                    norm1: RmsNorm::new(d, device),
                    norm2: RmsNorm::new(d, device),
                    attn: VisionAttention { qkv: linear(d, 3 * d, true, device), proj: linear(d, d, true, device) },
                    mlp: Mlp::new(d, vc.intermediate_size, true, device),
                })
                .collect(),
            merger: PatchMerger {
                ln_q: RmsNorm::new(d, device),
                mlp_0: linear(merged, merged, true, device),
                mlp_2: linear(merged, vc.out_hidden_size, true, device),
            },
        }
    }

    /// Encode the flattened patches of several images/videos (`[patches, patch_dim]`, processor
    /// order, concatenated) into language-model embeddings `[tokens, out_hidden]`, in input order.
    /// With `kernels`, the patch embedding and the blocks run on the host (`host_vision`).
    pub fn forward(&self, vc: &VisionConfig, pixels: Tensor<B, 2>, grids: &[GridThw], kernels: Option<&VisionKernels>) -> Result<Tensor<B, 2>, String> {
        let device = pixels.device();
        let dtype = self.patch_embed.proj.weight.val().dtype();
        let n: usize = grids.iter().map(|g| g.patches()).sum();
        let [rows, cols] = pixels.dims();
        if rows != n || cols != vc.patch_dim() {
            return Err(format!("pixel values are {rows}x{cols}, the grids need {n}x{}", vc.patch_dim()));
        }
        let m = vc.spatial_merge_size;
        if grids.iter().any(|g| g.h % m != 0 || g.w % m != 0 || g.t == 0) {
            return Err(format!("every grid must be a multiple of the merge size {m}: {grids:?}"));
        }
        let d = vc.hidden_size;
        let unit = m * m;
        // Window order (merged units stay contiguous).
        let (widx, cu_window) = window_index(vc, grids);
        let cu_full = frame_seqlens(grids);
        let pos = vision_pos_ids(vc, grids);
        let (cos, sin) = vision_cos_sin(vc, &pos);
        let hd = vc.head_dim();
        let reorder = |t: &[f32]| {
            let mut out = Vec::with_capacity(t.len());
            for &u in &widx {
                out.extend_from_slice(&t[u * unit * hd..(u + 1) * unit * hd]);
            }
            out
        };
        let (cos, sin) = (reorder(&cos), reorder(&sin));
        let x = match kernels {
            Some(k) => {
                let layout = VisionLayout { window: &widx, unit, cu_window: &cu_window, cu_full: &cu_full, full_blocks: &vc.fullatt_block_indexes };
                tensor::<B, 2>(k.forward(&to_vec(pixels), n, &layout, &cos, &sin), [n, d], &device, dtype)
            }
            None => {
                let w = self.patch_embed.proj.weight.val().reshape([d, vc.patch_dim()]);
                let x = pixels.cast(dtype).matmul(w.transpose());
                let mut x = x.reshape([n / unit, unit * d]).select(0, index_tensor::<B>(&widx, &device)).reshape([n, d]);
                let cos = tensor::<B, 3>(cos, [n, 1, hd], &device, burn::tensor::DType::F32);
                let sin = tensor::<B, 3>(sin, [n, 1, hd], &device, burn::tensor::DType::F32);
                for (i, blk) in self.blocks.iter().enumerate() {
                    let cu = if vc.fullatt_block_indexes.contains(&i) { &cu_full } else { &cu_window };
                    let h = blk.attn.forward(vc, blk.norm1.forward(x.clone(), VISION_EPS), &cos, &sin, cu);
                    x = x.add(h);
                    let h = blk.mlp.forward(blk.norm2.forward(x.clone(), VISION_EPS));
                    x = x.add(h);
                }
                x
            }
        };

        let mx = self.merger.ln_q.forward(x, VISION_EPS).reshape([n / unit, unit * d]);
        let mx = self.merger.mlp_2.forward(activation::gelu(self.merger.mlp_0.forward(mx)));
        let mut inverse = vec![0usize; widx.len()];
        for (k, &u) in widx.iter().enumerate() {
            inverse[u] = k;
        }
        Ok(mx.select(0, index_tensor::<B>(&inverse, &device)))
    }
}

impl<B: Backend> VisionAttention<B> {
    /// Attention restricted to the segments of `cu` (windows or whole frames); runs of equal-length
    /// segments are batched.
    fn forward(&self, vc: &VisionConfig, x: Tensor<B, 2>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>, cu: &[usize]) -> Tensor<B, 2> {
        let [n, d] = x.dims();
        let (heads, hd) = (vc.num_heads, vc.head_dim());
        let qkv = self.qkv.forward(x).reshape([n, 3, heads, hd]);
        let q = apply_rotary(qkv.clone().narrow(1, 0, 1).reshape([n, heads, hd]), cos, sin);
        let k = apply_rotary(qkv.clone().narrow(1, 1, 1).reshape([n, heads, hd]), cos, sin);
        let v = qkv.narrow(1, 2, 1).reshape([n, heads, hd]);
        let scale = (hd as f64).powf(-0.5);
        let mut outs = Vec::new();
        let mut i = 0;
        while i + 1 < cu.len() {
            let len = cu[i + 1] - cu[i];
            let mut j = i + 1;
            while j + 1 < cu.len() && cu[j + 1] - cu[j] == len {
                j += 1;
            }
            let (start, count) = (cu[i], j - i);
            let take = |t: &Tensor<B, 3>| t.clone().narrow(0, start, count * len).reshape([count, len, heads, hd]).swap_dims(1, 2);
            let (qs, ks, vs) = (take(&q), take(&k), take(&v));
            let opts = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
            let o = attention(qs, ks, vs, None, None, opts).swap_dims(1, 2).reshape([count * len, d]);
            outs.push(o);
            i = j;
        }
        self.proj.forward(Tensor::cat(outs, 0))
    }
}
