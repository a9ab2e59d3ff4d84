//! A trained model as an app uses it: image files in, labels with probabilities out, as
//! `tailor predict` does. [`Tagger::load`] opens a run folder written by `tailor train` (its
//! network, weights, input size, normalisation, label names and, once `tailor eval` has run,
//! per-label thresholds); [`Tagger::new`] takes a model and its preprocessing directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::checkpoint::StateDict;
use super::densenet::DenseNetConfig;
use super::model::Model;
use super::predict::{sigmoid, softmax_rows, Predictor};
use crate::data::image::{load_fitted, to_chw, FitCounts, Placement};
use crate::data::{ImageSpec, Normalize, Preprocess};
use crate::error::{Error, Result};
use crate::Gpu;

pub struct Tagger {
    pub model: Model,
    pub image: ImageSpec,
    pub norm: Normalize,
    pub labels: Vec<String>,
    /// Multi-label (sigmoid, a threshold per label) or single-label (softmax, top k).
    pub multi: bool,
    /// Per label, the probability from which a multi-label prediction reports it: `tailor
    /// eval`'s `thresholds.json` (its precision floor), 0.5 for every label when the run has no
    /// such file. `None` (eval's `null`: no threshold reached the precision floor) means the
    /// label is never chosen. Single-label predictions do not use them.
    pub thresholds: Vec<Option<f64>>,
    predictor: Predictor,
}

/// One image's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Tagged {
    /// Softmax (single-label) or sigmoid (multi-label) of the logits, one per label.
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
    /// The labels to report, as (label index, probability), most probable first: the top k
    /// for single-label, every label at or above its threshold for multi-label (so possibly
    /// none, and never a label whose threshold is `None`).
    pub chosen: Vec<(usize, f32)>,
}

/// The part of a run's `config.json` that inference needs (the CLI's `RunConfig` has the rest).
#[derive(Deserialize)]
struct RunFile {
    model: DenseNetConfig,
    preprocess: Preprocess,
    label_names: Vec<String>,
    /// "softmax" or "sigmoid".
    loss: String,
}

impl Tagger {
    /// Loads the run folder `dir` written by `tailor train`, to tag batches of up to `batch`
    /// images at a time (more are run in turn).
    pub fn load(gpu: Arc<Gpu>, dir: impl AsRef<Path>, batch: usize) -> Result<Tagger> {
        let dir = dir.as_ref();
        let path = dir.join("config.json");
        let run: RunFile = serde_json::from_str(&run_config_text(dir)?)
            .map_err(|e| Error::file(&path, format!("not a tailor run configuration: {e}")))?;
        let mut model = Model::new(gpu, run.model, 0)?;
        let weights = dir.join("model.safetensors");
        model.load_own_state_dict(&StateDict::load(&weights)?, &weights)?;
        let thresholds = load_thresholds(dir, &run.label_names)?;
        let (image, norm) = (run.preprocess.image_spec()?, run.preprocess.normalize());
        Tagger::new(model, image, norm, run.label_names, run.loss == "sigmoid", thresholds, batch)
    }

    /// A tagger for `model`, whose input is `image` normalised by `norm`, with a name and a
    /// threshold (used when `multi`; `None`: never chosen) per class.
    pub fn new(
        model: Model,
        image: ImageSpec,
        norm: Normalize,
        labels: Vec<String>,
        multi: bool,
        thresholds: Vec<Option<f64>>,
        batch: usize,
    ) -> Result<Tagger> {
        let classes = model.net.config.num_classes;
        let channels = model.net.config.in_channels;
        if labels.len() != classes || thresholds.len() != classes {
            return Err(Error::Invalid(format!(
                "the model has {classes} classes but {} label names and {} thresholds were given",
                labels.len(),
                thresholds.len()
            )));
        }
        if image.channels != channels || norm.mean.len() != channels || norm.std.len() != channels {
            return Err(Error::Invalid(format!(
                "the model takes {channels}-channel images, but the input is {} channels with {} means and {} deviations",
                image.channels,
                norm.mean.len(),
                norm.std.len()
            )));
        }
        if batch == 0 {
            return Err(Error::Invalid("a tagger's batch size must be at least 1".into()));
        }
        let predictor = Predictor::new(&model, batch, image.height, image.width)?;
        Ok(Tagger { model, image, norm, labels, multi, thresholds, predictor })
    }

    /// The most images run at once.
    pub fn batch(&self) -> usize {
        self.predictor.batch
    }

    /// Decodes image files (PNG or JPEG) and fits them to the model's input (scaled, letterboxed,
    /// converted to its channels, normalised, CHW), with what fitting did to them.
    pub fn prepare(&self, paths: &[impl AsRef<Path>]) -> Result<(Vec<f32>, FitCounts)> {
        let n = self.image.len();
        let mut input = vec![0f32; paths.len() * n];
        let mut fitted = FitCounts::default();
        for (path, out) in paths.iter().zip(input.chunks_mut(n)) {
            let (px, counts) = load_fitted(path.as_ref(), &self.image)?;
            to_chw(&px, &self.image, &self.norm, Placement::default(), out);
            fitted.add(counts);
        }
        Ok((input, fitted))
    }

    /// Tags image files; single-label results list the `top_k` most probable labels.
    pub fn tag_files(&self, paths: &[impl AsRef<Path>], top_k: usize) -> Result<(Vec<Tagged>, FitCounts)> {
        let (input, fitted) = self.prepare(paths)?;
        let tagged = self.tag_named(&input, top_k, |i| Some(paths[i].as_ref().to_path_buf()))?;
        Ok((tagged, fitted))
    }

    /// Tags images already fitted and normalised as [`Tagger::prepare`] does (`n` images of
    /// `image.len()` values each).
    pub fn tag(&self, input: &[f32], top_k: usize) -> Result<Vec<Tagged>> {
        self.tag_named(input, top_k, |_| None)
    }

    fn tag_named(&self, input: &[f32], top_k: usize, path: impl Fn(usize) -> Option<PathBuf>) -> Result<Vec<Tagged>> {
        let logits = self.predictor.logits(input)?;
        let c = self.labels.len();
        if let Some(k) = logits.iter().position(|v| !v.is_finite()) {
            let msg = format!(
                "the model's output for this image is {}: its weights are not finite (the run diverged); \
                 retrain with a lower --lr",
                logits[k]
            );
            return Err(match path(k / c) {
                Some(p) => Error::file(p, msg),
                None => Error::Invalid(format!("image {}: {msg}", k / c)),
            });
        }
        let mut probs = logits.clone();
        if self.multi {
            sigmoid(&mut probs);
        } else {
            softmax_rows(&mut probs, c);
        }
        Ok(probs
            .chunks(c)
            .zip(logits.chunks(c))
            .map(|(p, l)| Tagged { chosen: self.choose(p, top_k), probabilities: p.to_vec(), logits: l.to_vec() })
            .collect())
    }

    /// The labels to report: the top k by probability, or those at or above their threshold (a
    /// label without one is never reported).
    fn choose(&self, p: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut idx: Vec<usize> = (0..p.len()).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        if self.multi {
            idx.into_iter()
                .filter(|&j| self.thresholds[j].is_some_and(|t| p[j] as f64 >= t))
                .map(|j| (j, p[j]))
                .collect()
        } else {
            idx.into_iter().take(k).map(|j| (j, p[j])).collect()
        }
    }
}

/// The text of `dir/config.json`, with an error that says what a run folder is when it is not one.
pub fn run_config_text(dir: &Path) -> Result<String> {
    let path = dir.join("config.json");
    std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && dir.join("model.safetensors").is_file() {
            return Error::file(
                dir,
                format!(
                    "holds model.safetensors but no config.json, so it is not a whole tailor run (a run stopped \
                     before its first checkpoint was complete, or weights copied here): nothing to resume or \
                     evaluate; train again with --out {} --overwrite, or give the weights to predict with \
                     --weights",
                    dir.display()
                ),
            );
        }
        if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() {
            // `train` writes config.json with the first epoch's checkpoint: a run stopped
            // before that leaves only its folder.
            return Error::file(
                dir,
                "holds no tailor run (no config.json, which tailor train writes when a run's first \
                 epoch ends): a run stopped during its first epoch left nothing to load or resume, \
                 so train again with --out on this folder",
            );
        }
        Error::file(&path, format!("cannot read ({e}); give a run folder written by tailor train"))
    })
}

/// The thresholds `tailor eval` saved in `dir/thresholds.json`, one per label of `names`:
/// `None` where eval wrote `null` (no threshold reached its precision floor: the label is never
/// chosen), and 0.5 for every label when there is no such file. A value that is not a
/// probability, a label the run does not have, or a label of the run that the file lacks is an
/// error naming the file and the label.
pub fn load_thresholds(dir: &Path, names: &[String]) -> Result<Vec<Option<f64>>> {
    let path = dir.join("thresholds.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![Some(0.5); names.len()]),
        Err(e) => return Err(Error::file(&path, format!("cannot read ({e}); delete it or run tailor eval again"))),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::file(&path, format!("not JSON ({e}); delete it or run tailor eval again")))?;
    let Some(map) = v.get("thresholds").and_then(|t| t.as_object()) else {
        return Err(Error::file(
            &path,
            "has no \"thresholds\" object (label name to threshold), as tailor eval writes; delete it or run \
             tailor eval again",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !names.contains(k)) {
        return Err(Error::file(
            &path,
            format!(
                "has a threshold for label '{unknown}', which this run does not have (its labels are in \
                 labels.txt); remove that entry, or run tailor eval again to rewrite the file"
            ),
        ));
    }
    let missing: Vec<&str> = names.iter().filter(|n| !map.contains_key(*n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(Error::file(
            &path,
            format!(
                "has no threshold for label(s) {}; run tailor eval --model {} again to write one for every \
                 label (or delete the file to use 0.5 for all)",
                missing.join(", "),
                dir.display()
            ),
        ));
    }
    names
        .iter()
        .map(|n| match &map[n] {
            serde_json::Value::Null => Ok(None),
            t => match t.as_f64() {
                Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
                _ => Err(Error::file(
                    &path,
                    format!(
                        "label '{n}' has threshold {t}, which is not a probability in [0, 1] (or null: never \
                         chosen); correct it, or run tailor eval again to rewrite the file"
                    ),
                )),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `load_thresholds` on a run folder whose thresholds.json holds `json` (none when `None`).
    fn load(name: &str, json: Option<&str>) -> Result<Vec<Option<f64>>> {
        let dir = std::env::temp_dir().join(format!("tailor-thresholds-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(j) = json {
            std::fs::write(dir.join("thresholds.json"), j).unwrap();
        }
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let r = load_thresholds(&dir, &names);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    fn err(name: &str, json: &str) -> String {
        load(name, Some(json)).unwrap_err().to_string()
    }

    #[test]
    fn thresholds_are_read_and_checked() {
        assert_eq!(load("none", None).unwrap(), [Some(0.5); 3]);
        // eval's null: no threshold reached the precision floor, so the label is never chosen.
        let eval = r#"{"precision_floor": 0.6, "thresholds": {"a": 0.25, "b": null, "c": 1}}"#;
        assert_eq!(load("eval", Some(eval)).unwrap(), [Some(0.25), None, Some(1.0)]);
        for (name, json, says) in [
            ("high", r#"{"thresholds": {"a": 0.2, "b": 1.5, "c": 0.1}}"#, "label 'b' has threshold 1.5"),
            ("negative", r#"{"thresholds": {"a": -0.1, "b": 0.5, "c": 0.1}}"#, "label 'a' has threshold -0.1"),
            ("text", r#"{"thresholds": {"a": 0.2, "b": 0.5, "c": "NaN"}}"#, "label 'c' has threshold \"NaN\""),
            ("unknown", r#"{"thresholds": {"a": 0.2, "b": 0.5, "c": 0.1, "d": 0.3}}"#, "label 'd'"),
            ("missing", r#"{"thresholds": {"a": 0.2}}"#, "no threshold for label(s) b, c"),
            ("flat", r#"{"a": 0.2, "b": 0.5, "c": 0.1}"#, "no \"thresholds\" object"),
            ("broken", r#"{"thresholds": "#, "not JSON"),
        ] {
            let e = err(name, json);
            assert!(e.contains("thresholds.json") && e.contains(says) && e.contains("tailor eval"), "{name}: {e}");
        }
        assert!(err("unknown", r#"{"thresholds": {"a": 0.2, "b": 0.5, "c": 0.1, "d": 0.3}}"#)
            .contains("which this run does not have"));
    }
}
