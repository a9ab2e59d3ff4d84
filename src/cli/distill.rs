//! `tailor distill`: one unified embedding model trained to give each image its vertical's
//! specialist embedding (Song et al. 2017), with `train`'s flags and [`crate::run::train`].

use std::path::PathBuf;

use super::common::Printer;
use super::train::TrainArgs;
use crate::error::Result;
use crate::run::{self, Start, Task};

#[derive(clap::Args, Clone, Debug)]
pub struct DistillArgs {
    /// A specialist embedding run (trained with --task embedding on one --vertical); one per
    /// vertical, the flag repeated.
    #[arg(long = "teacher", required = true)]
    pub teachers: Vec<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
}

pub fn run(cli: &super::Cli, a: &DistillArgs) -> Result<()> {
    let start = match a.train.start()? {
        Start::New { mut settings, dir, overwrite } => {
            settings.task = Task::Embedding;
            settings.teachers = a.teachers.clone();
            Start::New { settings, dir, overwrite }
        }
        resume => resume,
    };
    let gpu = cli.open_gpu()?;
    let mut printer = Printer::default();
    run::train(&gpu, &start, &mut |e| printer.event(e)).map(|_| ())
}
