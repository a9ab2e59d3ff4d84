//! Precision-recall curves and average precision, matching scikit-learn's
//! `precision_recall_curve` (with `drop_intermediate=False`) and `average_precision_score`.

use serde::{Deserialize, Serialize};

use super::input::Predictions;
use crate::Result;

/// One point per distinct score, thresholds ascending; `precision` and `recall` have one more
/// entry than `thresholds`, the final (precision 1, recall 0) point, as in scikit-learn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// The curve of a binary problem; `None` when there is no positive sample (recall undefined).
/// Scores must be finite (`Predictions::validate` checks); panics if the lengths differ.
pub fn pr_curve(scores: &[f64], positive: &[bool]) -> Option<PrCurve> {
    assert_eq!(scores.len(), positive.len(), "pr_curve: scores and targets differ in length");
    let total = positive.iter().filter(|&&p| p).count();
    if total == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut curve = PrCurve { precision: vec![], recall: vec![], thresholds: vec![] };
    for (k, &i) in order.iter().enumerate() {
        if positive[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // Tied scores cannot be separated by any threshold: one point after the last of them.
        if order.get(k + 1).is_none_or(|&next| scores[next] != scores[i]) {
            curve.precision.push(tp as f64 / (tp + fp) as f64);
            curve.recall.push(tp as f64 / total as f64);
            curve.thresholds.push(scores[i]);
        }
    }
    curve.precision.reverse();
    curve.recall.reverse();
    curve.thresholds.reverse();
    curve.precision.push(1.0);
    curve.recall.push(0.0);
    Some(curve)
}

impl PrCurve {
    /// Σ_n (R_n − R_{n−1}) P_n, summed in scikit-learn's order.
    pub fn average_precision(&self) -> f64 {
        let r = &self.recall;
        -(0..r.len() - 1).map(|k| (r[k + 1] - r[k]) * self.precision[k]).sum::<f64>()
    }
}

/// Average precision of a binary problem; `None` when there is no positive sample.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    pr_curve(scores, positive).map(|c| c.average_precision())
}

/// Mean of the defined values; `None` when there are none.
pub fn mean_defined(values: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = values.iter().flatten().copied().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// AP per label (one-vs-rest for single-label) with macro and micro means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApSummary {
    /// `None` for labels without positives in the evaluation split.
    pub per_label: Vec<Option<f64>>,
    /// Mean over the labels that have an AP.
    pub macro_ap: Option<f64>,
    /// AP of all sample-label pairs pooled.
    pub micro_ap: Option<f64>,
}

impl ApSummary {
    pub fn from_curves(curves: &[Option<PrCurve>], pred: &Predictions) -> Self {
        let per_label: Vec<Option<f64>> = curves.iter().map(|c| c.as_ref().map(PrCurve::average_precision)).collect();
        let (scores, truth) = pred.pooled();
        ApSummary { macro_ap: mean_defined(&per_label), micro_ap: average_precision(&scores, &truth), per_label }
    }

    pub fn compute(pred: &Predictions) -> Result<Self> {
        Ok(Self::from_curves(&label_curves(pred)?, pred))
    }
}

/// The precision-recall curve of every label.
pub fn label_curves(pred: &Predictions) -> Result<Vec<Option<PrCurve>>> {
    pred.validate()?;
    Ok((0..pred.num_labels)
        .map(|j| {
            let (s, t) = pred.column(j);
            pr_curve(&s, &t)
        })
        .collect())
}
