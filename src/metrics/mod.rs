//! Evaluation of a trained classifier on a held-out split: average precision per label (exactly
//! as scikit-learn computes it), precision-recall curves, operating thresholds at a precision
//! floor, single-label accuracy and confusion, many/medium/few and majority/minority/rare label
//! groups, reports as JSON and markdown, and figures (PR curves, training curves) as SVG and PNG;
//! and the retrieval metrics of an embedding model (recall@k, R-precision, MAP@R: [`retrieval`]).
//!
//! Labels without a positive sample in the evaluation split have no AP (`None`, `null` in JSON,
//! `-` in tables) and are left out of every mean. scikit-learn instead scores them 0 with a
//! warning and averages the 0 in, which would make the mean depend on how the split fell.

pub mod ap;
pub mod confusion;
pub mod curves;
mod figure;
pub mod groups;
pub mod input;
pub mod plot;
pub mod report;
pub mod retrieval;
pub mod table1;
pub mod threshold;

pub use crate::nn::checkpoint::write_atomic;
pub use ap::{average_precision, mean_defined, pr_curve, ApSummary, PrCurve};
pub use confusion::{argmax_rows, ConfusionMatrix};
pub use curves::{training_curves_from_jsonl, write_training_curves, Curves, Metric};
pub use groups::{Rarity, RaritySplit, Shot, ShotSplit};
pub use input::{multi_hot, Predictions, Truth};
pub use plot::{pr_figures, write_pr_figures, PrFigure, Series};
pub use report::{evaluate, EvalOptions, EvalReport, Evaluation, LabelReport, SingleLabelReport, TaskKind};
pub use retrieval::{
    retrieval_cpu, retrieval_gpu, retrieval_metrics, Retrieval, RetrievalGroups, RetrievalReport, RetrievalScores,
};
pub use table1::{GroupComparison, SchemeComparison, PAPER_SCHEMES};
pub use threshold::OperatingPoint;
