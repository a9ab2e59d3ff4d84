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
    };
    let planned = Trainer::estimate_memory(&model, &config).unwrap();
    let built = Trainer::new(model, config).unwrap().memory();
    assert_eq!(planned.kernel_buffers, 0);
    assert!(built.kernel_buffers > 0, "{built}");
    assert_eq!(built.total(), planned.total() + built.kernel_buffers, "{planned} / {built}");
    assert!(built.to_string().contains("kernel buffers"));
}
