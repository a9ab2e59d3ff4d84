//! The `tailor` command line.

mod bench;
mod common;
mod compare;
mod devices;
mod distill;
mod embed;
mod eval;
mod predict;
mod train;
mod weights;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tailor",
    version,
    about = "Train DenseNet classifiers with class-balanced losses on any Vulkan/Metal/DX12 GPU"
)]
pub struct Cli {
    /// Use the first adapter whose name contains this (see `tailor devices`).
    #[arg(long, global = true, env = "TAILOR_ADAPTER")]
    pub adapter: Option<String>,
    /// Restrict to one backend: vulkan, metal, dx12 or gl.
    #[arg(long, global = true, env = "TAILOR_BACKEND")]
    pub backend: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// List every GPU adapter with its compute limits and optional features, and whether tailor
    /// can train on it.
    Devices(devices::Args),
    /// Time training steps of the benchmark workloads (W1, W2) on the device.
    Bench(bench::Args),
    /// Train a DenseNet classifier or embedding model on a CSV or IDX dataset, evaluating after
    /// every epoch.
    Train(Box<train::TrainArgs>),
    /// Evaluate a trained run: per-label AP, thresholds, PR curves, confusion matrix.
    Eval(eval::EvalArgs),
    /// Label image files with a trained run or a torchvision state dict.
    Predict(predict::PredictArgs),
    /// Distil one unified embedding model from specialist embedding runs, one per vertical.
    Distill(Box<distill::DistillArgs>),
    /// Embed a catalogue's images with an embedding run into a search index.
    Embed(embed::EmbedArgs),
    /// The nearest images of an index to each query photo.
    Search(embed::SearchArgs),
    /// Effective numbers and NW/IFW/IEW class weights for label counts.
    Weights(weights::WeightsArgs),
    /// Train NW, IFW and IEW on the same split and print the paper's Table I.
    Compare(Box<train::TrainArgs>),
}

impl Cli {
    pub fn gpu_options(&self) -> crate::GpuOptions {
        crate::GpuOptions { adapter: self.adapter.clone(), backend: self.backend.clone() }
    }

    /// Opens the device the options choose, with lavapipe's pipeline compilation shown as
    /// progress on stderr ([`common::show_precompile`]).
    pub fn open_gpu(&self) -> crate::Result<std::sync::Arc<crate::Gpu>> {
        let gpu = crate::Gpu::with_options(&self.gpu_options())?;
        common::show_precompile(&gpu);
        Ok(gpu)
    }
}

impl Cli {
    /// Parses the process's arguments. Every option's value may be a negative number, so that
    /// `--beta -0.5` reaches tailor's own check of the value ("must be in [0, 1)") and
    /// `--batch-size -8` clap's "invalid value", instead of clap's "unexpected argument '-0'".
    /// (Not `allow_hyphen_values`: that would take a forgotten value's next flag as the value.)
    fn parse_args() -> Cli {
        let args = join_negative_values(std::env::args_os().collect());
        let matches = allow_negative_numbers(Cli::command()).get_matches_from(args);
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit())
    }
}

/// `--flag -1e-4` as `--flag=-1e-4`: clap's idea of a negative number has no negative exponent
/// (nor `-.5`), so it would take `-1e-4` for short flags and stop at "unexpected argument '-1'".
/// Only a value that Rust reads as a finite number is joined, only to a long option written
/// without `=`, and nothing after `--`.
fn join_negative_values(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = Vec::with_capacity(args.len());
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or("");
        let negative_number = |v: &std::ffi::OsString| {
            v.to_str().is_some_and(|v| v.starts_with('-') && v.parse::<f64>().is_ok_and(f64::is_finite))
        };
        if text == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        let long_without_value = text.len() > 2 && text.starts_with("--") && !text.contains('=');
        match iter.peek() {
            Some(next) if long_without_value && negative_number(next) => {
                let mut joined = arg.clone();
                joined.push("=");
                joined.push(iter.next().expect("peeked"));
                out.push(joined);
            }
            _ => out.push(arg),
        }
    }
    out
}

fn allow_negative_numbers(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| if a.get_action().takes_values() { a.allow_negative_numbers(true) } else { a })
        .mut_subcommands(allow_negative_numbers)
}

/// Runs the command line; the binary turns an error into a message and exit code 1.
pub fn main() -> crate::Result<()> {
    // The library names settings as run-configuration fields; here they are flags.
    crate::setting::name_settings_as(crate::setting::Naming::Flags);
    let cli = Cli::parse_args();
    match &cli.command {
        Command::Devices(a) => devices::run(&cli, a),
        Command::Bench(a) => bench::run(&cli, a),
        Command::Train(a) => train::run(&cli, a),
        Command::Eval(a) => eval::run(&cli, a),
        Command::Predict(a) => predict::run(&cli, a),
        Command::Weights(a) => weights::run(a),
        Command::Distill(a) => distill::run(&cli, a),
        Command::Embed(a) => embed::embed(&cli, a),
        Command::Search(a) => embed::search(&cli, a),
        Command::Compare(a) => compare::run(&cli, a),
    }
}

#[cfg(test)]
mod tests {
    use super::join_negative_values;

    fn join(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(std::ffi::OsString::from).collect();
        join_negative_values(args).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn negative_values_with_exponents_are_joined_to_their_option() {
        assert_eq!(join(&["t", "train", "--weight-decay", "-1e-4"]), ["t", "train", "--weight-decay=-1e-4"]);
        assert_eq!(join(&["t", "--beta", "-.5", "--lr", "1e-3"]), ["t", "--beta=-.5", "--lr", "1e-3"]);
        // Already joined, a flag after a flag, words that are not numbers, after `--`: untouched.
        assert_eq!(join(&["t", "--lr=-1", "--json", "--x"]), ["t", "--lr=-1", "--json", "--x"]);
        assert_eq!(join(&["t", "--out", "-inf", "--name", "-nan"]), ["t", "--out", "-inf", "--name", "-nan"]);
        assert_eq!(join(&["t", "--", "--lr", "-1e-4"]), ["t", "--", "--lr", "-1e-4"]);
    }
}
