//! The files of a run folder: the checkpoint set (model, optimiser state, labels, config.json,
//! written as one set), `metrics.jsonl`, evaluation reports and `thresholds.json`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RunConfig;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::{self, EvalReport, Evaluation};
use crate::nn::checkpoint::{write_all_atomic, write_atomic, StateDict, EPOCH_KEY};
use crate::nn::model::Model;

/// The files `train` and `eval` write into a run folder (and `pr_*` figures).
pub const RUN_FILES: [&str; 12] = [
    "config.json",
    "model.safetensors",
    "model_best.safetensors",
    "curves.png",
    "curves.svg",
    "optimizer.safetensors",
    "metrics.jsonl",
    "labels.txt",
    "eval.json",
    "eval.md",
    "thresholds.json",
    "teachers.safetensors",
];

/// Whether `dir` holds a run: a checkpoint or its configuration or metrics.
pub fn holds_run(dir: &Path) -> bool {
    ["config.json", "model.safetensors", "metrics.jsonl"].iter().any(|f| dir.join(f).exists())
}

/// Removes an earlier run's files from `dir`, so that a new run's folder holds nothing stale.
pub fn clear_run(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let figure = name.starts_with("pr_") && (name.ends_with(".png") || name.ends_with(".svg"));
        if RUN_FILES.contains(&name.as_str()) || figure {
            std::fs::remove_file(entry.path())
                .map_err(|e| Error::file(entry.path(), format!("cannot remove the earlier run's file: {e}")))?;
        }
    }
    Ok(())
}

/// Makes a directory (and its parents), naming it on failure.
pub fn make_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::file(dir, "is a file, not a folder; give a folder (a new or an existing one)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, format!("cannot create the directory: {e}")))
}

/// What a checkpoint saves besides config.json.
pub struct Checkpoint<'a> {
    pub model: StateDict,
    pub optimizer: StateDict,
    pub labels: &'a [String],
    /// The model is the best so far: also saved as `model_best.safetensors`.
    pub best: bool,
}

/// Which of a run's weights to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weights {
    /// The best epoch's (`model_best.safetensors`) where the run keeps one, else the last.
    #[default]
    Best,
    /// The last epoch's (`model.safetensors`).
    Last,
}

/// The file of a run's weights `which`, and the epoch they are of (`None`: the last).
pub fn model_file(dir: &Path, cfg: &RunConfig, which: Weights) -> (PathBuf, Option<usize>) {
    let best = dir.join("model_best.safetensors");
    match (which, cfg.best) {
        (Weights::Best, Some(b)) if best.is_file() && b.epoch != cfg.epochs_done => (best, Some(b.epoch)),
        _ => (dir.join("model.safetensors"), None),
    }
}

/// The run's network with the weights `which` picks ([`model_file`]): the file read and the
/// best epoch it holds (`None`: the last). The weights are checked against the configuration.
pub fn load_model(
    gpu: Arc<Gpu>,
    dir: &Path,
    cfg: &RunConfig,
    which: Weights,
) -> Result<(Model, PathBuf, Option<usize>)> {
    let mut model = Model::new(gpu, cfg.model.clone(), 0)?;
    let (weights, epoch) = model_file(dir, cfg, which);
    model.load_own_state_dict(&StateDict::load(&weights)?, &weights)?;
    Ok((model, weights, epoch))
}

/// Saves the checkpoint after `epochs` epochs into `dir`: the model and the optimiser state
/// (both stamped with the epoch), labels.txt and config.json (`cfg` with `epochs_done` set), as
/// one set ([`write_all_atomic`]): a failure while writing (a full disk) leaves the previous
/// epoch's set whole and `cfg` as it was, and config.json, renamed last, never claims an epoch
/// whose files are not all in place.
pub fn save_checkpoint(dir: &Path, mut ck: Checkpoint, cfg: &mut RunConfig, epochs: usize) -> Result<()> {
    for sd in [&mut ck.model, &mut ck.optimizer] {
        sd.metadata.insert(EPOCH_KEY.into(), epochs.to_string());
    }
    let before = cfg.epochs_done;
    cfg.epochs_done = epochs;
    let bytes = (|| Ok((ck.model.to_bytes()?, ck.optimizer.to_bytes()?, cfg.to_text()?)))();
    let written = bytes.and_then(|(model, opt, config): (Vec<u8>, Vec<u8>, String)| {
        let labels = ck.labels.join("\n") + "\n";
        let (o, m, b, l, c) = (
            dir.join("optimizer.safetensors"),
            dir.join("model.safetensors"),
            dir.join("model_best.safetensors"),
            dir.join("labels.txt"),
            dir.join("config.json"),
        );
        let mut files = vec![(o.as_path(), &opt[..]), (m.as_path(), &model[..])];
        if ck.best {
            files.push((b.as_path(), &model[..]));
        }
        files.extend([(l.as_path(), labels.as_bytes()), (c.as_path(), config.as_bytes())]);
        write_all_atomic(&files)
    });
    written.map_err(|e| {
        cfg.epochs_done = before;
        Error::CheckpointNotSaved { epoch: epochs, kept: before, dir: dir.to_path_buf(), cause: Box::new(e) }
    })
}

/// The epochs a run folder's checkpoint holds: config.json's count, unless the model's and the
/// optimiser's files both say another (a save interrupted after renaming them, before
/// config.json: `note` is told). Files of different epochs cannot continue the run exactly:
/// refused.
pub fn checkpoint_epoch(
    dir: &Path,
    config: usize,
    model: Option<usize>,
    opt: Option<usize>,
    note: &mut dyn FnMut(String),
) -> Result<usize> {
    match (model, opt) {
        (Some(m), Some(o)) if m == o && m != config => {
            note(format!(
                "{} says {config} epochs, but the checkpoint holds {m} (the last save stopped before config.json); \
                 resuming after epoch {m}",
                dir.join("config.json").display()
            ));
            Ok(m)
        }
        (None, None) => Ok(config),
        (m, o) if m.unwrap_or(config) == config && o.unwrap_or(config) == config => Ok(config),
        (m, o) => Err(Error::CheckpointEpochs { dir: dir.to_path_buf(), model: m, optimizer: o, config }),
    }
}

/// One line of `metrics.jsonl`: an epoch's training loss and speed and its validation metrics.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Optimiser steps taken so far.
    pub step: u64,
    pub train_loss: f64,
    /// The learning rate at the last step.
    pub lr: f64,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Absent without a validation split; `null` where no label has a positive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_macro_map: Option<Option<f64>>,
    /// Single-label runs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_top1: Option<Option<f64>>,
    /// Embedding runs: leave-one-out Recall@1 over the validation split.
    #[serde(rename = "val_recall@1", skip_serializing_if = "Option::is_none")]
    pub val_recall_at_1: Option<Option<f64>>,
    /// Embedding runs: leave-one-out MAP@R over the validation split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_map_at_r: Option<Option<f64>>,
}

/// Appends `record` to `dir/metrics.jsonl`.
pub fn append_metrics(dir: &Path, record: &EpochRecord) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    // Through a JSON value, whose keys are sorted, as the file has always had them.
    let line = serde_json::to_value(record).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::file(&path, format!("cannot open for appending: {e}")))?;
    writeln!(f, "{line}").map_err(|e| Error::file(&path, format!("cannot write: {e}")))
}

/// Draws `curves.png` and `curves.svg` from the run's `metrics.jsonl`.
pub fn write_curves(dir: &Path) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::file(&path, format!("cannot read: {e}")))?;
    let curves = metrics::curves::training_curves_from_jsonl(&text).map_err(|e| Error::file(&path, e))?;
    metrics::curves::write_training_curves(dir, &curves)?;
    Ok(())
}

/// The report's markdown plus, for single-label data, per-class accuracy and the confusion
/// matrix: what eval.md holds and `tailor eval` prints.
pub fn full_markdown(r: &EvalReport) -> String {
    let mut s = r.to_markdown();
    let Some(single) = &r.single else { return s };
    s += "\n## Per-class accuracy\n\n| Class | Accuracy |\n|---|---:|\n";
    for (l, acc) in r.labels.iter().zip(&single.per_class_accuracy) {
        s += &format!("| {} | {} |\n", l.name.replace('|', "\\|"), acc.map_or("-".into(), |v| format!("{v:.3}")));
    }
    let c = single.confusion.num_classes;
    s += "\n## Confusion matrix (rows: truth, columns: prediction)\n\n| |";
    for j in 0..c {
        s += &format!(" {j} |");
    }
    s += "\n|---|";
    s += &"---:|".repeat(c);
    s += "\n";
    for (i, l) in r.labels.iter().enumerate() {
        s += &format!("| {i} {} |", l.name.replace('|', "\\|"));
        for j in 0..c {
            s += &format!(" {} |", single.confusion.get(i, j));
        }
        s += "\n";
    }
    s
}

/// Writes eval.json, eval.md and the PR figures into `dir`.
pub fn write_reports(dir: &Path, ev: &Evaluation) -> Result<()> {
    ev.report.save_json(&dir.join("eval.json"))?;
    write_atomic(&dir.join("eval.md"), full_markdown(&ev.report).as_bytes())?;
    metrics::write_pr_figures(dir, "pr", &metrics::pr_figures(ev))?;
    Ok(())
}

/// `thresholds.json`: each label's threshold at the precision floor (null where none reaches
/// it). A label with no positives in the evaluated data says nothing about its threshold, so the
/// one already saved for it (if any) is kept.
pub fn save_thresholds(dir: &Path, r: &EvalReport) -> Result<()> {
    let path = dir.join("thresholds.json");
    let old: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let map: serde_json::Map<String, serde_json::Value> = r
        .labels
        .iter()
        .map(|l| {
            let kept = &old["thresholds"][&l.name];
            let v = match l.at_floor {
                None if l.eval_positives == 0 && kept.is_number() => kept.clone(),
                t => serde_json::json!(t.map(|o| o.threshold)),
            };
            (l.name.clone(), v)
        })
        .collect();
    let v = serde_json::json!({"precision_floor": r.precision_floor, "thresholds": map});
    let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&path, text.as_bytes())
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

/// A stable 64-bit digest (FNV-1a) of bytes, as 16 hex digits.
pub fn fnv64(chunks: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chunks {
        for &b in *c {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What identifies a model's weights: a digest of its weight file (what a search index
/// records, and a distilled run of its teachers).
pub fn model_fingerprint(weights: &Path) -> Result<String> {
    let bytes = std::fs::read(weights).map_err(|e| Error::file(weights, format!("cannot read: {e}")))?;
    Ok(fnv64(&[&bytes]))
}

/// The run folder a path names for its weights: a folder stands for its model.safetensors.
pub fn weights_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("model.safetensors")
    } else {
        path.to_path_buf()
    }
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
