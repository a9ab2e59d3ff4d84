//! A run folder from Rust, as `tailor train`, `tailor eval` and `tailor predict` make and use
//! one, with the public `tailor::` API only: train one epoch on the bundled Fashion-MNIST
//! subset, resume to a second, evaluate, and tag a photo with the trained run.
//!
//! cargo run --release --example train_run [-- RUN_FOLDER]

use std::path::PathBuf;

use tailor::nn::tagger::Tagger;
use tailor::run::{self, EvalSettings, Event, RunSettings, Start};

fn main() -> std::process::ExitCode {
    // tailor's errors say what went wrong and what to do: print them as such (Display).
    match train_evaluate_tag() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What this app shows of a run: its warnings and one line per epoch.
fn show(e: Event) {
    match e {
        Event::Warning(w) => eprintln!("warning: {w}"),
        Event::Data(p) => println!("{} training and {} validation images", p.split.train.len(), p.split.val.len()),
        Event::EpochEnd { record: r, epochs } => println!(
            "epoch {}/{epochs}: loss {:.4}, val macro mAP {}",
            r.epoch,
            r.train_loss,
            r.val_macro_map.flatten().map_or("-".into(), |m| format!("{m:.4}"))
        ),
        _ => {}
    }
}

fn train_evaluate_tag() -> tailor::Result<()> {
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-lt");
    let out = std::env::args().nth(1).map_or_else(|| std::env::temp_dir().join("tailor-train-run"), PathBuf::from);
    let gpu = tailor::Gpu::new()?;

    // README's first command, as settings: a small DenseNet-BC, IEW class weights (the default).
    let mut settings = RunSettings::default();
    settings.data.data = Some(assets.join("labels.csv"));
    settings.arch.growth_rate = Some(6);
    settings.arch.blocks = vec![2, 2, 2];
    settings.batch_size = 32;
    settings.lr = 3e-3;
    settings.augment = true;
    settings.epochs = 1;
    run::train(&gpu, &Start::New { settings: Box::new(settings), dir: out.clone(), overwrite: true }, &mut show)?;

    // The run folder holds all it needs to go on: its settings, weights and optimiser state.
    let resume = Start::Resume { dir: out.clone(), epochs: Some(2), data: None, image_dir: None };
    let trained = run::train(&gpu, &resume, &mut show)?;
    println!("{}: {} epochs of {}", out.display(), trained.config.epochs_done, trained.config.arch);

    // Per-label AP on the validation split; thresholds at 60% precision for predict.
    let report = run::evaluate(&gpu, &EvalSettings::new(&out), &mut show)?;
    let map = report.macro_ap.map_or("-".into(), |m| format!("{m:.4}"));
    println!("macro mAP {map} over {} labels", report.labels.len());

    let tagger = Tagger::load(gpu, &out, 16)?;
    let photo = assets.join("images/00000.png");
    let (tagged, _) = tagger.tag_files(&[&photo], 3)?;
    let labels: Vec<String> = tagged[0].chosen.iter().map(|&(j, p)| format!("{} {p:.3}", tagger.labels[j])).collect();
    println!("{}: {}", photo.display(), labels.join(", "));
    Ok(())
}
