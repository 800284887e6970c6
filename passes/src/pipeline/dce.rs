//! Dead-code elimination: removes nodes none of whose outputs reach a graph output, in the
//! main graph and, recursively, inside subgraphs (a subgraph's outputs are its roots).
//! Needs: nothing. Guarantees: every remaining node contributes to an output.

use super::{Context, Pass};
use crate::error::Result;
use crate::ir::{Attr, Graph, Model, ValueId};
use std::collections::HashSet;

pub struct DeadCodeElimination;

impl Pass for DeadCodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn is_cleanup(&self) -> bool {
        true
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        Ok(eliminate(&mut m.graph))
    }
}

/// Removes dead nodes from `g` and its subgraphs; returns whether anything was removed.
pub fn eliminate(g: &mut Graph) -> bool {
    let mut live: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut dead = Vec::new();
    for &n in g.order().iter().rev() {
        let node = g.node(n);
        if node.outputs.iter().flatten().any(|o| live.contains(o)) {
            live.extend(g.node_uses(n));
        } else {
            dead.push(n);
        }
    }
    let mut changed = !dead.is_empty();
    for n in dead {
        g.remove_node(n);
    }
    for n in g.order().to_vec() {
        for a in g.node_mut(n).attrs.values_mut() {
            match a {
                Attr::Graph(sg) => changed |= eliminate(sg),
                Attr::Graphs(gs) => gs.iter_mut().for_each(|sg| changed |= eliminate(sg)),
                _ => {}
            }
        }
    }
    changed
}
