//! The runtime's error type: one enum, each variant naming the file, tensor or setting at fault.

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while loading, running or training a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime shared library could be found or loaded.
    #[error("ONNX Runtime library: {0}")]
    OrtLibrary(String),
    /// ONNX Runtime refused an operation (session creation, a run, a copy).
    #[error("ONNX Runtime, {context}: {message}")]
    Ort { context: String, message: String },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is not a readable ONNX model, or a model lacks something the runtime needs.
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// The `gen.contract` metadata is missing, malformed or does not match the graph.
    #[error("{}: {message}", path.display())]
    Contract { path: PathBuf, message: String },
    /// A tensor has the wrong dtype, shape or byte length for what was asked of it.
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    /// A data file (`.npz` / `.npy`) is unreadable or does not fit the model.
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },
    /// A model output is not a tensor (a sequence, map or empty optional).
    #[error("output `{name}` is {kind}, not a tensor: run_model returns tensors only")]
    NonTensorOutput { name: String, kind: String },
    /// The requested execution device cannot be used.
    #[error("device {device}: {message}")]
    Device { device: String, message: String },
    /// A checkpoint is unreadable or does not belong to this model.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },
    /// A step produced a non-finite loss or state; nothing of it was kept.
    #[error("training diverged at step {step}: {cause}; {}", kept(.checkpoint))]
    Diverged {
        /// The step (1-based, as in metrics.jsonl) whose loss or result is not finite.
        step: u64,
        cause: String,
        /// Steps done by the last checkpoint written, if any.
        checkpoint: Option<u64>,
    },
    /// A run directory cannot be used (not writable, not empty without --resume, ...).
    #[error("run directory {}: {message}", path.display())]
    RunDir { path: PathBuf, message: String },
    /// Settings that cannot work together (batch size larger than the data, zero steps, ...).
    #[error("{0}")]
    Config(String),
    /// ONNX Runtime's Rust bindings panicked on a value they could not describe; caught and reported.
    #[error("ONNX Runtime bindings failed while {context}: {message}")]
    Panic { context: String, message: String },
    /// tract (the `tract` backend) rejected a model or failed to run it.
    #[cfg(feature = "tract")]
    #[error("tract, {context}: {message}")]
    Tract { context: String, message: String },
}

fn kept(checkpoint: &Option<u64>) -> String {
    match checkpoint {
        Some(step) => format!(
            "the run directory keeps the last good checkpoint (step {step}); no model.onnx was written"
        ),
        None => "no checkpoint had been written and no model.onnx was written".into(),
    }
}

/// `Result` with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Maps an ONNX Runtime error (any `Display`) into [`RuntimeError::Ort`] with a context phrase.
pub(crate) fn ort_err<E: Display>(context: impl Into<String>) -> impl FnOnce(E) -> RuntimeError {
    let context = context.into();
    move |e| RuntimeError::Ort {
        context,
        message: e.to_string().trim_end().to_string(),
    }
}

/// Maps an `io::Error` into [`RuntimeError::Io`] for `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The message of a caught panic (`String` and `&str` payloads; anything else is "unknown panic").
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
