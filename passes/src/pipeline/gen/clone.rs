//! Region cloning for the GeN probes: a copy, inside the `If`'s then-branch, of the part of the
//! main graph that computes some roots with some values substituted. Only nodes that depend on
//! a substituted value (or draw random numbers) are copied; everything else is captured from
//! the main graph by name, never copied.

use crate::ir::{Attr, Builder, Graph, Op, ValueDef, ValueId};
use std::collections::{HashMap, HashSet};

/// Captures value `v` of the enclosing graph `src` in subgraph `dst` (by name).
pub fn capture(src: &Graph, dst: &mut Graph, v: ValueId) -> ValueId {
    dst.add_outer(src.name(v), src.ty(v).clone())
}

/// Copies into subgraph `dst` the part of `src` that computes `roots` with the values in
/// `subst` (keys: values of `src`; values: values of `dst`) replaced, and every read of a key
/// of `alias` read as its value instead (both values of `src`: a lowered dropout's output read
/// as its input makes the copy deterministic). Only nodes that depend on a substituted or
/// aliased value (or draw random numbers) are copied, with `prefix` prepended and `suffix`
/// appended to their names; every other value they read is captured from `src` by name.
/// Returns the `dst` values of `roots`.
pub fn clone_region(
    src: &Graph,
    dst: &mut Graph,
    roots: &[ValueId],
    subst: &HashMap<ValueId, ValueId>,
    alias: &HashMap<ValueId, ValueId>,
    prefix: &str,
    suffix: &str,
) -> Vec<ValueId> {
    let resolve = |mut v: ValueId| {
        // aliases may chain (dropout of a dropout); a cycle would be a caller's bug
        for _ in 0..=alias.len() {
            match alias.get(&v) {
                Some(&a) => v = a,
                None => break,
            }
        }
        v
    };
    // nodes the roots depend on, not looking through substituted values
    let mut needed: HashSet<ValueId> = HashSet::new();
    let mut stack: Vec<ValueId> = roots.iter().map(|&r| resolve(r)).collect();
    let mut region = HashSet::new();
    while let Some(v) = stack.pop() {
        if !needed.insert(v) || subst.contains_key(&v) {
            continue;
        }
        if let Some(n) = src.producer(v) {
            if region.insert(n) {
                stack.extend(src.node_uses(n).into_iter().map(resolve));
            }
        }
    }
    let mut map: HashMap<ValueId, ValueId> = subst.clone();
    for &n in src.order() {
        if !region.contains(&n) {
            continue;
        }
        let node = src.node(n);
        let uses = src.node_uses(n);
        let varying = node.op.is_random()
            || uses
                .iter()
                .any(|&v| alias.contains_key(&v) || map.contains_key(&v));
        if !varying {
            continue;
        }
        let inputs: Vec<Option<ValueId>> = node
            .inputs
            .iter()
            .map(|i| {
                i.map(|v| {
                    let v = resolve(v);
                    match map.get(&v) {
                        Some(&m) => m,
                        None => capture(src, dst, v),
                    }
                })
            })
            .collect();
        let out_names: Vec<String> = node
            .outputs
            .iter()
            .map(|o| match o {
                Some(o) => format!("{prefix}{}{suffix}", src.name(*o)),
                None => String::new(),
            })
            .collect();
        let out_refs: Vec<&str> = out_names.iter().map(String::as_str).collect();
        let mut attrs = node.attrs.clone();
        for a in attrs.values_mut() {
            match a {
                Attr::Graph(sg) => fix_captures(sg, src, dst, &map),
                Attr::Graphs(gs) => gs
                    .iter_mut()
                    .for_each(|sg| fix_captures(sg, src, dst, &map)),
                _ => {}
            }
        }
        let name = if node.name.is_empty() {
            String::new()
        } else {
            format!("{prefix}{}{suffix}", node.name)
        };
        let new = dst.add_node(node.op.clone(), &name, inputs, &out_refs, attrs);
        {
            let nn = dst.node_mut(new);
            nn.doc = node.doc.clone();
            nn.extra = without_metadata(&node.extra);
        }
        let new_outs = dst.node(new).outputs.clone();
        for (o, no) in node.outputs.iter().zip(new_outs) {
            if let (Some(o), Some(no)) = (o, no) {
                dst.value_mut(no).ty = src.ty(*o).clone();
                map.insert(*o, no);
            }
        }
    }
    roots
        .iter()
        .map(|&r| {
            let r = resolve(r);
            match map.get(&r) {
                Some(&m) => m,
                None => capture(src, dst, r),
            }
        })
        .collect()
}

/// A node's unmodelled protobuf fields without its `metadata_props`: exporters' per-node
/// debug information (source scopes, class hierarchies) is not repeated in every probe copy.
fn without_metadata(extra: &[u8]) -> Vec<u8> {
    use onnx_protobuf::{Message, NodeProto};
    if extra.is_empty() {
        return Vec::new();
    }
    match NodeProto::parse_from_bytes(extra) {
        Ok(mut p) => {
            p.metadata_props.clear();
            p.write_to_bytes().unwrap_or_default()
        }
        Err(_) => extra.to_vec(),
    }
}

/// A subgraph copied into a cloned node reads enclosing values by name: point the captures of
/// substituted or cloned values at their copies, and capture the others through `dst`.
fn fix_captures(sg: &mut Graph, src: &Graph, dst: &mut Graph, map: &HashMap<ValueId, ValueId>) {
    let outer: Vec<ValueId> = sg.outer_values().collect();
    for o in outer {
        let name = sg.name(o).to_string();
        let Some(sv) = src.by_name(&name) else {
            continue;
        };
        match map.get(&sv) {
            Some(&m) => {
                let new_name = dst.name(m).to_string();
                sg.rename(o, &new_name);
            }
            None => {
                capture(src, dst, sv);
            }
        }
    }
}

/// Subgraph outputs as distinct values produced inside the subgraph: a value listed twice
/// (momentum's direction is its buffer) or captured from outside goes through an Identity.
pub fn distinct_outputs(b: &mut Builder, outs: Vec<ValueId>) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    outs.into_iter()
        .map(|v| {
            let local = matches!(b.g.value(v).def, ValueDef::Node(..));
            if local && seen.insert(v) {
                v
            } else {
                b.op(Op::Identity, &[v], vec![])
            }
        })
        .collect()
}
