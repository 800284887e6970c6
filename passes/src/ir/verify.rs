//! The verifier: run after import and after every pass. It names the node (and the pass, via
//! the pass manager) that broke an invariant.

use super::graph::{Graph, NodeId, ValueDef, ValueId};
use super::ops::Op;
use std::collections::HashSet;

/// An IR invariant that does not hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct VerifyError {
    /// Which node or value: `graph 'main', node 'fc1' (Gemm)`.
    pub location: String,
    pub message: String,
}

/// Checks a graph and its subgraphs.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    verify_scoped(g, &[])
}

fn verify_scoped(g: &Graph, outer: &[&Graph]) -> Result<(), VerifyError> {
    let here = |what: String, message: String| VerifyError {
        location: format!("graph '{}', {what}", g.name),
        message,
    };
    let mut defined: HashSet<ValueId> = HashSet::new();
    for v in g.value_ids() {
        let val = g.value(v);
        match val.def {
            ValueDef::Input => {
                defined.insert(v);
            }
            ValueDef::Initializer => {
                if val.init.is_none() {
                    return Err(here(
                        format!("value '{}'", val.name),
                        "initializer without data".into(),
                    ));
                }
                defined.insert(v);
            }
            ValueDef::Outer => {
                if !outer.iter().any(|o| o.by_name(&val.name).is_some()) {
                    return Err(here(
                        format!("value '{}'", val.name),
                        "captured from an enclosing graph that does not define it".into(),
                    ));
                }
                defined.insert(v);
            }
            ValueDef::Node(..) => {}
        }
        if g.by_name(&val.name) != Some(v) {
            return Err(here(
                format!("value '{}'", val.name),
                "name table out of date (duplicate value name)".into(),
            ));
        }
    }
    for &i in &g.inputs {
        if g.value(i).def != ValueDef::Input {
            return Err(here(
                format!("input '{}'", g.name(i)),
                "listed as a graph input but not defined as one".into(),
            ));
        }
    }
    let mut seen_nodes: HashSet<NodeId> = HashSet::new();
    for &n in g.order() {
        let node = g.node(n);
        let label = || format!("node {}", node.label(n));
        if !seen_nodes.insert(n) {
            return Err(here(label(), "appears twice in the node order".into()));
        }
        for v in g.node_uses(n) {
            if !defined.contains(&v) {
                let why = match g.value(v).def {
                    ValueDef::Node(p, _) if g.is_live(p) => {
                        "is used before the node that produces it (not in topological order)"
                    }
                    ValueDef::Node(..) => "is produced by a node that was removed",
                    _ => "is not defined",
                };
                return Err(here(label(), format!("input '{}' {why}", g.name(v))));
            }
        }
        for (slot, o) in node.outputs.iter().enumerate() {
            let Some(o) = *o else { continue };
            if g.value(o).def != ValueDef::Node(n, slot) {
                return Err(here(
                    label(),
                    format!("output '{}' does not point back to this node", g.name(o)),
                ));
            }
            if !defined.insert(o) {
                return Err(here(
                    label(),
                    format!("output '{}' defined twice", g.name(o)),
                ));
            }
        }
        check_types(g, n).map_err(|m| here(label(), m))?;
        if node.subgraphs().next().is_some() {
            let mut scope: Vec<&Graph> = vec![g];
            scope.extend_from_slice(outer);
            for sg in node.subgraphs() {
                verify_scoped(sg, &scope)?;
            }
        }
    }
    for &o in &g.outputs {
        if !defined.contains(&o) {
            return Err(here(
                format!("output '{}'", g.name(o)),
                "graph output is not defined".into(),
            ));
        }
    }
    Ok(())
}

/// Element-type agreement for the arithmetic ops whose ONNX type constraints tie inputs.
fn check_types(g: &Graph, n: NodeId) -> Result<(), String> {
    let node = g.node(n);
    let tied: &[usize] = match node.op {
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::MatMul | Op::Sum | Op::Min | Op::Max => &[0, 1],
        Op::Gemm => &[0, 1, 2],
        Op::Where => &[1, 2],
        Op::Concat => &[0, 1],
        _ => return Ok(()),
    };
    let dts: Vec<_> = tied
        .iter()
        .filter_map(|&i| node.input(i))
        .filter_map(|v| g.ty(v).dtype().map(|d| (v, d)))
        .collect();
    if let Some(&(v0, d0)) = dts.first() {
        if let Some(&(v1, d1)) = dts.iter().find(|(_, d)| *d != d0) {
            return Err(format!(
                "element types disagree: '{}' is {d0} but '{}' is {d1}",
                g.name(v0),
                g.name(v1)
            ));
        }
    }
    Ok(())
}
