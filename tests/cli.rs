//! The `tailor` binary end to end on small generated data: train, resume, eval, predict,
//! weights, compare, and the errors bad input must give (non-zero exit, a message naming it).

mod sample;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &[&str] = &["--growth-rate", "4", "--blocks", "1,1", "--image-size", "16", "--batch-size", "8"];

fn tailor(args: &[&str]) -> Output {
    tailor_in(Path::new("."), args)
}

/// Runs tailor with `dir` as its working directory.
fn tailor_in(dir: &Path, args: &[&str]) -> Output {
    // Heuristic conv tiles: no timing, and the user's tile cache stays untouched.
    Command::new(env!("CARGO_BIN_EXE_tailor"))
        .args(args)
        .current_dir(dir)
        .env("TAILOR_TUNE", "off")
        .output()
        .expect("the tailor binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = tailor(args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "tailor {args:?} failed:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    text
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn ok_both(args: &[&str]) -> (String, String) {
    let out = tailor(args);
    let (text, err) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "tailor {args:?} failed:\n{err}\n{text}");
    (text, err)
}

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = tailor(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "tailor {args:?} should fail but succeeded:\n{err}");
    assert!(!err.contains("panicked"), "tailor {args:?} panicked:\n{err}");
    err
}

fn temp(name: &str) -> PathBuf {
    sample::temp("cli", name)
}

fn fixture(dir: &Path, n: usize) -> PathBuf {
    sample::bands(dir, n)
}

fn train_args<'a>(csv: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["train", "--data", csv, "--out", out];
    if !extra.contains(&"--epochs") {
        a.extend(["--epochs", "1"]);
    }
    if !extra.contains(&"--val-fraction") {
        a.extend(["--val-fraction", "0.25"]);
    }
    a.extend_from_slice(TINY);
    a.extend_from_slice(extra);
    a
}

#[test]
fn train_resume_eval_predict() {
    let dir = temp("main");
    let csv = fixture(&dir, 40);
    let (csv, run) = (csv.to_str().unwrap(), dir.join("run"));
    let run_s = run.to_str().unwrap();
    let (_, err) = ok_both(&train_args(csv, run_s, &[]));
    for f in ["model.safetensors", "optimizer.safetensors", "config.json", "labels.txt", "metrics.jsonl"] {
        assert!(run.join(f).is_file(), "{f} is missing");
    }
    // TINY overrides the preset, so the network is not called densenet-bc (and still resumes,
    // evaluates and predicts below).
    assert!(err.contains("densenet-bc-custom (growth rate 4, not 12; blocks 1,1, not 6,6,6)"), "{err}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["arch"], "densenet-bc-custom");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(line["val_macro_map"].is_number() && line["val_top1"].is_number(), "{line}");
    assert_eq!(std::fs::read_to_string(run.join("labels.txt")).unwrap(), "cat\ndog\nowl\n");

    // Resume to 2 epochs: the second epoch is appended and the config counts it.
    ok(&["train", "--resume", run_s, "--epochs", "2"]);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["epochs_done"], 2);
    // An uninterrupted 2-epoch run ends with the same weights.
    let straight = dir.join("straight");
    ok(&train_args(csv, straight.to_str().unwrap(), &["--epochs", "2"]));
    let a = std::fs::read(run.join("model.safetensors")).unwrap();
    assert!(a == std::fs::read(straight.join("model.safetensors")).unwrap(), "resumed weights differ");

    let md = ok(&["eval", "--model", run_s]);
    assert!(md.contains("macro mAP") && md.contains("Confusion matrix"), "{md}");
    for f in ["eval.json", "eval.md", "thresholds.json", "pr_majority.png", "pr_majority.svg", "pr_rare.svg"] {
        assert!(run.join(f).is_file(), "{f} is missing");
    }
    let img = dir.join("images/000.png");
    let text = ok(&["predict", "--model", run_s, "--top-k", "2", img.to_str().unwrap()]);
    assert!(text.contains("000.png:") && ["cat", "dog", "owl"].iter().any(|l| text.contains(l)), "{text}");
    let json = ok(&["predict", "--model", run_s, "--format", "json", "--logits", img.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["logits"].as_array().unwrap().len(), 3);
    // An app loading the run folder through the library gets what the command prints.
    let tagger = tailor::nn::tagger::Tagger::load(tailor::Gpu::new().unwrap(), &run, 4).unwrap();
    let (tagged, _) = tagger.tag_files(&[&img], 5).unwrap();
    let cli_logits: Vec<f32> = v[0]["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(tagged[0].logits, cli_logits);
    let cli_first = v[0]["labels"][0]["label"].as_str().unwrap();
    assert_eq!(tagger.labels[tagged[0].chosen[0].0], cli_first);
    // A folder stands for its images in name order, scored a few batches at a time (2 per batch:
    // several chunks), with the same results as the files named one by one.
    let mut files: Vec<String> = std::fs::read_dir(dir.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path().to_str().unwrap().to_string())
        .collect();
    files.sort();
    let folder = dir.join("images");
    let by_folder =
        ok(&["predict", "--model", run_s, "--format", "csv", "--batch-size", "2", folder.to_str().unwrap()]);
    let mut args = vec!["predict", "--model", run_s, "--format", "csv"];
    args.extend(files.iter().map(|f| f.as_str()));
    assert_eq!(by_folder, ok(&args));
    assert_eq!(by_folder.lines().count(), 1 + 3 * files.len());
    let empty = dir.join("no-images");
    std::fs::create_dir_all(&empty).unwrap();
    let err = fails(&["predict", "--model", run_s, empty.to_str().unwrap()]);
    assert!(err.contains("no-images") && err.contains("without PNG or JPEG"), "{err}");
    // Images of another size or colour are fitted with one note on stderr; stdout stays JSON.
    let wide = dir.join("wide.png");
    image::RgbImage::from_pixel(32, 16, image::Rgb([200, 10, 10])).save(&wide).unwrap();
    let (json, err) =
        ok_both(&["predict", "--model", run_s, "--format", "json", wide.to_str().unwrap(), wide.to_str().unwrap()]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap().as_array().unwrap().len(), 2);
    assert_eq!(err.matches("note:").count(), 1, "{err}");
    assert!(
        err.contains("input is 16×16 gray: 2 of 2 image(s) were resized to that size (2 of them letterboxed")
            && err.contains("converted to gray"),
        "{err}"
    );

    // The run's weights alone: the network is read off the file (tailor's record of it, or the
    // tensors of a plain state dict), the input size has to be given, and the logits are the run's.
    let weights = run.join("model.safetensors");
    let err = fails(&["predict", "--weights", weights.to_str().unwrap(), img.to_str().unwrap()]);
    assert!(err.contains("--image-size") && err.contains(&format!("--model {run_s}")), "{err}");
    let bare = dir.join("bare.safetensors");
    let mut sd = tailor::nn::checkpoint::StateDict::load(&weights).unwrap();
    sd.metadata.clear();
    sd.save(&bare).unwrap();
    let logits = |v: &serde_json::Value| v[0]["logits"].clone();
    // `--model` scores with the best epoch's weights, which need not be the last (model.safetensors):
    // compare with the run's last epoch, asked for by --last.
    let last = ok(&["predict", "--model", run_s, "--last", "--format", "json", "--logits", img.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    for w in [&weights, &bare] {
        let json = ok(&[
            "predict",
            "--weights",
            w.to_str().unwrap(),
            "--image-size",
            "16",
            "--format",
            "json",
            "--logits",
            img.to_str().unwrap(),
        ]);
        assert_eq!(logits(&serde_json::from_str(&json).unwrap()), logits(&v), "{}", w.display());
    }

    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("images/005.png"), b"not a png").unwrap();
    let err = fails(&["train", "--resume", run_s, "--epochs", "3"]);
    assert!(err.contains("005.png") && err.contains("cannot decode"), "{err}");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), before);
    let err = fails(&["predict", "--model", run_s, dir.join("images/005.png").to_str().unwrap()]);
    assert!(err.contains("005.png"), "{err}");
}

#[test]
fn multi_label_tags_train_and_predict() {
    let dir = temp("multi");
    let csv = fixture(&dir, 24);
    let (csv, run) = (csv.to_str().unwrap(), dir.join("run"));
    ok(&train_args(csv, run.to_str().unwrap(), &["--tags-column", "tags", "--weighting", "ifw"]));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["loss"], "sigmoid");
    assert_eq!(cfg["label_kind"], "multi");
    let out = ok(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "--format",
        "csv",
        dir.join("images/001.png").to_str().unwrap(),
    ]);
    assert!(out.starts_with("image,label,probability"), "{out}");
}

/// Multi-label predictions follow thresholds.json: a null threshold (none reached eval's
/// precision floor) is never chosen and said so, bad files are refused, every image keeps its CSV
/// row, --logits reaches the CSV, and --top-k (single-label only) gets a note.
#[test]
fn multi_label_predict_follows_thresholds() {
    let dir = temp("multi-thresholds");
    let csv = fixture(&dir, 24);
    let (csv, run) = (csv.to_str().unwrap(), dir.join("run"));
    let run_s = run.to_str().unwrap();
    ok(&train_args(csv, run_s, &["--tags-column", "tags"]));
    let imgs: Vec<String> =
        ["000", "001"].iter().map(|i| dir.join(format!("images/{i}.png")).display().to_string()).collect();
    let thresholds = |a: &str, b: &str, c: &str| {
        let json = format!(r#"{{"precision_floor": 0.6, "thresholds": {{"a": {a}, "b": {b}, "c": {c}}}}}"#);
        std::fs::write(run.join("thresholds.json"), json).unwrap();
    };
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "--model", run_s];
        args.extend_from_slice(extra);
        args.extend(imgs.iter().map(|s| s.as_str()));
        ok_both(&args)
    };

    // Labels without a threshold are never chosen, with one note naming them; so is the library's.
    thresholds("null", "0.0", "null");
    let (json, err) = predict(&["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for r in v.as_array().unwrap() {
        assert_eq!(r["labels"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(r["labels"][0]["label"], "b", "{r}");
    }
    assert_eq!(err.matches("note:").count(), 1, "{err}");
    assert!(
        err.contains("2 labels (a, c) have no threshold in")
            && err.contains("precision floor of 0.6")
            && err.contains("never chosen"),
        "{err}"
    );
    let tagger = tailor::nn::tagger::Tagger::load(tailor::Gpu::new().unwrap(), &run, 2).unwrap();
    assert_eq!(tagger.thresholds, [None, Some(0.0), None]);
    let (tagged, _) = tagger.tag_files(&imgs, 5).unwrap();
    assert!(tagged.iter().all(|t| t.chosen.len() == 1 && t.chosen[0].0 == 1), "{tagged:?}");

    // An image with no label keeps its CSV row, with empty label and probability.
    thresholds("null", "null", "null");
    let (out, _) = predict(&["--format", "csv"]);
    let want: String = imgs.iter().map(|i| format!("{i},,\n")).collect();
    assert_eq!(out, format!("image,label,probability\n{want}"));
    let (text, _) = predict(&[]);
    assert_eq!(text.matches("(no label above its threshold)").count(), 2, "{text}");
    // --logits adds a column per label, the logits JSON gives.
    thresholds("0.0", "null", "null");
    let (out, _) = predict(&["--format", "csv", "--logits"]);
    let (json, _) = predict(&["--format", "json", "--logits"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "image,label,probability,logit:a,logit:b,logit:c");
    for (i, line) in lines[1..].iter().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!((cells.len(), cells[0], cells[1]), (6, imgs[i].as_str(), "a"), "{line}");
        for (cell, want) in cells[3..].iter().zip(v[i]["logits"].as_array().unwrap()) {
            assert!((cell.parse::<f64>().unwrap() - want.as_f64().unwrap()).abs() < 1e-5, "{line} vs {want}");
        }
    }

    // --top-k does not apply here: said so when given, silent otherwise.
    let (_, err) = predict(&["--top-k", "2"]);
    assert!(err.contains("--top-k applies to single-label runs") && err.contains("threshold"), "{err}");
    let (_, err) = predict(&[]);
    assert!(!err.contains("--top-k"), "{err}");

    // A threshold that is no probability, or a label the run does not have, is refused.
    thresholds("1.5", "0.5", "0.5");
    let img = imgs[0].as_str();
    let err = fails(&["predict", "--model", run_s, img]);
    assert!(
        err.contains("thresholds.json") && err.contains("label 'a' has threshold 1.5") && err.contains("[0, 1]"),
        "{err}"
    );
    std::fs::write(run.join("thresholds.json"), r#"{"thresholds": {"a": 0.5, "b": 0.5, "c": 0.5, "owl": 0.5}}"#)
        .unwrap();
    let err = fails(&["predict", "--model", run_s, img]);
    assert!(err.contains("thresholds.json") && err.contains("'owl'") && err.contains("tailor eval"), "{err}");
    std::fs::write(run.join("thresholds.json"), r#"{"thresholds": {"a": 0.5}}"#).unwrap();
    let err = fails(&["predict", "--model", run_s, img]);
    assert!(err.contains("no threshold for label(s) b, c") && err.contains("tailor eval --model"), "{err}");

    // A folder's other files are skipped with one note naming one of them.
    std::fs::remove_file(run.join("thresholds.json")).unwrap();
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for f in ["000.png", "001.png"] {
        std::fs::copy(dir.join("images").join(f), mixed.join(f)).unwrap();
    }
    for f in ["x.gif", "y.webp"] {
        std::fs::write(mixed.join(f), b"GIF89a").unwrap();
    }
    let (out, err) = ok_both(&["predict", "--model", run_s, "--format", "json", mixed.to_str().unwrap()]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), 2);
    assert!(
        err.contains(&format!("skipped 2 files in {} that are not PNG or JPEG, e.g. x.gif", mixed.display())),
        "{err}"
    );
    for f in ["000.png", "001.png"] {
        std::fs::remove_file(mixed.join(f)).unwrap();
    }
    let err = fails(&["predict", "--model", run_s, mixed.to_str().unwrap()]);
    assert!(err.contains("without PNG or JPEG") && err.contains("e.g. x.gif"), "{err}");
}

#[test]
fn weights_table_and_json() {
    let text = ok(&["weights", "--counts", "600,150,40,9,3"]);
    assert!(text.contains("IEW") && text.contains("600"), "{text}");
    let json = ok(&["weights", "--counts", "600,150,40,9,3", "--beta", "0.99", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let labels = v["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 5);
    let sum: f64 = labels.iter().map(|l| l["iew"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9, "IEW weights sum to {sum}");
    // E_n = (1 - 0.99^n) / (1 - 0.99)
    let e3 = (1.0 - 0.99f64.powi(3)) / 0.01;
    assert!((labels[4]["effective"].as_f64().unwrap() - e3).abs() < 1e-9);
    let ifw: Vec<f64> = labels.iter().map(|l| l["ifw"].as_f64().unwrap()).collect();
    assert!((ifw[4] / ifw[0] - 200.0).abs() < 1e-9);
    let err = fails(&["weights", "--counts", "5,0,3"]);
    assert!(err.contains("class 1") && err.contains("no training samples"), "{err}");
}

#[test]
fn weights_of_a_dataset_are_those_training_uses() {
    let dir = temp("weights-data");
    let csv = fixture(&dir, 48);
    let csv_s = csv.to_str().unwrap();
    // Drop some owls so that --imbalance has a tail to follow and --min-samples a label to drop.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut owls = 0;
    let thinned: String = text
        .lines()
        .filter(|l| {
            !l.contains(",owl,") || {
                owls += 1;
                owls <= 3
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&csv, thinned).unwrap();
    let split = ["--split-by", "group", "--imbalance", "3", "--val-fraction", "0.25", "--seed", "2"];
    let run = dir.join("run");
    ok(&train_args(csv_s, run.to_str().unwrap(), &split));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let mut args = vec!["weights", "--data", csv_s, "--json"];
    args.extend(split);
    let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    let labels = v["labels"].as_array().unwrap();
    let counts: Vec<u64> = labels.iter().map(|l| l["count"].as_u64().unwrap()).collect();
    let trained: Vec<u64> = cfg["train_counts"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
    assert_eq!(counts, trained);
    // train scales the same IEW weights to sum to the number of labels.
    for (l, w) in labels.iter().zip(cfg["class_weights"].as_array().unwrap()) {
        let scaled = l["iew"].as_f64().unwrap() * labels.len() as f64;
        assert!((scaled - w.as_f64().unwrap()).abs() < 1e-9, "{l} vs {w}");
    }
    // --min-samples drops the owls from the weights too.
    let (text, err) = ok_both(&["weights", "--data", csv_s, "--min-samples", "4"]);
    assert!(err.contains("dropped 1 label(s)") && err.contains("owl") && !text.contains("owl"), "{err}\n{text}");
    // Whole groups of 2 cannot make 0.05 of 24 samples: a note says what the split holds.
    let pairs = fixture(&dir.join("pairs"), 24);
    let (_, err) =
        ok_both(&["weights", "--data", pairs.to_str().unwrap(), "--split-by", "group", "--val-fraction", "0.05"]);
    assert!(err.contains("note: the validation split holds") && err.contains("not the 0.05"), "{err}");
    let err = fails(&["weights", "--counts", "5,3", "--min-samples", "4"]);
    assert!(err.contains("--min-samples") && err.contains("--data"), "{err}");
}

#[test]
fn compare_writes_table1() {
    let dir = temp("compare");
    let csv = fixture(&dir, 24);
    let out = dir.join("cmp");
    let mut args = train_args(csv.to_str().unwrap(), out.to_str().unwrap(), &[]);
    args[0] = "compare";
    let (text, err) = ok_both(&args);
    assert!(text.contains("NW") && text.contains("IEW") && text.contains("mAP"), "{text}");
    // The images are loaded and split once for the three runs (and said so once); each run
    // shows its own weights.
    assert_eq!(err.matches("24 samples, 3 labels").count(), 1, "{err}");
    assert_eq!(err.matches("class weights (").count(), 3, "{err}");
    let md = std::fs::read_to_string(out.join("table1.md")).unwrap();
    assert!(md.contains("| Label | NW | IFW | IEW |") && md.contains("**"), "{md}");
    for s in ["nw", "ifw", "iew"] {
        assert!(out.join(s).join("eval.json").is_file());
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = temp("bad");
    let csv = fixture(&dir, 24);
    let csv_s = csv.to_str().unwrap();
    let out = dir.join("out");
    let out_s = out.to_str().unwrap();

    let err = fails(&train_args("/nonexistent/labels.csv", out_s, &[]));
    assert!(err.contains("/nonexistent/labels.csv") && err.contains("does not exist"), "{err}");

    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let err = fails(&train_args(empty.to_str().unwrap(), out_s, &[]));
    assert!(err.contains("empty.csv") && err.contains("empty"), "{err}");

    let err = fails(&train_args(csv_s, out_s, &["--label-column", "species"]));
    assert!(err.contains("species"), "{err}");

    let err = fails(&train_args(csv_s, out_s, &["--arch", "resnet50"]));
    assert!(err.contains("unknown architecture 'resnet50'"), "{err}");

    let err = fails(&train_args(csv_s, out_s, &["--val-fraction", "0.01"]));
    assert!(err.contains("validation split is empty") && err.contains("--val-fraction"), "{err}");

    // Each image its own group and 90% to validation: some label keeps no training sample.
    let err = fails(&train_args(csv_s, out_s, &["--split-by", "file", "--val-fraction", "0.9"]));
    assert!(err.contains("has no training samples") && err.contains("--min-samples"), "{err}");

    let err = fails(&train_args(csv_s, out_s, &["--lr", "1e38"]));
    assert!(err.contains("--lr") && err.contains("previous epoch"), "{err}");
    assert!(!out.join("model.safetensors").exists());

    let err = fails(&[
        "train",
        "--data",
        csv_s,
        "--out",
        out_s,
        "--arch",
        "densenet121",
        "--image-size",
        // One image's stem output alone is 1 GiB: more than lavapipe binds, and hundreds of
        // GiB for the step, so it is refused however much memory the machine has.
        "4096",
        "--val-fraction",
        "0",
    ]);
    assert!(err.contains("does not fit on this device"), "{err}");

    let bad = dir.join("bad");
    let bad_csv = fixture(&bad, 6);
    std::fs::write(bad.join("images/002.png"), b"\x89PNG garbage").unwrap();
    let err = fails(&train_args(bad_csv.to_str().unwrap(), out_s, &[]));
    assert!(err.contains("002.png") && err.contains("cannot decode"), "{err}");
    std::fs::remove_file(bad.join("images/003.png")).unwrap();
    let err = fails(&train_args(bad_csv.to_str().unwrap(), out_s, &[]));
    assert!(err.contains("003.png") && err.contains("missing"), "{err}");
}

#[test]
fn run_folders_and_checkpoints_are_guarded() {
    let dir = temp("guard");
    let csv = fixture(&dir, 24);
    let csv_s = csv.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    ok(&train_args(csv_s, run_s, &[]));
    ok(&["eval", "--model", run_s]);
    assert!(run.join("eval.json").is_file() && run.join("thresholds.json").is_file());

    // A second run into the same folder has to be asked for, and then leaves nothing stale.
    let err = fails(&train_args(csv_s, run_s, &[]));
    assert!(err.contains("already holds a run") && err.contains("--overwrite") && err.contains("--resume"), "{err}");
    ok(&train_args(csv_s, run_s, &["--overwrite"]));
    assert!(!run.join("eval.json").exists() && !run.join("thresholds.json").exists());
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 1);
    let err = fails(&train_args(csv_s, dir.join("none").to_str().unwrap(), &["--epochs", "0"]));
    assert!(err.contains("--epochs 0"), "{err}");
    // Reports and thresholds written elsewhere leave the run's thresholds (which predict uses) alone.
    let elsewhere = dir.join("elsewhere");
    ok(&["eval", "--model", run_s, "--out", elsewhere.to_str().unwrap()]);
    assert!(elsewhere.join("thresholds.json").is_file() && !run.join("thresholds.json").exists());

    // --resume keeps the run's settings: other flags are refused, not silently ignored.
    let err = fails(&["train", "--resume", run_s, "--epochs", "2", "--lr", "0.5", "--batch-size", "4"]);
    assert!(err.contains("--lr") && err.contains("--batch-size") && err.contains("ignored"), "{err}");
    // A run stopped during its first epoch leaves an empty folder: nothing to resume, and it says so.
    let stopped = dir.join("stopped");
    std::fs::create_dir_all(&stopped).unwrap();
    let err = fails(&["train", "--resume", stopped.to_str().unwrap(), "--epochs", "2"]);
    assert!(err.contains("holds no tailor run") && err.contains("first epoch") && err.contains("--out"), "{err}");

    // The model file of a run with another label count is refused, not scored with a random
    // classifier.
    let text = std::fs::read_to_string(&csv).unwrap();
    let two: String = text.lines().filter(|l| !l.contains(",owl,")).map(|l| format!("{l}\n")).collect();
    let two_csv = dir.join("two.csv");
    std::fs::write(&two_csv, two).unwrap();
    let other = dir.join("other");
    ok(&train_args(two_csv.to_str().unwrap(), other.to_str().unwrap(), &[]));
    std::fs::copy(other.join("model.safetensors"), run.join("model.safetensors")).unwrap();
    let img = dir.join("images/000.png");
    let img_s = img.to_str().unwrap();
    for args in [vec!["eval", "--model", run_s], vec!["predict", "--model", run_s, img_s]] {
        let err = fails(&args);
        assert!(err.contains("model.safetensors") && err.contains("2 labels") && err.contains("has 3"), "{err}");
    }
    let err = fails(&["predict", "--model", other.to_str().unwrap(), "--top-k", "0", img_s]);
    assert!(err.contains("--top-k 0"), "{err}");

    // Evaluating a column-labelled run on data without one of its columns would count all of
    // that column's labels as absent.
    let cols = dir.join("cols");
    ok(&train_args(csv_s, cols.to_str().unwrap(), &["--label-columns", "label,tags"]));
    let err = fails(&["eval", "--model", cols.to_str().unwrap(), "--data", csv_s, "--label-columns", "label"]);
    assert!(err.contains("tags") && err.contains("--label-columns label,tags"), "{err}");

    // One class is no classification task.
    let one: String =
        text.lines().filter(|l| !l.contains(",owl,") && !l.contains(",dog,")).map(|l| format!("{l}\n")).collect();
    let one_csv = dir.join("one.csv");
    std::fs::write(&one_csv, one).unwrap();
    let err = fails(&train_args(one_csv.to_str().unwrap(), dir.join("one").to_str().unwrap(), &[]));
    assert!(err.contains("same label") && err.contains("two classes"), "{err}");
}

/// A copy of a run folder's files in `dir/name`.
fn copy_run(from: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn checkpoints_are_saved_as_one_set_and_resume_finds_moved_data() {
    let dir = temp("ckpt");
    let csv = fixture(&dir.join("data"), 24);
    let csv_s = csv.to_str().unwrap();
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(&train_args(csv_s, one.to_str().unwrap(), &[]));
    ok(&train_args(csv_s, two.to_str().unwrap(), &["--epochs", "2"]));
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    let set = ["model.safetensors", "optimizer.safetensors", "config.json", "labels.txt"];

    // A save that cannot finish (here config.json's temporary file cannot be made; a full disk
    // fails the same way) changes none of the files: epoch 1's checkpoint stays whole, and resumes.
    let full = copy_run(&one, &dir, "full");
    let full_s = full.to_str().unwrap();
    std::fs::create_dir(full.join("config.json.tmp")).unwrap();
    let before: Vec<Vec<u8>> = set.iter().map(|f| read(&full, f)).collect();
    let err = fails(&["train", "--resume", full_s, "--epochs", "2"]);
    assert!(
        err.contains("config.json")
            && err.contains("epoch 2's checkpoint was not saved")
            && err.contains("after epoch 1"),
        "{err}"
    );
    assert_eq!(set.iter().map(|f| read(&full, f)).collect::<Vec<_>>(), before);
    assert!(!full.join("model.safetensors.tmp").exists() && !full.join("optimizer.safetensors.tmp").exists());
    std::fs::remove_dir(full.join("config.json.tmp")).unwrap();
    ok(&["train", "--resume", full_s, "--epochs", "2"]);
    assert!(read(&full, "model.safetensors") == read(&two, "model.safetensors"), "resumed weights differ");

    // A checkpoint of files from two epochs (a crash between the renames) cannot continue exactly.
    let mixed = copy_run(&one, &dir, "mixed");
    std::fs::copy(two.join("model.safetensors"), mixed.join("model.safetensors")).unwrap();
    let err = fails(&["train", "--resume", mixed.to_str().unwrap(), "--epochs", "3"]);
    assert!(err.contains("different epochs") && err.contains("--overwrite"), "{err}");
    // Only config.json behind (it is renamed last): the checkpoint's own epoch counts.
    let behind = copy_run(&one, &dir, "behind");
    for f in ["model.safetensors", "optimizer.safetensors"] {
        std::fs::copy(two.join(f), behind.join(f)).unwrap();
    }
    let (_, err) = ok_both(&["train", "--resume", behind.to_str().unwrap(), "--epochs", "3"]);
    assert!(err.contains("resuming after epoch 2") && err.contains("holds 2"), "{err}");
    ok(&["train", "--resume", two.to_str().unwrap(), "--epochs", "3"]);
    assert!(read(&behind, "model.safetensors") == read(&two, "model.safetensors"), "resumed weights differ");

    // Data that moved is found again with --data, and must be the same data.
    std::fs::rename(dir.join("data"), dir.join("moved")).unwrap();
    let err = fails(&["train", "--resume", full.to_str().unwrap(), "--epochs", "3"]);
    assert!(err.contains("labels.csv") && err.contains("--data NEW.csv"), "{err}");
    let moved = dir.join("moved/labels.csv");
    let other = fixture(&dir.join("other"), 30);
    let err = fails(&["train", "--resume", full_s, "--epochs", "3", "--data", other.to_str().unwrap()]);
    assert!(err.contains("training and") && err.contains("same data"), "{err}");
    // The same labels and counts, other images: refused too.
    let renamed = dir.join("renamed");
    std::fs::create_dir_all(renamed.join("images")).unwrap();
    for e in std::fs::read_dir(dir.join("moved/images")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), renamed.join("images").join(format!("x{}", e.file_name().to_str().unwrap()))).unwrap();
    }
    let text = std::fs::read_to_string(&moved).unwrap();
    let relabelled: String =
        text.lines().enumerate().map(|(i, l)| if i == 0 { format!("{l}\n") } else { format!("x{l}\n") }).collect();
    std::fs::write(renamed.join("labels.csv"), relabelled).unwrap();
    let err =
        fails(&["train", "--resume", full_s, "--epochs", "3", "--data", renamed.join("labels.csv").to_str().unwrap()]);
    assert!(err.contains("other images or labels") && err.contains("same data"), "{err}");
    ok(&["train", "--resume", full_s, "--epochs", "3", "--data", moved.to_str().unwrap()]);
    assert!(read(&full, "model.safetensors") == read(&two, "model.safetensors"), "resumed weights differ");
    assert!(String::from_utf8(read(&full, "config.json")).unwrap().contains("moved"));

    // A folder with a model file but no config.json is no run to resume, and says how to go on.
    let partial = dir.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(one.join("model.safetensors"), partial.join("model.safetensors")).unwrap();
    let partial_s = partial.to_str().unwrap();
    let moved_s = moved.to_str().unwrap();
    let err = fails(&train_args(moved_s, partial_s, &[]));
    assert!(err.contains("no config.json") && err.contains("--overwrite"), "{err}");
    let err = fails(&["train", "--resume", partial_s, "--epochs", "2"]);
    assert!(err.contains("no config.json") && err.contains("--overwrite"), "{err}");
    // A new run that fails before its first checkpoint leaves no empty folder.
    let nan = dir.join("nan");
    let err = fails(&train_args(moved_s, nan.to_str().unwrap(), &["--lr", "1e38"]));
    assert!(err.contains("--lr"), "{err}");
    assert!(!nan.exists());
}

#[test]
fn the_input_size_is_the_most_common_and_colour_wins() {
    // The first row is an odd one out: a wide colour image among 16×16 gray ones.
    let dir = temp("probe");
    let csv = fixture(&dir, 24);
    image::RgbImage::from_pixel(40, 10, image::Rgb([200, 10, 10])).save(dir.join("images/000.png")).unwrap();
    let run = dir.join("run");
    let args = ["train", "--data", csv.to_str().unwrap(), "--out", run.to_str().unwrap(), "--epochs", "1"];
    let mut args = args.to_vec();
    args.extend(["--growth-rate", "4", "--blocks", "1,1", "--batch-size", "8"]);
    let (_, err) = ok_both(&args);
    assert!(err.contains("images 16×16×3") && err.contains("differ in size") && err.contains("most common"), "{err}");
}

#[test]
fn folders_are_taken_where_files_are_and_the_reverse_refused() {
    let dir = temp("folders");
    let csv = fixture(&dir, 24);
    let csv_s = csv.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    ok(&train_args(csv_s, run_s, &[]));
    // --init takes a run folder for its weights.
    let (_, err) = ok_both(&train_args(csv_s, dir.join("init").to_str().unwrap(), &["--init", run_s]));
    assert!(err.contains("loaded") && err.contains("model.safetensors"), "{err}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = fails(&train_args(csv_s, dir.join("x").to_str().unwrap(), &["--init", empty.to_str().unwrap()]));
    assert!(err.contains("holds no model.safetensors") && err.contains("--init"), "{err}");
    // --out naming a file is refused as such.
    let err = fails(&train_args(csv_s, csv_s, &[]));
    assert!(err.contains("is a file, not a folder"), "{err}");
    let err = fails(&train_args(csv_s, dir.join("y").to_str().unwrap(), &["--schedule", "step", "--lr-step", "0"]));
    assert!(err.contains("--lr-step 0"), "{err}");
    // Resuming a run whose folder holds eval's thresholds says they are now stale; a cosine
    // schedule re-planned over more epochs says so.
    ok(&["eval", "--model", run_s]);
    let (_, err) = ok_both(&["train", "--resume", run_s, "--epochs", "2"]);
    assert!(err.contains("thresholds.json") && err.contains("tailor eval --model"), "{err}");
    let cos = dir.join("cos");
    ok(&train_args(csv_s, cos.to_str().unwrap(), &["--schedule", "cosine"]));
    let (_, err) = ok_both(&["train", "--resume", cos.to_str().unwrap(), "--epochs", "2"]);
    assert!(err.contains("cosine schedule was planned over 1 epochs"), "{err}");
    // A bad precision floor is refused before anything loads.
    let err = fails(&["eval", "--model", run_s, "--min-precision", "1.5"]);
    assert!(err.contains("--min-precision 1.5") && !err.contains("evaluating"), "{err}");
    // compare into a folder of an earlier comparison needs --overwrite (it has no --resume).
    let cmp = dir.join("cmp");
    std::fs::create_dir_all(cmp.join("nw")).unwrap();
    std::fs::write(cmp.join("nw/config.json"), "{}").unwrap();
    let err = fails(&["compare", "--data", csv_s, "--out", cmp.to_str().unwrap()]);
    assert!(err.contains("earlier comparison") && err.contains("--overwrite") && !err.contains("--resume"), "{err}");
}

/// An IDX folder (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`) of `n` w×h images of
/// 3 classes.
fn idx_fixture(dir: &Path, n: usize, w: usize, h: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut images = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        images.extend((d as u32).to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = i % 3;
        images.extend((0..w * h).map(|p| if p / w / (h / 3).max(1) == class { 200u8 } else { (p * 7 % 40) as u8 }));
        labels.push(class as u8);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
}

#[test]
fn idx_folders_keep_their_size_and_classes() {
    let dir = temp("idx");
    idx_fixture(&dir.join("digits"), 30, 12, 18);
    let run = dir.join("run");
    let data = dir.join("digits");
    let args = ["train", "--data", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--epochs", "1"];
    let mut args = args.to_vec();
    args.extend(["--growth-rate", "4", "--blocks", "1,1", "--batch-size", "8", "--val-fraction", "0.2"]);
    let (_, err) = ok_both(&args);
    assert!(err.contains("3 labels (single-label), images 12×18×1"), "{err}");
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    use std::io::Read;
    let counts = (1..=3000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailor"))
        .args(["weights", "--counts", &counts])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tailor binary runs");
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked") && status.code() != Some(101), "{status:?}: {err}");
}

#[test]
fn a_run_trained_with_relative_paths_evaluates_from_anywhere() {
    let dir = temp("relative");
    fixture(&dir, 24);
    let mut args = train_args("labels.csv", "run", &[]);
    args.extend(["--image-dir", "images"]);
    let out = tailor_in(&dir, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = ok(&["eval", "--model", dir.join("run").to_str().unwrap()]);
    assert!(md.contains("macro mAP"), "{md}");
}

#[test]
fn bench_refuses_unknown_workloads_and_empty_shapes() {
    let err = fails(&["bench", "--workload", "w3"]);
    assert!(err.contains("'w3'") && err.contains("w1 or w2"), "{err}");
    let err = fails(&["bench", "--steps", "0"]);
    assert!(err.contains("--steps 0"), "{err}");
    let err = fails(&["bench", "--batch-size", "0", "--plan-only"]);
    assert!(err.contains("batch size 0"), "{err}");
    let err = fails(&["bench", "--arch", "densenet121", "--image-size", "16", "--plan-only"]);
    assert!(err.contains("too small") && err.contains("--image-size 29"), "{err}");
    // A small W1 step times, and its JSON says how many dispatches one step takes (the figure the
    // kernel-fusion and optimiser-arena work is judged by).
    let json = ok(&[
        "bench",
        "--batch-size",
        "2",
        "--image-size",
        "16",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--no-breakdown",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["dispatches_per_step"].as_u64().is_some_and(|n| n > 100), "{json}");
    assert!(v["median_step_s"].as_f64().is_some_and(|t| t > 0.0), "{json}");
}

#[test]
fn negative_numbers_reach_tailors_own_checks() {
    let dir = temp("negative");
    let csv = fixture(&dir, 6);
    let (csv, out) = (csv.to_str().unwrap(), dir.join("out"));
    let out = out.to_str().unwrap();
    for (flag, value, says) in [
        ("--beta", "-0.5", "[0, 1)"),
        ("--lr", "-1", "0 or more"),
        ("--weight-decay", "-0.01", "0 (none) or more"),
        ("--lr-gamma", "-0.1", "positive factor"),
        ("--focal-gamma", "-2", "0 or more"),
        ("--val-fraction", "-0.1", "[0, 1)"),
        ("--imbalance", "-10", "at least 1"),
    ] {
        let err = fails(&train_args(csv, out, &[flag, value]));
        assert!(!err.contains("unexpected argument"), "{flag} {value}: {err}");
        assert!((err.contains(value) || err.contains(flag)) && err.contains(says), "{flag} {value}: {err}");
    }
    let err = fails(&["weights", "--counts", "3,4", "--beta", "-0.5"]);
    assert!(err.contains("-0.5") && err.contains("[0, 1)"), "{err}");
    let err = fails(&["eval", "--model", out, "--min-precision", "-1"]);
    assert!(!err.contains("unexpected argument"), "{err}");
    // Negative exponents, with or without `=`.
    for args in [&["--weight-decay", "-1e-4"][..], &["--weight-decay=-1e-4"]] {
        let err = fails(&train_args(csv, out, args));
        assert!(err.contains("--weight-decay -0.0001") && err.contains("0 (none) or more"), "{args:?}: {err}");
    }
    // A count cannot be negative: clap names the flag and the value.
    let err = fails(&train_args(csv, out, &["--epochs", "-2"]));
    assert!(err.contains("invalid value '-2'") && err.contains("--epochs"), "{err}");
    assert!(!std::path::Path::new(out).exists(), "nothing was trained");
}

#[test]
fn devices_say_which_adapters_cannot_train() {
    let v: serde_json::Value = serde_json::from_str(&ok(&["devices", "--json"])).unwrap();
    let adapters = v.as_array().unwrap();
    let mut unusable = 0;
    for d in adapters {
        let features = d["optional_features"].as_array().unwrap();
        let limit = |k: &str| d["limits"][k].as_u64().unwrap();
        let subgroups = features.iter().any(|f| f == "subgroups") && limit("min_subgroup_size") >= 8;
        // What the kernels need (`tailor::gpu::kernel_needs`): batch norm's 10 storage buffers,
        // max pooling's 8 KiB of workgroup memory, workgroups of 256.
        let limits = limit("max_storage_buffers_per_shader_stage") >= 10
            && limit("max_compute_workgroup_storage_size") >= 8192
            && limit("max_compute_invocations_per_workgroup").min(limit("max_compute_workgroup_size_x")) >= 256;
        assert_eq!(d["usable"], subgroups && limits, "{d}");
        if !(subgroups && limits) {
            unusable += 1;
            let why = d["unusable_reason"].as_str().unwrap();
            assert!(
                if subgroups {
                    why.contains("it allows") || why.contains("workgroups")
                } else {
                    why.contains("subgroup")
                },
                "{d}"
            );
        }
        // wgpu has no subgroups on GL (lavapipe's machines list llvmpipe there too).
        if d["backend"] == "Gl" {
            assert_eq!(d["usable"], false, "{d}");
        }
    }
    // Usable adapters come first: the default choice is one tailor can train on.
    assert!(adapters.windows(2).all(|w| w[0]["usable"] == true || w[1]["usable"] == false), "{v}");
    assert_eq!(ok(&["devices"]).matches("cannot train with tailor: ").count(), unusable);
}

#[test]
fn flags_that_would_be_ignored_are_refused() {
    let dir = temp("ignored");
    let err = fails(&["predict", "--model", dir.to_str().unwrap(), "--num-classes", "3", "x.png"]);
    assert!(err.contains("--num-classes") && err.contains("--weights"), "{err}");
    // An IDX folder carries its own labels; a single IDX file is not a CSV.
    std::fs::write(dir.join("train-labels-idx1-ubyte"), [0u8; 8]).unwrap();
    let err = fails(&["train", "--data", dir.to_str().unwrap(), "--label-column", "x"]);
    assert!(err.contains("IDX") && err.contains("--label-column"), "{err}");
    let err = fails(&["train", "--data", dir.join("train-labels-idx1-ubyte").to_str().unwrap()]);
    assert!(err.contains("looks like an IDX file") && err.contains("folder"), "{err}");
}

/// What a new user tripped over on unseen photos (issue #23): flags a command does not use,
/// errors that came after slow work or without their CSV line, thin labels trained silently.
#[test]
fn new_user_stumbles_are_caught_early_and_explained() {
    let dir = temp("stumbles");
    let csv = fixture(&dir, 24);
    let csv_s = csv.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    ok(&train_args(csv_s, run_s, &[]));
    // The run draws its training curves.
    assert!(run.join("curves.png").is_file() && run.join("curves.svg").is_file());
    // eval.md says what puts a label in each group, in samples of this training set.
    ok(&["eval", "--model", run_s]);
    let md = std::fs::read_to_string(run.join("eval.md")).unwrap();
    assert!(md.contains("| many | > 100 samples |") && md.contains("| rare | share < 1% (< 1 samples) |"), "{md}");

    // Only the flags a command uses: eval and weights take no input size or colour.
    for args in [
        vec!["eval", "--model", run_s, "--image-size", "48"],
        vec!["eval", "--model", run_s, "--grayscale"],
        vec!["weights", "--data", csv_s, "--rgb"],
    ] {
        let err = fails(&args);
        assert!(err.contains("unexpected argument"), "{args:?}: {err}");
    }
    assert!(!ok(&["weights", "--help"]).contains("--image-size"));
    let err = fails(&train_args(csv_s, dir.join("s").to_str().unwrap(), &["--lr-step", "5"]));
    assert!(err.contains("--schedule step"), "{err}");
    // Help says what the model and optimiser flags do, and the default epochs.
    let help = ok(&["train", "--help"]);
    for says in ["Channels each dense layer adds", "Bottleneck width", "The learning rate", "Images per training step"]
    {
        assert!(help.contains(says), "{says}: {help}");
    }
    assert!(help.contains("[default: 10]"), "{help}");

    // A folder of photos given as the run says so.
    let err = fails(&["predict", "--model", dir.join("images").to_str().unwrap(), csv_s]);
    assert!(err.contains("holds images but no tailor run") && err.contains("--model"), "{err}");

    // Cheap checks come first: nothing is loaded or built before these are refused.
    let built = "parameters) on";
    let loaded = "samples, 3 labels";
    let err = fails(&train_args(csv_s, "/proc/tailor-cannot-be-here", &[]));
    assert!(err.contains("cannot create") && !err.contains(loaded), "{err}");
    let b0 = dir.join("b0");
    let err = fails(&["train", "--data", csv_s, "--out", b0.to_str().unwrap(), "--batch-size", "0"]);
    assert!(err.contains("--batch-size 0") && !err.contains(loaded) && !err.contains(built), "{err}");
    let err =
        fails(&["train", "--data", csv_s, "--out", b0.to_str().unwrap(), "--batch-size", "8", "--accumulate", "3"]);
    assert!(err.contains("--accumulate 3") && err.contains("multiple") && !err.contains(loaded), "{err}");
    // Accumulation trains (two micro-batches of 4) and records the setting in the run.
    let acc = dir.join("acc");
    let (text, err) = ok_both(&train_args(csv_s, acc.to_str().unwrap(), &["--accumulate", "2"]));
    let all = format!("{text}{err}");
    assert!(all.contains("epoch 1/1") && all.contains("device memory (planned)"), "{all}");
    let config = std::fs::read_to_string(acc.join("config.json")).unwrap();
    assert!(config.contains("\"accumulate\": 2"), "{config}");
    let (_, err) = ok_both(&["train", "--resume", run_s, "--epochs", "1"]);
    assert!(err.contains("already has 1 epochs") && !err.contains(loaded), "{err}");
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["config.json", "labels.txt"] {
        std::fs::copy(run.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.safetensors"), b"not safetensors").unwrap();
    let err = fails(&["eval", "--model", broken.to_str().unwrap()]);
    assert!(err.contains("model.safetensors") && !err.contains("evaluating"), "{err}");

    // A single-label run never reads its thresholds: a broken file does not block predict.
    std::fs::write(run.join("thresholds.json"), b"{ broken").unwrap();
    let img = dir.join("images/000.png");
    ok(&["predict", "--model", run_s, img.to_str().unwrap()]);

    // A damaged image names its CSV line, in words rather than the decoder's structures.
    let bad = dir.join("bad");
    let bad_csv = fixture(&bad, 24);
    std::fs::write(bad.join("images/004.png"), b"\x89PNG\r\n\x1a\n garbage that is no PNG").unwrap();
    let err = fails(&train_args(bad_csv.to_str().unwrap(), dir.join("x").to_str().unwrap(), &[]));
    assert!(err.contains("004.png") && err.contains("line 6") && err.contains("PNG data is damaged"), "{err}");
    assert!(!err.contains("ChunkType") && !err.contains('{'), "{err}");

    // Labels too thin to learn or judge are named, with the flag that leaves them out.
    let thin = dir.join("thin");
    let thin_csv = fixture(&thin, 24);
    let text = std::fs::read_to_string(&thin_csv).unwrap();
    let (mut owls, mut kept) = (0, String::new());
    for line in text.lines() {
        if line.contains(",owl,") {
            owls += 1;
            if owls > 1 {
                continue;
            }
        }
        kept += &format!("{line}\n");
    }
    std::fs::write(&thin_csv, kept).unwrap();
    let (_, err) = ok_both(&train_args(thin_csv.to_str().unwrap(), dir.join("t").to_str().unwrap(), &[]));
    assert!(err.contains("fewer than 5 training samples: owl (1)") && err.contains("--min-samples 5"), "{err}");
    assert!(err.contains("no validation samples: owl"), "{err}");

    // weights counts labels without decoding an image (a damaged one does not stop it).
    let (text, _) = ok_both(&["weights", "--data", bad_csv.to_str().unwrap()]);
    assert!(text.contains("cat") && text.contains("IEW"), "{text}");

    // weights: counts are whole numbers, and β = 1 is IFW's limit.
    let err = fails(&["weights", "--counts", "5,-1"]);
    assert!(err.contains("whole number of samples"), "{err}");
    let err = fails(&["weights", "--counts", "5,3", "--beta", "1"]);
    assert!(err.contains("IEW to IFW") && err.contains("ifw"), "{err}");
}

/// compare over a grid of β and focal γ: an IEW run per point, and which wins per label group.
#[test]
fn compare_a_grid_of_beta_and_gamma_names_the_winners() {
    let dir = temp("grid");
    let csv = fixture(&dir, 24);
    let out = dir.join("grid");
    let mut args =
        train_args(csv.to_str().unwrap(), out.to_str().unwrap(), &["--beta", "0.9,0.999", "--focal-gamma", "0,2"]);
    args[0] = "compare";
    let (text, err) = ok_both(&args);
    assert!(text.contains("best for all:") && text.contains("β=0.9 γ=2"), "{text}");
    assert_eq!(err.matches("24 samples, 3 labels").count(), 1, "{err}");
    let md = std::fs::read_to_string(out.join("grid.md")).unwrap();
    assert!(
        md.contains("| Group | β=0.9 γ=0 | β=0.9 γ=2 | β=0.999 γ=0 | β=0.999 γ=2 |") && md.contains("- best for"),
        "{md}"
    );
    for run in ["iew-b0.9-g0", "iew-b0.9-g2", "iew-b0.999-g0", "iew-b0.999-g2"] {
        assert!(out.join(run).join("eval.json").is_file(), "{run}");
    }
    // train takes one of each.
    let err = fails(&train_args(csv.to_str().unwrap(), dir.join("t").to_str().unwrap(), &["--beta", "0.9,0.99"]));
    assert!(err.contains("compare trains a grid"), "{err}");
}

/// `n` 16×16 gray PNGs of identities `item0`… (each identity a band at its own row, `per`
/// images each) in two verticals A and B, and a CSV `file,item,v`.
fn items(dir: &Path, ids: usize, per: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("file,item,v\n");
    for id in 0..ids {
        for k in 0..per {
            let img = image::GrayImage::from_fn(16, 16, |x, y| {
                let band = y as usize == id % 16 || x as usize == (id * 5) % 16;
                image::Luma([if band { 220 } else { ((x * 3 + y * 7 + k as u32 * 11) % 50) as u8 }])
            });
            let name = format!("{id:02}-{k}.png");
            img.save(dir.join("images").join(&name)).unwrap();
            csv += &format!("{name},item{id},{}\n", if id % 2 == 0 { "A" } else { "B" });
        }
    }
    let path = dir.join("items.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

const EMBED_TINY: &[&str] = &[
    "--task",
    "embedding",
    "--label-column",
    "item",
    "--vertical-column",
    "v",
    "--growth-rate",
    "4",
    "--blocks",
    "1,1",
    "--embedding-dim",
    "8",
    "--p",
    "3",
    "--k",
    "2",
    "--epochs",
    "1",
    "--val-fraction",
    "0.3",
];

/// [`EMBED_TINY`] with the flags `extra` gives replaced by its values.
fn embed_tiny<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    for pair in EMBED_TINY.chunks(2) {
        if !extra.contains(&pair[0]) {
            out.extend_from_slice(pair);
        }
    }
    out.extend_from_slice(extra);
    out
}

/// Specialists per vertical, a model distilled from them, retrieval evaluation, an index and a
/// search, and the mistakes each of them refuses.
#[test]
fn embedding_specialists_distill_evaluate_embed_and_search() {
    let dir = temp("embedding");
    let csv = items(&dir, 12, 4);
    let csv_s = csv.to_str().unwrap();
    let run = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (a, b, unified) = (run("a"), run("b"), run("unified"));
    for (out, v) in [(&a, "A"), (&b, "B")] {
        let mut args = vec!["train", "--data", csv_s, "--out", out, "--vertical", v];
        args.extend_from_slice(EMBED_TINY);
        let (_, err) = ok_both(&args);
        assert!(err.contains("val Recall@1") && err.contains("MAP@R"), "{err}");
        assert!(err.contains("kept the 24 rows of v") && err.contains("left out 24 rows"), "{err}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["task"], "embedding");
    assert_eq!(cfg["embedding"]["verticals"], serde_json::json!(["A"]));
    assert_eq!(cfg["embedding"]["dim"], 8);
    assert_eq!(cfg["loss"], "triplet-batch-hard");

    // Retrieval evaluation: the standard keys, per vertical.
    let md = ok(&["eval", "--model", &a]);
    assert!(md.contains("MAP@R") && md.contains("| A |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/eval.json")).unwrap()).unwrap();
    for key in ["recall@1", "recall@2", "recall@4", "recall@8", "r_precision", "map_at_r", "queries"] {
        assert!(json.get(key).is_some(), "{key}: {json}");
    }
    assert!(json["per_vertical"]["A"].is_object(), "{json}");
    // Against a gallery; an empty gallery is refused.
    ok(&["eval", "--model", &a, "--data", csv_s, "--label-column", "item", "--gallery", csv_s, "--out", &run("ga")]);
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "file,item,v\n").unwrap();
    let err = fails(&["eval", "--model", &a, "--gallery", empty.to_str().unwrap(), "--out", &run("ge")]);
    assert!(err.contains("empty.csv") && err.contains("no data lines"), "{err}");

    // Distillation: the teachers' embeddings are computed once and reused on resume.
    let mut args = vec!["distill", "--teacher", &a, "--teacher", &b, "--data", csv_s, "--out", &unified];
    args.extend_from_slice(&[
        "--label-column",
        "item",
        "--vertical-column",
        "v",
        "--growth-rate",
        "4",
        "--blocks",
        "1,1",
    ]);
    args.extend_from_slice(&["--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3"]);
    let (_, err) = ok_both(&args);
    assert!(err.contains("computed 2 teachers' embeddings") && err.contains("val Recall@1"), "{err}");
    assert!(dir.join("unified/teachers.safetensors").is_file());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("unified/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["loss"], "distill-l2");
    assert_eq!(cfg["embedding"]["teachers"].as_array().unwrap().len(), 2);
    let (_, err) = ok_both(&["train", "--resume", &unified, "--epochs", "2"]);
    assert!(!err.contains("computed") && err.contains("epoch 2/2"), "{err}");
    // A teacher trained again: its embeddings are computed anew.
    let mut args = vec!["train", "--data", csv_s, "--out", &a, "--vertical", "A", "--overwrite"];
    args.extend(embed_tiny(&["--seed", "1"]));
    ok(&args);
    let (_, err) = ok_both(&["train", "--resume", &unified, "--epochs", "3"]);
    assert!(err.contains("other teachers' weights") && err.contains("computed 2 teachers' embeddings"), "{err}");

    // Index and search: the catalogue's images with their labels; a query finds itself first.
    let index = run("catalogue.safetensors");
    let (_, err) = ok_both(&["embed", "--model", &unified, "--data", csv_s, "--label-column", "item", "--out", &index]);
    assert!(err.contains("48 embeddings of dimension 8, with labels"), "{err}");
    let query = dir.join("images/05-1.png");
    let json = ok(&[
        "search",
        "--model",
        &unified,
        "--index",
        &index,
        "--top-k",
        "3",
        "--format",
        "json",
        query.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let nearest = v[0]["nearest"].as_array().unwrap();
    assert_eq!(nearest.len(), 3);
    assert!(nearest[0]["image"].as_str().unwrap().ends_with("05-1.png") && nearest[0]["label"] == "item5", "{json}");

    // What each refuses, by name.
    let err = fails(&["search", "--model", &a, "--index", &index, query.to_str().unwrap()]);
    assert!(err.contains("made by model") && err.contains("rebuild the index"), "{err}");
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"not an image").unwrap();
    let err = fails(&["search", "--model", &unified, "--index", &index, broken.to_str().unwrap()]);
    assert!(err.contains("broken.png") && err.contains("cannot decode"), "{err}");
    let classifier = run("classifier");
    ok(&train_args(&fixture(&dir.join("cls"), 24).to_string_lossy(), &classifier, &[]));
    let distill = |teachers: &[&str], extra: &[&str]| {
        let mut args = vec!["distill"];
        for t in teachers {
            args.extend(["--teacher", t]);
        }
        args.extend_from_slice(&["--data", csv_s, "--label-column", "item", "--vertical-column", "v", "--out"]);
        let out = run("bad-distill");
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(out);
        args.extend(extra.iter().map(|s| s.to_string()));
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = distill(&[&a, &classifier], &[]);
    assert!(err.contains("is a classifier run"), "{err}");
    let err = distill(&[&a, &a], &[]);
    assert!(err.contains("two teachers for vertical 'A'"), "{err}");
    let wide = run("wide");
    let mut args = vec!["train", "--data", csv_s, "--out", &wide, "--vertical", "B"];
    args.extend(embed_tiny(&["--embedding-dim", "5"]));
    ok(&args);
    let err = distill(&[&a, &wide], &[]);
    assert!(err.contains("differ in dimension"), "{err}");
    let mut args = vec!["train", "--data", csv_s, "--out", &wide, "--overwrite", "--vertical", "C"];
    args.extend_from_slice(EMBED_TINY);
    let err = fails(&args);
    assert!(err.contains("'C' is not a value of column 'v'") && err.contains("A (24)"), "{err}");
    let mut args = vec!["train", "--data", csv_s, "--out", &wide, "--overwrite"];
    args.extend(embed_tiny(&["--p", "40"]));
    let err = fails(&args);
    assert!(err.contains("P = 40") || err.contains("40 labels"), "{err}");
}

/// `--devices`: two replicas on one adapter opened twice train with identical weights (a
/// checksum per epoch), the run resumes on one device, and bad selections or shares are refused
/// before any data is loaded.
#[test]
fn several_devices_share_each_batch() {
    let devices: serde_json::Value = serde_json::from_str(&ok(&["devices", "--json"])).unwrap();
    let name = devices
        .as_array()
        .and_then(|a| a.iter().find(|d| d["usable"] == true))
        .and_then(|d| d["name"].as_str())
        .expect("a usable adapter")
        .to_string();
    // Names are matched by a part (whole names may hold commas, as lavapipe's does).
    let name = name.split([' ', ',']).next().unwrap().to_string();
    let twice = format!("{name},{name}");
    let dir = temp("devices");
    let csv = fixture(&dir, 24);
    let csv_s = csv.to_str().unwrap();
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let (text, err) = ok_both(&train_args(csv_s, run_s, &["--devices", &twice]));
    let all = format!("{text}{err}");
    assert!(all.contains("2 devices, each batch shared") && all.contains("(4 images)"), "{all}");
    assert!(all.contains("the 2 replicas hold identical weights (checksum"), "{all}");
    // Devices are not a setting of the run: it resumes on one.
    ok(&["train", "--resume", run_s, "--epochs", "2"]);

    let loaded = "samples, 3 labels";
    let other = dir.join("other");
    let other_s = other.to_str().unwrap();
    let err = fails(&train_args(csv_s, other_s, &["--device-shares", "4,4"]));
    assert!(err.contains("--device-shares") && err.contains("--devices"), "{err}");
    let err = fails(&train_args(csv_s, other_s, &["--devices", "0"]));
    assert!(err.contains("--devices 0"), "{err}");
    let err = fails(&train_args(csv_s, other_s, &["--devices", "99"]));
    assert!(err.contains("--devices 99") && err.contains("name an adapter twice"), "{err}");
    let err = fails(&train_args(csv_s, other_s, &["--devices", "no-such-adapter"]));
    assert!(err.contains("no-such-adapter") && err.contains(&name), "{err}");
    let err = fails(&train_args(csv_s, other_s, &["--devices", &twice, "--device-shares", "4"]));
    assert!(
        err.contains("--device-shares") && err.contains("one positive share per device") && !err.contains(loaded),
        "{err}"
    );
    let err = fails(&train_args(csv_s, other_s, &["--devices", &twice, "--device-shares", "5,5"]));
    assert!(err.contains("sum to the batch of 8"), "{err}");
}
