//! What the metrics are computed from: a score matrix `[N, C]` (sigmoid outputs for multi-label,
//! softmax probabilities for single-label) and the ground truth, checked once up front.

use crate::{Error, Result};

/// Ground truth for `N` samples and `C` labels.
#[derive(Clone, Copy, Debug)]
pub enum Truth<'a> {
    /// Row-major `[N, C]`, 1 where sample `i` carries label `j`, else 0.
    Multi(&'a [u8]),
    /// The class of each sample, `< C`.
    Single(&'a [u32]),
}

/// Scores with their ground truth; `scores` is row-major `[N, C]`.
#[derive(Clone, Copy, Debug)]
pub struct Predictions<'a> {
    pub scores: &'a [f32],
    pub num_labels: usize,
    pub truth: Truth<'a>,
}

impl<'a> Predictions<'a> {
    /// Checks shapes and values and returns `N`.
    pub fn validate(&self) -> Result<usize> {
        let c = self.num_labels;
        if c == 0 {
            return Err(Error::shape("metrics", "there must be at least one label"));
        }
        if self.scores.len() % c != 0 {
            return Err(Error::shape(
                "metrics",
                format!("{} scores is not a multiple of {c} labels", self.scores.len()),
            ));
        }
        let n = self.scores.len() / c;
        if let Some(i) = self.scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::Invalid(format!(
                "score {} (sample {}, label {}) is not finite",
                self.scores[i],
                i / c,
                i % c
            )));
        }
        match self.truth {
            Truth::Multi(t) => check_multi(t, n, c)?,
            Truth::Single(t) => check_single(t, n, c)?,
        }
        Ok(n)
    }

    pub fn num_samples(&self) -> usize {
        self.scores.len() / self.num_labels.max(1)
    }

    pub fn is_positive(&self, i: usize, j: usize) -> bool {
        match self.truth {
            Truth::Multi(t) => t[i * self.num_labels + j] != 0,
            Truth::Single(t) => t[i] as usize == j,
        }
    }

    /// Label `j` as a binary problem (one-vs-rest for single-label): scores and positives.
    pub fn column(&self, j: usize) -> (Vec<f64>, Vec<bool>) {
        let c = self.num_labels;
        (0..self.num_samples()).map(|i| (self.scores[i * c + j] as f64, self.is_positive(i, j))).unzip()
    }

    /// All sample-label pairs pooled into one binary problem (micro averaging).
    pub fn pooled(&self) -> (Vec<f64>, Vec<bool>) {
        let c = self.num_labels;
        let truth = (0..self.scores.len()).map(|k| self.is_positive(k / c, k % c)).collect();
        (self.scores.iter().map(|&s| s as f64).collect(), truth)
    }
}

fn check_multi(t: &[u8], n: usize, c: usize) -> Result<()> {
    if t.len() != n * c {
        return Err(Error::shape("metrics", format!("{} targets for {n} samples × {c} labels", t.len())));
    }
    match t.iter().position(|&v| v > 1) {
        Some(k) => Err(Error::Invalid(format!("target {} (sample {}, label {}) is not 0 or 1", t[k], k / c, k % c))),
        None => Ok(()),
    }
}

fn check_single(t: &[u32], n: usize, c: usize) -> Result<()> {
    if t.len() != n {
        return Err(Error::shape("metrics", format!("{} targets for {n} samples", t.len())));
    }
    match t.iter().position(|&v| v as usize >= c) {
        Some(i) => Err(Error::Invalid(format!("sample {i} has class {} but there are {c} classes", t[i]))),
        None => Ok(()),
    }
}

/// Dense `[N, C]` 0/1 targets from each sample's label set.
pub fn multi_hot(sets: &[Vec<u32>], num_labels: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; sets.len() * num_labels];
    for (i, set) in sets.iter().enumerate() {
        for &j in set {
            if j as usize >= num_labels {
                return Err(Error::Invalid(format!("sample {i} has label {j} but there are {num_labels} labels")));
            }
            out[i * num_labels + j as usize] = 1;
        }
    }
    Ok(out)
}
