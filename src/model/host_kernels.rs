//! CPU kernels: the block product every host-side product is made of (the language model's and
//! vision tower's linear layers, attention's scores and weighted values), threaded over output
//! columns and vectorised with AVX-512 where the CPU has it; vector exp, softmax numerators and SiLU; and the
//! packed text weights ([`TextKernels`]).
//!
//! Why: burn's `flex` backend runs every matrix product under 192³ multiply-adds on one thread
//! and without packing, which is every decode-time product but the lm_head. Decoding is bound by
//! how fast the weights stream from memory, so these kernels keep each weight matrix in panels of
//! [`PANEL`] output columns (`[k][PANEL]`, contiguous, cache-line aligned) and split the panels
//! between the threads of rayon's global pool (the one flex uses). A prefill takes the input rows
//! [`ROWS`] at a time over L2-sized blocks of each panel, writing straight into a reused output.
//!
//! Weights whose every value is exactly a bfloat16 (the published Qwen2.5-VL checkpoints are
//! stored in bf16) are kept as bf16 and widened to f32 in registers: half the bytes to stream,
//! and the same products as f32 weights, since the widening is exact. Arithmetic is f32 with
//! f32 accumulation in every case; only the summation order differs from burn's kernels (~1e-6).
//!
//! [`TextKernels`] packs a model's text weights once (q/k/v fused into one matrix, gate and up
//! into another) for the host decoder (`host_decoder`). Measured against burn's products and the
//! `gemm` crate in docs/benchmarks.md.

use super::host_decoder::BlockShape;
use rayon::prelude::*;

/// Output columns per panel (four 16-lane vectors).
pub const PANEL: usize = 64;
/// Inputs per block of a panel (512 × 64 f32 = 128 KiB, well inside a core's L2).
pub const K_BLOCK: usize = 512;
/// Rows of the input taken together against a panel block: 6 × 4 accumulator vectors leave
/// AVX-512's 32 registers room for the 4 weight vectors (measured faster than 4, 5, 7 or 8).
pub const ROWS: usize = 6;
/// One block product's result: up to [`ROWS`] rows of [`PANEL`] columns.
pub type Tile = [f32; ROWS * PANEL];

/// How a packed matrix stores its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightStorage {
    F32,
    /// bfloat16, used only when every value is exactly representable (lossless).
    Bf16,
}

#[derive(Clone, Debug)]
enum Panels {
    F32(Aligned<f32>),
    Bf16(Aligned<u16>),
}

/// One cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Values whose all-zero bytes are a valid value (what [`Aligned`] may hold).
trait Plain: Copy {}
impl Plain for f32 {}
impl Plain for u16 {}

/// `len` values in cache-line-aligned storage: a panel row (64 f32 or 64 bf16) then starts a
/// line, so no vector load straddles two (measured ≈ 10 % faster products than `Vec`'s 16-byte
/// alignment).
#[derive(Clone, Debug)]
struct Aligned<T> {
    lines: Vec<Line>,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    fn zeroed(len: usize) -> Self {
        let lines = vec![Line([0; 64]); (len * std::mem::size_of::<T>()).div_ceil(64)];
        Aligned { lines, len, _values: std::marker::PhantomData }
    }

    fn as_slice(&self) -> &[T] {
        // SAFETY: the lines hold at least `len` values' bytes, aligned for any T of alignment
        // ≤ 64, and every bit pattern (zeros included) is a valid T (`Plain`).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as `as_slice`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }
}

/// Weights as the block product reads them.
#[derive(Clone, Copy)]
enum WeightsRef<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl Panels {
    fn view(&self) -> WeightsRef<'_> {
        match self {
            Panels::F32(w) => WeightsRef::F32(w.as_slice()),
            Panels::Bf16(w) => WeightsRef::Bf16(w.as_slice()),
        }
    }
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
            let mut v = Aligned::<u16>::zeroed(panels * k * PANEL);
            v.as_mut_slice().par_chunks_mut(k * PANEL).enumerate().for_each(|(p, chunk)| {
                let mut tmp = vec![0f32; k * PANEL];
                fill(p, &mut tmp);
                for (d, s) in chunk.iter_mut().zip(&tmp) {
                    *d = (s.to_bits() >> 16) as u16;
                }
            });
            Panels::Bf16(v)
        } else {
            let mut v = Aligned::<f32>::zeroed(panels * k * PANEL);
            v.as_mut_slice().par_chunks_mut(k * PANEL).enumerate().for_each(|(p, chunk)| fill(p, chunk));
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
            Panels::F32(v) => v.len * 4,
            Panels::Bf16(v) => v.len * 2,
        }
    }

    /// `x` is `[rows][k]` row-major; returns `[rows][n]`. Any number of rows: each panel task
    /// walks the rows [`ROWS`] at a time over blocks of [`K_BLOCK`] inputs, so the panel block it
    /// re-reads stays in the core's L2 cache.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(x.len(), rows * self.k, "input is not [rows][k]");
        let mut y = Vec::new();
        self.forward_into(x, rows, self.k, &mut y);
        y
    }

    /// As `forward`, reading row `r` from `x[r·stride ..][..k]` (the first `k` columns of a
    /// wider matrix), into `y` (resized to `[rows][n]`). Reusing one buffer across calls saves
    /// the page faults a fresh multi-megabyte allocation costs on every prefill product.
    pub fn forward_into(&self, x: &[f32], rows: usize, stride: usize, y: &mut Vec<f32>) {
        let (k, n) = (self.k, self.n);
        assert!(stride >= k && (rows == 0 || x.len() >= (rows - 1) * stride + k), "input rows too short");
        // Every element is written by the first input block of its panel, so no zero fill is
        // needed; `resize` only fills what the buffer has never held.
        y.truncate(rows * n);
        y.resize(rows * n, 0.0);
        let out = SharedOut(y.as_mut_ptr());
        let threads = rayon::current_num_threads().max(1);
        let min_len = (self.panels / (4 * threads)).max(1);
        // bf16 panels over many rows (a prefill): widen each panel block to f32 once, instead of
        // once per group of rows (the widening competes with the FMAs for the vector ports).
        let widen_once = matches!(self.data, Panels::Bf16(_)) && rows > 2 * ROWS;
        (0..self.panels).into_par_iter().with_min_len(min_len).for_each(|p| {
            let mut tile: Tile = [0f32; ROWS * PANEL];
            let mut widened = if widen_once { Aligned::<f32>::zeroed(K_BLOCK.min(k) * PANEL) } else { Aligned::<f32>::zeroed(0) };
            let cols = PANEL.min(n - p * PANEL);
            let bias = self.bias.as_ref().map(|b| &b[p * PANEL..p * PANEL + cols]);
            for kb in (0..k).step_by(K_BLOCK) {
                let len = K_BLOCK.min(k - kb);
                let (weights, block) = match &self.data {
                    Panels::Bf16(w) if widen_once => {
                        let src = &w.as_slice()[(p * k + kb) * PANEL..(p * k + kb + len) * PANEL];
                        for (d, s) in widened.as_mut_slice().iter_mut().zip(src) {
                            *d = f32::from_bits((*s as u32) << 16);
                        }
                        (WeightsRef::F32(widened.as_slice()), 0)
                    }
                    data => (data.view(), (p * k + kb) * PANEL),
                };
                let mut r0 = 0;
                while r0 < rows {
                    let mr = (rows - r0).min(ROWS);
                    let xs = &x[r0 * stride + kb..];
                    let offset = block;
                    if cols == PANEL {
                        // Straight into `y`: the first block starts from the bias (or zero), the
                        // others add to what is there.
                        let start = match (kb, bias) {
                            (0, Some(b)) => Start::Bias(b),
                            (0, None) => Start::Zero,
                            _ => Start::Accumulate,
                        };
                        // SAFETY: rows r0..r0+mr of `y` hold columns p*PANEL..+PANEL (n ≥ that),
                        // which panel `p` alone writes; `y` outlives the parallel loop.
                        unsafe { panel_product(weights, offset, PANEL, xs, stride, len, mr, out.at(r0 * n + p * PANEL), n, start) };
                    } else {
                        // The last, partial panel: through a tile, then its columns.
                        // SAFETY: the tile holds ROWS rows of PANEL.
                        unsafe { panel_product(weights, offset, PANEL, xs, stride, len, mr, tile.as_mut_ptr(), PANEL, Start::Zero) };
                        for r in 0..mr {
                            let part = &tile[r * PANEL..r * PANEL + cols];
                            // SAFETY: as above, for this panel's `cols` columns of row r0 + r.
                            let dst = unsafe { std::slice::from_raw_parts_mut(out.at((r0 + r) * n + p * PANEL), cols) };
                            match (kb, bias) {
                                (0, Some(b)) => {
                                    for ((d, s), bb) in dst.iter_mut().zip(part).zip(b) {
                                        *d = bb + s;
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
                    }
                    r0 += mr;
                }
            }
        });
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

/// What a block product's accumulators start from.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    Zero,
    /// The same [`PANEL`] values for every row (a bias).
    Bias(&'a [f32]),
    /// What the output already holds (a later input block).
    Accumulate,
}

/// `out[r·out_stride ..][..PANEL] = start + Σ_{i<len} x[r·stride + i] · w[offset + i·wstride ..][..PANEL]`
/// for `mr ≤ ROWS` rows of `x`.
///
/// SAFETY: `out` must be valid for reads and writes of `mr` rows of [`PANEL`] values
/// `out_stride` apart, and no one else may touch them meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(w: WeightsRef, offset: usize, wstride: usize, x: &[f32], stride: usize, len: usize, mr: usize, out: *mut f32, out_stride: usize, start: Start) {
    assert!((1..=ROWS).contains(&mr) && len > 0 && x.len() >= (mr - 1) * stride + len, "block product: input rows too short");
    assert!(!matches!(start, Start::Bias(b) if b.len() < PANEL), "block product: a bias of PANEL values");
    let need = offset + (len - 1) * wstride + PANEL;
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            macro_rules! dispatch {
                ($kernel:ident, $w:expr) => {{
                    assert!($w.len() >= need, "block product: weights too short");
                    let p = $w[offset..].as_ptr();
                    // SAFETY: the CPU has AVX-512F; `len` weight rows of PANEL values lie
                    // `wstride` apart from `p`, `x` holds `mr` rows of `stride` (both checked),
                    // and the caller vouches for `out`.
                    unsafe {
                        match mr {
                            1 => avx512::$kernel::<1>(x, stride, len, p, wstride, out, out_stride, start),
                            2 => avx512::$kernel::<2>(x, stride, len, p, wstride, out, out_stride, start),
                            3 => avx512::$kernel::<3>(x, stride, len, p, wstride, out, out_stride, start),
                            4 => avx512::$kernel::<4>(x, stride, len, p, wstride, out, out_stride, start),
                            5 => avx512::$kernel::<5>(x, stride, len, p, wstride, out, out_stride, start),
                            _ => avx512::$kernel::<6>(x, stride, len, p, wstride, out, out_stride, start),
                        }
                    }
                }};
            }
            match w {
                WeightsRef::F32(w) => dispatch!(panel_f32, w),
                WeightsRef::Bf16(w) => dispatch!(panel_bf16, w),
            }
            return;
        }
    }
    assert!(match w { WeightsRef::F32(v) => v.len(), WeightsRef::Bf16(v) => v.len() } >= need, "block product: weights too short");
    let mut tile: Tile = [0f32; ROWS * PANEL];
    portable_panel(w, offset, wstride, x, stride, len, mr, &mut tile);
    for r in 0..mr {
        // SAFETY: the caller vouches for `out`.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.add(r * out_stride), PANEL) };
        for (c, (d, t)) in dst.iter_mut().zip(&tile[r * PANEL..(r + 1) * PANEL]).enumerate() {
            *d = match start {
                Start::Zero => *t,
                Start::Bias(b) => b[c] + t,
                Start::Accumulate => *d + t,
            };
        }
    }
}

/// `out[r·out_stride ..][..PANEL] = start + Σ_{i<len} x[r·stride + i] · w[i·wstride ..][..PANEL]`
/// for `mr ≤ ROWS` rows of `x`, over f32 weights the caller lays out (the attention kernels'
/// keys and values). Panics when `x`, `w` or `out` is too short for the product.
#[allow(clippy::too_many_arguments)]
pub fn block_product(w: &[f32], wstride: usize, x: &[f32], stride: usize, len: usize, mr: usize, out: &mut [f32], out_stride: usize, start: Start) {
    assert!(mr >= 1 && out.len() >= (mr - 1) * out_stride + PANEL, "block product: output too short");
    // SAFETY: `out` is borrowed mutably and holds the rows (checked).
    unsafe { panel_product(WeightsRef::F32(w), 0, wstride, x, stride, len, mr, out.as_mut_ptr(), out_stride, start) }
}

/// The same product in plain Rust (other CPUs; the compiler vectorises the inner loop).
#[allow(clippy::too_many_arguments)]
fn portable_panel(w: WeightsRef, offset: usize, wstride: usize, x: &[f32], stride: usize, len: usize, mr: usize, tile: &mut Tile) {
    let mut acc = [[0f32; PANEL]; ROWS];
    let mut wrow = [0f32; PANEL];
    for i in 0..len {
        let at = offset + i * wstride;
        match w {
            WeightsRef::F32(w) => wrow.copy_from_slice(&w[at..at + PANEL]),
            WeightsRef::Bf16(w) => {
                for (d, s) in wrow.iter_mut().zip(&w[at..at + PANEL]) {
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
    use super::Start;
    use std::arch::x86_64::*;

    /// Widen 16 bfloat16 values to f32 (exact: a bf16 is an f32's high half).
    #[inline(always)]
    unsafe fn widen(p: *const u16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)), 16))
    }

    macro_rules! panel_kernel {
        ($name:ident, $elem:ty, $load:expr) => {
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name<const MR: usize>(x: &[f32], stride: usize, len: usize, w: *const $elem, wstride: usize, out: *mut f32, out_stride: usize, start: Start) {
                let load = $load;
                const PANEL_BYTES_PER_ROW: usize = super::PANEL * std::mem::size_of::<$elem>();
                let mut acc = [[_mm512_setzero_ps(); 4]; MR];
                match start {
                    Start::Zero => {}
                    Start::Bias(b) => {
                        let bv = [0, 1, 2, 3].map(|q| _mm512_loadu_ps(b.as_ptr().add(q * 16)));
                        for a in acc.iter_mut() {
                            *a = bv;
                        }
                    }
                    Start::Accumulate => {
                        for (r, a) in acc.iter_mut().enumerate() {
                            for (q, v) in a.iter_mut().enumerate() {
                                *v = _mm512_loadu_ps(out.add(r * out_stride + q * 16));
                            }
                        }
                    }
                }
                let xp = x.as_ptr();
                for i in 0..len {
                    let row = w.add(i * wstride);
                    if MR == super::ROWS {
                        // A full group of rows (a prefill): fetch the weight row eight ahead
                        // into L1 (≈ 5 % faster products; decoding streams fine without).
                        let ahead = row.wrapping_add(8 * wstride) as *const i8;
                        for line in 0..(PANEL_BYTES_PER_ROW / 64) {
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line * 64));
                        }
                    }
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
                        _mm512_storeu_ps(out.add(r * out_stride + q * 16), *v);
                    }
                }
            }
        };
    }

    /// `exp` of 16 lanes (Cephes' `expf`: `x = n·ln2 + r`, a degree-7 polynomial in `r`, scaled
    /// by `2ⁿ`); within 2 ulp of the correctly rounded value over the normal range (tested),
    /// like the vectorised exponentials PyTorch uses (Sleef, 1 ulp).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0)), _mm512_set1_ps(89.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(y, n)
    }

    /// Lanes `i..i+16` of a slice of `len` (fewer at the end).
    #[inline(always)]
    fn lanes(i: usize, len: usize) -> __mmask16 {
        let left = len - i;
        if left >= 16 {
            0xFFFF
        } else {
            ((1u32 << left) - 1) as __mmask16
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_times(g: &mut [f32], u: &[f32]) {
        let one = _mm512_set1_ps(1.0);
        for i in (0..g.len()).step_by(16) {
            let m = lanes(i, g.len());
            let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(i));
            let uv = _mm512_maskz_loadu_ps(m, u.as_ptr().add(i));
            let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
            let s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
            _mm512_mask_storeu_ps(g.as_mut_ptr().add(i), m, _mm512_mul_ps(s, uv));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn exp_shifted_in_place(v: &mut [f32], scale: f32) -> f32 {
        let (n, p) = (v.len(), v.as_mut_ptr());
        let sc = _mm512_set1_ps(scale);
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..n).step_by(16) {
            let m = lanes(i, n);
            let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), sc);
            mx = _mm512_mask_max_ps(mx, m, mx, x);
        }
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        let mut sum = _mm512_setzero_ps();
        for i in (0..n).step_by(16) {
            let m = lanes(i, n);
            let e = exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, p.add(i)), sc), max));
            sum = _mm512_mask_add_ps(sum, m, sum, e);
            _mm512_mask_storeu_ps(p.add(i), m, e);
        }
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn sum_of_squares(x: &[f32]) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for i in (0..x.len()).step_by(16) {
            let v = _mm512_maskz_loadu_ps(lanes(i, x.len()), x.as_ptr().add(i));
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        _mm512_reduce_add_ps(acc)
    }

    panel_kernel!(panel_f32, f32, |p: *const f32| _mm512_loadu_ps(p));
    panel_kernel!(panel_bf16, u16, |p: *const u16| widen(p));
}

/// One decoder layer's packed weights and its norms' weights.
#[derive(Clone, Debug)]
pub struct LayerKernels {
    /// q, k and v projections side by side (`[hidden, (h + 2·kvh)·hd]`, with their biases).
    pub qkv: PackedLinear,
    pub o: PackedLinear,
    /// gate and up side by side (`[hidden, 2·intermediate]`).
    pub gate_up: PackedLinear,
    pub down: PackedLinear,
    /// RMSNorm weights before attention and before the MLP.
    pub input_norm: Vec<f32>,
    pub post_norm: Vec<f32>,
}

impl LayerKernels {
    /// `y ← down(silu(gate(x)) · up(x))` for `rows` rows of `x`, with `gu` as the gate/up buffer
    /// (both reused across calls).
    pub fn mlp_into(&self, x: &[f32], rows: usize, gu: &mut Vec<f32>, y: &mut Vec<f32>) {
        self.gate_up.forward_into(x, rows, self.gate_up.k, gu);
        let inter = self.gate_up.n / 2;
        // silu(gate) · up in place of gate; down reads those first `inter` columns of each row.
        gu.par_chunks_mut(2 * inter).for_each(|row| {
            let (g, u) = row.split_at_mut(inter);
            silu_times(g, u);
        });
        self.down.forward_into(gu, rows, 2 * inter, y);
    }
}

/// `g ← silu(g) · u`, `silu(g) = g / (1 + exp(-g))` (as `torch.nn.functional.silu`).
pub fn silu_times(g: &mut [f32], u: &[f32]) {
    assert!(u.len() >= g.len(), "silu_times: u shorter than g");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; lengths checked.
            unsafe { avx512::silu_times(g, u) };
            return;
        }
    }
    for (gv, uv) in g.iter_mut().zip(u) {
        *gv = *gv / (1.0 + (-*gv).exp()) * uv;
    }
}

/// `v ← exp(v · scale − max(v · scale))` in f32, returning the exponentials' sum: softmax's
/// numerators, so a caller can normalise later and more cheaply (attention scales its few
/// output values by `1 / sum` instead of every probability).
pub fn exp_shifted_in_place(v: &mut [f32], scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::exp_shifted_in_place(v, scale) };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for x in v.iter_mut() {
        *x *= scale;
        max = max.max(*x);
    }
    let mut sum = 0f32;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `Σ x²` in f32.
pub fn sum_of_squares(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::sum_of_squares(x) };
        }
    }
    x.iter().map(|v| v * v).sum()
}

/// The language model's weights for the host decoder (`host_decoder`): the linear layers
/// packed, the norms' weights, and the sizes.
#[derive(Clone, Debug)]
pub struct TextKernels {
    pub layers: Vec<LayerKernels>,
    pub lm_head: PackedLinear,
    /// The final RMSNorm's weights.
    pub norm: Vec<f32>,
    pub shape: BlockShape,
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
pub(crate) mod tests {
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

    /// Deterministic values in [-1, 1] (xorshift), for the kernel tests here and in
    /// `host_decoder`.
    pub(crate) fn values(len: usize, seed: u32) -> Vec<f32> {
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
        let (k, n) = (600, 150); // two input blocks
        let w: Vec<f32> = values(k * n, 3).iter().map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000)).collect();
        assert!(bf16_exact(&w));
        let p = PackedLinear::from_in_out(k, n, &w, None);
        assert_eq!(p.storage(), WeightStorage::Bf16);
        assert_eq!(p.bytes(), 3 * k * PANEL * 2);
        let f = PackedLinear::pack(k, n, false, |i, j| w[i * n + j], None);
        // Few rows widen in registers; many rows (a prefill) widen each panel block once.
        for rows in [1, 4, 5, 13, 40] {
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
        let mut tile: Tile = [0f32; ROWS * PANEL];
        portable_panel(p.data.view(), 0, PANEL, &x, k, k, 3, &mut tile);
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
    fn vector_exp_softmax_and_squares_match_the_scalar_formulas() {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            use std::arch::x86_64::*;
            // exp within 2 ulp wherever the result is a normal f32, 0 or tiny below, inf above.
            let mut worst = 0f64;
            let mut x = -87.0f32;
            while x < 88.5 {
                let xs: [f32; 16] = std::array::from_fn(|i| x + i as f32 * 1e-3);
                let mut got = [0f32; 16];
                // SAFETY: AVX-512F checked above.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), avx512::exp16(_mm512_loadu_ps(xs.as_ptr()))) };
                for (g, &xi) in got.iter().zip(&xs) {
                    let want = (xi as f64).exp();
                    let ulp = (want as f32).to_bits().abs_diff(g.to_bits());
                    worst = worst.max(ulp as f64);
                }
                x += 0.0917;
            }
            assert!(worst <= 2.0, "exp16 is off by {worst} ulp");
            let mut edge = [0f32; 16];
            let xs: [f32; 16] = std::array::from_fn(|i| [-200.0, -104.0, 0.0, 100.0][i % 4]);
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(edge.as_mut_ptr(), avx512::exp16(_mm512_loadu_ps(xs.as_ptr()))) };
            assert_eq!(&edge[..4], &[0.0, 0.0, 1.0, f32::INFINITY]);
        }
        // The dispatching functions against plain scalar code, over lengths with ragged tails.
        for len in [1usize, 15, 16, 17, 100, 513] {
            let v = values(len, len as u32);
            let mut numerators = v.clone();
            let sum = exp_shifted_in_place(&mut numerators, 0.37);
            let m = v.iter().map(|x| x * 0.37).fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = v.iter().map(|x| ((x * 0.37 - m) as f64).exp()).collect();
            let z: f64 = e.iter().sum();
            assert!(((sum as f64 - z) / z).abs() < 1e-6, "exponentials' sum, len {len}");
            assert!(numerators.iter().zip(&e).all(|(s, e)| (*s as f64 - e).abs() < 1e-6), "exponentials, len {len}");
            let u = values(len, 99);
            let mut g: Vec<f32> = v.iter().map(|x| x * 12.0).collect();
            let g0 = g.clone();
            silu_times(&mut g, &u);
            for ((gv, g0), uv) in g.iter().zip(&g0).zip(&u) {
                let want = *g0 as f64 / (1.0 + (-*g0 as f64).exp()) * *uv as f64;
                assert!((*gv as f64 - want).abs() < 1e-5 * want.abs().max(1.0), "silu, len {len}");
            }
            let sq: f64 = v.iter().map(|x| (x * x) as f64).sum();
            assert!((sum_of_squares(&v) as f64 - sq).abs() < 1e-5 * sq.max(1.0), "squares, len {len}");
        }
    }

    #[test]
    fn the_mlp_is_silu_gate_times_up_then_down() {
        let (k, inter) = (16, 20);
        let (g, u, d) = (values(k * inter, 1), values(k * inter, 2), values(inter * k, 3));
        let (gu, n, _) = side_by_side(k, &[(&g, inter, None), (&u, inter, None)]);
        let gate_up = PackedLinear::from_in_out(k, n, &gu, None);
        let down = PackedLinear::from_in_out(inter, k, &d, None);
        let lk = LayerKernels { qkv: down.clone(), o: down.clone(), gate_up, down, input_norm: vec![], post_norm: vec![] };
        let x = values(2 * k, 6);
        let (mut gu, mut y) = (Vec::new(), Vec::new());
        lk.mlp_into(&x, 2, &mut gu, &mut y);
        let gv = naive(&x, 2, k, inter, &g, None);
        let uv = naive(&x, 2, k, inter, &u, None);
        let act: Vec<f32> = gv.iter().zip(&uv).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        let want = naive(&act, 2, inter, k, &d, None);
        assert!(y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
