//! A DenseNet with its weights on the device: what training and inference share.

use std::sync::Arc;

use super::checkpoint::StateDict;
use super::densenet::{DenseNet, DenseNetConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::store::Store;
use crate::setting::Setting;

pub struct Model {
    pub net: DenseNet,
    /// Parameters and running statistics by torchvision name.
    pub store: Store,
    /// Training steps taken in train mode (torchvision's `num_batches_tracked`).
    pub batches_tracked: i64,
}

/// What [`Model::load_state_dict`] did.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: usize,
    /// The classifier was re-initialised because the checkpoint has another number of classes.
    pub reinit_classifier: Option<(usize, usize)>,
}

impl Model {
    /// A freshly initialised model (torchvision's initialisation, seeded).
    pub fn new(gpu: Arc<Gpu>, config: DenseNetConfig, seed: u64) -> Result<Model> {
        let net = DenseNet::new(config)?;
        // Every tensor must fit in one device buffer; say so before allocating its values.
        for p in &net.params {
            let bytes = p.shape.iter().try_fold(4u64, |b, &d| b.checked_mul(d as u64)).unwrap_or(u64::MAX);
            if bytes > gpu.max_buffer() {
                return Err(Error::Invalid(format!(
                    "the model's tensor '{}' {:?} needs {bytes} bytes, more than this device's largest buffer \
                     ({} bytes); use a smaller {} or {}",
                    p.name,
                    p.shape,
                    gpu.max_buffer(),
                    Setting::GrowthRate,
                    Setting::BnSize
                )));
            }
        }
        // The trainable tensors in one arena, in two groups: those that decay, and those that
        // may skip weight decay (so each optimiser group is one range); running statistics
        // in buffers of their own.
        let mut store = Store::new(gpu);
        let mut groups = vec![Vec::new(), Vec::new()];
        for ((name, shape, v), spec) in net.init(seed).into_iter().zip(&net.params) {
            debug_assert_eq!(name, spec.name);
            if spec.trainable {
                groups[spec.no_decay as usize].push((name, shape, v));
            } else {
                store.insert(&name, &shape, &v)?;
            }
        }
        store.insert_arena(groups)?;
        Ok(Model { net, store, batches_tracked: 0 })
    }

    fn bn_names(&self) -> impl Iterator<Item = String> + '_ {
        self.net.params.iter().filter_map(|p| p.name.strip_suffix(".running_mean").map(str::to_string))
    }

    /// Loads torchvision-named weights. Every tensor of the model must be there with its shape,
    /// except the classifier, which is re-initialised when the number of classes differs (for
    /// fine-tuning from ImageNet weights).
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let mut missing = Vec::new();
        let mut updates = Vec::new();
        for p in &self.net.params {
            let Some((shape, v)) = sd.tensors.get(&p.name) else {
                missing.push(p.name.clone());
                continue;
            };
            if *shape != p.shape {
                if p.name.starts_with("classifier.") && shape.len() == p.shape.len() {
                    report.reinit_classifier = Some((shape[0], p.shape[0]));
                    continue;
                }
                return Err(Error::shape(
                    "load weights",
                    format!(
                        "'{}' has shape {shape:?} in the checkpoint but {:?} in this model (check {})",
                        p.name,
                        p.shape,
                        Setting::Arch
                    ),
                ));
            }
            updates.push((p.name.clone(), v));
        }
        if !missing.is_empty() {
            let shown: Vec<_> = missing.iter().take(5).cloned().collect();
            return Err(Error::Invalid(format!(
                "the checkpoint lacks {} tensor(s) of this model, e.g. {} (is it for another architecture? check {})",
                missing.len(),
                shown.join(", "),
                Setting::Arch
            )));
        }
        let known: std::collections::HashSet<&str> = self.net.params.iter().map(|p| p.name.as_str()).collect();
        if let Some(extra) = sd.tensors.keys().find(|k| !known.contains(k.as_str())) {
            return Err(Error::Invalid(format!(
                "the checkpoint has tensor '{extra}', which this model does not (is it for another architecture? \
                 check {})",
                Setting::Arch
            )));
        }
        for (name, v) in updates {
            self.store.write(&name, v)?;
            report.loaded += 1;
        }
        self.batches_tracked = self
            .bn_names()
            .filter_map(|b| sd.counters.get(&format!("{b}.num_batches_tracked")).copied())
            .max()
            .unwrap_or(0);
        Ok(report)
    }

    /// Loads a checkpoint of this very model (a run's own `model.safetensors`): unlike
    /// [`Model::load_state_dict`], a classifier with another number of classes is an error,
    /// since re-initialising it would silently score with random weights.
    pub fn load_own_state_dict(&mut self, sd: &StateDict, path: &std::path::Path) -> Result<LoadReport> {
        let report = self.load_state_dict(sd)?;
        if let Some((from, to)) = report.reinit_classifier {
            return Err(Error::file(
                path,
                format!(
                    "has a classifier for {from} labels, but the run's config.json has {to}: the model file \
                     belongs to another run; copy back that run's model.safetensors or retrain"
                ),
            ));
        }
        Ok(report)
    }

    /// The weights as a torchvision state dict.
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::default();
        for p in &self.net.params {
            sd.tensors.insert(p.name.clone(), (p.shape.clone(), self.store.read(&p.name)?));
        }
        for b in self.bn_names().collect::<Vec<_>>() {
            sd.counters.insert(format!("{b}.num_batches_tracked"), self.batches_tracked);
        }
        sd.metadata
            .insert(super::checkpoint::CONFIG_KEY.into(), serde_json::to_string(&self.net.config).unwrap_or_default());
        Ok(sd)
    }
}
