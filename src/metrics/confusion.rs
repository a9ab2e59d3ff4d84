//! Single-label accuracy and the confusion matrix.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Counts of (true class, predicted class): row = truth, column = prediction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub num_classes: usize,
    /// Row-major `[C, C]`.
    pub counts: Vec<u64>,
}

/// The index of each row's largest score; the first one on ties, as `numpy.argmax`.
pub fn argmax_rows(scores: &[f32], num_classes: usize) -> Vec<u32> {
    scores
        .chunks_exact(num_classes)
        .map(|row| row.iter().enumerate().fold(0, |best, (k, &v)| if v > row[best] { k } else { best }) as u32)
        .collect()
}

impl ConfusionMatrix {
    pub fn from_predictions(truth: &[u32], predicted: &[u32], num_classes: usize) -> Result<Self> {
        if truth.len() != predicted.len() {
            return Err(Error::shape(
                "confusion",
                format!("{} targets but {} predictions", truth.len(), predicted.len()),
            ));
        }
        let mut m = ConfusionMatrix { num_classes, counts: vec![0; num_classes * num_classes] };
        for (i, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            if t as usize >= num_classes || p as usize >= num_classes {
                return Err(Error::Invalid(format!(
                    "sample {i}: class {t} or prediction {p} is not below {num_classes}"
                )));
            }
            m.counts[t as usize * num_classes + p as usize] += 1;
        }
        Ok(m)
    }

    /// From `[N, C]` probabilities (or logits: only the argmax matters).
    pub fn from_scores(scores: &[f32], truth: &[u32], num_classes: usize) -> Result<Self> {
        if num_classes == 0 || scores.len() != truth.len() * num_classes {
            return Err(Error::shape("confusion", format!("{} scores for {} samples", scores.len(), truth.len())));
        }
        Self::from_predictions(truth, &argmax_rows(scores, num_classes), num_classes)
    }

    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.num_classes + predicted]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Top-1 accuracy; `None` without samples.
    pub fn accuracy(&self) -> Option<f64> {
        let correct: u64 = (0..self.num_classes).map(|k| self.get(k, k)).sum();
        ratio(correct, self.total())
    }

    /// Recall of each class; `None` for a class with no sample.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        (0..self.num_classes).map(|k| ratio(self.get(k, k), self.row_total(k))).collect()
    }

    fn row_total(&self, k: usize) -> u64 {
        self.counts[k * self.num_classes..(k + 1) * self.num_classes].iter().sum()
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}
