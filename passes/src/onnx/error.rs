//! Why a model could not be imported.

use std::path::PathBuf;

/// Why a model could not be imported. Every variant names the file, node or tensor.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a valid ONNX model (protobuf decoding failed: {error})")]
    Decode {
        path: PathBuf,
        error: protobuf::Error,
    },
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
    #[error(
        "the model imports no opset: every ONNX model must name the opsets (ai.onnx and any \
         other domain) its operators follow"
    )]
    NoOpset,
    #[error(
        "default-domain (ai.onnx) opset {opset} is not supported: gen-compile reads opsets \
         {min} to {max}"
    )]
    Opset { opset: i64, min: i64, max: i64 },
    #[error(
        "graph '{graph}': initializer '{name}' is {actual}, but the graph input of that name \
         is declared {declared}"
    )]
    InitializerMismatch {
        graph: String,
        name: String,
        declared: String,
        actual: String,
    },
    /// A node no valid model has (found by inference: an overflowing size, a list of the
    /// wrong length).
    #[error("graph '{graph}', node {node}: {message}")]
    Invalid {
        graph: String,
        node: String,
        message: String,
    },
    /// Any of the above, in the model file `path`.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ImportError>,
    },
}

impl ImportError {
    /// Adds the file path to errors that do not carry one yet.
    pub fn in_file(self, path: &std::path::Path) -> ImportError {
        match self {
            ImportError::Io { .. }
            | ImportError::Decode { .. }
            | ImportError::Empty { .. }
            | ImportError::NoGraph { .. }
            | ImportError::InFile { .. } => self,
            other => ImportError::InFile {
                path: path.to_path_buf(),
                error: Box::new(other),
            },
        }
    }
}
