//! The backend chosen at run time (`gen-train --backend`), and a [`Trainer`] on it.

use std::sync::atomic::AtomicBool;

use crate::backend::OrtBackend;
use crate::error::Result;
use crate::train::{Observer, Summary, TrainConfig, Trainer};

/// Which library runs the graphs: `Ort` ONNX Runtime (CPU or CUDA), `Tract` tract (pure Rust,
/// CPU only; needs the `tract` cargo feature). (Documented here, not per variant, which clap
/// would list in `--help`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BackendKind {
    #[default]
    Ort,
    Tract,
}

/// A [`Trainer`] on the backend chosen at run time.
pub enum AnyTrainer {
    Ort(Box<Trainer<OrtBackend>>),
    #[cfg(feature = "tract")]
    Tract(Box<Trainer<crate::tract_backend::TractBackend>>),
}

impl AnyTrainer {
    /// [`Trainer::with_backend`] on `kind`; [`RuntimeError::TractNotBuilt`] for tract in a
    /// build without it.
    pub fn new(kind: BackendKind, config: TrainConfig) -> Result<AnyTrainer> {
        match kind {
            BackendKind::Ort => Ok(AnyTrainer::Ort(Box::new(Trainer::with_backend(config)?))),
            #[cfg(feature = "tract")]
            BackendKind::Tract => Ok(AnyTrainer::Tract(Box::new(Trainer::with_backend(config)?))),
            #[cfg(not(feature = "tract"))]
            BackendKind::Tract => Err(crate::error::RuntimeError::TractNotBuilt),
        }
    }

    /// [`Trainer::run`].
    pub fn run(&mut self, observer: &mut dyn Observer, stop: &AtomicBool) -> Result<Summary> {
        match self {
            AnyTrainer::Ort(t) => t.run(observer, stop),
            #[cfg(feature = "tract")]
            AnyTrainer::Tract(t) => t.run(observer, stop),
        }
    }
}
