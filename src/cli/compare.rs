//! `tailor compare`: trains NW, IFW and IEW on the same split and seed, evaluates each and
//! prints the paper's Table I (per-label AP per scheme, the best of each row marked).

use std::path::PathBuf;

use super::eval::EvalArgs;
use super::train::TrainArgs;
use crate::error::{Error, Result};
use crate::metrics::{write_atomic, SchemeComparison, PAPER_SCHEMES};

pub fn run(cli: &super::Cli, a: &TrainArgs) -> Result<()> {
    if a.resume.is_some() {
        return Err(Error::Invalid("compare starts three fresh runs; --resume is for train".into()));
    }
    if !a.weighting.eq_ignore_ascii_case("iew") {
        return Err(Error::Invalid(format!(
            "compare trains all three schemes (NW, IFW, IEW), so --weighting {} has no effect; drop it",
            a.weighting
        )));
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs/compare"));
    // Its three runs are fresh ones: an earlier comparison there is replaced only when asked.
    for scheme in PAPER_SCHEMES {
        let dir = out.join(scheme.to_ascii_lowercase());
        if dir.is_dir() && super::train::holds_run(&dir) && !a.overwrite {
            return Err(Error::file(
                &dir,
                "already holds a run of an earlier comparison; replace them with --overwrite, or give another --out",
            ));
        }
    }
    let gpu = cli.open_gpu()?;
    super::common::make_dir(&out)?;
    // The three runs share one split (same flags and seed): load and split the images once.
    let data = super::train::prepare(a, None)?;
    super::train::print_found(&data);
    let mut reports = Vec::new();
    for scheme in PAPER_SCHEMES {
        eprintln!("== {scheme} ==");
        let mut args = a.clone();
        args.weighting = scheme.to_ascii_lowercase();
        args.out = Some(out.join(scheme.to_ascii_lowercase()));
        let run = super::train::train_on(&gpu, &args, Some(&data))?;
        let e = EvalArgs {
            model: run.dir.clone(),
            data: Default::default(),
            min_precision: 0.6,
            batch_size: a.batch_size,
            out: None,
        };
        reports.push((scheme, super::eval::eval_on(&gpu, &e, Some(&data))?));
    }
    let refs: Vec<(&str, &crate::metrics::EvalReport)> = reports.iter().map(|(s, r)| (*s, r)).collect();
    let table = SchemeComparison::from_reports(&refs)?;
    let md = format!("# Table I: AP per label under each weighting scheme (best in bold)\n\n{}", table.to_markdown());
    write_atomic(&out.join("table1.md"), md.as_bytes())?;
    println!("{}", table.to_text());
    eprintln!("wrote {}", out.join("table1.md").display());
    Ok(())
}
