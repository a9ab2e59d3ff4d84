//! `tailor eval`: evaluate a trained run on its validation split (rebuilt from its config and
//! seed) or on another dataset, with [`crate::run::evaluate`].

use std::path::PathBuf;

use super::common::{DataArgs, Printer};
use crate::error::Result;
use crate::run::folder::full_markdown;
use crate::run::{self, EvalSettings, Weights};

#[derive(clap::Args, Clone, Debug)]
pub struct EvalArgs {
    /// A run folder written by `tailor train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Evaluate on this dataset (all of it) instead of the run's validation split; label flags
    /// default to the run's.
    #[command(flatten)]
    pub data: DataArgs,
    /// The precision floor of the per-label thresholds.
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
}

pub fn run(cli: &super::Cli, a: &EvalArgs) -> Result<()> {
    let s = EvalSettings {
        model: a.model.clone(),
        data: a.data.data.is_some().then(|| a.data.spec(None)),
        min_precision: a.min_precision,
        batch_size: a.batch_size,
        out: a.out.clone(),
        weights: if a.last { Weights::Last } else { Weights::Best },
    };
    // Checked before the device opens and the data and the model load.
    s.check()?;
    let gpu = cli.open_gpu()?;
    let mut printer = Printer::default();
    let report = run::evaluate(&gpu, &s, &mut |e| printer.event(e))?;
    println!("{}", full_markdown(&report));
    Ok(())
}
