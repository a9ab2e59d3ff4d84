//! `tailor train`: the flags of a run, turned into the library's [`RunSettings`] and trained by
//! [`crate::run::train`], its events printed as they come.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::common::{choice, ArchArgs, DataArgs, ImageArgs, Printer, SplitArgs};
use crate::error::{Error, Result};
use crate::gpu::DeviceSelection;
use crate::nn::optim::OptimizerKind;
use crate::run::{
    self, EmbeddingSettings, LossName, Metric, RunSettings, ScheduleKind, Start, Task, WeightingKind, DEFAULT_EPOCHS,
};
use crate::setting::Setting;

#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub arch: ArchArgs,
    /// classify (a classifier of the labels) or embedding (an embedding model whose nearest
    /// neighbours share a label, for search by photo).
    #[arg(long, default_value = "classify", value_parser = choice::<Task>)]
    pub task: Task,
    /// Classifiers: softmax or sigmoid (default: softmax for single-label data, sigmoid for
    /// multi-label). Embedding models: triplet-batch-hard (default) or triplet-batch-all.
    #[arg(long, value_parser = choice::<LossName>)]
    pub loss: Option<LossName>,
    #[command(flatten)]
    #[serde(flatten)]
    pub embedding: EmbeddingArgs,
    /// Class weighting: nw (none), ifw (inverse frequency) or iew (inverse effective number).
    #[arg(long, default_value = "iew", value_parser = choice::<WeightingKind>)]
    pub weighting: WeightingKind,
    /// β of the effective number (1 − βⁿ)/(1 − β). compare takes a list, e.g.
    /// 0.9,0.99,0.999,0.9999, and trains one IEW run per β (and γ).
    #[arg(long, default_value = "0.99", value_delimiter = ',')]
    pub beta: Vec<f64>,
    /// Focal loss γ (0: plain cross-entropy). compare takes a list, e.g. 0,1,2.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    pub focal_gamma: Vec<f32>,
    /// adam or adamw.
    #[arg(long, default_value = "adam", value_parser = choice::<OptimizerKind>)]
    pub optimizer: OptimizerKind,
    /// The learning rate (Adam's step size).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight decay: L2 added to the gradient with adam, decoupled with adamw.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// No weight decay on batch-norm parameters and biases.
    #[arg(long)]
    pub no_decay_bn_bias: bool,
    /// constant, step (×--lr-gamma every --lr-step epochs) or cosine (to 0 over the run).
    #[arg(long, default_value = "constant", value_parser = choice::<ScheduleKind>)]
    pub schedule: ScheduleKind,
    /// With --schedule step: the epochs between learning-rate steps.
    #[arg(long, default_value_t = 30)]
    pub lr_step: u64,
    /// With --schedule step: the factor of each step.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Images per training step (and per validation batch).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Cut each step's batch into this many micro-batches (gradient accumulation: the memory of
    /// one micro-batch, the gradients of the whole batch; batch norm sees each micro-batch).
    #[arg(long, default_value_t = 1)]
    pub accumulate: usize,
    /// Train on several devices, one replica of the model each, every batch shared between them:
    /// all, a number (the best first, as `tailor devices` lists them), or adapter names
    /// separated by commas (a name given twice opens that adapter twice: for testing, not faster).
    /// May differ when resuming.
    #[arg(long)]
    pub devices: Option<String>,
    /// With --devices: images of each batch per device, e.g. 48,16 [default: equal shares on
    /// devices of one model, else shares by each device's measured speed].
    #[arg(long, value_delimiter = ',')]
    pub device_shares: Option<Vec<usize>>,
    /// Train across processes and machines: `mpi` under mpirun/srun (`mpirun -np 2 tailor train …
    /// --distributed mpi`): each rank trains its part of every batch on its own --devices, rank 0
    /// writes the run. Needs a tailor built with `--features mpi`. May differ when resuming.
    #[arg(long, value_enum)]
    pub distributed: Option<Distributed>,
    /// Epochs in all [default: 10] (with --resume: train on to this many; default: the run's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seeds the split, the initialisation, the shuffle and the augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub split: SplitArgs,
    /// What picks the best epoch, whose weights eval and predict use: macro-map (default), top1,
    /// or train-loss (the default without a validation split).
    #[arg(long, value_parser = choice::<Metric>)]
    pub best_by: Option<Metric>,
    /// Stop early when the best epoch is this many epochs behind.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Random crop (padding 4, or 2 below 32 pixels) and horizontal flip.
    #[arg(long)]
    pub augment: bool,
    /// Start from these weights (a torchvision or tailor safetensors state dict, or a run folder
    /// for its model.safetensors).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Continue the run in this folder at its next epoch (with --data / --image-dir if its data
    /// has moved since).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// The run folder (default: runs/<data name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a run already in --out (its checkpoint, metrics and reports) instead of refusing.
    #[arg(long)]
    pub overwrite: bool,
}

impl TrainArgs {
    /// The library's settings these flags give.
    pub fn settings(&self) -> RunSettings {
        RunSettings {
            data: self.data.spec(Some(&self.image)),
            arch: self.arch.spec(),
            task: self.task,
            loss: self.loss,
            weighting: self.weighting,
            beta: self.beta.first().copied().unwrap_or(0.99),
            focal_gamma: self.focal_gamma.first().copied().unwrap_or(0.0),
            optimizer: self.optimizer,
            lr: self.lr,
            weight_decay: self.weight_decay,
            no_decay_bn_bias: self.no_decay_bn_bias,
            schedule: self.schedule,
            lr_step: self.lr_step,
            lr_gamma: self.lr_gamma,
            warmup: self.warmup,
            batch_size: self.batch_size,
            accumulate: self.accumulate,
            epochs: self.epochs.unwrap_or(DEFAULT_EPOCHS),
            seed: self.seed,
            split: self.split.settings(),
            augment: self.augment,
            init: self.init.clone(),
            best_by: self.best_by,
            patience: self.patience,
            embedding: self.embedding.settings(),
            teachers: Vec::new(),
        }
    }

    /// How the run starts: resumed from --resume, or new in --out.
    pub fn start(&self) -> Result<Start> {
        if self.beta.len() > 1 || self.focal_gamma.len() > 1 {
            return Err(Error::Invalid(
                "train takes one --beta and one --focal-gamma; tailor compare trains a grid of several and says \
                 which wins"
                    .into(),
            ));
        }
        // Flags of the step schedule are refused with another, rather than silently ignored
        // (after the checks of their values, which say more).
        let step_flags = self.lr_step != 30 || self.lr_gamma != 0.1;
        if step_flags && self.schedule != ScheduleKind::Step && self.resume.is_none() {
            self.settings().check()?;
            return Err(Error::Invalid(format!(
                "--lr-step and --lr-gamma set the step schedule, but --schedule is {}; add --schedule step, or drop them",
                self.schedule
            )));
        }
        Ok(match &self.resume {
            Some(dir) => {
                check_resume_flags(self, dir)?;
                Start::Resume {
                    dir: dir.clone(),
                    epochs: self.epochs,
                    data: self.data.data.clone(),
                    image_dir: self.data.image_dir.clone(),
                }
            }
            None => Start::New {
                settings: Box::new(self.settings()),
                dir: self.out.clone().unwrap_or_else(|| default_out(self)),
                overwrite: self.overwrite,
            },
        })
    }
}

/// The flags of an embedding model.
#[derive(clap::Args, Clone, Debug, Serialize)]
pub struct EmbeddingArgs {
    /// Embedding models: the embedding's dimension.
    #[arg(long, default_value_t = 128)]
    pub embedding_dim: usize,
    /// Embedding models: keep the raw vectors (default: L2-normalised).
    #[arg(long)]
    pub no_normalize: bool,
    /// Triplet losses: the margin.
    #[arg(long, default_value_t = 0.2)]
    pub margin: f32,
    /// Triplet losses: labels per batch (the batch is P×K images; --batch-size is not used).
    #[arg(long, default_value_t = 16)]
    pub p: usize,
    /// Triplet losses: images per label in a batch.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
}

impl EmbeddingArgs {
    pub fn settings(&self) -> EmbeddingSettings {
        EmbeddingSettings {
            dim: self.embedding_dim,
            normalize: !self.no_normalize,
            margin: self.margin,
            p: self.p,
            k: self.k,
        }
    }
}

pub fn run(cli: &super::Cli, a: &TrainArgs) -> Result<()> {
    let start = a.start()?;
    let selection: Option<DeviceSelection> = a.devices.as_deref().map(str::parse).transpose()?;
    if a.device_shares.is_some() && selection.is_none() {
        return Err(Error::Invalid(format!(
            "{} shares a batch between {}; give them too",
            Setting::DeviceShares,
            Setting::Devices
        )));
    }
    // MPI first: only rank 0 shows the devices' pipeline compilation.
    let collective = match a.distributed {
        None => None,
        Some(Distributed::Mpi) => Some(mpi_world()?),
    };
    let rank = collective.as_ref().map_or(0, |c| c.rank());
    let gpus = match &selection {
        Some(sel) => crate::gpu::open_devices(&cli.gpu_options(), sel)?,
        None => vec![crate::Gpu::with_options(&cli.gpu_options())?],
    };
    if rank == 0 {
        gpus.iter().for_each(|g| super::common::show_precompile(g));
    }
    let devices = run::Devices { gpus, shares: a.device_shares.clone(), collective: collective.clone() };
    let mut printer = Printer::default();
    // Rank 0 reports; the other ranks say nothing unless they fail.
    let res = run::train_on_devices(&devices, &start, None, &mut |e| {
        if rank == 0 {
            printer.event(e)
        }
    });
    match (res, collective) {
        (Ok(_), _) => Ok(()),
        (Err(e), None) => Err(e),
        (Err(e), Some(c)) => {
            // A failed rank stops the others, which would otherwise wait in the next exchange.
            eprintln!("error on rank {rank} of {}: {e}", c.size());
            c.abort(1)
        }
    }
}

/// How processes train together (`--distributed`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distributed {
    /// MPI ranks (mpirun, srun).
    Mpi,
}

#[cfg(feature = "mpi")]
fn mpi_world() -> Result<std::sync::Arc<dyn crate::nn::train::Collective>> {
    Ok(std::sync::Arc::new(crate::mpi::Mpi::init()?))
}

#[cfg(not(feature = "mpi"))]
fn mpi_world() -> Result<std::sync::Arc<dyn crate::nn::train::Collective>> {
    Err(Error::Invalid(
        "--distributed mpi: this tailor was built without MPI; build it with `cargo build --release --features mpi` \
         (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev) and start it with mpirun"
            .into(),
    ))
}

/// `--resume` continues a run with the settings it was started with (only `--epochs` may
/// change), so any other flag given with it would be silently ignored: refuse it instead.
fn check_resume_flags(a: &TrainArgs, dir: &Path) -> Result<()> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        args: TrainArgs,
    }
    let defaults = <Defaults as clap::Parser>::try_parse_from(["tailor"])
        .map_err(|e| Error::Invalid(format!("internal: default training flags: {e}")))?
        .args;
    let json = |t: &TrainArgs| serde_json::to_value(t).map_err(|e| Error::Invalid(e.to_string()));
    let mut given = Vec::new();
    changed_fields(&json(a)?, &json(&defaults)?, &mut given);
    // Devices are where the run trains, not what it trains: they may change on resume.
    let free = ["epochs", "data", "image_dir", "resume", "overwrite", "devices", "device_shares", "distributed"];
    given.retain(|f| !free.contains(&f.as_str()));
    if a.out.as_ref().is_some_and(|o| o != dir) && !given.iter().any(|f| f == "out") {
        given.push("out".into());
    }
    if a.overwrite {
        given.push("overwrite".into());
    }
    if given.is_empty() {
        return Ok(());
    }
    let flags: Vec<String> = given.iter().map(|f| format!("--{}", f.replace('_', "-"))).collect();
    Err(Error::Invalid(format!(
        "--resume continues {} with the settings it started with (only --epochs may change, and --data and \
         --image-dir give its data's new place if it moved), so {} would be ignored; drop them, or start a new \
         run with --out",
        dir.display(),
        flags.join(", ")
    )))
}

/// The leaf fields (by name) whose values differ between two JSON objects.
fn changed_fields(a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return };
    for (k, va) in a {
        let vb = b.get(k).unwrap_or(&serde_json::Value::Null);
        match (va.is_object(), va == vb) {
            (_, true) => {}
            (true, false) => changed_fields(va, vb, out),
            (false, false) => out.push(k.clone()),
        }
    }
}

fn default_out(a: &TrainArgs) -> PathBuf {
    let stem = a
        .data
        .data
        .as_ref()
        .and_then(|p| if p.is_dir() { p.file_name() } else { p.parent().and_then(Path::file_name) })
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    PathBuf::from("runs").join(stem)
}
