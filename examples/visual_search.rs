//! Search by photo, from Rust: index a folder of catalogue images with an embedding model and
//! find the nearest ones to a photo, with the public `tailor::` API only.
//!
//! cargo run --release --example visual_search [-- RUN FOLDER PHOTO]
//!
//! Without arguments it first trains a small embedding model for one epoch on the bundled
//! Fashion-MNIST subset (its classes standing in for product identities), then indexes that
//! subset's images and searches with one of them.

use std::path::PathBuf;

use tailor::nn::embedder::Embedder;
use tailor::run::{self, Event, RunSettings, Start, Task};

fn main() -> std::process::ExitCode {
    // tailor's errors say what went wrong and what to do: print them as such (Display).
    match search() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn search() -> tailor::Result<()> {
    let gpu = tailor::Gpu::new()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let assets = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-lt");
    let (run, folder, photo) = match args.as_slice() {
        [run, folder, photo] => (PathBuf::from(run), PathBuf::from(folder), PathBuf::from(photo)),
        [] => {
            let run = std::env::temp_dir().join("tailor-visual-search");
            let mut s = RunSettings { task: Task::Embedding, ..Default::default() };
            s.data.data = Some(assets.join("labels.csv"));
            s.arch.growth_rate = Some(6);
            s.arch.blocks = vec![2, 2, 2];
            (s.embedding.dim, s.embedding.p, s.embedding.k, s.epochs) = (32, 10, 6, 1);
            let show = &mut |e: Event| {
                if let Event::EpochEnd { record: r, .. } = e {
                    let r1 = r.val_recall_at_1.flatten().map_or("-".into(), |v| format!("{v:.3}"));
                    println!("trained an embedding model: loss {:.4}, val Recall@1 {r1}", r.train_loss);
                }
            };
            run::train(&gpu, &Start::New { settings: Box::new(s), dir: run.clone(), overwrite: true }, show)?;
            (run, assets.join("images"), assets.join("images/00007.png"))
        }
        _ => {
            eprintln!("usage: visual_search [RUN FOLDER PHOTO]");
            std::process::exit(2);
        }
    };

    // The catalogue: every image of the folder, embedded once into an index.
    let embedder = Embedder::load(gpu, &run, 64)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|e| tailor::Error::file(&folder, format!("cannot list: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg" || x == "jpeg"))
        .collect();
    files.sort();
    let (index, _) = embedder.index(&files, None, &mut |_| {})?;
    println!("indexed {} images of {} in {} dimensions", index.len(), folder.display(), index.dim());

    // The photo's nearest catalogue images.
    let hits = embedder.search(&index, std::slice::from_ref(&photo), 5)?;
    println!("nearest to {}:", photo.display());
    for h in &hits[0] {
        println!("  {}  {:.4}", h.path, h.distance);
    }
    Ok(())
}
