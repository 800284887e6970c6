//! gen-runtime: drives a gen-compile `train.onnx` through its contract (docs/CONTRACT.md) on
//! ONNX Runtime, on the CPU or on CUDA. It knows the contract, not the compiler's IR.
//!
//! Layers, bottom up: [`HostTensor`] (host tensors of every ONNX type) and [`Ort`] (the loaded
//! library); [`run_model`] (one-shot runs of any model); [`TrainSession`] / [`EvalSession`] (one
//! step / one evaluation, state kept between steps, on the device); [`Dataset`] and [`BatchStream`]
//! (data); and [`Trainer`], the whole training run behind `gen-train`: run directory, metrics,
//! plots, checkpoints, resume and the exported inference model. See docs/RUNTIME.md.

mod backend;
mod backend_kind;
mod bench;
mod checkpoint;
mod contract;
mod data;
mod device;
mod engine;
mod env;
mod error;
mod eval;
mod export;
mod fsutil;
mod metrics;
mod model;
mod oneshot;
mod plot;
mod profile;
mod rundir;
mod session;
mod stream;
mod tensor;
#[cfg(feature = "tract")]
mod tract_backend;
mod train;

pub use backend::{Backend, OrtBackend, TrainOptions};
pub use backend_kind::{AnyTrainer, BackendKind};
pub use bench::{bench_worker, run_bench, BenchConfig, BenchReport, BenchSide};
pub use checkpoint::Checkpoint;
pub use contract::{Contract, Controls, GraphKind, Outputs, StateEntry, StateRole, CONTRACT_KEY};
pub use data::{Dataset, LabelRule};
pub use device::Device;
pub use engine::{InputSpec, ModelSource, SessionSettings};
pub use env::{find_library, Ort};
pub use error::{BenchError, Result, RuntimeError};
pub use eval::{EvalResult, EvalSession};
pub use export::export_inference;
pub use metrics::{read_records, MetricsLog, MetricsRecord, CSV_COLUMNS};
pub use model::OnnxModel;
pub use oneshot::{run_model, ModelRun, RunModelOptions};
pub use profile::ProviderReport;
pub use session::{StepResult, Tensors, TrainSession, Transfer};
pub use stream::{BatchStream, SplitMix64, StreamPosition, PROBE_STREAM, TRAIN_STREAM};
pub use tensor::{DType, Element, HostTensor};
#[cfg(feature = "tract")]
pub use tract_backend::{run_model_tract, TractBackend};
pub use train::{Driver, Length, Observer, RunStart, Scale, Summary, TrainConfig, Trainer};
