//! Position bookkeeping for Qwen2.5-VL, as plain data (no burn): multimodal M-RoPE position ids
//! exactly as transformers' `get_rope_index` (text, images, videos with `second_per_grid_ts` and
//! `tokens_per_second`, plus the rope delta used while decoding), the rotary angle tables for the
//! language model and the vision tower, and the vision window index with `cu_window_seqlens`.

use super::config::{Qwen25VlConfig, TextConfig, VisionConfig};

/// One image or video in grid units (patches of 14 px; `t` in temporal patches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GridThw {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl GridThw {
    pub fn patches(&self) -> usize {
        self.t * self.h * self.w
    }
    /// Language-model tokens after the 2×2 merge.
    pub fn tokens(&self, merge: usize) -> usize {
        self.t * (self.h / merge) * (self.w / merge)
    }
}

/// How a video's temporal positions are computed from `second_per_grid_ts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VideoTime {
    /// transformers 4.57: seconds per grid are cast to an integer before multiplying
    /// (`torch.as_tensor(second_per_grid_t, dtype=int64)`), so 0.5 s becomes 0.
    #[default]
    Transformers,
    /// Qwen's original code and vLLM: `floor(t * second_per_grid_t * tokens_per_second)` in float.
    Float,
}

/// Position ids for one sequence: `[3][len]` (temporal, height, width) plus the rope delta
/// (`max + 1 - len`) that offsets decoding positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RopeIndex {
    pub positions: [Vec<i64>; 3],
    pub delta: i64,
}

/// transformers `Qwen2_5_VLModel.get_rope_index` for one unpadded sequence.
///
/// Vision items are found after each `<|vision_start|>`; images and videos are consumed in order of
/// their first pad token. `second_per_grid_ts` holds one value per video (1.0 when absent).
pub fn get_rope_index(
    cfg: &Qwen25VlConfig,
    input_ids: &[u32],
    image_grids: &[GridThw],
    video_grids: &[GridThw],
    second_per_grid_ts: &[f64],
    video_time: VideoTime,
) -> Result<RopeIndex, String> {
    let n = input_ids.len();
    if image_grids.is_empty() && video_grids.is_empty() {
        let p: Vec<i64> = (0..n as i64).collect();
        return Ok(RopeIndex { positions: [p.clone(), p.clone(), p], delta: 0 });
    }
    let merge = cfg.vision.spatial_merge_size;
    let mut image_nums = 0usize;
    let mut video_nums = 0usize;
    for (i, &t) in input_ids.iter().enumerate() {
        if t == cfg.vision_start_token_id {
            if let Some(&next) = input_ids.get(i + 1) {
                if next == cfg.image_token_id {
                    image_nums += 1;
                } else if next == cfg.video_token_id {
                    video_nums += 1;
                }
            }
        }
    }
    let mut pos: [Vec<i64>; 3] = [Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n)];
    let mut next_start: i64 = 0; // max of positions so far + 1
    let (mut st, mut image_index, mut video_index) = (0usize, 0usize, 0usize);
    let (mut remain_images, mut remain_videos) = (image_nums, video_nums);
    let find = |tok: u32, from: usize| input_ids[from.min(n)..].iter().position(|&t| t == tok).map(|p| p + from);
    for _ in 0..image_nums + video_nums {
        let ed_image = if remain_images > 0 { find(cfg.image_token_id, st).unwrap_or(n + 1) } else { n + 1 };
        let ed_video = if remain_videos > 0 { find(cfg.video_token_id, st).unwrap_or(n + 1) } else { n + 1 };
        let (grid, second_per_grid_t, ed) = if ed_image < ed_video {
            let g = *image_grids.get(image_index).ok_or_else(|| format!("the prompt holds more images than the {} given", image_grids.len()))?;
            image_index += 1;
            remain_images -= 1;
            (g, 0.0, ed_image)
        } else {
            if ed_video > n {
                return Err("a vision start token is not followed by the pad tokens of its image or video".into());
            }
            let g = *video_grids.get(video_index).ok_or_else(|| format!("the prompt holds more videos than the {} given", video_grids.len()))?;
            let s = second_per_grid_ts.get(video_index).copied().unwrap_or(1.0);
            let s = match video_time {
                VideoTime::Transformers => s.trunc(),
                VideoTime::Float => s,
            };
            video_index += 1;
            remain_videos -= 1;
            (g, s, ed_video)
        };
        let (lt, lh, lw) = (grid.t, grid.h / merge, grid.w / merge);
        let text_len = ed - st;
        let st_idx = next_start;
        for k in 0..text_len as i64 {
            for p in pos.iter_mut() {
                p.push(st_idx + k);
            }
        }
        let base = st_idx + text_len as i64;
        let mut max = base - 1;
        for ti in 0..lt {
            // (arange(t) * second_per_grid_t * tokens_per_second).long()
            let tpos = ((ti as f64) * second_per_grid_t * cfg.vision.tokens_per_second) as i64;
            for hi in 0..lh {
                for wi in 0..lw {
                    pos[0].push(base + tpos);
                    pos[1].push(base + hi as i64);
                    pos[2].push(base + wi as i64);
                    max = max.max(base + tpos).max(base + hi as i64).max(base + wi as i64);
                }
            }
        }
        next_start = max + 1;
        st = ed + lt * lh * lw;
        if st > n {
            return Err(format!("an image or video needs {} pad tokens but the prompt ends first", lt * lh * lw));
        }
    }
    if st < n {
        let st_idx = next_start;
        for k in 0..(n - st) as i64 {
            for p in pos.iter_mut() {
                p.push(st_idx + k);
            }
        }
        next_start = st_idx + (n - st) as i64;
    }
    if pos[0].len() != n {
        return Err(format!("vision pad tokens do not match the grids ({} positions for {n} tokens)", pos[0].len()));
    }
    Ok(RopeIndex { positions: pos, delta: next_start - n as i64 })
}

/// Rotary inverse frequencies `1 / base^(2i/dim)` for `i < dim/2`, in f32 as torch computes them.
pub fn inv_freq(dim: usize, base: f64) -> Vec<f32> {
    (0..dim / 2).map(|i| 1.0f32 / (base as f32).powf((2 * i) as f32 / dim as f32)).collect()
}

/// Language-model cos/sin tables `[len][head_dim]` (row-major) for M-RoPE positions: half-dimension
/// j uses the temporal, height or width position by `mrope_section`, and the second half repeats
/// the first (transformers `apply_multimodal_rotary_pos_emb`).
pub fn text_cos_sin(cfg: &TextConfig, positions: &[Vec<i64>; 3]) -> (Vec<f32>, Vec<f32>) {
    let hd = cfg.head_dim();
    let half = hd / 2;
    let inv = inv_freq(hd, cfg.rope_theta);
    let mut comp = Vec::with_capacity(half);
    for (c, &s) in cfg.mrope_section.iter().enumerate() {
        comp.extend(std::iter::repeat_n(c, s));
    }
    let n = positions[0].len();
    let mut cos = vec![0f32; n * hd];
    let mut sin = vec![0f32; n * hd];
    for i in 0..n {
        for j in 0..half {
            let f = inv[j] * positions[comp[j]][i] as f32;
            let (s, c) = f.sin_cos();
            cos[i * hd + j] = c;
            cos[i * hd + half + j] = c;
            sin[i * hd + j] = s;
            sin[i * hd + half + j] = s;
        }
    }
    (cos, sin)
}

/// Vision (row, column) patch positions in the processor's patch order (2×2 merge blocks
/// contiguous), repeated over frames (transformers `rot_pos_emb`).
pub fn vision_pos_ids(vc: &VisionConfig, grids: &[GridThw]) -> Vec<(usize, usize)> {
    let m = vc.spatial_merge_size;
    let mut out = Vec::new();
    for g in grids {
        let mut frame = Vec::with_capacity(g.h * g.w);
        for bh in 0..g.h / m {
            for bw in 0..g.w / m {
                for mh in 0..m {
                    for mw in 0..m {
                        frame.push((bh * m + mh, bw * m + mw));
                    }
                }
            }
        }
        for _ in 0..g.t {
            out.extend_from_slice(&frame);
        }
    }
    out
}

/// The window order of merged patches and the cumulative window lengths in patches
/// (transformers `get_window_index`, with `unique_consecutive` applied to the lengths).
pub fn window_index(vc: &VisionConfig, grids: &[GridThw]) -> (Vec<usize>, Vec<usize>) {
    let m = vc.spatial_merge_size;
    let unit = m * m;
    let ws = vc.merged_window();
    let mut index = Vec::new();
    let mut cu = vec![0usize];
    let mut offset = 0usize;
    for g in grids {
        let (lh, lw) = (g.h / m, g.w / m);
        let nwh = (lh + ws - lh % ws) / ws;
        let nww = (lw + ws - lw % ws) / ws;
        for t in 0..g.t {
            for wh in 0..nwh {
                for ww in 0..nww {
                    let mut len = 0;
                    for r in wh * ws..((wh + 1) * ws).min(lh) {
                        for c in ww * ws..((ww + 1) * ws).min(lw) {
                            index.push(offset + t * lh * lw + r * lw + c);
                            len += 1;
                        }
                    }
                    let last = *cu.last().unwrap();
                    if len > 0 {
                        cu.push(last + len * unit);
                    }
                }
            }
        }
        offset += g.t * lh * lw;
    }
    (index, cu)
}

/// Cumulative per-frame lengths in patches for the full-attention blocks.
pub fn frame_seqlens(grids: &[GridThw]) -> Vec<usize> {
    let mut cu = vec![0usize];
    for g in grids {
        for _ in 0..g.t {
            let last = *cu.last().unwrap();
            cu.push(last + g.h * g.w);
        }
    }
    cu
}

/// Vision cos/sin tables `[patches][head_dim]` in processor order: the first quarter of each half
/// rotates with the row, the second with the column; the second half repeats the first.
pub fn vision_cos_sin(vc: &VisionConfig, pos: &[(usize, usize)]) -> (Vec<f32>, Vec<f32>) {
    let hd = vc.head_dim();
    let inv = inv_freq(hd / 2, 10000.0); // hd/4 frequencies
    let q = inv.len();
    let mut cos = vec![0f32; pos.len() * hd];
    let mut sin = vec![0f32; pos.len() * hd];
    for (i, &(r, c)) in pos.iter().enumerate() {
        for j in 0..q {
            for (k, p) in [(j, r), (q + j, c)] {
                let f = (p as f32) * inv[j];
                let (s, co) = f.sin_cos();
                cos[i * hd + k] = co;
                cos[i * hd + 2 * q + k] = co;
                sin[i * hd + k] = s;
                sin[i * hd + 2 * q + k] = s;
            }
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Qwen25VlConfig {
        Qwen25VlConfig::qwen25vl_7b()
    }

    #[test]
    fn text_only_positions_are_a_range() {
        let r = get_rope_index(&cfg(), &[1, 2, 3], &[], &[], &[], VideoTime::Transformers).unwrap();
        assert_eq!(r.positions[2], vec![0, 1, 2]);
        assert_eq!(r.delta, 0);
    }

    #[test]
    fn image_positions_follow_get_rope_index() {
        let c = cfg();
        // 2 text, vision_start, 2x3 merged image (grid 1x4x6), vision_end, 1 text
        let mut ids = vec![10, 11, c.vision_start_token_id];
        ids.extend(std::iter::repeat_n(c.image_token_id, 6));
        ids.extend([c.vision_end_token_id, 12]);
        let r = get_rope_index(&c, &ids, &[GridThw { t: 1, h: 4, w: 6 }], &[], &[], VideoTime::Transformers).unwrap();
        assert_eq!(r.positions[0], vec![0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7]);
        assert_eq!(r.positions[1], vec![0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7]);
        assert_eq!(r.positions[2], vec![0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7]);
        assert_eq!(r.delta, 8 - 11);
    }

    #[test]
    fn video_time_uses_seconds_per_grid_and_tokens_per_second() {
        let c = cfg();
        let mut ids = vec![c.vision_start_token_id];
        ids.extend(std::iter::repeat_n(c.video_token_id, 3));
        let r = get_rope_index(&c, &ids, &[], &[GridThw { t: 3, h: 2, w: 2 }], &[0.5], VideoTime::Float).unwrap();
        // t positions: 1 + floor(k * 0.5 * 2) = 1, 2, 3
        assert_eq!(r.positions[0], vec![0, 1, 2, 3]);
        assert_eq!(r.positions[1], vec![0, 1, 1, 1]);
        let r = get_rope_index(&c, &ids, &[], &[GridThw { t: 3, h: 2, w: 2 }], &[0.5], VideoTime::Transformers).unwrap();
        assert_eq!(r.positions[0], vec![0, 1, 1, 1]);
    }

    #[test]
    fn missing_pad_tokens_are_an_error() {
        let c = cfg();
        let ids = vec![c.vision_start_token_id, c.image_token_id];
        assert!(get_rope_index(&c, &ids, &[GridThw { t: 1, h: 4, w: 4 }], &[], &[], VideoTime::Transformers).is_err());
        let ids = vec![c.vision_start_token_id, c.image_token_id, 5];
        assert!(get_rope_index(&c, &ids, &[], &[], &[], VideoTime::Transformers).is_ok()); // no grids: text-only path
        assert!(get_rope_index(&c, &ids, &[], &[GridThw { t: 1, h: 2, w: 2 }], &[], VideoTime::Transformers).is_err());
    }

    #[test]
    fn windows_cover_every_merged_patch_once_with_uneven_edges() {
        let vc = cfg().vision;
        // 10 x 6 merged patches: windows of 4 → rows 4,4,2 × cols 4,2
        let g = GridThw { t: 2, h: 20, w: 12 };
        let (idx, cu) = window_index(&vc, &[g]);
        let mut sorted = idx.clone();
        sorted.sort();
        assert_eq!(sorted, (0..120).collect::<Vec<_>>());
        assert_eq!(cu.len(), 1 + 2 * 6);
        assert_eq!(&cu[..4], &[0, 64, 96, 160]);
        assert_eq!(*cu.last().unwrap(), 480);
        assert_eq!(&idx[..5], &[0, 1, 2, 3, 6]);
    }
}
