//! The seeded train/validation split, long-tail subsampling and rare-label dropping.

use std::collections::BTreeMap;

use super::{Dataset, LabelKind, Targets};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::setting::Setting;

#[derive(Clone, Debug, PartialEq)]
pub struct SplitSpec {
    /// Fraction of samples for validation, in [0, 1); 0 trains on everything.
    pub val_fraction: f64,
    pub seed: u64,
    /// A CSV column whose value groups samples that must stay on one side (e.g. a product id).
    pub split_by: Option<String>,
    /// Long-tail factor ρ ≥ 1: the training set keeps n_max·ρ^(−i/(C−1)) samples of class i
    /// (Cui et al. 2019); the validation set is untouched. Single-label only.
    pub imbalance: Option<f64>,
    /// Labels with fewer training samples than this are dropped (0: keep all).
    pub min_samples: usize,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec { val_fraction: 0.1, seed: 0, split_by: None, imbalance: None, min_samples: 0 }
    }
}

/// Indices into the dataset (compacted by `split` to just these samples) and label counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Labels removed by `min_samples`, for a warning.
    pub dropped: Vec<String>,
    /// Things worth a line (a validation fraction far from the one asked for, …).
    pub notes: Vec<String>,
    pub train_counts: Vec<usize>,
    pub val_counts: Vec<usize>,
}

/// Splits `ds`, applies `imbalance` and `min_samples` (renumbering the remaining labels), and
/// compacts `ds` to the samples used, in their original order.
pub fn split(ds: &mut Dataset, spec: &SplitSpec) -> Result<Split> {
    check_spec(ds, spec)?;
    let mut rng = Rng::new(spec.seed);
    let (mut train, mut val, why) = match (&spec.split_by, &ds.targets) {
        (Some(col), _) => {
            let (t, v, groups) = by_group(ds, col, spec.val_fraction, &mut rng)?;
            (t, v, format!("{} {col} keeps each of its {groups} groups whole on one side", Setting::SplitBy))
        }
        (None, Targets::Single(t)) => {
            let (t, v) = stratified(t, ds.num_labels(), spec.val_fraction, &mut rng);
            (t, v, "each class gives round(n·fraction) of its samples, and keeps one for training".into())
        }
        (None, Targets::Multi(_)) => {
            let (t, v) = random(ds.len(), spec.val_fraction, &mut rng);
            (t, v, "the fraction is rounded to whole samples".into())
        }
    };
    let mut notes: Vec<String> = fraction_note(train.len(), val.len(), spec.val_fraction, &why).into_iter().collect();
    if let Some(rho) = spec.imbalance {
        let before = train.len();
        train = long_tail(ds, &train, rho, &mut Rng::new(spec.seed ^ 0x5EED_1AB5));
        // Data that is long-tailed already can lose most of its samples to the profile: say so.
        if train.len() < before {
            let counts = ds.label_counts(&train);
            let (max, min) = (counts.iter().max().unwrap_or(&0), counts.iter().filter(|&&n| n > 0).min().unwrap_or(&0));
            notes.push(format!(
                "{} {rho} kept {} of the {before} training samples, {max} down to {min} per class: the \
                 largest class keeps as many as every smaller one's place on the profile allows, so on data that \
                 is long-tailed already the small classes cap it",
                Setting::Imbalance,
                train.len()
            ));
        }
    }
    let dropped = drop_rare(ds, &mut train, &mut val, spec.min_samples);
    check_result(ds, spec, &train, &val)?;
    let (train, val) = compact(ds, train, val);
    let (train_counts, val_counts) = (ds.label_counts(&train), ds.label_counts(&val));
    Ok(Split { train, val, dropped, notes, train_counts, val_counts })
}

/// A note when the validation split is far (by more than a third, relative) from the fraction
/// asked for: whole groups, or rounding on small classes, can move it a long way.
fn fraction_note(train: usize, val: usize, asked: f64, why: &str) -> Option<String> {
    let got = val as f64 / (train + val).max(1) as f64;
    if asked <= 0.0 || (got - asked).abs() <= asked / 3.0 {
        return None;
    }
    Some(format!(
        "the validation split holds {got:.3} of the samples ({val} of {}), not the {asked} {} asks for: {why}",
        train + val,
        Setting::ValFraction
    ))
}

fn check_spec(ds: &Dataset, spec: &SplitSpec) -> Result<()> {
    if !(0.0..1.0).contains(&spec.val_fraction) {
        return Err(Error::Invalid(format!("validation fraction {} must be in [0, 1), e.g. 0.1", spec.val_fraction)));
    }
    if let Some(rho) = spec.imbalance {
        if !(rho >= 1.0 && rho.is_finite()) {
            return Err(Error::Invalid(format!("imbalance factor {rho} must be at least 1 (n_max / n_min, e.g. 100)")));
        }
        if ds.kind() == LabelKind::Multi {
            return Err(Error::Invalid("imbalance subsampling needs single-label data (one class per image)".into()));
        }
    }
    if spec.split_by.is_some() && ds.table.is_none() {
        return Err(Error::Invalid("split-by needs a CSV source; this dataset has no columns".into()));
    }
    Ok(())
}

fn n_val(n: usize, frac: f64) -> usize {
    ((n as f64 * frac).round() as usize).min(n)
}

/// Per class, a seeded shuffle and round(n_c·f) to validation, keeping at least one for training.
fn stratified(t: &[u32], classes: usize, frac: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in t.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut idx in by_class {
        rng.shuffle(&mut idx);
        let k = n_val(idx.len(), frac).min(idx.len().saturating_sub(1));
        val.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    (train, val)
}

fn random(n: usize, frac: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    let val = idx.split_off(n - n_val(n, frac));
    (idx, val)
}

/// Whole groups (equal values of `col`; a missing value is a group of its own) go to validation
/// in a seeded order to come as near round(n·f) samples as whole groups allow; also returns how
/// many groups there are.
fn by_group(ds: &Dataset, col: &str, frac: f64, rng: &mut Rng) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    let table = ds.table.as_ref().expect("checked in check_spec");
    let c = table.column(col).map_err(|e| match e {
        Error::File { path, msg } => Error::File { path, msg: format!("{msg}; fix {}", Setting::SplitBy) },
        e => e,
    })?;
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut singles = Vec::new();
    for i in 0..ds.len() {
        match table.cell(ds.records[i], c) {
            "" => singles.push(vec![i]),
            v => groups.entry(v).or_default().push(i),
        }
    }
    let mut order: Vec<Vec<usize>> = groups.into_values().chain(singles).collect();
    let count = order.len();
    rng.shuffle(&mut order);
    let target = n_val(ds.len(), frac);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    // In the seeded order, a group goes to validation when it brings the split nearer the target
    // (so one large group cannot swallow it, and smaller ones later can still fill it); when no
    // group does, the smallest one (the first of them in that order) goes, so that there is one.
    let mut to_val: Vec<bool> = Vec::with_capacity(order.len());
    let mut n = 0;
    for g in &order {
        let take = 2 * n + g.len() < 2 * target;
        n += if take { g.len() } else { 0 };
        to_val.push(take);
    }
    if n == 0 && target > 0 {
        if let Some(i) = (0..order.len()).min_by_key(|&i| order[i].len()) {
            to_val[i] = true;
        }
    }
    for (g, v) in order.into_iter().zip(to_val) {
        if v {
            val.extend(g);
        } else {
            train.extend(g);
        }
    }
    Ok((train, val, count))
}

/// Keeps floor(n_max·ρ^(−r/(C−1))) training samples of the class of rank r (at least 1).
fn long_tail(ds: &Dataset, train: &[usize], rho: f64, rng: &mut Rng) -> Vec<usize> {
    let c = ds.num_labels();
    let mut by_class = vec![Vec::new(); c];
    for &i in train {
        by_class[ds.targets.labels(i)[0] as usize].push(i);
    }
    // Classes take their place on the profile n_max·ρ^(−r/(C−1)) by how many samples they have
    // (rank r, ties by index, so balanced data keeps the class order of Cui et al.), and n_max is
    // the largest every class can follow: data that is already long-tailed then ends with
    // n_max / n_min = ρ too, instead of being capped by its small classes.
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(by_class[i].len()), i));
    let frac = |r: usize| if c > 1 { rho.powf(-(r as f64) / (c - 1) as f64) } else { 1.0 };
    let mut rank = vec![0; c];
    order.iter().enumerate().for_each(|(r, &i)| rank[i] = r);
    let n_max = (0..c)
        .filter(|&i| !by_class[i].is_empty())
        .map(|i| by_class[i].len() as f64 / frac(rank[i]))
        .fold(f64::INFINITY, f64::min);
    let mut kept = Vec::new();
    for (i, mut idx) in by_class.into_iter().enumerate() {
        // The small margin keeps n_max·frac from rounding just below a class's exact count.
        let n = ((n_max * frac(rank[i]) + 1e-9).floor() as usize).max(1).min(idx.len());
        idx.sort_unstable();
        rng.shuffle(&mut idx);
        kept.extend_from_slice(&idx[..n]);
    }
    kept
}

/// Drops labels with fewer than `min` training samples; returns their names.
fn drop_rare(ds: &mut Dataset, train: &mut Vec<usize>, val: &mut Vec<usize>, min: usize) -> Vec<String> {
    let counts = ds.label_counts(train);
    let drop: Vec<bool> = counts.iter().map(|&n| n < min).collect();
    if !drop.contains(&true) {
        return Vec::new();
    }
    let names = ds.label_names.iter().zip(&drop).filter(|(_, &d)| d).map(|(n, _)| n.clone()).collect();
    let mut orphan = vec![false; ds.len()];
    ds.drop_labels(&drop).into_iter().for_each(|i| orphan[i] = true);
    train.retain(|&i| !orphan[i]);
    val.retain(|&i| !orphan[i]);
    names
}

/// Keeps only the samples in `train` and `val` and renumbers both, sorted.
fn compact(ds: &mut Dataset, mut train: Vec<usize>, mut val: Vec<usize>) -> (Vec<usize>, Vec<usize>) {
    let mut new_index = vec![usize::MAX; ds.len()];
    train.iter().chain(&val).for_each(|&i| new_index[i] = 0);
    let keep: Vec<usize> = (0..ds.len()).filter(|&i| new_index[i] == 0).collect();
    keep.iter().enumerate().for_each(|(k, &i)| new_index[i] = k);
    ds.retain(&keep);
    for v in [&mut train, &mut val] {
        v.iter_mut().for_each(|i| *i = new_index[*i]);
        v.sort_unstable();
    }
    (train, val)
}

fn check_result(ds: &Dataset, spec: &SplitSpec, train: &[usize], val: &[usize]) -> Result<()> {
    if train.is_empty() {
        return Err(Error::Invalid(format!(
            "the training split is empty ({} samples in all); lower {} or {}",
            ds.len(),
            Setting::ValFraction,
            Setting::MinSamples
        )));
    }
    if val.is_empty() && spec.val_fraction > 0.0 {
        return Err(Error::Invalid(format!(
            "the validation split is empty ({} training samples); raise {} (now {}) or use more data",
            train.len(),
            Setting::ValFraction,
            spec.val_fraction
        )));
    }
    if ds.num_labels() == 0 {
        return Err(Error::Invalid(format!("no labels are left; lower {}", Setting::MinSamples)));
    }
    let (tc, vc) = (ds.label_counts(train), ds.label_counts(val));
    if let Some(l) = tc.iter().position(|&n| n == 0) {
        return Err(Error::Invalid(format!(
            "label '{}' has no training samples ({} in validation); use {} 1 to drop such labels, or another {} \
             or {}",
            ds.label_names[l],
            vc[l],
            Setting::MinSamples,
            Setting::Seed,
            Setting::SplitBy
        )));
    }
    Ok(())
}
