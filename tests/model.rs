//! DenseNet's parameter names and shapes against torchvision's, and weights in and out.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tailor::nn::checkpoint::StateDict;
use tailor::nn::densenet::{DenseNet, DenseNetConfig};

pub fn fixtures() -> PathBuf {
    let dir = std::env::var("TAILOR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    assert!(dir.is_dir(), "fixtures not found at {} (set TAILOR_FIXTURES)", dir.display());
    dir
}

fn state_dict_shapes(net: &DenseNet) -> BTreeMap<String, Vec<usize>> {
    let mut m: BTreeMap<String, Vec<usize>> = net.params.iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    for p in &net.params {
        if let Some(b) = p.name.strip_suffix(".running_mean") {
            m.insert(format!("{b}.num_batches_tracked"), vec![]);
        }
    }
    m
}

#[test]
fn densenet121_names_and_shapes_match_torchvision() {
    let text = std::fs::read_to_string(fixtures().join("densenet121_state_dict_shapes.json")).unwrap();
    let want: BTreeMap<String, Vec<usize>> = serde_json::from_str(&text).unwrap();
    let net = DenseNet::new(DenseNetConfig::densenet121(1000)).unwrap();
    let got = state_dict_shapes(&net);
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "tensor {k}");
    }
    assert_eq!(got.len(), want.len(), "tailor has tensors torchvision does not");
    assert_eq!(net.num_params(), 7_978_856);
}

#[test]
fn other_presets_have_torchvision_parameter_counts() {
    for (cfg, n) in [
        (DenseNetConfig::densenet161(1000), 28_681_000),
        (DenseNetConfig::densenet169(1000), 14_149_480),
        (DenseNetConfig::densenet201(1000), 20_013_928),
    ] {
        assert_eq!(DenseNet::new(cfg).unwrap().num_params(), n);
    }
    // W1 of the benchmarks: DenseNet-BC k=12, 3×6 layers, 10 classes (PyTorch peer: 176,122).
    assert_eq!(DenseNet::new(DenseNetConfig::small(12, &[6, 6, 6], 3, 10)).unwrap().num_params(), 176_122);
}

pub fn tiny_config() -> DenseNetConfig {
    let mut c = DenseNetConfig::densenet121(5);
    c.growth_rate = 8;
    c.block_config = vec![2, 2];
    c.num_init_features = 16;
    c.bn_size = 2;
    c
}

#[test]
fn fixture_state_dict_matches_the_tiny_densenet() {
    let bytes = std::fs::read(fixtures().join("densenet_tiny.safetensors")).unwrap();
    let all = StateDict::from_bytes(&fixtures().join("densenet_tiny.safetensors"), &bytes).unwrap();
    let net = DenseNet::new(tiny_config()).unwrap();
    let want = state_dict_shapes(&net);
    let mut got: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (k, (s, _)) in &all.tensors {
        if let Some(n) = k.strip_prefix("init.") {
            got.insert(n.to_string(), s.clone());
        }
    }
    for k in all.counters.keys() {
        if let Some(n) = k.strip_prefix("init.") {
            got.insert(n.to_string(), vec![]);
        }
    }
    assert_eq!(got, want);
}

#[test]
fn state_dict_round_trips_through_safetensors() {
    let mut sd = StateDict::default();
    sd.tensors.insert("a.weight".into(), (vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-8, 7.0]));
    sd.counters.insert("a.num_batches_tracked".into(), 42);
    let dir = std::env::temp_dir().join(format!("tailor-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("w.safetensors");
    sd.save(&p).unwrap();
    let back = StateDict::load(&p).unwrap();
    assert_eq!(back.tensors, sd.tensors);
    assert_eq!(back.counters, sd.counters);
    assert!(!dir.join("w.safetensors.tmp").exists());
    let err = StateDict::load(&dir.join("missing.safetensors")).unwrap_err().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
    std::fs::write(dir.join("bad.safetensors"), b"not safetensors").unwrap();
    let err = StateDict::load(&dir.join("bad.safetensors")).unwrap_err().to_string();
    assert!(err.contains("not a valid safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn graph_shape_errors_name_the_op() {
    use tailor::graph::Graph;
    let mut g = Graph::new();
    let x = g.input("input", &[2, 3, 16, 16]);
    let w = g.param("w", &[8, 4, 3, 3]);
    let err = g.conv2d("stem", x, w, None, 1, 1, None).unwrap_err().to_string();
    assert!(err.contains("conv2d 'stem'") && err.contains("3 channels"), "{err}");
    let w = g.param("big", &[8, 3, 20, 20]);
    let err = g.conv2d("huge", x, w, None, 1, 0, None).unwrap_err().to_string();
    assert!(err.contains("conv2d 'huge'") && err.contains("larger than the padded input"), "{err}");
    let err = g.max_pool("pool", x, 32, 2, 0, None).unwrap_err().to_string();
    assert!(err.contains("max_pool 'pool'"), "{err}");
    let flat = g.input("flat", &[2, 10]);
    let lw = g.param("fc.weight", &[5, 11]);
    let lb = g.param("fc.bias", &[5]);
    let err = g.linear("fc", flat, lw, lb).unwrap_err().to_string();
    assert!(err.contains("linear 'fc'"), "{err}");
    // A DenseNet whose stages shrink the image below one pixel is refused at build time.
    let net = DenseNet::new(DenseNetConfig::densenet121(10)).unwrap();
    let err = net.build(&mut Graph::new(), 1, 16, 16, true).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("too small") && err.contains("at least 29×29"), "{err}");
}

#[test]
fn learning_rate_schedules() {
    use tailor::nn::optim::{OptimizerConfig, Schedule};
    let c = |schedule, warmup| OptimizerConfig { lr: 1.0, schedule, warmup, ..Default::default() };
    let constant = c(Schedule::Constant, 0);
    assert_eq!((constant.lr_at(1), constant.lr_at(1000)), (1.0, 1.0));
    let step = c(Schedule::Step { every: 10, gamma: 0.1 }, 0);
    assert_eq!(step.lr_at(10), 1.0);
    assert!((step.lr_at(11) - 0.1).abs() < 1e-12 && (step.lr_at(25) - 0.01).abs() < 1e-12);
    let cosine = c(Schedule::Cosine { total: 100, min_lr: 0.0 }, 0);
    assert!((cosine.lr_at(1) - 1.0).abs() < 1e-12);
    assert!((cosine.lr_at(51) - 0.5).abs() < 1e-12);
    assert!(cosine.lr_at(101).abs() < 1e-12);
    let warm = c(Schedule::Constant, 4);
    assert_eq!([warm.lr_at(1), warm.lr_at(2), warm.lr_at(4), warm.lr_at(5)], [0.25, 0.5, 1.0, 1.0]);
    assert!(OptimizerConfig { beta1: 1.0, ..Default::default() }.validate().is_err());
}

#[test]
fn loading_weights_for_another_class_count_reinitialises_only_the_classifier() {
    // Messages name settings as the command line's flags, as `tailor` prints them.
    tailor::setting::name_settings_as(tailor::setting::Naming::Flags);
    use tailor::nn::model::Model;
    let gpu = tailor::Gpu::new().expect("no GPU adapter");
    let small = |classes| DenseNetConfig::small(4, &[1, 1], 3, classes);
    let ten = Model::new(gpu.clone(), small(10), 1).unwrap();
    let sd = ten.state_dict().unwrap();
    let mut five = Model::new(gpu.clone(), small(5), 2).unwrap();
    let before = five.store.read("classifier.weight").unwrap();
    let report = five.load_state_dict(&sd).unwrap();
    assert_eq!(report.reinit_classifier, Some((10, 5)));
    assert_eq!(five.store.read("classifier.weight").unwrap(), before, "the classifier keeps its fresh initialisation");
    assert_eq!(five.store.read("features.conv0.weight").unwrap(), sd.tensors["features.conv0.weight"].1);
    // Another architecture is refused with the tensor named.
    let mut other = Model::new(gpu, DenseNetConfig::small(6, &[1, 1], 3, 10), 3).unwrap();
    let err = other.load_state_dict(&sd).unwrap_err().to_string();
    assert!(err.contains("features.conv0.weight") && err.contains("--arch"), "{err}");
}

/// The memory report of a built step counts the buffers kernels keep for themselves (zero
/// biases, transposed 3×3 weights) on top of the plan, and its total includes them.
#[test]
fn memory_report_counts_kernel_buffers() {
    use tailor::graph::LossKind;
    use tailor::nn::model::Model;
    use tailor::nn::train::{TrainConfig, Trainer};
    let gpu = tailor::Gpu::new().expect("no GPU adapter");
    let model = Model::new(gpu, DenseNetConfig::small(8, &[2, 2], 3, 4), 1).unwrap();
    let config = TrainConfig {
        batch: 2,
        height: 8,
        width: 8,
        loss: LossKind::Softmax { gamma: 0.0 },
        class_weights: vec![1.0; 4],
        optimizer: Default::default(),
        accumulate: 1,
    };
    let planned = Trainer::estimate_memory(&model, &config).unwrap();
    let built = Trainer::new(model, config).unwrap().memory();
    assert_eq!(planned.kernel_buffers, 0);
    assert!(built.kernel_buffers > 0, "{built}");
    assert_eq!(built.total(), planned.total() + built.kernel_buffers, "{planned} / {built}");
    assert!(built.to_string().contains("kernel buffers"));
}

/// A tagger scores image files as the predictor scores the same fitted input, reports the top
/// k (single-label) or the labels at their thresholds (multi-label), and refuses parts that do
/// not fit together.
#[test]
fn tagger_tags_image_files() {
    use tailor::data::{ImageSpec, Normalize};
    use tailor::nn::model::Model;
    use tailor::nn::predict::Predictor;
    use tailor::nn::tagger::Tagger;
    let gpu = tailor::Gpu::new().expect("no GPU adapter");
    let dir = std::env::temp_dir().join(format!("tailor-tagger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Three images, one of another size (letterboxed) and one gray (converted to RGB).
    let paths: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("{i}.png"))).collect();
    image::RgbImage::from_fn(12, 10, |x, y| image::Rgb([(x * 20) as u8, (y * 25) as u8, 90])).save(&paths[0]).unwrap();
    image::RgbImage::from_fn(20, 10, |x, y| image::Rgb([(x * 9) as u8, 30, (y * 20) as u8])).save(&paths[1]).unwrap();
    image::GrayImage::from_fn(12, 10, |x, y| image::Luma([(x * y) as u8])).save(&paths[2]).unwrap();
    let image = ImageSpec::new(12, 10, 3).unwrap();
    let names: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    let cfg = DenseNetConfig::small(4, &[1, 1], 3, 4);
    // Batch 2: three images run as two batches, the second padded.
    let single = Tagger::new(
        Model::new(gpu.clone(), cfg.clone(), 5).unwrap(),
        image,
        Normalize::default_for(3),
        names.clone(),
        false,
        vec![Some(0.5); 4],
        2,
    )
    .unwrap();
    let (tagged, fitted) = single.tag_files(&paths, 2).unwrap();
    assert_eq!((fitted.images, fitted.resized, fitted.converted), (3, 1, 1));
    let (input, _) = single.prepare(&paths).unwrap();
    let want = Predictor::new(&single.model, 1, 10, 12).unwrap().logits(&input).unwrap();
    for (i, t) in tagged.iter().enumerate() {
        assert_eq!(t.logits, want[i * 4..(i + 1) * 4].to_vec(), "image {i}");
        let sum: f32 = t.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "softmax sums to {sum}");
        assert_eq!(t.chosen.len(), 2);
        let best = (0..4).max_by(|&a, &b| t.probabilities[a].total_cmp(&t.probabilities[b])).unwrap();
        assert_eq!(t.chosen[0], (best, t.probabilities[best]));
        assert!(t.chosen[0].1 >= t.chosen[1].1);
    }
    assert_eq!(single.tag(&input, 2).unwrap(), tagged);
    // Multi-label: sigmoid probabilities, and exactly the labels at or above their thresholds;
    // a label without one (eval found none at its precision floor) is never chosen.
    let thresholds = vec![Some(0.0), Some(1.1), None, Some(0.5)];
    let multi = Tagger::new(
        Model::new(gpu.clone(), cfg.clone(), 5).unwrap(),
        image,
        Normalize::default_for(3),
        names.clone(),
        true,
        thresholds.clone(),
        4,
    )
    .unwrap();
    for t in multi.tag_files(&paths, 2).unwrap().0 {
        let want: Vec<usize> =
            (0..4).filter(|&j| thresholds[j].is_some_and(|th| t.probabilities[j] as f64 >= th)).collect();
        let mut got: Vec<usize> = t.chosen.iter().map(|c| c.0).collect();
        got.sort();
        assert_eq!(got, want);
        assert!(got.contains(&0) && !got.contains(&1) && !got.contains(&2));
        assert!(t.logits.iter().zip(&t.probabilities).all(|(l, p)| (1.0 / (1.0 + (-l).exp()) - p).abs() < 1e-6));
    }
    // Parts that do not fit together are refused with what differs.
    let model = || Model::new(gpu.clone(), cfg.clone(), 5).unwrap();
    let err = Tagger::new(model(), image, Normalize::default_for(3), names[..3].to_vec(), false, vec![Some(0.5); 3], 1);
    assert!(err.err().unwrap().to_string().contains("4 classes but 3 label names"));
    let gray = ImageSpec::new(12, 10, 1).unwrap();
    let err = Tagger::new(model(), gray, Normalize::default_for(1), names.clone(), false, vec![Some(0.5); 4], 1);
    assert!(err.err().unwrap().to_string().contains("3-channel"));
    let missing = dir.join("missing.png");
    let err = single.tag_files(&[&missing], 1).err().unwrap().to_string();
    assert!(err.contains("missing.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
