//! `tailor compare`: trains NW, IFW and IEW on the same split and seed, evaluates each and
//! prints the paper's Table I (per-label AP per scheme, the best of each row marked), with
//! [`crate::run::compare`]; with several `--beta` or `--focal-gamma` values, an IEW run per
//! (β, γ) and which wins per label group ([`crate::run::compare_grid`]).

use std::path::PathBuf;

use super::common::Printer;
use super::train::TrainArgs;
use crate::error::{Error, Result};

pub fn run(cli: &super::Cli, a: &TrainArgs) -> Result<()> {
    if a.resume.is_some() {
        return Err(Error::Invalid("compare starts three fresh runs; --resume is for train".into()));
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs/compare"));
    let gpu = cli.open_gpu()?;
    let mut printer = Printer::default();
    let mut on = |e: crate::run::Event| printer.event(e);
    let (text, path) = if a.beta.len() > 1 || a.focal_gamma.len() > 1 {
        let g = crate::run::compare_grid(&gpu, &a.settings(), &a.beta, &a.focal_gamma, &out, a.overwrite, &mut on)?;
        (g.groups.to_text(), g.path)
    } else {
        let c = crate::run::compare(&gpu, &a.settings(), &out, a.overwrite, &mut on)?;
        (c.table.to_text(), c.path)
    };
    println!("{text}");
    eprintln!("wrote {}", path.display());
    Ok(())
}
