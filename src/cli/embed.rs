//! `tailor embed` and `tailor search`: a catalogue's embeddings as a search index, and the
//! nearest catalogue images of photos, with an embedding run ([`crate::nn::embedder::Embedder`],
//! [`crate::search::Index`]).

use std::path::PathBuf;

use indicatif::ProgressDrawTarget;

use super::common::{csv_field, expand_folders, progress_bar, DataArgs};
use crate::error::{Error, Result};
use crate::nn::embedder::Embedder;
use crate::run::Weights;
use crate::search::Index;

#[derive(clap::Args, Clone, Debug)]
pub struct EmbedArgs {
    /// Image files (PNG or JPEG) or folders of them; or give --data.
    pub images: Vec<PathBuf>,
    /// An embedding run folder (tailor train --task embedding, or tailor distill).
    #[arg(long)]
    pub model: PathBuf,
    /// The index file to write (safetensors: the embeddings, with the image paths, the labels
    /// when --data's CSV has its label column, and the model's fingerprint).
    #[arg(long)]
    pub out: PathBuf,
    /// Every image of a CSV (its label column, default `label`, gives the labels when present).
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// The last epoch's weights (default: the best epoch's, where they differ).
    #[arg(long)]
    pub last: bool,
}

pub fn embed(cli: &super::Cli, a: &EmbedArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Error::Invalid("--batch-size 0: give a positive number".into()));
    }
    let (files, labels) = match (&a.data.data, a.images.is_empty()) {
        (Some(_), true) => a.data.spec(None).source()?.image_files()?,
        (None, false) => (expand_folders(&a.images)?, None),
        (Some(_), false) => return Err(Error::Invalid("give --data or image files, not both".into())),
        (None, true) => return Err(Error::Invalid("give the images to embed: files, folders or --data CSV".into())),
    };
    if a.out.is_dir() {
        return Err(Error::file(&a.out, "is a folder; give --out the index file to write, e.g. catalogue.safetensors"));
    }
    let gpu = cli.open_gpu()?;
    let which = if a.last { Weights::Last } else { Weights::Best };
    let embedder = Embedder::load_weights(gpu, &a.model, a.batch_size.min(files.len().max(1)), which)?;
    let bar = progress_bar(files.len(), "embedding [{bar:30}] {pos}/{len} images, eta {eta}");
    if files.len() <= embedder.batch() * 8 {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let (mut index, fitted) = embedder.index(&files, labels, &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    if let Some(note) = fitted.note(&embedder.image) {
        eprintln!("note: {note}");
    }
    index.save(&a.out)?;
    eprintln!(
        "wrote {}: {} embeddings of dimension {}{}",
        a.out.display(),
        index.len(),
        index.dim(),
        if index.labels().is_some() { ", with labels" } else { "" }
    );
    Ok(())
}

#[derive(clap::Args, Clone, Debug)]
pub struct SearchArgs {
    /// Query photos (PNG or JPEG), or folders of them.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The embedding run that made the index.
    #[arg(long)]
    pub model: PathBuf,
    /// The index written by tailor embed.
    #[arg(long)]
    pub index: PathBuf,
    /// How many nearest images to list per query.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// text, json or csv (query,rank,image,label,distance).
    #[arg(long, default_value = "text")]
    pub format: String,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// The last epoch's weights (the index must have been made with them too).
    #[arg(long)]
    pub last: bool,
}

pub fn search(cli: &super::Cli, a: &SearchArgs) -> Result<()> {
    if !["text", "json", "csv"].contains(&a.format.as_str()) {
        return Err(Error::Invalid(format!("--format '{}': use text, json or csv", a.format)));
    }
    if a.top_k == 0 || a.batch_size == 0 {
        let flag = if a.top_k == 0 { "--top-k" } else { "--batch-size" };
        return Err(Error::Invalid(format!("{flag} 0: give a positive number")));
    }
    // The index and the queries are read before the device opens.
    let index = Index::load(&a.index)?;
    let queries = expand_folders(&a.images)?;
    let gpu = cli.open_gpu()?;
    let which = if a.last { Weights::Last } else { Weights::Best };
    let embedder = Embedder::load_weights(gpu, &a.model, a.batch_size.min(queries.len()), which)?;
    let hits = embedder.search(&index, &queries, a.top_k)?;
    match a.format.as_str() {
        "json" => {
            let v: Vec<serde_json::Value> = queries
                .iter()
                .zip(&hits)
                .map(|(q, h)| {
                    let found: Vec<serde_json::Value> = h
                        .iter()
                        .map(|h| serde_json::json!({"image": h.path, "label": h.label, "distance": h.distance}))
                        .collect();
                    serde_json::json!({"query": q.display().to_string(), "nearest": found})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        "csv" => {
            let mut s = String::from("query,rank,image,label,distance\n");
            for (q, h) in queries.iter().zip(&hits) {
                for (r, h) in h.iter().enumerate() {
                    s += &format!(
                        "{},{},{},{},{}\n",
                        csv_field(&q.display().to_string()),
                        r + 1,
                        csv_field(h.path),
                        csv_field(h.label.unwrap_or("")),
                        h.distance
                    );
                }
            }
            println!("{}", s.trim_end());
        }
        _ => {
            let mut s = String::new();
            for (q, h) in queries.iter().zip(&hits) {
                s += &format!("{}:\n", q.display());
                for (r, h) in h.iter().enumerate() {
                    let label = h.label.map_or(String::new(), |l| format!(" ({l})"));
                    s += &format!("  {}. {}{label}  {:.4}\n", r + 1, h.path, h.distance);
                }
            }
            println!("{}", s.trim_end());
        }
    }
    Ok(())
}
