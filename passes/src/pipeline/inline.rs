//! Inlining of model-local functions (FunctionProto), which some exporters emit (e.g. torch's
//! dynamo exporter wrapping library ops). Training stages need every operator visible, so each
//! call is replaced by the function body: formal inputs/outputs bound to the call's values,
//! internal names given a unique prefix, attribute references (`ref_attr_name`) resolved from
//! the call or the function's defaults. Nested calls are inlined until none is left.
//! Needs: nothing. Guarantees: no node calls a model-local function; functions are dropped.

use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::onnx::{import_model, to_proto};
use onnx_protobuf::{AttributeProto, FunctionProto, GraphProto, Message, ModelProto, NodeProto};
use std::collections::HashMap;

pub struct InlineFunctions;

/// Calls nested deeper than this are treated as recursion.
const MAX_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error("function '{0}' calls itself (directly or through others)")]
    Recursive(String),
    #[error("function '{function}' imports opset {theirs} of domain '{domain}' but the model uses {ours}")]
    OpsetConflict {
        function: String,
        domain: String,
        theirs: i64,
        ours: i64,
    },
    #[error("re-import after inlining: {0}")]
    Import(#[from] crate::onnx::ImportError),
}

impl Pass for InlineFunctions {
    fn name(&self) -> &'static str {
        "inline-functions"
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        let extra = ModelProto::parse_from_bytes(&m.extra).unwrap_or_default();
        if extra.functions.is_empty() {
            return Ok(false);
        }
        inline(m, &extra.functions).map_err(|e| Error::stage("inline-functions", e))?;
        Ok(true)
    }
}

fn inline(m: &mut Model, functions: &[FunctionProto]) -> Result<(), InlineError> {
    let table: HashMap<(String, String), &FunctionProto> = functions
        .iter()
        .map(|f| ((f.domain.clone(), f.name.clone()), f))
        .collect();
    for f in functions {
        for o in &f.opset_import {
            let domain = if o.domain == "ai.onnx" { "" } else { &o.domain };
            match m.opsets.get(domain) {
                Some(&ours) if ours != o.version && !table.keys().any(|(d, _)| d == domain) => {
                    return Err(InlineError::OpsetConflict {
                        function: f.name.clone(),
                        domain: domain.to_string(),
                        theirs: o.version,
                        ours,
                    })
                }
                None => {
                    m.opsets.insert(domain.to_string(), o.version);
                }
                _ => {}
            }
        }
    }
    let externals: Vec<String> = m
        .graph
        .initializers()
        .filter(|(v, _)| m.graph.value(*v).external)
        .map(|(v, _)| m.graph.name(v).to_string())
        .collect();
    let mut mp = to_proto(m);
    let mut counter = 0usize;
    if let Some(g) = mp.graph.as_mut() {
        inline_graph(g, &table, &mut counter, 0)?;
    }
    mp.functions.clear();
    // the call domains are gone with the functions
    let used: std::collections::HashSet<String> = table.keys().map(|(d, _)| d.clone()).collect();
    mp.opset_import
        .retain(|o| !used.contains(&o.domain) || o.domain.is_empty());
    let mut inlined = import_model(mp, None)?;
    for name in externals {
        if let Some(v) = inlined.graph.by_name(&name) {
            inlined.graph.value_mut(v).external = true;
        }
    }
    *m = inlined;
    Ok(())
}

fn inline_graph(
    g: &mut GraphProto,
    table: &HashMap<(String, String), &FunctionProto>,
    counter: &mut usize,
    depth: usize,
) -> Result<(), InlineError> {
    let mut out = Vec::with_capacity(g.node.len());
    for node in std::mem::take(&mut g.node) {
        let Some(f) = table.get(&(node.domain.clone(), node.op_type.clone())) else {
            out.push(node);
            continue;
        };
        if depth >= MAX_DEPTH {
            return Err(InlineError::Recursive(f.name.clone()));
        }
        *counter += 1;
        let mut body = GraphProto::new();
        body.node = expand_call(&node, f, *counter);
        inline_graph(&mut body, table, counter, depth + 1)?;
        out.extend(body.node);
    }
    g.node = out;
    Ok(())
}

/// The body of `f` specialised for one call.
fn expand_call(call: &NodeProto, f: &FunctionProto, k: usize) -> Vec<NodeProto> {
    let prefix = format!(
        "{}__{}_{k}",
        if call.name.is_empty() {
            &f.name
        } else {
            &call.name
        },
        f.name
    );
    let mut rename: HashMap<String, String> = HashMap::new();
    for (i, formal) in f.input.iter().enumerate() {
        rename.insert(
            formal.clone(),
            call.input.get(i).cloned().unwrap_or_default(),
        );
    }
    for (i, formal) in f.output.iter().enumerate() {
        rename.insert(
            formal.clone(),
            call.output.get(i).cloned().unwrap_or_default(),
        );
    }
    let map = |name: &str, rename: &mut HashMap<String, String>| -> String {
        if name.is_empty() {
            return String::new();
        }
        rename
            .entry(name.to_string())
            .or_insert_with(|| format!("{prefix}/{name}"))
            .clone()
    };
    let attr_value = |a: &AttributeProto| -> Option<AttributeProto> {
        let source = call
            .attribute
            .iter()
            .find(|c| c.name == a.ref_attr_name)
            .or_else(|| f.attribute_proto.iter().find(|d| d.name == a.ref_attr_name))?;
        let mut v = source.clone();
        v.name = a.name.clone();
        Some(v)
    };
    f.node
        .iter()
        .map(|n| {
            let mut n = n.clone();
            n.input = n.input.iter().map(|i| map(i, &mut rename)).collect();
            n.output = n.output.iter().map(|o| map(o, &mut rename)).collect();
            if !n.name.is_empty() {
                n.name = format!("{prefix}/{}", n.name);
            }
            n.attribute = n
                .attribute
                .iter()
                .filter_map(|a| {
                    if a.ref_attr_name.is_empty() {
                        Some(a.clone())
                    } else {
                        attr_value(a)
                    }
                })
                .collect();
            n
        })
        .collect()
}
