//! `run_model`: one run of any ONNX model on the CPU execution provider, all graph optimisations
//! on, for round-trip and parity checks (the compiler's tests run the ONNX backend corpus with it).

use std::path::PathBuf;

use crate::engine::{Engine, ModelSource, SessionSettings};
use crate::env::Ort;
use crate::error::{panic_message, Result, RuntimeError};
use crate::profile::ProviderReport;
use crate::tensor::HostTensor;

/// Settings of a one-shot run.
#[derive(Clone, Debug, Default)]
pub struct RunModelOptions {
    /// ONNX Runtime library (else the usual search, see [`crate::find_library`]).
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads (ONNX Runtime's default when `None`).
    pub intra_threads: Option<usize>,
}

/// The outputs of a one-shot run, in graph order, and the providers that executed it.
#[derive(Clone, Debug)]
pub struct ModelRun {
    pub outputs: Vec<(String, HostTensor)>,
    pub providers: ProviderReport,
}

/// Runs `model` once with `inputs` (by graph input name; inputs with initializers may be left out).
///
/// Every failure is an error, never a panic: a model ONNX Runtime rejects, a missing or mistyped
/// input, an output that is not a tensor ([`RuntimeError::NonTensorOutput`], e.g. a sequence or an
/// empty optional), or a value the `ort` bindings cannot describe (caught and reported as
/// [`RuntimeError::Panic`]).
pub fn run_model<'a>(
    model: impl Into<ModelSource<'a>>,
    inputs: &[(String, HostTensor)],
    options: &RunModelOptions,
) -> Result<ModelRun> {
    let model = model.into();
    let ort = Ort::load(options.ort_lib.as_deref())?;
    let context = format!("running {model}");
    // The `ort` bindings `expect` on a few conditions that unusual models can reach (values whose
    // type ONNX Runtime cannot report); turn such a panic into an error for this model.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&ort, model, inputs, options)
    }))
    .unwrap_or_else(|payload| {
        Err(RuntimeError::Panic {
            context,
            message: panic_message(payload.as_ref()),
        })
    })
}

fn run(
    ort: &Ort,
    model: ModelSource<'_>,
    inputs: &[(String, HostTensor)],
    options: &RunModelOptions,
) -> Result<ModelRun> {
    let settings = SessionSettings {
        intra_threads: options.intra_threads,
        ..SessionSettings::default()
    };
    let mut engine = Engine::open(ort, model, &settings)?;
    let feeds = inputs
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_ort(ort)?)))
        .collect::<Result<Vec<_>>>()?;
    let produced = engine.run_all(feeds)?;
    let outputs = produced
        .iter()
        .map(|(name, value)| Ok((name.clone(), HostTensor::from_ort(name, value)?)))
        .collect::<Result<Vec<_>>>()?;
    let providers = engine.providers().cloned().unwrap_or_default();
    Ok(ModelRun { outputs, providers })
}
