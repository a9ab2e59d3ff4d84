//! The data layer: image sets in memory, their sources (a CSV file with an image folder, or
//! MNIST-style IDX files), the train/validation split, preprocessing and augmentation, and a
//! loader that prepares batches on background threads while the GPU trains, shuffled or P labels
//! × K images at a time for the triplet losses ([`pk`]).
//!
//! Images are decoded once, fitted to the model's input size, and kept as `u8` HWC: a quarter of
//! the memory of `f32`. Normalisation and augmentation happen per batch.

pub mod csv;
pub mod idx;
pub mod image;
pub mod loader;
pub mod pk;
pub mod source;
pub mod split;
pub mod table;

use std::sync::Arc;

pub use self::csv::{load_csv, CsvSpec, LabelSource};
pub use self::idx::{load_idx, read_idx, Idx, IdxSpec, FASHION_MNIST_CLASSES};
pub use self::image::{Augment, FitCounts, ImageSpec, Normalize, Preprocess};
pub use self::loader::{Batch, BatchTargets, Epoch, Loader, LoaderOptions, Shard};
pub use self::pk::PkSampler;
pub use self::split::{split, Split, SplitSpec};
pub use self::table::{read_table, ColumnSummary, Table};

/// Whether each sample has exactly one label (softmax) or a set of labels (sigmoid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelKind {
    Single,
    Multi,
}

/// The targets of all samples, indices into `Dataset::label_names`.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    Single(Vec<u32>),
    /// Each sample's labels, sorted, without repeats; a sample may have none.
    Multi(Vec<Vec<u32>>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Single(t) => t.len(),
            Targets::Multi(t) => t.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn kind(&self) -> LabelKind {
        match self {
            Targets::Single(_) => LabelKind::Single,
            Targets::Multi(_) => LabelKind::Multi,
        }
    }
    /// The labels of sample `i`.
    pub fn labels(&self, i: usize) -> &[u32] {
        match self {
            Targets::Single(t) => std::slice::from_ref(&t[i]),
            Targets::Multi(t) => &t[i],
        }
    }
}

/// Images (already fitted to `width` × `height`, `u8`, HWC) with their targets.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// `len() * height * width * channels` bytes, one image after another, HWC.
    pub pixels: Vec<u8>,
    pub targets: Targets,
    pub label_names: Vec<String>,
    /// For a CSV source: the table and the record each sample came from (for `split_by` and for
    /// naming a sample's file and line); `None` for IDX.
    pub table: Option<Arc<Table>>,
    pub records: Vec<usize>,
    /// Things a user should hear about that did not stop loading (skipped rows, …).
    pub warnings: Vec<String>,
    /// Things worth one line that are no problem (how many images were resized, …).
    pub notes: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.targets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn kind(&self) -> LabelKind {
        self.targets.kind()
    }
    pub fn num_labels(&self) -> usize {
        self.label_names.len()
    }
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.width * self.height * self.channels
    }
    /// The pixels of sample `i`, HWC.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// How many of the samples `indices` carry each label.
    pub fn label_counts(&self, indices: &[usize]) -> Vec<usize> {
        let mut counts = vec![0; self.num_labels()];
        for &i in indices {
            for &l in self.targets.labels(i) {
                counts[l as usize] += 1;
            }
        }
        counts
    }

    /// Where sample `i` came from, for messages: "labels.csv line 12" or "sample 12".
    pub fn describe(&self, i: usize) -> String {
        match &self.table {
            Some(t) => format!("{} line {}", t.path.display(), t.lines[self.records[i]]),
            None => format!("sample {i}"),
        }
    }

    /// Keeps only the samples `keep` (in that order), freeing the rest. In place, without a
    /// second copy of the pixels, when `keep` is increasing.
    pub fn retain(&mut self, keep: &[usize]) {
        let n = self.image_len();
        if keep.windows(2).all(|w| w[0] < w[1]) {
            for (k, &i) in keep.iter().enumerate() {
                self.pixels.copy_within(i * n..(i + 1) * n, k * n);
            }
            self.pixels.truncate(keep.len() * n);
            self.pixels.shrink_to_fit();
        } else {
            self.pixels = keep.iter().flat_map(|&i| self.image(i).iter().copied()).collect();
        }
        self.targets = match &self.targets {
            Targets::Single(t) => Targets::Single(keep.iter().map(|&i| t[i]).collect()),
            Targets::Multi(t) => Targets::Multi(keep.iter().map(|&i| t[i].clone()).collect()),
        };
        if !self.records.is_empty() {
            self.records = keep.iter().map(|&i| self.records[i]).collect();
        }
    }

    /// Removes the labels whose `drop[l]` is true and renumbers the rest, keeping their order.
    /// Single-label samples of a dropped label lose their target and are returned (to remove);
    /// multi-label samples just lose that label.
    pub(crate) fn drop_labels(&mut self, drop: &[bool]) -> Vec<usize> {
        let mut map = vec![u32::MAX; drop.len()];
        let mut next = 0;
        for (l, &d) in drop.iter().enumerate() {
            if !d {
                map[l] = next;
                next += 1;
            }
        }
        self.label_names = self.label_names.iter().zip(drop).filter(|(_, &d)| !d).map(|(n, _)| n.clone()).collect();
        let mut orphans = Vec::new();
        match &mut self.targets {
            Targets::Single(t) => {
                for (i, l) in t.iter_mut().enumerate() {
                    *l = map[*l as usize];
                    if *l == u32::MAX {
                        orphans.push(i);
                    }
                }
            }
            Targets::Multi(t) => {
                for ls in t.iter_mut() {
                    ls.retain(|&l| map[l as usize] != u32::MAX);
                    ls.iter_mut().for_each(|l| *l = map[*l as usize]);
                }
            }
        }
        orphans
    }
}

/// Sorts label names: numerically when all are integers ("2" before "10"), else by text.
pub(crate) fn sort_label_names(names: &mut [String]) {
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    } else {
        names.sort();
    }
}
