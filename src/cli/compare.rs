//! `tailor compare`: trains NW, IFW and IEW on the same split and seed, evaluates each and
//! prints the paper's Table I (per-label AP per scheme, the best of each row marked), with
//! [`crate::run::compare`].

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
    let c = crate::run::compare(&gpu, &a.settings(), &out, a.overwrite, &mut |e| printer.event(e))?;
    println!("{}", c.table.to_text());
    eprintln!("wrote {}", c.path.display());
    Ok(())
}
