//! `tailor predict`: labels with probabilities for image files, from a run folder or from a
//! torchvision state dict (ImageNet preprocessing).

use std::path::{Path, PathBuf};

use super::common::{self, csv_field};
use crate::data::{FitCounts, ImageSpec, Normalize};
use crate::error::{Error, Result};
use crate::nn::checkpoint::StateDict;
use crate::nn::densenet::{DenseNetConfig, Stem};
use crate::nn::model::Model;
use crate::nn::tagger::{Tagged, Tagger};
use crate::run::Weights;
use crate::Gpu;
use indicatif::ProgressDrawTarget;

#[derive(clap::Args, Clone, Debug)]
pub struct PredictArgs {
    /// Image files (PNG or JPEG), or folders of them (each folder's .png, .jpg and .jpeg files).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A run folder written by `tailor train`.
    #[arg(long, conflicts_with = "weights")]
    pub model: Option<PathBuf>,
    /// A DenseNet state dict (safetensors, torchvision's names) instead of a run folder.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// With --weights: build this preset (RGB input) instead of the network the tensors describe.
    #[arg(long)]
    pub arch: Option<String>,
    /// With --weights: the number of classes (default: from the classifier's shape).
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// With --weights: a file with one class name per line.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// With --weights: the input size (default: 224 for torchvision's ImageNet stem; a small-image
    /// DenseNet-BC needs it given).
    #[arg(long)]
    pub image_size: Option<String>,
    /// Single-label: how many classes to list (default 5). Multi-label runs list every label at
    /// or above its threshold instead.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// text, json or csv. csv has a row per listed label (image,label,probability); an image
    /// with none gets one row with empty label and probability.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Print the raw logits too (csv: a logit:LABEL column per label, repeated on each of the
    /// image's rows).
    #[arg(long)]
    pub logits: bool,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// With --model: the last epoch's weights (default: the best epoch's, where they differ).
    #[arg(long, requires = "model")]
    pub last: bool,
}

pub fn run(cli: &super::Cli, a: &PredictArgs) -> Result<()> {
    if !["text", "json", "csv"].contains(&a.format.as_str()) {
        return Err(Error::Invalid(format!("--format '{}': use text, json or csv", a.format)));
    }
    if a.model.is_some()
        && (a.num_classes.is_some() || a.labels.is_some() || a.image_size.is_some() || a.arch.is_some())
    {
        return Err(Error::Invalid(
            "--arch, --num-classes, --labels and --image-size are for --weights; a --model run folder knows its own"
                .into(),
        ));
    }
    let top_k = a.top_k.unwrap_or(5);
    if top_k == 0 || a.batch_size == 0 {
        let flag = if top_k == 0 { "--top-k" } else { "--batch-size" };
        return Err(Error::Invalid(format!("{flag} 0: give a positive number")));
    }
    let images = common::expand_folders(&a.images)?;
    let gpu = cli.open_gpu()?;
    let batch = a.batch_size.clamp(1, images.len());
    let tagger = match (&a.model, &a.weights) {
        (Some(dir), _) => {
            let which = if a.last { Weights::Last } else { Weights::Best };
            Tagger::load_weights(gpu.clone(), dir, batch, which)
        }
        (None, Some(w)) => from_weights(&gpu, a, w, batch),
        (None, None) => {
            return Err(Error::Invalid("give --model DIR (a tailor run) or --weights FILE.safetensors".into()))
        }
    }
    .map_err(Error::fit_hint)?;
    // On stderr, so that --format json and csv stay machine-readable.
    if tagger.multi {
        if a.top_k.is_some() {
            eprintln!(
                "note: --top-k applies to single-label runs; this multi-label run lists every label at or above \
                 its threshold"
            );
        }
        if let Some(note) = a.model.as_deref().and_then(|dir| never_chosen_note(&tagger, dir)) {
            eprintln!("note: {note}");
        }
    }
    // A folder may hold many thousands of photos: decode and score them a few batches at a
    // time, so that memory stays that of a few batches whatever the count.
    let chunk = batch * 8;
    let bar = common::progress_bar(images.len(), "predicting [{bar:30}] {pos}/{len} images, eta {eta}");
    if images.len() <= chunk {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut fitted = FitCounts::default();
    let mut rows: Vec<Row> = Vec::with_capacity(images.len());
    for paths in images.chunks(chunk) {
        let (tagged, counts) = tagger.tag_files(paths, top_k)?;
        fitted.add(counts);
        rows.extend(paths.iter().cloned().zip(tagged));
        bar.inc(paths.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(note) = fitted.note(&tagger.image) {
        eprintln!("note: {note}");
    }
    print(a, &tagger, &rows);
    Ok(())
}

/// "2 labels (a, b) have no threshold …": the labels of a multi-label run that are never chosen.
fn never_chosen_note(t: &Tagger, dir: &Path) -> Option<String> {
    let none: Vec<&str> =
        t.labels.iter().zip(&t.thresholds).filter(|(_, th)| th.is_none()).map(|(n, _)| n.as_str()).collect();
    if none.is_empty() {
        return None;
    }
    const SHOWN: usize = 10;
    let mut names = none[..none.len().min(SHOWN)].join(", ");
    if none.len() > SHOWN {
        names += &format!(", … ({} more)", none.len() - SHOWN);
    }
    let file = dir.join("thresholds.json");
    let floor = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["precision_floor"].as_f64())
        .map_or(String::new(), |f| format!(" of {f}"));
    let (what, have, them, they) =
        if none.len() == 1 { ("label", "has", "it", "it is") } else { ("labels", "have", "them", "they are") };
    Some(format!(
        "{} {what} ({names}) {have} no threshold in {}: tailor eval found none reaching its precision floor{floor} \
         (or no positive images of {them}), so {they} never chosen; for a threshold, run tailor eval again \
         with a lower --min-precision",
        none.len(),
        file.display()
    ))
}

/// An image and what the model made of it.
type Row = (PathBuf, Tagged);

fn print(a: &PredictArgs, t: &Tagger, rows: &[Row]) {
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = rows
                .iter()
                .map(|(path, r)| {
                    let labels: Vec<_> = r
                        .chosen
                        .iter()
                        .map(|&(j, p)| serde_json::json!({"label": t.labels[j], "probability": p}))
                        .collect();
                    let mut o = serde_json::json!({"image": path.display().to_string(), "labels": labels});
                    if a.logits {
                        o["logits"] = serde_json::json!(r.logits);
                    }
                    o
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        }
        "csv" => {
            // A row per listed label; an image with none still gets its row, with empty label
            // and probability. --logits adds the image's logits, a column per label.
            let mut header = String::from("image,label,probability");
            if a.logits {
                for name in &t.labels {
                    header += &format!(",{}", csv_field(&format!("logit:{name}")));
                }
            }
            println!("{header}");
            for (path, r) in rows {
                let image = csv_field(&path.display().to_string());
                let logits: String =
                    if a.logits { r.logits.iter().map(|x| format!(",{x:.6}")).collect() } else { String::new() };
                if r.chosen.is_empty() {
                    println!("{image},,{logits}");
                }
                for &(j, p) in &r.chosen {
                    println!("{image},{},{p:.6}{logits}", csv_field(&t.labels[j]));
                }
            }
        }
        _ => {
            for (path, r) in rows {
                let shown: Vec<String> = r.chosen.iter().map(|&(j, p)| format!("{} {p:.4}", t.labels[j])).collect();
                let shown = if shown.is_empty() { "(no label above its threshold)".into() } else { shown.join(", ") };
                println!("{}: {shown}", path.display());
                if a.logits {
                    let v: Vec<String> = r.logits.iter().map(|x| format!("{x:.4}")).collect();
                    println!("  logits: {}", v.join(" "));
                }
            }
        }
    }
}

fn from_weights(gpu: &std::sync::Arc<Gpu>, a: &PredictArgs, path: &Path, batch: usize) -> Result<Tagger> {
    let sd = StateDict::load(path)?;
    let cfg = weights_config(a, &sd, path)?;
    let classes = cfg.num_classes;
    let mut model = Model::new(gpu.clone(), cfg.clone(), 0)?;
    let r = model.load_state_dict(&sd).map_err(|e| {
        let built = match &a.arch {
            Some(arch) => format!("--arch {arch} builds that preset for RGB input"),
            None => "the network was read off the tensors".into(),
        };
        Error::file(path, format!("{e}; {built}, so for a model trained by tailor give its run folder with --model"))
    })?;
    if let Some((from, to)) = r.reinit_classifier {
        return Err(Error::file(
            path,
            format!("its classifier has {from} classes, not {to}; drop --num-classes or give {from}"),
        ));
    }
    let size = match (&a.image_size, cfg.stem) {
        (Some(s), _) => s.clone(),
        (None, Stem::Imagenet) => "224".into(),
        (None, Stem::Small) => {
            return Err(Error::file(
                path,
                format!(
                    "holds a small-image DenseNet-BC ({}), whose input size the weights do not record; give the \
                     size it was trained at with --image-size, or its run folder with --model{}",
                    describe(&cfg),
                    run_folder_hint(path)
                ),
            ))
        }
    };
    let (w, h) = ImageSpec::parse_size(&size)?;
    let names = match &a.labels {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::file(p, format!("cannot read: {e}")))?;
            let names: Vec<String> = text.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
            if names.len() != classes {
                return Err(Error::file(p, format!("has {} names for {classes} classes", names.len())));
            }
            names
        }
        None => (0..classes).map(|i| i.to_string()).collect(),
    };
    // The normalisation tailor trains with (ImageNet's for RGB, as torchvision's models expect).
    let channels = cfg.in_channels;
    let (image, norm) = (ImageSpec::new(w, h, channels)?, Normalize::default_for(channels));
    Tagger::new(model, image, norm, names, false, vec![Some(0.5); classes], batch)
}

/// The network of `--weights`: the preset `--arch` names, else the one the tensors describe.
fn weights_config(a: &PredictArgs, sd: &StateDict, path: &Path) -> Result<DenseNetConfig> {
    let mut cfg = match &a.arch {
        Some(arch) => DenseNetConfig::preset(arch, 1, 3).map_err(|e| Error::Invalid(format!("--arch: {e}")))?,
        None => sd.densenet_config().map(|(c, _)| c).map_err(|e| {
            Error::file(
                path,
                format!(
                    "cannot tell which DenseNet these weights are for: {e}; give --arch (a torchvision preset) \
                     or, for a model trained by tailor, its run folder with --model{}",
                    run_folder_hint(path)
                ),
            )
        })?,
    };
    let in_file = sd.tensors.get("classifier.weight").map(|(s, _)| s[0]);
    cfg.num_classes = match (a.num_classes, in_file) {
        (Some(n), _) => n,
        (None, Some(n)) => n,
        (None, None) => {
            return Err(Error::file(
                path,
                "has no 'classifier.weight'; give --num-classes and check that it is a DenseNet",
            ))
        }
    };
    Ok(cfg)
}

/// " (here: --model DIR)" when the weights lie in a run folder.
fn run_folder_hint(path: &Path) -> String {
    match path.parent().filter(|d| d.join("config.json").is_file()) {
        Some(d) => format!(" (here: --model {})", if d.as_os_str().is_empty() { Path::new(".") } else { d }.display()),
        None => String::new(),
    }
}

/// "growth rate 4, blocks 1,1, 1 input channel": the numbers that tell small networks apart.
fn describe(c: &DenseNetConfig) -> String {
    let blocks: Vec<String> = c.block_config.iter().map(usize::to_string).collect();
    format!("growth rate {}, blocks {}, {} input channel(s)", c.growth_rate, blocks.join(","), c.in_channels)
}
