//! What an inference rule works with: its context (`Cx`), its result (`Inferred`, `Outcome`),
//! its errors, and the checked size arithmetic the family files share.

use crate::ir::graph::{Attr, Graph, Node};
use crate::ir::types::{DType, Dim, Tensor, TensorType, Type};

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
    pub(super) fn tensor(dtype: DType, shape: Option<Vec<Dim>>) -> Self {
        Inferred {
            ty: Type::Tensor(TensorType::new(dtype, shape)),
            sym: None,
        }
    }
    pub(super) fn with_sym(mut self, sym: Option<Vec<Dim>>) -> Self {
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
pub(super) struct Invalid(pub(super) String);

/// What a rule returns: one entry per output it knows about (the rest stay unknown).
pub(super) type Outcome = Result<Vec<Inferred>, Invalid>;

/// A size computation that overflowed 64 bits.
pub(super) fn overflow() -> Invalid {
    Invalid("a dimension overflows a 64-bit integer".into())
}

/// A checked size computation's result.
pub(super) fn checked(v: Option<i64>) -> Result<i64, Invalid> {
    v.ok_or_else(overflow)
}

/// What a rule sees: the graph, its node and the default-domain opset.
pub(super) struct Cx<'a> {
    pub(super) g: &'a Graph,
    pub(super) node: &'a Node,
    pub(super) opset: i64,
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
pub(super) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = i64::try_from(rank).ok()?;
    let a = if axis < 0 { axis.checked_add(r)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// A length given by a number in the file, when it is one inference may build.
pub(super) fn length(n: i64) -> Option<usize> {
    usize::try_from(n).ok().filter(|&n| n <= MAX_MATERIALISED)
}

/// `a · b` for dimensions.
pub(super) fn dim_mul(a: &Dim, b: &Dim) -> Result<Dim, Invalid> {
    Ok(match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(checked(x.checked_mul(*y))?),
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        _ => Dim::Unknown,
    })
}

/// The product of dimensions.
pub(super) fn dim_product(ds: &[Dim]) -> Result<Dim, Invalid> {
    ds.iter().try_fold(Dim::Fixed(1), |p, d| dim_mul(&p, d))
}

impl Cx<'_> {
    pub(super) fn in_ty(&self, i: usize) -> Option<&TensorType> {
        self.g.ty(self.node.input(i)?).tensor()
    }
    pub(super) fn in_dtype(&self, i: usize) -> DType {
        self.in_ty(i).map(|t| t.dtype).unwrap_or(DType::Undefined)
    }
    pub(super) fn in_shape(&self, i: usize) -> Option<Vec<Dim>> {
        self.in_ty(i)?.shape.clone()
    }
    /// The length of the vector input `i` (a shape or index list), when inference may build
    /// that many entries.
    pub(super) fn in_len(&self, i: usize) -> Option<usize> {
        length(self.in_ty(i)?.shape.as_ref()?.first()?.fixed()?)
    }
    /// Known element values of input `i`: from a constant, or symbolic ones.
    pub(super) fn in_sym(&self, i: usize) -> Option<Vec<Dim>> {
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
    pub(super) fn in_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.in_sym(i)?.iter().map(Dim::fixed).collect()
    }
    /// Output 0 with the type of input `i`.
    pub(super) fn same_as(&self, i: usize) -> Inferred {
        match self.node.input(i) {
            Some(v) => Inferred {
                ty: self.g.ty(v).clone(),
                sym: None,
            },
            None => Inferred::default(),
        }
    }
    pub(super) fn ints_attr_or_input(&self, attr: &str, input: usize) -> Option<Vec<i64>> {
        match self.node.attr_ints(attr) {
            Some(v) => Some(v.to_vec()),
            None => self.in_ints(input),
        }
    }
    /// A single output of input 0's element type.
    pub(super) fn like_input(&self, shape: Option<Vec<Dim>>) -> Outcome {
        Ok(vec![Inferred::tensor(self.in_dtype(0), shape)])
    }
}

/// The tensor a `Constant` node produces (any of its value_* attributes).
pub fn constant_attr_value(node: &Node) -> Option<Tensor> {
    match node.attrs.iter().next()? {
        (_, Attr::Tensor(t)) => Some(t.clone()),
        (k, Attr::Float(f)) if k == "value_float" => Some(Tensor::from_f32(&[], &[*f])),
        (k, Attr::Floats(f)) if k == "value_floats" => Some(Tensor::from_f32(&[f.len() as i64], f)),
        (k, Attr::Int(i)) if k == "value_int" => Some(Tensor::from_i64(&[], &[*i])),
        (k, Attr::Ints(i)) if k == "value_ints" => Some(Tensor::from_i64(&[i.len() as i64], i)),
        _ => None,
    }
}
