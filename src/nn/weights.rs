//! Per-class loss weights from label counts (Cui et al., "Class-Balanced Loss Based on Effective
//! Number of Samples", CVPR 2019), computed in f64 on the host.
//!
//! The effective number of `n` samples is `E_n = (1 - βⁿ) / (1 - β)`; the class-balanced weight
//! is `1 / E_n`. β = 0 gives `E_n = 1` (no weighting, `Nw`) and β → 1 gives `E_n = n` (inverse
//! frequency, `Ifw`), so the three schemes are one formula.

use crate::error::{Error, Result};

/// What β = 1 would mean, for messages refusing it: the limit of IEW as β → 1 is IFW.
pub fn beta_hint(beta: f64) -> &'static str {
    if beta == 1.0 {
        " (as β → 1 the effective number tends to n and IEW to IFW: use the ifw weighting for that, or β = 0.999)"
    } else {
        ""
    }
}

/// How to weight classes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weighting {
    /// No weighting: every class weighs the same.
    Nw,
    /// Inverse frequency: weight ∝ 1 / n.
    Ifw,
    /// Inverse effective number: weight ∝ (1 − β) / (1 − βⁿ), β in [0, 1).
    Iew { beta: f64 },
}

/// Weights (summing to 1) and the effective number of samples of every class.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassWeights {
    pub weights: Vec<f64>,
    pub effective: Vec<f64>,
}

fn label(names: Option<&[String]>, i: usize) -> String {
    match names.and_then(|n| n.get(i)) {
        Some(name) => format!("class {i} ('{name}')"),
        None => format!("class {i}"),
    }
}

fn check(counts: &[u64], weighting: Weighting, names: Option<&[String]>) -> Result<()> {
    if counts.is_empty() {
        return Err(Error::Invalid("class weights need at least one class".into()));
    }
    if let Some(n) = names {
        if n.len() != counts.len() {
            return Err(Error::Invalid(format!("{} class names for {} class counts", n.len(), counts.len())));
        }
    }
    if let Weighting::Iew { beta } = weighting {
        if !(0.0..1.0).contains(&beta) {
            return Err(Error::Invalid(format!(
                "the effective-number β must be in [0, 1), got {beta}{}",
                beta_hint(beta)
            )));
        }
    }
    if let Some(i) = counts.iter().position(|&n| n == 0) {
        return Err(Error::Invalid(format!(
            "{} has no training samples, so it has no class weight; remove it from the label set or add samples",
            label(names, i)
        )));
    }
    Ok(())
}

/// `E_n = (1 − βⁿ)/(1 − β)`. `1 − βⁿ` is `−expm1(n·ln β)`, which keeps its precision when βⁿ is
/// close to 1 (β near 1, few samples), where `1.0 - beta.powf(n)` would cancel.
fn effective_number(n: u64, weighting: Weighting) -> f64 {
    match weighting {
        Weighting::Nw => 1.0,
        Weighting::Ifw => n as f64,
        Weighting::Iew { beta: 0.0 } => 1.0,
        Weighting::Iew { beta } => -(n as f64 * beta.ln()).exp_m1() / (1.0 - beta),
    }
}

/// The effective number of samples of every class (`1` for `Nw`, `n` for `Ifw`).
pub fn effective_numbers(counts: &[u64], weighting: Weighting, names: Option<&[String]>) -> Result<Vec<f64>> {
    check(counts, weighting, names)?;
    Ok(counts.iter().map(|&n| effective_number(n, weighting)).collect())
}

/// Class weights ∝ 1 / E_n, normalised to sum to 1. A class with no samples is an error that
/// names it (`names[i]` when given).
pub fn class_weights(counts: &[u64], weighting: Weighting, names: Option<&[String]>) -> Result<Vec<f64>> {
    Ok(class_weights_report(counts, weighting, names)?.weights)
}

/// [`class_weights`] together with the effective numbers they came from.
pub fn class_weights_report(counts: &[u64], weighting: Weighting, names: Option<&[String]>) -> Result<ClassWeights> {
    let effective = effective_numbers(counts, weighting, names)?;
    let inv: Vec<f64> = effective.iter().map(|e| 1.0 / e).collect();
    Ok(ClassWeights { weights: renormalise(&inv, 1.0), effective })
}

/// `w` scaled to sum to `total`.
pub fn renormalise(w: &[f64], total: f64) -> Vec<f64> {
    let sum: f64 = w.iter().sum();
    w.iter().map(|x| x * total / sum).collect()
}

/// `w` scaled to sum to the number of classes, the normalisation of Cui et al. (the weighted-mean
/// losses do not depend on it; unnormalised sums do).
pub fn renormalise_to_classes(w: &[f64]) -> Vec<f64> {
    renormalise(w, w.len() as f64)
}
