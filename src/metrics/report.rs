//! The evaluation report: every number per label and per group, as JSON and markdown.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ap::{label_curves, mean_defined, ApSummary, PrCurve};
use super::confusion::ConfusionMatrix;
use super::groups::{Rarity, RaritySplit, Shot, ShotSplit};
use super::input::{Predictions, Truth};
use super::threshold::{OperatingPoint, DEFAULT_PRECISION_FLOOR};
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Single,
    Multi,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelReport {
    pub name: String,
    pub train_count: usize,
    /// Positives in the evaluation split; 0 means no AP.
    pub eval_positives: usize,
    pub shot: Shot,
    pub rarity: Rarity,
    pub ap: Option<f64>,
    /// Highest-recall threshold with precision at least the report's floor.
    pub at_floor: Option<OperatingPoint>,
}

/// Mean AP over the labels of one group that have an AP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group: String,
    pub labels: usize,
    pub labels_with_ap: usize,
    pub macro_ap: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleLabelReport {
    pub top1_accuracy: Option<f64>,
    /// Recall of each class; `None` for a class absent from the evaluation split.
    pub per_class_accuracy: Vec<Option<f64>>,
    pub confusion: ConfusionMatrix,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub kind: TaskKind,
    pub eval_samples: usize,
    pub train_samples: usize,
    pub precision_floor: f64,
    pub shot_split: ShotSplit,
    pub rarity_split: RaritySplit,
    /// Mean over labels with positives in the evaluation split.
    pub macro_ap: Option<f64>,
    /// All sample-label pairs pooled.
    pub micro_ap: Option<f64>,
    /// many, medium, few, majority, minority, rare.
    pub groups: Vec<GroupSummary>,
    pub labels: Vec<LabelReport>,
    pub single: Option<SingleLabelReport>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalOptions {
    pub precision_floor: f64,
    pub shots: ShotSplit,
    pub rarity: RaritySplit,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            precision_floor: DEFAULT_PRECISION_FLOOR,
            shots: ShotSplit::default(),
            rarity: RaritySplit::default(),
        }
    }
}

/// The report with the curves it was computed from (too large for the JSON, kept for plots).
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub report: EvalReport,
    pub curves: Vec<Option<PrCurve>>,
}

/// Evaluates `pred`; `names` and `train_counts` have one entry per label and `train_samples` is
/// the size of the training split (the denominator of the rarity groups).
pub fn evaluate(
    pred: &Predictions,
    names: &[String],
    train_counts: &[usize],
    train_samples: usize,
    opts: &EvalOptions,
) -> Result<Evaluation> {
    let c = pred.num_labels;
    if names.len() != c || train_counts.len() != c {
        let msg = format!("{c} labels but {} names and {} training counts", names.len(), train_counts.len());
        return Err(Error::shape("evaluate", msg));
    }
    if !(opts.precision_floor > 0.0 && opts.precision_floor <= 1.0) {
        return Err(Error::Invalid(format!("precision floor {} is not in (0, 1]", opts.precision_floor)));
    }
    let curves = label_curves(pred)?;
    let summary = ApSummary::from_curves(&curves, pred);
    let labels: Vec<LabelReport> = (0..c)
        .map(|j| LabelReport {
            name: names[j].clone(),
            train_count: train_counts[j],
            eval_positives: (0..pred.num_samples()).filter(|&i| pred.is_positive(i, j)).count(),
            shot: opts.shots.group(train_counts[j]),
            rarity: opts.rarity.group(train_counts[j], train_samples),
            ap: summary.per_label[j],
            at_floor: curves[j].as_ref().and_then(|cv| cv.at_precision(opts.precision_floor)),
        })
        .collect();
    let report = EvalReport {
        kind: if matches!(pred.truth, Truth::Single(_)) { TaskKind::Single } else { TaskKind::Multi },
        eval_samples: pred.num_samples(),
        train_samples,
        precision_floor: opts.precision_floor,
        shot_split: opts.shots,
        rarity_split: opts.rarity,
        macro_ap: summary.macro_ap,
        micro_ap: summary.micro_ap,
        groups: group_summaries(&labels),
        single: single_report(pred)?,
        labels,
    };
    Ok(Evaluation { report, curves })
}

fn group_summaries(labels: &[LabelReport]) -> Vec<GroupSummary> {
    let summary = |group: &str, keep: &dyn Fn(&LabelReport) -> bool| {
        let aps: Vec<Option<f64>> = labels.iter().filter(|l| keep(l)).map(|l| l.ap).collect();
        let labels_with_ap = aps.iter().flatten().count();
        GroupSummary { group: group.into(), labels: aps.len(), labels_with_ap, macro_ap: mean_defined(&aps) }
    };
    let shots = [Shot::Many, Shot::Medium, Shot::Few].map(|s| summary(s.name(), &|l| l.shot == s));
    let rarities = Rarity::ALL.map(|r| summary(r.name(), &|l| l.rarity == r));
    shots.into_iter().chain(rarities).collect()
}

fn single_report(pred: &Predictions) -> Result<Option<SingleLabelReport>> {
    let Truth::Single(truth) = pred.truth else { return Ok(None) };
    let confusion = ConfusionMatrix::from_scores(pred.scores, truth, pred.num_labels)?;
    Ok(Some(SingleLabelReport {
        top1_accuracy: confusion.accuracy(),
        per_class_accuracy: confusion.per_class_accuracy(),
        confusion,
    }))
}

impl EvalReport {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(format!("could not serialise the report: {e}")))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("not an evaluation report: {e}")))
    }

    pub fn save_json(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, self.to_json()?.as_bytes())
    }

    pub fn save_markdown(&self, path: &Path) -> Result<()> {
        super::write_atomic(path, self.to_markdown().as_bytes())
    }

    pub fn group(&self, name: &str) -> Option<&GroupSummary> {
        self.groups.iter().find(|g| g.group == name)
    }

    /// A summary, the group means, and one row per label.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# Evaluation\n\n");
        s += &self.summary_markdown();
        s += "\n| Group | Defined by | Labels | With AP | mAP |\n|---|---|---:|---:|---:|\n";
        for g in &self.groups {
            s += &format!(
                "| {} | {} | {} | {} | {} |\n",
                g.group,
                self.group_definition(&g.group),
                g.labels,
                g.labels_with_ap,
                fmt3(g.macro_ap)
            );
        }
        s += "\nmany / medium / few count a label's training samples; majority / minority / rare its share of \
              the training samples, in samples here as well.\n";
        s += &format!(
            "\n| Label | Train | Eval positives | Group | Rarity | AP | Threshold | Recall@{} | Precision |\n",
            self.precision_floor
        );
        s += "|---|---:|---:|---|---|---:|---:|---:|---:|\n";
        for l in &self.labels {
            s += &label_row(l);
        }
        s
    }

    /// What puts a label in group `group` (many, …, rare), with the share-based bounds also in
    /// samples of this training set: "share < 1% (< 45 samples)".
    pub fn group_definition(&self, group: &str) -> String {
        let (s, r, n) = (self.shot_split, self.rarity_split, self.train_samples as f64);
        let pct = |f: f64| format!("{}%", (f * 1000.0).round() / 10.0);
        let samples = |f: f64| (f * n).ceil() as usize;
        match group {
            "many" => format!("> {} samples", s.many_above),
            "medium" => format!("{}–{} samples", s.few_below, s.many_above),
            "few" => format!("< {} samples", s.few_below),
            "majority" => format!("share ≥ {} (≥ {} samples)", pct(r.majority_at_least), samples(r.majority_at_least)),
            "minority" => format!(
                "share {}–{} ({}–{} samples)",
                pct(r.rare_below),
                pct(r.majority_at_least),
                samples(r.rare_below),
                samples(r.majority_at_least).saturating_sub(1)
            ),
            "rare" => format!("share < {} (< {} samples)", pct(r.rare_below), samples(r.rare_below)),
            _ => String::new(),
        }
    }

    fn summary_markdown(&self) -> String {
        let defined = self.labels.iter().filter(|l| l.ap.is_some()).count();
        let kind = match self.kind {
            TaskKind::Single => "single-label",
            TaskKind::Multi => "multi-label",
        };
        let mut s =
            format!("- {} evaluation samples ({kind}), {} training samples\n", self.eval_samples, self.train_samples);
        s += &format!("- macro mAP {} over {defined} of {} labels", fmt3(self.macro_ap), self.labels.len());
        if defined < self.labels.len() {
            s += " (labels without positives in the evaluation split have no AP and are left out)";
        }
        s += &format!("\n- micro mAP {}\n", fmt3(self.micro_ap));
        if let Some(single) = &self.single {
            s += &format!("- top-1 accuracy {}\n", fmt3(single.top1_accuracy));
        }
        s
    }
}

fn label_row(l: &LabelReport) -> String {
    let op = l.at_floor;
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        l.name.replace('|', "\\|"),
        l.train_count,
        l.eval_positives,
        l.shot.name(),
        l.rarity.name(),
        fmt3(l.ap),
        op.map_or("-".into(), |o| format!("{:.4}", o.threshold)),
        fmt3(op.map(|o| o.recall)),
        fmt3(op.map(|o| o.precision)),
    )
}

pub(crate) fn fmt3(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}
