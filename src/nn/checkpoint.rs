//! Weights in and out as safetensors, with torchvision's state-dict names and layouts (conv
//! weights OIHW, Linear [out, in], BN `running_mean`, `running_var`, `num_batches_tracked` as
//! int64), so a checkpoint loads in PyTorch with `load_state_dict(safetensors.torch.load_file(p))`
//! and a torchvision state dict saved that way loads here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::densenet::{DenseNetConfig, Stem};
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
    /// The epochs this checkpoint holds ([`EPOCH_KEY`]), if it says.
    pub fn epoch(&self) -> Option<usize> {
        self.metadata.get(EPOCH_KEY).and_then(|s| s.parse().ok())
    }

    /// The metadata of a safetensors file, read from its header alone (not its tensors).
    pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
        use std::io::Read;
        let bad = |why: &str| Error::file(path, format!("not a valid safetensors file ({why})"));
        let mut f = std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|_| bad("shorter than its header"))?;
        let len = u64::from_le_bytes(len);
        // safetensors' own bound on a header.
        if len > 100_000_000 {
            return Err(bad("header too large"));
        }
        let mut header = vec![0u8; len as usize];
        f.read_exact(&mut header).map_err(|_| bad("shorter than its header"))?;
        let v: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(&e.to_string()))?;
        let meta = v.get("__metadata__").and_then(|m| m.as_object()).cloned().unwrap_or_default();
        Ok(meta.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect())
    }

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
        let bytes = safetensors::serialize(views, meta)
            .map_err(|e| Error::Invalid(format!("could not serialise a checkpoint: {e}")))?;
        Ok(sorted_header(bytes))
    }

    /// Writes to `path` through a temporary file and a rename, so a crash never leaves a
    /// half-written checkpoint in place of a good one.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }
}

/// `bytes` (a safetensors file) with the keys of its JSON header in sorted order. safetensors
/// writes the metadata in a hash map's order, which changes from process to process: sorted, the
/// same state always gives the same file. The header keeps its length (the same keys and values,
/// compact), so the tensor data does not move; anything unexpected returns the file as it was.
fn sorted_header(bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            v => v.clone(),
        }
    }
    let Some(n) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize) else { return bytes };
    let Some(header) = bytes.get(8..8 + n) else { return bytes };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(header) else { return bytes };
    let Ok(text) = serde_json::to_string(&sorted(&v)) else { return bytes };
    if text.len() > n {
        return bytes;
    }
    let mut out = bytes;
    out[8..8 + text.len()].copy_from_slice(text.as_bytes());
    out[8 + text.len()..8 + n].fill(b' ');
    out
}

/// The metadata key under which tailor records a checkpoint's [`DenseNetConfig`] (as JSON).
pub const CONFIG_KEY: &str = "tailor.config";

/// The metadata key under which `tailor train` records, in both the model's and the optimiser's
/// checkpoint, the number of epochs they hold: `--resume` checks that the files of a run folder
/// are from the same epoch.
pub const EPOCH_KEY: &str = "tailor.epoch";

/// Where a state dict's DenseNet configuration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inferred {
    /// tailor's `tailor.config` metadata: exact.
    Metadata,
    /// The tensors' names and shapes (torchvision's names).
    Tensors,
}

impl StateDict {
    /// The DenseNet these weights are for: tailor's own record of it when the file has one,
    /// else read off the tensors (stem, initial features, growth rate, bottleneck width, layers
    /// per block, the transitions' compression, classes). `memory_efficient` is not stored in
    /// weights and comes back on.
    pub fn densenet_config(&self) -> Result<(DenseNetConfig, Inferred), String> {
        if let Some(c) = self.metadata.get(CONFIG_KEY).and_then(|t| serde_json::from_str(t).ok()) {
            return Ok((c, Inferred::Metadata));
        }
        self.config_from_tensors().map(|c| (c, Inferred::Tensors))
    }

    fn shape(&self, name: &str) -> Result<&[usize], String> {
        self.tensors.get(name).map(|(s, _)| s.as_slice()).ok_or_else(|| format!("it has no tensor '{name}'"))
    }

    fn config_from_tensors(&self) -> Result<DenseNetConfig, String> {
        let conv0 = self.shape("features.conv0.weight")?;
        let [init, in_channels, k, _] = conv0[..] else {
            return Err(format!("'features.conv0.weight' has shape {conv0:?}, not [out, in, k, k]"));
        };
        let stem = match k {
            7 => Stem::Imagenet,
            3 => Stem::Small,
            _ => return Err(format!("its stem convolution is {k}×{k}; a DenseNet's is 7×7 (torchvision) or 3×3")),
        };
        let layers = |b: usize| {
            (1..).take_while(move |l| {
                self.tensors.contains_key(&format!("features.denseblock{b}.denselayer{l}.conv1.weight"))
            })
        };
        let block_config: Vec<usize> = (1..).map(|b| layers(b).count()).take_while(|&n| n > 0).collect();
        if block_config.is_empty() {
            return Err("it has no 'features.denseblock1.denselayer1' tensors".into());
        }
        let conv2 = self.shape("features.denseblock1.denselayer1.conv2.weight")?;
        let (growth_rate, width) = (conv2[0], conv2.get(1).copied().unwrap_or(0));
        if growth_rate == 0 || width % growth_rate != 0 {
            return Err(format!("its first dense layer's 3×3 conv has shape {conv2:?}, not [k, bn_size·k, 3, 3]"));
        }
        Ok(DenseNetConfig {
            growth_rate,
            block_config: block_config.clone(),
            num_init_features: init,
            bn_size: width / growth_rate,
            compression: self.compression(block_config.len())?,
            num_classes: self.shape("classifier.weight")?[0],
            in_channels,
            stem,
            memory_efficient: true,
            // The head's normalisation has no tensors: only tailor's metadata records it.
            l2_normalize: false,
        })
    }

    /// A compression that gives every transition's output, `max(1, floor(c · compression))` of
    /// its `c` input channels: 0.5 (torchvision's and DenseNet-BC's) when it does, else the
    /// middle of the range they all allow.
    fn compression(&self, blocks: usize) -> Result<f64, String> {
        let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
        for t in 1..blocks {
            let name = format!("features.transition{t}.conv.weight");
            let s = self.shape(&name)?;
            let (out, c) = (s[0] as f64, s.get(1).copied().unwrap_or(0).max(1) as f64);
            lo = lo.max(if out <= 1.0 { 0.0 } else { out / c });
            hi = hi.min((out + 1.0) / c);
        }
        if lo <= 0.5 && 0.5 < hi {
            Ok(0.5)
        } else if lo < hi && lo <= 1.0 {
            // Within [lo, hi), and at most 1: lo ≤ 1 < hi makes that 1 itself.
            Ok(((lo + hi) / 2.0).min(1.0))
        } else {
            Err("its transitions keep channel counts that no one compression in (0, 1] gives".into())
        }
    }
}

/// Writes a set of files (a run's checkpoint) so that a failure while writing changes none of
/// them: every file goes to `path.tmp` first (synced), and only when all are written are they
/// renamed over the old ones, in the order given. So a full disk leaves the previous set whole;
/// only a crash between two renames can mix the sets, which [`EPOCH_KEY`] lets a reader detect.
pub fn write_all_atomic(files: &[(&Path, &[u8])]) -> Result<()> {
    let tmp_of = |p: &Path| {
        let mut t = p.as_os_str().to_owned();
        t.push(".tmp");
        std::path::PathBuf::from(t)
    };
    let cleanup = || {
        for (p, _) in files {
            let _ = std::fs::remove_file(tmp_of(p));
        }
    };
    for (path, bytes) in files {
        let res = (|| {
            use std::io::Write;
            let mut f = std::fs::File::create(tmp_of(path))?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = res {
            cleanup();
            return Err(Error::file(path, format!("cannot write: {e}")));
        }
    }
    for (path, _) in files {
        if let Err(e) = std::fs::rename(tmp_of(path), path) {
            cleanup();
            return Err(Error::file(path, format!("cannot write: {e}")));
        }
    }
    // The renames are durable once the folder is synced (best effort: not every platform lets
    // a folder be opened).
    if let Some(dir) = files.first().and_then(|(p, _)| p.parent()) {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via `path.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_all_atomic(&[(path, bytes)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::densenet::DenseNet;

    /// The state dict of `c` with zero weights and no metadata, as torchvision would save it.
    fn zeros(c: &DenseNetConfig) -> StateDict {
        let mut sd = StateDict::default();
        for p in DenseNet::new(c.clone()).unwrap().params {
            let n = p.shape.iter().product();
            sd.tensors.insert(p.name, (p.shape, vec![0.0; n]));
        }
        sd
    }

    #[test]
    fn the_same_state_is_always_the_same_file() {
        // Maps filled in other orders (and each with its own hash seed) serialise alike, and the
        // file reads back whole.
        let keys: Vec<String> = (0..12).map(|i| format!("key{i}")).collect();
        let mut files = Vec::new();
        for rev in [false, true] {
            let mut sd = zeros(&DenseNetConfig::small(4, &[1], 1, 2));
            let mut ks = keys.clone();
            if rev {
                ks.reverse();
            }
            for k in ks {
                sd.metadata.insert(k.clone(), format!("\"{k}\" é"));
            }
            sd.counters.insert("steps".into(), 7);
            files.push(sd.to_bytes().unwrap());
        }
        assert_eq!(files[0], files[1]);
        let back = StateDict::from_bytes(Path::new("x"), &files[0]).unwrap();
        assert_eq!(back.metadata.len(), 12);
        assert_eq!(back.metadata["key3"], "\"key3\" é");
        assert_eq!(back.counters["steps"], 7);
        let sd = zeros(&DenseNetConfig::small(4, &[1], 1, 2));
        assert_eq!(back.tensors, sd.tensors);
    }

    #[test]
    fn densenet_configs_are_read_off_the_tensors() {
        let mut odd = DenseNetConfig::small(5, &[3, 1, 2], 1, 7);
        odd.compression = 0.3;
        odd.bn_size = 3;
        let mut custom = DenseNetConfig::densenet121(10);
        custom.growth_rate = 4;
        let mut whole = DenseNetConfig::small(4, &[2, 2], 3, 5);
        whole.compression = 1.0;
        for c in [
            DenseNetConfig::densenet121(1000),
            DenseNetConfig::densenet161(3),
            DenseNetConfig::small(12, &[6, 6, 6], 3, 10),
            DenseNetConfig::small(4, &[1], 1, 2),
            custom,
            whole,
            odd.clone(),
        ] {
            let (got, from) = zeros(&c).densenet_config().unwrap();
            assert_eq!(from, Inferred::Tensors);
            // The compression may differ where it makes no difference: the shapes are the same.
            let want: Vec<_> =
                DenseNet::new(c.clone()).unwrap().params.into_iter().map(|p| (p.name, p.shape)).collect();
            let have: Vec<_> =
                DenseNet::new(got.clone()).unwrap().params.into_iter().map(|p| (p.name, p.shape)).collect();
            assert_eq!(have, want, "{c:?} came back as {got:?}");
            assert_eq!((got.compression == 0.5), (c.compression == 0.5), "{got:?}");
        }
        // tailor's own record wins over the shapes.
        let mut sd = zeros(&odd);
        sd.metadata.insert(CONFIG_KEY.into(), serde_json::to_string(&odd).unwrap());
        assert_eq!(sd.densenet_config().unwrap(), (odd, Inferred::Metadata));
        // Not a DenseNet: the message says what is missing.
        let mut sd = StateDict::default();
        sd.tensors.insert("fc.weight".into(), (vec![10, 512], vec![0.0; 5120]));
        assert!(sd.densenet_config().unwrap_err().contains("'features.conv0.weight'"));
    }
}
