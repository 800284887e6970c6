//! Raising a model's default-domain opset to `MIN_OPSET` so the gradient operators exist with
//! the semantics the rules assume. Allowed only when every node keeps its meaning: an operator
//! whose definition changed incompatibly between the model's opset and the target (axes turned
//! into inputs, Softmax's axis semantics, removed attributes, ...) is an error naming the node.

use super::cx::{AutodiffError, MIN_OPSET};
use crate::ir::{Graph, Model};

/// (operator, the opset at which its definition changed incompatibly)
const BREAKING: &[(&str, i64)] = &[
    ("Concat", 4),
    ("Reshape", 5),
    ("Tile", 6),
    ("Add", 7),
    ("Sub", 7),
    ("Mul", 7),
    ("Div", 7),
    ("Pow", 7),
    ("Gemm", 7),
    ("PRelu", 7),
    ("Equal", 7),
    ("Greater", 7),
    ("Less", 7),
    ("And", 7),
    ("Or", 7),
    ("Xor", 7),
    ("Scan", 9),
    ("BatchNormalization", 9),
    ("Upsample", 10),
    ("Slice", 10),
    ("TopK", 10),
    ("Pad", 11),
    ("Clip", 11),
    ("Resize", 11),
    ("Scatter", 11),
    ("Dropout", 12),
    ("Squeeze", 13),
    ("Unsqueeze", 13),
    ("ReduceSum", 13),
    ("Split", 13),
    ("Softmax", 13),
    ("LogSoftmax", 13),
    ("Hardmax", 13),
    ("BatchNormalization", 14),
    ("RoiAlign", 16),
];

/// Raises `m` to `MIN_OPSET` when it is below; returns whether it changed.
pub fn raise_opset(m: &mut Model) -> Result<bool, AutodiffError> {
    let from = m.opset();
    if from >= MIN_OPSET {
        return Ok(false);
    }
    check_graph(&m.graph, from)?;
    m.opsets.insert(String::new(), MIN_OPSET);
    Ok(true)
}

fn check_graph(g: &Graph, from: i64) -> Result<(), AutodiffError> {
    for &n in g.order() {
        let node = g.node(n);
        let op = node.op.to_string();
        if node.op.domain().is_empty() {
            let changed = BREAKING
                .iter()
                .filter(|(name, since)| *name == op && *since > from && *since <= MIN_OPSET)
                .map(|(_, since)| *since)
                .next();
            if let Some(since) = changed {
                return Err(AutodiffError::OpsetUpgrade {
                    from,
                    to: MIN_OPSET,
                    op,
                    node: node.label(n),
                    since,
                });
            }
        }
        for sg in node.subgraphs() {
            check_graph(sg, from)?;
        }
    }
    Ok(())
}
