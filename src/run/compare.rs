//! The paper's Table I: NW, IFW and IEW trained on the same split and seed, each evaluated, and
//! the per-label AP of each scheme side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{Choice, RunSettings, Task, WeightingKind};
use super::eval::{evaluate_on, EvalSettings};
use super::train::{train_on, Start};
use super::{folder, prepare, Event};
use crate::error::{Error, Result};
use crate::metrics::{write_atomic, EvalReport, GroupComparison, SchemeComparison, PAPER_SCHEMES};
use crate::setting::Setting;
use crate::Gpu;

/// What [`compare`] wrote.
pub struct Comparison {
    pub table: SchemeComparison,
    /// `table1.md`.
    pub path: PathBuf,
}

/// What [`compare_grid`] wrote.
pub struct GridComparison {
    /// Per label group, each (β, γ) run's macro mAP.
    pub groups: GroupComparison,
    /// Per label, each run's AP.
    pub labels: SchemeComparison,
    /// `grid.md`.
    pub path: PathBuf,
}

/// The run folder of one (β, γ) of a grid: `iew-b0.99-g2`.
fn grid_name(beta: f64, gamma: f32) -> String {
    format!("iew-b{beta}-g{gamma}")
}

/// Trains IEW with every β of `betas` and focal γ of `gammas` on one split (the rest of
/// `settings` shared) into `out/iew-b<β>-g<γ>`, evaluates each on the validation split, and
/// writes `out/grid.md`: which (β, γ) gives the best macro mAP overall and in each label group
/// (Cui et al. chose β and γ per data set this way; the seed paper fixes β = 0.99).
pub fn compare_grid(
    gpu: &Arc<Gpu>,
    settings: &RunSettings,
    betas: &[f64],
    gammas: &[f32],
    out: &Path,
    overwrite: bool,
    on: &mut dyn FnMut(Event),
) -> Result<GridComparison> {
    if settings.task != Task::Classify {
        return Err(Error::setting(Setting::Task, settings.task, "weighting schemes are compared for classifiers"));
    }
    if settings.weighting != WeightingKind::Iew {
        return Err(Error::Invalid(format!(
            "a grid of β and γ trains IEW (β is its effective number's), so {} {} has no effect; drop it",
            Setting::Weighting,
            settings.weighting
        )));
    }
    if betas.is_empty() || gammas.is_empty() {
        return Err(Error::Invalid(format!(
            "give {} and {} at least one value each",
            Setting::Beta,
            Setting::FocalGamma
        )));
    }
    if settings.split.val_fraction == 0.0 {
        return Err(Error::setting(Setting::ValFraction, 0, "a grid is judged on the validation split; give e.g. 0.1"));
    }
    let grid: Vec<(f64, f32)> = betas.iter().flat_map(|&b| gammas.iter().map(move |&g| (b, g))).collect();
    // Every point's settings are checked, and no earlier grid replaced unasked, before any trains.
    for &(beta, gamma) in &grid {
        let mut s = settings.clone();
        (s.beta, s.focal_gamma) = (beta, gamma);
        s.check()?;
        s.loss(crate::data::LabelKind::Single).or_else(|_| s.loss(crate::data::LabelKind::Multi))?;
        let dir = out.join(grid_name(beta, gamma));
        if dir.is_dir() && folder::holds_run(&dir) && !overwrite {
            return Err(Error::file(
                &dir,
                format!(
                    "already holds a run of an earlier comparison; replace them with {}, or give another {}",
                    Setting::Overwrite,
                    Setting::Out
                ),
            ));
        }
    }
    folder::make_dir(out)?;
    let data = prepare(&settings.data, &settings.split_spec(), None, on)?;
    on(Event::Data(&data));
    let mut reports: Vec<(String, EvalReport)> = Vec::new();
    for &(beta, gamma) in &grid {
        let name = grid_name(beta, gamma);
        on(Event::Scheme { name: &name });
        let mut s = settings.clone();
        (s.beta, s.focal_gamma) = (beta, gamma);
        let start = Start::New { settings: Box::new(s), dir: out.join(&name), overwrite };
        let run = train_on(gpu, &start, Some(&data), on)?;
        let mut e = EvalSettings::new(run.dir);
        e.batch_size = settings.batch_size;
        reports.push((format!("β={beta} γ={gamma}"), evaluate_on(gpu, &e, Some(&data), on)?));
    }
    let refs: Vec<(String, &EvalReport)> = reports.iter().map(|(n, r)| (n.clone(), r)).collect();
    let groups = GroupComparison::from_reports(&refs)?;
    let named: Vec<(&str, &EvalReport)> = reports.iter().map(|(n, r)| (n.as_str(), r)).collect();
    let labels = SchemeComparison::from_reports(&named)?;
    let md = format!(
        "# IEW over a grid of β and focal γ: macro mAP by label group on validation (best in bold)\n\n{}\n\
         ## AP per label\n\n{}",
        groups.to_markdown(),
        labels.to_markdown()
    );
    let path = out.join("grid.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(GridComparison { groups, labels, path })
}

/// The run folder of scheme `scheme` ("NW", …) under `out`.
fn scheme_dir(out: &Path, scheme: &str) -> PathBuf {
    out.join(scheme.to_ascii_lowercase())
}

/// Trains `settings` once per weighting scheme into `out/nw`, `out/ifw` and `out/iew` (an
/// earlier comparison there is replaced only when `overwrite`), evaluates each on the shared
/// validation split and writes `out/table1.md`.
pub fn compare(
    gpu: &Arc<Gpu>,
    settings: &RunSettings,
    out: &Path,
    overwrite: bool,
    on: &mut dyn FnMut(Event),
) -> Result<Comparison> {
    if settings.task != Task::Classify {
        return Err(Error::setting(Setting::Task, settings.task, "weighting schemes are compared for classifiers"));
    }
    if settings.weighting != WeightingKind::Iew {
        return Err(Error::Invalid(format!(
            "compare trains all three schemes (NW, IFW, IEW), so {} {} has no effect; drop it",
            Setting::Weighting,
            settings.weighting
        )));
    }
    // Its three runs are fresh ones: an earlier comparison there is replaced only when asked.
    for scheme in PAPER_SCHEMES {
        let dir = scheme_dir(out, scheme);
        if dir.is_dir() && folder::holds_run(&dir) && !overwrite {
            return Err(Error::file(
                &dir,
                format!(
                    "already holds a run of an earlier comparison; replace them with {}, or give another {}",
                    Setting::Overwrite,
                    Setting::Out
                ),
            ));
        }
    }
    settings.check()?;
    folder::make_dir(out)?;
    // The three runs share one split (same settings and seed): load and split the images once.
    let data = prepare(&settings.data, &settings.split_spec(), None, on)?;
    on(Event::Data(&data));
    let mut reports: Vec<(&str, EvalReport)> = Vec::new();
    for scheme in PAPER_SCHEMES {
        on(Event::Scheme { name: scheme });
        let mut s = settings.clone();
        s.weighting = WeightingKind::parse_word(scheme)?;
        let dir = scheme_dir(out, scheme);
        let start = Start::New { settings: Box::new(s), dir: dir.clone(), overwrite };
        let run = train_on(gpu, &start, Some(&data), on)?;
        let mut e = EvalSettings::new(run.dir);
        e.batch_size = settings.batch_size;
        reports.push((scheme, evaluate_on(gpu, &e, Some(&data), on)?));
    }
    let refs: Vec<(&str, &EvalReport)> = reports.iter().map(|(s, r)| (*s, r)).collect();
    let table = SchemeComparison::from_reports(&refs)?;
    let md = format!("# Table I: AP per label under each weighting scheme (best in bold)\n\n{}", table.to_markdown());
    let path = out.join("table1.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(Comparison { table, path })
}
