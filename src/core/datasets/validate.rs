//! Dataset validation: read every record, convert it, and (optionally) check that every image it
//! names exists inside the dataset root; report problems per record with counts.

use super::{DatasetError, DatasetIndex, Location};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One problem found in one record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordProblem {
    /// 0-based position in the index.
    pub record: usize,
    pub error: DatasetError,
}

/// The outcome of [`validate`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidationReport {
    /// Records in the index.
    pub records: usize,
    /// Records without any problem.
    pub valid: usize,
    /// Every problem, in record order (a record may have several: one conversion problem, or
    /// one per missing image).
    pub problems: Vec<RecordProblem>,
    /// Problems counted by [`DatasetError::kind`].
    pub problem_counts: BTreeMap<String, usize>,
    /// Records of each question type (valid records only; empty type as "").
    pub question_types: BTreeMap<String, usize>,
    /// Records of each data type (valid records only).
    pub data_types: BTreeMap<String, usize>,
    /// Records holding a conversation with at least one assistant turn.
    pub trajectories: usize,
    /// Image references in valid records (inputs and observations).
    pub images_referenced: usize,
    /// Distinct image files checked for existence (with `check_images`).
    pub images_checked: usize,
    /// Distinct image files missing.
    pub images_missing: usize,
}

impl ValidationReport {
    /// No problem at all.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A few human-readable lines: totals, counts by kind, the first `max_problems` problems.
    pub fn summary(&self, max_problems: usize) -> String {
        let mut s = format!(
            "{} records, {} valid, {} problem(s); {} image reference(s), {} checked, {} missing\n",
            self.records,
            self.valid,
            self.problems.len(),
            self.images_referenced,
            self.images_checked,
            self.images_missing
        );
        for (k, n) in &self.problem_counts {
            s.push_str(&format!("  {k}: {n}\n"));
        }
        for p in self.problems.iter().take(max_problems) {
            s.push_str(&format!("  {}\n", p.error));
        }
        if self.problems.len() > max_problems {
            s.push_str(&format!("  … and {} more\n", self.problems.len() - max_problems));
        }
        s
    }
}

/// Read, parse and convert every record of `index` ([`Record::to_sample`](super::Record::to_sample),
/// and [`Record::to_trajectory`](super::Record::to_trajectory) for conversation formats), which
/// also checks placeholder counts and that image paths stay inside the root. With
/// `check_images`, every referenced image must exist (each distinct file is checked once).
/// Never fails: every problem lands in the report.
pub fn validate(index: &DatasetIndex, check_images: bool) -> ValidationReport {
    let mut report = ValidationReport { records: index.len(), ..Default::default() };
    // Existence per distinct resolved path: Some(true) exists, Some(false) missing.
    let mut seen: HashMap<String, bool> = HashMap::new();
    for i in 0..index.len() {
        let mut record_problems: Vec<DatasetError> = Vec::new();
        let outcome = index.record(i).and_then(|rec| {
            let (sample, observation_images) = if rec.format.has_conversation() {
                let t = rec.to_trajectory()?;
                if !t.turns.is_empty() {
                    report.trajectories += 1;
                }
                let obs: Vec<(String, String)> = t
                    .turns
                    .iter()
                    .enumerate()
                    .flat_map(|(k, turn)| {
                        turn.observations.iter().map(move |o| (format!("turn {k} observation {}", o.number), o.image.path.clone()))
                    })
                    .collect();
                (t.sample, obs)
            } else {
                (rec.to_sample()?, Vec::new())
            };
            Ok((rec, sample, observation_images))
        });
        match outcome {
            Err(e) => record_problems.push(e),
            Ok((rec, sample, obs)) => {
                *report.question_types.entry(sample.question_type.clone()).or_default() += 1;
                *report.data_types.entry(sample.data_type.clone()).or_default() += 1;
                let mut refs: Vec<(String, String)> = sample
                    .media
                    .images()
                    .iter()
                    .enumerate()
                    .map(|(k, img)| (format!("input image {k}"), img.path.clone()))
                    .collect();
                if let super::Media::VideoFrames { video: Some(v), .. } = &sample.media {
                    refs.push(("video".into(), v.clone()));
                }
                refs.extend(obs);
                report.images_referenced += refs.len();
                if check_images {
                    for (what, path) in refs {
                        if path.is_empty() {
                            record_problems.push(DatasetError::ImageMissing {
                                loc: Location::field(&rec.file, rec.file_record, &what),
                                path: String::new(),
                                resolved: "no path was recorded".into(),
                            });
                            continue;
                        }
                        let exists = *seen.entry(path.clone()).or_insert_with(|| {
                            report.images_checked += 1;
                            let ok = Path::new(&path).is_file();
                            if !ok {
                                report.images_missing += 1;
                            }
                            ok
                        });
                        if !exists {
                            let shown = Path::new(&path)
                                .strip_prefix(&rec.root)
                                .map(|p| p.to_string_lossy().into_owned())
                                .unwrap_or_else(|_| path.clone());
                            record_problems.push(DatasetError::ImageMissing {
                                loc: Location::field(&rec.file, rec.file_record, &what),
                                path: shown,
                                resolved: path.clone(),
                            });
                        }
                    }
                }
            }
        }
        if record_problems.is_empty() {
            report.valid += 1;
        }
        for e in record_problems {
            *report.problem_counts.entry(e.kind().to_string()).or_default() += 1;
            report.problems.push(RecordProblem { record: i, error: e });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::datasets::{DatasetFormat, DatasetIndex};

    #[test]
    fn reports_problems_per_record_with_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/ok.png"), b"x").unwrap();
        let rows = [
            r#"{"question": "q0", "answer": "A", "image_path": ["img/ok.png"], "data_type": "vqa", "question_type": "multiple choice", "grid_size": null}"#,
            r#"{"question": "q1", "answer": "A", "image_path": ["img/missing.png", "img/ok.png"], "data_type": "vqa", "question_type": "multiple choice", "grid_size": null}"#,
            r#"{"question": "q2", "answer": "A", "image_path": ["../outside.png"], "data_type": "vqa", "question_type": "multiple choice", "grid_size": null}"#,
            r#"{"question": "q3", "answer": "A", "image_path": "img/ok.png", "data_type": "maze", "question_type": "free-form", "grid_size": 5}"#,
            r#"{"question": "q4", "answer": "A", "image_path": ["img/ok.png"], "data_type": "maze", "question_type": "free-form", "grid_size": 5"#,
            r#"{"question": "q5", "answer": "A", "image_path": ["img/ok.png"], "data_type": "maze", "grid_size": 5}"#,
        ];
        let file = dir.path().join("rl.jsonl");
        std::fs::write(&file, rows.join("\n")).unwrap();
        let index = DatasetIndex::open_as(&file, DatasetFormat::VilasrRl).unwrap();
        let r = validate(&index, true);
        assert_eq!((r.records, r.valid), (6, 1));
        let kinds: Vec<&str> = r.problems.iter().map(|p| p.error.kind()).collect();
        assert_eq!(kinds, vec!["image missing", "path escapes root", "wrong field type", "truncated json", "missing field"]);
        assert_eq!(r.problems.iter().map(|p| p.record).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!((r.images_checked, r.images_missing), (2, 1));
        let msg = r.problems[0].error.to_string();
        assert!(msg.contains("rl.jsonl: record 1: field \"input image 0\": image \"img/missing.png\" does not exist"), "{msg}");
        assert_eq!(r.problem_counts["image missing"], 1);
        assert_eq!(r.question_types["multiple choice"], 2);
        assert!(r.summary(2).contains("… and 3 more"));
        // Without image checks only the structural problems remain.
        assert_eq!(validate(&index, false).problems.len(), 4);
    }
}
