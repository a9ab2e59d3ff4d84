//! `tailor train`: load a dataset, split it, train a DenseNet with a class-balanced loss, evaluate
//! on the validation split after every epoch and keep a resumable checkpoint in the run folder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::common::{self, ArchArgs, DataArgs, RunConfig, Source, SplitArgs};
use crate::data::{
    self, Augment, BatchTargets, Dataset, ImageSpec, LabelKind, Normalize, Preprocess, Split, SplitSpec,
};
use crate::error::{Error, Result};
use crate::graph::LossKind;
use crate::metrics::{self, EvalOptions, Predictions, Truth};
use crate::nn::checkpoint::{write_all_atomic, StateDict, EPOCH_KEY};
use crate::nn::model::Model;
use crate::nn::optim::{OptimizerConfig, OptimizerKind, Schedule};
use crate::nn::predict::Predictor;
use crate::nn::train::{Targets, TrainConfig, Trainer};
use crate::nn::weights::{class_weights_report, renormalise_to_classes, Weighting};
use crate::Gpu;

#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub arch: ArchArgs,
    /// softmax or sigmoid (default: softmax for single-label data, sigmoid for multi-label).
    #[arg(long)]
    pub loss: Option<String>,
    /// Class weighting: nw (none), ifw (inverse frequency) or iew (inverse effective number).
    #[arg(long, default_value = "iew")]
    pub weighting: String,
    /// β of the effective number (1 − βⁿ)/(1 − β).
    #[arg(long, default_value_t = 0.99)]
    pub beta: f64,
    /// Focal loss γ (0: plain cross-entropy).
    #[arg(long, default_value_t = 0.0)]
    pub focal_gamma: f32,
    /// adam or adamw.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// No weight decay on batch-norm parameters and biases.
    #[arg(long)]
    pub no_decay_bn_bias: bool,
    /// constant, step (×--lr-gamma every --lr-step epochs) or cosine (to 0 over the run).
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    #[arg(long, default_value_t = 30)]
    pub lr_step: u64,
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Linear learning-rate warm-up over this many steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Epochs in all (with --resume: train on to this many).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seeds the split, the initialisation, the shuffle and the augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub split: SplitArgs,
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
    #[serde(skip)]
    pub resume: Option<PathBuf>,
    /// The run folder (default: runs/<data name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace a run already in --out (its checkpoint, metrics and reports) instead of refusing.
    #[arg(long)]
    #[serde(skip)]
    pub overwrite: bool,
}

/// The files `tailor train` and `tailor eval` write into a run folder (and `pr_*` figures).
const RUN_FILES: [&str; 8] = [
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "metrics.jsonl",
    "labels.txt",
    "eval.json",
    "eval.md",
    "thresholds.json",
];

/// Whether `dir` holds a run: a checkpoint or its configuration or metrics.
pub(crate) fn holds_run(dir: &Path) -> bool {
    ["config.json", "model.safetensors", "metrics.jsonl"].iter().any(|f| dir.join(f).exists())
}

/// Removes an earlier run's files from `dir`, so that the new run's folder holds nothing stale.
fn clear_run(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let figure = name.starts_with("pr_") && (name.ends_with(".png") || name.ends_with(".svg"));
        if RUN_FILES.contains(&name.as_str()) || figure {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::file(entry.path(), format!("cannot remove the earlier run's file: {e}")))?;
        }
    }
    Ok(())
}

const DEFAULT_EPOCHS: usize = 10;

impl TrainArgs {
    pub fn epochs(&self) -> usize {
        self.epochs.unwrap_or(DEFAULT_EPOCHS)
    }

    fn weighting(&self) -> Result<Weighting> {
        // β is recorded with every run, so a meaningless one is refused whatever the scheme.
        if !(0.0..1.0).contains(&self.beta) {
            return Err(Error::Invalid(format!("--beta {}: β must be in [0, 1), e.g. 0.99 or 0.999", self.beta)));
        }
        match self.weighting.to_ascii_lowercase().as_str() {
            "nw" | "none" => Ok(Weighting::Nw),
            "ifw" => Ok(Weighting::Ifw),
            "iew" => Ok(Weighting::Iew { beta: self.beta }),
            w => Err(Error::Invalid(format!("--weighting '{w}': use nw, ifw or iew"))),
        }
    }

    fn loss(&self, kind: LabelKind) -> Result<LossKind> {
        let gamma = self.focal_gamma;
        if !(gamma >= 0.0 && gamma.is_finite()) {
            return Err(Error::Invalid(format!("--focal-gamma {gamma} must be 0 or more")));
        }
        let name =
            self.loss.clone().unwrap_or_else(|| if kind == LabelKind::Single { "softmax" } else { "sigmoid" }.into());
        match (name.as_str(), kind) {
            ("softmax", LabelKind::Single) => Ok(LossKind::Softmax { gamma }),
            ("softmax", LabelKind::Multi) => Err(Error::Invalid(
                "--loss softmax needs one label per image, but these labels are multi-label; use --loss sigmoid".into(),
            )),
            ("sigmoid", _) => Ok(LossKind::Sigmoid { gamma }),
            (other, _) => Err(Error::Invalid(format!("--loss '{other}': use softmax or sigmoid"))),
        }
    }

    fn optimizer(&self, steps_per_epoch: usize) -> Result<OptimizerConfig> {
        let kind = match self.optimizer.as_str() {
            "adam" => OptimizerKind::Adam,
            "adamw" => OptimizerKind::AdamW,
            o => return Err(Error::Invalid(format!("--optimizer '{o}': use adam or adamw"))),
        };
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(Error::Invalid(format!("--lr {}: give a learning rate of 0 or more, e.g. 1e-3", self.lr)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::Invalid(format!(
                "--weight-decay {}: give 0 (none) or more, e.g. 1e-4",
                self.weight_decay
            )));
        }
        // A negative factor would flip the learning rate's sign at every step of the schedule.
        if !(self.lr_gamma > 0.0 && self.lr_gamma.is_finite()) {
            return Err(Error::Invalid(format!("--lr-gamma {}: give a positive factor, e.g. 0.1", self.lr_gamma)));
        }
        let spe = steps_per_epoch as u64;
        let schedule = match self.schedule.as_str() {
            "constant" => Schedule::Constant,
            "step" if self.lr_step == 0 => {
                return Err(Error::Invalid("--lr-step 0: give the epochs between learning-rate steps, e.g. 30".into()))
            }
            "step" => Schedule::Step { every: self.lr_step * spe, gamma: self.lr_gamma },
            "cosine" => Schedule::Cosine { total: self.epochs() as u64 * spe, min_lr: 0.0 },
            s => return Err(Error::Invalid(format!("--schedule '{s}': use constant, step or cosine"))),
        };
        let cfg = OptimizerConfig {
            kind,
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
}

/// The dataset compacted to the split, with the split.
pub struct Prepared {
    pub source: Source,
    pub image: ImageSpec,
    pub ds: Arc<Dataset>,
    pub split: Split,
}

/// Loads and splits the data of `args` (the same samples on every call with the same flags).
pub fn prepare(args: &TrainArgs, image: Option<ImageSpec>) -> Result<Prepared> {
    let source = args.data.source()?;
    let image = match image {
        Some(i) => i,
        None => args.data.image_spec(&source)?,
    };
    let (ds, split) = split_data(&source, common::load(&source, &image)?, &args.split_spec())?;
    Ok(Prepared { source, image, ds: Arc::new(ds), split })
}

/// Splits a loaded dataset as training does (`tailor weights` counts its labels the same way),
/// saying which labels were dropped and when the split came out far from what was asked.
pub fn split_data(source: &Source, mut ds: Dataset, spec: &SplitSpec) -> Result<(Dataset, Split)> {
    if ds.kind() == LabelKind::Single && ds.num_labels() < 2 {
        return Err(Error::file(
            &source.path,
            format!(
                "every image has the same label ('{}'): a classifier needs at least two classes; choose another \
                 label column or add images of other classes",
                ds.label_names.first().map_or("", String::as_str)
            ),
        ));
    }
    let split = data::split(&mut ds, spec)?;
    for n in &split.notes {
        eprintln!("note: {n}");
    }
    if !split.dropped.is_empty() {
        eprintln!(
            "dropped {} label(s) with fewer than {} training samples: {}",
            split.dropped.len(),
            spec.min_samples,
            split.dropped.join(", ")
        );
    }
    Ok((ds, split))
}

/// What a finished run left behind.
pub struct Outcome {
    pub dir: PathBuf,
}

pub fn run(cli: &super::Cli, a: &TrainArgs) -> Result<()> {
    let gpu = cli.open_gpu()?;
    train(&gpu, a).map(|_| ())
}

/// Trains (or resumes) a run; returns its folder and configuration.
pub fn train(gpu: &Arc<Gpu>, a: &TrainArgs) -> Result<Outcome> {
    train_on(gpu, a, None)
}

/// [`train`] on data already loaded and split by [`prepare`] with `a`'s flags (`compare`'s three
/// runs load it once, and say what they found once); `None` loads it.
pub fn train_on(gpu: &Arc<Gpu>, a: &TrainArgs, data: Option<&Prepared>) -> Result<Outcome> {
    let (args, resumed, dir) = match &a.resume {
        Some(dir) => {
            check_resume_flags(a, dir)?;
            let cfg = RunConfig::load(dir)?;
            let mut args = cfg.args.clone();
            if a.epochs.is_some() {
                args.epochs = a.epochs;
            }
            // Data that has moved is given again; check_same_data makes sure it is the same.
            if a.data.data.is_some() {
                args.data.data = a.data.data.clone();
                args.data.image_dir = a.data.image_dir.clone();
            } else if a.data.image_dir.is_some() {
                args.data.image_dir = a.data.image_dir.clone();
            }
            (args, Some(cfg), dir.clone())
        }
        None => {
            let dir = a.out.clone().unwrap_or_else(|| default_out(a));
            if a.epochs == Some(0) {
                return Err(Error::Invalid("--epochs 0: a new run needs at least one epoch".into()));
            }
            if dir.is_dir() && holds_run(&dir) && !a.overwrite && !dir.join("config.json").exists() {
                return Err(Error::file(
                    &dir,
                    "holds files of a run but no config.json (a run stopped before its first checkpoint was \
                     complete), so it cannot be resumed; replace them with --overwrite, or give another --out",
                ));
            }
            if dir.is_dir() && holds_run(&dir) && !a.overwrite {
                return Err(Error::file(
                    &dir,
                    format!(
                        "already holds a run; continue it with --resume {0}, replace it with --overwrite, \
                         or give another --out",
                        dir.display()
                    ),
                ));
            }
            (a.clone(), None, dir)
        }
    };
    // Flags that are wrong whatever the data is fail before the images are loaded.
    args.arch.config(1, 1)?;
    args.weighting()?;
    args.optimizer(1)?;
    let loaded;
    let p = match data {
        Some(p) if resumed.is_none() => p,
        _ => {
            let image = resumed.as_ref().map(|c| c.preprocess.image_spec()).transpose()?;
            loaded = prepare(&args, image).map_err(|e| match e {
                // The data a resumed run recorded may have moved since.
                Error::File { path, msg } if resumed.is_some() && a.data.data.is_none() && !path.exists() => {
                    Error::File {
                        path,
                        msg: format!(
                            "{msg} (if the run's data moved, give its new place: --resume {} --data NEW.csv, \
                             with --image-dir if the images are elsewhere)",
                            dir.display()
                        ),
                    }
                }
                e => e,
            })?;
            print_found(&loaded);
            &loaded
        }
    };
    let kind = p.ds.kind();
    let loss = args.loss(kind)?;
    let counts: Vec<u64> = p.split.train_counts.iter().map(|&n| n as u64).collect();
    let weighting = args.weighting()?;
    let cw = class_weights_report(&counts, weighting, Some(&p.ds.label_names))?;
    let weights = renormalise_to_classes(&cw.weights);
    print_labels(p, &cw.effective, &weights, &args);

    let batch = args.batch_size.min(p.split.train.len());
    if batch == 0 {
        return Err(Error::Invalid("--batch-size 0: give a positive batch size".into()));
    }
    if batch < args.batch_size {
        eprintln!("note: batch size {} is more than the {} training samples; using {batch}", args.batch_size, batch);
    }
    let steps_per_epoch = p.split.train.len() / batch;
    let model_cfg = args.arch.config(p.ds.num_labels(), p.image.channels)?;
    let mut model = Model::new(gpu.clone(), model_cfg.clone(), args.seed)?;
    // The optimiser state to resume from, and the epochs the checkpoint holds.
    let mut resume_from = None;
    if let Some(cfg) = &resumed {
        check_same_data(cfg, p, &dir)?;
        let weights = dir.join("model.safetensors");
        let sd = StateDict::load(&weights)?;
        model.load_own_state_dict(&sd, &weights)?;
        let opt = StateDict::load(&dir.join("optimizer.safetensors"))?;
        let epoch = checkpoint_epoch(&dir, cfg.epochs_done, sd.epoch(), opt.epoch())?;
        resume_from = Some((opt, epoch));
    } else if let Some(init) = &args.init {
        // A run folder stands for its weights.
        let init = if init.is_dir() { init.join("model.safetensors") } else { init.clone() };
        if !init.exists() && init.ends_with("model.safetensors") {
            return Err(Error::file(
                init.parent().unwrap_or(&init),
                "holds no model.safetensors; give --init a .safetensors file or a tailor run folder",
            ));
        }
        let sd = StateDict::load(&init)?;
        let r = model.load_state_dict(&sd)?;
        eprintln!("loaded {} tensors from {}", r.loaded, init.display());
        if let Some((from, to)) = r.reinit_classifier {
            eprintln!("the classifier was re-initialised: {from} classes in the checkpoint, {to} here");
        }
    }
    let config = TrainConfig {
        batch,
        height: p.image.height,
        width: p.image.width,
        loss,
        class_weights: weights.iter().map(|&w| w as f32).collect(),
        optimizer: args.optimizer(steps_per_epoch)?,
    };
    // Said before the trainer is built, since building compiles its pipelines: many seconds on
    // a cold lavapipe.
    eprintln!("{} ({} parameters) on {}", args.arch.describe(&model_cfg)?, model.net.num_params(), gpu.describe());
    let mut trainer = Trainer::new(model, config).map_err(common::too_large_hint)?;
    let start = match resume_from {
        Some((opt, epoch)) => {
            trainer.load_optimizer_dict(&opt, &dir.join("optimizer.safetensors"))?;
            eprintln!("resuming {} after epoch {epoch}", dir.display());
            epoch
        }
        None => 0,
    };
    if let Some(cfg) = &resumed {
        // A schedule planned over the run's length changes with it.
        let before = cfg.args.epochs();
        if args.epochs() != before && args.schedule == "cosine" && start < args.epochs() {
            eprintln!(
                "note: the cosine schedule was planned over {before} epochs and is now planned over {}: the \
                 learning rate from here on follows the new plan, so the weights will differ from a run started \
                 with --epochs {}",
                args.epochs(),
                args.epochs()
            );
        }
    }
    let pred_batch = batch.min(p.split.val.len().max(1));
    let predictor =
        Predictor::new(&trainer.model, pred_batch, p.image.height, p.image.width).map_err(common::too_large_hint)?;
    eprintln!(
        "device memory (planned): training {}; validation {}",
        trainer.memory(),
        crate::graph::exec::mib(predictor.memory().total())
    );
    let created = !dir.exists();
    common::make_dir(&dir)?;
    if resumed.is_none() && holds_run(&dir) {
        eprintln!("--overwrite: replacing the run in {}", dir.display());
        clear_run(&dir)?;
    }

    let norm = Normalize::default_for(p.image.channels);
    let mut cfg = RunConfig {
        arch: args.arch.name(&model_cfg)?,
        model: model_cfg,
        preprocess: Preprocess {
            width: p.image.width,
            height: p.image.height,
            channels: p.image.channels,
            mean: norm.mean.clone(),
            std: norm.std.clone(),
        },
        label_names: p.ds.label_names.clone(),
        label_kind: if kind == LabelKind::Single { "single" } else { "multi" }.into(),
        loss: if matches!(loss, LossKind::Softmax { .. }) { "softmax" } else { "sigmoid" }.into(),
        focal_gamma: args.focal_gamma,
        weighting: args.weighting.to_ascii_lowercase(),
        beta: args.beta,
        class_weights: weights.clone(),
        train_counts: p.split.train_counts.clone(),
        val_counts: p.split.val_counts.clone(),
        train_samples: p.split.train.len(),
        val_samples: p.split.val.len(),
        source: Source { path: absolute(&p.source.path), ..p.source.clone() },
        split_seed: args.seed,
        epochs_done: start,
        data_fingerprint: Some(data_fingerprint(p)),
        args: args.clone(),
    };
    // config.json keeps absolute paths, so that eval and --resume work from any folder.
    cfg.args.data.data = cfg.args.data.data.as_deref().map(absolute);
    cfg.args.data.image_dir = cfg.args.data.image_dir.as_deref().map(absolute);
    cfg.source.image_dir = cfg.source.image_dir.as_deref().map(absolute);
    let labels_txt = p.ds.label_names.join("\n") + "\n";

    let mut opts = data::LoaderOptions::new(batch, p.image.channels, args.seed);
    opts.drop_last = true;
    opts.normalize = norm.clone();
    if args.augment {
        let pad = if p.image.width.min(p.image.height) < 32 { 2 } else { 4 };
        opts.augment = Augment { crop_padding: pad, hflip: true };
    }
    let loader = data::Loader::new(p.ds.clone(), p.split.train.clone(), opts)?;
    let epochs = args.epochs();
    if start >= epochs {
        let why = if start > epochs { ", and --epochs cannot shorten a run" } else { "" };
        eprintln!("{} already has {start} epochs (--epochs {epochs}){why}; nothing to do", dir.display());
    }
    let res = (start..epochs).try_for_each(|epoch| {
        let (mean_loss, ips, secs) = train_epoch(&mut trainer, &loader, epoch, epochs)?;
        if !mean_loss.is_finite() {
            return Err(nan_context(
                Error::Invalid(format!(
                    "the loss became {mean_loss}: lower the learning rate (--lr) or check the data"
                )),
                epoch,
            ));
        }
        // An untrained model's loss is about ln(classes) for softmax and ln 2 for sigmoid; a mean
        // a hundred times ln(classes) is a run that diverged without reaching NaN.
        let chance = (p.ds.num_labels().max(2) as f64).ln();
        if mean_loss > 100.0 * chance {
            eprintln!(
                "warning: epoch {}'s mean loss {mean_loss:.4e} is far above an untrained model's (about {chance:.2}): \
                 training is diverging; lower the learning rate (--lr)",
                epoch + 1
            );
        }
        let mut line = serde_json::json!({
            "epoch": epoch + 1, "step": trainer.step, "train_loss": mean_loss,
            "lr": trainer.config.optimizer.lr_at(trainer.step.max(1)), "seconds": secs, "images_per_s": ips,
        });
        let mut msg = format!("epoch {}/{epochs}: loss {mean_loss:.4}, {ips:.1} images/s", epoch + 1);
        if !p.split.val.is_empty() {
            let (map, top1) = validate(&predictor, p, &norm, &cfg).map_err(|e| diverged(e, epoch))?;
            line["val_macro_map"] = serde_json::json!(map);
            msg += &format!(", val macro mAP {}", fmt(map));
            if kind == LabelKind::Single {
                line["val_top1"] = serde_json::json!(top1);
                msg += &format!(", top-1 {}", fmt(top1));
            }
        }
        eprintln!("{msg}");
        save_checkpoint(&trainer, &mut cfg, epoch + 1, &labels_txt, &dir)?;
        append_line(&dir.join("metrics.jsonl"), &line)
    });
    if let Err(e) = res {
        // A new run that failed before its first checkpoint leaves no empty folder behind.
        if created {
            let _ = std::fs::remove_dir(&dir);
        }
        return Err(e);
    }
    if start < epochs {
        eprintln!("saved {}", dir.display());
        // eval's reports and thresholds in the folder are of the earlier weights.
        if resumed.is_some() && ["eval.json", "thresholds.json"].iter().any(|f| dir.join(f).exists()) {
            eprintln!(
                "note: {}'s eval reports and thresholds.json (which predict uses) are from before these epochs; \
                 run tailor eval --model {} again",
                dir.display(),
                dir.display()
            );
        }
    }
    Ok(Outcome { dir })
}

/// Saves the checkpoint after `epochs` epochs: the model, the optimiser state (both stamped with
/// the epoch), labels.txt and config.json, as one set ([`write_all_atomic`]): a failure while
/// writing (a full disk) leaves the previous epoch's set whole, and config.json, renamed last,
/// never claims an epoch whose files are not all in place.
fn save_checkpoint(trainer: &Trainer, cfg: &mut RunConfig, epochs: usize, labels: &str, dir: &Path) -> Result<()> {
    let stamp = |sd: &mut StateDict| sd.metadata.insert(EPOCH_KEY.into(), epochs.to_string());
    let mut model = trainer.model.state_dict()?;
    stamp(&mut model);
    let mut opt = trainer.optimizer_state_dict()?;
    stamp(&mut opt);
    let before = cfg.epochs_done;
    cfg.epochs_done = epochs;
    let (model, opt, config) = (model.to_bytes()?, opt.to_bytes()?, cfg.to_text()?);
    let (o, m, l, c) = (
        dir.join("optimizer.safetensors"),
        dir.join("model.safetensors"),
        dir.join("labels.txt"),
        dir.join("config.json"),
    );
    let files = [
        (o.as_path(), &opt[..]),
        (m.as_path(), &model[..]),
        (l.as_path(), labels.as_bytes()),
        (c.as_path(), config.as_bytes()),
    ];
    write_all_atomic(&files).map_err(|e| {
        cfg.epochs_done = before;
        let kept = if before == 0 {
            "the folder holds no finished epoch yet".to_string()
        } else {
            format!(
                "the folder still holds the whole checkpoint after epoch {before}: make room and continue with \
                 --resume {}",
                dir.display()
            )
        };
        Error::Invalid(format!("{e}; epoch {epochs}'s checkpoint was not saved, and {kept}"))
    })
}

/// The epochs a run folder's checkpoint holds: config.json's count, unless the model's and the
/// optimiser's files both say another (a save interrupted after renaming them, before config.json).
/// Files of different epochs cannot continue the run exactly: refused.
fn checkpoint_epoch(dir: &Path, config: usize, model: Option<usize>, opt: Option<usize>) -> Result<usize> {
    match (model, opt) {
        (Some(m), Some(o)) if m == o && m != config => {
            eprintln!(
                "note: {} says {config} epochs, but the checkpoint holds {m} (the last save stopped before \
                 config.json); resuming after epoch {m}",
                dir.join("config.json").display()
            );
            Ok(m)
        }
        (None, None) => Ok(config),
        (m, o) if m.unwrap_or(config) == config && o.unwrap_or(config) == config => Ok(config),
        (m, o) => {
            let at = |e: Option<usize>| e.map_or("of an unknown epoch".to_string(), |e| format!("after epoch {e}"));
            Err(Error::file(
                dir,
                format!(
                    "its checkpoint files are from different epochs (model.safetensors {}, optimizer.safetensors \
                     {}, config.json after epoch {config}): a save was interrupted, so the run cannot continue \
                     exactly; start it again with --out {} --overwrite",
                    at(m),
                    at(o),
                    dir.display()
                ),
            ))
        }
    }
}

/// A stable digest (FNV-1a, 64 bits) of what a split holds: for each training then validation
/// sample, its image name as the CSV gives it (relative, so data moved elsewhere keeps it) or,
/// for IDX data, its pixels; and its labels.
pub fn data_fingerprint(p: &Prepared) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let ds = &p.ds;
    let col = ds.table.as_ref().and_then(|t| t.column(&p.source.image_column).ok().map(|c| (t, c)));
    let per = ds.width * ds.height * ds.channels;
    for (part, indices) in [(b'T', &p.split.train), (b'V', &p.split.val)] {
        eat(&[part]);
        for &i in indices {
            match col {
                Some((t, c)) => eat(t.cell(ds.records[i], c).as_bytes()),
                None => eat(&ds.pixels[i * per..(i + 1) * per]),
            }
            eat(&[0]);
            for l in ds.targets.labels(i) {
                eat(&l.to_le_bytes());
            }
        }
    }
    for n in &ds.label_names {
        eat(n.as_bytes());
        eat(&[0]);
    }
    format!("{h:016x}")
}

/// A resumed run must see the data it started with: the same labels and the same split.
fn check_same_data(cfg: &RunConfig, p: &Prepared, dir: &Path) -> Result<()> {
    let config = dir.join("config.json");
    if cfg.label_names != p.ds.label_names {
        return Err(Error::file(
            config,
            format!(
                "{} now gives other labels than when this run started; resume with the same data",
                p.source.path.display()
            ),
        ));
    }
    if (cfg.train_samples, cfg.val_samples) != (p.split.train.len(), p.split.val.len()) {
        return Err(Error::file(
            config,
            format!(
                "{} now gives {} training and {} validation samples, but the run started with {} and {}; \
                 resume with the same data",
                p.source.path.display(),
                p.split.train.len(),
                p.split.val.len(),
                cfg.train_samples,
                cfg.val_samples
            ),
        ));
    }
    if cfg.data_fingerprint.as_ref().is_some_and(|f| *f != data_fingerprint(p)) {
        return Err(Error::file(
            config,
            format!(
                "{} now gives other images or labels than when this run started (the same counts, but \
                 other image names or labels in its split); resume with the same data",
                p.source.path.display()
            ),
        ));
    }
    Ok(())
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
    given.retain(|f| !["epochs", "data", "image_dir"].contains(&f.as_str()));
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

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
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

pub fn print_found(p: &Prepared) {
    let kind = if p.ds.kind() == LabelKind::Single { "single-label" } else { "multi-label" };
    eprintln!(
        "{}: {} samples, {} labels ({kind}), images {}×{}×{}; {} for training, {} for validation",
        p.source.path.display(),
        p.ds.len(),
        p.ds.num_labels(),
        p.image.width,
        p.image.height,
        p.image.channels,
        p.split.train.len(),
        p.split.val.len()
    );
}

fn print_labels(p: &Prepared, effective: &[f64], weights: &[f64], args: &TrainArgs) {
    let width = p.ds.label_names.iter().map(|n| n.chars().count()).max().unwrap_or(5).max(5);
    eprintln!(
        "class weights ({}) sum to {}, the number of labels (Cui et al.; `tailor weights` shows them summing to 1)",
        args.weighting,
        weights.len()
    );
    eprintln!("{:width$} {:>7} {:>6} {:>10} {:>8}", "label", "train", "val", "effective", args.weighting);
    for (l, name) in p.ds.label_names.iter().enumerate() {
        eprintln!(
            "{name:width$} {:>7} {:>6} {:>10.2} {:>8.4}",
            p.split.train_counts[l], p.split.val_counts[l], effective[l], weights[l]
        );
    }
}

fn train_epoch(trainer: &mut Trainer, loader: &data::Loader, epoch: usize, epochs: usize) -> Result<(f64, f64, f64)> {
    let bar = common::progress_bar(loader.len(), "{prefix} [{bar:30}] step {pos}/{len} {msg} eta {eta}");
    bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
    let t0 = Instant::now();
    let (mut sum, mut n, mut last, mut images) = (0.0f64, 0usize, f32::NAN, 0usize);
    // Steps finish after `step` returns (their losses come with later calls), so the rate
    // counts the images of finished steps only: `pending` holds the batch sizes still running.
    let (mut pending, mut finished) = (std::collections::VecDeque::new(), 0usize);
    let mut record = |losses: Vec<(u64, f32)>, last: &mut f32, pending: &mut std::collections::VecDeque<usize>| {
        for (_, l) in losses {
            sum += l as f64;
            n += 1;
            *last = l;
            finished += pending.pop_front().unwrap_or(0);
        }
        finished
    };
    let classes = trainer.model.net.config.num_classes;
    for b in loader.epoch(epoch as u64) {
        let onehot;
        let targets = match (&b.targets, trainer.config.loss) {
            (BatchTargets::Single(c), LossKind::Softmax { .. }) => Targets::Classes(c),
            (BatchTargets::Single(c), LossKind::Sigmoid { .. }) => {
                onehot = one_hot(c, classes);
                Targets::Multi(&onehot)
            }
            (BatchTargets::Multi(m), _) => Targets::Multi(m),
            // The triplet losses train on the labels; the trainer refuses labels for the others.
            (BatchTargets::Single(c), _) => Targets::Classes(c),
        };
        let res = trainer.step(&b.images, targets);
        pending.push_back(b.len());
        let done = record(res.map_err(|e| nan_context(e, epoch))?, &mut last, &mut pending);
        images += b.len();
        if done > 0 {
            let ips = done as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {last:.4} {ips:.1} img/s"));
        }
        bar.inc(1);
    }
    record(trainer.finish().map_err(|e| nan_context(e, epoch))?, &mut last, &mut pending);
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    Ok((sum / n.max(1) as f64, images as f64 / secs.max(1e-9), secs))
}

fn nan_context(e: Error, epoch: usize) -> Error {
    match e {
        Error::Invalid(m) if m.contains("the loss became") => Error::Invalid(format!(
            "training stopped in epoch {}: {m}; the checkpoint of the previous epoch (if any) is unchanged",
            epoch + 1
        )),
        e => e,
    }
}

fn diverged(e: Error, epoch: usize) -> Error {
    match e {
        Error::Invalid(m) if m.contains("diverged") => Error::Invalid(format!(
            "training stopped after epoch {}: {m}; the checkpoint of the previous epoch (if any) is unchanged",
            epoch + 1
        )),
        e => e,
    }
}

fn one_hot(c: &[u32], classes: usize) -> Vec<f32> {
    let mut v = vec![0.0; c.len() * classes];
    c.iter().enumerate().for_each(|(i, &l)| v[i * classes + l as usize] = 1.0);
    v
}

/// Macro mAP and (single-label) top-1 accuracy on the validation split.
fn validate(pred: &Predictor, p: &Prepared, norm: &Normalize, cfg: &RunConfig) -> Result<(Option<f64>, Option<f64>)> {
    let multi = cfg.loss == "sigmoid";
    let scores = common::score(pred, &p.ds, &p.split.val, norm, pred.batch, multi)?;
    let ev = evaluate_split(&scores, &p.ds, &p.split.val, cfg, &EvalOptions::default())?;
    let top1 = ev.report.single.as_ref().and_then(|s| s.top1_accuracy);
    Ok((ev.report.macro_ap, top1))
}

/// Evaluates scores of the samples `indices` of `ds`, whose labels are the run's labels.
pub fn evaluate_split(
    scores: &[f32],
    ds: &Dataset,
    indices: &[usize],
    cfg: &RunConfig,
    opts: &EvalOptions,
) -> Result<metrics::Evaluation> {
    let c = cfg.label_names.len();
    let (single, multi);
    let truth = match &ds.targets {
        data::Targets::Single(t) => {
            single = indices.iter().map(|&i| t[i]).collect::<Vec<_>>();
            Truth::Single(&single)
        }
        data::Targets::Multi(t) => {
            let sets: Vec<Vec<u32>> = indices.iter().map(|&i| t[i].clone()).collect();
            multi = metrics::multi_hot(&sets, c)?;
            Truth::Multi(&multi)
        }
    };
    let pred = Predictions { scores, num_labels: c, truth };
    metrics::evaluate(&pred, &cfg.label_names, &cfg.train_counts, cfg.train_samples, opts)
}

fn append_line(path: &Path, v: &serde_json::Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::file(path, format!("cannot open for appending: {e}")))?;
    writeln!(f, "{v}").map_err(|e| Error::file(path, format!("cannot write: {e}")))
}
