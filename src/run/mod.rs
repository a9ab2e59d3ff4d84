//! Runs: a run folder as a library type. A run is trained from [`RunSettings`] into a folder
//! that keeps its configuration (`config.json`, [`RunConfig`]), a resumable checkpoint saved as
//! one set after every epoch, `metrics.jsonl`, and once evaluated, its reports and thresholds.
//!
//! [`train`] creates or resumes a run, [`evaluate`] evaluates one, [`compare`] trains the three
//! weighting schemes on one split; each reports what it does through a callback of [`Event`]s
//! (the `tailor` command prints them; an app may show them, log them or ignore them).
//! [`crate::nn::tagger::Tagger`] opens a run to tag images.

pub mod compare;
pub mod config;
pub mod data;
pub mod distill;
pub mod eval;
pub mod folder;
pub mod train;

use std::path::Path;

pub use compare::{compare, compare_grid};
pub use config::{
    BestEpoch, Choice, EmbeddingConfig, EmbeddingSettings, LossName, Metric, RunConfig, RunSettings, ScheduleKind,
    SplitSettings, Task, TeacherRecord, WeightingKind, DEFAULT_EPOCHS, SCHEMA,
};
pub use data::{data_fingerprint, prepare, Prepared};
pub use eval::{evaluate, evaluate_retrieval, EvalSettings};
pub use folder::{holds_run, EpochRecord, Weights};
pub use train::{train, train_on_devices, Devices, Outcome, Start};

use crate::graph::exec::MemoryReport;

/// What a run reports as it goes, in order.
pub enum Event<'a> {
    /// Something worth a line that is no problem.
    Note(String),
    /// A problem that did not stop the run.
    Warning(String),
    /// Labels the split dropped for having fewer than `min_samples` training samples.
    Dropped { labels: &'a [String], min_samples: usize },
    /// The data, loaded and split.
    Data(&'a Prepared),
    /// The class weights a classifier trains with (scaled to sum to the number of labels), per
    /// label with its training and validation counts and effective number.
    ClassWeights {
        weighting: WeightingKind,
        labels: &'a [String],
        train: &'a [usize],
        val: &'a [usize],
        effective: &'a [f64],
        weights: &'a [f64],
    },
    /// Weights loaded from the `init` setting; `reinit_classifier`: (checkpoint's, run's) classes
    /// when the classifier was re-initialised for another number of classes.
    Init { tensors: usize, from: &'a Path, reinit_classifier: Option<(usize, usize)> },
    /// The step is about to be built: on a cold lavapipe, compiling its pipelines takes seconds.
    Building { model: &'a str, params: usize, device: &'a str },
    /// A resumed run continues after `epoch` epochs.
    Resuming { dir: &'a Path, epoch: usize },
    /// Device memory planned for training and for validation, in bytes.
    Memory { training: &'a MemoryReport, validation: u64 },
    /// A new run replaces the files of an earlier one in `dir`.
    Replacing { dir: &'a Path },
    /// A run asked to train to `epochs` epochs already has `done` (more, if it was asked to
    /// shorten it): nothing to do.
    NothingToDo { dir: &'a Path, done: usize, epochs: usize },
    /// Epoch `epoch` (0-based) of `epochs` begins: `steps` optimiser steps.
    EpochStart { epoch: usize, epochs: usize, steps: usize },
    /// A step was queued; `loss` and `images_per_s` are of the steps finished so far in this
    /// epoch (`None` before the first finishes).
    Step { loss: Option<f32>, images_per_s: Option<f64> },
    /// An epoch ended, validated and checkpointed.
    EpochEnd { record: &'a EpochRecord, epochs: usize },
    /// The run's folder holds its checkpoint after the last epoch, and the best epoch's weights.
    Saved { dir: &'a Path, last: usize, best: Option<BestEpoch> },
    /// Training stopped after `epoch`: the best epoch is `patience` or more epochs behind.
    EarlyStop { epoch: usize, best: BestEpoch, patience: usize },
    /// Evaluation of `model` on `samples` samples begins, with the weights of its best epoch
    /// `best_epoch` (`None`: its last epoch's).
    Evaluating { model: &'a Path, samples: usize, best_epoch: Option<usize> },
    /// One of [`compare`]'s runs begins.
    Scheme { name: &'a str },
}

/// A callback that ignores every event.
pub fn quiet(_: Event) {}
