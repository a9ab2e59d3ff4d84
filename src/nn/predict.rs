//! Inference: the same planner and executor with a forward-only, eval-mode graph. A predictor
//! shares the model's weight buffers, so it sees every training step without copies.

use super::model::Model;
use crate::error::{Error, Result};
use crate::graph::exec::{Executable, MemoryReport};
use crate::graph::{Graph, TensorId};

pub struct Predictor {
    exe: Executable,
    input: TensorId,
    logits: TensorId,
    pub batch: usize,
    pub classes: usize,
    image_len: usize,
}

impl Predictor {
    /// Plans inference on batches of up to `batch` images of `height`×`width`.
    pub fn new(model: &Model, batch: usize, height: usize, width: usize) -> Result<Predictor> {
        let mut g = Graph::new();
        let built = model.net.build(&mut g, batch, height, width, false)?;
        g.keep.push(built.logits);
        let exe = Executable::new(model.store.gpu.clone(), g, &model.store)?;
        let image_len = model.net.config.in_channels * height * width;
        Ok(Predictor {
            exe,
            input: built.input,
            logits: built.logits,
            batch,
            classes: model.net.config.num_classes,
            image_len,
        })
    }

    pub fn gpu(&self) -> &crate::Gpu {
        &self.exe.gpu
    }

    pub fn memory(&self) -> MemoryReport {
        self.exe.memory()
    }

    /// Logits [n, classes] for `n` images (any n: run in batches, the last one padded). For an
    /// embedding model (`l2_normalize`) these are its L2-normalised embeddings [n, dim], `classes`
    /// being the embedding's dimension.
    pub fn logits(&self, images: &[f32]) -> Result<Vec<f32>> {
        if images.len() % self.image_len != 0 {
            return Err(Error::shape(
                "predict",
                format!("{} values is not a whole number of {}-value images", images.len(), self.image_len),
            ));
        }
        let n = images.len() / self.image_len;
        let mut out = Vec::with_capacity(n * self.classes);
        for chunk in images.chunks(self.batch * self.image_len) {
            let m = chunk.len() / self.image_len;
            if m == self.batch {
                self.exe.write(self.input, chunk)?;
            } else {
                let mut padded = chunk.to_vec();
                padded.resize(self.batch * self.image_len, 0.0);
                self.exe.write(self.input, &padded)?;
            }
            self.exe.run()?;
            let l = self.exe.read(self.logits)?;
            out.extend_from_slice(&l[..m * self.classes]);
        }
        Ok(out)
    }
}

impl Predictor {
    /// The outputs `[n, classes]` for the samples `indices` of `ds` (normalised by `norm`, in
    /// order, in batches of the predictor's size); a value that is not finite is
    /// [`Error::Diverged`].
    pub fn samples(
        &self,
        ds: &std::sync::Arc<crate::data::Dataset>,
        indices: &[usize],
        norm: &crate::data::Normalize,
    ) -> Result<Vec<f32>> {
        let mut opts = crate::data::LoaderOptions::new(self.batch, ds.channels, 0);
        opts.shuffle = false;
        opts.normalize = norm.clone();
        opts.workers = 1;
        let loader = crate::data::Loader::new(ds.clone(), indices.to_vec(), opts)?;
        let mut out = Vec::with_capacity(indices.len() * self.classes);
        for b in loader.epoch(0) {
            out.extend(self.logits(&b.images)?);
        }
        if let Some(k) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged { sample: indices[k / self.classes], value: out[k] });
        }
        Ok(out)
    }
}

/// Softmax of each row of `c` values, in place (single-label probabilities).
pub fn softmax_rows(v: &mut [f32], c: usize) {
    for row in v.chunks_mut(c) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0;
        row.iter_mut().for_each(|x| {
            *x = (*x - m).exp();
            s += *x;
        });
        row.iter_mut().for_each(|x| *x /= s);
    }
}

/// The logistic function of each value, in place (multi-label probabilities).
pub fn sigmoid(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp()));
}
