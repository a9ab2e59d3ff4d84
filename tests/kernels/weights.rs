use std::path::PathBuf;

use tailor::nn::weights::{self as cw, Weighting};

use crate::common::*;

/// The shared fixtures folder: `TAILOR_FIXTURES`, or `../shared/fixtures` next to the crate.
/// Missing fixtures fail the test: a silent pass would hide that nothing was compared.
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("TAILOR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures")));
    assert!(
        dir.join("densenet_tiny.safetensors").is_file(),
        "fixture {} is missing: set TAILOR_FIXTURES to the folder holding densenet_tiny.safetensors",
        dir.join("densenet_tiny.safetensors").display()
    );
    dir
}

/// densenet_tiny.safetensors and its JSON configuration.
pub struct Fixture {
    bytes: Vec<u8>,
    pub config: serde_json::Value,
}

impl Fixture {
    pub fn load() -> Fixture {
        let dir = fixtures_dir();
        let bytes = std::fs::read(dir.join("densenet_tiny.safetensors")).unwrap();
        let json = std::fs::read_to_string(dir.join("densenet_tiny.json")).unwrap();
        Fixture { bytes, config: serde_json::from_str(&json).unwrap() }
    }

    /// A tensor widened to f64 (f32, f64 and i64 tensors).
    pub fn tensor(&self, key: &str) -> Vec<f64> {
        use safetensors::Dtype;
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap_or_else(|e| panic!("fixture has no tensor '{key}': {e}"));
        let d = t.data();
        match t.dtype() {
            Dtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
            Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
            other => panic!("fixture tensor '{key}' has unexpected dtype {other:?}"),
        }
    }

    pub fn counts(&self) -> Vec<u64> {
        self.config["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    }

    pub fn beta(&self) -> f64 {
        self.config["beta"].as_f64().unwrap()
    }

    pub fn weighting(&self, name: &str) -> Weighting {
        match name {
            "nw" => Weighting::Nw,
            "ifw" => Weighting::Ifw,
            "iew" => Weighting::Iew { beta: self.beta() },
            _ => panic!("unknown weighting {name}"),
        }
    }
}

#[test]
fn class_weights_match_pytorch_fixture() {
    let fx = Fixture::load();
    for name in ["nw", "ifw", "iew"] {
        let w = cw::class_weights(&fx.counts(), fx.weighting(name), None).unwrap();
        assert_close(&format!("weights.{name}"), &w, &fx.tensor(&format!("weights.{name}")), 0.0, 1e-6);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}

#[test]
fn weightings_follow_their_formulas() {
    let counts = [600u64, 150, 40, 9, 3, 1];
    let nw = cw::class_weights(&counts, Weighting::Nw, None).unwrap();
    assert_close("nw", &nw, &[1.0 / 6.0; 6], 0.0, 1e-15);
    // β = 0 is no weighting; inverse frequency is ∝ 1/n.
    let iew0 = cw::class_weights(&counts, Weighting::Iew { beta: 0.0 }, None).unwrap();
    assert_close("iew β=0", &iew0, &nw, 0.0, 1e-15);
    let ifw = cw::class_weights(&counts, Weighting::Ifw, None).unwrap();
    let inv: Vec<f64> = counts.iter().map(|&n| 1.0 / n as f64).collect();
    assert_close("ifw", &ifw, &cw::renormalise(&inv, 1.0), 0.0, 1e-15);

    let beta = 0.999;
    let r = cw::class_weights_report(&counts, Weighting::Iew { beta }, None).unwrap();
    let eff: Vec<f64> = counts.iter().map(|&n| (1.0 - beta.powi(n as i32)) / (1.0 - beta)).collect();
    assert_close("effective numbers", &r.effective, &eff, 0.0, 1e-12);
    let want: Vec<f64> = eff.iter().map(|e| 1.0 / e).collect();
    assert_close("iew", &r.weights, &cw::renormalise(&want, 1.0), 0.0, 1e-12);
    // One sample is one effective sample at any β; E_n → n as β → 1.
    assert!((r.effective[5] - 1.0).abs() < 1e-12);
    let near1 = cw::effective_numbers(&counts, Weighting::Iew { beta: 1.0 - 1e-12 }, None).unwrap();
    assert_close("E_n as β → 1", &near1, &counts.map(|n| n as f64), 0.0, 1e-6);

    let c = cw::renormalise_to_classes(&r.weights);
    assert!((c.iter().sum::<f64>() - 6.0).abs() < 1e-12);
    assert_close("renormalised ratios", &c, &cw::renormalise(&r.weights, 6.0), 0.0, 1e-15);
}

#[test]
fn empty_classes_and_bad_beta_are_errors() {
    let names: Vec<String> = ["cat", "dog", "eel"].iter().map(|s| s.to_string()).collect();
    for w in [Weighting::Nw, Weighting::Ifw, Weighting::Iew { beta: 0.9 }] {
        let e = cw::class_weights(&[5, 0, 2], w, Some(&names)).unwrap_err();
        assert!(matches!(e, tailor::Error::Invalid(_)), "{e}");
        assert!(e.to_string().contains("dog"), "error does not name the class: {e}");
        let e = cw::class_weights(&[5, 2, 0], w, None).unwrap_err();
        assert!(e.to_string().contains("class 2"), "error does not name the class: {e}");
    }
    for beta in [1.0, -0.1, 1.5, f64::NAN] {
        let e = cw::class_weights(&[5, 2], Weighting::Iew { beta }, None).unwrap_err();
        assert!(matches!(e, tailor::Error::Invalid(_)), "β = {beta}: {e}");
    }
    assert!(cw::class_weights(&[], Weighting::Nw, None).is_err());
    assert!(cw::class_weights(&[1, 2], Weighting::Nw, Some(&names)).is_err());
}
