//! ONNX import and export (ModelProto ⇄ IR), with our own tensor codec and external data.

mod error;
mod export;
mod import;
pub mod tensor;

pub use error::ImportError;
pub use export::{data_path, save, to_bytes, to_proto, ExportError, ExportOptions, ExternalData};
pub use import::{from_bytes, import_model, load, load_with, LoadOptions, MAX_OPSET, MIN_OPSET};
