//! Type and shape inference for the operators the compiler differentiates and rewrites.
//! Symbolic dimensions (the batch) stay symbolic; anything not known becomes `Dim::Unknown`
//! or `Type::Unknown`, never a guess. Small integer tensors also get their element values as
//! dimensions (`Value::sym`), so exporters' Shape→Gather→Concat→Reshape chains keep static
//! shapes even with a symbolic batch.
//!
//! Each operator's rule lives in the file of its family (`elementwise.rs`, `linalg.rs`,
//! `conv.rs`, `norm.rs`, `reduce.rs`, `shape.rs`, `slice.rs`, `gather.rs`, `source.rs`,
//! `resample.rs`, as `autodiff/` is organised) and is registered in `registry.rs`, one line per
//! operator; `cx.rs` holds what every rule works with (`Cx`, `Inferred`, checked size
//! arithmetic). Rules never panic on what a file says: sizes are checked arithmetic, lists are
//! read with `get`, and nothing larger than `MAX_MATERIALISED` entries is built from a number
//! in the file. Inputs no valid model has (a dimension that overflows, `pads` of the wrong
//! length) are an `InferError` naming the node.

mod conv;
mod cx;
mod elementwise;
mod gather;
mod linalg;
mod norm;
mod reduce;
mod registry;
mod resample;
mod shape;
mod slice;
mod source;

pub(crate) use resample::resize_axes;
pub(crate) use slice::slice_range;

pub use cx::{broadcast, constant_attr_value, InferError, Inferred, MAX_MATERIALISED};

use super::graph::{Graph, NodeId};
use super::types::{DType, Dim, TensorType, Type};
use cx::{Cx, Invalid};

/// Runs inference for node `n` and stores the result on its outputs; where inference knows
/// nothing, an already present (declared) type is kept. On an error the outputs keep the
/// types they had.
pub fn infer_and_store(g: &mut Graph, n: NodeId, opset: i64) -> Result<(), InferError> {
    let results = infer_node(g, n, opset)?;
    let outs = g.node(n).outputs.clone();
    for (o, r) in outs.into_iter().zip(results) {
        let Some(o) = o else { continue };
        let v = g.value_mut(o);
        v.ty = merge(&v.ty, r.ty);
        if r.sym.is_some() {
            v.sym = r.sym;
        }
    }
    Ok(())
}

/// The more informative of a declared and an inferred type.
fn merge(declared: &Type, inferred: Type) -> Type {
    match (declared, &inferred) {
        (Type::Tensor(d), Type::Tensor(i)) => {
            let dtype = if i.dtype == DType::Undefined {
                d.dtype
            } else {
                i.dtype
            };
            let shape = match (&d.shape, &i.shape) {
                (Some(ds), Some(is)) if ds.len() == is.len() => Some(
                    ds.iter()
                        .zip(is)
                        .map(|(a, b)| match (a, b) {
                            (_, Dim::Fixed(_)) => b.clone(),
                            (Dim::Fixed(_), _) => a.clone(),
                            (_, Dim::Sym(_)) => b.clone(),
                            _ => a.clone(),
                        })
                        .collect(),
                ),
                (Some(ds), None) => Some(ds.clone()),
                (_, is) => is.clone(),
            };
            Type::Tensor(TensorType::new(dtype, shape))
        }
        (d, Type::Unknown) => d.clone(),
        _ => inferred,
    }
}

/// Infers the outputs of node `n` (one entry per output slot, present or not).
pub fn infer_node(g: &Graph, n: NodeId, opset: i64) -> Result<Vec<Inferred>, InferError> {
    let node = g.node(n);
    let cx = Cx { g, node, opset };
    let mut out = match registry::rule(&node.op) {
        Some(rule) => rule(&cx).map_err(|Invalid(reason)| InferError {
            node: node.label(n),
            reason,
        })?,
        None => Vec::new(),
    };
    out.resize(node.outputs.len(), Inferred::default());
    Ok(out)
}

/// Runs inference over the whole graph in topological order.
pub fn infer_graph(g: &mut Graph, opset: i64) -> Result<(), InferError> {
    for n in g.order().to_vec() {
        infer_and_store(g, n, opset)?;
    }
    Ok(())
}
