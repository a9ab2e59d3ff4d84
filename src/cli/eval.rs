//! `tailor eval`: evaluate a trained run on its validation split (rebuilt from its config and
//! seed) or on another dataset; write eval.json, eval.md, PR curves and the model's thresholds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::common::{self, DataArgs, RunConfig};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::metrics::{self, EvalOptions, EvalReport, Evaluation};
use crate::nn::checkpoint::StateDict;
use crate::nn::model::Model;
use crate::nn::predict::Predictor;
use crate::Gpu;

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
}

pub fn run(cli: &super::Cli, a: &EvalArgs) -> Result<()> {
    let gpu = cli.open_gpu()?;
    let report = eval(&gpu, a)?;
    println!("{}", report.to_markdown_full());
    Ok(())
}

/// Evaluates and writes every file; returns the report.
pub fn eval(gpu: &Arc<Gpu>, a: &EvalArgs) -> Result<EvalReport> {
    eval_on(gpu, a, None)
}

/// [`eval`] on the run's validation split, taken from `data` when given (loaded by
/// [`super::train::prepare`] with the run's flags, as `compare` does once for its three runs).
pub fn eval_on(gpu: &Arc<Gpu>, a: &EvalArgs, data: Option<&super::train::Prepared>) -> Result<EvalReport> {
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size 0: give a positive batch size".into()));
    }
    // Checked before the data and the model load.
    if !(a.min_precision > 0.0 && a.min_precision <= 1.0) {
        return Err(Error::Invalid(format!(
            "--min-precision {}: give a precision in (0, 1], e.g. 0.6",
            a.min_precision
        )));
    }
    let cfg = RunConfig::load(&a.model)?;
    let image = cfg.preprocess.image_spec()?;
    let (ds, indices) = match &a.data.data {
        None => {
            let loaded;
            let p = match data {
                Some(p) => p,
                None => {
                    loaded = super::train::prepare(&cfg.args, Some(image))?;
                    &loaded
                }
            };
            if p.split.val.is_empty() {
                return Err(Error::Invalid(format!(
                    "the run in {} has no validation split (--val-fraction 0); give a dataset with --data",
                    a.model.display()
                )));
            }
            if p.ds.label_names != cfg.label_names {
                return Err(Error::Invalid("the run's data now has other labels; give --data explicitly".into()));
            }
            (p.ds.clone(), p.split.val.clone())
        }
        Some(_) => {
            let ds = external(a, &cfg)?;
            let all = (0..ds.len()).collect();
            (Arc::new(ds), all)
        }
    };
    eprintln!("evaluating {} on {} samples", a.model.display(), indices.len());
    let mut model = Model::new(gpu.clone(), cfg.model.clone(), 0)?;
    let weights = a.model.join("model.safetensors");
    model.load_own_state_dict(&StateDict::load(&weights)?, &weights)?;
    let batch = a.batch_size.clamp(1, indices.len().max(1));
    let pred = Predictor::new(&model, batch, image.height, image.width).map_err(common::too_large_hint)?;
    let scores = common::score(&pred, &ds, &indices, &cfg.preprocess.normalize(), batch, cfg.loss == "sigmoid")?;
    let opts = EvalOptions { precision_floor: a.min_precision, ..EvalOptions::default() };
    let ev = super::train::evaluate_split(&scores, &ds, &indices, &cfg, &opts)?;
    let out = a.out.clone().unwrap_or_else(|| a.model.clone());
    common::make_dir(&out)?;
    write_all(&out, &ev)?;
    // The thresholds go with the reports: into the run folder (where `predict` reads them) only
    // when the reports go there too, so `--out` leaves the run as it was.
    save_thresholds(&out, &ev.report)?;
    Ok(ev.report)
}

/// Writes eval.json, eval.md and the PR figures into `dir`.
pub fn write_all(dir: &Path, ev: &Evaluation) -> Result<()> {
    ev.report.save_json(&dir.join("eval.json"))?;
    metrics::write_atomic(&dir.join("eval.md"), ev.report.to_markdown_full().as_bytes())?;
    metrics::write_pr_figures(dir, "pr", &metrics::pr_figures(ev))?;
    Ok(())
}

/// `thresholds.json`: each label's threshold at the precision floor (null where none reaches it).
/// A label with no positives in the evaluated data says nothing about its threshold, so the one
/// already saved for it (if any) is kept.
fn save_thresholds(dir: &Path, r: &EvalReport) -> Result<()> {
    let path = dir.join("thresholds.json");
    let old: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let map: serde_json::Map<String, serde_json::Value> = r
        .labels
        .iter()
        .map(|l| {
            let kept = &old["thresholds"][&l.name];
            let v = match l.at_floor {
                None if l.eval_positives == 0 && kept.is_number() => kept.clone(),
                t => serde_json::json!(t.map(|o| o.threshold)),
            };
            (l.name.clone(), v)
        })
        .collect();
    let v = serde_json::json!({"precision_floor": r.precision_floor, "thresholds": map});
    metrics::write_atomic(&path, serde_json::to_string_pretty(&v).unwrap().as_bytes())
}

/// With `--label-columns`, every `column=value` label of the model must come from a column that
/// is given: a missing column would count all its labels as absent from every image.
fn check_columns_cover(source: &common::Source, cfg: &RunConfig) -> Result<()> {
    let Some(common::Labels::Columns { columns }) = &source.labels else { return Ok(()) };
    let mut missing: Vec<&str> = Vec::new();
    for name in &cfg.label_names {
        if let Some((col, _)) = name.split_once('=') {
            if !columns.iter().any(|c| c == col) && !missing.contains(&col) {
                missing.push(col);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let mut all: Vec<&str> = columns.iter().map(String::as_str).collect();
    all.extend(&missing);
    Err(Error::Invalid(format!(
        "the model also predicts labels of column(s) {}, which --label-columns does not give, so every image \
         would count as negative for them; use --label-columns {}",
        missing.join(", "),
        all.join(",")
    )))
}

/// A dataset given with --data, its labels renumbered to the run's.
fn external(a: &EvalArgs, cfg: &RunConfig) -> Result<Dataset> {
    let mut data = a.data.clone();
    let labelled = data.label_column.is_some() || !data.label_columns.is_empty() || data.tags_column.is_some();
    if !labelled {
        let saved = &cfg.args.data;
        data.label_column = saved.label_column.clone();
        data.label_columns = saved.label_columns.clone();
        data.tags_column = saved.tags_column.clone();
        data.tag_sep = saved.tag_sep.clone();
    }
    let source = data.source()?;
    check_columns_cover(&source, cfg)?;
    let mut ds = common::load(&source, &cfg.preprocess.image_spec()?)?;
    let map: Vec<Option<u32>> =
        ds.label_names.iter().map(|n| cfg.label_names.iter().position(|m| m == n).map(|p| p as u32)).collect();
    let unknown: Vec<&str> =
        ds.label_names.iter().zip(&map).filter(|(_, m)| m.is_none()).map(|(n, _)| n.as_str()).collect();
    if let Targets::Single(t) = &ds.targets {
        if let Some(i) = t.iter().position(|&l| map[l as usize].is_none()) {
            return Err(Error::Invalid(format!(
                "{} has label '{}', which the model does not know (its labels are in {}/labels.txt)",
                ds.describe(i),
                ds.label_names[t[i] as usize],
                a.model.display()
            )));
        }
    }
    match &mut ds.targets {
        Targets::Single(t) => {
            t.iter_mut().for_each(|l| *l = map[*l as usize].unwrap());
        }
        Targets::Multi(t) => {
            if !unknown.is_empty() {
                eprintln!("warning: ignoring labels the model does not know: {}", unknown.join(", "));
            }
            for set in t.iter_mut() {
                *set = set.iter().filter_map(|&l| map[l as usize]).collect();
                set.sort_unstable();
            }
        }
    }
    if ds.kind() != cfg.kind() {
        return Err(Error::Invalid(format!(
            "the model was trained on {}-label data but --data gives {}-label data; use the same label flags",
            cfg.label_kind,
            if ds.kind() == crate::data::LabelKind::Single { "single" } else { "multi" }
        )));
    }
    ds.label_names = cfg.label_names.clone();
    Ok(ds)
}

/// The report's markdown plus, for single-label data, per-class accuracy and the confusion matrix.
pub trait FullMarkdown {
    fn to_markdown_full(&self) -> String;
}

impl FullMarkdown for EvalReport {
    fn to_markdown_full(&self) -> String {
        let mut s = self.to_markdown();
        let Some(single) = &self.single else { return s };
        s += "\n## Per-class accuracy\n\n| Class | Accuracy |\n|---|---:|\n";
        for (l, acc) in self.labels.iter().zip(&single.per_class_accuracy) {
            s += &format!("| {} | {} |\n", l.name.replace('|', "\\|"), acc.map_or("-".into(), |v| format!("{v:.3}")));
        }
        let c = single.confusion.num_classes;
        s += "\n## Confusion matrix (rows: truth, columns: prediction)\n\n| |";
        for j in 0..c {
            s += &format!(" {j} |");
        }
        s += "\n|---|";
        s += &"---:|".repeat(c);
        s += "\n";
        for (i, l) in self.labels.iter().enumerate() {
            s += &format!("| {i} {} |", l.name.replace('|', "\\|"));
            for j in 0..c {
                s += &format!(" {} |", single.confusion.get(i, j));
            }
            s += "\n";
        }
        s
    }
}
