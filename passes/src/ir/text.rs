//! The canonical text form: deterministic, values renumbered in topological order (`%0`, `%1`,
//! ...). Used by the snapshot tests and by `gen-compile --print-ir` / `--print-after`, and read
//! back by [`parse_model`] (so tests can be written as text).
//!
//! ```text
//! model ir=8 opsets[ai.onnx=17]
//! meta "key" = "value"                        (values over 60 characters end in `…`)
//! graph "name" {
//!   in %0 "x": f32[batch,3]                   (an input; `= tensor` gives it a default)
//!   init %1 "w" = f32[3,2] #1a2b3c4d          (initializers, sorted by name)
//!   %2: f32[batch,2], _ = Op(%0, %1, _) {k=v} (`_`: an omitted optional input or output)
//!     then_branch:                            (a GRAPH attribute; GRAPHS ones are `key[i]:`)
//!       graph "then" { ... }                  (reads enclosing values by their `%N`)
//!   return %2 "y"
//! }
//! ```
//!
//! Types: `f32[batch,3]` (a symbol that is not a plain identifier is quoted), `f32[..]` (rank
//! unknown), `?` (unknown), `opaque` (a sequence/map/optional type). Attributes: `1` int,
//! `1.0` float (always with `.`, an exponent, `NaN` or `inf`), `"s"` string, a tensor,
//! `[..]` lists (`ints[]`, `floats[]`, ... when empty), `<raw 0a1b>` kept protobuf bytes.
//!
//! Tensors: up to 8 elements are printed in full (`f32[2] {0, 1.5}`; integers exactly, floats
//! as the shortest decimal of their f64 value, which reads back to the same bits); bigger
//! ones as dtype, shape and content hash (`f32[64,10] #1a2b3c4d`), as are small ones of types
//! without a text form (`u16[2] {#1a2b3c4d}`). The parser takes hashed tensors from a side
//! table keyed by hash ([`tensors_by_hash`] of the printed model); a tensor written in full
//! is accepted at any size, so hand-written models need no table.
//!
//! What the text does not hold (so a parsed model lacks it): node names (parsed nodes are
//! unnamed), names of values that are not inputs, initializers or graph outputs (parsed ones
//! are named `%N`), doc strings, producer fields, `extra` protobuf fields, external-data flags,
//! the bytes of `opaque` types (parsed as an empty opaque type), metadata past 60 characters,
//! and string elements that are not UTF-8. Print → parse → print gives the same text.

use super::graph::{Attr, Graph, Model, ValueDef, ValueId};
use super::types::{Dim, Tensor, TensorData, Type};
use std::collections::HashMap;
use std::fmt::Write;

mod parse;
pub use parse::{parse_model, TextError, TextErrorKind};

/// Tensors with at most this many elements are printed in full.
const INLINE_ELEMENTS: usize = 8;

/// Renders a whole model.
pub fn model_to_text(m: &Model) -> String {
    let mut s = String::new();
    let opsets: Vec<String> = m
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    let _ = writeln!(s, "model ir={} opsets[{}]", m.ir_version, opsets.join(", "));
    for (k, v) in &m.metadata {
        let short: String = v.chars().take(60).collect();
        let _ = writeln!(
            s,
            "meta {k:?} = {short:?}{}",
            if v.chars().count() > 60 { "…" } else { "" }
        );
    }
    graph_to_text(&m.graph, 0, &mut HashMap::new(), &mut s);
    s
}

/// Renders one graph (used for subgraphs too; `names` carries enclosing-scope numbering).
pub fn graph_to_text(
    g: &Graph,
    indent: usize,
    outer: &mut HashMap<String, String>,
    s: &mut String,
) {
    let pad = "  ".repeat(indent);
    let mut num: HashMap<ValueId, String> = HashMap::new();
    let mut next = outer.len();
    let mut fresh = |v: ValueId, num: &mut HashMap<ValueId, String>| {
        let id = format!("%{next}");
        next += 1;
        num.insert(v, id.clone());
        id
    };
    let _ = writeln!(s, "{pad}graph {:?} {{", g.name);
    for o in g.outer_values() {
        let id = outer
            .get(g.name(o))
            .cloned()
            .unwrap_or_else(|| format!("^{:?}", g.name(o)));
        num.insert(o, id);
    }
    for &i in &g.inputs {
        let id = fresh(i, &mut num);
        let v = g.value(i);
        let default = v
            .init
            .as_ref()
            .map(|t| format!(" = {}", tensor_text(t)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{pad}  in {id} {:?}: {}{default}",
            v.name,
            type_text(&v.ty)
        );
    }
    let mut inits: Vec<ValueId> = g
        .value_ids()
        .filter(|&v| g.value(v).def == ValueDef::Initializer)
        .collect();
    inits.sort_by(|a, b| g.name(*a).cmp(g.name(*b)));
    for v in inits {
        let id = fresh(v, &mut num);
        let t = g
            .value(v)
            .init
            .as_ref()
            .map(tensor_text)
            .unwrap_or_default();
        let _ = writeln!(s, "{pad}  init {id} {:?} = {t}", g.name(v));
    }
    for &n in g.order() {
        let node = g.node(n);
        let ins: Vec<String> = node
            .inputs
            .iter()
            .map(|i| match i {
                Some(v) => num
                    .get(v)
                    .cloned()
                    .unwrap_or_else(|| format!("?{:?}", g.name(*v))),
                None => "_".into(),
            })
            .collect();
        let outs: Vec<String> = node
            .outputs
            .iter()
            .map(|o| match o {
                Some(v) => {
                    let id = fresh(*v, &mut num);
                    format!("{id}: {}", type_text(g.ty(*v)))
                }
                None => "_".into(),
            })
            .collect();
        let mut attrs: Vec<String> = Vec::new();
        let mut subgraphs: Vec<(String, &Graph)> = Vec::new();
        for (k, a) in &node.attrs {
            match a {
                Attr::Graph(sg) => subgraphs.push((k.clone(), sg)),
                Attr::Graphs(gs) if !gs.is_empty() => subgraphs.extend(
                    gs.iter()
                        .enumerate()
                        .map(|(i, sg)| (format!("{k}[{i}]"), sg)),
                ),
                _ => attrs.push(format!("{k}={}", attr_text(a))),
            }
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", attrs.join(", "))
        };
        let _ = writeln!(
            s,
            "{pad}  {} = {}({}){attrs}",
            outs.join(", "),
            node.op,
            ins.join(", ")
        );
        if !subgraphs.is_empty() {
            let mut scope = outer.clone();
            for (v, id) in &num {
                scope.insert(g.name(*v).to_string(), id.clone());
            }
            for (k, sg) in subgraphs {
                let _ = writeln!(s, "{pad}    {k}:");
                graph_to_text(sg, indent + 3, &mut scope, s);
            }
        }
    }
    let outs: Vec<String> = g
        .outputs
        .iter()
        .map(|o| {
            format!(
                "{} {:?}",
                num.get(o).cloned().unwrap_or_else(|| "?".into()),
                g.name(*o)
            )
        })
        .collect();
    let _ = writeln!(s, "{pad}  return {}", outs.join(", "));
    let _ = writeln!(s, "{pad}}}");
}

/// `f32[batch,64]`, `i64[]`, `?`.
pub fn type_text(t: &Type) -> String {
    match t {
        Type::Unknown => "?".into(),
        Type::Opaque(_) => "opaque".into(),
        Type::Tensor(tt) => match &tt.shape {
            None => format!("{}[..]", tt.dtype),
            Some(dims) => format!("{}[{}]", tt.dtype, dims_text(dims)),
        },
    }
}

fn dims_text(dims: &[Dim]) -> String {
    dims.iter()
        .map(|d| match d {
            Dim::Sym(s) if !is_plain_symbol(s) => format!("{s:?}"),
            _ => d.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A symbolic dimension printed bare: an identifier that cannot be read as a number or `?`.
fn is_plain_symbol(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Small tensors in full, big ones as dtype, shape and hash.
pub fn tensor_text(t: &Tensor) -> String {
    let head = format!(
        "{}[{}]",
        t.dtype,
        dims_text(&t.dims.iter().map(|&d| Dim::Fixed(d)).collect::<Vec<_>>())
    );
    if t.numel() > INLINE_ELEMENTS {
        return format!("{head} #{}", t.hash_hex());
    }
    let body = match (&t.data, t.to_i64_vec(), t.to_f64_vec()) {
        (TensorData::Strings(ss), _, _) => ss
            .iter()
            .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
            .collect::<Vec<_>>()
            .join(", "),
        (_, Some(ints), _) => ints
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        (_, _, Some(vals)) => vals
            .iter()
            .map(|v| format!("{v}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => format!("#{}", t.hash_hex()),
    };
    format!("{head} {{{body}}}")
}

fn attr_text(a: &Attr) -> String {
    match a {
        // empty lists name their kind: `[]` alone would not say which list it is
        Attr::Floats(v) if v.is_empty() => "floats[]".into(),
        Attr::Ints(v) if v.is_empty() => "ints[]".into(),
        Attr::Strings(v) if v.is_empty() => "strings[]".into(),
        Attr::Tensors(v) if v.is_empty() => "tensors[]".into(),
        Attr::Graphs(v) if v.is_empty() => "graphs[]".into(),
        Attr::Float(f) => format!("{f:?}"),
        Attr::Int(i) => i.to_string(),
        Attr::String(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Attr::Tensor(t) => tensor_text(t),
        Attr::Floats(v) => format!("{v:?}"),
        Attr::Ints(v) => format!("{v:?}"),
        Attr::Strings(v) => format!(
            "{:?}",
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
        ),
        Attr::Tensors(ts) => format!(
            "[{}]",
            ts.iter().map(tensor_text).collect::<Vec<_>>().join(", ")
        ),
        Attr::Graph(_) | Attr::Graphs(_) => "<graph>".into(),
        Attr::Raw(b) => format!(
            "<raw {}>",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// Every tensor of a model (initializers, input defaults, tensor attributes, subgraphs
/// included) by content hash: the side table [`parse_model`] reads hashed tensors from.
pub fn tensors_by_hash(m: &Model) -> HashMap<String, Tensor> {
    fn walk(g: &Graph, out: &mut HashMap<String, Tensor>) {
        let mut add = |t: &Tensor| {
            out.entry(t.hash_hex()).or_insert_with(|| t.clone());
        };
        for (_, t) in g.initializers() {
            add(t);
        }
        for &n in g.order() {
            for a in g.node(n).attrs.values() {
                match a {
                    Attr::Tensor(t) => add(t),
                    Attr::Tensors(ts) => ts.iter().for_each(&mut add),
                    _ => {}
                }
            }
        }
        for &n in g.order() {
            for sg in g.node(n).subgraphs() {
                walk(sg, out);
            }
        }
    }
    let mut out = HashMap::new();
    walk(&m.graph, &mut out);
    out
}
