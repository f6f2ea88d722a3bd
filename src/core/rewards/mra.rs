//! Mean relative accuracy in float32, as torch computes it in both references (protocol §3.5).

/// The ten thresholds `0.50, 0.55, …, 0.95`, each `0.5 + i·0.05` evaluated in double and cast to
/// f32 (what `torch.arange(..., dtype=float32)` produces on the CPU).
fn thresholds() -> [f32; 10] {
    let mut t = [0f32; 10];
    for (i, v) in t.iter_mut().enumerate() {
        *v = (0.5f64 + i as f64 * 0.05f64) as f32;
    }
    t
}

fn mra(pred: f64, gt: f64, inclusive: bool) -> f64 {
    let p = pred as f32;
    let g = gt as f32;
    let rel = (p - g).abs() / (g.abs() + 1e-8f32);
    let hits = thresholds()
        .iter()
        .filter(|&&t| {
            let bound = 1f32 - t;
            if inclusive { rel <= bound } else { rel < bound }
        })
        .count();
    (hits as f32 / 10f32) as f64
}

/// `mean_t [rel ≤ 1 − t]` — the evaluation scripts' MRA.
pub fn mra_inclusive(pred: f64, gt: f64) -> f64 {
    mra(pred, gt, true)
}

/// `mean_t [rel < 1 − t]` — both RL rewards' MRA.
pub fn mra_strict(pred: f64, gt: f64) -> f64 {
    mra(pred, gt, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/reward_and_geometry_test_vectors.json")).unwrap();
        let cases = v["mra"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for c in cases {
            let (p, g) = (c["pred"].as_f64().unwrap(), c["gt"].as_f64().unwrap());
            assert_eq!(mra_inclusive(p, g), c["eval_le"].as_f64().unwrap(), "{c}");
            assert_eq!(mra_strict(p, g), c["rl_lt"].as_f64().unwrap(), "{c}");
        }
    }

    #[test]
    fn nan_and_infinity_score_zero() {
        assert_eq!(mra_strict(f64::NAN, 1.0), 0.0);
        assert_eq!(mra_strict(f64::INFINITY, 1.0), 0.0);
        assert_eq!(mra_inclusive(1e40, 1e40), 0.0); // both overflow f32 to inf: inf - inf = NaN
    }
}
