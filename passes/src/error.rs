//! The library's error type. Each stage has its own typed error (import, export, verify,
//! autodiff, ...); this enum is what the library's entry points return.

use crate::ir::verify::VerifyError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Import(#[from] crate::onnx::ImportError),
    #[error(transparent)]
    Export(#[from] crate::onnx::ExportError),
    /// A setting outside its range (checked before any pass runs).
    #[error(transparent)]
    Options(#[from] crate::options::OptionsError),
    /// An IR dump of `--dump-dir` could not be written.
    #[error("--dump-dir: cannot write {}: {error}", path.display())]
    DumpDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The IR is invalid after a pass (or after import).
    #[error("invalid IR after {after}: {error}")]
    Verify { after: String, error: VerifyError },
    /// A stage's own typed error (loss, autodiff, optimizer, GeN, ...). Its message is part
    /// of this one (not a separate `source`, which error reporters would print twice).
    #[error("{stage}: {error}")]
    Stage {
        stage: &'static str,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps a stage's typed error.
    pub fn stage(stage: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Stage {
            stage,
            error: Box::new(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
