//! Training a run: load and split the data, build the model and its training step, train epoch
//! by epoch with a validation pass and a checkpoint after each, into a run folder that can be
//! resumed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::config::{BestEpoch, EmbeddingConfig, Metric, RunConfig, RunSettings, ScheduleKind, Task, SCHEMA};
use super::data::{check_same_data, data_fingerprint, prepare, Prepared};
use super::eval::{evaluate_split, score};
use super::folder::{self, Checkpoint, EpochRecord};
use super::{distill, Event};
use crate::data::pk::PkSampler;
use crate::data::source::Source;
use crate::data::{self, Augment, BatchTargets, LabelKind, Normalize, Preprocess};
use crate::error::{Error, Result};
use crate::graph::LossKind;
use crate::metrics::{retrieval_gpu, EvalOptions, Retrieval, RetrievalGroups, RetrievalScores};
use crate::nn::checkpoint::StateDict;
use crate::nn::densenet::DenseNetConfig;
use crate::nn::model::Model;
use crate::nn::predict::Predictor;
use crate::nn::train::{measure_speeds, shares_from_speeds, Collective, Targets, TrainConfig, Trainer};
use crate::nn::weights::{class_weights_report, renormalise_to_classes};
use crate::setting::Setting;
use crate::Gpu;

/// How a training run starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// A new run in `dir` with `settings`; `overwrite`: replace a run already there.
    New { settings: Box<RunSettings>, dir: PathBuf, overwrite: bool },
    /// The run in `dir`, continued with the settings it started with to `epochs` in all
    /// (`None`: its own), its data read from `data` and `image_dir` when it has moved since.
    Resume { dir: PathBuf, epochs: Option<usize>, data: Option<PathBuf>, image_dir: Option<PathBuf> },
}

/// What a finished run left behind.
pub struct Outcome {
    pub dir: PathBuf,
    pub config: RunConfig,
}

/// The devices a run trains on. The first holds the model that is validated and saved; with
/// more, each holds a replica that takes its share of every batch (data parallelism, see
/// [`Trainer::new_data_parallel`]). Not a setting of the run: a run may resume on other devices.
#[derive(Clone)]
pub struct Devices {
    pub gpus: Vec<Arc<Gpu>>,
    /// Images of each batch per device, summing to this process's part of the batch. `None`:
    /// equal shares on devices of one model, else shares in proportion to each device's
    /// measured speed.
    pub shares: Option<Vec<usize>>,
    /// Other processes training the same run (MPI ranks, see [`crate::nn::train::Collective`]):
    /// each trains its rank's part of every batch on its devices; rank 0 validates and writes
    /// the checkpoints, reports and metrics.
    pub collective: Option<Arc<dyn Collective>>,
}

impl Devices {
    pub fn one(gpu: Arc<Gpu>) -> Devices {
        Devices { gpus: vec![gpu], shares: None, collective: None }
    }

    /// Whether this process writes the run's files (the only one, or rank 0).
    fn writes(&self) -> bool {
        self.collective.as_ref().is_none_or(|c| c.rank() == 0)
    }

    /// Processes training the run together.
    fn processes(&self) -> usize {
        self.collective.as_ref().map_or(1, |c| c.size())
    }

    /// The cheap checks: as many shares as devices, none zero.
    fn check(&self) -> Result<()> {
        if self.gpus.is_empty() {
            return Err(Error::Invalid("no device to train on".into()));
        }
        if let Some(s) = &self.shares {
            if s.len() != self.gpus.len() || s.contains(&0) {
                let fix = format!("give one positive share per device ({} devices)", self.gpus.len());
                let shown = s.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
                return Err(Error::setting(Setting::DeviceShares, shown, fix));
            }
        }
        Ok(())
    }

    /// Images per device for a batch of `batch` cut into `acc` micro-batches on each.
    fn shares(&self, net: &DenseNetConfig, config: &TrainConfig, on: &mut dyn FnMut(Event)) -> Result<Vec<usize>> {
        let (batch, acc) = (config.batch, config.accumulate);
        if let Some(s) = &self.shares {
            if s.iter().sum::<usize>() != batch || s.iter().any(|v| v % acc != 0) {
                let shown = s.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
                let fix = format!(
                    "the shares must sum to the batch of {batch} images, each a multiple of {} ({acc})",
                    Setting::Accumulate
                );
                return Err(Error::setting(Setting::DeviceShares, shown, fix));
            }
            return Ok(s.clone());
        }
        let model = |g: &Arc<Gpu>| (g.info.name.clone(), g.info.driver.clone(), g.info.device_type);
        if self.gpus.iter().all(|g| model(g) == model(&self.gpus[0])) {
            return shares_from_speeds(batch, acc, &vec![1.0; self.gpus.len()]);
        }
        let speeds = measure_speeds(net, config, &self.gpus)?;
        let shown: Vec<String> = speeds.iter().map(|s| format!("{s:.1}")).collect();
        on(Event::Note(format!("measured images/s per device: {}", shown.join(", "))));
        shares_from_speeds(batch, acc, &speeds)
    }
}

/// Trains (or resumes) a run, reporting what it does to `on`.
pub fn train(gpu: &Arc<Gpu>, start: &Start, on: &mut dyn FnMut(Event)) -> Result<Outcome> {
    train_on(gpu, start, None, on)
}

/// [`train`] on data already loaded and split by [`prepare`] with the run's settings
/// ([`super::compare`]'s three runs load it once); `None` loads it. A resumed run always loads
/// its own.
pub fn train_on(gpu: &Arc<Gpu>, start: &Start, data: Option<&Prepared>, on: &mut dyn FnMut(Event)) -> Result<Outcome> {
    train_on_devices(&Devices::one(gpu.clone()), start, data, on)
}

/// [`train_on`] on one or several devices.
pub fn train_on_devices(
    devices: &Devices,
    start: &Start,
    data: Option<&Prepared>,
    on: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    // Everything that can be checked without the data is, before the images are decoded.
    devices.check()?;
    let (settings, resumed, dir) = check_start(start)?;
    if let Some(cfg) = &resumed {
        let done = saved_epochs(&dir, cfg)?;
        if done >= settings.epochs {
            on(Event::NothingToDo { dir: &dir, done, epochs: settings.epochs });
            return Ok(Outcome { dir, config: cfg.clone() });
        }
        if let Some(best) = stopped_early(cfg, &settings, done) {
            on(Event::EarlyStop { epoch: done, best, patience: settings.patience.unwrap_or(0) });
            return Ok(Outcome { dir, config: cfg.clone() });
        }
    }
    // The folder is made first, so that one that cannot be is said at once; a new run that
    // fails before its first checkpoint leaves none behind.
    if devices.processes() > 1 && !settings.teachers.is_empty() {
        return Err(Error::Invalid(
            "distillation trains in one process: give its devices with --devices instead of several processes".into(),
        ));
    }
    let created = !dir.exists();
    folder::make_dir(&dir)?;
    let res = train_in(devices, start, &settings, resumed, &dir, data, on);
    if res.is_err() && created && devices.writes() {
        let _ = std::fs::remove_dir(&dir);
    }
    res
}

/// The best epoch of a run whose patience ran out after `done` epochs.
fn stopped_early(cfg: &RunConfig, settings: &RunSettings, done: usize) -> Option<BestEpoch> {
    let (best, patience) = (cfg.best?, settings.patience?);
    (done >= best.epoch + patience).then_some(best)
}

/// The settings, the configuration of a resumed run and the folder a start names, checked as far
/// as they can be without the data.
fn check_start(start: &Start) -> Result<(RunSettings, Option<RunConfig>, PathBuf)> {
    let (settings, resumed, dir) = match start {
        Start::Resume { dir, epochs, data, image_dir } => {
            let cfg = RunConfig::load(dir)?;
            let mut s = cfg.settings.clone();
            if let Some(e) = epochs {
                s.epochs = *e;
            }
            // Data that has moved is given again; check_same_data makes sure it is the same.
            if data.is_some() {
                s.data.data = data.clone();
                s.data.image_dir = image_dir.clone();
            } else if image_dir.is_some() {
                s.data.image_dir = image_dir.clone();
            }
            (s, Some(cfg), dir.clone())
        }
        Start::New { settings, dir, overwrite } => {
            if settings.epochs == 0 {
                return Err(Error::setting(Setting::Epochs, 0, "a new run needs at least one epoch"));
            }
            if dir.is_dir() && folder::holds_run(dir) && !overwrite {
                return Err(if dir.join("config.json").exists() {
                    Error::RunExists { dir: dir.clone() }
                } else {
                    Error::RunIncomplete { dir: dir.clone() }
                });
            }
            ((**settings).clone(), None, dir.clone())
        }
    };
    settings.check()?;
    // A distilled run's teachers are read (and its settings completed from them) up front.
    let (_, settings) = distill::check_teachers(&settings)?;
    Ok((settings, resumed, dir))
}

/// The epochs a resumed run's checkpoint holds, read from the headers of its files.
fn saved_epochs(dir: &Path, cfg: &RunConfig) -> Result<usize> {
    let epoch = |f: &str| -> Result<Option<usize>> {
        let meta = StateDict::read_metadata(&dir.join(f))?;
        Ok(meta.get(crate::nn::checkpoint::EPOCH_KEY).and_then(|e| e.parse().ok()))
    };
    folder::checkpoint_epoch(
        dir,
        cfg.epochs_done,
        epoch("model.safetensors")?,
        epoch("optimizer.safetensors")?,
        &mut |_| {},
    )
}

#[allow(clippy::too_many_arguments)]
fn train_in(
    devices: &Devices,
    start: &Start,
    settings: &RunSettings,
    resumed: Option<RunConfig>,
    dir: &Path,
    data: Option<&Prepared>,
    on: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    let gpu = &devices.gpus[0];
    let dir = dir.to_path_buf();
    let loaded;
    let p = match data {
        Some(p) if resumed.is_none() => p,
        _ => {
            let image = resumed.as_ref().map(|c| c.preprocess.image_spec()).transpose()?;
            let moved_hint = matches!(start, Start::Resume { data: None, .. });
            loaded = prepare(&settings.data, &settings.split_spec(), image, on).map_err(|e| match e {
                // The data a resumed run recorded may have moved since.
                Error::File { path, msg } if resumed.is_some() && moved_hint && !path.exists() => Error::File {
                    path,
                    msg: format!(
                        "{msg} (if the run's data moved, give its new place: {} {} {} NEW.csv, with {} if the \
                         images are elsewhere)",
                        Setting::Resume,
                        dir.display(),
                        Setting::Data,
                        Setting::ImageDir
                    ),
                },
                e => e,
            })?;
            on(Event::Data(&loaded));
            &loaded
        }
    };
    let embedding = settings.task == Task::Embedding;
    let kind = p.ds.kind();
    let loss = settings.loss(kind)?;
    // A classifier's class weights; an embedding model weighs no classes.
    let weights = if embedding {
        Vec::new()
    } else {
        for w in label_warnings(p, settings.split.min_samples) {
            on(Event::Warning(w));
        }
        let counts: Vec<u64> = p.split.train_counts.iter().map(|&n| n as u64).collect();
        let cw = class_weights_report(&counts, settings.weighting()?, Some(&p.ds.label_names))?;
        let weights = renormalise_to_classes(&cw.weights);
        on(Event::ClassWeights {
            weighting: settings.weighting,
            labels: &p.ds.label_names,
            train: &p.split.train_counts,
            val: &p.split.val_counts,
            effective: &cw.effective,
            weights: &weights,
        });
        weights
    };
    // Triplet batches are P labels × K images; other losses take shuffled batches.
    let pk = match loss {
        LossKind::TripletBatchHard { .. } | LossKind::TripletBatchAll { .. } => {
            let s = PkSampler::new(&p.ds, &p.split.train, settings.embedding.p, settings.embedding.k)?;
            if s.dropped_labels() > 0 {
                on(Event::Note(format!(
                    "{} label(s) have fewer than 2 training images, so they cannot form positives: their images are \
                     left out of the triplet batches",
                    s.dropped_labels()
                )));
            }
            Some(s)
        }
        _ => None,
    };
    // A batch larger than the training set shrinks to it, rounded down to whole micro-batches
    // of every process.
    let acc = settings.accumulate;
    let ranks = devices.processes();
    let unit = acc * ranks;
    let batch = match &pk {
        Some(s) => s.batch_size(),
        None => settings.batch_size.min(p.split.train.len() / unit * unit),
    };
    if batch == 0 || batch % unit != 0 {
        return Err(Error::setting(
            Setting::Accumulate,
            acc,
            format!(
                "a batch of {batch} ({} training samples) cannot be cut into {acc} micro-batches on each of {ranks} \
                 process(es): give a batch size that is a multiple of {unit}",
                p.split.train.len()
            ),
        ));
    }
    if pk.is_none() && batch < settings.batch_size {
        on(Event::Note(format!(
            "batch size {} is more than the {} training samples; using {batch}",
            settings.batch_size,
            p.split.train.len()
        )));
    }
    let steps_per_epoch = pk.as_ref().map_or(p.split.train.len() / batch, PkSampler::batches);
    let outputs = if embedding { settings.embedding.dim } else { p.ds.num_labels() };
    let mut model_cfg = settings.arch.config(outputs, p.image.channels)?;
    model_cfg.l2_normalize = embedding && settings.embedding.normalize;
    let mut model = Model::new(gpu.clone(), model_cfg.clone(), settings.seed)?;
    // The optimiser state to resume from, and the epochs the checkpoint holds.
    let mut resume_from = None;
    if let Some(cfg) = &resumed {
        check_same_data(cfg, p, &dir)?;
        let weights = dir.join("model.safetensors");
        let sd = StateDict::load(&weights)?;
        model.load_own_state_dict(&sd, &weights)?;
        let opt = StateDict::load(&dir.join("optimizer.safetensors"))?;
        let epoch =
            folder::checkpoint_epoch(&dir, cfg.epochs_done, sd.epoch(), opt.epoch(), &mut |n| on(Event::Note(n)))?;
        resume_from = Some((opt, epoch));
    } else if let Some(init) = &settings.init {
        let path = folder::weights_path(init);
        if !path.exists() && path.ends_with("model.safetensors") {
            return Err(Error::file(
                path.parent().unwrap_or(&path),
                format!(
                    "holds no model.safetensors; give {} a .safetensors file or a tailor run folder",
                    Setting::Init
                ),
            ));
        }
        let sd = StateDict::load(&path)?;
        let r = model.load_state_dict(&sd)?;
        on(Event::Init { tensors: r.loaded, from: &path, reinit_classifier: r.reinit_classifier });
    }
    // Each process trains its rank's part of every batch.
    let config = TrainConfig {
        batch: batch / ranks,
        height: p.image.height,
        width: p.image.width,
        loss,
        class_weights: weights.iter().map(|&w| w as f32).collect(),
        optimizer: settings.optimizer(steps_per_epoch)?,
        accumulate: acc,
    };
    // Said before the trainer is built, since building compiles its pipelines: many seconds on
    // a cold lavapipe.
    let described = settings.arch.describe(&model_cfg)?;
    let mut trainer = if devices.gpus.len() == 1 {
        on(Event::Building { model: &described, params: model.net.num_params(), device: &gpu.describe() });
        Trainer::new(model, config)
    } else {
        let shares = devices.shares(&model_cfg, &config, on)?;
        let names: Vec<String> =
            devices.gpus.iter().zip(&shares).map(|(g, s)| format!("{} ({s} images)", g.info.name)).collect();
        let device = format!("{} devices, each batch shared: {}", devices.gpus.len(), names.join(", "));
        on(Event::Building { model: &described, params: model.net.num_params(), device: &device });
        Trainer::new_data_parallel(model, config, &devices.gpus[1..], &shares)
    }
    .map_err(Error::fit_hint)?;
    if let Some(c) = &devices.collective {
        trainer.join(c.clone())?;
    }
    let writes = devices.writes();
    let start_epoch = match resume_from {
        Some((opt, epoch)) => {
            trainer.load_optimizer_dict(&opt, &dir.join("optimizer.safetensors"))?;
            on(Event::Resuming { dir: &dir, epoch });
            epoch
        }
        None => 0,
    };
    if let Some(cfg) = &resumed {
        // A schedule planned over the run's length changes with it.
        let before = cfg.settings.epochs;
        if settings.epochs != before && settings.schedule == ScheduleKind::Cosine && start_epoch < settings.epochs {
            on(Event::Note(format!(
                "the cosine schedule was planned over {before} epochs and is now planned over {0}: the learning \
                 rate from here on follows the new plan, so the weights will differ from a run started with {1} {0}",
                settings.epochs,
                Setting::Epochs
            )));
        }
    }
    // Validation batches as large as a micro-batch: accumulation is there to bound the memory.
    let pred_batch = (batch / unit).min(p.split.val.len().max(1));
    let predictor =
        Predictor::new(&trainer.model, pred_batch, p.image.height, p.image.width).map_err(Error::fit_hint)?;
    on(Event::Memory { training: &trainer.memory(), validation: predictor.memory().total() });
    if writes && resumed.is_none() && folder::holds_run(&dir) {
        on(Event::Replacing { dir: &dir });
        folder::clear_run(&dir)?;
    }

    // A distilled run's targets: its teachers' embeddings of the training images.
    let (teachers, _) = distill::check_teachers(settings)?;
    let targets = match teachers.is_empty() {
        true => None,
        false => Some(distill::targets(&trainer.model.store.gpu, &teachers, p, batch, &dir, on)?),
    };
    let norm = Normalize::default_for(p.image.channels);
    let mut cfg = RunConfig {
        schema: SCHEMA,
        task: settings.task,
        arch: settings.arch.name(&model_cfg)?,
        model: model_cfg,
        preprocess: Preprocess {
            width: p.image.width,
            height: p.image.height,
            channels: p.image.channels,
            mean: norm.mean.clone(),
            std: norm.std.clone(),
        },
        label_names: p.ds.label_names.clone(),
        label_kind: kind,
        loss: settings.loss_name(kind),
        focal_gamma: settings.focal_gamma,
        weighting: settings.weighting,
        beta: settings.beta,
        class_weights: weights.clone(),
        train_counts: p.split.train_counts.clone(),
        val_counts: p.split.val_counts.clone(),
        train_samples: p.split.train.len(),
        val_samples: p.split.val.len(),
        source: Source { path: absolute(&p.source.path), ..p.source.clone() },
        split_seed: settings.seed,
        epochs_done: start_epoch,
        best: resumed.as_ref().and_then(|c| c.best),
        data_fingerprint: Some(data_fingerprint(p)),
        embedding: embedding.then(|| EmbeddingConfig {
            dim: settings.embedding.dim,
            normalize: settings.embedding.normalize,
            margin: settings.embedding.margin,
            vertical_column: settings.data.vertical_column.clone(),
            verticals: settings.data.verticals.clone(),
            teachers: targets.as_ref().map(|t| t.records.clone()).unwrap_or_default(),
        }),
        settings: settings.clone(),
    };
    // config.json keeps absolute paths, so that eval and resume work from any folder.
    cfg.settings.data.data = cfg.settings.data.data.as_deref().map(absolute);
    cfg.settings.data.image_dir = cfg.settings.data.image_dir.as_deref().map(absolute);
    cfg.source.image_dir = cfg.source.image_dir.as_deref().map(absolute);

    let mut opts = data::LoaderOptions::new(batch, p.image.channels, settings.seed);
    opts.drop_last = true;
    // Each process decodes only the rows it trains.
    if let Some(c) = &devices.collective {
        opts.shard = data::Shard { index: c.rank(), count: c.size() };
    }
    opts.normalize = norm.clone();
    if settings.augment {
        let pad = if p.image.width.min(p.image.height) < 32 { 2 } else { 4 };
        opts.augment = Augment { crop_padding: pad, hflip: true };
    }
    let loader = match pk {
        Some(s) => data::Loader::with_pk(p.ds.clone(), s, opts)?,
        None => data::Loader::new(p.ds.clone(), p.split.train.clone(), opts)?,
    };
    let epochs = settings.epochs;
    let best_by = settings.best_by.unwrap_or(match (p.split.val.is_empty(), embedding) {
        (true, _) => Metric::TrainLoss,
        (false, false) => Metric::MacroMap,
        (false, true) => Metric::RecallAt1,
    });
    let mut trained = start_epoch;
    let mut exchanged = 0.0;
    let mut run_epoch = |epoch: usize| -> Result<bool> {
        let stopped = |e: Error, during: bool| Error::Stopped { epoch: epoch + 1, during, cause: Box::new(e) };
        on(Event::EpochStart { epoch, epochs, steps: loader.len() });
        let (mean_loss, ips, secs) =
            train_epoch(&mut trainer, &loader, epoch as u64, targets.as_ref(), on).map_err(|e| match e {
                e @ Error::NonFiniteLoss { .. } => stopped(e, true),
                e => e,
            })?;
        if !mean_loss.is_finite() {
            let e = Error::NonFiniteLoss { step: trainer.step, value: mean_loss as f32 };
            return Err(stopped(e, true));
        }
        // An untrained model's loss is about ln(classes) for softmax and ln 2 for sigmoid; a mean
        // a hundred times ln(classes) is a run that diverged without reaching NaN. (The
        // embedding losses are of distances, bounded for unit vectors.)
        let chance = (p.ds.num_labels().max(2) as f64).ln();
        if !embedding && mean_loss > 100.0 * chance {
            on(Event::Warning(format!(
                "epoch {}'s mean loss {mean_loss:.4e} is far above an untrained model's (about {chance:.2}): \
                 training is diverging; lower the learning rate ({})",
                epoch + 1,
                Setting::Lr
            )));
        }
        // Replicas on several devices must still hold one set of weights.
        if trainer.replicas() > 1 {
            let sum = trainer.check_replicas().map_err(|e| stopped(e, false))?;
            on(Event::Note(format!(
                "epoch {}: the {} replicas hold identical weights (checksum {sum:016x}); {:.1} s of the epoch \
                 exchanged gradients",
                epoch + 1,
                trainer.replicas(),
                trainer.exchange_seconds() - exchanged
            )));
            exchanged = trainer.exchange_seconds();
        }
        // Rank 0 alone validates and writes; the others only train.
        if !writes {
            return Ok(false);
        }
        let mut record = EpochRecord {
            epoch: epoch + 1,
            step: trainer.step,
            train_loss: mean_loss,
            lr: trainer.config.optimizer.lr_at(trainer.step.max(1)),
            seconds: secs,
            images_per_s: ips,
            val_macro_map: None,
            val_top1: None,
            val_recall_at_1: None,
            val_map_at_r: None,
        };
        if embedding && !p.split.val.is_empty() {
            let r = validate_embedding(&predictor, p, &norm).map_err(|e| match e {
                e @ Error::Diverged { .. } => stopped(e, false),
                e => e,
            })?;
            record.val_recall_at_1 = Some(r.recall_at_1);
            record.val_map_at_r = Some(r.map_at_r);
        } else if !p.split.val.is_empty() {
            let (map, top1) = validate(&predictor, p, &norm, &cfg).map_err(|e| match e {
                e @ Error::Diverged { .. } => stopped(e, false),
                e => e,
            })?;
            record.val_macro_map = Some(map);
            if kind == LabelKind::Single {
                record.val_top1 = Some(top1);
            }
        }
        on(Event::EpochEnd { record: &record, epochs });
        let value = best_by.of(&record);
        let improved = value.filter(|&v| cfg.best.is_none_or(|b| best_by.better(v, b.value)));
        let before = cfg.best;
        if let Some(value) = improved {
            cfg.best = Some(BestEpoch { epoch: epoch + 1, by: best_by, value });
        }
        let ck = Checkpoint {
            model: trainer.model.state_dict()?,
            optimizer: trainer.optimizer_state_dict()?,
            labels: &p.ds.label_names,
            best: improved.is_some(),
        };
        folder::save_checkpoint(&dir, ck, &mut cfg, epoch + 1).inspect_err(|_| cfg.best = before)?;
        folder::append_metrics(&dir, &record)?;
        // The figure of the run so far; a failure to draw it is no reason to stop training.
        if let Err(e) = folder::write_curves(&dir) {
            on(Event::Warning(format!("the training curves were not drawn: {e}")));
        }
        trained = epoch + 1;
        if let Some(best) = stopped_early(&cfg, settings, epoch + 1) {
            on(Event::EarlyStop { epoch: epoch + 1, best, patience: settings.patience.unwrap_or(0) });
            return Ok(true);
        }
        Ok(false)
    };
    for epoch in start_epoch..epochs {
        let stop = run_epoch(epoch)?;
        // Every process stops when rank 0 does (early stopping is decided by its validation).
        let stop = match &devices.collective {
            Some(c) => c.broadcast_flag(stop)?,
            None => stop,
        };
        if stop {
            break;
        }
    }
    if trained > start_epoch {
        on(Event::Saved { dir: &dir, last: trained, best: cfg.best });
        // eval's reports and thresholds in the folder are of the earlier weights.
        if resumed.is_some() && ["eval.json", "thresholds.json"].iter().any(|f| dir.join(f).exists()) {
            on(Event::Note(format!(
                "{}'s eval reports and thresholds.json (which predict uses) are from before these epochs; run \
                 tailor eval --model {} again",
                dir.display(),
                dir.display()
            )));
        }
    }
    Ok(Outcome { dir, config: cfg })
}

/// Fewer training samples than this make a label's AP and threshold a matter of chance.
pub const FEW_SAMPLES: usize = 5;

/// Labels too thin to learn or to judge: fewer than [`FEW_SAMPLES`] training samples, or none in
/// a validation split that other labels have.
fn label_warnings(p: &Prepared, min_samples: usize) -> Vec<String> {
    let names = &p.ds.label_names;
    let list = |ls: &[usize], count: Option<&[usize]>| {
        let shown: Vec<String> = ls
            .iter()
            .take(8)
            .map(|&l| match count {
                Some(c) => format!("{} ({})", names[l], c[l]),
                None => names[l].clone(),
            })
            .collect();
        format!("{}{}", shown.join(", "), if ls.len() > 8 { ", …" } else { "" })
    };
    let mut out = Vec::new();
    let few: Vec<usize> = (0..names.len()).filter(|&l| p.split.train_counts[l] < FEW_SAMPLES).collect();
    if !few.is_empty() && min_samples < FEW_SAMPLES {
        out.push(format!(
            "{} label(s) have fewer than {FEW_SAMPLES} training samples: {}; a model learns little from so few, and \
             their AP and thresholds rest on chance; {} {FEW_SAMPLES} leaves them out",
            few.len(),
            list(&few, Some(&p.split.train_counts)),
            Setting::MinSamples
        ));
    }
    let unseen: Vec<usize> = (0..names.len()).filter(|&l| p.split.val_counts[l] == 0).collect();
    if !p.split.val.is_empty() && !unseen.is_empty() {
        out.push(format!(
            "{} label(s) have no validation samples: {}; validation says nothing about them (no AP, no threshold); \
             a larger {} gives them some, or {} leaves out labels this thin",
            unseen.len(),
            list(&unseen, None),
            Setting::ValFraction,
            Setting::MinSamples
        ));
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// One epoch; returns (mean loss, images per second, seconds).
fn train_epoch(
    trainer: &mut Trainer,
    loader: &data::Loader,
    epoch: u64,
    teachers: Option<&distill::Targets>,
    on: &mut dyn FnMut(Event),
) -> Result<(f64, f64, f64)> {
    let t0 = Instant::now();
    let (mut sum, mut n, mut last, mut images) = (0.0f64, 0usize, None, 0usize);
    // Steps finish after `step` returns (their losses come with later calls), so the rate
    // counts the images of finished steps only: `pending` holds the batch sizes still running.
    let (mut pending, mut finished) = (std::collections::VecDeque::new(), 0usize);
    let mut record =
        |losses: Vec<(u64, f32)>, last: &mut Option<f32>, pending: &mut std::collections::VecDeque<usize>| {
            for (_, l) in losses {
                sum += l as f64;
                n += 1;
                *last = Some(l);
                finished += pending.pop_front().unwrap_or(0);
            }
            finished
        };
    let classes = trainer.model.net.config.num_classes;
    for b in loader.epoch(epoch) {
        let (onehot, taught);
        let targets = match (&b.targets, trainer.config.loss) {
            (_, LossKind::DistillL2) => {
                let t = teachers.ok_or_else(|| Error::Invalid("distillation needs its teachers' embeddings".into()))?;
                taught = t.gather(&b.indices)?;
                Targets::Embeddings(&taught)
            }
            (BatchTargets::Single(c), LossKind::Sigmoid { .. }) => {
                onehot = one_hot(c, classes);
                Targets::Multi(&onehot)
            }
            (BatchTargets::Single(c), _) => Targets::Classes(c),
            (BatchTargets::Multi(m), _) => Targets::Multi(m),
        };
        let res = trainer.step(&b.images, targets);
        // A sharded loader serves this process's rows; the rate counts every process's.
        let rows = b.len() * trainer.collective().map_or(1, |c| c.size());
        pending.push_back(rows);
        let done = record(res?, &mut last, &mut pending);
        images += rows;
        let ips = (done > 0).then(|| done as f64 / t0.elapsed().as_secs_f64().max(1e-9));
        on(Event::Step { loss: last, images_per_s: ips });
    }
    record(trainer.finish()?, &mut last, &mut pending);
    let secs = t0.elapsed().as_secs_f64();
    Ok((sum / n.max(1) as f64, images as f64 / secs.max(1e-9), secs))
}

fn one_hot(c: &[u32], classes: usize) -> Vec<f32> {
    let mut v = vec![0.0; c.len() * classes];
    c.iter().enumerate().for_each(|(i, &l)| v[i * classes + l as usize] = 1.0);
    v
}

/// Leave-one-out retrieval over the validation split: each validation image a query against the
/// others (of its vertical, when the data has verticals).
fn validate_embedding(pred: &Predictor, p: &Prepared, norm: &Normalize) -> Result<RetrievalScores> {
    let val = &p.split.val;
    let emb = pred.samples(&p.ds, val, norm)?;
    let labels: Vec<u32> = val.iter().map(|&i| p.ds.targets.labels(i)[0]).collect();
    let groups: Option<Vec<u32>> = p.verticals.as_ref().map(|g| val.iter().map(|&i| g.of[i]).collect());
    let mut set = Retrieval::leave_one_out(&labels);
    if let (Some(ids), Some(g)) = (&groups, &p.verticals) {
        set = set.with_groups(RetrievalGroups { queries: ids, gallery: ids, names: &g.names });
    }
    Ok(retrieval_gpu(pred.gpu(), &set, &emb, &emb, pred.classes)?.overall)
}

/// Macro mAP and (single-label) top-1 accuracy on the validation split.
fn validate(pred: &Predictor, p: &Prepared, norm: &Normalize, cfg: &RunConfig) -> Result<(Option<f64>, Option<f64>)> {
    let scores = score(pred, &p.ds, &p.split.val, norm, cfg.multi())?;
    let ev = evaluate_split(&scores, &p.ds, &p.split.val, cfg, &EvalOptions::default())?;
    let top1 = ev.report.single.as_ref().and_then(|s| s.top1_accuracy);
    Ok((ev.report.macro_ap, top1))
}
