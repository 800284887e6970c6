//! Sequence lowering: `SequenceAt(SplitToSequence(x, split, axis, keepdims), i)` with constant
//! `split` and `i` (what the dynamo exporter writes for `torch.split`, `chunk` and `unbind`)
//! becomes a Slice of x (plus a Squeeze for unbind), so autodiff sees tensors only.
//! Needs: constants folded (cleanup). Guarantees: every SequenceAt it could resolve is gone
//! and types are re-inferred downstream; the others stay, and autodiff reports them by name if they lie on a parameter's path.

use super::training_mode::{replace_value, LoweringError};
use super::{Context, Pass};
use crate::autodiff::ext::BuilderExt;
use crate::error::{Error, Result};
use crate::ir::infer::infer_graph;
use crate::ir::{Builder, Graph, Model, NodeId, Op, ValueId};

pub struct LowerSequences;

/// Where one element of a split sequence lies: `x[start..end]` along `axis`, squeezed or not.
struct Piece {
    x: ValueId,
    axis: i64,
    start: i64,
    end: i64,
    squeeze: bool,
}

impl Pass for LowerSequences {
    fn name(&self) -> &'static str {
        "lower-sequences"
    }

    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let g = &mut m.graph;
        let ats: Vec<(NodeId, Piece)> = g
            .order()
            .iter()
            .filter(|&&n| g.node(n).op == Op::SequenceAt)
            .filter_map(|&n| piece(g, n).map(|p| (n, p)))
            .collect();
        let changed = !ats.is_empty();
        for (n, p) in ats {
            let Some(old) = g.node(n).output(0) else {
                continue;
            };
            let prefix = format!("{}/", g.node(n).name);
            let mut b = Builder::new(g, opset, &prefix);
            let mut y = b.slice_const(p.x, &[p.start], &[p.end], &[p.axis]);
            if p.squeeze {
                y = b.squeeze(y, &[p.axis]);
            }
            g.remove_node(n);
            replace_value(g, old, y);
        }
        if changed {
            g.toposort().map_err(|cycle| {
                Error::stage(
                    "lower-sequences",
                    LoweringError::Cycle { nodes: cycle.len() },
                )
            })?;
            // the pieces' users learn the types the slices now give them
            infer_graph(g, opset).map_err(|e| Error::stage("lower-sequences", e))?;
        }
        Ok(changed)
    }
}

/// The piece a SequenceAt node reads, when its sequence comes from a SplitToSequence with
/// constant parameters.
fn piece(g: &Graph, n: NodeId) -> Option<Piece> {
    let at = g.node(n);
    let seq = at.input(0)?;
    let pos = *g.constant(at.input(1)?)?.to_i64_vec()?.first()?;
    let split_node = g.node(g.producer(seq)?);
    if split_node.op != Op::SplitToSequence {
        return None;
    }
    let x = split_node.input(0)?;
    let rank = g.ty(x).rank()? as i64;
    let axis = split_node.attr_int("axis").unwrap_or(0);
    let axis = if axis < 0 { axis + rank } else { axis };
    let dim = g.ty(x).shape()?.get(axis as usize)?.fixed();
    let keepdims = split_node.attr_int("keepdims").unwrap_or(1) != 0;
    let split = match split_node.input(1) {
        Some(s) => Some(g.constant(s)?),
        None => None,
    };
    let (sizes, squeeze): (Vec<i64>, bool) = match split {
        None => (vec![1; dim? as usize], !keepdims),
        Some(t) if t.dims.is_empty() => {
            let s = *t.to_i64_vec()?.first()?;
            let d = dim?;
            let chunks = (d + s - 1) / s;
            let mut sizes = vec![s; chunks as usize];
            if let Some(last) = sizes.last_mut() {
                *last = d - s * (chunks - 1);
            }
            (sizes, false)
        }
        Some(t) => (t.to_i64_vec()?, false),
    };
    let i = if pos < 0 {
        pos + sizes.len() as i64
    } else {
        pos
    };
    let i = usize::try_from(i).ok().filter(|&i| i < sizes.len())?;
    let start: i64 = sizes[..i].iter().sum();
    Some(Piece {
        x,
        axis,
        start,
        end: start + sizes[i],
        squeeze,
    })
}
