//! Compiler-core tests: import, export, the text form, constant folding, verifier errors.

use gen_passes::ir::text::model_to_text;
use gen_passes::ir::verify::verify;
use gen_passes::ir::{DType, Dim, Op};
use gen_passes::onnx::{self, ExportOptions, ExternalData, ImportError};
use gen_passes::pipeline::Debug;
use gen_passes::{compile, CompileOptions, Emit};
use std::path::{Path, PathBuf};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The digits MLP of the GeN reference fixture (a committed copy).
fn shared_mlp() -> PathBuf {
    models().join("digits/mlp.onnx")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gen-core-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn forward(path: &Path) -> gen_passes::ir::Model {
    let m = onnx::load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    compile(
        m,
        Emit::Forward,
        &CompileOptions::default(),
        &Debug::default(),
    )
    .unwrap()
    .model
}

#[test]
fn mlp_fixture_imports_with_symbolic_batch() {
    let m = onnx::load(&shared_mlp()).expect("the shared mlp fixture imports");
    verify(&m.graph).unwrap();
    insta::assert_snapshot!("mlp_import", model_to_text(&m));
    let logits = m.graph.outputs[0];
    let ty = m.graph.ty(logits).tensor().unwrap();
    assert_eq!(ty.dtype, DType::F32);
    assert_eq!(ty.shape.as_ref().unwrap()[1], Dim::Fixed(10));
}

#[test]
fn shape_chain_folds_static_parts_and_keeps_the_batch_symbolic() {
    let m = forward(&models().join("core/shape_chain.onnx"));
    insta::assert_snapshot!("shape_chain_forward", model_to_text(&m));
    let g = &m.graph;
    // the static chain (Shape(c) -> Slice -> ConstantOfShape) is gone
    let ops: Vec<&Op> = g.order().iter().map(|&n| &g.node(n).op).collect();
    assert!(
        !ops.contains(&&Op::Slice),
        "static Slice should fold: {ops:?}"
    );
    // the dynamic one keeps its Shape, and the reshape's type keeps the batch symbol
    let reshape = g
        .order()
        .iter()
        .find(|&&n| g.node(n).op == Op::Reshape)
        .copied()
        .expect("Reshape survives");
    let out = g.node(reshape).output(0).unwrap();
    let shape = g.ty(out).shape().unwrap().to_vec();
    assert_eq!(shape, vec![Dim::Sym("batch".into()), Dim::Fixed(24)]);
}

#[test]
fn round_trip_preserves_the_text_form() {
    for name in [
        "core/shape_chain.onnx",
        "core/control_flow.onnx",
        "core/unknown_domain.onnx",
    ] {
        let m = onnx::load(&models().join(name)).unwrap();
        let bytes = onnx::to_bytes(&m);
        let back = onnx::from_bytes(&bytes, None).unwrap();
        assert_eq!(model_to_text(&m), model_to_text(&back), "{name}");
    }
}

#[test]
fn subgraph_captures_resolve_by_name() {
    let m = onnx::load(&models().join("core/control_flow.onnx")).unwrap();
    insta::assert_snapshot!("control_flow_import", model_to_text(&m));
    let g = &m.graph;
    let iff = g
        .order()
        .iter()
        .find(|&&n| g.node(n).op == Op::If)
        .copied()
        .unwrap();
    let uses: Vec<&str> = g.node_uses(iff).iter().map(|&v| g.name(v)).collect();
    assert!(uses.contains(&"x") && uses.contains(&"two"), "{uses:?}");
}

#[test]
fn unknown_domain_ops_survive_untouched() {
    let m = forward(&models().join("core/unknown_domain.onnx"));
    let g = &m.graph;
    let node = g
        .order()
        .iter()
        .map(|&n| g.node(n))
        .find(|n| n.op.op_type() == "Frobnicate")
        .expect("opaque op kept");
    assert_eq!(node.op.domain(), "com.example");
    assert_eq!(node.attr_int("strength"), Some(3));
    assert_eq!(m.opsets.get("com.example"), Some(&1));
}

#[test]
fn external_data_loads_and_is_written_back_external() {
    let src = models().join("core/external.onnx");
    let m = onnx::load(&src).unwrap();
    let w = m.graph.by_name("fc1.weight").unwrap();
    let t = m.graph.value(w).init.as_ref().unwrap();
    assert_eq!(t.dims, vec![16, 32]);
    assert!(m.graph.value(w).external);
    let dir = tmpdir("ext");
    let out = dir.join("copy.onnx");
    onnx::save(&m, &out, &ExportOptions::default()).unwrap();
    assert!(
        dir.join("copy.onnx.data").is_file(),
        "external data written beside"
    );
    let back = onnx::load(&out).unwrap();
    assert_eq!(model_to_text(&m), model_to_text(&back));
    // and inline when asked
    let inline = dir.join("inline.onnx");
    let opts = ExportOptions {
        external: ExternalData::Never,
        ..ExportOptions::default()
    };
    onnx::save(&back, &inline, &opts).unwrap();
    assert!(!dir.join("inline.onnx.data").exists());
    assert_eq!(
        model_to_text(&onnx::load(&inline).unwrap()),
        model_to_text(&m)
    );
}

#[test]
fn bad_inputs_give_errors_naming_the_problem() {
    let dir = tmpdir("bad");
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let e = onnx::load(&empty).unwrap_err();
    assert!(matches!(e, ImportError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("empty.onnx"));

    let random = dir.join("random.onnx");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    let e = onnx::load(&random).unwrap_err();
    assert!(e.to_string().contains("random.onnx"), "{e}");

    let full = std::fs::read(shared_mlp()).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let e = onnx::load(&truncated).unwrap_err();
    assert!(e.to_string().contains("truncated.onnx"), "{e}");

    let e = onnx::load(&models().join("core/bad_undefined_input.onnx")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("uses_ghost") && msg.contains("ghost"), "{msg}");

    let e = onnx::load(&models().join("core/bad_cycle.onnx")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("cycle") && msg.contains("loop_a") && msg.contains("loop_b"),
        "{msg}"
    );

    let e = onnx::load(&dir.join("missing.onnx")).unwrap_err();
    assert!(e.to_string().contains("no such file"), "{e}");
}

#[test]
fn verifier_names_the_node_that_breaks_an_invariant() {
    let mut m = onnx::load(&shared_mlp()).unwrap();
    let g = &mut m.graph;
    let first = g.order()[0];
    let out = g.node(first).output(0).unwrap();
    g.remove_node(first);
    let e = verify(g).unwrap_err();
    assert!(e.to_string().contains(g.name(out)), "{e}");
}

/// What the TorchScript exporter writes for `F.pad` (pads built by ConstantOfShape, Concat,
/// Reshape to [-1, 2], a reversing Slice, Transpose, Reshape, Cast), a `value_floats` Constant
/// and a Concat of float Constants (Resize scales) fold; the `expand(-1)` idiom
/// (Where(Equal(shape, -1), 1, shape)) over a symbolic batch keeps a static shape.
#[test]
fn exporter_constant_idioms_fold() {
    use gen_passes::ir::{Attr, Builder, Graph, Tensor, TensorType, Type};
    let mut g = Graph::new("idioms");
    let dims = vec![Dim::Sym("batch".into()), Dim::Fixed(3), Dim::Fixed(4)];
    let x = g.add_input("x", Type::Tensor(TensorType::new(DType::F32, Some(dims))));
    let mut b = Builder::new(&mut g, 17, "");
    // F.pad(x, (1, 2)): pads [0, 0, 1, 0, 0, 2]
    let given = b.ints(&[1, 2]);
    let four = b.ints(&[4]);
    let zeros = b.op(
        Op::ConstantOfShape,
        &[four],
        vec![("value", Attr::Tensor(Tensor::from_i64(&[1], &[0])))],
    );
    let all = b.op(Op::Concat, &[given, zeros], vec![("axis", Attr::Int(0))]);
    let pairs_shape = b.ints(&[-1, 2]);
    let pairs = b.reshape(all, pairs_shape);
    let (m1, lowest, ax0) = (b.ints(&[-1]), b.ints(&[i64::MIN]), b.ints(&[0]));
    let reversed = b.op(Op::Slice, &[pairs, m1, lowest, ax0, m1], vec![]);
    let t = b.transpose(reversed, &[1, 0]);
    let flat = b.reshape(t, m1);
    let pads = b.cast(flat, DType::I64);
    let padded = b.op(
        Op::Pad,
        &[x, pads],
        vec![("mode", Attr::String(b"reflect".to_vec()))],
    );
    // Resize scales: a value_floats Constant concatenated with another Constant
    let ones = b.op(
        Op::Constant,
        &[],
        vec![("value_floats", Attr::Floats(vec![1.0, 1.0]))],
    );
    let two = b.constant(Tensor::from_f32(&[1], &[2.0]));
    let scales = b.op(Op::Concat, &[ones, two], vec![("axis", Attr::Int(0))]);
    let (_, up) = b.node(
        Op::Resize,
        &[Some(padded), None, Some(scales)],
        1,
        vec![("mode", Attr::String(b"nearest".to_vec()))],
    );
    // x.expand(-1, 3, 7) with the batch read from the shape
    let shape = b.shape_of(up[0]);
    let minus = b.ints(&[-1, -1, -1]);
    let is_minus = b.op(Op::Equal, &[shape, minus], vec![]);
    let one = b.ints(&[1, 1, 1]);
    let target = b.where_(is_minus, one, shape);
    let y = b.expand(up[0], target);
    g.outputs = vec![y];
    let m = compile(
        gen_passes::ir::Model::new(g, 17),
        Emit::Forward,
        &CompileOptions::default(),
        &Debug::default(),
    )
    .unwrap()
    .model;
    let g = &m.graph;
    let ops: Vec<&Op> = g.order().iter().map(|&n| &g.node(n).op).collect();
    for gone in [Op::Slice, Op::Transpose, Op::Concat, Op::ConstantOfShape] {
        assert!(!ops.contains(&&gone), "{gone} should fold: {ops:?}");
    }
    let dims = |v| g.ty(v).shape().unwrap().to_vec();
    let pad_out = g
        .order()
        .iter()
        .find(|&&n| g.node(n).op == Op::Pad)
        .and_then(|&n| g.node(n).output(0))
        .expect("Pad survives");
    let batch = Dim::Sym("batch".into());
    assert_eq!(
        dims(pad_out),
        vec![batch.clone(), Dim::Fixed(3), Dim::Fixed(7)]
    );
    assert_eq!(
        dims(g.outputs[0]),
        vec![batch, Dim::Fixed(3), Dim::Fixed(14)]
    );
}
