//! Batches for training and evaluation, prepared on background threads while the GPU trains.
//!
//! Everything random is a function of (seed, epoch, position in the epoch): the shuffle, each
//! sample's crop and flip. Worker `w` prepares batches w, w + W, … into its own bounded queue
//! and the consumer takes them round-robin, so batch content and order never depend on timing.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::image::{to_chw, Augment, ImageSpec, Normalize, Placement};
use super::pk::PkSampler;
use super::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Shuffle every epoch (seeded by `seed` and the epoch); else the order of `indices`.
    pub shuffle: bool,
    /// Leave out a last batch smaller than `batch_size`.
    pub drop_last: bool,
    pub augment: Augment,
    pub normalize: Normalize,
    /// Background threads (0: prepare each batch on the caller's thread when it is asked for).
    pub workers: usize,
    /// Finished batches each worker may hold ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    /// The part of every batch this loader serves (all of it unless several processes train
    /// one model: see [`Shard`]).
    pub shard: Shard,
}

/// Part `index` of `count` equal parts of every batch: rows `index·b/count ..` of a batch of
/// `b`, the rows a process trains when `count` processes share each batch (MPI rank `index`).
/// A sharded loader decodes only its rows, with the augmentation each row gets unsharded, so
/// the shards of a batch put together are the whole batch. Batches must be full (`drop_last`,
/// or P×K batches) and their size a multiple of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    /// The whole batch.
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl LoaderOptions {
    /// Shuffled, 2 workers with 2 batches each, no augmentation, default normalisation.
    pub fn new(batch_size: usize, channels: usize, seed: u64) -> Self {
        LoaderOptions {
            batch_size,
            shuffle: true,
            drop_last: false,
            augment: Augment::default(),
            normalize: Normalize::default_for(channels),
            workers: 2,
            prefetch: 2,
            seed,
            shard: Shard::default(),
        }
    }
}

/// One batch: images NCHW f32, normalised, and their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `len() * channels * height * width` values.
    pub images: Vec<f32>,
    pub targets: BatchTargets,
    /// The dataset index of each sample.
    pub indices: Vec<usize>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BatchTargets {
    /// One class id per sample.
    Single(Vec<u32>),
    /// Multi-hot, `len() * num_labels` values of 0 or 1.
    Multi(Vec<f32>),
}

/// Serves epochs of batches of the samples `indices` of a dataset, shuffled (or in order), or
/// drawn P labels × K images at a time by a [`PkSampler`] ([`Loader::with_pk`]).
#[derive(Clone, Debug)]
pub struct Loader {
    ds: Arc<Dataset>,
    indices: Arc<Vec<usize>>,
    opts: Arc<LoaderOptions>,
    pk: Option<Arc<PkSampler>>,
}

impl Loader {
    pub fn new(ds: Arc<Dataset>, indices: Vec<usize>, opts: LoaderOptions) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(Error::Invalid("batch size 0; give a positive batch size".into()));
        }
        opts.normalize.check(ds.channels)?;
        let Shard { index, count } = opts.shard;
        if count == 0 || index >= count {
            return Err(Error::Invalid(format!("shard {index} of {count}: give an index below a positive count")));
        }
        if opts.batch_size % count != 0 {
            return Err(Error::Invalid(format!(
                "a batch of {} cannot be shared equally by {count} shards: give a batch size that is a multiple of {count}",
                opts.batch_size
            )));
        }
        if count > 1 && !opts.drop_last {
            return Err(Error::Invalid(format!(
                "{count} shards need drop_last: a last, partial batch could not be shared equally"
            )));
        }
        if let Some(&i) = indices.iter().find(|&&i| i >= ds.len()) {
            return Err(Error::Invalid(format!("sample index {i} is outside the dataset of {} samples", ds.len())));
        }
        Ok(Loader { ds, indices: Arc::new(indices), opts: Arc::new(opts), pk: None })
    }

    /// A loader whose epochs are `sampler`'s batches of P labels × K images (see
    /// [`super::pk`]) instead of a shuffle: the batch size is P·K (`opts.batch_size`,
    /// `shuffle` and `drop_last` are not used), an epoch is [`PkSampler::batches`] batches, and
    /// the batches are a function of `opts.seed` and the epoch.
    pub fn with_pk(ds: Arc<Dataset>, sampler: PkSampler, opts: LoaderOptions) -> Result<Self> {
        let opts = LoaderOptions { batch_size: sampler.batch_size(), drop_last: true, ..opts };
        let mut l = Loader::new(ds, sampler.usable_images(), opts)?;
        l.pk = Some(Arc::new(sampler));
        Ok(l)
    }

    /// The P×K sampler, when the loader has one.
    pub fn pk(&self) -> Option<&PkSampler> {
        self.pk.as_deref()
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        if let Some(pk) = &self.pk {
            return pk.batches();
        }
        let (n, b) = (self.indices.len(), self.opts.batch_size);
        if self.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.ds
    }

    /// The sample order of an epoch.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if let Some(pk) = &self.pk {
            return pk.order(self.opts.seed, epoch);
        }
        let mut order = (*self.indices).clone();
        if self.opts.shuffle {
            Rng::new(stream(self.opts.seed, epoch, u64::MAX)).shuffle(&mut order);
        }
        order
    }

    /// Batch `b` of an epoch, prepared on this thread.
    pub fn batch(&self, epoch: u64, b: usize) -> Batch {
        make_batch(&self.ds, &self.opts, &self.order(epoch), epoch, b)
    }

    /// The batches of an epoch, prepared ahead by the workers.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let order = Arc::new(self.order(epoch));
        let total = self.len();
        let workers = self.opts.workers.min(total);
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.opts.prefetch.max(1));
            let (ds, opts, order) = (self.ds.clone(), self.opts.clone(), order.clone());
            handles.push(std::thread::spawn(move || {
                for b in (w..total).step_by(workers) {
                    if tx.send(make_batch(&ds, &opts, &order, epoch, b)).is_err() {
                        return;
                    }
                }
            }));
            queues.push(rx);
        }
        Epoch { loader: self.clone(), order, epoch, next: 0, total, queues, handles }
    }
}

/// An iterator over one epoch's batches; dropping it early stops the workers.
pub struct Epoch {
    loader: Loader,
    order: Arc<Vec<usize>>,
    epoch: u64,
    next: usize,
    total: usize,
    queues: Vec<Receiver<Batch>>,
    handles: Vec<JoinHandle<()>>,
}

impl Iterator for Epoch {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        self.next += 1;
        if self.queues.is_empty() {
            return Some(make_batch(&self.loader.ds, &self.loader.opts, &self.order, self.epoch, b));
        }
        let q = &self.queues[b % self.queues.len()];
        // A worker only stops early if it panicked; then prepare the batch here instead.
        Some(q.recv().unwrap_or_else(|_| make_batch(&self.loader.ds, &self.loader.opts, &self.order, self.epoch, b)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        self.queues.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A random stream for (seed, epoch, position) that does not depend on any other.
pub(crate) fn stream(seed: u64, epoch: u64, pos: u64) -> u64 {
    let mut r = Rng::new(seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
    let s = r.next_u64() ^ pos.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    Rng::new(s).next_u64()
}

fn make_batch(ds: &Dataset, opts: &LoaderOptions, order: &[usize], epoch: u64, b: usize) -> Batch {
    let bs = opts.batch_size;
    let rows = &order[b * bs..((b + 1) * bs).min(order.len())];
    // This shard's rows (every batch of a sharded loader is full: `Loader::new` checks it).
    let per = rows.len() / opts.shard.count;
    let lo = opts.shard.index * per;
    let indices: Vec<usize> = rows[lo..lo + per].to_vec();
    // Row k's position in the whole batch keys its augmentation, the same whatever the shards.
    let first = b * bs + lo;
    let spec = ImageSpec { width: ds.width, height: ds.height, channels: ds.channels, fill: 0 };
    let n = spec.len();
    let mut images = vec![0f32; indices.len() * n];
    for (k, (&i, out)) in indices.iter().zip(images.chunks_mut(n)).enumerate() {
        let place = if opts.augment.is_none() {
            Placement::default()
        } else {
            opts.augment.draw(&mut Rng::new(stream(opts.seed, epoch, (first + k) as u64)))
        };
        to_chw(ds.image(i), &spec, &opts.normalize, place, out);
    }
    let targets = match &ds.targets {
        Targets::Single(t) => BatchTargets::Single(indices.iter().map(|&i| t[i]).collect()),
        Targets::Multi(t) => {
            let l = ds.num_labels();
            let mut hot = vec![0f32; indices.len() * l];
            for (k, &i) in indices.iter().enumerate() {
                t[i].iter().for_each(|&c| hot[k * l + c as usize] = 1.0);
            }
            BatchTargets::Multi(hot)
        }
    };
    Batch { images, targets, indices, channels: ds.channels, height: ds.height, width: ds.width }
}
