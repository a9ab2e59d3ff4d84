//! Batches of P labels × K images each (PK sampling: Hermans et al. 2017, "In Defense of the
//! Triplet Loss"; pytorch-metric-learning's `MPerClassSampler`), for the triplet losses: every
//! image of a batch has K − 1 positives and (P − 1)·K negatives in it.
//!
//! The rules:
//! - a label with fewer than 2 training images cannot give an anchor a positive: it is dropped,
//!   its images are never drawn, and [`PkSampler::dropped_labels`] says how many were;
//! - P ≥ 2 (so that there are negatives) and K ≥ 2 (so that there are positives), at least P
//!   labels must remain, and a batch of P·K images must not be larger than the images that
//!   remain; otherwise [`PkSampler::new`] returns [`Error::Invalid`] naming P, K and what the data
//!   has;
//! - an epoch is `floor(usable images / (P·K))` batches (at least 1): about one pass over the
//!   usable images, as `MPerClassSampler`'s length;
//! - the labels of consecutive batches are taken in turn from seeded permutations of the usable
//!   labels, so every label comes up about equally often; when a permutation runs out in the
//!   middle of a batch, the next one fills it with labels not already in it (those are kept for
//!   the following batches);
//! - a label with at least K images gives K distinct ones; a label with fewer gives all of them
//!   and the rest drawn with replacement from them (so images repeat in that batch);
//! - everything is a function of (seed, epoch): the same seed gives the same batches.

use std::collections::VecDeque;

use super::loader::stream;
use super::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Draws epochs of P×K batches from the training images of a single-label data set.
#[derive(Clone, Debug)]
pub struct PkSampler {
    p: usize,
    k: usize,
    /// Each usable label's images (data set indices), by label.
    labels: Vec<(u32, Vec<usize>)>,
    dropped: usize,
    images: usize,
}

impl PkSampler {
    /// A sampler over the samples `indices` of `ds`, which must have one label per sample.
    pub fn new(ds: &Dataset, indices: &[usize], p: usize, k: usize) -> Result<Self> {
        let Targets::Single(t) = &ds.targets else {
            return Err(Error::Invalid(
                "P×K batches need one label per image; this data set has several labels per image".into(),
            ));
        };
        if let Some(&i) = indices.iter().find(|&&i| i >= t.len()) {
            return Err(Error::Invalid(format!("sample index {i} is outside the data set of {} samples", t.len())));
        }
        let labels: Vec<u32> = indices.iter().map(|&i| t[i]).collect();
        Self::from_labels(indices, &labels, p, k)
    }

    /// A sampler over the samples `indices` whose labels are `labels` (one per index).
    pub fn from_labels(indices: &[usize], labels: &[u32], p: usize, k: usize) -> Result<Self> {
        if indices.len() != labels.len() {
            return Err(Error::Invalid(format!("{} sample indices but {} labels", indices.len(), labels.len())));
        }
        if p < 2 {
            return Err(Error::Invalid(format!(
                "P = {p} labels per batch: P×K batches need P ≥ 2 so that every image has negatives"
            )));
        }
        if k < 2 {
            return Err(Error::Invalid(format!(
                "K = {k} images per label: P×K batches need K ≥ 2 so that every image has a positive"
            )));
        }
        let mut by_label: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (&i, &l) in indices.iter().zip(labels) {
            by_label.entry(l).or_default().push(i);
        }
        let total = by_label.len();
        let labels: Vec<(u32, Vec<usize>)> = by_label.into_iter().filter(|(_, v)| v.len() >= 2).collect();
        let dropped = total - labels.len();
        let images: usize = labels.iter().map(|(_, v)| v.len()).sum();
        let what = |n: usize| {
            format!(
                "the training data has {n} label(s) with at least 2 images ({images} images; {dropped} label(s) with \
                 fewer dropped)"
            )
        };
        if labels.len() < p {
            return Err(Error::Invalid(format!(
                "P = {p} labels per batch (K = {k}), but {}: lower P",
                what(labels.len())
            )));
        }
        let pk = p.saturating_mul(k);
        if pk > images {
            return Err(Error::Invalid(format!(
                "P×K = {p}×{k} = {pk} images per batch, but {}: lower P or K",
                what(labels.len())
            )));
        }
        Ok(PkSampler { p, k, labels, dropped, images })
    }

    pub fn p(&self) -> usize {
        self.p
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// P·K.
    pub fn batch_size(&self) -> usize {
        self.p * self.k
    }

    /// Labels dropped for having fewer than 2 images.
    pub fn dropped_labels(&self) -> usize {
        self.dropped
    }

    /// Labels with at least 2 images.
    pub fn usable_labels(&self) -> usize {
        self.labels.len()
    }

    /// The images of the usable labels, in index order.
    pub fn usable_images(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.labels.iter().flat_map(|(_, ims)| ims.iter().copied()).collect();
        v.sort_unstable();
        v
    }

    /// Batches per epoch: `floor(usable images / (P·K))`, at least 1.
    pub fn batches(&self) -> usize {
        (self.images / self.batch_size()).max(1)
    }

    /// The images of epoch `epoch`, [`PkSampler::batches`] batches of P·K one after the other,
    /// each K images of one label after K of the next.
    pub fn order(&self, seed: u64, epoch: u64) -> Vec<usize> {
        let mut rng = Rng::new(stream(seed, epoch, u64::MAX - 1));
        let mut queue: VecDeque<usize> = VecDeque::new();
        let mut out = Vec::with_capacity(self.batches() * self.batch_size());
        for _ in 0..self.batches() {
            let mut chosen: Vec<usize> = Vec::with_capacity(self.p);
            let mut deferred = Vec::new();
            while chosen.len() < self.p {
                if queue.is_empty() {
                    let mut perm: Vec<usize> = (0..self.labels.len()).collect();
                    rng.shuffle(&mut perm);
                    queue.extend(perm);
                }
                let l = queue.pop_front().expect("refilled above");
                if chosen.contains(&l) {
                    deferred.push(l);
                } else {
                    chosen.push(l);
                }
            }
            for l in deferred.into_iter().rev() {
                queue.push_front(l);
            }
            for l in chosen {
                out.extend(self.draw(&self.labels[l].1, &mut rng));
            }
        }
        out
    }

    /// K images of one label: distinct when it has K or more, else all of them and the rest
    /// drawn with replacement.
    fn draw(&self, images: &[usize], rng: &mut Rng) -> Vec<usize> {
        let mut v = images.to_vec();
        // A partial Fisher-Yates shuffle: the first min(K, n) are a uniform sample without
        // replacement.
        let take = self.k.min(v.len());
        for i in 0..take {
            let j = i + rng.below(v.len() - i);
            v.swap(i, j);
        }
        v.truncate(take);
        while v.len() < self.k {
            v.push(images[rng.below(images.len())]);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples 100.. with labels of the given counts (label c has counts[c] images).
    fn data(counts: &[usize]) -> (Vec<usize>, Vec<u32>) {
        let labels: Vec<u32> = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as u32, n)).collect();
        ((100..100 + labels.len()).collect(), labels)
    }

    fn label_of(indices: &[usize], labels: &[u32], i: usize) -> u32 {
        labels[indices.iter().position(|&x| x == i).unwrap()]
    }

    #[test]
    fn batches_hold_p_labels_of_k_images_and_are_deterministic() {
        let (idx, lab) = data(&[9, 5, 7, 4, 12, 6]);
        let s = PkSampler::from_labels(&idx, &lab, 3, 4).unwrap();
        assert_eq!((s.batch_size(), s.batches(), s.dropped_labels()), (12, 43 / 12, 0));
        let a = s.order(7, 2);
        assert_eq!(a, s.order(7, 2), "same seed and epoch, same batches");
        assert_ne!(a, s.order(7, 3), "another epoch, other batches");
        assert_ne!(a, s.order(8, 2), "another seed, other batches");
        assert_eq!(a.len(), s.batches() * 12);
        for batch in a.chunks(12) {
            let mut seen = Vec::new();
            for group in batch.chunks(4) {
                let l = label_of(&idx, &lab, group[0]);
                assert!(group.iter().all(|&i| label_of(&idx, &lab, i) == l), "K images of one label: {group:?}");
                let mut g = group.to_vec();
                g.sort_unstable();
                g.dedup();
                assert_eq!(g.len(), 4, "labels with at least K images give distinct ones: {group:?}");
                assert!(!seen.contains(&l), "P distinct labels per batch: {batch:?}");
                seen.push(l);
            }
        }
    }

    #[test]
    fn every_label_comes_up_about_equally_often() {
        let (idx, lab) = data(&[30, 30, 30, 30, 30, 2, 3]);
        let s = PkSampler::from_labels(&idx, &lab, 2, 2).unwrap();
        let mut count = [0usize; 7];
        for epoch in 0..4 {
            for group in s.order(1, epoch).chunks(2) {
                count[label_of(&idx, &lab, group[0]) as usize] += 1;
            }
        }
        let (lo, hi) = (count.iter().min().unwrap(), count.iter().max().unwrap());
        assert!(hi - lo <= 1 + hi / 10, "label counts {count:?}");
    }

    #[test]
    fn labels_with_fewer_than_k_images_are_drawn_with_replacement() {
        let (idx, lab) = data(&[2, 3, 10]);
        let s = PkSampler::from_labels(&idx, &lab, 2, 5).unwrap();
        for group in s.order(3, 0).chunks(5) {
            let l = label_of(&idx, &lab, group[0]);
            let mut g = group.to_vec();
            g.sort_unstable();
            g.dedup();
            let have = [2, 3, 10][l as usize];
            assert_eq!(g.len(), have.min(5), "label {l}: every one of its images, then repeats: {group:?}");
        }
    }

    #[test]
    fn labels_with_one_image_are_dropped_and_counted() {
        let (idx, lab) = data(&[1, 4, 1, 3, 0, 2]);
        let s = PkSampler::from_labels(&idx, &lab, 2, 2).unwrap();
        assert_eq!((s.dropped_labels(), s.usable_labels()), (2, 3));
        let usable = s.usable_images();
        assert_eq!(usable.len(), 9);
        assert!(usable.iter().all(|&i| i != 100 && i != 105), "images of dropped labels are never drawn");
        assert!(s.order(0, 0).iter().all(|i| usable.contains(i)));
        assert_eq!(s.batches(), 2, "floor(9 / 4)");
    }

    #[test]
    fn impossible_batches_are_refused_naming_p_k_and_the_data() {
        let (idx, lab) = data(&[5, 5, 1]);
        let msg = |p, k| match PkSampler::from_labels(&idx, &lab, p, k) {
            Err(Error::Invalid(m)) => m,
            other => panic!("P={p} K={k}: {other:?}"),
        };
        assert!(msg(1, 4).contains("P = 1"));
        assert!(msg(2, 1).contains("K = 1"));
        let m = msg(3, 2);
        assert!(
            m.contains("P = 3")
                && m.contains("K = 2")
                && m.contains("2 label(s)")
                && m.contains("1 label(s) with fewer"),
            "{m}"
        );
        let m = msg(2, 6);
        assert!(m.contains("2×6 = 12") && m.contains("10 images"), "{m}");
        assert!(PkSampler::from_labels(&idx, &lab, 2, 5).is_ok());
        assert!(matches!(PkSampler::from_labels(&idx, &lab[1..], 2, 2), Err(Error::Invalid(_))));
    }
}
