//! Weights in and out as safetensors, with torchvision's state-dict names and layouts (conv
//! weights OIHW, Linear [out, in], BN `running_mean`, `running_var`, `num_batches_tracked` as
//! int64), so a checkpoint loads in PyTorch with `load_state_dict(safetensors.torch.load_file(p))`
//! and a torchvision state dict saved that way loads here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};

/// A state dict on the host: float tensors by name, plus integer counters.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// `num_batches_tracked` and other int64 scalars.
    pub counters: BTreeMap<String, i64>,
    /// Free-form metadata stored in the safetensors header.
    pub metadata: HashMap<String, String>,
}

fn to_f32(path: &Path, name: &str, v: &TensorView) -> Result<Vec<f32>> {
    let d = v.data();
    Ok(match v.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
        Dtype::I64 => d.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        Dtype::I32 => d.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
        Dtype::BF16 => {
            d.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
        }
        other => {
            return Err(Error::file(
                path,
                format!("tensor '{name}' has dtype {other:?}; tailor reads F32, F64, F16, BF16, I64 and I32"),
            ))
        }
    })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: renormalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

impl StateDict {
    /// Reads a safetensors file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file ({e})")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::file(path, format!("not a valid safetensors file ({e})")))?;
        let mut out = StateDict { metadata: meta.metadata().clone().unwrap_or_default(), ..Default::default() };
        for (name, view) in st.tensors() {
            match view.dtype() {
                Dtype::I64 | Dtype::I32 if view.shape().is_empty() => {
                    let d = view.data();
                    let v = if view.dtype() == Dtype::I64 {
                        i64::from_le_bytes(d[..8].try_into().unwrap())
                    } else {
                        i32::from_le_bytes(d[..4].try_into().unwrap()) as i64
                    };
                    out.counters.insert(name, v);
                }
                _ => {
                    let v = to_f32(path, &name, &view)?;
                    out.tensors.insert(name, (view.shape().to_vec(), v));
                }
            }
        }
        Ok(out)
    }

    /// Serialises to safetensors bytes (f32 tensors, i64 counters).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, (shape, v)) in &self.tensors {
            raw.push((name.clone(), Dtype::F32, shape.clone(), bytemuck::cast_slice(v).to_vec()));
        }
        for (name, v) in &self.counters {
            raw.push((name.clone(), Dtype::I64, vec![], v.to_le_bytes().to_vec()));
        }
        let views: Vec<(String, TensorView)> = raw
            .iter()
            .map(|(n, d, s, b)| {
                Ok((n.clone(), TensorView::new(*d, s.clone(), b).map_err(|e| Error::Invalid(e.to_string()))?))
            })
            .collect::<Result<_>>()?;
        let meta = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        safetensors::serialize(views, meta)
            .map_err(|e| Error::Invalid(format!("could not serialise a checkpoint: {e}")))
    }

    /// Writes to `path` through a temporary file and a rename, so a crash never leaves a
    /// half-written checkpoint in place of a good one.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// Writes `bytes` to `path` via `path.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let res = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}
