//! One error type for the whole crate: every failure a user can cause or meet comes back as a
//! `tailor::Error` with a message that names the thing and the fix, never as a panic.

use std::path::PathBuf;

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
    /// A search index that cannot be used as it is; `path` is its file when it has one.
    #[error("{}{problem}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Index { path: Option<PathBuf>, problem: crate::search::IndexError },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn shape(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Shape { op: op.into(), msg: msg.into() }
    }
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File { path: path.into(), msg: msg.to_string() }
    }
}
