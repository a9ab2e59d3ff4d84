//! `tailor eval`: evaluate a trained run on its validation split (rebuilt from its config and
//! seed) or on another dataset: a classifier per label ([`crate::run::evaluate`]), an embedding
//! model by retrieval ([`crate::run::evaluate_retrieval`]).

use std::path::PathBuf;

use super::common::{DataArgs, Printer};
use crate::error::{Error, Result};
use crate::run::folder::full_markdown;
use crate::run::{self, EvalSettings, RunConfig, Task, Weights};

#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// A run folder written by `tailor train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Evaluate on this dataset (all of it) instead of the run's validation split; label flags
    /// default to the run's.
    #[command(flatten)]
    pub data: DataArgs,
    /// Classifiers: the precision floor of the per-label thresholds.
    #[arg(long, default_value_t = 0.6)]
    pub min_precision: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Where to write the reports and thresholds (default: the model folder, whose
    /// thresholds.json `predict` uses).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluate the last epoch's weights (default: the best epoch's, where they differ).
    #[arg(long)]
    pub last: bool,
    /// Embedding runs: a CSV of gallery images (same columns as --data) that the queries search,
    /// instead of each query searching the other queries.
    #[arg(long)]
    pub gallery: Option<PathBuf>,
    /// Embedding runs with a vertical column: search every vertical, not only the query's.
    #[arg(long)]
    pub across_verticals: bool,
}

pub fn run(cli: &super::Cli, a: &EvalArgs) -> Result<()> {
    let gallery = a.gallery.as_ref().map(|g| {
        let mut spec = a.data.spec(None);
        spec.data = Some(g.clone());
        spec
    });
    let s = EvalSettings {
        model: a.model.clone(),
        data: a.data.data.is_some().then(|| a.data.spec(None)),
        min_precision: a.min_precision,
        batch_size: a.batch_size,
        out: a.out.clone(),
        weights: if a.last { Weights::Last } else { Weights::Best },
        gallery,
        across_verticals: a.across_verticals,
    };
    // Checked before the device opens and the data and the model load.
    s.check()?;
    let embedding = RunConfig::load(&a.model)?.task == Task::Embedding;
    if !embedding && (a.gallery.is_some() || a.across_verticals) {
        return Err(Error::Invalid(
            "--gallery and --across-verticals are for embedding runs; this run is a classifier".into(),
        ));
    }
    let gpu = cli.open_gpu()?;
    let mut printer = Printer::default();
    if embedding {
        let report = run::evaluate_retrieval(&gpu, &s, &mut |e| printer.event(e))?;
        println!("{}", report.to_markdown());
    } else {
        let report = run::evaluate(&gpu, &s, &mut |e| printer.event(e))?;
        println!("{}", full_markdown(&report));
    }
    Ok(())
}
