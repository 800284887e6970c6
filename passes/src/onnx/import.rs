//! ModelProto → IR. Accepts what stock ONNX Runtime accepts: IR 3–10, any opset, unknown
//! domains (kept as opaque ops), subgraphs (If/Loop/Scan bodies capture enclosing values by
//! name), optional inputs/outputs, value_info, metadata and doc strings. Fields the IR does
//! not model are kept as serialized protobuf and merged back on export.

use super::error::ImportError;
use super::tensor::decode;
use crate::ir::infer::infer_graph;
use crate::ir::{Attr, DType, Dim, Graph, Model, Op, TensorType, Type, ValueDef, ValueId};
use gen_format::ExternalPolicy;
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, TypeProto,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The oldest default-domain opset a model may import.
pub const MIN_OPSET: i64 = 1;
/// The newest default-domain opset gen-compile knows (that of the ONNX release it follows).
pub const MAX_OPSET: i64 = 24;

/// How a model file is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Accept external data files that symlinks lead outside the model's folder.
    pub allow_external_outside_dir: bool,
}

/// Loads a model file (external data is read relative to its folder, and must stay inside it).
pub fn load(path: &Path) -> Result<Model, ImportError> {
    load_with(path, &LoadOptions::default())
}

/// Loads a model file with `opts`.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Model, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.to_path_buf(),
        message: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        },
    })?;
    if bytes.is_empty() {
        return Err(ImportError::Empty {
            path: path.to_path_buf(),
        });
    }
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let ext = ExternalPolicy {
        dir: base,
        allow_outside_dir: opts.allow_external_outside_dir,
    };
    from_bytes_at(&bytes, ext, path)
}

/// Decodes a serialized model; `base_dir` is where external data lives.
pub fn from_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Model, ImportError> {
    from_bytes_at(
        bytes,
        ExternalPolicy::within(base_dir),
        Path::new("<memory>"),
    )
}

fn from_bytes_at(bytes: &[u8], ext: ExternalPolicy<'_>, path: &Path) -> Result<Model, ImportError> {
    let mp = ModelProto::parse_from_bytes(bytes).map_err(|error| ImportError::Decode {
        path: path.to_path_buf(),
        error,
    })?;
    import_with(mp, ext).map_err(|e| e.in_file(path))
}

/// Imports an already decoded ModelProto.
pub fn import_model(mp: ModelProto, base: Option<&Path>) -> Result<Model, ImportError> {
    import_with(mp, ExternalPolicy::within(base))
}

fn import_with(mut mp: ModelProto, ext: ExternalPolicy<'_>) -> Result<Model, ImportError> {
    let Some(gp) = mp.graph.take() else {
        return Err(ImportError::NoGraph {
            path: Path::new("<model>").to_path_buf(),
        });
    };
    let opsets: BTreeMap<String, i64> = mp
        .opset_import
        .iter()
        .map(|o| {
            let d = if o.domain == "ai.onnx" { "" } else { &o.domain };
            (d.to_string(), o.version)
        })
        .collect();
    if opsets.is_empty() {
        return Err(ImportError::NoOpset);
    }
    // a model of other domains only (ai.onnx.ml, training) uses no default-domain operator
    let opset = opsets.get("").copied().unwrap_or(MIN_OPSET);
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(ImportError::Opset {
            opset,
            min: MIN_OPSET,
            max: MAX_OPSET,
        });
    }
    let cx = Importer { ext, opset };
    let graph = cx.graph(&gp, false)?;
    let mut m = Model {
        ir_version: mp.ir_version,
        opsets,
        producer_name: std::mem::take(&mut mp.producer_name),
        producer_version: std::mem::take(&mut mp.producer_version),
        domain: std::mem::take(&mut mp.domain),
        model_version: mp.model_version,
        doc: std::mem::take(&mut mp.doc_string),
        metadata: mp
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect(),
        graph,
        extra: Vec::new(),
    };
    mp.ir_version = 0;
    mp.opset_import.clear();
    mp.model_version = 0;
    mp.metadata_props.clear();
    m.extra = mp.write_to_bytes().unwrap_or_default();
    Ok(m)
}

struct Importer<'a> {
    ext: ExternalPolicy<'a>,
    opset: i64,
}

/// An ONNX TypeProto as an IR type.
pub fn type_from_proto(tp: &TypeProto) -> Type {
    match &tp.value {
        Some(type_proto::Value::TensorType(t)) => {
            let dtype = DType::from_onnx(t.elem_type).unwrap_or(DType::Undefined);
            let shape =
                t.shape.as_ref().map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(
                                onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v),
                            ) => Dim::Fixed(*v),
                            Some(
                                onnx_protobuf::tensor_shape_proto::dimension::Value::DimParam(p),
                            ) if !p.is_empty() => Dim::Sym(p.clone()),
                            _ => Dim::Unknown,
                        })
                        .collect()
                });
            Type::Tensor(TensorType::new(dtype, shape))
        }
        None => Type::Unknown,
        Some(_) => Type::Opaque(tp.write_to_bytes().unwrap_or_default()),
    }
}

impl Importer<'_> {
    fn graph(&self, gp: &GraphProto, is_subgraph: bool) -> Result<Graph, ImportError> {
        let gname = gp.name.clone();
        let mut g = Graph::new(&gp.name);
        g.doc = gp.doc_string.clone();
        if !gp.sparse_initializer.is_empty() {
            return Err(ImportError::Unsupported {
                graph: gname,
                message: "sparse initializers are not supported".into(),
            });
        }
        let dup = |name: &str| ImportError::Duplicate {
            graph: gname.clone(),
            name: name.to_string(),
        };
        for vi in &gp.input {
            if g.by_name(&vi.name).is_some() {
                return Err(dup(&vi.name));
            }
            let ty = vi.type_.as_ref().map(type_from_proto).unwrap_or_default();
            let v = g.add_input(&vi.name, ty);
            g.value_mut(v).doc = vi.doc_string.clone();
        }
        for tp in &gp.initializer {
            let t = decode(tp, &self.ext)?;
            let external = tp.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
            let v = match g.by_name(&tp.name) {
                Some(v) if g.value(v).def == ValueDef::Input && g.value(v).init.is_none() => {
                    let ty = Type::Tensor(t.ty());
                    if let Some(declared) = g.ty(v).tensor().filter(|d| conflicts(d, &t.ty())) {
                        return Err(ImportError::InitializerMismatch {
                            graph: gname.clone(),
                            name: tp.name.clone(),
                            declared: describe(declared),
                            actual: describe(&t.ty()),
                        });
                    }
                    let val = g.value_mut(v);
                    if val.ty.tensor().is_none_or(|tt| tt.shape.is_none()) {
                        val.ty = ty;
                    }
                    v
                }
                Some(_) => return Err(dup(&tp.name)),
                None => {
                    let v = g.add_value(&tp.name, Type::Tensor(t.ty()), ValueDef::Initializer);
                    if g.name(v) != tp.name {
                        return Err(dup(&tp.name));
                    }
                    v
                }
            };
            let val = g.value_mut(v);
            val.init = Some(t);
            val.external = external;
        }
        // nodes: create all outputs first, so a file not in topological order still imports
        let mut pending: Vec<(crate::ir::NodeId, &NodeProto)> = Vec::new();
        let mut defined: HashSet<String> = g.value_ids().map(|v| g.name(v).to_string()).collect();
        for np in &gp.node {
            let outs: Vec<&str> = np.output.iter().map(String::as_str).collect();
            for o in outs.iter().filter(|o| !o.is_empty()) {
                if !defined.insert(o.to_string()) {
                    return Err(dup(o));
                }
            }
            let attrs = self.attrs(np, &gname)?;
            let n = g.add_node(
                Op::from_onnx(&np.domain, &np.op_type),
                &np.name,
                Vec::new(),
                &outs,
                attrs,
            );
            let node = g.node_mut(n);
            node.doc = np.doc_string.clone();
            let mut rest = np.clone();
            rest.input.clear();
            rest.output.clear();
            rest.name.clear();
            rest.op_type.clear();
            rest.domain.clear();
            rest.attribute.clear();
            rest.doc_string.clear();
            node.extra = rest.write_to_bytes().unwrap_or_default();
            pending.push((n, np));
        }
        let resolve = |g: &mut Graph, name: &str| -> Option<ValueId> {
            g.by_name(name)
                .or_else(|| is_subgraph.then(|| g.add_outer(name, Type::Unknown)))
        };
        for (n, np) in &pending {
            let mut ins = Vec::with_capacity(np.input.len());
            for i in &np.input {
                if i.is_empty() {
                    ins.push(None);
                    continue;
                }
                let v = resolve(&mut g, i).ok_or_else(|| ImportError::UndefinedInput {
                    graph: gname.clone(),
                    node: g.node(*n).label(*n),
                    input: i.clone(),
                })?;
                ins.push(Some(v));
            }
            // a subgraph's captures must be visible here as well (nested scopes)
            let captured: Vec<String> = g
                .node(*n)
                .subgraphs()
                .flat_map(|sg| {
                    sg.outer_values()
                        .map(|o| sg.name(o).to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            for c in captured {
                if resolve(&mut g, &c).is_none() {
                    return Err(ImportError::UndefinedInput {
                        graph: gname.clone(),
                        node: g.node(*n).label(*n),
                        input: c,
                    });
                }
            }
            g.node_mut(*n).inputs = ins;
        }
        for vi in &gp.output {
            let v = resolve(&mut g, &vi.name).ok_or_else(|| ImportError::UndefinedOutput {
                graph: gname.clone(),
                output: vi.name.clone(),
            })?;
            if let Some(tp) = vi.type_.as_ref() {
                let ty = type_from_proto(tp);
                if g.ty(v) == &Type::Unknown || matches!(ty, Type::Tensor(_)) {
                    g.value_mut(v).ty = ty;
                }
            }
            g.outputs.push(v);
        }
        for vi in &gp.value_info {
            if let (Some(v), Some(tp)) = (g.by_name(&vi.name), vi.type_.as_ref()) {
                if g.value(v).def != ValueDef::Outer {
                    g.value_mut(v).ty = type_from_proto(tp);
                }
            }
        }
        g.toposort().map_err(|cycle| ImportError::Cycle {
            graph: gname.clone(),
            nodes: cycle
                .iter()
                .take(5)
                .map(|&n| g.node(n).label(n))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        infer_graph(&mut g, self.opset).map_err(|e| ImportError::Invalid {
            graph: gname.clone(),
            node: e.node,
            message: e.reason,
        })?;
        let mut rest = gp.clone();
        rest.node.clear();
        rest.name.clear();
        rest.initializer.clear();
        rest.doc_string.clear();
        rest.input.clear();
        rest.output.clear();
        rest.value_info.clear();
        g.extra = rest.write_to_bytes().unwrap_or_default();
        Ok(g)
    }

    fn attrs(&self, np: &NodeProto, gname: &str) -> Result<BTreeMap<String, Attr>, ImportError> {
        let mut out = BTreeMap::new();
        // attribute types are checked for the operators whose attributes we read
        let checked = !matches!(Op::from_onnx(&np.domain, &np.op_type), Op::Other { .. });
        for a in &np.attribute {
            let err = |message: String| ImportError::Attribute {
                graph: gname.to_string(),
                node: if np.name.is_empty() {
                    format!("({})", np.op_type)
                } else {
                    format!("'{}' ({})", np.name, np.op_type)
                },
                attr: a.name.clone(),
                message,
            };
            // (an unset type is told from the field present, see `guess_attr_type`)
            let given = a
                .type_
                .enum_value()
                .ok()
                .filter(|t| *t != AttributeType::UNDEFINED);
            let wanted = attr_type(&a.name).filter(|_| checked);
            if let (Some(want), Some(got)) = (wanted, given) {
                if want != got {
                    return Err(err(format!("must be {want:?}, but the file gives {got:?}")));
                }
            }
            let v = self.attr(a).map_err(|e| match e {
                AttrError::Tensor(e) => err(e.to_string()),
                AttrError::Graph(e) => e,
            })?;
            out.insert(a.name.clone(), v);
        }
        Ok(out)
    }

    fn attr(&self, a: &AttributeProto) -> Result<Attr, AttrError> {
        use AttributeType::*;
        if !a.ref_attr_name.is_empty() {
            return Ok(Attr::Raw(a.write_to_bytes().unwrap_or_default()));
        }
        let ty = match a.type_.enum_value() {
            Ok(UNDEFINED) | Err(_) => guess_attr_type(a),
            Ok(t) => t,
        };
        let tensor = |t| decode(t, &self.ext).map_err(AttrError::Tensor);
        Ok(match ty {
            FLOAT => Attr::Float(a.f),
            INT => Attr::Int(a.i),
            STRING => Attr::String(a.s.clone()),
            TENSOR => Attr::Tensor(tensor(a.t.as_ref().unwrap_or_default())?),
            GRAPH => Attr::Graph(Box::new(
                self.graph(a.g.as_ref().unwrap_or_default(), true)
                    .map_err(AttrError::Graph)?,
            )),
            FLOATS => Attr::Floats(a.floats.clone()),
            INTS => Attr::Ints(a.ints.clone()),
            STRINGS => Attr::Strings(a.strings.clone()),
            TENSORS => Attr::Tensors(a.tensors.iter().map(tensor).collect::<Result<_, _>>()?),
            GRAPHS => Attr::Graphs(
                a.graphs
                    .iter()
                    .map(|g| self.graph(g, true))
                    .collect::<Result<_, _>>()
                    .map_err(AttrError::Graph)?,
            ),
            _ => Attr::Raw(a.write_to_bytes().unwrap_or_default()),
        })
    }
}

enum AttrError {
    Tensor(ImportError),
    Graph(ImportError),
}

/// Old exporters sometimes leave the attribute type unset: tell it from the field present.
fn guess_attr_type(a: &AttributeProto) -> AttributeType {
    use AttributeType::*;
    if a.t.is_some() {
        TENSOR
    } else if a.g.is_some() {
        GRAPH
    } else if !a.floats.is_empty() {
        FLOATS
    } else if !a.ints.is_empty() {
        INTS
    } else if !a.strings.is_empty() {
        STRINGS
    } else if !a.tensors.is_empty() {
        TENSORS
    } else if !a.graphs.is_empty() {
        GRAPHS
    } else if !a.s.is_empty() {
        STRING
    } else if a.f != 0.0 {
        FLOAT
    } else {
        INT
    }
}

/// Whether an initializer's type contradicts the type its graph input declares (an element
/// type, a rank or a fixed size that differ; symbolic and unknown sizes match anything).
fn conflicts(declared: &TensorType, actual: &TensorType) -> bool {
    if declared.dtype != DType::Undefined && declared.dtype != actual.dtype {
        return true;
    }
    match (&declared.shape, &actual.shape) {
        (Some(d), Some(a)) => {
            d.len() != a.len()
                || d.iter()
                    .zip(a)
                    .any(|(x, y)| matches!((x, y), (Dim::Fixed(p), Dim::Fixed(q)) if p != q))
        }
        _ => false,
    }
}

/// A tensor type for messages: `f32[2, 3]`.
fn describe(t: &TensorType) -> String {
    let dims = match &t.shape {
        Some(s) => s.iter().map(Dim::to_string).collect::<Vec<_>>().join(", "),
        None => "?".into(),
    };
    format!("{}[{dims}]", t.dtype.name())
}

/// The type every default-domain operator gives an attribute of this name (None for names
/// whose type differs between operators, or that we never read).
fn attr_type(name: &str) -> Option<AttributeType> {
    use AttributeType::*;
    Some(match name {
        "axis"
        | "keepdims"
        | "noop_with_empty_axes"
        | "transA"
        | "transB"
        | "group"
        | "ceil_mode"
        | "count_include_pad"
        | "storage_order"
        | "allowzero"
        | "blocksize"
        | "batch_dims"
        | "stash_type"
        | "dtype"
        | "to"
        | "fmod"
        | "ignore_index"
        | "largest"
        | "sorted"
        | "exclusive"
        | "reverse"
        | "upper"
        | "start"
        | "end"
        | "exclude_outside"
        | "antialias"
        | "training_mode"
        | "num_groups"
        | "select_last_index"
        | "center_point_box"
        | "sample_size"
        | "value_int" => INT,
        "alpha"
        | "beta"
        | "epsilon"
        | "momentum"
        | "cubic_coeff_a"
        | "extrapolation_value"
        | "value_float"
        | "mean"
        | "scale"
        | "high"
        | "low" => FLOAT,
        "axes" | "perm" | "pads" | "strides" | "dilations" | "kernel_shape" | "output_shape"
        | "output_padding" | "split" | "starts" | "ends" | "value_ints" => INTS,
        "value_floats" => FLOATS,
        "auto_pad"
        | "mode"
        | "reduction"
        | "equation"
        | "direction"
        | "approximate"
        | "coordinate_transformation_mode"
        | "nearest_mode"
        | "keep_aspect_ratio_policy"
        | "value_string" => STRING,
        "then_branch" | "else_branch" | "body" => GRAPH,
        _ => return None,
    })
}
