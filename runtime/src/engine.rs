//! One ONNX Runtime session on one device, the single place where models are run.
//!
//! Two ways to run: [`Engine::run_bound`] binds inputs and outputs with an `IoBinding` and decides
//! per output whether it stays in the device's memory (training state: on CUDA it never leaves the
//! GPU, and the next step binds it as an input as is) or comes back to the host (loss, lr, metrics);
//! [`Engine::run_all`] is a plain run returning every output, for one-shot use. The first run is
//! profiled to record which execution provider executed each node.

use std::path::Path;

use ort::memory::MemoryInfo;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, ValueType};

use crate::device::{Device, CUDA_INSTALL_HINT};
use crate::env::Ort;
use crate::error::{ort_err, Result, RuntimeError};
use crate::profile::{profile_prefix, read_profile, ProviderReport};
use crate::tensor::DType;

/// Session settings shared by every engine.
#[derive(Clone, Debug, Default)]
pub struct SessionSettings {
    pub device: Device,
    /// Fail session creation if any node would fall back to the CPU provider (CUDA only).
    pub no_cpu_fallback: bool,
    /// Intra-op threads (ONNX Runtime's default when `None`).
    pub intra_threads: Option<usize>,
}

/// Where a bound output should be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The device's memory: state kept for the next step.
    Device,
    /// Host memory: values the caller reads every step.
    Host,
}

/// A graph input's dtype and shape as ONNX Runtime sees it (`None` = dynamic dimension).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Option<usize>>,
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
            .collect();
        write!(f, "`{}` {} [{}]", self.name, self.dtype, dims.join(", "))
    }
}

pub(crate) struct Engine {
    session: Session,
    device: Device,
    device_memory: MemoryInfo<'static>,
    host_memory: MemoryInfo<'static>,
    providers: Option<ProviderReport>,
}

/// What the engine loads.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
}

impl<'a> From<&'a Path> for ModelSource<'a> {
    fn from(p: &'a Path) -> Self {
        ModelSource::Path(p)
    }
}

impl<'a> From<&'a std::path::PathBuf> for ModelSource<'a> {
    fn from(p: &'a std::path::PathBuf) -> Self {
        ModelSource::Path(p)
    }
}

impl<'a> From<&'a [u8]> for ModelSource<'a> {
    fn from(b: &'a [u8]) -> Self {
        ModelSource::Bytes(b)
    }
}

impl std::fmt::Display for ModelSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelSource::Path(p) => write!(f, "{}", p.display()),
            ModelSource::Bytes(b) => write!(f, "<{} bytes in memory>", b.len()),
        }
    }
}

impl Engine {
    /// Creates the session with all graph optimisations, the device's providers and profiling on.
    pub(crate) fn open(
        ort: &Ort,
        model: ModelSource<'_>,
        settings: &SessionSettings,
    ) -> Result<Engine> {
        let device = settings.device;
        let context = format!("loading {model} on {device}");
        let fail = |e: String| on_device_error(device, &context, e);
        let providers = device.execution_providers(ort)?;
        let mut builder = Session::builder(ort.environment())
            .map_err(|e| fail(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| fail(e.to_string()))?
            .with_profiling(profile_prefix())
            .map_err(|e| fail(e.to_string()))?;
        if let Some(n) = settings.intra_threads {
            builder = builder
                .with_intra_threads(n)
                .map_err(|e| fail(e.to_string()))?;
        }
        if settings.no_cpu_fallback {
            builder = builder
                .with_disable_cpu_fallback()
                .map_err(|e| fail(e.to_string()))?;
        }
        let mut builder = builder
            .with_execution_providers(providers)
            .map_err(|e| fail(e.to_string()))?;
        let session = match model {
            ModelSource::Path(p) => builder.commit_from_file(p),
            ModelSource::Bytes(b) => builder.commit_from_memory(b),
        }
        .map_err(|e| fail(e.to_string()))?;
        Ok(Engine {
            session,
            device,
            device_memory: device.state_memory()?,
            host_memory: device.host_memory()?,
            providers: None,
        })
    }

    pub(crate) fn device(&self) -> Device {
        self.device
    }

    /// The providers that executed the first run's nodes (`None` before the first run).
    pub(crate) fn providers(&self) -> Option<&ProviderReport> {
        self.providers.as_ref()
    }

    /// Tensor inputs' dtypes and shapes.
    pub(crate) fn input_specs(&self) -> Vec<InputSpec> {
        self.session
            .inputs()
            .iter()
            .filter_map(|i| match i.dtype() {
                ValueType::Tensor { ty, shape, .. } => Some(InputSpec {
                    name: i.name().to_string(),
                    dtype: crate::tensor::from_ort(*ty)?,
                    shape: shape.iter().map(|&d| usize::try_from(d).ok()).collect(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Runs with `inputs` bound as they are (host values are copied to the device by ONNX Runtime,
    /// device values are used in place) and returns `outputs` in order, each in the memory its
    /// placement names.
    pub(crate) fn run_bound(
        &mut self,
        inputs: &[(&str, &DynValue)],
        outputs: &[(&str, Placement)],
    ) -> Result<Vec<DynValue>> {
        let mut binding = self
            .session
            .create_binding()
            .map_err(ort_err("creating an IoBinding"))?;
        for (name, value) in inputs {
            binding
                .bind_input(*name, *value)
                .map_err(ort_err(format!("binding input `{name}`")))?;
        }
        for (name, placement) in outputs {
            let memory = match placement {
                Placement::Device => &self.device_memory,
                Placement::Host => &self.host_memory,
            };
            binding
                .bind_output_to_device(*name, memory)
                .map_err(ort_err(format!("binding output `{name}`")))?;
        }
        let values = {
            let mut produced = self
                .session
                .run_binding(&binding)
                .map_err(ort_err("running the model"))?;
            outputs
                .iter()
                .map(|(name, _)| {
                    produced.remove(*name).ok_or_else(|| RuntimeError::Ort {
                        context: "running the model".into(),
                        message: format!("output `{name}` was not produced"),
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        self.finish_profiling()?;
        Ok(values)
    }

    /// Runs with named host inputs and returns every graph output, in graph order.
    pub(crate) fn run_all(
        &mut self,
        inputs: Vec<(String, DynValue)>,
    ) -> Result<Vec<(String, DynValue)>> {
        let feeds: Vec<(String, SessionInputValue<'_>)> =
            inputs.into_iter().map(|(n, v)| (n, v.into())).collect();
        let outputs = {
            let produced = self
                .session
                .run(feeds)
                .map_err(ort_err("running the model"))?;
            produced
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect()
        };
        self.finish_profiling()?;
        Ok(outputs)
    }

    /// After the first run: end profiling and record the providers.
    fn finish_profiling(&mut self) -> Result<()> {
        if self.providers.is_none() {
            let file = self
                .session
                .end_profiling()
                .map_err(ort_err("ending the profile"))?;
            self.providers = Some(read_profile(Path::new(&file))?);
        }
        Ok(())
    }
}

/// Session errors on CUDA usually mean a missing driver or library: say what to install.
fn on_device_error(device: Device, context: &str, message: String) -> RuntimeError {
    if device.is_cuda() {
        RuntimeError::Device {
            device: device.to_string(),
            message: format!("{context}: {}. {CUDA_INSTALL_HINT}", message.trim_end()),
        }
    } else {
        RuntimeError::Ort {
            context: context.to_string(),
            message: message.trim_end().to_string(),
        }
    }
}
