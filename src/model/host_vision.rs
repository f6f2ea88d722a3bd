//! The vision tower's patch embedding and blocks on the host, on the CPU kernels: the same block
//! products, RMSNorm, rotary and attention as the host decoder (`host_decoder`), with attention
//! restricted to each window (or whole frame, in the full-attention blocks) and not causal. The
//! patch merger stays on burn (one small product over the merged tokens).
//!
//! Used for f32 models on the CPU backend, with the text model's host decoder; burn's tower
//! runs otherwise (`Qwen25Vl::set_host_kernels`).

use super::host_decoder::{add_in_place, attention, rms_norm_into, rotate, HostKv, TextShape};
use super::host_kernels::{LayerKernels, PackedLinear};
use rayon::prelude::*;

/// The vision tower's weights for the host: the patch embedding and every block packed.
#[derive(Clone, Debug)]
pub struct VisionKernels {
    /// The stride-equals-kernel Conv3d as one product over the flattened patches.
    pub patch: PackedLinear,
    /// Each block's `qkv`, `proj`, gate/up fused and `down` (all with biases), `norm1`/`norm2`.
    pub blocks: Vec<LayerKernels>,
    /// Sizes (`kv_heads` = `heads`) and the tower's RMSNorm epsilon.
    pub shape: TextShape,
}

/// Where each block's attention segments come from.
pub struct VisionLayout<'a> {
    /// Merge units in window order (`window_index`), `unit` patches each.
    pub window: &'a [usize],
    pub unit: usize,
    /// Segment boundaries (in window order) of the windows and of the whole frames.
    pub cu_window: &'a [usize],
    pub cu_full: &'a [usize],
    /// Blocks that attend over whole frames.
    pub full_blocks: &'a [usize],
}

impl VisionKernels {
    /// Patches `[n][patch_dim]` (processor order) → the last block's output `[n][hidden]`, in
    /// window order. `cos`/`sin` are `[n][head_dim]`, already in window order.
    pub fn forward(&self, pixels: &[f32], n: usize, layout: &VisionLayout, cos: &[f32], sin: &[f32]) -> Vec<f32> {
        let s = self.shape;
        let (d, hd) = (s.hidden, s.head_dim);
        let unit = layout.unit;
        assert!(cos.len() == n * hd && sin.len() == n * hd, "cos/sin are [n][head_dim]");
        let embedded = self.patch.forward(pixels, n);
        let mut x = Vec::with_capacity(n * d);
        for &u in layout.window {
            x.extend_from_slice(&embedded[u * unit * d..(u + 1) * unit * d]);
        }
        let qn = s.qkv_width();
        let (mut h, mut qkv, mut attn, mut o, mut gu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, lk) in self.blocks.iter().enumerate() {
            let cu = if layout.full_blocks.contains(&i) { layout.cu_full } else { layout.cu_window };
            rms_norm_into(&x, d, &lk.input_norm, s.rms_norm_eps, &mut h);
            lk.qkv.forward_into(&h, n, d, &mut qkv);
            qkv.par_chunks_mut(qn).zip(cos.par_chunks(hd).zip(sin.par_chunks(hd))).with_min_len(16).for_each(|(row, (c, sn))| rotate(&mut row[..2 * d], hd, c, sn));
            // One cache per segment: its keys and values, seen by all of its rows.
            let caches: Vec<HostKv> = cu
                .windows(2)
                .map(|w| {
                    let mut kv = HostKv::new(s.kv_heads, hd);
                    for r in w[0]..w[1] {
                        let row = &qkv[r * qn..(r + 1) * qn];
                        kv.push(&row[d..2 * d], &row[2 * d..]);
                    }
                    kv
                })
                .collect();
            let views: Vec<(&HostKv, usize)> = caches.iter().map(|c| (c, c.len())).collect();
            attention(s, &qkv, n, &views, false, &mut attn);
            lk.o.forward_into(&attn, n, d, &mut o);
            add_in_place(&mut x, &o);
            rms_norm_into(&x, d, &lk.post_norm, s.rms_norm_eps, &mut h);
            lk.mlp_into(&h, n, &mut gu, &mut o);
            add_in_place(&mut x, &o);
        }
        x
    }
}
