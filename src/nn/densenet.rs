//! DenseNet (Huang et al. 2017) as torchvision builds it, with torchvision's parameter names, and
//! the small-image DenseNet-BC (3×3 stem, no max-pool) of the paper's CIFAR experiments.
//!
//! Dense blocks are memory-efficient (Pleiss et al. 2017): every layer writes its new channels
//! into one buffer per block (no concatenation copies) and, when `memory_efficient` is on, the
//! first BN-ReLU output of each layer is recomputed in backward instead of kept.

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::rng::Rng;
use crate::setting::Setting;

/// The stem: torchvision's ImageNet stem or the small-image one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 7×7/2 conv, BN, ReLU, 3×3/2 max-pool (torchvision).
    Imagenet,
    /// 3×3/1 conv only (DenseNet-BC for 28×28 to 64×64 images).
    Small,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DenseNetConfig {
    pub growth_rate: usize,
    pub block_config: Vec<usize>,
    pub num_init_features: usize,
    pub bn_size: usize,
    /// Fraction of channels a transition keeps (torchvision: 0.5).
    pub compression: f64,
    pub num_classes: usize,
    pub in_channels: usize,
    pub stem: Stem,
    /// Recompute each dense layer's first BN-ReLU in backward instead of storing it.
    pub memory_efficient: bool,
    /// An embedding model (Song et al. 2017): the classifier Linear's `num_classes` outputs are
    /// an embedding, L2-normalised per image (`e = z / max(‖z‖, 1e-12)`, `F.normalize`), and the
    /// network's output is `e`. Absent in older configurations (false), and left out of the JSON
    /// when false, so that a classifier's configuration reads and writes as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub l2_normalize: bool,
}

impl DenseNetConfig {
    fn torchvision(growth_rate: usize, block_config: &[usize], num_init_features: usize, num_classes: usize) -> Self {
        DenseNetConfig {
            growth_rate,
            block_config: block_config.to_vec(),
            num_init_features,
            bn_size: 4,
            compression: 0.5,
            num_classes,
            in_channels: 3,
            stem: Stem::Imagenet,
            memory_efficient: true,
            l2_normalize: false,
        }
    }
    pub fn densenet121(num_classes: usize) -> Self {
        Self::torchvision(32, &[6, 12, 24, 16], 64, num_classes)
    }
    pub fn densenet161(num_classes: usize) -> Self {
        Self::torchvision(48, &[6, 12, 36, 24], 96, num_classes)
    }
    pub fn densenet169(num_classes: usize) -> Self {
        Self::torchvision(32, &[6, 12, 32, 32], 64, num_classes)
    }
    pub fn densenet201(num_classes: usize) -> Self {
        Self::torchvision(32, &[6, 12, 48, 32], 64, num_classes)
    }
    /// DenseNet-BC for small images: growth k, 3×3 stem to 2k channels, no max-pool.
    pub fn small(growth_rate: usize, block_config: &[usize], in_channels: usize, num_classes: usize) -> Self {
        DenseNetConfig {
            growth_rate,
            block_config: block_config.to_vec(),
            num_init_features: 2 * growth_rate,
            bn_size: 4,
            compression: 0.5,
            num_classes,
            in_channels,
            stem: Stem::Small,
            memory_efficient: true,
            l2_normalize: false,
        }
    }
    /// A preset by name: densenet121/161/169/201, or `densenet-bc` (growth 12, 3 blocks of 6).
    pub fn preset(name: &str, num_classes: usize, in_channels: usize) -> Result<Self> {
        let mut c = match name {
            "densenet121" => Self::densenet121(num_classes),
            "densenet161" => Self::densenet161(num_classes),
            "densenet169" => Self::densenet169(num_classes),
            "densenet201" => Self::densenet201(num_classes),
            "densenet-bc" | "densenet_bc" | "small" => Self::small(12, &[6, 6, 6], in_channels, num_classes),
            other => {
                return Err(Error::Invalid(format!(
                "unknown architecture '{other}': use densenet121, densenet161, densenet169, densenet201 or densenet-bc"
            )))
            }
        };
        c.in_channels = in_channels;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Invalid(format!("DenseNet config: {m}")));
        if self.growth_rate == 0 || self.bn_size == 0 || self.num_init_features == 0 {
            return bad("growth_rate, bn_size and num_init_features must be at least 1");
        }
        if self.block_config.is_empty() || self.block_config.contains(&0) {
            return bad("block_config needs at least one block, each with at least one layer");
        }
        if self.num_classes == 0 || self.in_channels == 0 {
            return bad("num_classes and in_channels must be at least 1");
        }
        if !(self.compression > 0.0 && self.compression <= 1.0) {
            return bad("compression must be in (0, 1]");
        }
        Ok(())
    }

    /// Elements of every parameter and running statistic, counted from the configuration alone
    /// (in f64, so that absurd sizes do not overflow), to refuse a model too large for memory
    /// before its graph is built or its weights are allocated.
    pub fn tensor_elements(&self) -> f64 {
        let (k, bn) = (self.growth_rate as f64, (self.bn_size * self.growth_rate) as f64);
        let mut c = self.num_init_features as f64;
        let mut total = match self.stem {
            Stem::Imagenet => c * self.in_channels as f64 * 49.0 + 4.0 * c,
            Stem::Small => c * self.in_channels as f64 * 9.0,
        };
        for (bi, &layers) in self.block_config.iter().enumerate() {
            for l in 0..layers {
                let cin = c + l as f64 * k;
                total += 4.0 * cin + bn * cin + 4.0 * bn + k * bn * 9.0;
            }
            c += layers as f64 * k;
            if bi + 1 < self.block_config.len() {
                let out = (c * self.compression).floor().max(1.0);
                total += 4.0 * c + out * c;
                c = out;
            }
        }
        total + 4.0 * c + self.num_classes as f64 * (c + 1.0)
    }

    /// Whether an image side of `s` pixels survives every downsampling (stem, max-pool and the
    /// transitions' 2×2 average pools) with at least one pixel left.
    fn side_fits(&self, mut s: usize) -> bool {
        if s == 0 {
            return false;
        }
        if self.stem == Stem::Imagenet {
            s = (s - 1) / 2 + 1; // 7×7 conv, stride 2, padding 3
            s = (s - 1) / 2 + 1; // 3×3 max-pool, stride 2, padding 1
        }
        for _ in 1..self.block_config.len() {
            s /= 2;
            if s == 0 {
                return false;
            }
        }
        true
    }

    /// The smallest image side this network accepts.
    pub fn min_image_side(&self) -> usize {
        (1..).find(|&s| self.side_fits(s)).unwrap_or(1)
    }

    /// Refuses a configuration whose weights alone would not fit in `bytes` of memory.
    fn check_fits(&self, bytes: f64) -> Result<()> {
        let need = self.tensor_elements() * 4.0;
        if need > bytes {
            let gib = |b: f64| b / (1u64 << 30) as f64;
            return Err(Error::Invalid(format!(
                "this DenseNet would have about {:.3e} parameters ({:.1} GiB of weights), more than the {:.1} GiB of \
                 memory available; use a smaller {}, fewer {} or a smaller {}",
                need / 4.0,
                gib(need),
                gib(bytes),
                Setting::GrowthRate,
                Setting::Blocks,
                Setting::BnSize
            )));
        }
        Ok(())
    }
}

/// How a parameter is initialised (torchvision's scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Kaiming normal, fan-in, gain √2.
    Conv,
    /// U(−1/√fan_in, 1/√fan_in), PyTorch's Linear default.
    LinearWeight,
    Zeros,
    Ones,
}

/// A named tensor of the model's state dict.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    /// Trained by the optimiser (false: running statistics).
    pub trainable: bool,
    /// Batch norm scales and biases: the group that may skip weight decay.
    pub no_decay: bool,
}

/// A DenseNet architecture: its parameters and how to build its graph.
#[derive(Clone, Debug)]
pub struct DenseNet {
    pub config: DenseNetConfig,
    pub params: Vec<ParamSpec>,
}

struct Builder<'a> {
    g: &'a mut Graph,
    train: bool,
    params: Vec<ParamSpec>,
}

impl Builder<'_> {
    fn param(&mut self, name: &str, shape: &[usize], init: Init, trainable: bool, no_decay: bool) -> TensorId {
        self.params.push(ParamSpec { name: name.to_string(), shape: shape.to_vec(), init, trainable, no_decay });
        if trainable {
            self.g.param(name, shape)
        } else {
            self.g.state(name, shape)
        }
    }

    fn conv(
        &mut self,
        name: &str,
        x: TensorId,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
        into: Option<TensorId>,
    ) -> Result<TensorId> {
        let cin = self.g.shape(x)[1];
        let w = self.param(&format!("{name}.weight"), &[cout, cin, k, k], Init::Conv, true, false);
        self.g.conv2d(name, x, w, None, stride, pad, into)
    }

    fn bn_relu(&mut self, name: &str, x: TensorId, recompute: bool) -> Result<TensorId> {
        let c = self.g.shape(x)[1];
        let p = [
            self.param(&format!("{name}.weight"), &[c], Init::Ones, true, true),
            self.param(&format!("{name}.bias"), &[c], Init::Zeros, true, true),
            self.param(&format!("{name}.running_mean"), &[c], Init::Zeros, false, false),
            self.param(&format!("{name}.running_var"), &[c], Init::Ones, false, false),
        ];
        self.g.batch_norm(name, x, p, self.train, true, recompute && self.train)
    }
}

/// The graph a DenseNet built: its image input and its output.
pub struct Built {
    pub input: TensorId,
    /// The network's output `[batch, num_classes]`: the classifier's logits, or for an embedding
    /// model (`l2_normalize`) the L2-normalised embeddings.
    pub logits: TensorId,
}

impl DenseNet {
    pub fn new(config: DenseNetConfig) -> Result<Self> {
        config.validate()?;
        // The weights are initialised on the host, so they must fit there first.
        config.check_fits(crate::gpu::host_available().map_or(f64::MAX, |b| b as f64))?;
        // Build once on a throwaway graph to list the parameters and check the shapes.
        // The smallest image every stage can halve down to at least one pixel.
        let halvings = config.block_config.len() - 1 + if config.stem == Stem::Imagenet { 2 } else { 0 };
        let size = 1usize << halvings.min(20);
        let (_, params) = Self::build_into(&config, &mut Graph::new(), 1, size, size, false)?;
        Ok(DenseNet { config, params })
    }

    /// Adds the forward graph for a batch of `batch` images of `h`×`w` to `g`.
    pub fn build(&self, g: &mut Graph, batch: usize, h: usize, w: usize, train: bool) -> Result<Built> {
        Ok(Self::build_into(&self.config, g, batch, h, w, train)?.0)
    }

    fn build_into(
        c: &DenseNetConfig,
        g: &mut Graph,
        batch: usize,
        h: usize,
        w: usize,
        train: bool,
    ) -> Result<(Built, Vec<ParamSpec>)> {
        if batch == 0 {
            return Err(Error::Invalid("batch size 0: give a positive batch size".into()));
        }
        if !c.side_fits(h) || !c.side_fits(w) {
            let min = c.min_image_side();
            return Err(Error::Invalid(format!(
                "images of {w}×{h} are too small for this DenseNet: its stem and {} transitions need at least \
                 {min}×{min}; give {} {min} or more, or use fewer {}",
                c.block_config.len() - 1,
                Setting::ImageSize,
                Setting::Blocks
            )));
        }
        let mut b = Builder { g, train, params: Vec::new() };
        let input = b.g.input("input", &[batch, c.in_channels, h, w]);
        let mut channels = c.num_init_features;
        // The stem writes straight into the first block's buffer.
        let block_channels = |start: usize, layers: usize| start + layers * c.growth_rate;
        let mut x = match c.stem {
            Stem::Imagenet => {
                let y = b.conv("features.conv0", input, channels, 7, 2, 3, None)?;
                b.bn_relu("features.norm0", y, false)?
            }
            Stem::Small => input,
        };
        let nblocks = c.block_config.len();
        for (bi, &layers) in c.block_config.iter().enumerate() {
            let total = block_channels(channels, layers);
            let (n, hh, ww) = {
                let s = b.g.shape(x);
                match c.stem {
                    // max-pool 3/2 pad 1 after the ImageNet stem, avg-pool 2/2 after a transition
                    Stem::Imagenet if bi == 0 => (s[0], (s[2] + 2 - 3) / 2 + 1, (s[3] + 2 - 3) / 2 + 1),
                    _ if bi > 0 => (s[0], s[2] / 2, s[3] / 2),
                    _ => (s[0], s[2], s[3]),
                }
            };
            let block = b.g.tensor(
                format!("features.denseblock{}", bi + 1),
                &[n, total, hh, ww],
                crate::graph::Role::Activation,
            );
            let head = b.g.slice(block, 0, channels)?;
            match (c.stem, bi) {
                (Stem::Imagenet, 0) => {
                    b.g.max_pool("features.pool0", x, 3, 2, 1, Some(head))?;
                }
                (Stem::Small, 0) => {
                    b.conv("features.conv0", x, channels, 3, 1, 1, Some(head))?;
                }
                _ => {
                    // torchvision's transition is BN-ReLU → 1×1 conv → 2×2 average pool. The
                    // conv (no bias) and the pool are both linear, so pooling first gives the
                    // same result with a quarter of the conv's work, and the conv writes
                    // straight into the next block's buffer.
                    let t = format!("features.transition{bi}");
                    let pooled = b.g.avg_pool(&format!("{t}.pool"), x, 2, 2, 0, None)?;
                    b.conv(&format!("{t}.conv"), pooled, channels, 1, 1, 0, Some(head))?;
                }
            }
            for l in 0..layers {
                let cin = channels + l * c.growth_rate;
                let p = format!("features.denseblock{}.denselayer{}", bi + 1, l + 1);
                let prefix = b.g.slice(block, 0, cin)?;
                let a = b.bn_relu(&format!("{p}.norm1"), prefix, c.memory_efficient)?;
                let bott = b.conv(&format!("{p}.conv1"), a, c.bn_size * c.growth_rate, 1, 1, 0, None)?;
                let a2 = b.bn_relu(&format!("{p}.norm2"), bott, false)?;
                let out = b.g.slice(block, cin, c.growth_rate)?;
                b.conv(&format!("{p}.conv2"), a2, c.growth_rate, 3, 1, 1, Some(out))?;
            }
            channels = total;
            if bi + 1 < nblocks {
                // The transition's conv and pool run at the head of the next block.
                let t = format!("features.transition{}", bi + 1);
                x = b.bn_relu(&format!("{t}.norm"), block, false)?;
                let out = ((channels as f64) * c.compression).floor() as usize;
                channels = out.max(1);
            } else {
                x = block;
            }
        }
        let a = b.bn_relu("features.norm5", x, false)?;
        let pooled = b.g.global_avg_pool("pool", a)?;
        let wt = b.param("classifier.weight", &[c.num_classes, channels], Init::LinearWeight, true, false);
        let bias = b.param("classifier.bias", &[c.num_classes], Init::Zeros, true, true);
        let mut logits = b.g.linear("classifier", pooled, wt, bias)?;
        if c.l2_normalize {
            logits = b.g.l2_normalize("embedding", logits)?;
        }
        Ok((Built { input, logits }, b.params))
    }

    /// Initial values of every parameter and running statistic, as torchvision initialises them.
    pub fn init(&self, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut rng = Rng::new(seed);
        self.params
            .iter()
            .map(|p| {
                let n: usize = p.shape.iter().product();
                let fan_in: usize = p.shape[1..].iter().product::<usize>().max(1);
                let v: Vec<f32> = match p.init {
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                    Init::Conv => {
                        let std = (2.0 / fan_in as f64).sqrt();
                        (0..n).map(|_| (rng.normal() * std) as f32).collect()
                    }
                    Init::LinearWeight => {
                        let a = 1.0 / (fan_in as f64).sqrt();
                        (0..n).map(|_| rng.range(-a, a) as f32).collect()
                    }
                };
                (p.name.clone(), p.shape.clone(), v)
            })
            .collect()
    }

    /// Trainable parameter count.
    pub fn num_params(&self) -> usize {
        self.params.iter().filter(|p| p.trainable).map(|p| p.shape.iter().product::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(c: &DenseNetConfig) -> usize {
        DenseNet::new(c.clone()).unwrap().params.iter().map(|p| p.shape.iter().product::<usize>()).sum()
    }

    #[test]
    fn tensor_elements_counts_every_tensor() {
        let mut odd = DenseNetConfig::small(5, &[3, 1, 2], 1, 7);
        odd.compression = 0.3;
        odd.bn_size = 3;
        for c in [
            DenseNetConfig::densenet121(10),
            DenseNetConfig::densenet161(3),
            DenseNetConfig::small(12, &[6, 6, 6], 3, 10),
            odd,
        ] {
            assert_eq!(c.tensor_elements(), exact(&c) as f64, "{c:?}");
        }
    }

    #[test]
    fn images_too_small_and_empty_batches_are_refused_by_name() {
        // Messages name settings as the command line's flags, as `tailor` prints them.
        crate::setting::name_settings_as(crate::setting::Naming::Flags);
        let c = DenseNetConfig::densenet121(10);
        assert_eq!(c.min_image_side(), 29);
        let net = DenseNet::new(c).unwrap();
        let mut g = Graph::new();
        let e = net.build(&mut g, 2, 28, 64, true).err().unwrap().to_string();
        assert!(e.contains("64×28") && e.contains("--image-size 29"), "{e}");
        assert!(net.build(&mut Graph::new(), 2, 29, 29, true).is_ok());
        let e = net.build(&mut Graph::new(), 0, 32, 32, true).err().unwrap().to_string();
        assert!(e.contains("batch size 0"), "{e}");
        assert_eq!(DenseNetConfig::small(4, &[1, 1, 1], 1, 2).min_image_side(), 4);
    }

    #[test]
    fn l2_normalize_is_optional_in_json_and_left_out_when_off() {
        let c = DenseNetConfig::small(4, &[1, 1], 3, 8);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("l2_normalize"), "a classifier's JSON is as before: {text}");
        assert_eq!(serde_json::from_str::<DenseNetConfig>(&text).unwrap(), c);
        let e = DenseNetConfig { l2_normalize: true, ..c };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"l2_normalize\":true"), "{text}");
        assert_eq!(serde_json::from_str::<DenseNetConfig>(&text).unwrap(), e);
    }

    #[test]
    fn an_embedding_model_ends_in_the_normalisation() {
        let c = DenseNetConfig { l2_normalize: true, ..DenseNetConfig::small(4, &[1, 1], 3, 8) };
        let net = DenseNet::new(c.clone()).unwrap();
        let plain = DenseNet::new(DenseNetConfig { l2_normalize: false, ..c }).unwrap();
        assert_eq!(net.num_params(), plain.num_params(), "the normalisation has no parameters");
        let mut g = Graph::new();
        let built = net.build(&mut g, 2, 8, 8, true).unwrap();
        assert_eq!(g.shape(built.logits), &[2, 8]);
        let last = g.nodes.last().unwrap();
        assert_eq!((&last.op, last.outs[0]), (&crate::graph::Op::L2Normalize, built.logits));
    }

    #[test]
    fn a_model_too_large_for_memory_is_refused_before_it_is_built() {
        // Messages name settings as the command line's flags, as `tailor` prints them.
        crate::setting::name_settings_as(crate::setting::Naming::Flags);
        let mut c = DenseNetConfig::small(12, &[100_000], 3, 10);
        assert!(c.check_fits(1e12).is_err());
        c.block_config = vec![6, 6, 6];
        assert!(c.check_fits(1e12).is_ok());
        let e = c.check_fits(1e5).unwrap_err().to_string();
        assert!(e.contains("--growth-rate"), "{e}");
    }
}
