//! Benchmark aggregates (protocol §6.1): plain mean, VSI-Bench per-type means, SPAR-Bench
//! Low/Medium/High groups, and pass@k over several sampled trajectories per question.

use serde::Serialize;
use std::collections::BTreeMap;

/// VSI-Bench types in the order the reference prints them.
pub const VSI_TYPES: [&str; 8] = [
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
];

/// VSI-Bench aggregate: per-type means and their unweighted mean.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VsiAggregate {
    /// (type, mean, count) for the known types present, in reference order.
    pub per_type: Vec<(String, f64, usize)>,
    /// Unweighted mean of the per-type means; `None` when no known type is present (the reference
    /// divides by zero there).
    pub overall: Option<f64>,
    pub count: usize,
}

fn base_type(t: &str) -> &str {
    if ["_easy", "_medium", "_hard"].iter().any(|d| t.contains(d)) {
        let t = t.split("_easy").next().unwrap_or(t);
        let t = t.split("_medium").next().unwrap_or(t);
        t.split("_hard").next().unwrap_or(t)
    } else {
        t
    }
}

/// `calculate_average_scores_vsibench` over (original_question_type, score) items.
pub fn vsibench_aggregate<'a>(items: impl IntoIterator<Item = (&'a str, f64)>) -> VsiAggregate {
    let mut merged: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut count = 0;
    for (t, s) in items {
        merged.entry(base_type(t).to_string()).or_default().push(s);
        count += 1;
    }
    let mut per_type = Vec::new();
    for t in VSI_TYPES {
        if let Some(v) = merged.get(t) {
            per_type.push((t.to_string(), v.iter().sum::<f64>() / v.len() as f64, v.len()));
        }
    }
    let overall = if per_type.is_empty() { None } else { Some(per_type.iter().map(|x| x.1).sum::<f64>() / per_type.len() as f64) };
    VsiAggregate { per_type, overall, count }
}

const SPAR_LOW: [&str; 8] = [
    "depth_prediction_oc", "depth_prediction_oc_mv", "depth_prediction_oo", "depth_prediction_oo_mv",
    "distance_prediction_oc", "distance_prediction_oc_mv", "distance_prediction_oo", "distance_prediction_oo_mv",
];
const SPAR_MEDIUM: [&str; 3] = ["position_matching", "camera_motion_infer", "view_change_infer"];
const SPAR_HIGH: [&str; 9] = [
    "distance_infer_center_oo", "distance_infer_center_oo_mv", "obj_spatial_relation_oc_mv", "obj_spatial_relation_oo",
    "obj_spatial_relation_oo_mv", "spatial_imagination_oc", "spatial_imagination_oc_mv", "spatial_imagination_oo",
    "spatial_imagination_oo_mv",
];

/// One SPAR-Bench difficulty group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SparGroup {
    pub name: &'static str,
    pub mean: f64,
    pub count: usize,
    /// (type, mean, count), sorted by type name.
    pub per_type: Vec<(String, f64, usize)>,
}

/// SPAR-Bench aggregate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SparAggregate {
    pub groups: Vec<SparGroup>,
    /// Unweighted mean of per-type means over Low ∪ Medium ∪ High (0 when none).
    pub total: f64,
    pub total_count: usize,
}

/// `calculate_average_scores_sparbench` over (original_question_type, score) items.
pub fn sparbench_aggregate<'a>(items: impl IntoIterator<Item = (&'a str, f64)>) -> SparAggregate {
    let mut groups: BTreeMap<&'static str, (f64, usize, BTreeMap<String, (f64, usize)>)> = BTreeMap::new();
    for (t, s) in items {
        let g = if SPAR_LOW.contains(&t) {
            "Low"
        } else if SPAR_MEDIUM.contains(&t) {
            "Medium"
        } else if SPAR_HIGH.contains(&t) {
            "High"
        } else {
            "Other"
        };
        let e = groups.entry(g).or_default();
        e.0 += s;
        e.1 += 1;
        let te = e.2.entry(t.to_string()).or_default();
        te.0 += s;
        te.1 += 1;
    }
    let mut out = Vec::new();
    let mut type_means = Vec::new();
    let mut total_count = 0;
    for name in ["Low", "Medium", "High"] {
        if let Some((sum, n, types)) = groups.get(name) {
            let per_type: Vec<(String, f64, usize)> = types.iter().map(|(t, (s, c))| (t.clone(), s / *c as f64, *c)).collect();
            type_means.extend(per_type.iter().map(|x| x.1));
            total_count += n;
            out.push(SparGroup { name, mean: if *n > 0 { sum / *n as f64 } else { 0.0 }, count: *n, per_type });
        }
    }
    let total = if type_means.is_empty() { 0.0 } else { type_means.iter().sum::<f64>() / type_means.len() as f64 };
    SparAggregate { groups: out, total, total_count }
}

/// Unbiased pass@k for `n` samples of which `c` are correct: `1 − C(n−c, k) / C(n, k)`, computed
/// as a numerically stable product. `None` when `k > n` or `c > n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - prod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsi_merges_difficulty_and_ignores_unknown_types() {
        let a = vsibench_aggregate([
            ("route_planning_easy", 1.0),
            ("route_planning_hard", 0.0),
            ("object_counting", 0.5),
            ("mystery", 1.0),
        ]);
        assert_eq!(a.per_type, vec![("route_planning".into(), 0.5, 2), ("object_counting".into(), 0.5, 1)]);
        assert_eq!(a.overall, Some(0.5));
        assert_eq!(a.count, 4);
        assert_eq!(vsibench_aggregate([("x", 1.0)]).overall, None);
    }

    #[test]
    fn spar_groups_and_total() {
        let a = sparbench_aggregate([
            ("depth_prediction_oc", 1.0),
            ("depth_prediction_oc", 0.0),
            ("position_matching", 1.0),
            ("weird", 1.0),
        ]);
        assert_eq!(a.groups.len(), 2);
        assert_eq!(a.groups[0].mean, 0.5);
        assert_eq!(a.total, 0.75);
        assert_eq!(a.total_count, 3);
    }

    #[test]
    fn pass_at_k_matches_closed_form() {
        fn binom(n: u64, k: u64) -> f64 {
            if k > n {
                return 0.0;
            }
            (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        }
        for n in 1..12usize {
            for c in 0..=n {
                for k in 1..=n {
                    let exact = 1.0 - binom((n - c) as u64, k as u64) / binom(n as u64, k as u64);
                    assert!((pass_at_k(n, c, k).unwrap() - exact).abs() < 1e-12, "{n} {c} {k}");
                }
            }
        }
        assert_eq!(pass_at_k(8, 0, 1), Some(0.0));
        assert_eq!(pass_at_k(3, 1, 4), None);
    }
}
