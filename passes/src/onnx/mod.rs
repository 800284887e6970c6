//! ONNX import and export (ModelProto ⇄ IR), with our own tensor codec and external data.

mod export;
mod import;
pub mod tensor;

pub use export::{save, to_bytes, to_proto, ExportError, ExportOptions, ExternalData};
pub use import::{from_bytes, import_model, load, load_with, LoadOptions};

use std::path::PathBuf;

/// Why a model could not be imported. Every variant names the file, node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a valid ONNX model (protobuf decoding failed: {message})")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: model has no graph")]
    NoGraph { path: PathBuf },
    /// A tensor (initializer or attribute) that cannot be decoded; names the tensor and file.
    #[error(transparent)]
    Tensor(#[from] gen_format::TensorError),
    #[error("graph '{graph}', node {node}: input '{input}' is not produced by any node, graph input or initializer")]
    UndefinedInput {
        graph: String,
        node: String,
        input: String,
    },
    #[error("graph '{graph}': output '{output}' is not produced by any node, graph input or initializer")]
    UndefinedOutput { graph: String, output: String },
    #[error("graph '{graph}': value '{name}' is defined more than once")]
    Duplicate { graph: String, name: String },
    #[error("graph '{graph}': the nodes form a cycle through {nodes}")]
    Cycle { graph: String, nodes: String },
    #[error("graph '{graph}', node {node}, attribute '{attr}': {message}")]
    Attribute {
        graph: String,
        node: String,
        attr: String,
        message: String,
    },
    #[error("graph '{graph}': {message}")]
    Unsupported { graph: String, message: String },
}

impl ImportError {
    /// Adds the file path to errors that do not carry one yet.
    pub fn in_file(self, path: &std::path::Path) -> ImportError {
        match self {
            ImportError::Io { .. }
            | ImportError::Decode { .. }
            | ImportError::Empty { .. }
            | ImportError::NoGraph { .. } => self,
            other => ImportError::Io {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        }
    }
}
