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
