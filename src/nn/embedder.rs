//! An embedding model as an app uses it: image files in, vectors out, whose nearest neighbours
//! in a catalogue's are the search results. [`Embedder::load`] opens a run folder trained with
//! `tailor train --task embedding` (or `tailor distill`): its network, weights, input size and
//! normalisation, and the fingerprint of its weights that a search index records.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Model;
use super::predict::Predictor;
use crate::data::image::{load_input, FitCounts};
use crate::data::{Dataset, ImageSpec, Normalize};
use crate::error::{Error, Result};
use crate::run::folder::{load_model, model_fingerprint, Weights};
use crate::run::{RunConfig, Task};
use crate::search::{Hit, Index};
use crate::Gpu;

pub struct Embedder {
    pub model: Model,
    pub image: ImageSpec,
    pub norm: Normalize,
    /// The embedding's dimension.
    pub dim: usize,
    /// What identifies the weights (a digest of their file): an index records it, so that a
    /// search with other weights is refused.
    pub fingerprint: String,
    /// The run's configuration, when loaded from a run folder.
    pub config: Option<RunConfig>,
    predictor: Predictor,
}

impl Embedder {
    /// Loads the embedding run in `dir` (its best epoch's weights, where it keeps them), to embed
    /// batches of up to `batch` images at a time (more are run in turn).
    pub fn load(gpu: Arc<Gpu>, dir: impl AsRef<Path>, batch: usize) -> Result<Embedder> {
        Self::load_weights(gpu, dir, batch, Weights::Best)
    }

    /// [`Embedder::load`] with the run's best or last epoch's weights.
    pub fn load_weights(gpu: Arc<Gpu>, dir: impl AsRef<Path>, batch: usize, which: Weights) -> Result<Embedder> {
        let dir = dir.as_ref();
        let run = RunConfig::load(dir)?;
        if run.task != Task::Embedding {
            return Err(Error::file(
                dir,
                "is a classifier run, not an embedding model: train one with --task embedding (or distill one from \
                 specialists)",
            ));
        }
        let (model, weights, _) = load_model(gpu, dir, &run, which)?;
        let fingerprint = model_fingerprint(&weights)?;
        let (image, norm) = (run.preprocess.image_spec()?, run.preprocess.normalize());
        let mut e = Embedder::new(model, image, norm, fingerprint, batch)?;
        e.config = Some(run);
        Ok(e)
    }

    /// An embedder for `model`, whose input is `image` normalised by `norm`.
    pub fn new(model: Model, image: ImageSpec, norm: Normalize, fingerprint: String, batch: usize) -> Result<Embedder> {
        let channels = model.net.config.in_channels;
        if image.channels != channels || norm.mean.len() != channels || norm.std.len() != channels {
            return Err(Error::Invalid(format!(
                "the model takes {channels}-channel images, but the input is {} channels with {} means and {} deviations",
                image.channels,
                norm.mean.len(),
                norm.std.len()
            )));
        }
        if batch == 0 {
            return Err(Error::Invalid("an embedder's batch size must be at least 1".into()));
        }
        let predictor = Predictor::new(&model, batch, image.height, image.width).map_err(Error::fit_hint)?;
        let dim = model.net.config.num_classes;
        Ok(Embedder { model, image, norm, dim, fingerprint, config: None, predictor })
    }

    /// The most images run at once.
    pub fn batch(&self) -> usize {
        self.predictor.batch
    }

    /// Embeddings `[n, dim]` of images already fitted and normalised (`n` images of
    /// `image.len()` values each).
    pub fn embed(&self, input: &[f32]) -> Result<Vec<f32>> {
        let out = self.predictor.logits(input)?;
        if let Some(k) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged { sample: k / self.dim, value: out[k] });
        }
        Ok(out)
    }

    /// Embeddings of image files (PNG or JPEG), decoded and fitted to the model's input, with
    /// what fitting did to them. A file that cannot be read is an error naming it.
    pub fn embed_files(&self, paths: &[impl AsRef<Path>]) -> Result<(Vec<f32>, FitCounts)> {
        let (input, fitted) = load_input(paths, &self.image, &self.norm)?;
        Ok((self.embed(&input)?, fitted))
    }

    /// An index of image files (a catalogue): their embeddings with their paths, their labels
    /// when given, and this model's fingerprint. Images are decoded a few batches at a time, so
    /// memory stays that of a few batches whatever the count; `done` is told how many are.
    pub fn index(
        &self,
        files: &[PathBuf],
        labels: Option<Vec<String>>,
        done: &mut dyn FnMut(usize),
    ) -> Result<(Index, FitCounts)> {
        let mut embeddings = Vec::with_capacity(files.len() * self.dim);
        let mut fitted = FitCounts::default();
        for chunk in files.chunks(self.batch() * 8) {
            let (e, f) = self.embed_files(chunk)?;
            embeddings.extend(e);
            fitted.add(f);
            done(chunk.len());
        }
        let names = files.iter().map(|f| f.display().to_string()).collect();
        Ok((Index::new(embeddings, self.dim, names, labels, self.fingerprint.clone())?, fitted))
    }

    /// The `k` nearest rows of `index` to each image file (nearest first), after checking that
    /// this model made the index.
    pub fn search<'i>(&self, index: &'i Index, files: &[PathBuf], k: usize) -> Result<Vec<Vec<Hit<'i>>>> {
        index.check_model(&self.fingerprint)?;
        let gpu = self.model.store.gpu.clone();
        let gallery = index.upload(&gpu)?;
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(self.batch() * 8) {
            let (q, _) = self.embed_files(chunk)?;
            out.extend(index.search_in(&gpu, &gallery, &q, self.dim, k)?);
        }
        Ok(out)
    }

    /// Embeddings of the samples `indices` of `ds` (already fitted to this model's input).
    pub fn embed_samples(&self, ds: &Arc<Dataset>, indices: &[usize]) -> Result<Vec<f32>> {
        if (ds.width, ds.height, ds.channels) != (self.image.width, self.image.height, self.image.channels) {
            return Err(Error::Invalid(format!(
                "the images are {}×{}×{}, but the model takes {}×{}×{}",
                ds.width, ds.height, ds.channels, self.image.width, self.image.height, self.image.channels
            )));
        }
        self.predictor.samples(ds, indices, &self.norm)
    }
}
