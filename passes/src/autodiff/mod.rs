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
mod cx;
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

pub use cx::{AutodiffError, GradError, MIN_OPSET};
pub use registry::{is_stop_input, registered_ops};

use cx::GradCx;

use crate::ir::{Builder, DType, Graph, NodeId, Type, ValueId};
use ext::BuilderExt;
use std::collections::{HashMap, HashSet};

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
