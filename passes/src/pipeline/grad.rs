//! The gradient stages: opset upgrade, sequence lowering, training-mode lowering, loss
//! attachment, parameter discovery, autodiff; plus the `--emit grad` outputs.
//!
//! After these stages `Context` holds `loss`, `label_inputs`, `params` (graph inputs with
//! initializer defaults), `buffers` (BatchNorm running statistics and their updates), `grads`
//! (aligned with `params`), `dropouts` (lowered masks) and `warnings`.

use super::contract::{Contract, GraphKind, StateEntry, StateRole};
use super::loss::AttachLoss;
use super::params::DiscoverParams;
use super::sequences::LowerSequences;
use super::training_mode::TrainingMode;
use super::{Context, Pass};
use crate::autodiff::{differentiate, opset::raise_opset};
use crate::error::{Error, Result};
use crate::ir::{Graph, Model, NodeId, Op, ValueDef, ValueId};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The gradient stages, in order, after cleanup.
pub fn passes(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Ok(vec![
        // first: every later stage emits opset >= 16 forms
        Box::new(OpsetUpgrade),
        // before autodiff: sequences of split pieces become plain slices
        Box::new(LowerSequences),
        // before parameter discovery: running statistics become buffers, never parameters,
        // and the batch-statistics decomposition is what autodiff differentiates
        Box::new(TrainingMode),
        // before parameter discovery: parameters are found on paths to the loss
        Box::new(AttachLoss),
        Box::new(DiscoverParams),
        Box::new(Autodiff),
    ])
}

/// The final stage of `--emit grad`: graph outputs = loss + one gradient per parameter,
/// `metadata_props["gen.grads"]` (parameter → gradient output) and a `gen.contract` of kind
/// "grad". Append it after `passes` for `Emit::Grad` only.
pub fn grad_outputs_pass() -> Box<dyn Pass> {
    Box::new(GradOutputs)
}

/// The nodes `loss` depends on (the forward + loss region), in topological order: what a
/// GeN probe clones. Lowered dropouts (`Context::dropouts`) are in it; a deterministic clone
/// maps each one's output to its input.
pub fn loss_region(g: &Graph, loss: ValueId) -> Vec<NodeId> {
    let mut live: HashSet<ValueId> = HashSet::from([loss]);
    let mut nodes: Vec<NodeId> = Vec::new();
    for &n in g.order().iter().rev() {
        if g.node(n).outputs.iter().flatten().any(|o| live.contains(o)) {
            live.extend(g.node_uses(n));
            nodes.push(n);
        }
    }
    nodes.reverse();
    nodes
}

/// Raises the opset to `autodiff::MIN_OPSET` when every node allows it.
struct OpsetUpgrade;

impl Pass for OpsetUpgrade {
    fn name(&self) -> &'static str {
        "opset-upgrade"
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        raise_opset(m).map_err(|e| Error::stage("opset", e))
    }
}

/// Reverse-mode autodiff of the loss with respect to the parameters; each gradient gets its
/// own value named `<param>.grad`.
struct Autodiff;

impl Pass for Autodiff {
    fn name(&self) -> &'static str {
        "autodiff"
    }
    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let loss = cx
            .loss
            .ok_or_else(|| Error::stage("autodiff", super::params::ParamError::NoLoss))?;
        let opset = m.opset();
        let g = &mut m.graph;
        let before = g.value_count();
        let grads =
            differentiate(g, opset, loss, &cx.params).map_err(|e| Error::stage("autodiff", e))?;
        let mut claimed: HashSet<ValueId> = g.outputs.iter().copied().collect();
        cx.grads = cx
            .params
            .iter()
            .zip(grads)
            .map(|(&p, gv)| {
                let reusable = gv.0 as usize >= before
                    && !claimed.contains(&gv)
                    && g.value(gv).def != ValueDef::Input;
                let gv = if reusable {
                    gv
                } else {
                    let mut b = crate::ir::Builder::new(g, opset, "grad/");
                    b.unary(Op::Identity, gv)
                };
                claimed.insert(gv);
                let name = g.fresh_name(&format!("{}.grad", g.name(p)));
                g.rename(gv, &name);
                gv
            })
            .collect();
        Ok(true)
    }
}

struct GradOutputs;

impl Pass for GradOutputs {
    fn name(&self) -> &'static str {
        "grad-outputs"
    }
    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let loss = cx
            .loss
            .ok_or_else(|| Error::stage("grad outputs", super::params::ParamError::NoLoss))?;
        let g = &mut m.graph;
        g.outputs = std::iter::once(loss)
            .chain(cx.grads.iter().copied())
            .collect();
        let name = |v: ValueId| g.name(v).to_string();
        let grads: Map<String, Value> = cx
            .params
            .iter()
            .zip(&cx.grads)
            .map(|(&p, &d)| (name(p), Value::String(name(d))))
            .collect();
        let mut contract = Contract::new(GraphKind::Grad, name(loss));
        contract.data = cx
            .model_inputs
            .iter()
            .cloned()
            .chain(cx.label_inputs.iter().map(|&v| name(v)))
            .collect();
        let entry = |v: ValueId, role| StateEntry {
            input: name(v),
            output: None,
            role,
        };
        contract.state = cx
            .params
            .iter()
            .map(|&p| entry(p, StateRole::Param))
            .chain(cx.buffers.iter().map(|&(b, _)| entry(b, StateRole::Buffer)))
            .collect();
        contract.model_inputs = cx.model_inputs.clone();
        contract.model_outputs = cx.model_outputs.clone();
        contract.config = cx.config.clone();
        m.set_metadata("gen.grads", Value::Object(grads).to_string());
        super::contract::write(&contract, m);
        Ok(true)
    }
}
