//! A run's data: loaded, fitted to the model's input, split; its fingerprint, and the check that
//! a resumed run is given the data it started with.

use std::path::Path;
use std::sync::Arc;

use super::{Event, RunConfig};
use crate::data::source::{keep_groups, split_data, DataSpec, Groups, Source};
use crate::data::{Dataset, ImageSpec, Split, SplitSpec};
use crate::error::{DataChange, Error, Result};

/// The dataset compacted to the split, with the split.
pub struct Prepared {
    pub source: Source,
    pub image: ImageSpec,
    pub ds: Arc<Dataset>,
    pub split: Split,
    /// Each sample's vertical, when the data names a vertical column.
    pub verticals: Option<Groups>,
}

/// Loads `source` fitted to `image`, reporting its warnings (before refusing an empty set:
/// they may say why) and its notes.
pub fn load(source: &Source, image: &ImageSpec, on: &mut dyn FnMut(Event)) -> Result<Dataset> {
    let mut ds = source.load(image)?;
    for w in std::mem::take(&mut ds.warnings) {
        on(Event::Warning(w));
    }
    source.check_samples(&ds)?;
    for n in std::mem::take(&mut ds.notes) {
        on(Event::Note(n));
    }
    Ok(ds)
}

/// Loads a dataset for its labels alone (see [`Source::load_labels`]), reporting its warnings.
pub fn load_labels(source: &Source, on: &mut dyn FnMut(Event)) -> Result<Dataset> {
    let mut ds = source.load_labels()?;
    for w in std::mem::take(&mut ds.warnings) {
        on(Event::Warning(w));
    }
    source.check_samples(&ds)?;
    Ok(ds)
}

/// Splits a loaded dataset as training does, reporting the split's notes and dropped labels.
pub fn split(source: &Source, ds: Dataset, spec: &SplitSpec, on: &mut dyn FnMut(Event)) -> Result<(Dataset, Split)> {
    let (ds, split) = split_data(source, ds, spec)?;
    for n in &split.notes {
        on(Event::Note(n.clone()));
    }
    if !split.dropped.is_empty() {
        on(Event::Dropped { labels: &split.dropped, min_samples: spec.min_samples });
    }
    Ok((ds, split))
}

/// Loads and splits the data `data` names (the same samples on every call with the same
/// settings), at the input size `image` or, when `None`, the one the images suggest.
pub fn prepare(
    data: &DataSpec,
    spec: &SplitSpec,
    image: Option<ImageSpec>,
    on: &mut dyn FnMut(Event),
) -> Result<Prepared> {
    let source = data.source()?;
    let image = match image {
        Some(i) => i,
        None => {
            let (image, note) = data.image_spec(&source)?;
            if let Some(n) = note {
                on(Event::Note(n));
            }
            image
        }
    };
    let mut ds = load(&source, &image, on)?;
    if let (Some(column), false) = (&data.vertical_column, data.verticals.is_empty()) {
        keep_verticals(&mut ds, column, &data.verticals, on)?;
    }
    let (ds, split) = split(&source, ds, spec, on)?;
    let verticals = data.vertical_column.as_deref().map(|c| Groups::of_column(&ds, c)).transpose()?;
    Ok(Prepared { source, image, ds: Arc::new(ds), split, verticals })
}

/// Keeps the rows of the verticals `keep`, saying how many rows of which others it leaves out.
fn keep_verticals(ds: &mut Dataset, column: &str, keep: &[String], on: &mut dyn FnMut(Event)) -> Result<()> {
    let before = Groups::of_column(ds, column)?;
    keep_groups(ds, column, keep)?;
    let skipped: Vec<String> = before
        .sizes()
        .into_iter()
        .filter(|(name, _)| !keep.contains(name))
        .map(|(name, n)| format!("{name} ({n})"))
        .collect();
    if !skipped.is_empty() {
        let more = if skipped.len() > 8 { format!(" and {} more", skipped.len() - 8) } else { String::new() };
        on(Event::Note(format!(
            "kept the {} rows of {} {}; left out {} rows of {} other vertical(s): {}{more}",
            ds.len(),
            column,
            keep.join(", "),
            before.of.len() - ds.len(),
            skipped.len(),
            skipped[..skipped.len().min(8)].join(", ")
        )));
    }
    Ok(())
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
pub fn check_same_data(cfg: &RunConfig, p: &Prepared, dir: &Path) -> Result<()> {
    let changed = |change| Error::DataChanged { config: dir.join("config.json"), data: p.source.path.clone(), change };
    if cfg.label_names != p.ds.label_names {
        return Err(changed(DataChange::Labels));
    }
    if (cfg.train_samples, cfg.val_samples) != (p.split.train.len(), p.split.val.len()) {
        return Err(changed(DataChange::Counts {
            train: p.split.train.len(),
            val: p.split.val.len(),
            was_train: cfg.train_samples,
            was_val: cfg.val_samples,
        }));
    }
    if cfg.data_fingerprint.as_ref().is_some_and(|f| *f != data_fingerprint(p)) {
        return Err(changed(DataChange::Samples));
    }
    Ok(())
}
