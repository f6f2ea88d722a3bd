//! CPU kernels for the language model's linear layers (decoding one token, one token of each of
//! n conversations, or a prefill), threaded over output columns and vectorised with AVX-512
//! where the CPU has it.
//!
//! Why: burn's `flex` backend runs every matrix product under 192³ multiply-adds on one thread
//! and without packing, which is every decode-time product but the lm_head. Decoding is bound by
//! how fast the weights stream from memory, so these kernels keep each weight matrix in panels of
//! [`PANEL`] output columns (`[k][PANEL]`, contiguous) and split the panels between the threads of
//! rayon's global pool (the one flex uses).
//!
//! Weights whose every value is exactly a bfloat16 (the published Qwen2.5-VL checkpoints are
//! stored in bf16) are kept as bf16 and widened to f32 in registers: half the bytes to stream,
//! and the same products as f32 weights, since the widening is exact. Arithmetic is f32 with
//! f32 accumulation in every case; only the summation order differs from burn's kernels (~1e-6).
//!
//! [`TextKernels`] packs a model's text weights once; the q/k/v projections are fused into one
//! matrix, as are gate and up. Prefill uses them too (rows four at a time over L2-sized blocks of
//! each panel): on `bench-44m` that was faster than flex's matrix products (docs/benchmarks.md).

use rayon::prelude::*;

/// Output columns per panel (four 16-lane vectors).
pub const PANEL: usize = 64;
/// Inputs per block of a panel (512 × 64 f32 = 128 KiB, well inside a core's L2).
pub const K_BLOCK: usize = 512;

/// How a packed matrix stores its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightStorage {
    F32,
    /// bfloat16, used only when every value is exactly representable (lossless).
    Bf16,
}

#[derive(Clone, Debug)]
enum Panels {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

/// `y = x · W + b`, `W` being `[k, n]` (input × output), packed in panels of output columns.
#[derive(Clone, Debug)]
pub struct PackedLinear {
    pub k: usize,
    pub n: usize,
    panels: usize,
    data: Panels,
    bias: Option<Vec<f32>>,
}

/// True when every value survives a round trip through bfloat16.
pub fn bf16_exact(values: &[f32]) -> bool {
    values.iter().all(|v| v.to_bits() & 0xFFFF == 0)
}

impl PackedLinear {
    /// Pack `n` outputs over `k` inputs; `weight(i, j)` is the weight of input `i` for output `j`.
    /// Stored as bf16 when `bf16` is set (the caller checks [`bf16_exact`]: the value's low 16
    /// bits are dropped).
    pub fn pack(k: usize, n: usize, bf16: bool, weight: impl Fn(usize, usize) -> f32 + Sync, bias: Option<Vec<f32>>) -> Self {
        assert!(bias.as_ref().is_none_or(|b| b.len() == n), "bias length must equal the output count");
        let panels = n.div_ceil(PANEL);
        let fill = |p: usize, chunk: &mut [f32]| {
            for i in 0..k {
                for c in 0..PANEL {
                    let j = p * PANEL + c;
                    chunk[i * PANEL + c] = if j < n { weight(i, j) } else { 0.0 };
                }
            }
        };
        let data = if bf16 {
            let mut v = vec![0u16; panels * k * PANEL];
            v.par_chunks_mut(k * PANEL).enumerate().for_each(|(p, chunk)| {
                let mut tmp = vec![0f32; k * PANEL];
                fill(p, &mut tmp);
                for (d, s) in chunk.iter_mut().zip(&tmp) {
                    *d = (s.to_bits() >> 16) as u16;
                }
            });
            Panels::Bf16(v)
        } else {
            let mut v = vec![0f32; panels * k * PANEL];
            v.par_chunks_mut(k * PANEL).enumerate().for_each(|(p, chunk)| fill(p, chunk));
            Panels::F32(v)
        };
        PackedLinear { k, n, panels, data, bias }
    }

    /// Pack a row-major `[k][n]` matrix (burn's `Linear` layout), bf16 when that is lossless.
    pub fn from_in_out(k: usize, n: usize, w: &[f32], bias: Option<Vec<f32>>) -> Self {
        assert_eq!(w.len(), k * n, "weight size");
        Self::pack(k, n, bf16_exact(w), |i, j| w[i * n + j], bias)
    }

    /// Pack a row-major `[n][k]` matrix (an embedding used as the output layer).
    pub fn from_out_in(n: usize, k: usize, w: &[f32]) -> Self {
        assert_eq!(w.len(), k * n, "weight size");
        Self::pack(k, n, bf16_exact(w), |i, j| w[j * k + i], None)
    }

    pub fn storage(&self) -> WeightStorage {
        match self.data {
            Panels::F32(_) => WeightStorage::F32,
            Panels::Bf16(_) => WeightStorage::Bf16,
        }
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Panels::F32(v) => v.len() * 4,
            Panels::Bf16(v) => v.len() * 2,
        }
    }

    /// `x` is `[rows][k]` row-major; returns `[rows][n]`. Any number of rows: each panel task
    /// walks the rows four at a time over blocks of [`K_BLOCK`] inputs, so the panel block it
    /// re-reads stays in the core's L2 cache.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "input is not [rows][k]");
        self.forward_strided(x, rows, self.k)
    }

    /// As `forward`, reading row `r` from `x[r·stride ..][..k]` (the first `k` columns of a
    /// wider matrix).
    pub fn forward_strided(&self, x: &[f32], rows: usize, stride: usize) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert!(stride >= k && (rows == 0 || x.len() >= (rows - 1) * stride + k), "input rows too short");
        // Every element is written by the first input block of its panel (no zero fill: on a
        // prefill these buffers are megabytes).
        let mut y: Vec<std::mem::MaybeUninit<f32>> = Vec::with_capacity(rows * n);
        // SAFETY: MaybeUninit needs no initialisation.
        unsafe { y.set_len(rows * n) };
        let out = SharedOut(y.as_mut_ptr() as *mut f32);
        let threads = rayon::current_num_threads().max(1);
        let min_len = (self.panels / (4 * threads)).max(1);
        (0..self.panels).into_par_iter().with_min_len(min_len).for_each(|p| {
            let mut tile = [0f32; 4 * PANEL];
            let cols = PANEL.min(n - p * PANEL);
            for kb in (0..k).step_by(K_BLOCK) {
                let len = K_BLOCK.min(k - kb);
                let mut r0 = 0;
                while r0 < rows {
                    let mr = (rows - r0).min(4);
                    panel_product(&self.data, (p * k + kb) * PANEL, &x[r0 * stride + kb..], stride, len, mr, &mut tile);
                    for r in 0..mr {
                        let part = &tile[r * PANEL..r * PANEL + cols];
                        // SAFETY: panel `p` alone writes columns `p*PANEL .. p*PANEL+cols` of
                        // each row, and `y` outlives the parallel loop.
                        let dst = unsafe { std::slice::from_raw_parts_mut(out.at((r0 + r) * n + p * PANEL), cols) };
                        match (kb, &self.bias) {
                            (0, Some(b)) => {
                                for ((d, s), bb) in dst.iter_mut().zip(part).zip(&b[p * PANEL..p * PANEL + cols]) {
                                    *d = s + bb;
                                }
                            }
                            (0, None) => dst.copy_from_slice(part),
                            _ => {
                                for (d, s) in dst.iter_mut().zip(part) {
                                    *d += s;
                                }
                            }
                        }
                    }
                    r0 += mr;
                }
            }
        });
        let mut y = std::mem::ManuallyDrop::new(y);
        // SAFETY: every element was written above (panels cover all n columns of every row, and
        // block 0 of each writes its columns); MaybeUninit<f32> has f32's layout.
        unsafe { Vec::from_raw_parts(y.as_mut_ptr() as *mut f32, y.len(), y.capacity()) }
    }
}

/// The output buffer shared by the panel tasks (each writes its own columns).
struct SharedOut(*mut f32);
unsafe impl Sync for SharedOut {}
unsafe impl Send for SharedOut {}
impl SharedOut {
    fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// `tile[r][0..PANEL] = Σ_{i<len} x[r·stride + i] · panel[i][0..PANEL]` for `mr ≤ 4` rows of `x`,
/// the panel block starting at `offset`.
fn panel_product(data: &Panels, offset: usize, x: &[f32], stride: usize, len: usize, mr: usize, tile: &mut [f32; 4 * PANEL]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the slices below hold len*PANEL panel values, and
            // `x` holds mr rows of `stride` (the last at least `len`).
            unsafe {
                match data {
                    Panels::F32(w) => {
                        let p = w[offset..offset + len * PANEL].as_ptr();
                        assert!(x.len() >= (mr - 1) * stride + len);
                        match mr {
                            1 => avx512::panel_f32::<1>(x, stride, len, p, tile),
                            2 => avx512::panel_f32::<2>(x, stride, len, p, tile),
                            3 => avx512::panel_f32::<3>(x, stride, len, p, tile),
                            _ => avx512::panel_f32::<4>(x, stride, len, p, tile),
                        }
                    }
                    Panels::Bf16(w) => {
                        let p = w[offset..offset + len * PANEL].as_ptr();
                        assert!(x.len() >= (mr - 1) * stride + len);
                        match mr {
                            1 => avx512::panel_bf16::<1>(x, stride, len, p, tile),
                            2 => avx512::panel_bf16::<2>(x, stride, len, p, tile),
                            3 => avx512::panel_bf16::<3>(x, stride, len, p, tile),
                            _ => avx512::panel_bf16::<4>(x, stride, len, p, tile),
                        }
                    }
                }
            }
            return;
        }
    }
    portable_panel(data, offset, x, stride, len, mr, tile);
}

/// The same product in plain Rust (other CPUs; the compiler vectorises the inner loop).
fn portable_panel(data: &Panels, offset: usize, x: &[f32], stride: usize, len: usize, mr: usize, tile: &mut [f32; 4 * PANEL]) {
    let mut acc = [[0f32; PANEL]; 4];
    let mut wrow = [0f32; PANEL];
    for i in 0..len {
        match data {
            Panels::F32(w) => wrow.copy_from_slice(&w[offset + i * PANEL..offset + (i + 1) * PANEL]),
            Panels::Bf16(w) => {
                for (d, s) in wrow.iter_mut().zip(&w[offset + i * PANEL..offset + (i + 1) * PANEL]) {
                    *d = f32::from_bits((*s as u32) << 16);
                }
            }
        }
        for (r, a) in acc.iter_mut().enumerate().take(mr) {
            let xv = x[r * stride + i];
            for (av, wv) in a.iter_mut().zip(&wrow) {
                *av += xv * wv;
            }
        }
    }
    for r in 0..mr {
        tile[r * PANEL..(r + 1) * PANEL].copy_from_slice(&acc[r]);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// Widen 16 bfloat16 values to f32 (exact: a bf16 is an f32's high half).
    #[inline(always)]
    unsafe fn widen(p: *const u16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)), 16))
    }

    macro_rules! panel_kernel {
        ($name:ident, $elem:ty, $load:expr) => {
            #[target_feature(enable = "avx512f")]
            pub unsafe fn $name<const MR: usize>(x: &[f32], stride: usize, len: usize, w: *const $elem, tile: &mut [f32; 4 * PANEL]) {
                let load = $load;
                let mut acc = [[_mm512_setzero_ps(); 4]; MR];
                let xp = x.as_ptr();
                for i in 0..len {
                    let row = w.add(i * PANEL);
                    let w0 = load(row);
                    let w1 = load(row.add(16));
                    let w2 = load(row.add(32));
                    let w3 = load(row.add(48));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let xb = _mm512_set1_ps(*xp.add(r * stride + i));
                        a[0] = _mm512_fmadd_ps(xb, w0, a[0]);
                        a[1] = _mm512_fmadd_ps(xb, w1, a[1]);
                        a[2] = _mm512_fmadd_ps(xb, w2, a[2]);
                        a[3] = _mm512_fmadd_ps(xb, w3, a[3]);
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    for (q, v) in a.iter().enumerate() {
                        _mm512_storeu_ps(tile.as_mut_ptr().add(r * PANEL + q * 16), *v);
                    }
                }
            }
        };
    }

    panel_kernel!(panel_f32, f32, |p: *const f32| _mm512_loadu_ps(p));
    panel_kernel!(panel_bf16, u16, |p: *const u16| widen(p));
}

/// One decoder layer's packed weights.
#[derive(Clone, Debug)]
pub struct LayerKernels {
    /// q, k and v projections side by side (`[hidden, (h + 2·kvh)·hd]`, with their biases).
    pub qkv: PackedLinear,
    pub o: PackedLinear,
    /// gate and up side by side (`[hidden, 2·intermediate]`).
    pub gate_up: PackedLinear,
    pub down: PackedLinear,
}

impl LayerKernels {
    /// `down(silu(gate(x)) · up(x))` for `rows` rows of `x`.
    pub fn mlp(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut gu = self.gate_up.forward(x, rows);
        let inter = self.gate_up.n / 2;
        // silu(gate) · up in place of gate; down reads those first `inter` columns of each row.
        gu.par_chunks_mut(2 * inter).for_each(|row| {
            let (g, u) = row.split_at_mut(inter);
            for (gv, uv) in g.iter_mut().zip(u.iter()) {
                *gv = *gv / (1.0 + (-*gv).exp()) * uv;
            }
        });
        self.down.forward_strided(&gu, rows, 2 * inter)
    }
}

/// The language model's linear layers packed for decoding.
#[derive(Clone, Debug)]
pub struct TextKernels {
    pub layers: Vec<LayerKernels>,
    pub lm_head: PackedLinear,
}

impl TextKernels {
    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.lm_head.bytes() + self.layers.iter().map(|l| l.qkv.bytes() + l.o.bytes() + l.gate_up.bytes() + l.down.bytes()).sum::<usize>()
    }

    /// bf16 when every matrix is stored as bf16, else f32 (mixed counts as f32).
    pub fn storage(&self) -> WeightStorage {
        let all = self.layers.iter().all(|l| [&l.qkv, &l.o, &l.gate_up, &l.down].iter().all(|p| p.storage() == WeightStorage::Bf16));
        if all && self.lm_head.storage() == WeightStorage::Bf16 {
            WeightStorage::Bf16
        } else {
            WeightStorage::F32
        }
    }
}

/// One `[k][n]` row-major matrix, its output count `n` and its bias, if any.
pub type MatrixPart<'a> = (&'a [f32], usize, Option<&'a [f32]>);

/// Matrices `[k][n_i]` (row-major) side by side as one `[k][Σ n_i]`, with their biases (zeros
/// where a part has none, `None` when no part has one).
pub fn side_by_side(k: usize, parts: &[MatrixPart]) -> (Vec<f32>, usize, Option<Vec<f32>>) {
    let n: usize = parts.iter().map(|p| p.1).sum();
    let mut w = Vec::with_capacity(k * n);
    for i in 0..k {
        for (m, ni, _) in parts {
            w.extend_from_slice(&m[i * ni..(i + 1) * ni]);
        }
    }
    let bias = parts.iter().any(|p| p.2.is_some()).then(|| parts.iter().flat_map(|(_, ni, b)| b.map(|b| b.to_vec()).unwrap_or_else(|| vec![0.0; *ni])).collect());
    (w, n, bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], rows: usize, k: usize, n: usize, w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let s: f64 = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + j] as f64).sum();
                y[r * n + j] = s as f32 + b.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn products_match_a_naive_matmul_for_any_row_count_ragged_panels_and_input_blocks() {
        for &(k, n) in &[(1, 1), (7, 63), (64, 64), (33, 65), (130, 200), (512, 129), (1300, 70)] {
            let w = values(k * n, (k * 31 + n) as u32);
            let b = values(n, 7);
            let p = PackedLinear::from_in_out(k, n, &w, Some(b.clone()));
            assert_eq!(p.storage(), WeightStorage::F32, "random values are not bf16");
            for rows in (1..=9).chain([37]) {
                let x = values(rows * k, rows as u32);
                let want = naive(&x, rows, k, n, &w, Some(&b));
                let got = p.forward(&x, rows);
                let err = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(err < 1e-4 * (k as f32).sqrt(), "k {k} n {n} rows {rows}: max error {err}");
            }
        }
    }

    #[test]
    fn bf16_exact_weights_are_stored_as_bf16_and_give_the_f32_products() {
        let (k, n) = (96, 150);
        let w: Vec<f32> = values(k * n, 3).iter().map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000)).collect();
        assert!(bf16_exact(&w));
        let p = PackedLinear::from_in_out(k, n, &w, None);
        assert_eq!(p.storage(), WeightStorage::Bf16);
        assert_eq!(p.bytes(), 3 * k * PANEL * 2);
        let f = PackedLinear::pack(k, n, false, |i, j| w[i * n + j], None);
        for rows in [1, 4, 5] {
            let x = values(rows * k, 11);
            let a = p.forward(&x, rows);
            assert_eq!(a, f.forward(&x, rows), "bf16 storage widens exactly, so products are bit-identical");
            let want = naive(&x, rows, k, n, &w, None);
            assert!(a.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-3));
        }
    }

    #[test]
    fn the_portable_kernel_matches_the_vector_one() {
        let (k, n) = (70, 64);
        let w = values(k * n, 5);
        let p = PackedLinear::from_in_out(k, n, &w, None);
        let x = values(3 * k, 9);
        let mut tile = [0f32; 4 * PANEL];
        portable_panel(&p.data, 0, &x, k, k, 3, &mut tile);
        let want = naive(&x, 3, k, n, &w, None);
        for r in 0..3 {
            for j in 0..n {
                assert!((tile[r * PANEL + j] - want[r * n + j]).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn the_output_layer_packs_from_an_embedding_and_parts_sit_side_by_side() {
        let (vocab, k) = (70, 24);
        let e = values(vocab * k, 2);
        let p = PackedLinear::from_out_in(vocab, k, &e);
        let x = values(k, 4);
        let y = p.forward(&x, 1);
        for j in 0..vocab {
            let s: f32 = (0..k).map(|i| x[i] * e[j * k + i]).sum();
            assert!((y[j] - s).abs() < 1e-4);
        }
        let (a, b) = (values(k * 3, 1), values(k * 2, 2));
        let (w, n, bias) = side_by_side(k, &[(&a, 3, Some(&[1.0, 2.0, 3.0])), (&b, 2, None)]);
        assert_eq!(n, 5);
        assert_eq!(bias.unwrap(), vec![1.0, 2.0, 3.0, 0.0, 0.0]);
        assert_eq!(&w[5..8], &a[3..6]);
        assert_eq!(&w[8..10], &b[2..4]);
    }

    #[test]
    fn the_mlp_is_silu_gate_times_up_then_down() {
        let (k, inter) = (16, 20);
        let (g, u, d) = (values(k * inter, 1), values(k * inter, 2), values(inter * k, 3));
        let (gu, n, _) = side_by_side(k, &[(&g, inter, None), (&u, inter, None)]);
        let gate_up = PackedLinear::from_in_out(k, n, &gu, None);
        let down = PackedLinear::from_in_out(inter, k, &d, None);
        let lk = LayerKernels { qkv: down.clone(), o: down.clone(), gate_up, down };
        let x = values(2 * k, 6);
        let y = lk.mlp(&x, 2);
        let gv = naive(&x, 2, k, inter, &g, None);
        let uv = naive(&x, 2, k, inter, &u, None);
        let act: Vec<f32> = gv.iter().zip(&uv).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        let want = naive(&act, 2, inter, k, &d, None);
        assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
