//! Named persistent tensors on the device: parameters and running statistics, shared by the
//! training and inference executables of one model.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

pub struct Entry {
    pub shape: Vec<usize>,
    pub buf: wgpu::Buffer,
}

pub struct Store {
    pub gpu: Arc<Gpu>,
    entries: BTreeMap<String, Entry>,
}

impl Store {
    pub fn new(gpu: Arc<Gpu>) -> Self {
        Store { gpu, entries: BTreeMap::new() }
    }

    /// Adds or replaces `name` with `data`.
    pub fn insert(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::shape(name, format!("{} values for shape {shape:?}", data.len())));
        }
        let buf = self.gpu.upload(name, data)?;
        self.entries.insert(name.to_string(), Entry { shape: shape.to_vec(), buf });
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// The entry `name`, checked against `shape`.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let e = self.entries.get(name).ok_or_else(|| Error::Invalid(format!("the model has no tensor '{name}'")))?;
        if e.shape != shape {
            return Err(Error::shape(name, format!("stored with shape {:?}, the graph needs {shape:?}", e.shape)));
        }
        Ok(e)
    }

    /// Overwrites `name` with `data` (same shape).
    pub fn write(&self, name: &str, data: &[f32]) -> Result<()> {
        let e = self.entries.get(name).ok_or_else(|| Error::Invalid(format!("the model has no tensor '{name}'")))?;
        if data.len() != e.shape.iter().product::<usize>() {
            return Err(Error::shape(name, format!("{} values for shape {:?}", data.len(), e.shape)));
        }
        self.gpu.write(&e.buf, data);
        Ok(())
    }

    /// Reads `name` back to the host.
    pub fn read(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entries.get(name).ok_or_else(|| Error::Invalid(format!("the model has no tensor '{name}'")))?;
        self.gpu.read(&e.buf, e.shape.iter().product())
    }

    pub fn names(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.entries.values().map(|e| e.shape.iter().product::<usize>() as u64 * 4).sum()
    }
}
