//! ONNX function ops that tract lacks, expanded into standard ops before tract loads a graph:
//! `SoftmaxCrossEntropyLoss` (the loss gen-compile attaches for cross-entropy) and
//! `NegativeLogLikelihoodLoss`, following their ONNX function bodies (opset 15 and later, where
//! `CastLike` exists): `log_prob = LogSoftmax(scores, axis 1)`; the loss picks `−log_prob` at each
//! label (`GatherElements` on axis 1), weighs it by `weights[label]` and zeroes positions whose
//! label is `ignore_index`; `mean` divides by the sum of the weights kept (the count of kept
//! positions without weights). Subgraphs (the GeN probes inside `If`) are expanded too.

use tract_onnx::pb::{attribute_proto::AttributeType, AttributeProto, GraphProto, NodeProto};
use tract_onnx::pb::{tensor_proto::DataType, TensorProto};

/// The first opset with every op the expansion uses in its current form.
const MIN_OPSET: i64 = 15;

/// Expands the loss ops of `graph` and its subgraphs. Graphs older than opset 15 are left as they
/// are (tract then names the op it lacks).
pub(super) fn expand_loss_ops(graph: &mut GraphProto, opset: i64) {
    if opset < MIN_OPSET {
        return;
    }
    let mut nodes = Vec::with_capacity(graph.node.len());
    for mut node in std::mem::take(&mut graph.node) {
        for attr in &mut node.attribute {
            for g in attr.g.iter_mut().chain(&mut attr.graphs) {
                expand_loss_ops(g, opset);
            }
        }
        let standard = node.domain.is_empty() || node.domain == "ai.onnx";
        match node.op_type.as_str() {
            "SoftmaxCrossEntropyLoss" if standard => nodes.extend(expand(&node, true)),
            "NegativeLogLikelihoodLoss" if standard => nodes.extend(expand(&node, false)),
            _ => nodes.push(node),
        }
    }
    graph.node = nodes;
}

/// The first node of `graph` or its subgraphs that satisfies `pred`.
pub(super) fn find_node<'g>(
    graph: &'g GraphProto,
    pred: &dyn Fn(&NodeProto) -> bool,
) -> Option<&'g NodeProto> {
    graph.node.iter().find_map(|node| {
        node.attribute
            .iter()
            .flat_map(|a| a.g.iter().chain(&a.graphs))
            .find_map(|g| find_node(g, pred))
            .or_else(|| pred(node).then_some(node))
    })
}

/// Builds the replacement nodes of one loss node, named after its first output.
struct Expansion<'a> {
    prefix: &'a str,
    nodes: Vec<NodeProto>,
}

impl Expansion<'_> {
    /// A node with one output; returns the output's name (`out`, or a fresh one).
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        out: Option<&str>,
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = out.map_or_else(
            || format!("{}/tract_expand/{}", self.prefix, self.nodes.len()),
            str::to_string,
        );
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: format!("{}/tract_expand/{op}{}", self.prefix, self.nodes.len()),
            op_type: op.to_string(),
            attribute,
            ..NodeProto::default()
        });
        output
    }

    fn int64(&mut self, dims: &[i64], values: &[i64]) -> String {
        let value = TensorProto {
            dims: dims.to_vec(),
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..TensorProto::default()
        };
        let attr = AttributeProto {
            name: "value".into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(value),
            ..AttributeProto::default()
        };
        self.node("Constant", &[], None, vec![attr])
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..AttributeProto::default()
    }
}

/// The replacement of `node` (`softmax`: SoftmaxCrossEntropyLoss, else NegativeLogLikelihoodLoss).
fn expand(node: &NodeProto, softmax: bool) -> Vec<NodeProto> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let reduction = attr("reduction").map_or(b"mean".as_slice(), |a| a.s.as_slice());
    let ignore_index = attr("ignore_index").map(|a| a.i);
    let input = |i: usize| {
        node.input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let output = |i: usize| {
        node.output
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(scores), Some(labels), Some(loss)) = (input(0), input(1), output(0)) else {
        return vec![node.clone()];
    };
    let mut e = Expansion {
        prefix: loss,
        nodes: Vec::new(),
    };
    let log_prob = if softmax {
        e.node(
            "LogSoftmax",
            &[scores],
            output(1),
            vec![int_attr("axis", 1)],
        )
    } else {
        scores.to_string()
    };
    let axis1 = e.int64(&[1], &[1]);
    let labels = e.node(
        "Cast",
        &[labels],
        None,
        vec![int_attr("to", DataType::Int64 as i64)],
    );
    let keep = ignore_index.map(|ii| {
        let ii = e.int64(&[], &[ii]);
        let ignored = e.node("Equal", &[&labels, &ii], None, vec![]);
        e.node("Not", &[&ignored], None, vec![])
    });
    let labels = match &keep {
        Some(keep) => {
            let zero = e.int64(&[], &[0]);
            e.node("Where", &[keep, &labels, &zero], None, vec![])
        }
        None => labels,
    };
    let index = e.node("Unsqueeze", &[&labels, &axis1], None, vec![]);
    let picked = e.node(
        "GatherElements",
        &[&log_prob, &index],
        None,
        vec![int_attr("axis", 1)],
    );
    let picked = e.node("Squeeze", &[&picked, &axis1], None, vec![]);
    let mut losses = e.node("Neg", &[&picked], None, vec![]);
    let class_weight = input(2).map(|w| e.node("Gather", &[w, &labels], None, vec![]));
    let mask = keep.map(|k| e.node("CastLike", &[&k, &losses], None, vec![]));
    let weight = match (class_weight, mask) {
        (Some(w), Some(m)) => Some(e.node("Mul", &[&w, &m], None, vec![])),
        (w, m) => w.or(m),
    };
    if let Some(w) = &weight {
        losses = e.node("Mul", &[&losses, w], None, vec![]);
    }
    let all = || vec![int_attr("keepdims", 0)];
    match (reduction, &weight) {
        (b"none", _) => {
            e.node("Identity", &[&losses], Some(loss), vec![]);
        }
        (b"sum", _) => {
            e.node("ReduceSum", &[&losses], Some(loss), all());
        }
        (_, Some(w)) => {
            let total = e.node("ReduceSum", &[&losses], None, all());
            let count = e.node("ReduceSum", &[w], None, all());
            e.node("Div", &[&total, &count], Some(loss), vec![]);
        }
        (_, None) => {
            e.node("ReduceMean", &[&losses], Some(loss), all());
        }
    }
    e.nodes
}
