//! What an app that ships a trained model writes: open a `tailor train` run folder and tag
//! photos with it, through the public `tailor::` API only.
//!
//! cargo run --release --example tag_images -- runs/fmlt assets/fashion-mnist-lt/images/00000.png

use tailor::nn::tagger::Tagger;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((run, images)) = args.split_first().filter(|(_, images)| !images.is_empty()) else {
        eprintln!("usage: tag_images RUN_FOLDER IMAGE...");
        return std::process::ExitCode::from(2);
    };
    // tailor's errors say what went wrong and what to do: print them as such (Display).
    match tag(run, images) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn tag(run: &str, images: &[String]) -> tailor::Result<()> {
    let gpu = tailor::Gpu::new()?;
    // Network, weights, input size, normalisation, label names and eval's thresholds.
    let tagger = Tagger::load(gpu, run, 16)?;
    let (tagged, fitted) = tagger.tag_files(images, 3)?;
    if let Some(note) = fitted.note(&tagger.image) {
        eprintln!("note: {note}");
    }
    for (path, t) in images.iter().zip(&tagged) {
        let labels: Vec<String> = t.chosen.iter().map(|&(j, p)| format!("{} {p:.3}", tagger.labels[j])).collect();
        println!("{path}: {}", labels.join(", "));
    }
    Ok(())
}
