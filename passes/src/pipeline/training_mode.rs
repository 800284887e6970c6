//! Training-mode lowering (SPEC section 4): rewrites the layers whose exported form does not
//! train as PyTorch's train mode does into explicit standard operators.
//!
//! - BatchNormalization, in inference mode (the dynamo exporter) or training mode (TorchScript
//!   with `training=TRAINING`, 3 outputs): batch statistics over the batch and spatial axes,
//!   y = (x − μ)/√(σ² + ε)·scale + B, and the running-statistic updates with PyTorch's
//!   semantics: running = m·running + (1 − m)·batch_stat with the ONNX momentum m (PyTorch's
//!   1 − momentum) and the unbiased batch variance for running_var. The running statistics
//!   become graph inputs (their initializers kept as defaults) and `(input, update)` pairs in
//!   `Context::buffers`. Autodiff then differentiates the decomposition op by op.
//! - Dropout in training mode with a nonzero ratio: an explicit mask reused by the backward
//!   pass, y = x · Cast(RandomUniformLike(x) ≥ p) / (1 − p) (ONNX Runtime deletes Dropout
//!   nodes at every optimisation level). Each one is recorded in `Context::dropouts` so a
//!   deterministic clone (GeN probes) can bypass it. Dropout that is an identity (inference
//!   mode, ratio 0) becomes an Identity.
//!
//! Needs: opset >= 16 forms (runs after the opset upgrade). Guarantees: no BatchNormalization
//! or Dropout node is left; node order is topological.

use super::context::LoweredDropout;
use super::{Context, Pass};
use crate::autodiff::ext::BuilderExt;
use crate::error::{Error, Result};
use crate::ir::{Attr, Builder, DType, Graph, Model, NodeId, Op, ValueDef, ValueId};
use std::collections::HashMap;

pub struct TrainingMode;

#[derive(Debug, thiserror::Error)]
pub enum LoweringError {
    #[error("node {node}: {what} must be a constant to lower it for training")]
    NotConstant { node: String, what: &'static str },
    #[error(
        "node {node}: the rank of its input must be known (at least 2) to lower it for training"
    )]
    UnknownRank { node: String },
    #[error("node {node}: dropout ratio {ratio} is outside [0, 1]")]
    BadRatio { node: String, ratio: f64 },
    #[error("the graph has a cycle through {nodes} nodes after lowering")]
    Cycle { nodes: usize },
}

impl Pass for TrainingMode {
    fn name(&self) -> &'static str {
        "training-mode"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let g = &mut m.graph;
        let targets: Vec<NodeId> = g
            .order()
            .iter()
            .copied()
            .filter(|&n| matches!(g.node(n).op, Op::BatchNormalization | Op::Dropout))
            .collect();
        let err = |e| Error::stage("training-mode lowering", e);
        let mut running: HashMap<ValueId, ValueId> = HashMap::new();
        for &n in &targets {
            match g.node(n).op {
                Op::BatchNormalization => {
                    lower_batch_norm(g, opset, n, cx, &mut running).map_err(err)?
                }
                _ => lower_dropout(g, opset, n, cx).map_err(err)?,
            }
        }
        if !targets.is_empty() {
            // the replacements were appended: put them before their users
            g.toposort()
                .map_err(|cycle| err(LoweringError::Cycle { nodes: cycle.len() }))?;
        }
        Ok(!targets.is_empty())
    }
}

/// Makes `new` take the place of `old`: every use and graph output, and its name.
pub(crate) fn replace_value(g: &mut Graph, old: ValueId, new: ValueId) {
    g.replace_uses(old, new);
    let name = g.name(old).to_string();
    let retired = g.fresh_name(&format!("{name}.replaced"));
    g.rename(old, &retired);
    g.rename(new, &name);
}

/// A builder whose names start with the node's name.
fn builder_for(g: &mut Graph, opset: i64, n: NodeId) -> Builder<'_> {
    let node = g.node(n);
    let prefix = if node.name.is_empty() {
        format!("{}_{}/", node.op.op_type(), n.0)
    } else {
        format!("{}/", node.name)
    };
    Builder::new(g, opset, &prefix)
}

fn lower_batch_norm(
    g: &mut Graph,
    opset: i64,
    n: NodeId,
    cx: &mut Context,
    running: &mut HashMap<ValueId, ValueId>,
) -> Result<(), LoweringError> {
    let node = g.node(n).clone();
    let label = node.label(n);
    let input = |i: usize| {
        node.input(i).ok_or(LoweringError::NotConstant {
            node: label.clone(),
            what: "every input (x, scale, B, mean, var)",
        })
    };
    let (x, scale, bias, mean, var) = (input(0)?, input(1)?, input(2)?, input(3)?, input(4)?);
    let r = match g.ty(x).rank() {
        Some(r) if r >= 2 => r,
        _ => return Err(LoweringError::UnknownRank { node: label }),
    };
    let eps = node.attr_float("epsilon").unwrap_or(1e-5) as f64;
    let momentum = node.attr_float("momentum").unwrap_or(0.9) as f64;
    let mut b = builder_for(g, opset, n);
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    let channel_axes: Vec<i64> = (1..r as i64 - 1).collect();
    let per_channel = |b: &mut Builder, v| match channel_axes.is_empty() {
        true => v,
        false => b.unsqueeze(v, &channel_axes),
    };
    let mu = b.reduce_mean(x, &axes, true);
    let xc = b.sub(x, mu);
    let sq = b.mul(xc, xc);
    let var_b = b.reduce_mean(sq, &axes, true);
    let e = b.scalar_like(x, eps);
    let ve = b.add(var_b, e);
    let sd = b.unary(Op::Sqrt, ve);
    let xhat = b.div(xc, sd);
    let s = per_channel(&mut b, scale);
    let bb = per_channel(&mut b, bias);
    let scaled = b.mul(xhat, s);
    let y = b.add(scaled, bb);

    let mean_s = b.squeeze(mu, &axes);
    let var_s = b.squeeze(var_b, &axes);
    let count = b.count_ratio(x, mu);
    let one = b.scalar_like(x, 1.0);
    let dof = b.sub(count, one);
    let bessel = b.div(count, dof);
    let var_u = b.mul(var_s, bessel);
    let mut update = |b: &mut Builder, stat: ValueId, batch: ValueId| {
        let base = running.get(&stat).copied().unwrap_or(stat);
        let batch = b.cast_to_like(batch, stat);
        let kept = b.scale(base, momentum);
        let fresh = b.scale(batch, 1.0 - momentum);
        let next = b.add(kept, fresh);
        running.insert(stat, next);
        next
    };
    let new_mean = update(&mut b, mean, mean_s);
    let new_var = update(&mut b, var, var_u);

    let outs = node.outputs.clone();
    g.remove_node(n);
    for (slot, new) in [(0, y), (1, new_mean), (2, new_var)] {
        if let Some(Some(old)) = outs.get(slot) {
            replace_value(g, *old, new);
        }
    }
    for (stat, next) in [(mean, new_mean), (var, new_var)] {
        if make_state(g, stat) {
            cx.buffers.retain(|(i, _)| *i != stat);
            cx.buffers.push((stat, next));
        } else {
            cx.warnings.push(format!(
                "BatchNormalization {label}: running statistic '{}' is not an initializer; \
                 its update is not carried between steps",
                g.name(stat)
            ));
        }
    }
    Ok(())
}

/// Turns an initializer into a graph input keeping it as the default value (state a runtime
/// feeds back and must never constant-fold). False when `v` is neither.
pub(crate) fn make_state(g: &mut Graph, v: ValueId) -> bool {
    match g.value(v).def {
        ValueDef::Input => true,
        ValueDef::Initializer => {
            g.value_mut(v).def = ValueDef::Input;
            g.inputs.push(v);
            true
        }
        _ => false,
    }
}

/// The first element of a constant input, if the input is present and constant.
fn const_scalar(g: &Graph, v: Option<ValueId>) -> Option<Option<f64>> {
    match v {
        None => Some(None),
        Some(v) => g
            .constant(v)
            .and_then(|t| t.to_f64_vec())
            .map(|vals| vals.first().copied()),
    }
}

fn lower_dropout(
    g: &mut Graph,
    opset: i64,
    n: NodeId,
    cx: &mut Context,
) -> Result<(), LoweringError> {
    let node = g.node(n).clone();
    let label = node.label(n);
    let not_constant = |what| LoweringError::NotConstant {
        node: label.clone(),
        what,
    };
    let x = node
        .input(0)
        .ok_or_else(|| not_constant("the data input"))?;
    let ratio = const_scalar(g, node.input(1))
        .ok_or_else(|| not_constant("the ratio"))?
        .unwrap_or(0.5);
    let training = const_scalar(g, node.input(2))
        .ok_or_else(|| not_constant("training_mode"))?
        .is_some_and(|t| t != 0.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(LoweringError::BadRatio { node: label, ratio });
    }
    let mut b = builder_for(g, opset, n);
    let (y, mask) = if training && ratio > 0.0 {
        let dt = b.dtype(x);
        let u = b.op(
            Op::RandomUniformLike,
            &[x],
            node.attr("seed")
                .map(|s| ("seed", s.clone()))
                .into_iter()
                .chain([("dtype", Attr::Int(dt as i64))])
                .collect(),
        );
        let p = b.scalar(dt, ratio);
        let keep = b.op(Op::GreaterOrEqual, &[u, p], vec![]);
        let kf = b.cast(keep, dt);
        let factor = if ratio < 1.0 {
            1.0 / (1.0 - ratio)
        } else {
            0.0
        };
        let scaled = b.scale(kf, factor);
        let y = b.mul(x, scaled);
        cx.dropouts.push(LoweredDropout {
            input: x,
            output: y,
            mask: keep,
            ratio,
        });
        (y, Some(keep))
    } else {
        let y = b.unary(Op::Identity, x);
        let mask = node.output(1).map(|_| {
            let shape = b.shape_of(x);
            b.fill(shape, DType::Bool, 1.0)
        });
        (y, mask)
    };
    let outs = node.outputs.clone();
    g.remove_node(n);
    for (slot, new) in [(0, Some(y)), (1, mask)] {
        if let (Some(Some(old)), Some(new)) = (outs.get(slot), new) {
            replace_value(g, *old, new);
        }
    }
    Ok(())
}
