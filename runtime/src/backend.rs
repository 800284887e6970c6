//! The seam between the contract logic ([`crate::TrainSession`], [`crate::EvalSession`],
//! [`crate::Trainer`]) and the library that runs the graphs: ONNX Runtime ([`OrtBackend`], always
//! built) or tract (`TractBackend`, cargo feature `tract`). A backend opens a graph, converts
//! tensors between the host and its own values, and runs the graph with named inputs; feeding the
//! contract's inputs, carrying the state and reading the reported outputs happen above it, once
//! for every backend.

use std::path::{Path, PathBuf};

use ort::memory::AllocationDevice;
use ort::value::{DynTensorValueType, DynValue, ValueType};

use crate::engine::{Engine, InputSpec, Placement, SessionSettings};
use crate::env::Ort;
use crate::error::{ort_err, Result, RuntimeError};
use crate::profile::ProviderReport;
use crate::tensor::{describe_value_type, DType, HostTensor};

/// How to open a train graph: the backend's library and session settings, and what the
/// session above it feeds (`lazy_freq`). Defined here, below the sessions, because opening is
/// the backend's job.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub session: SessionSettings,
    /// ONNX Runtime library (else the usual search, see [`crate::find_library`]).
    pub ort_lib: Option<PathBuf>,
    /// Override the graph's `lazy_freq` (fed to `controls.lazy_freq`).
    pub lazy_freq: Option<u64>,
}

/// A library that runs train and eval graphs: [`OrtBackend`], or `TractBackend` with the cargo
/// feature `tract`. Sealed: its operations are internal to gen-runtime.
pub trait Backend: sealed::Run {}

pub(crate) mod sealed {
    use super::*;

    /// What the sessions need of a backend.
    pub trait Run: Sized {
        /// A tensor as the backend holds it between runs (possibly in device memory).
        type Value;
        /// Opens the train graph at `path`; `fed` names the graph inputs every run feeds (the
        /// others keep their initializers).
        fn open(path: &Path, options: &TrainOptions, fed: &[&str]) -> Result<Self>;
        /// Opens another graph (the eval companion) with this backend's library and device.
        fn open_beside(
            &self,
            path: &Path,
            settings: &SessionSettings,
            fed: &[&str],
        ) -> Result<Self>;
        fn upload(&self, tensor: &HostTensor) -> Result<Self::Value>;
        /// A host copy of a value; `name` labels errors.
        fn to_host(&self, name: &str, value: &Self::Value) -> Result<HostTensor>;
        /// dtype and shape of a value, without copying it.
        fn signature(&self, name: &str, value: &Self::Value) -> Result<(DType, Vec<usize>)>;
        /// Runs the graph and returns `outputs` in order, each where its placement says.
        fn run(
            &mut self,
            inputs: &[(&str, &Self::Value)],
            outputs: &[(&str, Placement)],
        ) -> Result<Vec<Self::Value>>;
        /// Tensor inputs' dtypes and shapes.
        fn input_specs(&self) -> Vec<InputSpec>;
        /// What executed the graph (`None` before the first run).
        fn providers(&self) -> Option<&ProviderReport>;
        /// Bytes a value moves between host and device memory (0 when nothing moves).
        fn transferred_bytes(&self, value: &Self::Value) -> usize;
    }
}

/// ONNX Runtime, on the CPU or on CUDA: state values stay ONNX Runtime values in the device's
/// memory between steps.
pub struct OrtBackend {
    ort: Ort,
    engine: Engine,
}

impl Backend for OrtBackend {}

impl sealed::Run for OrtBackend {
    type Value = DynValue;

    fn open(path: &Path, options: &TrainOptions, _fed: &[&str]) -> Result<Self> {
        let ort = Ort::load(options.ort_lib.as_deref())?;
        let engine = Engine::open(&ort, path.into(), &options.session)?;
        Ok(OrtBackend { ort, engine })
    }

    fn open_beside(&self, path: &Path, settings: &SessionSettings, _fed: &[&str]) -> Result<Self> {
        let engine = Engine::open(&self.ort, path.into(), settings)?;
        Ok(OrtBackend {
            ort: self.ort.clone(),
            engine,
        })
    }

    fn upload(&self, tensor: &HostTensor) -> Result<DynValue> {
        tensor.to_ort(&self.ort)
    }

    fn to_host(&self, name: &str, value: &DynValue) -> Result<HostTensor> {
        copy_to_host(name, value)
    }

    fn signature(&self, name: &str, value: &DynValue) -> Result<(DType, Vec<usize>)> {
        match value.dtype() {
            ValueType::Tensor { ty, shape, .. } => Ok((
                crate::tensor::from_ort(*ty).ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: format!("unsupported element type {ty}"),
                })?,
                shape.iter().map(|&d| d.max(0) as usize).collect(),
            )),
            other => Err(RuntimeError::NonTensorOutput {
                name: name.to_string(),
                kind: describe_value_type(other),
            }),
        }
    }

    fn run(
        &mut self,
        inputs: &[(&str, &DynValue)],
        outputs: &[(&str, Placement)],
    ) -> Result<Vec<DynValue>> {
        self.engine.run_bound(inputs, outputs)
    }

    fn input_specs(&self) -> Vec<InputSpec> {
        self.engine.input_specs()
    }

    fn providers(&self) -> Option<&ProviderReport> {
        self.engine.providers()
    }

    /// Bytes of a value in host memory, when the engine runs on CUDA (they cross to the device or
    /// came back from it); 0 on the CPU and for values already in device memory.
    fn transferred_bytes(&self, value: &DynValue) -> usize {
        if !self.engine.device().is_cuda() {
            return 0;
        }
        let on_host = value
            .view()
            .downcast::<DynTensorValueType>()
            .map(|t| t.memory_info().is_cpu_accessible())
            .unwrap_or(false);
        if !on_host {
            return 0;
        }
        match value.dtype() {
            ValueType::Tensor { ty, shape, .. } => ty.byte_size(shape.num_elements()).unwrap_or(0),
            _ => 0,
        }
    }
}

/// A host copy of a tensor value, copying from device memory when needed.
fn copy_to_host(name: &str, v: &DynValue) -> Result<HostTensor> {
    let tensor = v
        .view()
        .downcast::<DynTensorValueType>()
        .map_err(ort_err(format!("reading `{name}`")))?;
    if tensor.memory_info().is_cpu_accessible() {
        return HostTensor::from_ort(name, v);
    }
    let host = tensor
        .to(AllocationDevice::CPU, 0)
        .map_err(ort_err(format!("copying `{name}` to the host")))?;
    HostTensor::from_ort(name, &host.into_dyn())
}
