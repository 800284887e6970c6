//! IR → ModelProto. Names are made unique (values across nested scopes, nodes across the
//! model), initializers are written once, large models (or models that came with external
//! data) get their tensors in `OUT.onnx.data` beside the output, and files are written
//! atomically (temporary file, then rename) so a failed export leaves nothing behind.

use super::tensor::{encode, ExternalWriter};
use crate::ir::{Attr, Dim, Graph, Model, Type, ValueDef, ValueId};
use gen_format::{write_atomic, WriteError};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::{
    tensor_shape_proto, type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the model is {size} bytes, over protobuf's 2 GiB limit even with external data")]
    TooLarge { size: usize },
    #[error("{path}: cannot encode the model: {error}")]
    Encode {
        path: PathBuf,
        error: protobuf::Error,
    },
}

/// When tensors go to an external data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalData {
    /// When the model came with external data or its tensors exceed `threshold` bytes.
    Auto {
        threshold: usize,
    },
    Always,
    Never,
}

impl ExternalData {
    /// `Auto` with the default threshold of 512 MiB.
    pub const AUTO: ExternalData = ExternalData::Auto {
        threshold: 512 << 20,
    };
}

/// `auto` (with the default threshold), `always` or `never`, as `gen-compile --external-data`.
#[cfg(feature = "clap")]
impl clap::ValueEnum for ExternalData {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            ExternalData::AUTO,
            ExternalData::Always,
            ExternalData::Never,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(match self {
            ExternalData::Auto { .. } => "auto",
            ExternalData::Always => "always",
            ExternalData::Never => "never",
        }))
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ExportOptions {
    pub external: ExternalData,
    /// Tensors smaller than this stay inline even when the rest goes external.
    pub min_external_bytes: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            external: ExternalData::AUTO,
            min_external_bytes: 1024,
        }
    }
}

/// Protobuf refuses messages over 2 GiB.
const PROTOBUF_LIMIT: usize = (2 << 30) - 1;

/// Lowest IR version that allows a default-domain opset.
fn min_ir_for_opset(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Serializes in memory (no external data).
pub fn to_bytes(m: &Model) -> Vec<u8> {
    to_proto(m).write_to_bytes().unwrap_or_default()
}

/// The external data file [`save`] writes beside `path` for `m` (`path.data`), if it writes one.
pub fn data_path(m: &Model, path: &Path, opts: &ExportOptions) -> Option<PathBuf> {
    let total: usize = m.graph.initializers().map(|(_, t)| t.nbytes()).sum();
    let came_external = m
        .graph
        .initializers()
        .any(|(v, _)| m.graph.value(v).external);
    let go_external = match opts.external {
        ExternalData::Always => true,
        ExternalData::Never => false,
        ExternalData::Auto { threshold } => came_external || total > threshold,
    };
    let file_name = path
        .file_name()
        .map(|f| format!("{}.data", f.to_string_lossy()))
        .unwrap_or_else(|| "model.onnx.data".into());
    go_external.then(|| path.with_file_name(file_name))
}

/// Writes `path` (and `path.data` when tensors go external), atomically.
pub fn save(m: &Model, path: &Path, opts: &ExportOptions) -> Result<(), ExportError> {
    let data_path = data_path(m, path, opts);
    let mut ext = data_path
        .as_ref()
        .map(|d| ExternalWriter::new(&d.file_name().unwrap_or_default().to_string_lossy()));
    let mut proto = to_proto(m);
    if let (Some(w), Some(g)) = (ext.as_mut(), proto.graph.as_mut()) {
        for tp in g.initializer.iter_mut() {
            if tp.raw_data.len() >= opts.min_external_bytes {
                w.externalize(tp);
            }
        }
    }
    let bytes = proto
        .write_to_bytes()
        .map_err(|error| ExportError::Encode {
            path: path.to_path_buf(),
            error,
        })?;
    if bytes.len() > PROTOBUF_LIMIT {
        return Err(ExportError::TooLarge { size: bytes.len() });
    }
    if let (Some(w), Some(d)) = (&ext, &data_path) {
        write_atomic(d, &w.bytes)?;
    }
    write_atomic(path, &bytes).map_err(|e| {
        if let Some(d) = &data_path {
            let _ = std::fs::remove_file(d);
        }
        e.into()
    })
}

/// Builds the ModelProto.
pub fn to_proto(m: &Model) -> ModelProto {
    let mut mp = ModelProto::parse_from_bytes(&m.extra).unwrap_or_default();
    mp.ir_version = m.ir_version.max(min_ir_for_opset(m.opset())).max(3);
    mp.opset_import = m
        .opsets
        .iter()
        .map(|(d, v)| {
            let mut o = OperatorSetIdProto::new();
            o.domain = d.clone();
            o.version = *v;
            o
        })
        .collect();
    mp.producer_name = m.producer_name.clone();
    mp.producer_version = m.producer_version.clone();
    mp.domain = m.domain.clone();
    mp.model_version = m.model_version;
    mp.doc_string = m.doc.clone();
    mp.metadata_props = m
        .metadata
        .iter()
        .map(|(k, v)| {
            let mut e = StringStringEntryProto::new();
            e.key = k.clone();
            e.value = v.clone();
            e
        })
        .collect();
    let mut ex = Exporter {
        node_names: HashSet::new(),
    };
    mp.graph = Some(ex.graph(&m.graph, &HashMap::new())).into();
    mp
}

struct Exporter {
    node_names: HashSet<String>,
}

/// The ValueInfoProto type of an IR type (unknown dims left without value or parameter).
fn type_to_proto(t: &Type) -> Option<TypeProto> {
    match t {
        Type::Unknown => None,
        Type::Opaque(b) => TypeProto::parse_from_bytes(b).ok(),
        Type::Tensor(tt) if tt.dtype == crate::ir::DType::Undefined => None,
        Type::Tensor(tt) => {
            let mut tensor = type_proto::Tensor::new();
            tensor.elem_type = tt.dtype as i32;
            if let Some(dims) = &tt.shape {
                let mut sp = TensorShapeProto::new();
                sp.dim = dims
                    .iter()
                    .map(|d| {
                        let mut dp = tensor_shape_proto::Dimension::new();
                        dp.value = match d {
                            Dim::Fixed(n) => {
                                Some(tensor_shape_proto::dimension::Value::DimValue(*n))
                            }
                            Dim::Sym(s) => {
                                Some(tensor_shape_proto::dimension::Value::DimParam(s.clone()))
                            }
                            Dim::Unknown => None,
                        };
                        dp
                    })
                    .collect();
                tensor.shape = Some(sp).into();
            }
            let mut tp = TypeProto::new();
            tp.value = Some(type_proto::Value::TensorType(tensor));
            Some(tp)
        }
    }
}

impl Exporter {
    /// Exports `g`; `scope` maps enclosing-scope value names to their exported names.
    fn graph(&mut self, g: &Graph, scope: &HashMap<String, String>) -> GraphProto {
        let mut gp = GraphProto::parse_from_bytes(&g.extra).unwrap_or_default();
        gp.name = g.name.clone();
        gp.doc_string = g.doc.clone();
        // exported names: outer captures keep the enclosing name; local names that clash
        // with an enclosing scope get a suffix
        let mut names: HashMap<ValueId, String> = HashMap::new();
        let mut taken: HashSet<String> = scope.values().cloned().collect();
        for v in g.value_ids() {
            let val = g.value(v);
            if val.def == ValueDef::Outer {
                names.insert(v, scope.get(&val.name).cloned().unwrap_or(val.name.clone()));
            }
        }
        for v in g.value_ids() {
            let val = g.value(v);
            if val.def == ValueDef::Outer {
                continue;
            }
            let mut name = val.name.clone();
            let mut k = 1;
            while taken.contains(&name) {
                name = format!("{}__{k}", val.name);
                k += 1;
            }
            taken.insert(name.clone());
            names.insert(v, name);
        }
        let nm = |v: &ValueId| names[v].clone();
        let value_info = |v: ValueId| {
            let mut vi = ValueInfoProto::new();
            vi.name = nm(&v);
            vi.type_ = type_to_proto(g.ty(v)).into();
            vi.doc_string = g.value(v).doc.clone();
            vi
        };
        gp.input = g.inputs.iter().map(|&v| value_info(v)).collect();
        gp.output = g.outputs.iter().map(|&v| value_info(v)).collect();
        let mut used: HashSet<ValueId> = g.outputs.iter().copied().collect();
        for &n in g.order() {
            used.extend(g.node_uses(n));
        }
        gp.initializer = g
            .initializers()
            .filter(|(v, _)| g.value(*v).def == ValueDef::Input || used.contains(v))
            .map(|(v, t)| encode(t, &nm(&v)))
            .collect();
        let mut inner_scope = scope.clone();
        for v in g.value_ids() {
            inner_scope.insert(g.name(v).to_string(), nm(&v));
        }
        gp.node = g
            .order()
            .iter()
            .map(|&n| {
                let node = g.node(n);
                let mut np = NodeProto::parse_from_bytes(&node.extra).unwrap_or_default();
                np.op_type = node.op.op_type().to_string();
                np.domain = node.op.domain().to_string();
                np.doc_string = node.doc.clone();
                np.name = self.unique_node_name(&node.name);
                np.input = node
                    .inputs
                    .iter()
                    .map(|i| i.as_ref().map(nm).unwrap_or_default())
                    .collect();
                np.output = node
                    .outputs
                    .iter()
                    .map(|o| o.as_ref().map(nm).unwrap_or_default())
                    .collect();
                while np.output.last().is_some_and(String::is_empty) {
                    np.output.pop();
                }
                np.attribute = node
                    .attrs
                    .iter()
                    .map(|(k, a)| self.attr(k, a, &inner_scope))
                    .collect();
                np
            })
            .collect();
        gp
    }

    fn unique_node_name(&mut self, name: &str) -> String {
        if name.is_empty() {
            return String::new();
        }
        let mut out = name.to_string();
        let mut k = 1;
        while !self.node_names.insert(out.clone()) {
            out = format!("{name}__{k}");
            k += 1;
        }
        out
    }

    fn attr(&mut self, name: &str, a: &Attr, scope: &HashMap<String, String>) -> AttributeProto {
        use AttributeType::*;
        if let Attr::Raw(b) = a {
            return AttributeProto::parse_from_bytes(b).unwrap_or_default();
        }
        let mut ap = AttributeProto::new();
        ap.name = name.to_string();
        let ty = match a {
            Attr::Float(f) => {
                ap.f = *f;
                FLOAT
            }
            Attr::Int(i) => {
                ap.i = *i;
                INT
            }
            Attr::String(s) => {
                ap.s = s.clone();
                STRING
            }
            Attr::Tensor(t) => {
                ap.t = Some(encode(t, "")).into();
                TENSOR
            }
            Attr::Graph(g) => {
                ap.g = Some(self.graph(g, scope)).into();
                GRAPH
            }
            Attr::Floats(v) => {
                ap.floats = v.clone();
                FLOATS
            }
            Attr::Ints(v) => {
                ap.ints = v.clone();
                INTS
            }
            Attr::Strings(v) => {
                ap.strings = v.clone();
                STRINGS
            }
            Attr::Tensors(ts) => {
                ap.tensors = ts.iter().map(|t| encode(t, "")).collect();
                TENSORS
            }
            Attr::Graphs(gs) => {
                ap.graphs = gs.iter().map(|g| self.graph(g, scope)).collect();
                GRAPHS
            }
            Attr::Raw(_) => UNDEFINED,
        };
        ap.type_ = ty.into();
        ap
    }
}
