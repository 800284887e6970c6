//! The runtime's error type: one enum, each variant naming the file, tensor or setting at fault.

use std::fmt::Display;

use std::path::{Path, PathBuf};

/// How to get the ONNX Runtime library, said wherever it is missing.
const SETUP_HINT: &str = "run scripts/setup.sh (it installs onnxruntime==1.31.1 into .venv), \
                          or point --ort-lib / ORT_DYLIB_PATH at libonnxruntime.so";

/// Everything that can go wrong while loading, running or training a model.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime shared library could be found.
    #[error("ONNX Runtime library: no libonnxruntime.so found in .venv/lib/python3*/site-packages/onnxruntime/capi/ above {searched}; {SETUP_HINT}")]
    OrtNotFound {
        /// The folders searched from, joined with " or ".
        searched: String,
    },
    /// `--ort-lib` or `ORT_DYLIB_PATH` names something that is not a file.
    #[error("ONNX Runtime library: {given_by} names {}, which is not a file; {SETUP_HINT}", path.display())]
    OrtNotAFile {
        /// `--ort-lib` or `ORT_DYLIB_PATH`.
        given_by: &'static str,
        path: PathBuf,
    },
    /// The library could not be loaded or initialised.
    #[error("ONNX Runtime library: cannot load {}: {message}", path.display())]
    OrtLoad { path: PathBuf, message: String },
    /// A second library was asked for after one was loaded into this process.
    #[error("ONNX Runtime library: {} was asked for, but this process already loaded {}", wanted.display(), loaded.display())]
    OrtAlreadyLoaded { wanted: PathBuf, loaded: PathBuf },
    /// ONNX Runtime refused an operation (session creation, a run, a copy).
    #[error("ONNX Runtime, {context}: {message}")]
    Ort { context: String, message: String },
    /// A file could not be read or written. (The io error is part of the message, not a
    /// `source`, which error reporters would print a second time.)
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
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
    /// A stored tensor (initializer) cannot be decoded: bad sizes, counts or external data.
    #[error(transparent)]
    TensorData(#[from] gen_format::TensorError),
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
    /// A count flag given as 0.
    #[error("{flag} must be at least 1")]
    Zero { flag: &'static str },
    /// A flag's value does not fit the graph's integer type.
    #[error("{flag} {value} is too large")]
    TooLarge { flag: &'static str, value: u64 },
    /// `--device` is not cpu, cuda or cuda:N.
    #[error("unknown device `{0}`: expected cpu, cuda or cuda:N")]
    UnknownDevice(String),
    /// The batch size exceeds the number of samples.
    #[error("batch size {batch_size} is larger than the data: {} has {rows} samples", data.display())]
    BatchTooLarge {
        batch_size: usize,
        data: PathBuf,
        rows: usize,
    },
    /// The model's batch dimension is fixed at another size than `--batch-size`.
    #[error("the model's batch dimension is fixed at {fixed}: use --batch-size {fixed}")]
    FixedBatch { fixed: usize },
    /// A resumed run has already done all its steps.
    #[error("nothing to do: the run has done {done} of {total} steps (raise --steps / --epochs to continue)")]
    NothingToDo { done: u64, total: u64 },
    /// An evaluation was asked for without `--eval-data`.
    #[error("no eval data (--eval-data)")]
    NoEvalData,
    /// A flag of ONNX Runtime given to the tract backend.
    #[error("{flag} applies to ONNX Runtime, not to the tract backend")]
    OrtOnly { flag: &'static str },
    /// `--backend tract` in a build without the `tract` cargo feature.
    #[error("--backend tract: this gen-train was built without the tract backend; rebuild it with the `tract` cargo feature: cargo build --release --features tract")]
    TractNotBuilt,
    /// A tensor set (a batch, a probe batch, a new state) lacks a tensor the graph needs.
    #[error("{set} has no tensor `{name}`")]
    MissingTensor { set: &'static str, name: String },
    /// A new state (`set_state`) has a tensor that is no state input of the model.
    #[error("the new state has `{0}`, which is not a state input of the model")]
    NotState(String),
    /// A tensor was fed that the graph has no input for.
    #[error("`{name}` is not an input of the graph {backend} runs (inputs: {})", inputs.join(", "))]
    NotAnInput {
        name: String,
        backend: &'static str,
        inputs: Vec<String>,
    },
    /// A graph input was not fed.
    #[error("graph input `{0}` was not fed")]
    NotFed(String),
    /// A GeN step was run without the probe batch it needs.
    #[error("step {step} runs GeN and needs a probe batch")]
    NeedsProbe { step: u64 },
    /// `gen-train bench` failed.
    #[error("bench: {0}")]
    Bench(BenchError),
    /// ONNX Runtime's Rust bindings panicked on a value they could not describe; caught and reported.
    #[error("ONNX Runtime bindings failed while {context}: {message}")]
    Panic { context: String, message: String },
    /// tract (the `tract` backend) rejected a model or failed to run it.
    #[cfg(feature = "tract")]
    #[error("tract, {context}: {message}")]
    Tract { context: String, message: String },
}

/// Why `gen-train bench` (or one of its worker processes) failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("--steps and --rounds must be at least 1")]
    Zero,
    #[error("cannot start {}: {error}", exe.display())]
    Start { exe: PathBuf, error: std::io::Error },
    #[error("worker pipes unavailable")]
    NoPipes,
    /// Talking to the worker for `model` failed.
    #[error("worker for {}: {error}", model.display())]
    Pipe {
        model: PathBuf,
        error: std::io::Error,
    },
    #[error("worker for {} exited early", model.display())]
    ExitedEarly { model: PathBuf },
    /// The worker reported an error (its message crosses the process boundary as text).
    #[error("{}: {message}", model.display())]
    Worker { model: PathBuf, message: String },
    #[error("worker for {} said {line:?}: {error}", model.display())]
    Garbled {
        model: PathBuf,
        line: String,
        error: serde_json::Error,
    },
    #[error("worker for {} answered {reply}", model.display())]
    Unexpected { model: PathBuf, reply: String },
    #[error("expected two workers")]
    Sides,
    /// The worker side could not read a command or write a reply.
    #[error("worker: {0}")]
    WorkerIo(std::io::Error),
    #[error("worker: cannot encode a reply: {0}")]
    Encode(serde_json::Error),
    #[error("worker: bad command {0:?}")]
    BadCommand(String),
}

impl From<BenchError> for RuntimeError {
    fn from(e: BenchError) -> Self {
        RuntimeError::Bench(e)
    }
}

impl From<gen_format::WriteError> for RuntimeError {
    fn from(e: gen_format::WriteError) -> Self {
        RuntimeError::Io {
            path: e.path,
            error: e.error,
        }
    }
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
    move |error| RuntimeError::Io {
        path: path.to_path_buf(),
        error,
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
