//! Which devices a run trains on (`--devices`): one replica of the model per device.

use std::sync::Arc;

use super::{list_adapters, unusable_reason, Gpu, GpuOptions};
use crate::error::{Error, Result};

/// The devices to train on, one replica each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSelection {
    /// The usable adapters (GPUs only when there is any; each physical device once).
    All,
    /// The first `n` of them, best first (as `tailor devices` lists them).
    Count(usize),
    /// Adapters by name (a case-insensitive part of it), in this order; a name given twice opens
    /// that adapter twice (two replicas on one device: for testing, it is not faster).
    Names(Vec<String>),
}

impl std::str::FromStr for DeviceSelection {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(DeviceSelection::All);
        }
        if let Ok(n) = s.parse::<usize>() {
            if n == 0 {
                return Err(Error::Invalid("--devices 0: give all, a number of devices (1 or more) or names".into()));
            }
            return Ok(DeviceSelection::Count(n));
        }
        let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
        if names.iter().any(String::is_empty) {
            return Err(Error::Invalid(format!(
                "--devices {s}: an empty name; give all, a number, or adapter names separated by commas"
            )));
        }
        Ok(DeviceSelection::Names(names))
    }
}

impl Default for DeviceSelection {
    fn default() -> Self {
        DeviceSelection::Count(1)
    }
}

/// The adapters `sel` picks, in replica order, each checked to be usable for training.
pub fn select_adapters(opts: &GpuOptions, sel: &DeviceSelection) -> Result<Vec<wgpu::Adapter>> {
    let all = list_adapters(opts.backend.as_deref())?;
    // Each physical device once (an adapter may be listed by several backends; the list is
    // sorted best backend first).
    let mut usable: Vec<wgpu::Adapter> = Vec::new();
    for a in all.iter().filter(|a| unusable_reason(a).is_none()) {
        let i = a.get_info();
        let same = |b: &wgpu::Adapter| {
            let j = b.get_info();
            (j.vendor, j.device, &j.name) == (i.vendor, i.device, &i.name)
        };
        if !usable.iter().any(same) {
            usable.push(a.clone());
        }
    }
    let names = |v: &[wgpu::Adapter]| v.iter().map(|a| a.get_info().name).collect::<Vec<_>>().join(", ");
    if usable.is_empty() {
        return Err(Error::NoAdapter(" that can train (see `tailor devices`)".into()));
    }
    match sel {
        DeviceSelection::All => {
            let gpus: Vec<_> =
                usable.iter().filter(|a| a.get_info().device_type != wgpu::DeviceType::Cpu).cloned().collect();
            Ok(if gpus.is_empty() { usable } else { gpus })
        }
        DeviceSelection::Count(n) if *n <= usable.len() => Ok(usable[..*n].to_vec()),
        DeviceSelection::Count(n) => Err(Error::Invalid(format!(
            "--devices {n}: this machine has {} adapter(s) that can train ({}); give at most that many, or name \
             an adapter twice (--devices NAME,NAME) to run two replicas on one device",
            usable.len(),
            names(&usable)
        ))),
        DeviceSelection::Names(want) => want
            .iter()
            .map(|w| {
                let lw = w.to_lowercase();
                usable.iter().find(|a| a.get_info().name.to_lowercase().contains(&lw)).cloned().ok_or_else(|| {
                    Error::NoAdapter(format!(" that can train whose name contains '{w}' (found: {})", names(&usable)))
                })
            })
            .collect(),
    }
}

/// Opens one device per adapter `sel` picks: the replicas' devices, the first the primary.
pub fn open_devices(opts: &GpuOptions, sel: &DeviceSelection) -> Result<Vec<Arc<Gpu>>> {
    select_adapters(opts, sel)?.into_iter().map(Gpu::open).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse() {
        assert_eq!("all".parse::<DeviceSelection>().unwrap(), DeviceSelection::All);
        assert_eq!(" 2 ".parse::<DeviceSelection>().unwrap(), DeviceSelection::Count(2));
        assert_eq!(
            "llvmpipe, RTX".parse::<DeviceSelection>().unwrap(),
            DeviceSelection::Names(vec!["llvmpipe".into(), "RTX".into()])
        );
        assert!("0".parse::<DeviceSelection>().is_err());
        assert!("a,,b".parse::<DeviceSelection>().is_err());
    }
}
