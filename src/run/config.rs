//! A run's configuration: the settings it is trained with ([`RunSettings`], what the CLI's flags
//! fill in) and what training resolved from them and the data ([`RunConfig`], the run folder's
//! `config.json`). The one definition of `config.json`'s schema.
//!
//! Schema versions: 1 is what tailor wrote before the file carried a version (the settings under
//! `args`); 2 adds `schema` and `task` and keeps the settings under `settings`. Version 1 files
//! are read by moving `args` to `settings`; a version this tailor does not know is refused.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::data::source::{DataSpec, Source};
use crate::data::{LabelKind, Preprocess, SplitSpec};
use crate::error::{Error, NotARun, Result};
use crate::graph::LossKind;
use crate::nn::arch::ArchSpec;
use crate::nn::densenet::DenseNetConfig;
use crate::nn::optim::{OptimizerConfig, OptimizerKind, Schedule};
use crate::nn::weights::Weighting;
use crate::setting::Setting;

/// The schema version this tailor writes.
pub const SCHEMA: u32 = 2;

/// Epochs of a run whose settings do not say.
pub const DEFAULT_EPOCHS: usize = 10;

/// A setting with a fixed set of values, written as lowercase words in config.json and on the
/// command line.
pub trait Choice: Sized + Copy + 'static {
    /// Every value with its word.
    const WORDS: &'static [(Self, &'static str)];
    /// The setting it is, for messages.
    const SETTING: Setting;
    /// Other words read as a value (older spellings).
    const ALIASES: &'static [(&'static str, Self)] = &[];

    fn word(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::WORDS.iter().find(|(v, _)| *v == self).map_or("", |(_, w)| w)
    }

    /// "nw, ifw or iew".
    fn choices() -> String {
        let words: Vec<&str> = Self::WORDS.iter().map(|(_, w)| *w).collect();
        match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => words.join(""),
        }
    }

    /// Reads a word, in any case.
    fn parse_word(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::WORDS
            .iter()
            .map(|&(v, w)| (w, v))
            .chain(Self::ALIASES.iter().copied())
            .find(|(w, _)| *w == lower)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::setting(Self::SETTING, format!("'{s}'"), format!("use {}", Self::choices())))
    }
}

macro_rules! choice {
    ($(#[$meta:meta])* $name:ident, $setting:expr, [$($(#[$vmeta:meta])* $v:ident => $w:literal),* $(,)?] $(, aliases [$($a:literal => $av:ident),*])?) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $v),* }
        impl Choice for $name {
            const WORDS: &'static [(Self, &'static str)] = &[$(($name::$v, $w)),*];
            const SETTING: Setting = $setting;
            $(const ALIASES: &'static [(&'static str, Self)] = &[$(($a, $name::$av)),*];)?
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse_word(s)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(self.word())
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.word())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse_word(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

choice!(
    /// What a run trains.
    Task, Setting::Task, [
        /// A classifier: per-label scores, evaluated by AP.
        Classify => "classify",
        /// An embedding model: a vector per image whose nearest neighbours share its label,
        /// evaluated by retrieval (Recall@k, MAP@R).
        Embedding => "embedding",
    ]
);

choice!(
    /// The loss a run trains with.
    LossName, Setting::Loss, [
        /// Softmax cross-entropy: one label per image (classifier).
        Softmax => "softmax",
        /// Sigmoid binary cross-entropy per label: any number of labels per image (classifier).
        Sigmoid => "sigmoid",
        /// Triplet loss of the hardest positive and negative of each anchor in the batch
        /// (embedding; Hermans et al. 2017).
        TripletBatchHard => "triplet-batch-hard",
        /// Triplet loss over every (anchor, positive, negative) of the batch (embedding).
        TripletBatchAll => "triplet-batch-all",
        /// Squared L2 distance to specialist teachers' embeddings (embedding; Song et al. 2017).
        DistillL2 => "distill-l2",
    ]
);

impl LossName {
    /// Whether it trains a classifier (else an embedding).
    pub fn classifies(self) -> bool {
        matches!(self, LossName::Softmax | LossName::Sigmoid)
    }
}

choice!(
    /// How classes are weighted in the loss.
    WeightingKind, Setting::Weighting, [
        /// No weights.
        Nw => "nw",
        /// Inverse frequency.
        Ifw => "ifw",
        /// Inverse effective number, (1 − β)/(1 − βⁿ).
        Iew => "iew",
    ],
    aliases ["none" => Nw]
);

choice!(
    /// The learning-rate schedule.
    ScheduleKind, Setting::Schedule, [
        Constant => "constant",
        /// ×`lr_gamma` every `lr_step` epochs.
        Step => "step",
        /// Cosine to 0 over the run.
        Cosine => "cosine",
    ]
);

impl Choice for OptimizerKind {
    const WORDS: &'static [(Self, &'static str)] = &[(OptimizerKind::Adam, "adam"), (OptimizerKind::AdamW, "adamw")];
    const SETTING: Setting = Setting::Optimizer;
}

impl FromStr for OptimizerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse_word(s)
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

choice!(
    /// The validation figure that picks a run's best epoch.
    Metric, Setting::BestBy, [
        /// Validation macro mAP (higher is better).
        MacroMap => "macro-map",
        /// Validation top-1 accuracy, single-label runs (higher is better).
        Top1 => "top1",
        /// The epoch's mean training loss (lower is better): for runs without validation.
        TrainLoss => "train-loss",
        /// Validation Recall@1, embedding runs (higher is better).
        RecallAt1 => "recall-at-1",
        /// Validation MAP@R, embedding runs (higher is better).
        MapAtR => "map-at-r",
    ]
);

impl Metric {
    /// Its value in an epoch's record, if the epoch has one.
    pub fn of(self, r: &super::EpochRecord) -> Option<f64> {
        match self {
            Metric::MacroMap => r.val_macro_map.flatten(),
            Metric::Top1 => r.val_top1.flatten(),
            Metric::TrainLoss => Some(r.train_loss).filter(|l| l.is_finite()),
            Metric::RecallAt1 => r.val_recall_at_1.flatten(),
            Metric::MapAtR => r.val_map_at_r.flatten(),
        }
    }

    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Metric::TrainLoss => a < b,
            _ => a > b,
        }
    }

    /// How messages name it: "val macro mAP".
    pub fn describe(self) -> &'static str {
        match self {
            Metric::MacroMap => "val macro mAP",
            Metric::Top1 => "val top-1",
            Metric::TrainLoss => "training loss",
            Metric::RecallAt1 => "val Recall@1",
            Metric::MapAtR => "val MAP@R",
        }
    }
}

/// The best epoch so far by a metric, whose weights are in `model_best.safetensors`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// 1-based.
    pub epoch: usize,
    pub by: Metric,
    pub value: f64,
}

/// How an embedding model is built and trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingSettings {
    /// Dimension of the embedding (the Linear head's outputs).
    pub dim: usize,
    /// L2-normalise the embedding (else raw vectors).
    pub normalize: bool,
    /// The triplet losses' margin.
    pub margin: f32,
    /// Labels per triplet batch.
    pub p: usize,
    /// Images per label in a triplet batch.
    pub k: usize,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        EmbeddingSettings { dim: 128, normalize: true, margin: 0.2, p: 16, k: 4 }
    }
}

impl WeightingKind {
    /// The weighting with β, which is refused outside [0, 1) whatever the scheme (every run
    /// records it).
    pub fn with_beta(self, beta: f64) -> Result<Weighting> {
        if !(0.0..1.0).contains(&beta) {
            let hint = crate::nn::weights::beta_hint(beta);
            return Err(Error::setting(Setting::Beta, beta, format!("β must be in [0, 1), e.g. 0.99 or 0.999{hint}")));
        }
        Ok(match self {
            WeightingKind::Nw => Weighting::Nw,
            WeightingKind::Ifw => Weighting::Ifw,
            WeightingKind::Iew => Weighting::Iew { beta },
        })
    }
}

/// How the samples are split into training and validation and thinned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSettings {
    /// The fraction of the samples held out for validation (and not counted for class weights).
    pub val_fraction: f64,
    /// A CSV column whose equal values stay on one side of the split.
    pub split_by: Option<String>,
    /// Subsample the training split to a long tail with n_max / n_min = ρ (single-label).
    pub imbalance: Option<f64>,
    /// Drop labels with fewer training samples than this.
    #[serde(default)]
    pub min_samples: usize,
}

impl Default for SplitSettings {
    fn default() -> Self {
        SplitSettings { val_fraction: 0.1, split_by: None, imbalance: None, min_samples: 0 }
    }
}

impl SplitSettings {
    pub fn spec(&self, seed: u64) -> SplitSpec {
        SplitSpec {
            val_fraction: self.val_fraction,
            seed,
            split_by: self.split_by.clone(),
            imbalance: self.imbalance,
            min_samples: self.min_samples,
        }
    }
}

/// Everything a run is trained with. [`Default`] gives the command line's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// A classifier or an embedding model.
    #[serde(default = "classify")]
    pub task: Task,
    pub data: DataSpec,
    pub arch: ArchSpec,
    /// `None`: for a classifier, softmax for single-label data and sigmoid for multi-label; for
    /// an embedding model, triplet-batch-hard, or distill-l2 when it has teachers.
    pub loss: Option<LossName>,
    pub weighting: WeightingKind,
    /// β of the effective number (1 − βⁿ)/(1 − β).
    pub beta: f64,
    /// Focal loss γ (0: plain cross-entropy).
    pub focal_gamma: f32,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    /// No weight decay on batch-norm parameters and biases.
    #[serde(default)]
    pub no_decay_bn_bias: bool,
    pub schedule: ScheduleKind,
    pub lr_step: u64,
    pub lr_gamma: f64,
    /// Linear learning-rate warm-up over this many steps.
    #[serde(default)]
    pub warmup: u64,
    pub batch_size: usize,
    /// Micro-batches per optimiser step (gradient accumulation): `batch_size` images are cut
    /// into this many, each its own forward and backward, one optimiser step.
    #[serde(default = "one")]
    pub accumulate: usize,
    /// Epochs in all.
    #[serde(deserialize_with = "epochs_or_default")]
    pub epochs: usize,
    /// Seeds the split, the initialisation, the shuffle and the augmentation.
    pub seed: u64,
    #[serde(flatten)]
    pub split: SplitSettings,
    /// Random crop (padding 4, or 2 below 32 pixels) and horizontal flip.
    #[serde(default)]
    pub augment: bool,
    /// Start from these weights (a torchvision or tailor safetensors state dict, or a run
    /// folder for its model.safetensors).
    pub init: Option<PathBuf>,
    /// What picks the best epoch, whose weights evaluation and prediction use (`None`: val
    /// macro mAP, or the training loss without a validation split).
    #[serde(default)]
    pub best_by: Option<Metric>,
    /// Stop when the best epoch is this many epochs behind (`None`: never).
    #[serde(default)]
    pub patience: Option<usize>,
    /// The embedding model's head and triplet batches (embedding runs).
    #[serde(default)]
    pub embedding: EmbeddingSettings,
    /// Specialist embedding runs whose embeddings a unified model learns (distill-l2), one per
    /// vertical.
    #[serde(default)]
    pub teachers: Vec<PathBuf>,
}

fn classify() -> Task {
    Task::Classify
}

/// Schema 1 wrote `null` for epochs not given on the command line.
fn epochs_or_default<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or(DEFAULT_EPOCHS))
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            task: Task::Classify,
            data: DataSpec::default(),
            arch: ArchSpec::default(),
            loss: None,
            weighting: WeightingKind::Iew,
            beta: 0.99,
            focal_gamma: 0.0,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            no_decay_bn_bias: false,
            schedule: ScheduleKind::Constant,
            lr_step: 30,
            lr_gamma: 0.1,
            warmup: 0,
            batch_size: 64,
            accumulate: 1,
            epochs: DEFAULT_EPOCHS,
            seed: 0,
            split: SplitSettings::default(),
            augment: false,
            init: None,
            best_by: None,
            patience: None,
            embedding: EmbeddingSettings::default(),
            teachers: Vec::new(),
        }
    }
}

impl RunSettings {
    pub fn weighting(&self) -> Result<Weighting> {
        self.weighting.with_beta(self.beta)
    }

    /// The loss by name: the setting, else the task's default (`kind`: the data's labels).
    pub fn loss_name(&self, kind: LabelKind) -> LossName {
        self.loss.unwrap_or(match (self.task, kind) {
            (Task::Classify, LabelKind::Single) => LossName::Softmax,
            (Task::Classify, LabelKind::Multi) => LossName::Sigmoid,
            (Task::Embedding, _) if !self.teachers.is_empty() => LossName::DistillL2,
            (Task::Embedding, _) => LossName::TripletBatchHard,
        })
    }

    /// The graph loss for data of `kind`.
    pub fn loss(&self, kind: LabelKind) -> Result<LossKind> {
        let gamma = self.focal_gamma;
        if !(gamma >= 0.0 && gamma.is_finite()) {
            return Err(Error::setting(Setting::FocalGamma, gamma, "must be 0 or more"));
        }
        let margin = self.embedding.margin;
        let loss = self.loss_name(kind);
        match (self.task, loss, kind) {
            (Task::Classify, LossName::Softmax, LabelKind::Single) => Ok(LossKind::Softmax { gamma }),
            (Task::Classify, LossName::Softmax, LabelKind::Multi) => Err(Error::Invalid(format!(
                "{} softmax needs one label per image, but these labels are multi-label; use {} sigmoid",
                Setting::Loss,
                Setting::Loss
            ))),
            (Task::Classify, LossName::Sigmoid, _) => Ok(LossKind::Sigmoid { gamma }),
            (Task::Embedding, _, LabelKind::Multi) => Err(Error::Invalid(format!(
                "an embedding model needs one label per image (images of a label are each other's positives), \
                 but these labels are multi-label; give {}",
                Setting::LabelColumn
            ))),
            (Task::Embedding, LossName::TripletBatchHard, _) => Ok(LossKind::TripletBatchHard { margin }),
            (Task::Embedding, LossName::TripletBatchAll, _) => Ok(LossKind::TripletBatchAll { margin }),
            (Task::Embedding, LossName::DistillL2, _) => Ok(LossKind::DistillL2),
            (task, loss, _) => Err(Error::setting(
                Setting::Loss,
                loss,
                match task {
                    Task::Classify => {
                        "a classifier trains with softmax or sigmoid (the other losses are for \
                                       embedding models)"
                    }
                    Task::Embedding => {
                        "an embedding model trains with triplet-batch-hard, triplet-batch-all or \
                                        distill-l2"
                    }
                },
            )),
        }
    }

    /// The optimiser with its schedule planned over `epochs` of `steps_per_epoch` steps.
    pub fn optimizer(&self, steps_per_epoch: usize) -> Result<OptimizerConfig> {
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(Error::setting(Setting::Lr, self.lr, "give a learning rate of 0 or more, e.g. 1e-3"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::setting(Setting::WeightDecay, self.weight_decay, "give 0 (none) or more, e.g. 1e-4"));
        }
        // A negative factor would flip the learning rate's sign at every step of the schedule.
        if !(self.lr_gamma > 0.0 && self.lr_gamma.is_finite()) {
            return Err(Error::setting(Setting::LrGamma, self.lr_gamma, "give a positive factor, e.g. 0.1"));
        }
        let spe = steps_per_epoch as u64;
        let schedule = match self.schedule {
            ScheduleKind::Constant => Schedule::Constant,
            ScheduleKind::Step if self.lr_step == 0 => {
                return Err(Error::setting(Setting::LrStep, 0, "give the epochs between learning-rate steps, e.g. 30"))
            }
            ScheduleKind::Step => Schedule::Step { every: self.lr_step * spe, gamma: self.lr_gamma },
            ScheduleKind::Cosine => Schedule::Cosine { total: self.epochs as u64 * spe, min_lr: 0.0 },
        };
        let cfg = OptimizerConfig {
            kind: self.optimizer,
            lr: self.lr,
            weight_decay: self.weight_decay,
            no_decay_bn_bias: self.no_decay_bn_bias,
            schedule,
            warmup: self.warmup,
            ..OptimizerConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn split_spec(&self) -> SplitSpec {
        self.split.spec(self.seed)
    }

    /// The checks that need no data: refused before any image is loaded.
    pub fn check(&self) -> Result<()> {
        self.arch.config(1, 1)?;
        self.weighting()?;
        self.optimizer(1)?;
        if self.batch_size == 0 {
            return Err(Error::setting(Setting::BatchSize, 0, "give a positive batch size"));
        }
        if self.accumulate == 0 {
            return Err(Error::setting(
                Setting::Accumulate,
                0,
                "give 1 (no accumulation) or more micro-batches per step",
            ));
        }
        // Triplet batches are P labels × K images; other batches are --batch-size images.
        let batch = match self.loss_name(LabelKind::Single) {
            LossName::TripletBatchHard | LossName::TripletBatchAll => {
                (self.embedding.p * self.embedding.k, format!("{} × {}", Setting::P, Setting::K))
            }
            _ => (self.batch_size, Setting::BatchSize.to_string()),
        };
        if batch.0 % self.accumulate != 0 {
            return Err(Error::setting(
                Setting::Accumulate,
                self.accumulate,
                format!("{} ({}) must be a multiple of it: each micro-batch has as many images", batch.1, batch.0),
            ));
        }
        if self.patience == Some(0) {
            return Err(Error::setting(
                Setting::Patience,
                0,
                "give the epochs without a better one to stop after, e.g. 5",
            ));
        }
        if self.task == Task::Embedding {
            let e = &self.embedding;
            if e.dim == 0 {
                return Err(Error::setting(Setting::EmbeddingDim, 0, "give the embedding's dimension, e.g. 128"));
            }
            if !(e.margin >= 0.0 && e.margin.is_finite()) {
                return Err(Error::setting(Setting::Margin, e.margin, "give a margin of 0 or more, e.g. 0.2"));
            }
            let triplets = matches!(self.loss, None | Some(LossName::TripletBatchHard | LossName::TripletBatchAll))
                && self.teachers.is_empty();
            if triplets && e.p < 2 {
                return Err(Error::setting(Setting::P, e.p, "a triplet batch needs at least 2 labels (negatives)"));
            }
            if triplets && e.k < 2 {
                return Err(Error::setting(Setting::K, e.k, "a triplet batch needs at least 2 images per label"));
            }
            self.loss(LabelKind::Single)?;
        } else {
            self.loss(LabelKind::Single).or_else(|e| self.loss(LabelKind::Multi).map_err(|_| e))?;
        }
        if !self.teachers.is_empty() && self.loss_name(LabelKind::Single) != LossName::DistillL2 {
            return Err(Error::setting(
                Setting::Loss,
                self.loss_name(LabelKind::Single),
                "a model trained from teachers learns their embeddings with distill-l2",
            ));
        }
        Ok(())
    }
}

/// What a folder without config.json holds instead of a run.
fn not_a_run(dir: &Path) -> NotARun {
    if dir.join("model.safetensors").is_file() {
        return NotARun::WeightsOnly;
    }
    let image = |e: std::fs::DirEntry| {
        let name = e.file_name().to_string_lossy().to_ascii_lowercase();
        [".png", ".jpg", ".jpeg"].iter().any(|x| name.ends_with(x))
    };
    let images = std::fs::read_dir(dir).is_ok_and(|entries| entries.flatten().any(image));
    if images {
        NotARun::Images
    } else {
        NotARun::Nothing
    }
}

/// A run folder's `config.json`: the settings, and what training resolved from them and the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The schema version it was read as ([`SCHEMA`] when written).
    pub schema: u32,
    pub task: Task,
    pub model: DenseNetConfig,
    /// The network's name ([`ArchSpec::name`]).
    pub arch: String,
    pub preprocess: Preprocess,
    pub label_names: Vec<String>,
    pub label_kind: LabelKind,
    pub loss: LossName,
    pub focal_gamma: f32,
    pub weighting: WeightingKind,
    pub beta: f64,
    /// Per label, scaled to sum to the number of labels.
    pub class_weights: Vec<f64>,
    pub train_counts: Vec<usize>,
    pub val_counts: Vec<usize>,
    pub train_samples: usize,
    pub val_samples: usize,
    pub source: Source,
    pub split_seed: u64,
    pub epochs_done: usize,
    /// What the split holds (image names and labels: see [`super::data_fingerprint`]), so that
    /// a resumed run can tell it is given the same data. Absent in runs of older versions.
    #[serde(default)]
    pub data_fingerprint: Option<String>,
    /// The best epoch so far, if the run keeps one (`model_best.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEpoch>,
    /// An embedding model's head, loss and verticals (embedding runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
    pub settings: RunSettings,
}

/// What an embedding run records beyond a classifier's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingConfig {
    pub dim: usize,
    pub normalize: bool,
    /// The triplet losses' margin.
    pub margin: f32,
    /// The CSV column naming each image's vertical (shoes, bags, …), if any.
    pub vertical_column: Option<String>,
    /// The verticals whose rows it trained on (empty: all); one for a specialist.
    pub verticals: Vec<String>,
    /// The teachers a unified model was distilled from.
    #[serde(default)]
    pub teachers: Vec<TeacherRecord>,
}

impl EmbeddingConfig {
    /// The vertical a specialist was trained on: the only one it trained on.
    pub fn specialist_of(&self) -> Option<&str> {
        match self.verticals.as_slice() {
            [v] => Some(v),
            _ => None,
        }
    }
}

/// A teacher of a distilled run: its folder, the vertical it teaches and the fingerprint of
/// its weights when the student's targets were computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherRecord {
    pub dir: PathBuf,
    pub vertical: String,
    pub model: String,
}

impl RunConfig {
    /// Reads `dir/config.json`, of any schema this tailor knows.
    pub fn load(dir: &Path) -> Result<RunConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() {
                return Error::NoRun { dir: dir.to_path_buf(), holds: not_a_run(dir) };
            }
            Error::file(&path, format!("cannot read ({e}); give a run folder written by tailor train"))
        })?;
        Self::from_text(&text, &path)
    }

    /// Parses the text of a config.json (`path` names it in errors).
    pub fn from_text(text: &str, path: &Path) -> Result<RunConfig> {
        let bad = |e: serde_json::Error| Error::file(path, format!("not a tailor run configuration: {e}"));
        let mut v: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        let Some(obj) = v.as_object_mut() else {
            return Err(Error::file(path, "not a tailor run configuration: not a JSON object"));
        };
        match obj.get("schema").cloned() {
            None => {
                // Schema 1: the settings were the command line's flags, under `args`.
                let args = obj.remove("args").unwrap_or(serde_json::Value::Null);
                obj.insert("settings".into(), args);
                obj.insert("task".into(), Task::Classify.word().into());
                obj.insert("schema".into(), 1.into());
            }
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=SCHEMA as u64).contains(&n)) => {}
            Some(found) => {
                return Err(Error::UnknownSchema { path: path.to_path_buf(), found: found.to_string(), known: SCHEMA })
            }
        }
        serde_json::from_value(v).map_err(bad)
    }

    /// The text written to config.json (always of schema [`SCHEMA`]).
    pub fn to_text(&self) -> Result<String> {
        let mut c = self.clone();
        c.schema = SCHEMA;
        serde_json::to_string_pretty(&c).map_err(|e| Error::Invalid(format!("cannot write the run configuration: {e}")))
    }

    pub fn kind(&self) -> LabelKind {
        self.label_kind
    }

    /// Whether scores are per-label sigmoids (else a softmax over the labels).
    pub fn multi(&self) -> bool {
        self.loss == LossName::Sigmoid
    }
}

fn one() -> usize {
    1
}
