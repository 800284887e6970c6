//! Reverse-mode automatic differentiation in standard `ai.onnx` operators.
//!
//! `differentiate` appends the backward graph of `loss` with respect to `wrt` to a graph:
//! 1. reachability: the values that depend on a `wrt` value through differentiable edges
//!    (float values; no index/shape/mask inputs, see the registry's stop-gradient lists) and
//!    the values the loss depends on the same way; only nodes on both sides are differentiated;
//! 2. the seed dL/dL = 1, then every needed node in reverse topological order: its output
//!    gradients are the sums of the contributions of its users (fan-out), and its rule
//!    (`registry`, one small function per operator in a file per family) returns the gradient
//!    of each input that needs one, reduced to the input's shape when the operator broadcasts.
//!
//! An operator without a rule, or a rule that cannot handle a node's attributes, on a path from
//! a `wrt` value to the loss is an `AutodiffError` naming the operator, the node and the
//! parameter whose gradient it blocks: never a panic, never a silently zero gradient.
//! Gradients are emitted through the `Builder` (types inferred, opset-appropriate forms) at
//! opset `MIN_OPSET` or later (ScatterND/ScatterElements with `reduction="add"` need 16).

mod activation;
mod conv;
mod elementwise;
pub(crate) mod ext;
mod gather;
mod linalg;
mod losses;
mod norm;
pub mod opset;
mod reduce;
mod registry;
mod resample;
mod shape;

pub use registry::{is_stop_input, registered_ops};

use crate::ir::{Builder, DType, Graph, Node, NodeId, Type, ValueId};
use ext::BuilderExt;
use std::collections::{HashMap, HashSet};

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
    dy: Vec<Option<ValueId>>,
    need: Vec<bool>,
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

/// Whether a value can carry a gradient: a float tensor, or a value of unknown type, unknown
/// element type (downstream of an operator inference does not know, such as LSTM) or
/// non-tensor type (a sequence): treated as differentiable so an operator without a rule on
/// the path is reported, never skipped.
fn carries_gradient(g: &Graph, v: ValueId) -> bool {
    match g.ty(v) {
        Type::Unknown | Type::Opaque(_) => true,
        t => t.dtype().is_none_or(DType::is_float),
    }
}

/// The values a node reads through differentiable edges: explicit inputs outside its
/// operator's stop-gradient list, plus subgraph captures (treated as differentiable).
fn differentiable_uses(g: &Graph, n: NodeId) -> Vec<(Option<usize>, ValueId)> {
    let node = g.node(n);
    if node.op.is_non_differentiable() {
        return Vec::new();
    }
    let mut uses: Vec<(Option<usize>, ValueId)> = node
        .inputs
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_stop_input(&node.op, *i))
        .filter_map(|(i, v)| v.map(|v| (Some(i), v)))
        .collect();
    let explicit: HashSet<ValueId> = node.inputs.iter().flatten().copied().collect();
    uses.extend(
        g.node_uses(n)
            .into_iter()
            .filter(|v| !explicit.contains(v))
            .map(|v| (None, v)),
    );
    uses.retain(|(_, v)| carries_gradient(g, *v));
    uses
}

/// The values `loss` depends on through differentiable edges (`loss` included).
pub fn loss_dependencies(g: &Graph, loss: ValueId) -> HashSet<ValueId> {
    let mut deps = HashSet::from([loss]);
    for &n in g.order().iter().rev() {
        let node = g.node(n);
        let feeds_loss = node
            .outputs
            .iter()
            .flatten()
            .any(|o| deps.contains(o) && carries_gradient(g, *o));
        if feeds_loss {
            deps.extend(differentiable_uses(g, n).into_iter().map(|(_, v)| v));
        }
    }
    deps
}

/// Forward reachability from the `wrt` values: for each value depending on one of them, the
/// index of one such `wrt` value (to name the parameter in errors).
fn reachable_from(g: &Graph, wrt: &[ValueId]) -> HashMap<ValueId, usize> {
    let mut origin: HashMap<ValueId, usize> =
        wrt.iter().enumerate().rev().map(|(i, &v)| (v, i)).collect();
    for &n in g.order() {
        let from = differentiable_uses(g, n)
            .into_iter()
            .find_map(|(_, v)| origin.get(&v).copied());
        if let Some(p) = from {
            for &o in g.node(n).outputs.iter().flatten() {
                if carries_gradient(g, o) {
                    origin.entry(o).or_insert(p);
                }
            }
        }
    }
    origin
}

/// Appends to `g` the gradients of the scalar `loss` with respect to each of `wrt` (float
/// tensors: graph inputs, initializers or any value) and returns them, aligned with `wrt`.
/// A `wrt` value the loss does not depend on gets a zero gradient of its shape.
pub fn differentiate(
    g: &mut Graph,
    opset: i64,
    loss: ValueId,
    wrt: &[ValueId],
) -> Result<Vec<ValueId>, AutodiffError> {
    if opset < MIN_OPSET {
        return Err(AutodiffError::Opset {
            opset,
            min: MIN_OPSET,
        });
    }
    let type_text = |g: &Graph, v| crate::ir::text::type_text(g.ty(v));
    if !g.ty(loss).dtype().is_some_and(DType::is_float) {
        return Err(AutodiffError::LossNotFloat {
            name: g.name(loss).to_string(),
            ty: type_text(g, loss),
        });
    }
    if let Some(&w) = wrt
        .iter()
        .find(|&&w| !g.ty(w).dtype().is_some_and(DType::is_float))
    {
        return Err(AutodiffError::NotFloat {
            name: g.name(w).to_string(),
            ty: type_text(g, w),
        });
    }
    let origin = reachable_from(g, wrt);
    let deps = loss_dependencies(g, loss);
    let needed: Vec<NodeId> = g
        .order()
        .iter()
        .copied()
        .filter(|&n| {
            let node = g.node(n);
            node.outputs
                .iter()
                .flatten()
                .any(|o| deps.contains(o) && origin.contains_key(o))
        })
        .collect();
    let wrt_names: Vec<String> = wrt.iter().map(|&w| g.name(w).to_string()).collect();
    let wrt_set: HashSet<ValueId> = wrt.iter().copied().collect();
    // the parameter whose gradient flows through node n (for error messages)
    let param_through = |g: &Graph, n: NodeId| {
        differentiable_uses(g, n)
            .iter()
            .find_map(|&(_, v)| origin.get(&v).map(|&p| wrt_names[p].clone()))
            .unwrap_or_default()
    };
    // every operator on the path needs a rule; the first one without (in forward order) is
    // the real blocker, whatever the rules after it would say about the values it produces
    let rules: Vec<registry::Rule> = needed
        .iter()
        .map(|&n| {
            registry::rule(&g.node(n).op).ok_or_else(|| AutodiffError::NoRule {
                op: g.node(n).op.to_string(),
                node: g.node(n).label(n),
                param: param_through(g, n),
            })
        })
        .collect::<Result<_, _>>()?;

    let mut b = Builder::new(g, opset, "grad/");
    let mut acc: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    let seed = if b.rank(loss) == Some(0) {
        b.scalar_like(loss, 1.0)
    } else {
        b.fill_like(loss, 1.0)
    };
    acc.insert(loss, vec![seed]);

    for (&n, rule) in needed.iter().zip(rules).rev() {
        let node = b.g.node(n).clone();
        let outs: Vec<Option<ValueId>> = node.outputs.clone();
        let mut dy = Vec::with_capacity(outs.len());
        for o in outs {
            // a `wrt` value produced by a node keeps its gradient for the caller
            let parts = o
                .and_then(|o| match wrt_set.contains(&o) {
                    true => acc.get(&o).cloned(),
                    false => acc.remove(&o),
                })
                .unwrap_or_default();
            dy.push((!parts.is_empty()).then(|| b.add_all(&parts)));
        }
        if dy.iter().all(Option::is_none) {
            continue;
        }
        let uses = differentiable_uses(b.g, n);
        let param_of = |v: ValueId| origin.get(&v).map(|&p| wrt_names[p].clone());
        let param = param_through(b.g, n);
        let label = node.label(n);
        let op = node.op.to_string();
        let mut need = vec![false; node.inputs.len()];
        for &(slot, v) in &uses {
            match slot {
                Some(i) if origin.contains_key(&v) => need[i] = true,
                None if origin.contains_key(&v) => {
                    return Err(AutodiffError::NoRule {
                        op: format!("{op} (through a subgraph)"),
                        node: label,
                        param,
                    })
                }
                _ => {}
            }
        }
        let prefix = if node.name.is_empty() {
            format!("grad/{}_{}/", node.op.op_type(), n.0)
        } else {
            format!("grad/{}/", node.name)
        };
        b.set_prefix(&prefix);
        let grads = {
            let mut cx = GradCx {
                b: &mut b,
                id: n,
                node: node.clone(),
                dy,
                need: need.clone(),
            };
            rule(&mut cx).map_err(|reason| AutodiffError::Rule {
                op: op.clone(),
                node: label.clone(),
                param: param.clone(),
                reason,
            })?
        };
        for (i, wanted) in need.iter().enumerate() {
            if !wanted {
                continue;
            }
            let v = node.inputs[i].expect("a needed input is present");
            match grads.get(i).copied().flatten() {
                Some(gv) => acc.entry(v).or_default().push(gv),
                None => {
                    return Err(AutodiffError::MissingGradient {
                        op,
                        node: label,
                        input: i,
                        value: b.g.name(v).to_string(),
                        param: param_of(v).unwrap_or_default(),
                    })
                }
            }
        }
    }
    b.set_prefix("grad/");
    Ok(wrt
        .iter()
        .map(|&w| match acc.get(&w) {
            Some(parts) => b.add_all(parts),
            None => b.fill_like(w, 0.0),
        })
        .collect())
}
