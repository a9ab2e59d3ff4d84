//! What the training, evaluation and prediction commands share: the data flags, the model flags,
//! the run directory's `config.json`, preprocessing and batched scoring.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::data::{
    self, CsvSpec, Dataset, IdxSpec, ImageSpec, LabelKind, LabelSource, Normalize, Preprocess, SplitSpec,
};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, PrecompileProgress};
use crate::nn::densenet::DenseNetConfig;
use crate::nn::predict::{sigmoid, softmax_rows, Predictor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where the images and labels come from.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct DataArgs {
    /// A CSV file (one row per image) or a folder of MNIST-style IDX files.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Single-label: the column holding each image's class (default: `label`).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Multi-label: columns whose `column=value` pairs are the labels, e.g. `colour,season`.
    #[arg(long, value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// Multi-label: one column of tags, split at --tag-sep.
    #[arg(long)]
    pub tags_column: Option<String>,
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

/// How the samples are split into training and validation and thinned: `train`'s flags, which
/// `weights --data` takes too so that it counts the labels training would weight.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
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
    pub fn spec(&self, seed: u64) -> SplitSpec {
        SplitSpec {
            val_fraction: self.val_fraction,
            seed,
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

/// The source of a dataset, as config.json records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Source {
    pub path: PathBuf,
    pub idx_prefix: Option<String>,
    pub image_column: String,
    pub image_dir: Option<PathBuf>,
    pub labels: Option<Labels>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Labels {
    Column { column: String },
    Columns { columns: Vec<String> },
    Tags { column: String, sep: String },
}

impl Labels {
    fn to_source(&self) -> LabelSource {
        match self {
            Labels::Column { column } => LabelSource::Column(column.clone()),
            Labels::Columns { columns } => LabelSource::Columns(columns.clone()),
            Labels::Tags { column, sep } => LabelSource::Tags { column: column.clone(), sep: sep.clone() },
        }
    }
}

impl DataArgs {
    /// The source these flags name; `--data` is required.
    pub fn source(&self) -> Result<Source> {
        let Some(path) = &self.data else {
            return Err(Error::Invalid(
                "no data: give --data with a CSV file (file,label columns) or a folder of IDX files".into(),
            ));
        };
        if !path.exists() {
            return Err(Error::file(path, "does not exist; give --data a CSV file or a folder of IDX files"));
        }
        let chosen = [self.label_column.is_some(), !self.label_columns.is_empty(), self.tags_column.is_some()];
        if chosen.iter().filter(|&&c| c).count() > 1 {
            return Err(Error::Invalid(
                "choose one of --label-column, --label-columns and --tags-column, not several".into(),
            ));
        }
        if path.is_dir() {
            if chosen.contains(&true) {
                return Err(Error::file(
                    path,
                    "is a folder of IDX files, which carry their own labels; drop --label-column, \
                     --label-columns and --tags-column",
                ));
            }
            return Ok(Source {
                path: path.clone(),
                idx_prefix: Some(self.idx_prefix.clone()),
                image_column: self.image_column.clone(),
                image_dir: None,
                labels: None,
            });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        // IDX files are named like train-images-idx3-ubyte(.gz); a gzipped CSV is not one.
        if name.contains("-ubyte") {
            return Err(Error::file(
                path,
                "looks like an IDX file; give --data the folder that holds the IDX files, or a CSV file",
            ));
        }
        let labels = if let Some(c) = &self.tags_column {
            Labels::Tags { column: c.clone(), sep: self.tag_sep.clone() }
        } else if !self.label_columns.is_empty() {
            Labels::Columns { columns: self.label_columns.clone() }
        } else {
            Labels::Column { column: self.label_column.clone().unwrap_or_else(|| "label".into()) }
        };
        Ok(Source {
            path: path.clone(),
            idx_prefix: None,
            image_column: self.image_column.clone(),
            image_dir: self.image_dir.clone(),
            labels: Some(labels),
        })
    }

    /// The input size and channels: the flags, else what the source's images have (`probe`).
    pub fn image_spec(&self, source: &Source) -> Result<ImageSpec> {
        let given = self.image_size.as_deref().map(ImageSpec::parse_size).transpose()?;
        let forced = if self.grayscale {
            Some(1)
        } else if self.rgb {
            Some(3)
        } else {
            None
        };
        let (size, channels) = match (given, forced) {
            (Some(s), Some(c)) => (s, c),
            _ => {
                let (w, h, c) = probe(source, given.is_some())?;
                (given.unwrap_or((w, h)), forced.unwrap_or(c))
            }
        };
        ImageSpec::new(size.0, size.1, channels)
    }
}

/// The input size and channels for the images of a source (`sized`: the size is given).
fn probe(source: &Source, sized: bool) -> Result<(usize, usize, usize)> {
    if let Some(prefix) = &source.idx_prefix {
        let (w, h) = data::idx::idx_image_size(&source.path, prefix)?;
        return Ok((w, h, 1));
    }
    let spec = csv_spec(source);
    let table = spec.table()?;
    let col = table.column(&source.image_column).map_err(|e| match e {
        Error::File { path, msg } => {
            Error::File { path, msg: format!("{msg}; choose the image file column with --image-column") }
        }
        e => e,
    })?;
    if table.records.is_empty() {
        return Err(Error::file(&source.path, "the CSV file has a header but no rows; add one row per image"));
    }
    let first = table.cell(0, col);
    let base = source.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = match &source.image_dir {
        Some(d) => d.clone(),
        None if !base.join(first).is_file() && base.join("images").join(first).is_file() => base.join("images"),
        None => base,
    };
    let path = dir.join(first);
    if !path.is_file() {
        let shown = if dir.as_os_str().is_empty() { Path::new(".") } else { dir.as_path() };
        return Err(Error::file(
            &path,
            format!(
                "cannot read the first image (line {}): no such file; image names are taken relative to {} \
                 (set --image-dir to the folder they are in)",
                table.lines[0],
                shown.display()
            ),
        ));
    }
    // The headers of up to PROBED images spread over the table (the first included): the most
    // common size, and colour if any image has it (gray to RGB loses nothing; the reverse would).
    const PROBED: usize = 256;
    let rows = table.records.len();
    let mut sizes: Vec<((usize, usize), usize)> = Vec::new();
    let (mut color, mut seen) = (false, 0);
    for k in 0..rows.min(PROBED) {
        let r = k * rows / rows.min(PROBED);
        let (w, h, c) = match data::image::image_header(&dir.join(table.cell(r, col))) {
            Ok(v) => v,
            Err(e) if r == 0 => return Err(e),
            // Another row's bad image is reported, with its line, when the images are loaded.
            Err(_) => continue,
        };
        seen += 1;
        color |= c;
        match sizes.iter_mut().find(|(s, _)| *s == (w, h)) {
            Some((_, n)) => *n += 1,
            None => sizes.push(((w, h), 1)),
        }
    }
    // The most common size; of equally common ones, the first seen.
    let &((w, h), n) = sizes.iter().rev().max_by_key(|(_, n)| *n).expect("the first image was read");
    if sizes.len() > 1 && !sized {
        eprintln!(
            "note: the images differ in size ({} sizes among {seen} looked at); the model's input is {w}×{h}, the \
             most common ({n} of {seen}), and the others are resized to it: set --image-size to choose",
            sizes.len()
        );
    }
    Ok((w, h, if color { 3 } else { 1 }))
}

fn csv_spec(source: &Source) -> CsvSpec {
    let labels = source.labels.as_ref().map(Labels::to_source).unwrap_or(LabelSource::Column("label".into()));
    let mut spec = CsvSpec::new(&source.path, labels);
    spec.image_column = source.image_column.clone();
    spec.image_dir = source.image_dir.clone();
    spec
}

/// Loads a dataset fitted to the model input `image`, printing the warnings and notes it
/// collected (how many images were resized or converted, once for the whole set).
pub fn load(source: &Source, image: &ImageSpec) -> Result<Dataset> {
    let ds = read(source, image)?;
    for n in &ds.notes {
        eprintln!("note: {n}");
    }
    Ok(ds)
}

/// Loads a dataset for its labels alone: its images are decoded (so that a bad file is still
/// an error) but kept as one pixel each, which no note is worth.
pub fn load_labels(source: &Source) -> Result<Dataset> {
    read(source, &ImageSpec::new(1, 1, 1)?)
}

/// Loads a dataset, printing the warnings it collected (not its notes).
fn read(source: &Source, image: &ImageSpec) -> Result<Dataset> {
    let ds = match &source.idx_prefix {
        Some(prefix) => data::load_idx(&IdxSpec::new(&source.path, prefix), image)?,
        None => data::load_csv(&csv_spec(source), image)?,
    };
    for w in &ds.warnings {
        eprintln!("warning: {w}");
    }
    if ds.is_empty() {
        return Err(Error::file(&source.path, "holds no samples; add one row per image"));
    }
    Ok(ds)
}

/// The model flags.
#[derive(clap::Args, Clone, Debug, Serialize, Deserialize)]
pub struct ArchArgs {
    /// densenet121, densenet161, densenet169, densenet201 or densenet-bc.
    #[arg(long, default_value = "densenet-bc")]
    pub arch: String,
    #[arg(long)]
    pub growth_rate: Option<usize>,
    /// Layers per dense block, e.g. 6,6,6.
    #[arg(long, value_delimiter = ',')]
    pub blocks: Vec<usize>,
    #[arg(long)]
    pub bn_size: Option<usize>,
}

impl ArchArgs {
    pub fn config(&self, classes: usize, channels: usize) -> Result<DenseNetConfig> {
        let mut c = DenseNetConfig::preset(&self.arch, classes, channels)
            .map_err(|e| Error::Invalid(format!("--arch: {e}")))?;
        if let Some(k) = self.growth_rate {
            c.growth_rate = k;
            if self.arch.starts_with("densenet-bc") || self.arch == "small" || self.arch == "densenet_bc" {
                c.num_init_features = 2 * k;
            }
        }
        if !self.blocks.is_empty() {
            c.block_config = self.blocks.clone();
        }
        if let Some(b) = self.bn_size {
            c.bn_size = b;
        }
        Ok(c)
    }

    /// The name of the network `c` (built by [`ArchArgs::config`]): the preset's, or
    /// "<preset>-custom" when --growth-rate, --blocks or --bn-size change it, so that a run's
    /// output and config.json do not pass it off as the preset (the config keeps every number).
    pub fn name(&self, c: &DenseNetConfig) -> Result<String> {
        Ok(if self.overrides(c)?.is_empty() { self.arch.clone() } else { format!("{}-custom", self.arch) })
    }

    /// [`ArchArgs::name`] with what differs from the preset: "densenet121-custom (growth rate 4,
    /// not 32)".
    pub fn describe(&self, c: &DenseNetConfig) -> Result<String> {
        let o = self.overrides(c)?;
        let name = self.name(c)?;
        Ok(if o.is_empty() { name } else { format!("{name} ({})", o.join("; ")) })
    }

    fn overrides(&self, c: &DenseNetConfig) -> Result<Vec<String>> {
        let p = DenseNetConfig::preset(&self.arch, c.num_classes, c.in_channels)
            .map_err(|e| Error::Invalid(format!("--arch: {e}")))?;
        let list = |b: &[usize]| b.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let mut o = Vec::new();
        if c.growth_rate != p.growth_rate {
            o.push(format!("growth rate {}, not {}", c.growth_rate, p.growth_rate));
        }
        if c.block_config != p.block_config {
            o.push(format!("blocks {}, not {}", list(&c.block_config), list(&p.block_config)));
        }
        if c.bn_size != p.bn_size {
            o.push(format!("bn size {}, not {}", c.bn_size, p.bn_size));
        }
        Ok(o)
    }
}

/// Everything in a run directory's `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: DenseNetConfig,
    pub arch: String,
    pub preprocess: Preprocess,
    pub label_names: Vec<String>,
    /// "single" or "multi".
    pub label_kind: String,
    /// "softmax" or "sigmoid".
    pub loss: String,
    pub focal_gamma: f32,
    pub weighting: String,
    pub beta: f64,
    pub class_weights: Vec<f64>,
    pub train_counts: Vec<usize>,
    pub val_counts: Vec<usize>,
    pub train_samples: usize,
    pub val_samples: usize,
    pub source: Source,
    pub split_seed: u64,
    pub epochs_done: usize,
    /// What the split holds (image names and labels: see `train::data_fingerprint`), so that a
    /// resumed run can tell it is given the same data. Absent in runs of older versions.
    #[serde(default)]
    pub data_fingerprint: Option<String>,
    /// The flags of the run, to resume it.
    pub args: super::train::TrainArgs,
}

impl RunConfig {
    pub fn load(dir: &Path) -> Result<RunConfig> {
        let path = dir.join("config.json");
        let text = crate::nn::tagger::run_config_text(dir)?;
        serde_json::from_str(&text).map_err(|e| Error::file(&path, format!("not a tailor run configuration: {e}")))
    }
    pub fn to_text(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Invalid(e.to_string()))
    }
    pub fn kind(&self) -> LabelKind {
        if self.label_kind == "multi" {
            LabelKind::Multi
        } else {
            LabelKind::Single
        }
    }
}

/// Scores (softmax or sigmoid probabilities) `[n, C]` of the samples `indices` of `ds`.
pub fn score(
    pred: &Predictor,
    ds: &Arc<Dataset>,
    indices: &[usize],
    norm: &Normalize,
    batch: usize,
    multi: bool,
) -> Result<Vec<f32>> {
    let mut opts = data::LoaderOptions::new(batch, ds.channels, 0);
    opts.shuffle = false;
    opts.normalize = norm.clone();
    opts.workers = 1;
    let loader = data::Loader::new(ds.clone(), indices.to_vec(), opts)?;
    let mut out = Vec::with_capacity(indices.len() * pred.classes);
    for b in loader.epoch(0) {
        out.extend(pred.logits(&b.images)?);
    }
    if let Some(k) = out.iter().position(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "the model's output for sample {} is {} (the weights diverged); lower the learning rate (--lr) or check the data",
            indices[k / pred.classes],
            out[k]
        )));
    }
    if multi {
        sigmoid(&mut out);
    } else {
        softmax_rows(&mut out, pred.classes);
    }
    Ok(out)
}

/// Makes a directory (and its parents), naming it on failure.
pub fn make_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::file(dir, "is a file, not a folder; give a folder (a new or an existing one)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create the directory: {e}")))
}

/// Adds the hint for a model too large for the device to planner and allocation errors.
pub fn too_large_hint(e: Error) -> Error {
    match e {
        Error::TooLarge { .. } | Error::BufferTooLarge { .. } => {
            Error::Invalid(format!("the model does not fit on this device: {e}"))
        }
        Error::OutOfMemory { .. } => Error::Invalid(format!(
            "the model does not fit on this device: {e} (try --batch-size, --image-size or a smaller --arch)"
        )),
        e => e,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str, growth: Option<usize>, blocks: &[usize]) -> ArchArgs {
        ArchArgs { arch: name.into(), growth_rate: growth, blocks: blocks.to_vec(), bn_size: None }
    }

    #[test]
    fn overrides_rename_the_preset() {
        let a = arch("densenet121", Some(4), &[]);
        let c = a.config(10, 3).unwrap();
        assert_eq!(a.name(&c).unwrap(), "densenet121-custom");
        assert_eq!(a.describe(&c).unwrap(), "densenet121-custom (growth rate 4, not 32)");
        let a = arch("densenet-bc", Some(4), &[1, 1]);
        let d = a.describe(&a.config(3, 1).unwrap()).unwrap();
        assert_eq!(d, "densenet-bc-custom (growth rate 4, not 12; blocks 1,1, not 6,6,6)");
        // Overrides that give the preset's own numbers leave its name.
        let a = arch("densenet-bc", Some(12), &[6, 6, 6]);
        assert_eq!(a.name(&a.config(3, 1).unwrap()).unwrap(), "densenet-bc");
        assert_eq!(arch("densenet169", None, &[]).name(&DenseNetConfig::densenet169(5)).unwrap(), "densenet169");
    }
}
