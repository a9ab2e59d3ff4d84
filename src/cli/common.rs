//! What the commands share: the data, split and model flags (each filling its part of the
//! library's settings), how a run's events are printed, and the progress bars.

use std::path::PathBuf;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::data::source::DataSpec;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PrecompileProgress};
use crate::nn::arch::ArchSpec;
use crate::run::{Choice, Event, SplitSettings};

/// A clap value parser for a setting with a fixed set of words.
pub fn choice<T: Choice>(s: &str) -> Result<T, String> {
    T::parse_word(s).map_err(|_| format!("use {}", T::choices()))
}

/// Where the images and labels come from.
#[derive(clap::Args, Clone, Debug, Default, serde::Serialize)]
pub struct DataArgs {
    /// A CSV file (one row per image) or a folder of MNIST-style IDX files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Single-label: the column holding each image's class (default: `label`); `a+b`: the values
    /// of columns a and b together (e.g. `articleType+baseColour`).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Multi-label: columns whose `column=value` pairs are the labels, e.g. `colour,season`.
    #[arg(long, value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// Multi-label: one column of tags, split at --tag-sep.
    #[arg(long)]
    pub tags_column: Option<String>,
    /// Multi-label: what separates the tags in --tags-column's cells.
    #[arg(long, default_value = ";")]
    pub tag_sep: String,
    /// The column with each image's file name.
    #[arg(long, default_value = "file")]
    pub image_column: String,
    /// The folder image names are relative to (default: beside the CSV, or its images/).
    #[arg(long)]
    pub image_dir: Option<PathBuf>,
    /// For an IDX folder: which files to read (train or t10k).
    #[arg(long, default_value = "train")]
    pub idx_prefix: String,
    /// The CSV column naming each image's vertical (shoes, bags, …): embedding runs are
    /// evaluated per vertical, searching within the query's own.
    #[arg(long)]
    pub vertical_column: Option<String>,
    /// Keep only the rows of these verticals (a specialist: one), e.g. `Shoes` or `Shoes,Bags`.
    #[arg(long, value_delimiter = ',', requires = "vertical_column")]
    pub vertical: Vec<String>,
}

/// The model input a new run's images are fitted to (a trained run knows its own).
#[derive(clap::Args, Clone, Debug, Default, serde::Serialize)]
pub struct ImageArgs {
    /// Model input size: N for N×N or WxH such as 48x64 (default: the most common size among up
    /// to 256 of the images; IDX: the files' size).
    #[arg(long)]
    pub image_size: Option<String>,
    /// Read images as one gray channel (default: RGB when any of the images looked at has
    /// colour, else gray).
    #[arg(long, conflicts_with = "rgb")]
    pub grayscale: bool,
    /// Read images as RGB.
    #[arg(long)]
    pub rgb: bool,
}

impl DataArgs {
    /// The data settings these flags give; the input size and colour are the images' own
    /// unless `image` sets them.
    pub fn spec(&self, image: Option<&ImageArgs>) -> DataSpec {
        let image = image.cloned().unwrap_or_default();
        DataSpec {
            data: self.data.clone(),
            label_column: self.label_column.clone(),
            label_columns: self.label_columns.clone(),
            tags_column: self.tags_column.clone(),
            tag_sep: self.tag_sep.clone(),
            image_column: self.image_column.clone(),
            image_dir: self.image_dir.clone(),
            idx_prefix: self.idx_prefix.clone(),
            image_size: image.image_size,
            grayscale: image.grayscale,
            rgb: image.rgb,
            vertical_column: self.vertical_column.clone(),
            verticals: self.vertical.clone(),
        }
    }
}

/// How the samples are split into training and validation and thinned: `train`'s flags, which
/// `weights --data` takes too so that it counts the labels training would weight.
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub struct SplitArgs {
    /// The fraction of the samples held out for validation (and not counted for class weights).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// A CSV column whose equal values stay on one side of the split.
    #[arg(long)]
    pub split_by: Option<String>,
    /// Subsample the training split to a long tail with n_max / n_min = RHO (single-label).
    #[arg(long, value_name = "RHO")]
    pub imbalance: Option<f64>,
    /// Drop labels with fewer training samples than this.
    #[arg(long, default_value_t = 0)]
    pub min_samples: usize,
}

impl SplitArgs {
    pub fn settings(&self) -> SplitSettings {
        SplitSettings {
            val_fraction: self.val_fraction,
            split_by: self.split_by.clone(),
            imbalance: self.imbalance,
            min_samples: self.min_samples,
        }
    }

    /// The flags that change the split from a plain seeded one (for refusing them where no
    /// data is split).
    pub fn given(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.split_by.is_some() {
            f.push("--split-by");
        }
        if self.imbalance.is_some() {
            f.push("--imbalance");
        }
        if self.min_samples != 0 {
            f.push("--min-samples");
        }
        f
    }
}

/// The model flags.
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub struct ArchArgs {
    /// densenet121, densenet161, densenet169, densenet201 or densenet-bc.
    #[arg(long, default_value = "densenet-bc")]
    pub arch: String,
    /// Channels each dense layer adds, k (default: the preset's: 32 for densenet121/169/201,
    /// 48 for densenet161, 12 for densenet-bc).
    #[arg(long)]
    pub growth_rate: Option<usize>,
    /// Layers per dense block, e.g. 6,6,6 (default: the preset's).
    #[arg(long, value_delimiter = ',')]
    pub blocks: Vec<usize>,
    /// Bottleneck width of each dense layer's 1×1 convolution, in multiples of the growth rate
    /// (default: the preset's, 4).
    #[arg(long)]
    pub bn_size: Option<usize>,
}

impl ArchArgs {
    pub fn spec(&self) -> ArchSpec {
        ArchSpec {
            arch: self.arch.clone(),
            growth_rate: self.growth_rate,
            blocks: self.blocks.clone(),
            bn_size: self.bn_size,
        }
    }
}

/// Prints a run's events on stderr as the `tailor` command shows them, with a progress bar per
/// epoch on a terminal.
#[derive(Default)]
pub struct Printer {
    bar: Option<ProgressBar>,
}

impl Printer {
    pub fn event(&mut self, e: Event) {
        match e {
            Event::Note(n) => eprintln!("note: {n}"),
            Event::Warning(w) => eprintln!("warning: {w}"),
            Event::Dropped { labels, min_samples } => eprintln!(
                "dropped {} label(s) with fewer than {min_samples} training samples: {}",
                labels.len(),
                labels.join(", ")
            ),
            Event::Data(p) => {
                let kind = if p.ds.kind() == crate::data::LabelKind::Single { "single-label" } else { "multi-label" };
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
            Event::ClassWeights { weighting, labels, train, val, effective, weights } => {
                let width = labels.iter().map(|n| n.chars().count()).max().unwrap_or(5).max(5);
                eprintln!(
                    "class weights ({weighting}) sum to {}, the number of labels (Cui et al.; `tailor weights` shows \
                     them summing to 1)",
                    weights.len()
                );
                eprintln!("{:width$} {:>7} {:>6} {:>10} {:>8}", "label", "train", "val", "effective", weighting);
                for (l, name) in labels.iter().enumerate() {
                    eprintln!("{name:width$} {:>7} {:>6} {:>10.2} {:>8.4}", train[l], val[l], effective[l], weights[l]);
                }
            }
            Event::Init { tensors, from, reinit_classifier } => {
                eprintln!("loaded {tensors} tensors from {}", from.display());
                if let Some((from, to)) = reinit_classifier {
                    eprintln!("the classifier was re-initialised: {from} classes in the checkpoint, {to} here");
                }
            }
            Event::Building { model, params, device } => eprintln!("{model} ({params} parameters) on {device}"),
            Event::Resuming { dir, epoch } => eprintln!("resuming {} after epoch {epoch}", dir.display()),
            Event::Memory { training, validation } => eprintln!(
                "device memory (planned): training {training}; validation {}",
                crate::graph::exec::mib(validation)
            ),
            Event::Replacing { dir } => eprintln!("--overwrite: replacing the run in {}", dir.display()),
            Event::NothingToDo { dir, done, epochs } => {
                let why = if done > epochs { ", and --epochs cannot shorten a run" } else { "" };
                eprintln!("{} already has {done} epochs (--epochs {epochs}){why}; nothing to do", dir.display());
            }
            Event::EpochStart { epoch, epochs, steps } => {
                let bar = progress_bar(steps, "{prefix} [{bar:30}] step {pos}/{len} {msg} eta {eta}");
                bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
                self.bar = Some(bar);
            }
            Event::Step { loss, images_per_s } => {
                if let Some(bar) = &self.bar {
                    if let (Some(l), Some(ips)) = (loss, images_per_s) {
                        bar.set_message(format!("loss {l:.4} {ips:.1} img/s"));
                    }
                    bar.inc(1);
                }
            }
            Event::EpochEnd { record: r, epochs } => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                let fmt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
                let mut msg =
                    format!("epoch {}/{epochs}: loss {:.4}, {:.1} images/s", r.epoch, r.train_loss, r.images_per_s);
                if let Some(map) = r.val_macro_map {
                    msg += &format!(", val macro mAP {}", fmt(map));
                }
                if let Some(top1) = r.val_top1 {
                    msg += &format!(", top-1 {}", fmt(top1));
                }
                if let Some(r1) = r.val_recall_at_1 {
                    msg += &format!(", val Recall@1 {}", fmt(r1));
                }
                if let Some(m) = r.val_map_at_r {
                    msg += &format!(", MAP@R {}", fmt(m));
                }
                eprintln!("{msg}");
            }
            Event::Saved { dir, last, best } => match best {
                // Said when it matters: eval and predict use other weights than the last epoch's.
                Some(b) if b.epoch != last => eprintln!(
                    "saved {} (its best epoch, {} by {} {:.4}, is in model_best.safetensors, which eval and predict \
                     use; --last for the last epoch's)",
                    dir.display(),
                    b.epoch,
                    b.by.describe(),
                    b.value
                ),
                _ => eprintln!("saved {}", dir.display()),
            },
            Event::EarlyStop { epoch, best, patience } => eprintln!(
                "stopped after epoch {epoch}: no better {} than epoch {}'s {:.4} for {patience} epochs (--patience)",
                best.by.describe(),
                best.epoch,
                best.value
            ),
            Event::Evaluating { model, samples, best_epoch } => match best_epoch {
                Some(e) => eprintln!(
                    "evaluating {} on {samples} samples, with its best epoch's weights (epoch {e}; --last for the \
                     last epoch's)",
                    model.display()
                ),
                None => eprintln!("evaluating {} on {samples} samples", model.display()),
            },
            Event::Scheme { name } => eprintln!("== {name} =="),
        }
    }
}

/// A progress bar of `len` steps on stderr (drawn only on a terminal) in the commands' style.
pub fn progress_bar(len: usize, template: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    bar
}

/// A cold start on lavapipe compiles the step's pipelines with LLVM for seconds to tens of
/// seconds before the first step: show that as a progress bar on a terminal, and say afterwards
/// what took the time when it was long enough to notice (also where stderr is a log file).
pub fn show_precompile(gpu: &Gpu) {
    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    gpu.on_precompile(move |p: &PrecompileProgress| {
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        if p.done == 0 && !p.finished {
            *bar = Some(progress_bar(p.total, "compiling GPU pipelines [{bar:30}] {pos}/{len} {elapsed}"));
        } else if let Some(b) = bar.as_ref() {
            b.set_position(p.done as u64);
        }
        if p.finished {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            if p.elapsed >= 2.0 {
                eprintln!(
                    "compiled {} GPU pipelines in {:.1} s (the driver compiles each once; its shader cache \
                     keeps them for later runs)",
                    p.total, p.elapsed
                );
            }
        }
    });
}

/// The image files to use: each file as given, and each folder's PNG and JPEG files (not
/// its subfolders), in name order; one note says how many other files a folder held.
pub fn expand_folders(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let entries = std::fs::read_dir(p).map_err(|e| Error::file(p, format!("cannot list the folder: {e}")))?;
        let (mut found, mut other): (Vec<PathBuf>, Vec<PathBuf>) =
            entries.flatten().map(|e| e.path()).filter(|f| f.is_file()).partition(|f| {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
                matches!(ext.as_str(), "png" | "jpg" | "jpeg")
            });
        other.sort();
        let example = other.first().and_then(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned());
        if found.is_empty() {
            let held = match &example {
                Some(e) => format!(" (it holds {} other file(s), e.g. {e})", other.len()),
                None => String::new(),
            };
            return Err(Error::file(
                p,
                format!(
                    "a folder without PNG or JPEG files (.png, .jpg, .jpeg){held}; give image files or a folder \
                     of them"
                ),
            ));
        }
        if let Some(e) = example {
            let (files, are) = if other.len() == 1 { ("file", "is") } else { ("files", "are") };
            eprintln!("note: skipped {} {files} in {} that {are} not PNG or JPEG, e.g. {e}", other.len(), p.display());
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
