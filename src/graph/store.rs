//! Named persistent tensors on the device: parameters and running statistics, shared by the
//! training and inference executables of one model.
//!
//! The trainable parameters live in one buffer, the parameter *arena*: each tensor a range at an
//! offset the device can bind, the tensors of each optimiser group back to back. The optimiser
//! then updates a whole group with one dispatch over one range (and a training step lays its
//! parameter gradients and Adam moments out the same way), instead of one dispatch per tensor.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{BufRange, Gpu};

pub struct Entry {
    pub shape: Vec<usize>,
    /// The buffer holding the tensor: its own, or the parameter arena.
    pub buf: wgpu::Buffer,
    /// Byte offset of the tensor in `buf` (a multiple of the device's binding alignment).
    pub offset: u64,
}

impl Entry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The bytes a dispatch binds for this tensor (at least 4, so that an empty tensor binds).
    pub fn range(&self) -> BufRange<'_> {
        BufRange { buf: &self.buf, offset: self.offset, size: (self.numel().max(1) * 4) as u64 }
    }
}

/// The trainable parameters laid out in one buffer.
pub struct Arena {
    pub buf: wgpu::Buffer,
    /// f32 elements of `buf`, padding included.
    pub len: usize,
    /// Each group's elements: consecutive, covering `0..len`, every group starting aligned.
    pub groups: Vec<Range<usize>>,
    /// (name, first element, elements) of every tensor, in layout order.
    pub members: Vec<(String, usize, usize)>,
}

impl Arena {
    /// Where tensor `name` lies: (first element, elements).
    pub fn find(&self, name: &str) -> Option<(usize, usize)> {
        self.members.iter().find(|(n, ..)| n == name).map(|&(_, o, l)| (o, l))
    }
}

pub struct Store {
    pub gpu: Arc<Gpu>,
    entries: BTreeMap<String, Entry>,
    arena: Option<Arena>,
}

/// One tensor to store: name, shape and values.
pub type Tensor = (String, Vec<usize>, Vec<f32>);

impl Store {
    pub fn new(gpu: Arc<Gpu>) -> Self {
        Store { gpu, entries: BTreeMap::new(), arena: None }
    }

    /// Adds or replaces `name` with `data`, in a buffer of its own.
    pub fn insert(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        let n: usize = shape.iter().product();
        if data.len() != n {
            return Err(Error::shape(name, format!("{} values for shape {shape:?}", data.len())));
        }
        if self.arena.as_ref().is_some_and(|a| a.find(name).is_some()) {
            return Err(Error::Invalid(format!("'{name}' lives in the parameter arena; write it instead")));
        }
        let buf = self.gpu.upload(name, data)?;
        self.entries.insert(name.to_string(), Entry { shape: shape.to_vec(), buf, offset: 0 });
        Ok(())
    }

    /// Lays `groups` of tensors out in one new buffer, the parameter arena (see the module
    /// docs): every tensor starts at a multiple of the device's binding alignment, padding is
    /// zero. A store has one arena; its tensors may not already be stored.
    pub fn insert_arena(&mut self, groups: Vec<Vec<Tensor>>) -> Result<()> {
        if self.arena.is_some() {
            return Err(Error::Invalid("the store already has a parameter arena".into()));
        }
        let align = (self.gpu.binding_alignment() / 4).max(1) as usize;
        let mut members = Vec::new();
        let mut ranges = Vec::new();
        let mut len = 0usize;
        for group in &groups {
            let start = len;
            for (name, shape, data) in group {
                let n: usize = shape.iter().product();
                if data.len() != n {
                    return Err(Error::shape(name, format!("{} values for shape {shape:?}", data.len())));
                }
                if self.entries.contains_key(name) || members.iter().any(|(m, ..): &(String, usize, usize)| m == name) {
                    return Err(Error::Invalid(format!("'{name}' is stored twice")));
                }
                members.push((name.clone(), len, n));
                len += n.max(1).next_multiple_of(align);
            }
            ranges.push(start..len);
        }
        let mut values = vec![0f32; len.max(1)];
        for ((_, offset, n), (_, _, data)) in members.iter().zip(groups.iter().flatten()) {
            values[*offset..offset + n].copy_from_slice(data);
        }
        let buf = self.gpu.upload("parameters", &values)?;
        for ((name, offset, _), (_, shape, _)) in members.iter().zip(groups.iter().flatten()) {
            let entry = Entry { shape: shape.clone(), buf: buf.clone(), offset: (*offset * 4) as u64 };
            self.entries.insert(name.clone(), entry);
        }
        self.arena = Some(Arena { buf, len, groups: ranges, members });
        Ok(())
    }

    /// The parameter arena, if the trainable parameters were stored as one.
    pub fn arena(&self) -> Option<&Arena> {
        self.arena.as_ref()
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
        if data.len() != e.numel() {
            return Err(Error::shape(name, format!("{} values for shape {:?}", data.len(), e.shape)));
        }
        self.gpu.write_at(&e.buf, e.offset, data);
        Ok(())
    }

    /// Reads `name` back to the host.
    pub fn read(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entries.get(name).ok_or_else(|| Error::Invalid(format!("the model has no tensor '{name}'")))?;
        self.gpu.read_at(&e.buf, e.offset, e.numel())
    }

    pub fn names(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Bytes held (the arena's padding included).
    pub fn bytes(&self) -> u64 {
        let own: u64 = self
            .entries
            .values()
            .filter(|e| self.arena.as_ref().is_none_or(|a| a.buf != e.buf))
            .map(|e| e.numel() as u64 * 4)
            .sum();
        own + self.arena.as_ref().map_or(0, |a| a.len as u64 * 4)
    }
}
