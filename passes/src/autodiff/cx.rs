//! The vocabulary of gradient rules: the context a rule reads (`GradCx`), its result type,
//! the errors of the autodiff stage, and small helpers the rule files share.

use super::ext::BuilderExt;
use crate::ir::{Builder, Node, NodeId, ValueId};

/// The lowest default-domain opset the emitted gradients use.
pub const MIN_OPSET: i64 = 16;

/// Why a gradient could not be built. Every variant names the operator and node involved
/// and the parameter whose gradient it blocks.
#[derive(Debug, thiserror::Error)]
pub enum AutodiffError {
    #[error(
        "no gradient for operator {op} (node {node}): it lies on the path from parameter \
         '{param}' to the loss (freeze the parameter with --freeze, or remove the operator)"
    )]
    NoRule {
        op: String,
        node: String,
        param: String,
    },
    #[error(
        "gradient of {op} (node {node}) on the path from parameter '{param}' to the loss: {reason}"
    )]
    Rule {
        op: String,
        node: String,
        param: String,
        reason: GradError,
    },
    #[error(
        "gradient of {op} (node {node}) gave nothing for input {input} ('{value}'), which \
         carries the gradient of parameter '{param}'"
    )]
    MissingGradient {
        op: String,
        node: String,
        input: usize,
        value: String,
        param: String,
    },
    #[error("the loss '{name}' is not a floating-point tensor (its type is {ty})")]
    LossNotFloat { name: String, ty: String },
    #[error("cannot differentiate with respect to '{name}': it is not a floating-point tensor (its type is {ty})")]
    NotFloat { name: String, ty: String },
    #[error("gradients need ai.onnx opset {min} or later; the graph is at opset {opset}")]
    Opset { opset: i64, min: i64 },
    #[error(
        "the model's opset {from} cannot be raised to {to} for the gradients: node {node} uses \
         {op}, whose definition changed at opset {since}; re-export the model at opset {to} or later"
    )]
    OpsetUpgrade {
        from: i64,
        to: i64,
        op: String,
        node: String,
        since: i64,
    },
}

/// Why one gradient rule could not handle a node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GradError {
    /// An attribute value or configuration the rule does not implement.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A rank, dimension or constant that must be known when compiling.
    #[error("{0} must be known at compile time")]
    NeedsStatic(String),
    /// An input or output the rule reads is absent.
    #[error("input or output {0} is missing")]
    Missing(String),
}

/// One gradient per forward input (None: not needed, or not differentiable).
pub(crate) type Grads = Vec<Option<ValueId>>;
pub(crate) type GradResult = Result<Grads, GradError>;

/// What a gradient rule sees: the forward node, its output gradients, which input gradients
/// are wanted, and the builder that emits the backward nodes.
pub(crate) struct GradCx<'a, 'g> {
    pub b: &'a mut Builder<'g>,
    pub id: NodeId,
    pub node: Node,
    pub(super) dy: Vec<Option<ValueId>>,
    pub(super) need: Vec<bool>,
}

impl GradCx<'_, '_> {
    /// Forward input `i`.
    pub fn x(&self, i: usize) -> Result<ValueId, GradError> {
        self.node
            .input(i)
            .ok_or_else(|| GradError::Missing(format!("input {i}")))
    }

    /// Forward input `i` if present.
    pub fn opt_x(&self, i: usize) -> Option<ValueId> {
        self.node.input(i)
    }

    /// Forward output `i`.
    pub fn y(&self, i: usize) -> Result<ValueId, GradError> {
        self.node
            .output(i)
            .ok_or_else(|| GradError::Missing(format!("output {i}")))
    }

    /// Gradient of output `i`, if any user of it needs one.
    pub fn dy(&self, i: usize) -> Option<ValueId> {
        self.dy.get(i).copied().flatten()
    }

    /// Gradient of output 0, zeros when only other outputs carry gradient.
    pub fn dy0(&mut self) -> Result<ValueId, GradError> {
        match self.dy(0) {
            Some(d) => Ok(d),
            None => {
                let y = self.y(0)?;
                Ok(self.b.fill_like(y, 0.0))
            }
        }
    }

    /// Fails when an output other than the first carries gradient (rules for operators whose
    /// extra outputs are statistics or indices).
    pub fn only_first_output(&self) -> Result<(), GradError> {
        match self.dy.iter().skip(1).position(Option::is_some) {
            Some(k) => Err(GradError::Unsupported(format!(
                "a gradient flowing into output {}",
                k + 1
            ))),
            None => Ok(()),
        }
    }

    /// Whether the gradient of input `i` is wanted.
    pub fn needs(&self, i: usize) -> bool {
        self.need.get(i).copied().unwrap_or(false)
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.node.attr_int(name).unwrap_or(default)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.node.attr_float(name).unwrap_or(default)
    }

    pub fn str_attr(&self, name: &str, default: &'static str) -> String {
        self.node.attr_str(name).unwrap_or(default).to_string()
    }

    /// The rank of `v`.
    pub fn rank(&self, v: ValueId) -> Result<usize, GradError> {
        self.b
            .rank(v)
            .ok_or_else(|| GradError::NeedsStatic(format!("the rank of '{}'", self.b.g.name(v))))
    }

    /// The dims of `v` when all are known.
    pub fn dims(&self, v: ValueId) -> Option<Vec<i64>> {
        self.b.g.ty(v).tensor()?.fixed_dims()
    }

    /// Dim `axis` of `v`, which must be known.
    pub fn dim(&self, v: ValueId, axis: usize) -> Result<i64, GradError> {
        self.b
            .g
            .ty(v)
            .shape()
            .and_then(|s| s.get(axis)?.fixed())
            .ok_or_else(|| {
                GradError::NeedsStatic(format!("dimension {axis} of '{}'", self.b.g.name(v)))
            })
    }

    /// The values of a constant integer input (initializer, Constant, or folded shape values).
    pub fn const_ints(&self, i: usize) -> Option<Vec<i64>> {
        let v = self.opt_x(i)?;
        if let Some(t) = self.b.g.constant(v) {
            return t.to_i64_vec();
        }
        self.b
            .g
            .value(v)
            .sym
            .as_ref()?
            .iter()
            .map(crate::ir::Dim::fixed)
            .collect()
    }

    /// Integer list from attribute `attr` (older opsets) or constant input `input`.
    pub fn ints_attr_or_input(
        &self,
        attr: &str,
        input: usize,
    ) -> Result<Option<Vec<i64>>, GradError> {
        if let Some(v) = self.node.attr_ints(attr) {
            return Ok(Some(v.to_vec()));
        }
        if self.opt_x(input).is_none() {
            return Ok(None);
        }
        self.const_ints(input)
            .map(Some)
            .ok_or_else(|| GradError::NeedsStatic(format!("'{attr}' (input {input})")))
    }

    /// Reduces `grad` (shaped like the broadcast result) to the shape of input `i`.
    pub fn unbroadcast(&mut self, grad: ValueId, i: usize) -> Result<ValueId, GradError> {
        let x = self.x(i)?;
        Ok(self.b.sum_to_like(grad, x))
    }
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, GradError> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if (0..rank as i64).contains(&a) {
        Ok(a as usize)
    } else {
        Err(GradError::Unsupported(format!(
            "axis {axis} for rank {rank}"
        )))
    }
}
