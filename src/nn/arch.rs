//! The network a run asks for: a DenseNet preset by name, with its growth rate, blocks and
//! bottleneck size optionally changed, and the name a run gives the result.

use serde::{Deserialize, Serialize};

use super::densenet::DenseNetConfig;
use crate::error::{Error, Result};
use crate::setting::Setting;

/// The architecture settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchSpec {
    /// densenet121, densenet161, densenet169, densenet201 or densenet-bc.
    pub arch: String,
    pub growth_rate: Option<usize>,
    /// Layers per dense block (empty: the preset's).
    #[serde(default)]
    pub blocks: Vec<usize>,
    pub bn_size: Option<usize>,
}

impl Default for ArchSpec {
    fn default() -> Self {
        ArchSpec { arch: "densenet-bc".into(), growth_rate: None, blocks: Vec::new(), bn_size: None }
    }
}

impl ArchSpec {
    pub fn config(&self, classes: usize, channels: usize) -> Result<DenseNetConfig> {
        let mut c = DenseNetConfig::preset(&self.arch, classes, channels)
            .map_err(|e| Error::Invalid(format!("{}: {e}", Setting::Arch)))?;
        if let Some(k) = self.growth_rate {
            c.growth_rate = k;
            if self.arch.starts_with("densenet-bc") || self.arch == "small" || self.arch == "densenet_bc" {
                c.num_init_features = 2 * k;
            }
        }
        if !self.blocks.is_empty() {
            c.block_config = self.blocks.clone();
        }
        if let Some(b) = self.bn_size {
            c.bn_size = b;
        }
        Ok(c)
    }

    /// The name of the network `c` (built by [`ArchSpec::config`]): the preset's, or
    /// "<preset>-custom" when the growth rate, blocks or bottleneck size change it, so that a
    /// run's output and config.json do not pass it off as the preset (the config keeps every
    /// number).
    pub fn name(&self, c: &DenseNetConfig) -> Result<String> {
        Ok(if self.overrides(c)?.is_empty() { self.arch.clone() } else { format!("{}-custom", self.arch) })
    }

    /// [`ArchSpec::name`] with what differs from the preset: "densenet121-custom (growth rate 4,
    /// not 32)".
    pub fn describe(&self, c: &DenseNetConfig) -> Result<String> {
        let o = self.overrides(c)?;
        let name = self.name(c)?;
        Ok(if o.is_empty() { name } else { format!("{name} ({})", o.join("; ")) })
    }

    fn overrides(&self, c: &DenseNetConfig) -> Result<Vec<String>> {
        let p = DenseNetConfig::preset(&self.arch, c.num_classes, c.in_channels)
            .map_err(|e| Error::Invalid(format!("{}: {e}", Setting::Arch)))?;
        let list = |b: &[usize]| b.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let mut o = Vec::new();
        if c.growth_rate != p.growth_rate {
            o.push(format!("growth rate {}, not {}", c.growth_rate, p.growth_rate));
        }
        if c.block_config != p.block_config {
            o.push(format!("blocks {}, not {}", list(&c.block_config), list(&p.block_config)));
        }
        if c.bn_size != p.bn_size {
            o.push(format!("bn size {}, not {}", c.bn_size, p.bn_size));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str, growth: Option<usize>, blocks: &[usize]) -> ArchSpec {
        ArchSpec { arch: name.into(), growth_rate: growth, blocks: blocks.to_vec(), bn_size: None }
    }

    #[test]
    fn overrides_rename_the_preset() {
        let a = arch("densenet121", Some(4), &[]);
        let c = a.config(10, 3).unwrap();
        assert_eq!(a.name(&c).unwrap(), "densenet121-custom");
        assert_eq!(a.describe(&c).unwrap(), "densenet121-custom (growth rate 4, not 32)");
        let a = arch("densenet-bc", Some(4), &[1, 1]);
        let d = a.describe(&a.config(3, 1).unwrap()).unwrap();
        assert_eq!(d, "densenet-bc-custom (growth rate 4, not 12; blocks 1,1, not 6,6,6)");
        // Overrides that give the preset's own numbers leave its name.
        let a = arch("densenet-bc", Some(12), &[6, 6, 6]);
        assert_eq!(a.name(&a.config(3, 1).unwrap()).unwrap(), "densenet-bc");
        assert_eq!(arch("densenet169", None, &[]).name(&DenseNetConfig::densenet169(5)).unwrap(), "densenet169");
    }
}
