//! gen-passes: the compiler library of gen-compile. The IR (`ir`), ONNX import/export
//! (`onnx`), the pass manager and the passes (`pipeline`), and writing the result (`output`).

pub mod autodiff;
pub mod compile;
pub mod error;
pub mod ir;
pub mod onnx;
pub mod options;
pub mod output;
pub mod pipeline;

pub use compile::{compile, Compiled, Emit};
pub use error::{Error, Result};
pub use options::CompileOptions;
