//! The language model's decoder run wholly on the host, on the CPU kernels: RMSNorm, the fused
//! q/k/v projection with multimodal rotary, causal grouped-query attention over a host KV cache,
//! `o_proj`, SwiGLU and the residuals, all in f32 as `Qwen2DecoderLayer` computes them.
//!
//! Why: with only the linear layers on the kernels, a prefill still spent most of its time in
//! burn's glue on `flex` — layout copies after `swap_dims`/`narrow`/`expand`, a fresh buffer per
//! op, and a single-threaded naive fused attention. Here the hidden states stay in one host
//! buffer per layer step and attention runs on the same block product as the linear layers.
//!
//! Attention: each KV head's keys are kept transposed in panels of [`PANEL`] positions
//! (`[panel][head_dim][PANEL]`), so the scores of up to [`ROWS`] query rows against 64 keys are
//! one block product with `head_dim` inputs; values are kept `[position][head_dim]` (padded to a
//! multiple of [`PANEL`]), so probabilities × values is a block product too. A prefill blocks its
//! queries by head and by six consecutive positions; a decode step blocks the query heads that
//! share a KV head. Blocks run in parallel on rayon's pool. The softmax is the reference's: scores
//! scaled by `head_dim^-0.5`, the running maximum subtracted, normalised in f32 before the values.
//!
//! Several conversations can go through together ([`Segment`]s): their rows share every linear
//! layer, while each attends to its own cache (batched decoding of n samples).

use super::host_kernels::{block_product, exp_shifted_in_place, sum_of_squares, LayerKernels, Start, TextKernels, PANEL, ROWS};
use rayon::prelude::*;

/// A transformer block's sizes and RMSNorm epsilon, as the host kernels take them (from the text
/// config for the decoder; from the vision config, with `kv_heads = heads`, for the vision tower).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockShape {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
}

impl BlockShape {
    /// Width of a fused q/k/v row.
    pub fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// One layer's keys and values on the host, per KV head.
///
/// Keys are transposed in panels of [`PANEL`] positions (`[panel][head_dim][PANEL]`, the layout
/// the block product reads as weights); values are `[position][value width]`, the width being
/// `head_dim` rounded up to a multiple of [`PANEL`] (zeros beyond `head_dim`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostKv {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    head_dim: usize,
    len: usize,
}

impl HostKv {
    pub fn new(kv_heads: usize, head_dim: usize) -> Self {
        HostKv { keys: vec![Vec::new(); kv_heads], values: vec![Vec::new(); kv_heads], head_dim, len: 0 }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn kv_heads(&self) -> usize {
        self.keys.len()
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    fn value_width(&self) -> usize {
        self.head_dim.div_ceil(PANEL) * PANEL
    }

    /// Make room for `extra` more positions, so a prompt's pushes do not regrow (and copy) the
    /// cache again and again.
    pub fn reserve(&mut self, extra: usize) {
        let (hd, vw, total) = (self.head_dim, self.value_width(), self.len + extra);
        for (keys, values) in self.keys.iter_mut().zip(self.values.iter_mut()) {
            keys.reserve(total.div_ceil(PANEL) * hd * PANEL - keys.len());
            values.reserve(total * vw - values.len());
        }
    }

    /// Append one position; `k` and `v` are `[kv_heads][head_dim]`.
    pub fn push(&mut self, k: &[f32], v: &[f32]) {
        let (hd, t, vw) = (self.head_dim, self.len, self.value_width());
        assert!(k.len() == self.keys.len() * hd && v.len() == k.len(), "a KV position is [kv_heads][head_dim]");
        let (panel, col) = (t / PANEL, t % PANEL);
        for (g, (keys, values)) in self.keys.iter_mut().zip(self.values.iter_mut()).enumerate() {
            if col == 0 {
                keys.resize((panel + 1) * hd * PANEL, 0.0);
            }
            let base = panel * hd * PANEL + col;
            for (d, &kv) in k[g * hd..(g + 1) * hd].iter().enumerate() {
                keys[base + d * PANEL] = kv;
            }
            values.extend_from_slice(&v[g * hd..(g + 1) * hd]);
            values.resize((t + 1) * vw, 0.0);
        }
        self.len += 1;
    }

    /// Keep only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let (hd, vw) = (self.head_dim, self.value_width());
        for (keys, values) in self.keys.iter_mut().zip(self.values.iter_mut()) {
            keys.truncate(len.div_ceil(PANEL) * hd * PANEL);
            values.truncate(len * vw);
        }
        self.len = len;
    }

    /// Keys and values as `[kv_heads][len][head_dim]` each (burn's cache layout).
    pub fn to_heads_major(&self) -> (Vec<f32>, Vec<f32>) {
        let (hd, vw) = (self.head_dim, self.value_width());
        let mut k = Vec::with_capacity(self.keys.len() * self.len * hd);
        let mut v = Vec::with_capacity(k.capacity());
        for (keys, values) in self.keys.iter().zip(&self.values) {
            for t in 0..self.len {
                let base = (t / PANEL) * hd * PANEL + t % PANEL;
                k.extend((0..hd).map(|d| keys[base + d * PANEL]));
                v.extend_from_slice(&values[t * vw..t * vw + hd]);
            }
        }
        (k, v)
    }

    /// The cache of `[kv_heads][len][head_dim]` keys and values.
    pub fn from_heads_major(k: &[f32], v: &[f32], kv_heads: usize, len: usize, head_dim: usize) -> Self {
        assert!(k.len() == kv_heads * len * head_dim && v.len() == k.len(), "keys and values are [kv_heads][len][head_dim]");
        let mut cache = HostKv::new(kv_heads, head_dim);
        let mut kt = vec![0f32; kv_heads * head_dim];
        let mut vt = vec![0f32; kv_heads * head_dim];
        for t in 0..len {
            for g in 0..kv_heads {
                let at = (g * len + t) * head_dim;
                kt[g * head_dim..(g + 1) * head_dim].copy_from_slice(&k[at..at + head_dim]);
                vt[g * head_dim..(g + 1) * head_dim].copy_from_slice(&v[at..at + head_dim]);
            }
            cache.push(&kt, &vt);
        }
        cache
    }
}

/// Rows of one conversation going through the decoder: its per-layer caches, and how many
/// consecutive rows of the input (the positions after the cached ones) are its.
pub struct Segment<'a> {
    pub cache: &'a mut [HostKv],
    pub rows: usize,
}

/// `weight · x / sqrt(mean(x²) + eps)` per row, in f32 (`Qwen2RMSNorm`).
pub fn rms_norm(x: &[f32], width: usize, weight: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::new();
    rms_norm_into(x, width, weight, eps, &mut out);
    out
}

/// As `rms_norm`, into `out` (reused across calls).
pub fn rms_norm_into(x: &[f32], width: usize, weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.truncate(x.len());
    out.resize(x.len(), 0.0);
    out.par_chunks_mut(width).zip(x.par_chunks(width)).with_min_len(16).for_each(|(o, row)| {
        let var = sum_of_squares(row) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(weight) {
            *o = w * (v * inv);
        }
    });
}

/// `x · cos + rotate_half(x) · sin` in place on every head of a row (`cos`/`sin` `[head_dim]`,
/// their halves equal, as the multimodal rotary builds them).
fn rotate(heads: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    let (cos_lo, cos_hi) = cos[..head_dim].split_at(half);
    let (sin_lo, sin_hi) = sin[..head_dim].split_at(half);
    for head in heads.chunks_exact_mut(head_dim) {
        let (lo, hi) = head.split_at_mut(half);
        // Zipped slices of one length: bounds-check free, so the compiler vectorises it.
        for (((((a, b), cl), ch), sl), sh) in lo.iter_mut().zip(hi.iter_mut()).zip(cos_lo).zip(cos_hi).zip(sin_lo).zip(sin_hi) {
            let (x, y) = (*a, *b);
            *a = x * cl - y * sl;
            *b = y * ch + x * sh;
        }
    }
}

/// Up to [`ROWS`] query rows of one conversation against one of its KV heads.
struct Block {
    segment: usize,
    group: usize,
    /// Offset of the first row's query head in the q/k/v buffer, and the distance between rows.
    query: usize,
    query_stride: usize,
    /// Offset of the first row's output, and the distance between rows.
    out: usize,
    out_stride: usize,
    rows: usize,
    /// Keys visible to the first row minus one (its position), and how much that grows per row
    /// (1 along a prompt's positions, 0 across the heads of one position).
    first: usize,
    step: usize,
}

/// The output buffer shared by the attention blocks (each writes its own rows and columns).
struct SharedOut(*mut f32);
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}
impl SharedOut {
    /// `len` values from `offset`.
    ///
    /// SAFETY: the caller stays inside the buffer, which outlives the slice, and no two
    /// callers' ranges overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, offset: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(offset), len) }
    }
}

/// Buffers a block reuses from layer to layer (fresh megabyte-sized allocations fault their
/// pages in on every prefill product).
#[derive(Default)]
pub(crate) struct Scratch {
    h: Vec<f32>,
    /// The fused q/k/v rows, queries and keys rotated.
    pub qkv: Vec<f32>,
    /// Attention's output, before the output projection.
    pub attn: Vec<f32>,
    o: Vec<f32>,
    gu: Vec<f32>,
}

impl Scratch {
    fn bytes(&self) -> usize {
        [&self.h, &self.qkv, &self.attn, &self.o, &self.gu].iter().map(|v| v.capacity() * 4).sum()
    }
}

/// The most a thread keeps in its [`Scratch`] between calls (a 7B's long prefill needs far more,
/// and is given it only for the call).
const KEPT_SCRATCH_BYTES: usize = 64 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Run `f` with the calling thread's reused block buffers: fresh multi-megabyte buffers would
/// fault their pages in again on every prefill (≈ 2 % of a 512-token one).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = f(&mut scratch);
            if scratch.bytes() > KEPT_SCRATCH_BYTES {
                *scratch = Scratch::default();
            }
            result
        }
        // Re-entered on this thread (not done today): buffers for this call only.
        Err(_) => f(&mut Scratch::default()),
    })
}

impl LayerKernels {
    /// `scratch.qkv` ← q/k/v of `norm(x)` (`input_norm`), queries and keys rotated by `cos`/`sin`
    /// (`[rows][head_dim]`).
    pub(crate) fn rotated_qkv(&self, s: BlockShape, x: &[f32], rows: usize, cos: &[f32], sin: &[f32], scratch: &mut Scratch) {
        let (d, hd) = (s.hidden, s.head_dim);
        let rotated = (s.heads + s.kv_heads) * hd;
        rms_norm_into(x, d, &self.input_norm, s.rms_norm_eps, &mut scratch.h);
        self.qkv.forward_into(&scratch.h, rows, d, &mut scratch.qkv);
        scratch.qkv.par_chunks_mut(s.qkv_width()).zip(cos.par_chunks(hd).zip(sin.par_chunks(hd))).with_min_len(16).for_each(|(row, (c, sn))| rotate(&mut row[..rotated], hd, c, sn));
    }

    /// The rest of the block after attention: `x += o(scratch.attn)`, then
    /// `x += mlp(norm(x))` (`post_norm`).
    pub(crate) fn finish(&self, s: BlockShape, x: &mut [f32], rows: usize, scratch: &mut Scratch) {
        self.o.forward_into(&scratch.attn, rows, s.heads * s.head_dim, &mut scratch.o);
        add_in_place(x, &scratch.o);
        rms_norm_into(x, s.hidden, &self.post_norm, s.rms_norm_eps, &mut scratch.h);
        self.mlp_into(&scratch.h, rows, &mut scratch.gu, &mut scratch.o);
        add_in_place(x, &scratch.o);
    }
}

impl TextKernels {
    /// Run every decoder layer over `x` (`[rows][hidden]`, the rows of `segments` one after the
    /// other), appending each segment's keys and values to its caches. `cos`/`sin` are
    /// `[rows][head_dim]`. Returns the final-normed hidden states; with `collect`, pushes every
    /// layer's output and then the normed output onto it.
    pub fn forward(&self, mut x: Vec<f32>, cos: &[f32], sin: &[f32], segments: &mut [Segment], mut collect: Option<&mut Vec<Vec<f32>>>) -> Vec<f32> {
        let s = self.shape;
        let (d, hd) = (s.hidden, s.head_dim);
        let rows = x.len() / d;
        assert_eq!(rows, segments.iter().map(|g| g.rows).sum::<usize>(), "segment rows must cover the input");
        assert!(cos.len() == rows * hd && sin.len() == rows * hd, "cos/sin are [rows][head_dim]");
        assert!(segments.iter().all(|g| g.cache.len() == self.layers.len()), "one cache per layer");
        let (qn, kq) = (s.qkv_width(), s.heads * hd);
        let kvw = s.kv_heads * hd;
        with_scratch(|scratch| {
            for (l, lk) in self.layers.iter().enumerate() {
                lk.rotated_qkv(s, &x, rows, cos, sin, scratch);
                let qkv = &scratch.qkv;
                let mut start = 0;
                for g in segments.iter_mut() {
                    g.cache[l].reserve(g.rows);
                    for r in start..start + g.rows {
                        let row = &qkv[r * qn..(r + 1) * qn];
                        g.cache[l].push(&row[kq..kq + kvw], &row[kq + kvw..]);
                    }
                    start += g.rows;
                }
                let caches: Vec<(&HostKv, usize)> = segments.iter().map(|g| (&g.cache[l], g.rows)).collect();
                attention(s, qkv, rows, &caches, true, &mut scratch.attn);
                lk.finish(s, &mut x, rows, scratch);
                if let Some(c) = collect.as_deref_mut() {
                    c.push(x.clone());
                }
            }
        });
        let out = rms_norm(&x, d, &self.norm, s.rms_norm_eps);
        if let Some(c) = collect {
            c.push(out.clone());
        }
        out
    }
}

/// Attention of the new rows (`qkv`, `[rows][qkv width]`, rotated; their keys and values
/// already in the caches, one cache per segment of rows) → `out`, `[rows][heads·head_dim]`,
/// before the output projection. Causal: row `i` of a segment sees the cached positions and the
/// segment's rows up to `i`; otherwise every row sees its whole segment (the vision tower's
/// windows).
pub fn attention(s: BlockShape, qkv: &[f32], rows: usize, caches: &[(&HostKv, usize)], causal: bool, out: &mut Vec<f32>) {
    let (h, kvh, hd) = (s.heads, s.kv_heads, s.head_dim);
    let rep = h / kvh;
    let (qn, on) = (s.qkv_width(), h * hd);
    let mut blocks = Vec::new();
    let mut start = 0;
    for (segment, &(kv, n)) in caches.iter().enumerate() {
        let past = kv.len() - n;
        if n == 1 {
            // One position: the query heads that share a KV head, six at a time.
            for group in 0..kvh {
                for e in (0..rep).step_by(ROWS) {
                    let head = group * rep + e;
                    let (query, out) = (start * qn + head * hd, start * on + head * hd);
                    blocks.push(Block { segment, group, query, query_stride: hd, out, out_stride: hd, rows: ROWS.min(rep - e), first: past, step: 0 });
                }
            }
        } else {
            // A prompt (or a vision window): each head over six consecutive rows at a time.
            for head in 0..h {
                for p in (0..n).step_by(ROWS) {
                    let (query, out) = ((start + p) * qn + head * hd, (start + p) * on + head * hd);
                    // Causal: row p sees up to its own position; else the whole segment.
                    let (first, step) = if causal { (past + p, 1) } else { (kv.len() - 1, 0) };
                    blocks.push(Block { segment, group: head / rep, query, query_stride: qn, out, out_stride: on, rows: ROWS.min(n - p), first, step });
                }
            }
        }
        start += n;
    }
    out.truncate(rows * on);
    out.resize(rows * on, 0.0);
    let shared = SharedOut(out.as_mut_ptr());
    let scale = (hd as f32).powf(-0.5);
    // Each thread reuses one score buffer across its blocks.
    blocks.par_iter().for_each_init(Vec::new, |scores: &mut Vec<f32>, b| {
        let kv = caches[b.segment].0;
        let (keys, values, vw) = (&kv.keys[b.group], &kv.values[b.group], kv.value_width());
        let visible = |r: usize| b.first + r * b.step + 1;
        let most = visible(b.rows - 1);
        let width = most.div_ceil(PANEL) * PANEL;
        // Every score is written by its panel's product before it is read.
        scores.resize(b.rows * width, 0.0);
        let scores = &mut scores[..b.rows * width];
        for p in 0..width / PANEL {
            block_product(&keys[p * hd * PANEL..], PANEL, &qkv[b.query..], b.query_stride, hd, b.rows, &mut scores[p * PANEL..], width, Start::Zero);
        }
        // Softmax's numerators; each row's output is divided by their sum after the product.
        let mut inverse_sums = [0f32; ROWS];
        for (r, row) in scores.chunks_mut(width).enumerate() {
            let (seen, hidden) = row.split_at_mut(visible(r));
            inverse_sums[r] = 1.0 / exp_shifted_in_place(seen, scale);
            hidden.fill(0.0);
        }
        let mut mixed = [0f32; ROWS * PANEL];
        for c in (0..hd).step_by(PANEL) {
            block_product(&values[c..], vw, scores, width, most, b.rows, &mut mixed, PANEL, Start::Zero);
            let cols = PANEL.min(hd - c);
            for r in 0..b.rows {
                // SAFETY: each block writes its own rows' columns `head·hd .. +hd` (blocks
                // cover distinct (row, head) pairs), and `out` outlives the parallel loop.
                let dst = unsafe { shared.slice(b.out + r * b.out_stride + c, cols) };
                for (d, m) in dst.iter_mut().zip(&mixed[r * PANEL..r * PANEL + cols]) {
                    *d = m * inverse_sums[r];
                }
            }
        }
    });
}

/// `x += y`, elementwise.
fn add_in_place(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(a, b)| {
        for (a, b) in a.iter_mut().zip(b) {
            *a += b;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::host_kernels::tests::values;
    use super::*;

    #[test]
    fn the_cache_round_trips_through_burns_layout_and_truncates() {
        for (kvh, hd, len) in [(2, 64, 130), (1, 16, 3), (3, 128, 64)] {
            let (k, v) = (values(kvh * len * hd, 1), values(kvh * len * hd, 2));
            let c = HostKv::from_heads_major(&k, &v, kvh, len, hd);
            assert_eq!(c.len(), len);
            assert_eq!(c.to_heads_major(), (k.clone(), v.clone()));
            let mut roomy = c.clone();
            roomy.reserve(2 * PANEL + 1);
            assert_eq!(roomy, c, "reserving room changes nothing held");
            let mut t = c.clone();
            t.truncate(len / 2);
            let keep = |a: &[f32]| (0..kvh).flat_map(|g| a[g * len * hd..(g * len + len / 2) * hd].to_vec()).collect::<Vec<f32>>();
            assert_eq!(t.to_heads_major(), (keep(&k), keep(&v)));
            // Growing again after a truncation gives what a fresh cache of those positions holds.
            let mut grown = t.clone();
            let mut fresh = HostKv::new(kvh, hd);
            let (k2, v2) = (values(kvh * hd, 3), values(kvh * hd, 4));
            let (hk, hv) = t.to_heads_major();
            for p in 0..len / 2 {
                let at = |a: &[f32]| (0..kvh).flat_map(|g| a[(g * (len / 2) + p) * hd..(g * (len / 2) + p + 1) * hd].to_vec()).collect::<Vec<f32>>();
                fresh.push(&at(&hk), &at(&hv));
            }
            grown.push(&k2, &v2);
            fresh.push(&k2, &v2);
            assert_eq!(grown.to_heads_major(), fresh.to_heads_major());
        }
    }

    /// Causal attention computed naively in f64 for one conversation: `q` `[n][h][hd]` at
    /// positions `past..past+n`, keys/values `[kvh][past+n][hd]`.
    #[allow(clippy::too_many_arguments)]
    fn naive_attention(q: &[f32], k: &[f32], v: &[f32], n: usize, past: usize, h: usize, kvh: usize, hd: usize) -> Vec<f32> {
        naive_attention_masked(q, k, v, n, past, h, kvh, hd, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn naive_attention_masked(q: &[f32], k: &[f32], v: &[f32], n: usize, past: usize, h: usize, kvh: usize, hd: usize, causal: bool) -> Vec<f32> {
        let total = past + n;
        let mut out = vec![0f32; n * h * hd];
        for i in 0..n {
            for head in 0..h {
                let g = head / (h / kvh);
                let qi = &q[(i * h + head) * hd..][..hd];
                let seen = if causal { past + i + 1 } else { total };
                let s: Vec<f64> = (0..seen).map(|t| (0..hd).map(|d| qi[d] as f64 * k[(g * total + t) * hd + d] as f64).sum::<f64>() / (hd as f64).sqrt()).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    out[(i * h + head) * hd + d] = ((0..seen).map(|t| e[t] * v[(g * total + t) * hd + d] as f64).sum::<f64>() / z) as f32;
                }
            }
        }
        out
    }

    fn shape(h: usize, kvh: usize, hd: usize) -> BlockShape {
        BlockShape { hidden: h * hd, heads: h, kv_heads: kvh, head_dim: hd, rms_norm_eps: 1e-6 }
    }

    /// The q/k/v rows of `n` positions (`[n][qkv width]`) from queries `[n][h][hd]` and
    /// keys/values `[kvh][n][hd]`.
    fn qkv_rows(q: &[f32], k: &[f32], v: &[f32], n: usize, s: BlockShape) -> Vec<f32> {
        let (h, kvh, hd) = (s.heads, s.kv_heads, s.head_dim);
        let mut rows = Vec::new();
        for i in 0..n {
            rows.extend_from_slice(&q[i * h * hd..(i + 1) * h * hd]);
            for src in [k, v] {
                for g in 0..kvh {
                    rows.extend_from_slice(&src[(g * n + i) * hd..(g * n + i + 1) * hd]);
                }
            }
        }
        rows
    }

    #[test]
    fn prompt_and_single_position_attention_match_a_naive_causal_softmax() {
        // Ragged position blocks (n not a multiple of 6), key panels (totals not multiples of
        // 64), head dims below, at and above a panel, and 1, 3 and 7 query heads per KV head.
        for (h, kvh, hd, past, n) in [(4, 2, 64, 0, 70), (3, 1, 16, 5, 13), (2, 2, 128, 64, 1), (7, 1, 64, 99, 1), (6, 2, 32, 0, 1), (4, 4, 8, 0, 9)] {
            let s = shape(h, kvh, hd);
            let total = past + n;
            let (k, v) = (values(kvh * total * hd, 11), values(kvh * total * hd, 12));
            let q = values(n * h * hd, 13);
            let cache = HostKv::from_heads_major(&k, &v, kvh, total, hd);
            // The new rows' q/k/v as the decoder lays them out (their keys/values already pushed).
            let (kn, vn): (Vec<f32>, Vec<f32>) = {
                let pick = |a: &[f32]| (0..kvh).flat_map(|g| a[(g * total + past) * hd..(g * total + total) * hd].to_vec()).collect();
                (pick(&k), pick(&v))
            };
            let rows = qkv_rows(&q, &kn, &vn, n, s);
            let mut got = Vec::new();
            attention(s, &rows, n, &[(&cache, n)], true, &mut got);
            let want = naive_attention(&q, &k, &v, n, past, h, kvh, hd);
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-5, "h {h} kvh {kvh} hd {hd} past {past} n {n}: max error {err}");
        }
    }

    #[test]
    fn windows_attend_to_their_whole_segment_when_not_causal() {
        // The vision tower: several windows of different sizes, each row seeing its window.
        let s = shape(3, 3, 16);
        let (h, hd) = (3, 16);
        let lens = [16usize, 7, 70];
        let (mut caches, mut rows, mut want) = (Vec::new(), Vec::new(), Vec::new());
        for (w, &n) in lens.iter().enumerate() {
            let (k, v, q) = (values(h * n * hd, 50 + w as u32), values(h * n * hd, 60 + w as u32), values(n * h * hd, 70 + w as u32));
            caches.push(HostKv::from_heads_major(&k, &v, h, n, hd));
            rows.extend(qkv_rows(&q, &k, &v, n, s));
            want.extend(naive_attention_masked(&q, &k, &v, n, 0, h, h, hd, false));
        }
        let views: Vec<(&HostKv, usize)> = caches.iter().zip(&lens).map(|(c, &n)| (c, n)).collect();
        let mut got = Vec::new();
        attention(s, &rows, lens.iter().sum(), &views, false, &mut got);
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-5, "max error {err}");
    }

    #[test]
    fn conversations_going_through_together_each_attend_to_their_own_cache() {
        let s = shape(4, 2, 64);
        let (kvh, hd) = (2, 64);
        let lens = [3usize, 70, 1];
        let mut caches = Vec::new();
        let mut rows = Vec::new();
        let mut want = Vec::new();
        for (c, &total) in lens.iter().enumerate() {
            let (k, v) = (values(kvh * total * hd, 20 + c as u32), values(kvh * total * hd, 30 + c as u32));
            let q = values(s.heads * hd, 40 + c as u32);
            caches.push(HostKv::from_heads_major(&k, &v, kvh, total, hd));
            let pick = |a: &[f32]| (0..kvh).flat_map(|g| a[(g * total + total - 1) * hd..(g * total + total) * hd].to_vec()).collect::<Vec<f32>>();
            rows.extend(qkv_rows(&q, &pick(&k), &pick(&v), 1, s));
            want.extend(naive_attention(&q, &k, &v, 1, total - 1, s.heads, kvh, hd));
        }
        let views: Vec<(&HostKv, usize)> = caches.iter().map(|c| (c, 1)).collect();
        let mut got = Vec::new();
        attention(s, &rows, lens.len(), &views, true, &mut got);
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-5, "max error {err}");
    }

    #[test]
    fn rms_norm_and_rotary_follow_the_reference_formulas() {
        let x = values(2 * 8, 5);
        let w = values(8, 6);
        let y = rms_norm(&x, 8, &w, 1e-6);
        for r in 0..2 {
            let row = &x[r * 8..(r + 1) * 8];
            let inv = 1.0 / (row.iter().map(|v| (v * v) as f64).sum::<f64>() / 8.0 + 1e-6).sqrt();
            for i in 0..8 {
                assert!((y[r * 8 + i] as f64 - w[i] as f64 * row[i] as f64 * inv).abs() < 1e-5);
            }
        }
        // rotate_half: cat(-x2, x1); cos/sin halves equal.
        let mut head = vec![1.0, 2.0, 3.0, 4.0];
        let (c, sn) = ([0.5, 0.25, 0.5, 0.25], [2.0, 4.0, 2.0, 4.0]);
        rotate(&mut head, 4, &c, &sn);
        assert_eq!(head, vec![1.0 * 0.5 - 3.0 * 2.0, 2.0 * 0.25 - 4.0 * 4.0, 3.0 * 0.5 + 1.0 * 2.0, 4.0 * 0.25 + 2.0 * 4.0]);
    }
}
