//! `tailor predict`: labels with probabilities for image files, from a run folder or from a
//! torchvision state dict (ImageNet preprocessing).

use std::path::{Path, PathBuf};

use super::common::{self, RunConfig};
use crate::data::image::{load_fitted, to_chw, FitCounts, Placement};
use crate::data::{ImageSpec, Normalize};
use crate::error::{Error, Result};
use crate::nn::checkpoint::StateDict;
use crate::nn::densenet::{DenseNetConfig, Stem};
use crate::nn::model::Model;
use crate::nn::predict::Predictor;
use crate::Gpu;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    /// Single-label: how many classes to list.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// text, json or csv.
    #[arg(long, default_value = "text")]
    pub format: String,
    /// Print the raw logits too.
    #[arg(long)]
    pub logits: bool,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

/// What the model and its preprocessing are.
struct Loaded {
    model: Model,
    image: ImageSpec,
    norm: Normalize,
    names: Vec<String>,
    multi: bool,
    thresholds: Vec<f64>,
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
    if a.top_k == 0 || a.batch_size == 0 {
        let flag = if a.top_k == 0 { "--top-k" } else { "--batch-size" };
        return Err(Error::Invalid(format!("{flag} 0: give a positive number")));
    }
    let gpu = cli.open_gpu()?;
    let l = match (&a.model, &a.weights) {
        (Some(dir), _) => from_run(&gpu, dir)?,
        (None, Some(w)) => from_weights(&gpu, a, w)?,
        (None, None) => {
            return Err(Error::Invalid("give --model DIR (a tailor run) or --weights FILE.safetensors".into()))
        }
    };
    let images = expand_folders(&a.images)?;
    let n = l.image.len();
    let c = l.names.len();
    let batch = a.batch_size.clamp(1, images.len());
    let pred = Predictor::new(&l.model, batch, l.image.height, l.image.width).map_err(common::too_large_hint)?;
    // A folder may hold many thousands of photos: decode and score them a few batches at a
    // time, so that memory stays that of a few batches whatever the count.
    let chunk = batch * 8;
    let bar = ProgressBar::with_draw_target(Some(images.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("predicting [{bar:30}] {pos}/{len} images, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if images.len() <= chunk {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut fitted = FitCounts::default();
    let mut rows: Vec<Row> = Vec::with_capacity(images.len());
    for paths in images.chunks(chunk) {
        let mut input = vec![0f32; paths.len() * n];
        for (path, out) in paths.iter().zip(input.chunks_mut(n)) {
            let (px, counts) = load_fitted(path, &l.image)?;
            to_chw(&px, &l.image, &l.norm, Placement::default(), out);
            fitted.add(counts);
        }
        let logits = pred.logits(&input)?;
        if let Some(k) = logits.iter().position(|v| !v.is_finite()) {
            return Err(Error::file(
                &paths[k / c],
                format!(
                    "the model's output for this image is {}: its weights are not finite (the run diverged); \
                     retrain with a lower --lr",
                    logits[k]
                ),
            ));
        }
        let mut probs = logits.clone();
        if l.multi {
            common::sigmoid(&mut probs);
        } else {
            common::softmax_rows(&mut probs, c);
        }
        for (i, path) in paths.iter().enumerate() {
            let chosen = choose(&probs[i * c..(i + 1) * c], &l, a.top_k);
            rows.push((path.clone(), chosen, logits[i * c..(i + 1) * c].to_vec()));
        }
        bar.inc(paths.len() as u64);
    }
    bar.finish_and_clear();
    // On stderr, so that --format json and csv stay machine-readable.
    if let Some(note) = fitted.note(&l.image) {
        eprintln!("note: {note}");
    }
    print(a, &l, &rows);
    Ok(())
}

/// The image files to score: each file as given, and each folder's PNG and JPEG files (not
/// its subfolders), in name order.
fn expand_folders(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| Error::file(p, format!("cannot list the folder: {e}")))?;
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|f| {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
                f.is_file() && matches!(ext.as_str(), "png" | "jpg" | "jpeg")
            })
            .collect();
        if found.is_empty() {
            return Err(Error::file(
                p,
                "a folder without PNG or JPEG files (.png, .jpg, .jpeg); give image files or a folder of them",
            ));
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// The labels to report: top-k by probability, or those at or above their threshold.
fn choose(p: &[f32], l: &Loaded, k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    if l.multi {
        idx.into_iter().filter(|&j| p[j] as f64 >= l.thresholds[j]).map(|j| (j, p[j])).collect()
    } else {
        idx.into_iter().take(k).map(|j| (j, p[j])).collect()
    }
}

/// An image, the labels reported for it with their probabilities, and its logits.
type Row = (PathBuf, Vec<(usize, f32)>, Vec<f32>);

fn print(a: &PredictArgs, l: &Loaded, rows: &[Row]) {
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = rows
                .iter()
                .map(|(path, chosen, logits)| {
                    let labels: Vec<_> = chosen
                        .iter()
                        .map(|&(j, p)| serde_json::json!({"label": l.names[j], "probability": p}))
                        .collect();
                    let mut o = serde_json::json!({"image": path.display().to_string(), "labels": labels});
                    if a.logits {
                        o["logits"] = serde_json::json!(logits);
                    }
                    o
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
        }
        "csv" => {
            println!("image,label,probability");
            for (path, chosen, _) in rows {
                for &(j, p) in chosen {
                    println!("{},{},{p:.6}", csv_field(&path.display().to_string()), csv_field(&l.names[j]));
                }
            }
        }
        _ => {
            for (path, chosen, logits) in rows {
                let shown: Vec<String> = chosen.iter().map(|&(j, p)| format!("{} {p:.4}", l.names[j])).collect();
                let shown = if shown.is_empty() { "(no label above its threshold)".into() } else { shown.join(", ") };
                println!("{}: {shown}", path.display());
                if a.logits {
                    let v: Vec<String> = logits.iter().map(|x| format!("{x:.4}")).collect();
                    println!("  logits: {}", v.join(" "));
                }
            }
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn from_run(gpu: &std::sync::Arc<Gpu>, dir: &Path) -> Result<Loaded> {
    let cfg = RunConfig::load(dir)?;
    let mut model = Model::new(gpu.clone(), cfg.model.clone(), 0)?;
    let weights = dir.join("model.safetensors");
    model.load_own_state_dict(&StateDict::load(&weights)?, &weights)?;
    let multi = cfg.loss == "sigmoid";
    let thresholds = load_thresholds(dir, &cfg.label_names)?;
    Ok(Loaded {
        model,
        image: cfg.preprocess.image_spec()?,
        norm: cfg.preprocess.normalize(),
        names: cfg.label_names,
        multi,
        thresholds,
    })
}

/// The thresholds `tailor eval` saved, 0.5 for a label without one.
fn load_thresholds(dir: &Path, names: &[String]) -> Result<Vec<f64>> {
    let path = dir.join("thresholds.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(vec![0.5; names.len()]) };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&path, format!("not JSON ({e}); delete it or run tailor eval again")))?;
    Ok(names.iter().map(|n| v["thresholds"][n].as_f64().unwrap_or(0.5)).collect())
}

fn from_weights(gpu: &std::sync::Arc<Gpu>, a: &PredictArgs, path: &Path) -> Result<Loaded> {
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
    Ok(Loaded {
        model,
        image: ImageSpec::new(w, h, channels)?,
        norm: Normalize::default_for(channels),
        names,
        multi: false,
        thresholds: vec![0.5; classes],
    })
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
