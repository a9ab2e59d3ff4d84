//! A trained model as an app uses it: image files in, labels with probabilities out, as
//! `tailor predict` does. [`Tagger::load`] opens a run folder written by `tailor train` (its
//! network, weights, input size, normalisation, label names and, once `tailor eval` has run,
//! per-label thresholds); [`Tagger::new`] takes a model and its preprocessing directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Model;
use super::predict::{sigmoid, softmax_rows, Predictor};
use crate::data::image::{load_input, FitCounts};
use crate::data::{ImageSpec, Normalize};
use crate::error::{Error, Result};
use crate::run::folder::{load_model, load_thresholds, Weights};
use crate::run::{RunConfig, Task};
use crate::Gpu;

pub struct Tagger {
    pub model: Model,
    pub image: ImageSpec,
    pub norm: Normalize,
    pub labels: Vec<String>,
    /// Multi-label (sigmoid, a threshold per label) or single-label (softmax, top k).
    pub multi: bool,
    /// Per label, the probability from which a multi-label prediction reports it: `tailor
    /// eval`'s `thresholds.json` (its precision floor), 0.5 for every label when the run has no
    /// such file. `None` (eval's `null`: no threshold reached the precision floor) means the
    /// label is never chosen. Single-label predictions do not use them (a single-label run's are
    /// 0.5, its thresholds.json unread).
    pub thresholds: Vec<Option<f64>>,
    predictor: Predictor,
}

/// One image's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Tagged {
    /// Softmax (single-label) or sigmoid (multi-label) of the logits, one per label.
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
    /// The labels to report, as (label index, probability), most probable first: the top k
    /// for single-label, every label at or above its threshold for multi-label (so possibly
    /// none, and never a label whose threshold is `None`).
    pub chosen: Vec<(usize, f32)>,
}

impl Tagger {
    /// Loads the run folder `dir` written by `tailor train`, to tag batches of up to `batch`
    /// images at a time (more are run in turn).
    pub fn load(gpu: Arc<Gpu>, dir: impl AsRef<Path>, batch: usize) -> Result<Tagger> {
        Self::load_weights(gpu, dir, batch, Weights::Best)
    }

    /// [`Tagger::load`] with the run's best epoch's weights (where it keeps them) or its last's.
    pub fn load_weights(gpu: Arc<Gpu>, dir: impl AsRef<Path>, batch: usize, which: Weights) -> Result<Tagger> {
        let dir = dir.as_ref();
        let run = RunConfig::load(dir)?;
        if run.task == Task::Embedding {
            return Err(Error::file(
                dir,
                "is an embedding model, which tags nothing: search a catalogue with it (tailor embed and tailor \
                 search, or nn::embedder::Embedder)",
            ));
        }
        let (model, _, _) = load_model(gpu, dir, &run, which)?;
        // A single-label run picks its top k and never reads its thresholds, so a broken
        // thresholds.json does not stand in its way.
        let thresholds =
            if run.multi() { load_thresholds(dir, &run.label_names)? } else { vec![Some(0.5); run.label_names.len()] };
        let (image, norm) = (run.preprocess.image_spec()?, run.preprocess.normalize());
        let multi = run.multi();
        Tagger::new(model, image, norm, run.label_names, multi, thresholds, batch)
    }

    /// A tagger for `model`, whose input is `image` normalised by `norm`, with a name and a
    /// threshold (used when `multi`; `None`: never chosen) per class.
    pub fn new(
        model: Model,
        image: ImageSpec,
        norm: Normalize,
        labels: Vec<String>,
        multi: bool,
        thresholds: Vec<Option<f64>>,
        batch: usize,
    ) -> Result<Tagger> {
        let classes = model.net.config.num_classes;
        let channels = model.net.config.in_channels;
        if labels.len() != classes || thresholds.len() != classes {
            return Err(Error::Invalid(format!(
                "the model has {classes} classes but {} label names and {} thresholds were given",
                labels.len(),
                thresholds.len()
            )));
        }
        if image.channels != channels || norm.mean.len() != channels || norm.std.len() != channels {
            return Err(Error::Invalid(format!(
                "the model takes {channels}-channel images, but the input is {} channels with {} means and {} deviations",
                image.channels,
                norm.mean.len(),
                norm.std.len()
            )));
        }
        if batch == 0 {
            return Err(Error::Invalid("a tagger's batch size must be at least 1".into()));
        }
        let predictor = Predictor::new(&model, batch, image.height, image.width)?;
        Ok(Tagger { model, image, norm, labels, multi, thresholds, predictor })
    }

    /// The most images run at once.
    pub fn batch(&self) -> usize {
        self.predictor.batch
    }

    /// Decodes image files (PNG or JPEG) and fits them to the model's input (scaled, letterboxed,
    /// converted to its channels, normalised, CHW), with what fitting did to them.
    pub fn prepare(&self, paths: &[impl AsRef<Path>]) -> Result<(Vec<f32>, FitCounts)> {
        load_input(paths, &self.image, &self.norm)
    }

    /// Tags image files; single-label results list the `top_k` most probable labels.
    pub fn tag_files(&self, paths: &[impl AsRef<Path>], top_k: usize) -> Result<(Vec<Tagged>, FitCounts)> {
        let (input, fitted) = self.prepare(paths)?;
        let tagged = self.tag_named(&input, top_k, |i| Some(paths[i].as_ref().to_path_buf()))?;
        Ok((tagged, fitted))
    }

    /// Tags images already fitted and normalised as [`Tagger::prepare`] does (`n` images of
    /// `image.len()` values each).
    pub fn tag(&self, input: &[f32], top_k: usize) -> Result<Vec<Tagged>> {
        self.tag_named(input, top_k, |_| None)
    }

    fn tag_named(&self, input: &[f32], top_k: usize, path: impl Fn(usize) -> Option<PathBuf>) -> Result<Vec<Tagged>> {
        let logits = self.predictor.logits(input)?;
        let c = self.labels.len();
        if let Some(k) = logits.iter().position(|v| !v.is_finite()) {
            let msg = format!(
                "the model's output for this image is {}: its weights are not finite (the run diverged); \
                 retrain with a lower {}",
                logits[k],
                crate::setting::Setting::Lr
            );
            return Err(match path(k / c) {
                Some(p) => Error::file(p, msg),
                None => Error::Invalid(format!("image {}: {msg}", k / c)),
            });
        }
        let mut probs = logits.clone();
        if self.multi {
            sigmoid(&mut probs);
        } else {
            softmax_rows(&mut probs, c);
        }
        Ok(probs
            .chunks(c)
            .zip(logits.chunks(c))
            .map(|(p, l)| Tagged { chosen: self.choose(p, top_k), probabilities: p.to_vec(), logits: l.to_vec() })
            .collect())
    }

    /// The labels to report: the top k by probability, or those at or above their threshold (a
    /// label without one is never reported).
    fn choose(&self, p: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        if self.multi {
            idx.into_iter()
                .filter(|&j| self.thresholds[j].is_some_and(|t| p[j] as f64 >= t))
                .map(|j| (j, p[j]))
                .collect()
        } else {
            idx.into_iter().take(k).map(|j| (j, p[j])).collect()
        }
    }
}
