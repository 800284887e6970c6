//! Malformed models: import, shape inference and constant folding give a typed error naming
//! the node (or leave what they cannot know unknown), never a panic, an abort or a huge
//! allocation. The known reproducers are built here, as is each crash scripts/fuzz.sh finds.

use gen_passes::ir::{Dim, Model};
use gen_passes::onnx::from_bytes;
use gen_passes::pipeline::constfold::ConstantFolding;
use gen_passes::pipeline::{Context, Pass};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::MessageField;

const F32: i32 = 1;
const I64: i32 = 7;

fn value(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims
        .iter()
        .map(|&d| {
            let mut x = Dimension::new();
            x.value = Some(dimension::Value::DimValue(d));
            x
        })
        .collect();
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem;
    t.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(t));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = MessageField::some(ty);
    v
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_0");
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

fn attr(name: &str, ty: AttributeType, set: impl FnOnce(&mut AttributeProto)) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = ty.into();
    set(&mut a);
    a
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    attr(name, AttributeType::INTS, |a| a.ints = v.to_vec())
}

fn init_i64(name: &str, dims: &[i64], vals: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = I64;
    t.dims = dims.to_vec();
    t.int64_data = vals.to_vec();
    t
}

/// A model of one graph at default-domain `opset` (none imported when None).
fn model(
    inputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
    nodes: Vec<NodeProto>,
    output: &str,
    opset: Option<i64>,
) -> Vec<u8> {
    let mut g = GraphProto::new();
    g.name = "g".into();
    g.input = inputs;
    g.initializer = inits;
    g.node = nodes;
    let mut out = ValueInfoProto::new();
    out.name = output.into();
    g.output = vec![out];
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.graph = MessageField::some(g);
    if let Some(v) = opset {
        let mut o = OperatorSetIdProto::new();
        o.version = v;
        m.opset_import = vec![o];
    }
    m.write_to_bytes().expect("encodes")
}

/// Import and constant folding, errors as text.
fn compile_front(bytes: &[u8]) -> Result<Model, String> {
    let mut m = from_bytes(bytes, None).map_err(|e| e.to_string())?;
    ConstantFolding
        .run(&mut m, &mut Context::default())
        .map_err(|e| e.to_string())?;
    Ok(m)
}

fn output_shape(m: &Model) -> Option<Vec<Dim>> {
    let v = *m.graph.outputs.first()?;
    m.graph.ty(v).shape().map(<[Dim]>::to_vec)
}

/// A shape input whose own length is a number no tensor has leaves the reshaped rank
/// unknown instead of building that many dimensions (was: capacity overflow at 2^63-1, a
/// 26 TB allocation at 2^40).
#[test]
fn shape_inputs_claiming_huge_ranks_stay_unknown() {
    for n in [i64::MAX, 1 << 40, -1] {
        let bytes = model(
            vec![value("x", F32, &[2, 3]), value("s", I64, &[n])],
            vec![],
            vec![
                node("Reshape", &["x", "s"], &["r"], vec![]),
                node("ConstantOfShape", &["s"], &["c"], vec![]),
                node("Expand", &["x", "s"], &["e"], vec![]),
                node("Slice", &["x", "s", "s"], &["y"], vec![]),
            ],
            "r",
            Some(17),
        );
        let m = compile_front(&bytes).unwrap_or_else(|e| panic!("dim {n}: {e}"));
        assert_eq!(output_shape(&m), None, "dim {n}");
    }
}

/// Reshape targets with extreme values: kept as given, or a typed error when the sizes
/// overflow (was: capacity overflow in reshape_shape for 2^63-1).
#[test]
fn extreme_reshape_targets() {
    let reshape = |x: &[i64], target: &[i64]| {
        model(
            vec![value("x", F32, x)],
            vec![init_i64("s", &[target.len() as i64], target)],
            vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            "y",
            Some(17),
        )
    };
    let m = compile_front(&reshape(&[2, 3], &[i64::MAX])).expect("imports");
    assert_eq!(output_shape(&m), Some(vec![Dim::Fixed(i64::MAX)]));
    let m = compile_front(&reshape(&[2, 3], &[-1, i64::MAX])).expect("imports");
    assert_eq!(
        output_shape(&m),
        Some(vec![Dim::Unknown, Dim::Fixed(i64::MAX)])
    );
    let e = compile_front(&reshape(&[i64::MAX, 3], &[-1])).expect_err("overflows");
    assert!(
        e.contains("'Reshape_0' (Reshape)") && e.contains("overflows"),
        "{e}"
    );
}

/// A Conv whose `pads` has the wrong length is refused naming the node (was: index out of
/// bounds in conv_pool).
#[test]
fn conv_pads_of_the_wrong_length() {
    let bytes = model(
        vec![
            value("x", F32, &[1, 1, 5, 5]),
            value("w", F32, &[1, 1, 3, 3]),
        ],
        vec![],
        vec![node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![ints("pads", &[1, 1, 1])],
        )],
        "y",
        Some(17),
    );
    let e = compile_front(&bytes).expect_err("invalid");
    assert!(
        e.contains("'Conv_0' (Conv)") && e.contains("'pads' has 3 entries"),
        "{e}"
    );
}

/// Overflowing sizes in convolution arithmetic are a typed error, not a wrapped size.
#[test]
fn conv_sizes_that_overflow() {
    let bytes = model(
        vec![
            value("x", F32, &[1, 1, i64::MAX]),
            value("w", F32, &[1, 1, 3]),
        ],
        vec![],
        vec![node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![ints("pads", &[5, 5])],
        )],
        "y",
        Some(17),
    );
    let e = compile_front(&bytes).expect_err("overflows");
    assert!(e.contains("overflows a 64-bit integer"), "{e}");
}

/// An attribute of the wrong type is refused, not silently read as its default.
#[test]
fn attribute_of_the_wrong_type() {
    let trans_b = attr("transB", AttributeType::STRING, |a| a.s = b"1".to_vec());
    let bytes = model(
        vec![value("a", F32, &[2, 3]), value("b", F32, &[4, 3])],
        vec![],
        vec![node("Gemm", &["a", "b"], &["y"], vec![trans_b])],
        "y",
        Some(17),
    );
    let e = compile_front(&bytes).expect_err("refused");
    assert!(
        e.contains("'Gemm_0' (Gemm)") && e.contains("'transB'") && e.contains("must be INT"),
        "{e}"
    );
}

#[test]
fn opsets_outside_the_supported_range() {
    let relu = |opset| {
        model(
            vec![value("x", F32, &[2])],
            vec![],
            vec![node("Relu", &["x"], &["y"], vec![])],
            "y",
            opset,
        )
    };
    for opset in [0, 999] {
        let e = compile_front(&relu(Some(opset))).expect_err("refused");
        assert!(
            e.contains(&format!("opset {opset} is not supported")) && e.contains("1 to 24"),
            "{e}"
        );
    }
    let e = compile_front(&relu(None)).expect_err("refused");
    assert!(e.contains("imports no opset"), "{e}");
    assert!(compile_front(&relu(Some(24))).is_ok());
}

/// An initializer redeclared as a graph input of another type or shape is refused; one
/// whose input leaves sizes open is the input's default.
#[test]
fn initializer_redeclared_as_a_different_input() {
    let with_input = |decl: ValueInfoProto| {
        model(
            vec![value("x", F32, &[2]), decl],
            vec![init_i64("s", &[1], &[2])],
            vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            "y",
            Some(17),
        )
    };
    let e = compile_front(&with_input(value("s", I64, &[2]))).expect_err("shape differs");
    assert!(
        e.contains("initializer 's' is i64[1]") && e.contains("i64[2]"),
        "{e}"
    );
    let e = compile_front(&with_input(value("s", F32, &[1]))).expect_err("type differs");
    assert!(e.contains("declared f32[1]"), "{e}");
    assert!(compile_front(&with_input(value("s", I64, &[1]))).is_ok());
}
