//! The `tailor` command line.

mod bench;
mod devices;

use clap::{Parser, Subcommand};

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
    /// List every GPU adapter with its compute limits and optional features.
    Devices(devices::Args),
    /// Time training steps of the benchmark workloads (W1, W2) on the device.
    Bench(bench::Args),
}

impl Cli {
    pub fn gpu_options(&self) -> crate::GpuOptions {
        crate::GpuOptions { adapter: self.adapter.clone(), backend: self.backend.clone() }
    }
}

/// Runs the command line; the binary turns an error into a message and exit code 1.
pub fn main() -> crate::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Devices(a) => devices::run(&cli, a),
        Command::Bench(a) => bench::run(&cli, a),
    }
}
