//! The compiler's intermediate representation.

mod builder;
pub mod einsum;
mod graph;
pub mod infer;
mod ops;
pub mod text;
mod types;
pub mod verify;

pub use builder::Builder;
pub use graph::{Attr, Graph, Model, Node, NodeId, Value, ValueDef, ValueId};
pub use ops::Op;
pub use types::{DType, Dim, Tensor, TensorData, TensorType, Type};
