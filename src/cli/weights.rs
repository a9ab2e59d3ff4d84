//! `tailor weights`: the effective numbers and the NW, IFW and IEW class weights for label counts
//! given on the command line or counted in a dataset's training split.

use super::common::{DataArgs, Printer, SplitArgs};
use crate::error::{Error, Result};
use crate::nn::weights::{class_weights_report, Weighting};

#[derive(clap::Args, Clone, Debug)]
pub struct WeightsArgs {
    /// Samples per class, e.g. 600,150,40,9,3.
    #[arg(long, value_delimiter = ',', conflicts_with = "data", value_parser = count)]
    pub counts: Vec<u64>,
    #[command(flatten)]
    pub data: DataArgs,
    /// With --data: the split and thinning `train` would do, whose training counts are weighted.
    #[command(flatten)]
    pub split: SplitArgs,
    /// With --data: the seed of the split (train's --seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// β of the effective number (1 − βⁿ)/(1 − β).
    #[arg(long, default_value_t = 0.99)]
    pub beta: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A class's sample count, with a message that says what one is.
fn count(s: &str) -> std::result::Result<u64, String> {
    s.trim().parse().map_err(|_| "a count is a whole number of samples, 0 or more, e.g. --counts 600,150,40".into())
}

pub fn run(a: &WeightsArgs) -> Result<()> {
    let (names, counts) = counts(a)?;
    let iew = class_weights_report(&counts, Weighting::Iew { beta: a.beta }, Some(&names))?;
    let nw = class_weights_report(&counts, Weighting::Nw, Some(&names))?;
    let ifw = class_weights_report(&counts, Weighting::Ifw, Some(&names))?;
    if a.json {
        let labels: Vec<_> = (0..counts.len())
            .map(|i| {
                serde_json::json!({"label": names[i], "count": counts[i], "effective": iew.effective[i],
                    "nw": nw.weights[i], "ifw": ifw.weights[i], "iew": iew.weights[i]})
            })
            .collect();
        let v = serde_json::json!({"beta": a.beta, "labels": labels});
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return Ok(());
    }
    let w = names.iter().map(|n| n.chars().count()).max().unwrap_or(5).max(5);
    println!(
        "weights sum to 1 (tailor train scales them to sum to the number of classes); effective number \
         E_n = (1 - β^n)/(1 - β) with β = {}",
        a.beta
    );
    println!("{:w$} {:>8} {:>10} {:>8} {:>8} {:>8}", "label", "count", "E_n", "NW", "IFW", "IEW");
    for i in 0..counts.len() {
        println!(
            "{:w$} {:>8} {:>10.3} {:>8.4} {:>8.4} {:>8.4}",
            names[i], counts[i], iew.effective[i], nw.weights[i], ifw.weights[i], iew.weights[i]
        );
    }
    Ok(())
}

fn counts(a: &WeightsArgs) -> Result<(Vec<String>, Vec<u64>)> {
    if !a.counts.is_empty() {
        if let Some(flag) = a.split.given().first() {
            return Err(Error::Invalid(format!(
                "{flag} splits a dataset, but --counts gives the counts themselves; use --data instead of --counts"
            )));
        }
        return Ok(((0..a.counts.len()).map(|i| i.to_string()).collect(), a.counts.clone()));
    }
    if a.data.data.is_none() {
        return Err(Error::Invalid("give --counts 600,150,40 or --data with label flags".into()));
    }
    // The counts training would weight: the same load, split and thinning as `train`.
    let source = a.data.spec(None).source()?;
    let mut printer = Printer::default();
    let mut on = |e: crate::run::Event| printer.event(e);
    let ds = crate::run::data::load_labels(&source, &mut on)?;
    let (ds, split) = crate::run::data::split(&source, ds, &a.split.settings().spec(a.seed), &mut on)?;
    Ok((ds.label_names, split.train_counts.iter().map(|&n| n as u64).collect()))
}
