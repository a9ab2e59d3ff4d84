//! Choosing a per-label decision threshold for a precision floor.

use serde::{Deserialize, Serialize};

use super::ap::PrCurve;

/// A threshold with the precision and recall of "score >= threshold".
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
}

/// The precision floor used when none is given.
pub const DEFAULT_PRECISION_FLOOR: f64 = 0.6;

impl PrCurve {
    /// The lowest threshold whose precision is at least `floor`. Recall only falls as the
    /// threshold rises, so this is the point of highest recall that meets the floor. `None` when
    /// no threshold reaches it.
    pub fn at_precision(&self, floor: f64) -> Option<OperatingPoint> {
        let k = (0..self.thresholds.len()).find(|&k| self.precision[k] >= floor)?;
        Some(OperatingPoint { threshold: self.thresholds[k], precision: self.precision[k], recall: self.recall[k] })
    }

    /// Every (recall, precision) point, recall ascending.
    pub fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.recall.iter().copied().zip(self.precision.iter().copied()).rev()
    }
}
