//! The canonical text form: deterministic and complete, values renumbered in topological
//! order (`%0`, `%1`, ...), big tensors shown as dtype, shape and a short hash. Used by the
//! snapshot tests and by `gen-compile --print-ir` / `--print-after`.

use super::graph::{Attr, Graph, Model, ValueDef, ValueId};
use super::types::{Dim, Tensor, TensorData, Type};
use std::collections::HashMap;
use std::fmt::Write;

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
            if v.len() > 60 { "…" } else { "" }
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
            .unwrap_or_else(|| format!("^{}", g.name(o)));
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
                    .unwrap_or_else(|| format!("?{}", g.name(*v))),
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
        let mut subgraphs: Vec<(&String, &Graph)> = Vec::new();
        for (k, a) in &node.attrs {
            match a {
                Attr::Graph(sg) => subgraphs.push((k, sg)),
                Attr::Graphs(gs) => subgraphs.extend(gs.iter().map(|sg| (k, sg))),
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
        .map(Dim::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
    let body = match (&t.data, t.to_f64_vec()) {
        (TensorData::Strings(ss), _) => ss
            .iter()
            .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
            .collect::<Vec<_>>()
            .join(", "),
        (_, Some(vals)) => vals
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
        Attr::Raw(b) => format!("<raw {} bytes>", b.len()),
    }
}
