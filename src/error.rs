//! One error type for the whole crate: every failure a user can cause or meet comes back as a
//! `tailor::Error` with a message that names the thing and the fix, never as a panic.

use std::path::PathBuf;

use crate::setting::Setting;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found{0}; install a Vulkan driver (on Debian: scripts/install-lavapipe.sh installs Mesa's lavapipe) or set TAILOR_BACKEND")]
    NoAdapter(String),
    #[error("could not open the device on adapter '{adapter}': {msg}")]
    RequestDevice { adapter: String, msg: String },
    #[error("GPU validation error in {what}: {msg}")]
    Validation { what: String, msg: String },
    #[error("the GPU ran out of memory while creating {what}; use a smaller batch size or model")]
    OutOfMemory { what: String },
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    /// `tensor` says what: "tensor 'x'", "one image of tensor 'x'", …
    #[error("{tensor} needs {bytes} bytes but this device binds at most {limit} bytes per storage buffer (max_storage_buffer_binding_size); use a smaller batch size or image size")]
    TooLarge { tensor: String, bytes: u64, limit: u64 },
    #[error("tensor '{tensor}' needs {bytes} bytes but this device's buffers hold at most {limit} bytes (max_buffer_size); use a smaller batch size or image size")]
    BufferTooLarge { tensor: String, bytes: u64, limit: u64 },
    #[error("shape error in {op}: {msg}")]
    Shape { op: String, msg: String },
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
    /// A setting whose value cannot work, whatever the data: `fix` says what to give instead.
    #[error("{setting} {value}: {fix}")]
    Setting { setting: Setting, value: String, fix: String },
    /// A training step's loss was not finite.
    #[error("the loss became {value} at step {step}: lower the learning rate ({lr}) or check the data for bad values", lr = Setting::Lr)]
    NonFiniteLoss { step: u64, value: f32 },
    /// The replicas of a run on several devices no longer hold the same weights.
    #[error("the replicas on the {} devices hold different weights (checksums {}): their devices compute differently; train on one device, or on devices of one model", .checksums.len(), .checksums.iter().map(|c| format!("{c:016x}")).collect::<Vec<_>>().join(", "))]
    ReplicasDiverged { checksums: Vec<u64> },
    /// The model's output for a sample is not finite: its weights diverged.
    #[error("the model's output for sample {sample} is {value} (the weights diverged); lower the learning rate ({lr}) or check the data", lr = Setting::Lr)]
    Diverged { sample: usize, value: f32 },
    /// Training stopped in (`during`) or right after epoch `epoch` (1-based); the run folder
    /// keeps the checkpoint of the epoch before.
    #[error("training stopped {} epoch {epoch}: {cause}; the checkpoint of the previous epoch (if any) is unchanged", if *.during { "in" } else { "after" })]
    Stopped { epoch: usize, during: bool, cause: Box<Error> },
    /// The model or a step does not fit the device (`cause`: the planner's or allocator's error).
    #[error("the model does not fit on this device: {cause}{}", fit_hint(cause))]
    DoesNotFit { cause: Box<Error> },
    /// A new run into a folder that holds a whole run.
    #[error("{}: already holds a run; continue it with {} {}, replace it with {}, or give another {}", .dir.display(), Setting::Resume, .dir.display(), Setting::Overwrite, Setting::Out)]
    RunExists { dir: PathBuf },
    /// A folder with some of a run's files but no config.json: a run stopped before its first
    /// checkpoint was complete.
    #[error("{}: holds files of a run but no config.json (a run stopped before its first checkpoint was complete), so it cannot be resumed; replace them with {}, or give another {}", .dir.display(), Setting::Overwrite, Setting::Out)]
    RunIncomplete { dir: PathBuf },
    /// A folder that holds no run to open: what it holds instead.
    #[error("{}: {}", .dir.display(), no_run(.dir, *.holds))]
    NoRun { dir: PathBuf, holds: NotARun },
    /// A run's config.json of a schema version this tailor does not know.
    #[error("{}: run configuration schema {found}, but this tailor reads schema 1 to {known}; open the run with the tailor that wrote it, or a newer one", .path.display())]
    UnknownSchema { path: PathBuf, found: String, known: u32 },
    /// A checkpoint whose files are of different epochs (a save was interrupted).
    #[error("{}: its checkpoint files are from different epochs (model.safetensors {}, optimizer.safetensors {}, config.json after epoch {config}): a save was interrupted, so the run cannot continue exactly; start it again with {} {} {}", .dir.display(), at_epoch(*.model), at_epoch(*.optimizer), Setting::Out, .dir.display(), Setting::Overwrite)]
    CheckpointEpochs { dir: PathBuf, model: Option<usize>, optimizer: Option<usize>, config: usize },
    /// Epoch `epoch`'s checkpoint could not be written; the folder keeps epoch `kept`'s.
    #[error("{cause}; epoch {epoch}'s checkpoint was not saved, and {}", kept_text(*.kept, .dir))]
    CheckpointNotSaved { epoch: usize, kept: usize, dir: PathBuf, cause: Box<Error> },
    /// A resumed run given other data than it started with.
    #[error("{}: {} now gives {change}; resume with the same data", .config.display(), .data.display())]
    DataChanged { config: PathBuf, data: PathBuf, change: DataChange },
    /// A search index that cannot be used as it is; `path` is its file when it has one.
    #[error("{}{problem}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Index { path: Option<PathBuf>, problem: crate::search::IndexError },
}

/// What a folder given as a run holds instead of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotARun {
    /// Nothing of a run (a run stopped during its first epoch leaves only its folder).
    Nothing,
    /// model.safetensors without config.json.
    WeightsOnly,
    /// Images: a folder meant for the images, given as the run.
    Images,
}

/// How a resumed run's data differs from what it started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataChange {
    Labels,
    Counts {
        train: usize,
        val: usize,
        was_train: usize,
        was_val: usize,
    },
    /// The same counts, but other image names or labels in the split.
    Samples,
}

impl std::fmt::Display for DataChange {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DataChange::Labels => f.write_str("other labels than when this run started"),
            DataChange::Counts { train, val, was_train, was_val } => write!(
                f,
                "{train} training and {val} validation samples, but the run started with {was_train} and {was_val}"
            ),
            DataChange::Samples => f.write_str(
                "other images or labels than when this run started (the same counts, but other image names or \
                 labels in its split)",
            ),
        }
    }
}

fn fit_hint(cause: &Error) -> String {
    match cause {
        Error::OutOfMemory { .. } => {
            format!(" (try {}, {} or a smaller {})", Setting::BatchSize, Setting::ImageSize, Setting::Arch)
        }
        _ => String::new(),
    }
}

fn no_run(dir: &std::path::Path, holds: NotARun) -> String {
    if holds == NotARun::Images {
        return format!(
            "holds images but no tailor run (no config.json): give {} a run folder written by tailor train, and \
             the images to tag after the flags",
            Setting::Model
        );
    }
    if holds == NotARun::WeightsOnly {
        format!(
            "holds model.safetensors but no config.json, so it is not a whole tailor run (a run stopped before its \
             first checkpoint was complete, or weights copied here): nothing to resume or evaluate; train again with \
             {} {} {}, or give the weights to predict with {}",
            Setting::Out,
            dir.display(),
            Setting::Overwrite,
            Setting::Weights
        )
    } else {
        // A run writes config.json with its first epoch's checkpoint: a run stopped before that
        // leaves only its folder.
        format!(
            "holds no tailor run (no config.json, which tailor train writes when a run's first epoch ends): a run \
             stopped during its first epoch left nothing to load or resume, so train again with {} on this folder",
            Setting::Out
        )
    }
}

fn at_epoch(e: Option<usize>) -> String {
    e.map_or("of an unknown epoch".to_string(), |e| format!("after epoch {e}"))
}

fn kept_text(kept: usize, dir: &std::path::Path) -> String {
    if kept == 0 {
        "the folder holds no finished epoch yet".to_string()
    } else {
        format!(
            "the folder still holds the whole checkpoint after epoch {kept}: make room and continue with {} {}",
            Setting::Resume,
            dir.display()
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), msg: msg.into() }
    }
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File { path: path.into(), msg: msg.to_string() }
    }
    pub fn setting(setting: Setting, value: impl std::fmt::Display, fix: impl Into<String>) -> Self {
        Error::Setting { setting, value: value.to_string(), fix: fix.into() }
    }

    /// Planner and allocation errors as "the model does not fit on this device"; others as
    /// they are.
    pub fn fit_hint(self) -> Self {
        match self {
            Error::TooLarge { .. } | Error::BufferTooLarge { .. } | Error::OutOfMemory { .. } => {
                Error::DoesNotFit { cause: Box::new(self) }
            }
            e => e,
        }
    }

    /// The error that stopped training, under the [`Error::Stopped`] and
    /// [`Error::CheckpointNotSaved`] that say when.
    pub fn root(&self) -> &Error {
        match self {
            Error::Stopped { cause, .. } | Error::CheckpointNotSaved { cause, .. } => cause.root(),
            e => e,
        }
    }
}
