//! A dataset from a CSV file and an image folder: one column names each image file, and the
//! labels come from one column (single-label), several columns (multi-label, each
//! `column=value` a label) or one column of delimited tags (multi-label).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::image::{load_images, ImageSpec};
use super::table::{default_delimiter, default_missing, is_missing, read_table, Table};
use super::{sort_label_names, Dataset, Targets};
use crate::error::{Error, Result};
use crate::setting::Setting;

/// Where the labels are in the CSV file.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelSource {
    /// One class per row (softmax); rows with a missing value are skipped with a warning.
    Column(String),
    /// Multi-label: each `column=value` present in a row is one of its labels.
    Columns(Vec<String>),
    /// Multi-label: one column of tags split at `sep`.
    Tags { column: String, sep: String },
}

#[derive(Clone, Debug)]
pub struct CsvSpec {
    pub csv: PathBuf,
    /// The folder the file names are relative to; `None`: the CSV's folder, or its `images/`
    /// subfolder when the first file is there and not beside the CSV.
    pub image_dir: Option<PathBuf>,
    pub image_column: String,
    pub labels: LabelSource,
    /// Cell values read as missing besides an empty cell (default: NA, N/A, NaN, null, …).
    pub missing: Vec<String>,
    /// Field delimiter; `None`: tab for .tsv, else comma.
    pub delimiter: Option<u8>,
}

impl CsvSpec {
    pub fn new(csv: impl Into<PathBuf>, labels: LabelSource) -> Self {
        CsvSpec {
            csv: csv.into(),
            image_dir: None,
            image_column: "file".into(),
            labels,
            missing: default_missing(),
            delimiter: None,
        }
    }
    /// Reads the CSV file alone (for listing its columns before choosing labels).
    pub fn table(&self) -> Result<Table> {
        read_table(&self.csv, self.delimiter.unwrap_or_else(|| default_delimiter(&self.csv)))
    }
}

/// Loads the table, the labels and every image (fitted to `image`).
pub fn load_csv(spec: &CsvSpec, image: &ImageSpec) -> Result<Dataset> {
    read_csv(spec, Some(image))
}

/// Loads the table and the labels, checking that every image file is there but decoding none
/// (each sample gets one black pixel): what counting labels needs, in a fraction of the time.
pub fn load_csv_labels(spec: &CsvSpec) -> Result<Dataset> {
    read_csv(spec, None)
}

/// Every row's image file, found as training finds it (and every one checked to be there), with
/// the row's cell of `label_column` when the table has that column: what indexing a catalogue
/// needs, without decoding an image.
pub fn image_files(spec: &CsvSpec, label_column: &str) -> Result<(Vec<PathBuf>, Option<Vec<String>>)> {
    let table = spec.table()?;
    let file_col = table.column(&spec.image_column).map_err(|e| hint_image_column(e, spec))?;
    let records: Vec<usize> = (0..table.records.len()).collect();
    let dir = image_dir(spec, &table, file_col);
    let paths = image_paths(&table, &records, file_col, &dir)?;
    let labels = label_columns_of(&table, label_column).ok().map(|cols| {
        records.iter().map(|&r| cols.iter().map(|&c| table.cell(r, c)).collect::<Vec<_>>().join("+")).collect()
    });
    Ok((paths, labels))
}

fn read_csv(spec: &CsvSpec, image: Option<&ImageSpec>) -> Result<Dataset> {
    let table = spec.table()?;
    let file_col = table.column(&spec.image_column).map_err(|e| hint_image_column(e, spec))?;
    let mut warnings = Vec::new();
    let (records, targets, label_names) = match &spec.labels {
        LabelSource::Column(name) => single_label(&table, name, &spec.missing, &mut warnings)?,
        LabelSource::Columns(names) => columns_labels(&table, names, &spec.missing, &mut warnings)?,
        LabelSource::Tags { column, sep } => tag_labels(&table, column, sep, &spec.missing, &mut warnings)?,
    };
    let dir = image_dir(spec, &table, file_col);
    let paths = image_paths(&table, &records, file_col, &dir)?;
    warn_duplicates(&table, file_col, &records, &paths, &mut warnings);
    warn_case_twins(&label_names, &mut warnings);
    let Some(image) = image else {
        return Ok(Dataset {
            width: 1,
            height: 1,
            channels: 1,
            pixels: vec![0; records.len()],
            targets,
            label_names,
            table: Some(Arc::new(table)),
            records,
            warnings,
            notes: Vec::new(),
        });
    };
    let (pixels, fitted) = load_images(&paths, image).map_err(|e| match e {
        // Which row names the file, so that it can be fixed or left out.
        Error::File { path, msg } => match paths.iter().position(|p| *p == path) {
            Some(k) => Error::File {
                msg: format!("{msg} (named on {} line {})", table.path.display(), table.lines[records[k]]),
                path,
            },
            None => Error::File { path, msg },
        },
        e => e,
    })?;
    Ok(Dataset {
        width: image.width,
        height: image.height,
        channels: image.channels,
        pixels,
        targets,
        label_names,
        table: Some(Arc::new(table)),
        records,
        warnings,
        notes: fitted.note(image).into_iter().collect(),
    })
}

fn hint_image_column(e: Error, spec: &CsvSpec) -> Error {
    match e {
        Error::File { path, msg } => Error::File {
            path,
            msg: format!(
                "{msg}; choose the image file column with {} (now '{}')",
                Setting::ImageColumn,
                spec.image_column
            ),
        },
        e => e,
    }
}

type Labels = (Vec<usize>, Targets, Vec<String>);

fn single_label(table: &Table, name: &str, missing: &[String], warnings: &mut Vec<String>) -> Result<Labels> {
    let cols = label_columns_of(table, name)?;
    let value = |r: usize| -> Option<String> {
        let cells: Vec<&str> = cols.iter().map(|&c| table.cell(r, c)).collect();
        (!cells.iter().any(|v| is_missing(v, missing))).then(|| cells.join("+"))
    };
    let (mut records, mut values, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..table.records.len() {
        match value(r) {
            Some(v) => {
                records.push(r);
                values.push(v);
            }
            None => skipped.push(table.lines[r]),
        }
    }
    if records.is_empty() {
        return Err(Error::file(
            &table.path,
            format!(
                "column '{name}' has no values (all are empty or missing); choose another {}",
                Setting::LabelColumn
            ),
        ));
    }
    if !skipped.is_empty() {
        warnings.push(format!(
            "{}: skipped {} row(s) with a missing '{name}' ({})",
            table.path.display(),
            skipped.len(),
            some_lines(&skipped)
        ));
    }
    let mut names: Vec<String> = values.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    sort_label_names(&mut names);
    let index = label_index(&names);
    let ids: Vec<u32> = values.iter().map(|v| index[v.as_str()]).collect();
    Ok((records, Targets::Single(ids), names))
}

/// The columns a single-label `name` reads: the column of that name, or for `a+b` (where no
/// column has that name) the columns `a` and `b`, whose values together make the label
/// (`Tshirts+Blue`: the same article type and colour, for retrieval).
fn label_columns_of(table: &Table, name: &str) -> Result<Vec<usize>> {
    match table.column(name) {
        Ok(c) => Ok(vec![c]),
        Err(e) if name.contains('+') => {
            let parts: Result<Vec<usize>> = name.split('+').map(|p| table.column(p.trim())).collect();
            parts.map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// "line 3, 5, 9, …": the first few of `lines`.
fn some_lines(lines: &[usize]) -> String {
    let first: Vec<String> = lines.iter().take(5).map(|l| l.to_string()).collect();
    format!("line {}{}", first.join(", "), if lines.len() > 5 { ", …" } else { "" })
}

/// The lines of the records whose cell in `col` is missing.
fn missing_lines(table: &Table, col: usize, missing: &[String]) -> Vec<usize> {
    (0..table.records.len()).filter(|&r| is_missing(table.cell(r, col), missing)).map(|r| table.lines[r]).collect()
}

fn columns_labels(table: &Table, names: &[String], missing: &[String], warnings: &mut Vec<String>) -> Result<Labels> {
    if names.is_empty() {
        return Err(Error::Invalid("multi-label from columns needs at least one column".into()));
    }
    let cols = names.iter().map(|n| table.column(n)).collect::<Result<Vec<_>>>()?;
    if let Some((i, n)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        return Err(Error::Invalid(format!(
            "label column '{n}' is listed twice (at {} and {})",
            names.iter().position(|m| m == n).unwrap() + 1,
            i + 1
        )));
    }
    let mut labels = Vec::new();
    for (name, &c) in names.iter().zip(&cols) {
        let mut values: Vec<String> = (0..table.records.len())
            .map(|r| table.cell(r, c))
            .filter(|v| !is_missing(v, missing))
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        sort_label_names(&mut values);
        labels.extend(values.into_iter().map(|v| format!("{name}={v}")));
        // A missing cell is no label of that column, which the loss reads as "none of them".
        let gaps = missing_lines(table, c, missing);
        if !gaps.is_empty() {
            warnings.push(format!(
                "{}: {} of {} row(s) have no '{name}' value (empty or missing, {}); they keep their other labels \
                 and count as negative for every '{name}=…' label",
                table.path.display(),
                gaps.len(),
                table.records.len(),
                some_lines(&gaps)
            ));
        }
    }
    let index = label_index(&labels);
    let sets = (0..table.records.len())
        .map(|r| {
            let mut set: Vec<u32> = names
                .iter()
                .zip(&cols)
                .filter(|(_, &c)| !is_missing(table.cell(r, c), missing))
                .map(|(n, &c)| index[format!("{n}={}", table.cell(r, c)).as_str()])
                .collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect();
    Ok(((0..table.records.len()).collect(), Targets::Multi(sets), labels))
}

fn tag_labels(
    table: &Table,
    column: &str,
    sep: &str,
    missing: &[String],
    warnings: &mut Vec<String>,
) -> Result<Labels> {
    if sep.is_empty() {
        return Err(Error::Invalid(format!(
            "the tag separator is empty; give one such as '|' or ';' with {}",
            Setting::TagSep
        )));
    }
    let col = table.column(column)?;
    let tags =
        |r: usize| table.cell(r, col).split(sep).map(str::trim).filter(|t| !is_missing(t, missing)).collect::<Vec<_>>();
    let mut labels: Vec<String> =
        (0..table.records.len()).flat_map(tags).map(str::to_string).collect::<BTreeSet<_>>().into_iter().collect();
    if labels.is_empty() {
        return Err(Error::file(
            &table.path,
            format!("column '{column}' holds no tags; check {} and {} ('{sep}')", Setting::TagsColumn, Setting::TagSep),
        ));
    }
    sort_label_names(&mut labels);
    warn_missing_tags(table, col, sep, missing, warnings);
    // No cell split at the separator, but the tags hold another: the wrong --tag-sep.
    let split_any = (0..table.records.len()).any(|r| table.cell(r, col).contains(sep));
    if !split_any {
        let other = [";", "|", ","].into_iter().filter(|&s| s != sep).find(|s| labels.iter().any(|l| l.contains(s)));
        if let Some(o) = other {
            warnings.push(format!(
                "no '{column}' cell holds the tag separator '{sep}', but tags such as '{}' hold '{o}': if that \
                 separates the tags, give {} '{o}'",
                labels.iter().find(|l| l.contains(o)).map_or("", String::as_str),
                Setting::TagSep
            ));
        }
    }
    let index = label_index(&labels);
    let sets = (0..table.records.len())
        .map(|r| {
            let mut set: Vec<u32> = tags(r).into_iter().map(|t| index[t]).collect();
            set.sort_unstable();
            set.dedup();
            set
        })
        .collect();
    Ok(((0..table.records.len()).collect(), Targets::Multi(sets), labels))
}

/// Warns of rows whose tag cell is missing (they count as negative for every label) and of
/// missing markers (NA, …) inside lists, which are dropped. Empty tags ("a;;b", "a;") are not
/// counted: they are separators, not data.
fn warn_missing_tags(table: &Table, col: usize, sep: &str, missing: &[String], warnings: &mut Vec<String>) {
    let name = &table.header[col];
    let gaps = missing_lines(table, col, missing);
    if !gaps.is_empty() {
        warnings.push(format!(
            "{}: {} of {} row(s) have no '{name}' value (empty or missing, {}); they count as negative for every tag",
            table.path.display(),
            gaps.len(),
            table.records.len(),
            some_lines(&gaps)
        ));
    }
    let mut marked: Vec<usize> = (0..table.records.len())
        .filter(|&r| !is_missing(table.cell(r, col), missing))
        .flat_map(|r| table.cell(r, col).split(sep).map(move |t| (r, t.trim())))
        .filter(|(_, t)| !t.is_empty() && is_missing(t, missing))
        .map(|(r, _)| table.lines[r])
        .collect();
    if !marked.is_empty() {
        let count = marked.len();
        marked.dedup();
        warnings.push(format!(
            "{}: dropped {count} missing tag(s) such as NA from the lists in '{name}' ({})",
            table.path.display(),
            some_lines(&marked)
        ));
    }
}

/// Label name → id; every lookup is of a name collected from the same cells.
/// Rows naming an image an earlier row names too: the copies can fall on both sides of the split.
fn warn_duplicates(table: &Table, file_col: usize, records: &[usize], paths: &[PathBuf], warnings: &mut Vec<String>) {
    let mut first: HashMap<&Path, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (&r, p) in records.iter().zip(paths) {
        match first.get(p.as_path()) {
            Some(&r0) => repeats.push((r0, r, p)),
            None => {
                first.insert(p, r);
            }
        }
    }
    if let Some(&(r0, r, p)) = repeats.first() {
        warnings.push(format!(
            "{} row(s) name an image that an earlier row names too (e.g. {}, lines {} and {}): the copies can \
             fall on both sides of the validation split; remove them, or keep each image on one side with \
             {} {}",
            repeats.len(),
            p.display(),
            table.lines[r0],
            table.lines[r],
            Setting::SplitBy,
            table.header[file_col]
        ));
    }
}

/// Labels that differ only in case ("Apparel", "apparel") are separate labels: likely a typo.
fn warn_case_twins(labels: &[String], warnings: &mut Vec<String>) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for l in labels {
        if let Some(other) = seen.insert(l.to_lowercase(), l) {
            warnings.push(format!(
                "the labels '{other}' and '{l}' differ only in case, so they are two labels; write them alike \
                 in the CSV if they are one"
            ));
        }
    }
}

fn label_index(labels: &[String]) -> HashMap<&str, u32> {
    labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect()
}

fn image_dir(spec: &CsvSpec, table: &Table, file_col: usize) -> PathBuf {
    if let Some(d) = &spec.image_dir {
        return d.clone();
    }
    let base = spec.csv.parent().map(Path::to_path_buf).unwrap_or_default();
    let first = table.cell(0, file_col);
    let sub = base.join("images");
    if !base.join(first).is_file() && sub.join(first).is_file() {
        sub
    } else {
        base
    }
}

fn image_paths(table: &Table, records: &[usize], file_col: usize, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(records.len());
    let mut absent = Vec::new();
    for &r in records {
        let name = table.cell(r, file_col);
        if name.is_empty() {
            return Err(Error::file(
                &table.path,
                format!("line {}: the image file name (column '{}') is empty", table.lines[r], table.header[file_col]),
            ));
        }
        let mut p = dir.join(name);
        // Paths written on Windows (images\\x.png).
        if !p.is_file() && name.contains('\\') && dir.join(name.replace('\\', "/")).is_file() {
            p = dir.join(name.replace('\\', "/"));
        }
        if !p.is_file() {
            absent.push(format!("{} (line {})", p.display(), table.lines[r]));
        }
        paths.push(p);
    }
    if !absent.is_empty() {
        let shown: Vec<&str> = absent.iter().take(5).map(String::as_str).collect();
        return Err(Error::file(
            &table.path,
            format!(
                "{} of {} image files are missing: {}{}; check the image folder ({}, now {}) and {}",
                absent.len(),
                records.len(),
                shown.join(", "),
                if absent.len() > 5 { ", …" } else { "" },
                Setting::ImageDir,
                if dir.as_os_str().is_empty() { std::path::Path::new(".").display() } else { dir.display() },
                Setting::ImageColumn
            ),
        ));
    }
    Ok(paths)
}
