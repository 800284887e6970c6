//! The trained model as a plain inference ONNX: the companion eval graph pruned to the user's
//! model outputs from the model inputs, with the trained parameters and buffers turned from graph
//! inputs into initializers. Models over 1 GiB of weights get an external data file beside them.

use std::collections::HashSet;
use std::path::Path;

use onnx_protobuf::{GraphProto, NodeProto};

use crate::error::{Result, RuntimeError};
use crate::model::{decode_tensor, encode_tensor, externalize, OnnxModel};
use crate::session::Tensors;

/// Above this many bytes of weights the export uses external data (protobuf's limit is 2 GiB).
const EXTERNAL_DATA_ABOVE: usize = 1 << 30;

/// Writes `out`: `eval_model` pruned to `model_outputs` computed from `model_inputs`, with every
/// tensor of `trained` (state by input name) baked in as an initializer.
pub fn export_inference(
    eval_model: &Path,
    model_inputs: &[String],
    model_outputs: &[String],
    trained: &Tensors,
    out: &Path,
) -> Result<()> {
    let model = OnnxModel::read(eval_model)?;
    let err = |message: String| RuntimeError::Model {
        path: eval_model.to_path_buf(),
        message: format!("cannot export the inference model: {message}"),
    };
    if model_outputs.is_empty() {
        return Err(err("the contract lists no model_outputs".into()));
    }
    let dir = eval_model.parent().unwrap_or(Path::new("."));
    let mut proto = model.proto.clone();
    let graph = proto.graph.mut_or_insert_default();

    for name in model_outputs {
        if !graph.output.iter().any(|o| &o.name == name) {
            return Err(err(format!(
                "model output `{name}` is not an output of the eval graph"
            )));
        }
    }
    for name in model_inputs {
        if !graph.input.iter().any(|i| &i.name == name) {
            return Err(err(format!(
                "model input `{name}` is not an input of the eval graph"
            )));
        }
    }

    // Keep the nodes the outputs depend on (nodes are in topological order).
    let mut needed: HashSet<String> = model_outputs.iter().cloned().collect();
    let mut kept = Vec::new();
    for node in graph.node.iter().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            needed.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
            needed.extend(subgraph_references(node));
            kept.push(node.clone());
        }
    }
    kept.reverse();
    let produced: HashSet<&str> = kept
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();

    // Initializers: trained values first, then the graph's own constants (external data resolved).
    let mut initializers = Vec::new();
    let mut baked: HashSet<String> = HashSet::new();
    for (name, tensor) in trained {
        if needed.contains(name) && !model_inputs.contains(name) {
            initializers.push(encode_tensor(name, tensor));
            baked.insert(name.clone());
        }
    }
    for t in &graph.initializer {
        if needed.contains(&t.name) && !baked.contains(&t.name) && !model_inputs.contains(&t.name) {
            initializers.push(encode_tensor(&t.name, &decode_tensor(t, dir)?));
            baked.insert(t.name.clone());
        }
    }

    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| model_inputs.contains(&i.name))
        .cloned()
        .collect();
    if let Some(missing) = graph.input.iter().find(|i| {
        needed.contains(&i.name) && !model_inputs.contains(&i.name) && !baked.contains(&i.name)
    }) {
        return Err(err(format!(
            "the model outputs depend on graph input `{}`, which is neither a model input nor trained state",
            missing.name
        )));
    }
    let outputs: Vec<_> = model_outputs
        .iter()
        .filter_map(|name| graph.output.iter().find(|o| &o.name == name).cloned())
        .collect();
    let value_info: Vec<_> = graph
        .value_info
        .iter()
        .filter(|v| produced.contains(v.name.as_str()))
        .cloned()
        .collect();

    graph.node = kept;
    graph.initializer = initializers;
    graph.input = inputs;
    graph.output = outputs;
    graph.value_info = value_info;
    proto
        .metadata_props
        .retain(|p| p.key != crate::contract::CONTRACT_KEY);

    let weight_bytes: usize = proto
        .graph
        .initializer
        .iter()
        .map(|t| t.raw_data.len())
        .sum();
    if weight_bytes > EXTERNAL_DATA_ABOVE {
        let location = format!(
            "{}.data",
            out.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        externalize(&mut proto, out, &location, 1024)?;
    }
    OnnxModel::write(&proto, out)
}

/// Every value name used inside the node's subgraphs (outer-scope references included).
fn subgraph_references(node: &NodeProto) -> Vec<String> {
    fn walk(g: &GraphProto, out: &mut Vec<String>) {
        for n in &g.node {
            out.extend(n.input.iter().filter(|i| !i.is_empty()).cloned());
            for a in &n.attribute {
                a.g.as_ref()
                    .into_iter()
                    .chain(a.graphs.iter())
                    .for_each(|g| walk(g, out));
            }
        }
    }
    let mut out = Vec::new();
    for a in &node.attribute {
        a.g.as_ref()
            .into_iter()
            .chain(a.graphs.iter())
            .for_each(|g| walk(g, &mut out));
    }
    out
}
