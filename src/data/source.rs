//! Where a dataset comes from, as a run's settings name it ([`DataSpec`]) and as its
//! `config.json` records it ([`Source`]): a CSV file of image names and labels, or a folder of
//! IDX files. Also the input size and channels a model gets when none is given: those of the
//! images themselves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CsvSpec, Dataset, IdxSpec, ImageSpec, LabelKind, LabelSource, Split, SplitSpec};
use crate::error::{Error, Result};
use crate::setting::Setting;

/// The data settings of a run: what the `--data` family of flags sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// A CSV file (one row per image) or a folder of MNIST-style IDX files.
    pub data: Option<PathBuf>,
    /// Single-label: the column holding each image's class (`None`: `label`).
    pub label_column: Option<String>,
    /// Multi-label: columns whose `column=value` pairs are the labels.
    #[serde(default)]
    pub label_columns: Vec<String>,
    /// Multi-label: one column of tags, split at `tag_sep`.
    pub tags_column: Option<String>,
    pub tag_sep: String,
    /// The column with each image's file name.
    pub image_column: String,
    /// The folder image names are relative to (`None`: beside the CSV, or its images/).
    pub image_dir: Option<PathBuf>,
    /// For an IDX folder: which files to read (train or t10k).
    pub idx_prefix: String,
    /// Model input size, `N` or `WxH` (`None`: the most common size among the images).
    pub image_size: Option<String>,
    /// Read images as one gray channel.
    #[serde(default)]
    pub grayscale: bool,
    /// Read images as RGB.
    #[serde(default)]
    pub rgb: bool,
    /// The CSV column naming each image's vertical (shoes, bags, …).
    #[serde(default)]
    pub vertical_column: Option<String>,
    /// Keep only the rows of these verticals (empty: all).
    #[serde(default)]
    pub verticals: Vec<String>,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            data: None,
            label_column: None,
            label_columns: Vec::new(),
            tags_column: None,
            tag_sep: ";".into(),
            image_column: "file".into(),
            image_dir: None,
            idx_prefix: "train".into(),
            image_size: None,
            grayscale: false,
            rgb: false,
            vertical_column: None,
            verticals: Vec::new(),
        }
    }
}

/// The source of a dataset, as config.json records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub path: PathBuf,
    pub idx_prefix: Option<String>,
    pub image_column: String,
    pub image_dir: Option<PathBuf>,
    pub labels: Option<Labels>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl DataSpec {
    /// Whether any label setting is given (the run's own are used otherwise, by eval).
    pub fn names_labels(&self) -> bool {
        self.label_column.is_some() || !self.label_columns.is_empty() || self.tags_column.is_some()
    }

    /// The source these settings name; `data` is required.
    pub fn source(&self) -> Result<Source> {
        let Some(path) = &self.data else {
            return Err(Error::Invalid(format!(
                "no data: give {} with a CSV file (file,label columns) or a folder of IDX files",
                Setting::Data
            )));
        };
        if !path.exists() {
            return Err(Error::file(
                path,
                format!("does not exist; give {} a CSV file or a folder of IDX files", Setting::Data),
            ));
        }
        let chosen = [self.label_column.is_some(), !self.label_columns.is_empty(), self.tags_column.is_some()];
        if chosen.iter().filter(|&&c| c).count() > 1 {
            return Err(Error::Invalid(format!(
                "choose one of {}, {} and {}, not several",
                Setting::LabelColumn,
                Setting::LabelColumns,
                Setting::TagsColumn
            )));
        }
        if path.is_dir() {
            if chosen.contains(&true) {
                return Err(Error::file(
                    path,
                    format!(
                        "is a folder of IDX files, which carry their own labels; drop {}, {} and {}",
                        Setting::LabelColumn,
                        Setting::LabelColumns,
                        Setting::TagsColumn
                    ),
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
                format!(
                    "looks like an IDX file; give {} the folder that holds the IDX files, or a CSV file",
                    Setting::Data
                ),
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

    /// The input size and channels: the settings, else what the source's images have, with a
    /// note when the images differ in size.
    pub fn image_spec(&self, source: &Source) -> Result<(ImageSpec, Option<String>)> {
        let given = self.image_size.as_deref().map(ImageSpec::parse_size).transpose()?;
        let forced = if self.grayscale {
            Some(1)
        } else if self.rgb {
            Some(3)
        } else {
            None
        };
        let (size, channels, note) = match (given, forced) {
            (Some(s), Some(c)) => (s, c, None),
            _ => {
                let (w, h, c, note) = probe(source, given.is_some())?;
                (given.unwrap_or((w, h)), forced.unwrap_or(c), note)
            }
        };
        Ok((ImageSpec::new(size.0, size.1, channels)?, note))
    }
}

/// The input size and channels for the images of a source (`sized`: the size is given), with a
/// note when they differ in size.
fn probe(source: &Source, sized: bool) -> Result<(usize, usize, usize, Option<String>)> {
    if let Some(prefix) = &source.idx_prefix {
        let (w, h) = super::idx::idx_image_size(&source.path, prefix)?;
        return Ok((w, h, 1, None));
    }
    let spec = source.csv_spec();
    let table = spec.table()?;
    let col = table.column(&source.image_column).map_err(|e| match e {
        Error::File { path, msg } => {
            Error::File { path, msg: format!("{msg}; choose the image file column with {}", Setting::ImageColumn) }
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
                 (set {} to the folder they are in)",
                table.lines[0],
                shown.display(),
                Setting::ImageDir
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
        let (w, h, c) = match super::image::image_header(&dir.join(table.cell(r, col))) {
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
    let note = (sizes.len() > 1 && !sized).then(|| {
        format!(
            "the images differ in size ({} sizes among {seen} looked at); the model's input is {w}×{h}, the most \
             common ({n} of {seen}), and the others are resized to it: set {} to choose",
            sizes.len(),
            Setting::ImageSize
        )
    });
    Ok((w, h, if color { 3 } else { 1 }, note))
}

impl Source {
    fn csv_spec(&self) -> CsvSpec {
        let labels = self.labels.as_ref().map(Labels::to_source).unwrap_or(LabelSource::Column("label".into()));
        let mut spec = CsvSpec::new(&self.path, labels);
        spec.image_column = self.image_column.clone();
        spec.image_dir = self.image_dir.clone();
        spec
    }

    /// Loads the dataset fitted to the model input `image`. What loading found worth saying is
    /// in the dataset's `warnings` (problems that did not stop it; they may explain why it is
    /// empty, so say them before [`Source::check_samples`]) and `notes`.
    pub fn load(&self, image: &ImageSpec) -> Result<Dataset> {
        match &self.idx_prefix {
            Some(prefix) => super::load_idx(&IdxSpec::new(&self.path, prefix), image),
            None => super::load_csv(&self.csv_spec(), image),
        }
    }

    /// Loads the dataset for its labels alone: every image file must be there, but none is
    /// decoded (each sample is one black pixel), so counting labels takes a moment even for
    /// many thousands of photos.
    pub fn load_labels(&self) -> Result<Dataset> {
        let mut ds = match &self.idx_prefix {
            Some(_) => self.load(&ImageSpec::new(1, 1, 1)?)?,
            None => super::csv::load_csv_labels(&self.csv_spec())?,
        };
        ds.notes.clear();
        Ok(ds)
    }

    /// Every image file of a CSV source with its label cell, when the label column is there
    /// (see [`super::csv::image_files`]). IDX data has no files: an error.
    pub fn image_files(&self) -> Result<(Vec<PathBuf>, Option<Vec<String>>)> {
        if self.idx_prefix.is_some() {
            return Err(Error::file(&self.path, "is IDX data, which has no image files; give a CSV of image files"));
        }
        let column = match &self.labels {
            Some(Labels::Column { column }) => column.clone(),
            _ => "label".to_string(),
        };
        super::csv::image_files(&self.csv_spec(), &column)
    }

    /// Refuses a loaded dataset without samples.
    pub fn check_samples(&self, ds: &Dataset) -> Result<()> {
        if ds.is_empty() {
            return Err(Error::file(&self.path, "holds no samples; add one row per image"));
        }
        Ok(())
    }
}

/// Splits a loaded dataset as training does (so that class weights count the same labels),
/// refusing single-label data of one class. The split's `notes` and `dropped` labels are for
/// the user.
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
    let split = super::split(&mut ds, spec)?;
    Ok((ds, split))
}

/// Each sample's value in a CSV column (its vertical: shoes, bags, …), as indices into `names`.
#[derive(Clone, Debug, PartialEq)]
pub struct Groups {
    pub column: String,
    /// The values, sorted.
    pub names: Vec<String>,
    /// Per sample, its value's index in `names`.
    pub of: Vec<u32>,
}

impl Groups {
    /// The values of `column` for every sample of `ds` (a CSV dataset).
    pub fn of_column(ds: &Dataset, column: &str) -> Result<Groups> {
        let Some(table) = &ds.table else {
            return Err(Error::Invalid(format!(
                "{} {column}: IDX data has no columns; give a CSV file",
                Setting::VerticalColumn
            )));
        };
        let col = table.column(column).map_err(|e| match e {
            Error::File { path, msg } => Error::File { path, msg: format!("{msg}; fix {}", Setting::VerticalColumn) },
            e => e,
        })?;
        let values: Vec<&str> = ds.records.iter().map(|&r| table.cell(r, col)).collect();
        let mut names: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        names.sort();
        names.dedup();
        let of = values.iter().map(|v| names.binary_search_by(|n| n.as_str().cmp(v)).unwrap_or(0) as u32).collect();
        Ok(Groups { column: column.to_string(), names, of })
    }

    /// The samples of each group: `members()[g]` lists the samples of `names[g]`.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.names.len()];
        for (i, &g) in self.of.iter().enumerate() {
            m[g as usize].push(i);
        }
        m
    }

    /// How many samples each group has, largest first: (name, count).
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let mut s: Vec<(String, usize)> =
            self.members().iter().zip(&self.names).map(|(m, n)| (n.clone(), m.len())).collect();
        s.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        s
    }
}

/// Keeps only the samples of `ds` whose `column` value is one of `keep`, and the labels they
/// carry. A value that no sample has is an error naming the values there are.
pub fn keep_groups(ds: &mut Dataset, column: &str, keep: &[String]) -> Result<()> {
    let groups = Groups::of_column(ds, column)?;
    if let Some(missing) = keep.iter().find(|k| !groups.names.contains(k)) {
        let sizes: Vec<String> = groups.sizes().iter().take(12).map(|(n, c)| format!("{n} ({c})")).collect();
        return Err(Error::Invalid(format!(
            "{} '{missing}' is not a value of column '{column}'; its values are {}{}",
            Setting::Verticals,
            sizes.join(", "),
            if groups.names.len() > 12 { ", …" } else { "" }
        )));
    }
    let keep_ids: Vec<u32> =
        keep.iter().map(|k| groups.names.iter().position(|n| n == k).unwrap_or(0) as u32).collect();
    let rows: Vec<usize> = (0..ds.len()).filter(|&i| keep_ids.contains(&groups.of[i])).collect();
    ds.retain(&rows);
    let mut used = vec![false; ds.num_labels()];
    for i in 0..ds.len() {
        for &l in ds.targets.labels(i) {
            used[l as usize] = true;
        }
    }
    let drop: Vec<bool> = used.iter().map(|u| !u).collect();
    if drop.contains(&true) {
        ds.drop_labels(&drop);
    }
    Ok(())
}
