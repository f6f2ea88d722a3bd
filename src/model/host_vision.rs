//! The vision tower's patch embedding and blocks on the host, on the CPU kernels: the same block
//! products, RMSNorm, rotary and attention as the host decoder (`host_decoder`), with attention
//! restricted to each window (or whole frame, in the full-attention blocks) and not causal. The
//! patch merger stays on burn (one small product over the merged tokens).
//!
//! Used for f32 models on the CPU backend, with the text model's host decoder; burn's tower
//! runs otherwise (`Qwen25Vl::set_host_kernels`).

use super::host_decoder::{attention, with_scratch, BlockShape, HostKv};
use super::host_kernels::{LayerKernels, PackedLinear};

/// The vision tower's weights for the host: the patch embedding and every block packed.
#[derive(Clone, Debug)]
pub struct VisionKernels {
    /// The stride-equals-kernel Conv3d as one product over the flattened patches.
    pub patch: PackedLinear,
    /// Each block's `qkv`, `proj`, gate/up fused and `down` (all with biases), `norm1`/`norm2`.
    pub blocks: Vec<LayerKernels>,
    /// Sizes (`kv_heads` = `heads`) and the tower's RMSNorm epsilon.
    pub shape: BlockShape,
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
        with_scratch(|scratch| {
            for (i, lk) in self.blocks.iter().enumerate() {
                let cu = if layout.full_blocks.contains(&i) { layout.cu_full } else { layout.cu_window };
                lk.rotated_qkv(s, &x, n, cos, sin, scratch);
                let qkv = &scratch.qkv;
                // One cache per segment: its keys and values, seen by all of its rows.
                let caches: Vec<HostKv> = cu
                    .windows(2)
                    .map(|w| {
                        let mut kv = HostKv::new(s.kv_heads, hd);
                        kv.reserve(w[1] - w[0]);
                        for r in w[0]..w[1] {
                            let row = &qkv[r * qn..(r + 1) * qn];
                            kv.push(&row[d..2 * d], &row[2 * d..]);
                        }
                        kv
                    })
                    .collect();
                let views: Vec<(&HostKv, usize)> = caches.iter().map(|c| (c, c.len())).collect();
                attention(s, qkv, n, &views, false, &mut scratch.attn);
                lk.finish(s, &mut x, n, scratch);
            }
        });
        x
    }
}
