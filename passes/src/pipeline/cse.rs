//! Common-subexpression elimination: two nodes with the same operator, the same inputs and
//! the same attributes compute the same values, so uses of the second are redirected to the
//! first (the second then dies in DCE). Random operators and unknown-domain operators are never
//! merged, and nodes holding subgraphs are left alone.
//! Needs: a topological order. Guarantees: no two mergeable nodes compute the same thing.

use super::{Context, Pass};
use crate::error::Result;
use crate::ir::{Attr, Graph, Model, NodeId, Op, ValueId};
use std::collections::HashMap;

pub struct CommonSubexpressions;

impl Pass for CommonSubexpressions {
    fn name(&self) -> &'static str {
        "cse"
    }
    fn is_cleanup(&self) -> bool {
        true
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        Ok(merge(&mut m.graph))
    }
}

fn mergeable(op: &Op) -> bool {
    !op.is_random() && !matches!(op, Op::Other { .. })
}

/// The identity of a node's computation.
fn key(g: &Graph, n: NodeId) -> Option<String> {
    let node = g.node(n);
    if !mergeable(&node.op)
        || node
            .attrs
            .values()
            .any(|a| matches!(a, Attr::Graph(_) | Attr::Graphs(_)))
    {
        return None;
    }
    let ins: Vec<String> = node
        .inputs
        .iter()
        .map(|i| i.map(|v| v.0.to_string()).unwrap_or_default())
        .collect();
    Some(format!(
        "{}|{}|{}|{:?}",
        node.op,
        node.outputs.len(),
        ins.join(","),
        node.attrs
    ))
}

/// Merges duplicate nodes of `g`; returns whether any use was redirected.
pub fn merge(g: &mut Graph) -> bool {
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    let mut redirect: Vec<(ValueId, ValueId)> = Vec::new();
    for n in g.order().to_vec() {
        let Some(k) = key(g, n) else { continue };
        let Some(&first) = seen.get(&k) else {
            seen.insert(k, n);
            continue;
        };
        for (dup, keep) in g.node(n).outputs.iter().zip(&g.node(first).outputs) {
            // a graph output keeps its own value (and name)
            if let (Some(dup), Some(keep)) = (*dup, *keep) {
                if !g.outputs.contains(&dup) {
                    redirect.push((dup, keep));
                }
            }
        }
    }
    if redirect.is_empty() {
        return false;
    }
    let map: HashMap<ValueId, ValueId> = redirect.into_iter().collect();
    let mut changed = false;
    for n in g.order().to_vec() {
        for i in g.node_mut(n).inputs.iter_mut().flatten() {
            if let Some(&keep) = map.get(i) {
                *i = keep;
                changed = true;
            }
        }
    }
    changed
}
