//! Type and shape inference for the operators the compiler differentiates and rewrites.
//! Symbolic dimensions (the batch) stay symbolic; anything not known becomes `Dim::Unknown`
//! or `Type::Unknown`, never a guess. Small integer tensors also get their element values as
//! dimensions (`Value::sym`), so exporters' Shape→Gather→Concat→Reshape chains keep static
//! shapes even with a symbolic batch.
//!
//! Each operator's rule lives in the file of its family (`elementwise.rs`, `linalg.rs`,
//! `conv.rs`, `norm.rs`, `reduce.rs`, `shape.rs`, `slice.rs`, `gather.rs`, `source.rs`,
//! `resample.rs`, as `autodiff/` is organised) and is registered in `registry.rs`, one line per
//! operator. Rules never panic on what a file says: sizes are checked arithmetic, lists are
//! read with `get`, and nothing larger than `MAX_MATERIALISED` entries is built from a number
//! in the file. Inputs no valid model has (a dimension that overflows, `pads` of the wrong
//! length) are an `InferError` naming the node.

mod conv;
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
pub use source::constant_attr_value;

use super::graph::{Graph, Node, NodeId};
use super::types::{DType, Dim, TensorType, Type};

/// The most dimensions (or tracked element values) inference builds from one number or
/// constant of a file: a rank or length beyond it leaves the shape unknown instead of
/// allocating (a shape input claiming 2^40 dimensions must not reserve terabytes).
pub const MAX_MATERIALISED: usize = 1 << 16;

/// What inference found for one output.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Inferred {
    pub ty: Type,
    pub sym: Option<Vec<Dim>>,
}

impl Inferred {
    fn tensor(dtype: DType, shape: Option<Vec<Dim>>) -> Self {
        Inferred {
            ty: Type::Tensor(TensorType::new(dtype, shape)),
            sym: None,
        }
    }
    fn with_sym(mut self, sym: Option<Vec<Dim>>) -> Self {
        self.sym = sym;
        self
    }
}

/// A node whose inputs or attributes no valid model has, found while inferring its outputs.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("node {node}: {reason}")]
pub struct InferError {
    /// The node's label (`'name' (Op)`).
    pub node: String,
    pub reason: String,
}

/// Why a rule gave up with an error (the node is added by `infer_node`).
#[derive(Clone, Debug, PartialEq)]
struct Invalid(String);

/// What a rule returns: one entry per output it knows about (the rest stay unknown).
type Outcome = Result<Vec<Inferred>, Invalid>;

/// A size computation that overflowed 64 bits.
fn overflow() -> Invalid {
    Invalid("a dimension overflows a 64-bit integer".into())
}

/// A checked size computation's result.
fn checked(v: Option<i64>) -> Result<i64, Invalid> {
    v.ok_or_else(overflow)
}

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

/// What a rule sees: the graph, its node and the default-domain opset.
struct Cx<'a> {
    g: &'a Graph,
    node: &'a Node,
    opset: i64,
}

/// Numpy broadcasting of two shapes. A symbolic dim facing an unknown one is taken as the
/// result (as ONNX Runtime's symbolic inference merges them): the unknown one is that size or
/// 1, unless the symbol itself is 1 at run time, which the gradients' `sum_to_like` still
/// handles by summing dynamically wherever an unknown dim is involved.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = (i + a.len()).checked_sub(r).and_then(|j| a.get(j));
            let y = (i + b.len()).checked_sub(r).and_then(|j| b.get(j));
            match (x, y) {
                (Some(x), None) => x.clone(),
                (None, Some(y)) => y.clone(),
                (Some(x), Some(y)) => match (x, y) {
                    (Dim::Fixed(1), _) => y.clone(),
                    (_, Dim::Fixed(1)) => x.clone(),
                    (Dim::Fixed(p), Dim::Fixed(q)) if p == q => x.clone(),
                    (Dim::Fixed(p), Dim::Fixed(_)) => Dim::Fixed(*p),
                    (Dim::Fixed(p), _) | (_, Dim::Fixed(p)) => Dim::Fixed(*p),
                    (Dim::Sym(s), Dim::Sym(t)) if s == t => x.clone(),
                    (Dim::Sym(_), Dim::Unknown) => x.clone(),
                    (Dim::Unknown, Dim::Sym(_)) => y.clone(),
                    _ => Dim::Unknown,
                },
                (None, None) => Dim::Unknown,
            }
        })
        .collect()
}

/// An ONNX axis (negative counts from the end) as an index below `rank`.
fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// A length given by a number in the file, when it is one inference may build.
fn length(n: i64) -> Option<usize> {
    usize::try_from(n).ok().filter(|&n| n <= MAX_MATERIALISED)
}

/// `a · b` for dimensions.
fn dim_mul(a: &Dim, b: &Dim) -> Result<Dim, Invalid> {
    Ok(match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(checked(x.checked_mul(*y))?),
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        _ => Dim::Unknown,
    })
}

/// The product of dimensions.
fn dim_product(ds: &[Dim]) -> Result<Dim, Invalid> {
    ds.iter().try_fold(Dim::Fixed(1), |p, d| dim_mul(&p, d))
}

impl Cx<'_> {
    fn in_ty(&self, i: usize) -> Option<&TensorType> {
        self.g.ty(self.node.input(i)?).tensor()
    }
    fn in_dtype(&self, i: usize) -> DType {
        self.in_ty(i).map(|t| t.dtype).unwrap_or(DType::Undefined)
    }
    fn in_shape(&self, i: usize) -> Option<Vec<Dim>> {
        self.in_ty(i)?.shape.clone()
    }
    /// The length of the vector input `i` (a shape or index list), when inference may build
    /// that many entries.
    fn in_len(&self, i: usize) -> Option<usize> {
        length(self.in_ty(i)?.shape.as_ref()?.first()?.fixed()?)
    }
    /// Known element values of input `i`: from a constant, or symbolic ones.
    fn in_sym(&self, i: usize) -> Option<Vec<Dim>> {
        let v = self.node.input(i)?;
        if let Some(t) = self.g.constant(v) {
            if t.nbytes() > 8 * MAX_MATERIALISED {
                return None;
            }
            return Some(t.to_i64_vec()?.into_iter().map(Dim::Fixed).collect());
        }
        self.g.value(v).sym.clone()
    }
    /// Constant integer values of input `i` (all known).
    fn in_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.in_sym(i)?.iter().map(Dim::fixed).collect()
    }
    /// Output 0 with the type of input `i`.
    fn same_as(&self, i: usize) -> Inferred {
        match self.node.input(i) {
            Some(v) => Inferred {
                ty: self.g.ty(v).clone(),
                sym: None,
            },
            None => Inferred::default(),
        }
    }
    fn ints_attr_or_input(&self, attr: &str, input: usize) -> Option<Vec<i64>> {
        match self.node.attr_ints(attr) {
            Some(v) => Some(v.to_vec()),
            None => self.in_ints(input),
        }
    }
    /// A single output of input 0's element type.
    fn like_input(&self, shape: Option<Vec<Dim>>) -> Outcome {
        Ok(vec![Inferred::tensor(self.in_dtype(0), shape)])
    }
}
