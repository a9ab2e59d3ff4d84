//! Run folders through the library, no CLI: train, resume, evaluate and tag; run folders of the
//! first schema (config.json without a version, as tailor wrote before `tailor::run`); and the
//! failures an app matches by variant. This binary never switches to flag names, so messages
//! here speak of configuration fields.

mod sample;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tailor::nn::tagger::Tagger;
use tailor::run::{self, EvalSettings, Event, RunConfig, RunSettings, Start};
use tailor::setting::Setting;
use tailor::{Error, Gpu};

fn gpu() -> Arc<Gpu> {
    tailor::ops::tune::set_mode(tailor::ops::tune::Mode::Off);
    Gpu::new().expect("no GPU adapter: run scripts/install-lavapipe.sh")
}

fn temp(name: &str) -> PathBuf {
    sample::temp("run", name)
}

fn fixture(dir: &Path, n: usize) -> PathBuf {
    sample::bands(dir, n)
}

/// A tiny network on `csv`: 1 epoch, a quarter for validation.
fn settings(csv: &Path) -> RunSettings {
    let mut s = RunSettings::default();
    s.data.data = Some(csv.to_path_buf());
    s.arch.growth_rate = Some(4);
    s.arch.blocks = vec![1, 1];
    s.batch_size = 6;
    s.epochs = 1;
    s.split.val_fraction = 0.25;
    s
}

fn new_run(s: RunSettings, dir: &Path) -> Start {
    Start::New { settings: Box::new(s), dir: dir.to_path_buf(), overwrite: false }
}

fn resume(dir: &Path, epochs: usize) -> Start {
    Start::Resume { dir: dir.to_path_buf(), epochs: Some(epochs), data: None, image_dir: None }
}

#[test]
fn a_run_trains_resumes_evaluates_and_tags_with_events() {
    let dir = temp("main");
    let csv = fixture(&dir, 24);
    let out = dir.join("run");
    let g = gpu();
    let (mut steps, mut ends, mut data) = (0, Vec::new(), 0);
    let mut on = |e: Event| match e {
        Event::Data(p) => data += p.ds.len(),
        Event::EpochStart { steps: n, .. } => assert_eq!(n, 3, "18 training images in batches of 6"),
        Event::Step { .. } => steps += 1,
        Event::EpochEnd { record, epochs } => ends.push((record.epoch, epochs, record.val_macro_map.is_some())),
        _ => {}
    };
    let first = run::train(&g, &new_run(settings(&csv), &out), &mut on).unwrap();
    assert_eq!(first.config.epochs_done, 1);
    assert_eq!(first.config.schema, run::SCHEMA);
    let second = run::train(&g, &resume(&out, 2), &mut on).unwrap();
    assert_eq!((data, steps, ends), (48, 6, vec![(1, 1, true), (2, 2, true)]));
    assert_eq!(second.config.epochs_done, 2);
    // What is on disk is what train returned, and it names what it is.
    let saved = RunConfig::load(&out).unwrap();
    assert_eq!(saved, second.config);
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(text.contains("\"schema\": 2") && text.contains("\"task\": \"classify\""), "{text}");
    assert!(text.contains("\"weighting\": \"iew\"") && text.contains("\"loss\": \"softmax\""), "{text}");
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count(), 2);

    let report = run::evaluate(&g, &EvalSettings::new(&out), &mut run::quiet).unwrap();
    assert_eq!(report.labels.len(), 3);
    assert!(out.join("eval.json").is_file() && out.join("thresholds.json").is_file());

    let tagger = Tagger::load(g, &out, 4).unwrap();
    let (tagged, _) = tagger.tag_files(&[dir.join("images/000.png")], 2).unwrap();
    assert_eq!(tagged[0].chosen.len(), 2);
    assert_eq!(tagger.labels, ["cat", "dog", "owl"]);
}

/// A config.json as tailor wrote it before the file carried a schema version: the settings are
/// the command line's flags under `args` (with `null` epochs and an upper-case weighting, as a
/// user could give them).
fn schema1_config(csv: &Path, out: &Path, fingerprint: &str) -> String {
    let csv = csv.display();
    let out = out.display();
    format!(
        r#"{{
  "model": {{"growth_rate": 4, "block_config": [1, 1], "num_init_features": 8, "bn_size": 4,
    "compression": 0.5, "num_classes": 3, "in_channels": 1, "stem": "small", "memory_efficient": true}},
  "arch": "densenet-bc-custom",
  "preprocess": {{"width": 16, "height": 16, "channels": 1, "mean": [0.5], "std": [0.5]}},
  "label_names": ["cat", "dog", "owl"],
  "label_kind": "single",
  "loss": "softmax",
  "focal_gamma": 0.0,
  "weighting": "iew",
  "beta": 0.99,
  "class_weights": [1.0, 1.0, 1.0],
  "train_counts": [6, 6, 6],
  "val_counts": [2, 2, 2],
  "train_samples": 18,
  "val_samples": 6,
  "source": {{"path": "{csv}", "idx_prefix": null, "image_column": "file", "image_dir": null,
    "labels": {{"kind": "column", "column": "label"}}}},
  "split_seed": 0,
  "epochs_done": 1,
  "data_fingerprint": "{fingerprint}",
  "args": {{
    "data": {{"data": "{csv}", "label_column": null, "label_columns": [], "tags_column": null, "tag_sep": ";",
      "image_column": "file", "image_dir": null, "idx_prefix": "train", "image_size": null, "grayscale": false,
      "rgb": false}},
    "arch": {{"arch": "densenet-bc", "growth_rate": 4, "blocks": [1, 1], "bn_size": null}},
    "loss": null, "weighting": "IEW", "beta": 0.99, "focal_gamma": 0.0, "optimizer": "adam", "lr": 0.001,
    "weight_decay": 0.0, "no_decay_bn_bias": false, "schedule": "constant", "lr_step": 30, "lr_gamma": 0.1,
    "warmup": 0, "batch_size": 6, "epochs": null, "seed": 0, "val_fraction": 0.25, "split_by": null,
    "imbalance": null, "min_samples": 0, "augment": false, "init": null, "out": "{out}"
  }}
}}"#
    )
}

#[test]
fn run_folders_of_the_first_schema_open_resume_and_evaluate() {
    let dir = temp("schema1");
    let csv = fixture(&dir, 24);
    let out = dir.join("run");
    let g = gpu();
    // A checkpoint after one epoch, then its config.json replaced by one of the first schema.
    let first = run::train(&g, &new_run(settings(&csv), &out), &mut run::quiet).unwrap();
    let fingerprint = first.config.data_fingerprint.clone().unwrap();
    std::fs::write(out.join("config.json"), schema1_config(&csv, &out, &fingerprint)).unwrap();

    let old = RunConfig::load(&out).unwrap();
    assert_eq!(old.schema, 1);
    assert_eq!(old.task, run::Task::Classify);
    assert_eq!(old.settings.weighting, run::WeightingKind::Iew);
    assert_eq!(old.settings.epochs, run::DEFAULT_EPOCHS, "null epochs were the default");
    assert_eq!((old.settings.batch_size, old.settings.split.val_fraction), (6, 0.25));
    assert_eq!(old.model, first.config.model);
    assert_eq!(old.data_fingerprint, first.config.data_fingerprint);

    // It evaluates and tags as it is, and trains on; its next checkpoint is of the new schema.
    run::evaluate(&g, &EvalSettings::new(&out), &mut run::quiet).unwrap();
    Tagger::load(g.clone(), &out, 4).unwrap();
    let resumed = run::train(&g, &resume(&out, 2), &mut run::quiet).unwrap();
    assert_eq!(resumed.config.epochs_done, 2);
    assert_eq!(RunConfig::load(&out).unwrap().schema, run::SCHEMA);
}

#[test]
fn failures_are_matched_by_variant_and_name_configuration_fields() {
    let dir = temp("errors");
    let csv = fixture(&dir, 24);
    let out = dir.join("run");
    let g = gpu();

    // Settings wrong whatever the data: refused before anything is loaded, named by field.
    let mut s = settings(&csv);
    s.batch_size = 0;
    let e = run::train(&g, &new_run(s, &out), &mut run::quiet).err().unwrap();
    assert!(matches!(e, Error::Setting { setting: Setting::BatchSize, .. }), "{e:?}");
    assert!(e.to_string().starts_with("batch_size 0:") && !e.to_string().contains("--"), "{e}");
    let e = "adamx".parse::<tailor::nn::optim::OptimizerKind>().unwrap_err();
    assert!(matches!(e, Error::Setting { setting: Setting::Optimizer, .. }) && e.to_string().contains("adam or adamw"));

    // A learning rate that overflows: the run stops in its first epoch, and leaves no folder.
    let mut s = settings(&csv);
    s.lr = 1e38;
    let e = run::train(&g, &new_run(s, &out), &mut run::quiet).err().unwrap();
    assert!(matches!(e, Error::Stopped { epoch: 1, .. }), "{e:?}");
    assert!(matches!(e.root(), Error::NonFiniteLoss { .. } | Error::Diverged { .. }), "{e:?}");
    assert!(e.to_string().contains("learning rate (lr)"), "{e}");
    assert!(!out.exists());

    // A finished run is not overwritten unasked; a changed dataset does not resume it.
    run::train(&g, &new_run(settings(&csv), &out), &mut run::quiet).unwrap();
    let e = run::train(&g, &new_run(settings(&csv), &out), &mut run::quiet).err().unwrap();
    assert!(matches!(&e, Error::RunExists { dir } if dir == &out), "{e:?}");
    assert!(e.to_string().contains("resume") && e.to_string().contains("overwrite"), "{e}");
    let other = dir.join("other");
    let other_csv = fixture(&other, 27);
    let moved = Start::Resume { dir: out.clone(), epochs: Some(2), data: Some(other_csv), image_dir: None };
    let e = run::train(&g, &moved, &mut run::quiet).err().unwrap();
    assert!(matches!(e, Error::DataChanged { change: tailor::error::DataChange::Counts { .. }, .. }), "{e:?}");

    // A folder without a run, and a config.json of a schema from the future.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = RunConfig::load(&empty).unwrap_err();
    assert!(matches!(e, Error::NoRun { holds: tailor::error::NotARun::Nothing, .. }), "{e:?}");
    let photos = dir.join("images");
    let e = RunConfig::load(&photos).unwrap_err();
    assert!(matches!(e, Error::NoRun { holds: tailor::error::NotARun::Images, .. }), "{e:?}");
    assert!(e.to_string().contains("holds images") && e.to_string().contains("model"), "{e}");
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    std::fs::write(out.join("config.json"), text.replace("\"schema\": 2", "\"schema\": 99")).unwrap();
    let e = RunConfig::load(&out).unwrap_err();
    assert!(matches!(&e, Error::UnknownSchema { found, .. } if found == "99"), "{e:?}");
    assert!(e.to_string().contains("schema 99"), "{e}");
}

#[test]
fn the_best_epoch_is_kept_used_and_stops_a_run_that_stalls() {
    let dir = temp("best");
    let csv = fixture(&dir, 24);
    let out = dir.join("run");
    let g = gpu();
    // Without learning (lr 0), validation top-1 stays where the first epoch put it: no later
    // epoch is better, so patience 2 stops the run two epochs after its best.
    let mut s = settings(&csv);
    (s.lr, s.epochs, s.patience, s.best_by) = (0.0, 8, Some(2), Some(run::Metric::Top1));
    let mut stops = Vec::new();
    let done = run::train(&g, &new_run(s, &out), &mut |e| {
        if let Event::EarlyStop { epoch, best, patience } = e {
            stops.push((epoch, best.epoch, patience));
        }
    })
    .unwrap();
    let best = done.config.best.expect("a best epoch");
    assert_eq!(best.by, run::Metric::Top1);
    assert!(done.config.epochs_done < 8, "{:?}", done.config.best);
    assert_eq!(done.config.epochs_done, best.epoch + 2);
    assert_eq!(stops, [(done.config.epochs_done, best.epoch, 2)]);
    assert!(out.join("model_best.safetensors").is_file());
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines, done.config.epochs_done);

    // Evaluation takes the best epoch's weights unless told otherwise.
    let mut used = None;
    run::evaluate(&g, &EvalSettings::new(&out), &mut |e| {
        if let Event::Evaluating { best_epoch, .. } = e {
            used = Some(best_epoch);
        }
    })
    .unwrap();
    assert_eq!(used, Some(Some(best.epoch)));
    let mut last = EvalSettings::new(&out);
    last.weights = run::Weights::Last;
    run::evaluate(&g, &last, &mut |e| {
        if let Event::Evaluating { best_epoch, .. } = e {
            used = Some(best_epoch);
        }
    })
    .unwrap();
    assert_eq!(used, Some(None));

    // A run its patience stopped does not train on when resumed to more epochs.
    let mut stopped = false;
    let again = run::train(&g, &resume(&out, 12), &mut |e| stopped |= matches!(e, Event::EarlyStop { .. })).unwrap();
    assert!(stopped);
    assert_eq!(again.config.epochs_done, done.config.epochs_done);
}
