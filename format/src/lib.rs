//! The formats gen-compile writes and gen-train reads, in one place so both sides agree:
//!
//! - [`contract`]: the `gen.contract` metadata of train / eval / grad graphs (docs/CONTRACT.md),
//! - [`DType`]: ONNX element types and their `TensorProto.DataType` codes,
//! - [`tensor`]: `TensorProto` decoding and encoding, including external data files, with every
//!   size, count and offset read from a file checked before use,
//! - [`fsutil`]: atomic file writes.
//!
//! This crate depends on neither gen-passes nor gen-runtime; both depend on it.

pub mod contract;
mod dtype;
pub mod fsutil;
pub mod tensor;

pub use contract::{Contract, ContractError, GraphKind, StateEntry, StateRole, CONTRACT_KEY};
pub use dtype::{le_to_f64, DType};
pub use fsutil::{write_atomic, write_atomic_with, WriteError};
pub use tensor::{
    decode, encode, Decoded, ExternalPolicy, ExternalWriter, TensorData, TensorError,
};
