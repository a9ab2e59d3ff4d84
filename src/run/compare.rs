//! The paper's Table I: NW, IFW and IEW trained on the same split and seed, each evaluated, and
//! the per-label AP of each scheme side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{Choice, RunSettings, WeightingKind};
use super::eval::{evaluate_on, EvalSettings};
use super::train::{train_on, Start};
use super::{folder, prepare, Event};
use crate::error::{Error, Result};
use crate::metrics::{write_atomic, EvalReport, SchemeComparison, PAPER_SCHEMES};
use crate::setting::Setting;
use crate::Gpu;

/// What [`compare`] wrote.
pub struct Comparison {
    pub table: SchemeComparison,
    /// `table1.md`.
    pub path: PathBuf,
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
