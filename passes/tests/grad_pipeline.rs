//! Unit tests of the gradient stages' decisions and errors (no runtime needed): loss choice,
//! labels, parameter discovery, training-mode lowering, sequence lowering, opset upgrade,
//! typed autodiff errors, the `--emit grad` outputs and the loss region.

use gen_passes::autodiff::{differentiate, AutodiffError, GradError};
use gen_passes::ir::{
    Attr, Builder, DType, Dim, Graph, Model, Op, Tensor, TensorType, Type, ValueDef, ValueId,
};
use gen_passes::options::LossKind;
use gen_passes::pipeline::{cleanup_passes, grad, Context, PassManager};
use gen_passes::CompileOptions;

mod common;
use common::{batch, input, weight_of};

fn fixed(d: i64) -> Dim {
    Dim::Fixed(d)
}

fn weight(g: &mut Graph, name: &str, dims: &[i64]) -> ValueId {
    weight_of(g, name, dims, |i| 0.1 + i as f32 * 0.01)
}

/// x [batch, 3] → Gemm(fc) → `logits` [batch, 4].
fn linear() -> Graph {
    let mut g = Graph::new("linear");
    let x = input(&mut g, "input", DType::F32, &[batch(), fixed(3)]);
    let w = weight(&mut g, "fc.weight", &[4, 3]);
    let bias = weight(&mut g, "fc.bias", &[4]);
    let y =
        Builder::new(&mut g, 17, "").op(Op::Gemm, &[x, w, bias], vec![("transB", Attr::Int(1))]);
    assert!(g.rename(y, "logits"));
    g.outputs = vec![y];
    g
}

/// Runs the gradient stages (and the grad outputs) on `g`.
fn run_grad(g: Graph, options: CompileOptions) -> Result<(Model, Context), gen_passes::Error> {
    let mut m = Model::new(g, 17);
    let mut cx = Context {
        options,
        ..Context::default()
    };
    let mut passes = cleanup_passes();
    passes.extend(grad::passes(&cx)?);
    passes.push(grad::grad_outputs_pass());
    PassManager::new(passes).run(&mut m, &mut cx)?;
    Ok((m, cx))
}

fn names(g: &Graph, vs: &[ValueId]) -> Vec<String> {
    vs.iter().map(|&v| g.name(v).to_string()).collect()
}

#[test]
fn cross_entropy_on_logits_adds_int64_labels_and_grad_outputs() {
    let (m, cx) = run_grad(linear(), CompileOptions::default()).expect("grad pipeline");
    let g = &m.graph;
    let labels = cx.label_inputs[0];
    assert_eq!(g.name(labels), "labels");
    assert_eq!(
        g.ty(labels),
        &Type::Tensor(TensorType::new(DType::I64, Some(vec![batch()])))
    );
    assert_eq!(names(g, &cx.params), ["fc.weight", "fc.bias"]);
    for &p in &cx.params {
        assert_eq!(
            g.value(p).def,
            ValueDef::Input,
            "parameters are graph inputs"
        );
        assert!(
            g.value(p).init.is_some(),
            "with their initializer as default"
        );
    }
    assert_eq!(
        names(g, &g.outputs),
        ["loss", "fc.weight.grad", "fc.bias.grad"]
    );
    let grads: serde_json::Value =
        serde_json::from_str(m.metadata("gen.grads").expect("gen.grads")).expect("json");
    assert_eq!(
        grads,
        serde_json::json!({"fc.weight": "fc.weight.grad", "fc.bias": "fc.bias.grad"})
    );
    let contract: serde_json::Value =
        serde_json::from_str(m.metadata("gen.contract").expect("contract")).expect("json");
    assert_eq!(contract["kind"], "grad");
    assert_eq!(contract["config"]["loss"], "cross-entropy");
    assert!(g
        .order()
        .iter()
        .any(|&n| g.node(n).op == Op::SoftmaxCrossEntropyLoss));
}

#[test]
fn sequence_logits_flatten_for_cross_entropy() {
    let mut g = Graph::new("lm");
    let x = input(&mut g, "input", DType::F32, &[batch(), fixed(5), fixed(3)]);
    let w = weight(&mut g, "head", &[3, 7]);
    let y = Builder::new(&mut g, 17, "").matmul(x, w);
    assert!(g.rename(y, "logits"));
    g.outputs = vec![y];
    let (m, cx) = run_grad(g, CompileOptions::default()).expect("grad pipeline");
    let labels = m.graph.ty(cx.label_inputs[0]);
    assert_eq!(
        labels,
        &Type::Tensor(TensorType::new(DType::I64, Some(vec![batch(), fixed(5)])))
    );
}

#[test]
fn auto_loss_uses_the_single_scalar_output() {
    let mut g = linear();
    let logits = g.outputs[0];
    let loss = Builder::new(&mut g, 17, "").sum_all(logits);
    g.outputs = vec![logits, loss];
    let (m, cx) = run_grad(g, CompileOptions::default()).expect("grad pipeline");
    assert!(
        cx.label_inputs.is_empty(),
        "no labels for a model that computes its loss"
    );
    assert_eq!(m.graph.outputs[0], loss);
    assert_eq!(cx.config["loss"], "model");
}

#[test]
fn mse_labels_mirror_the_prediction() {
    let options = CompileOptions {
        loss: LossKind::Mse,
        labels: "target".into(),
        ..CompileOptions::default()
    };
    let (m, cx) = run_grad(linear(), options).expect("grad pipeline");
    let t = cx.label_inputs[0];
    assert_eq!(m.graph.name(t), "target");
    assert_eq!(
        m.graph.ty(t),
        &Type::Tensor(TensorType::new(DType::F32, Some(vec![batch(), fixed(4)])))
    );
}

fn stage_error(g: Graph, options: CompileOptions) -> String {
    match run_grad(g, options) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loss_errors_are_clear() {
    // ambiguous: two float outputs, none named logits
    let mut g = linear();
    let y = g.outputs[0];
    assert!(g.rename(y, "a"));
    let z = Builder::new(&mut g, 17, "").unary(Op::Relu, y);
    g.outputs.push(z);
    let e = stage_error(g, CompileOptions::default());
    assert!(e.contains("--logits NAME"), "{e}");

    // no float output
    let mut g = linear();
    let y = g.outputs[0];
    let am = Builder::new(&mut g, 17, "").op(Op::ArgMax, &[y], vec![("axis", Attr::Int(1))]);
    g.outputs = vec![am];
    let e = stage_error(g, CompileOptions::default());
    assert!(e.contains("no floating-point output"), "{e}");

    // unknown --logits
    let options = CompileOptions {
        logits: Some("scores".into()),
        ..CompileOptions::default()
    };
    let e = stage_error(linear(), options);
    assert!(e.contains("--logits 'scores'"), "{e}");

    // labels name taken
    let options = CompileOptions {
        labels: "input".into(),
        ..CompileOptions::default()
    };
    let e = stage_error(linear(), options);
    assert!(e.contains("--labels NAME"), "{e}");
}

#[test]
fn freeze_and_generated_names_select_parameters() {
    let mut g = linear();
    let y = g.outputs[0];
    // folded values with exporter-generated names on the loss path: a weight operand (a
    // transposed Linear weight, trained) and an additive constant (a folded mask, not trained)
    let folded_weight = weight(&mut g, "onnx::MatMul_12", &[4, 4]);
    let folded_mask = weight(&mut g, "val_13", &[4, 4]);
    let mut b = Builder::new(&mut g, 17, "");
    let z = b.matmul(y, folded_weight);
    let z = b.add(z, folded_mask);
    assert!(g.rename(y, "hidden"));
    assert!(g.rename(z, "logits"));
    g.outputs = vec![z];
    let options = CompileOptions {
        freeze: Some(regex::Regex::new("bias$").expect("regex")),
        ..CompileOptions::default()
    };
    let (m, cx) = run_grad(g, options).expect("grad pipeline");
    assert_eq!(
        names(&m.graph, &cx.params),
        ["fc.weight", "onnx::MatMul_12"]
    );
    let warned = |needle: &str, also: &str| {
        cx.warnings
            .iter()
            .any(|w| w.contains(needle) && w.contains(also))
    };
    assert!(
        warned("'onnx::MatMul_12'", "are trained"),
        "{:?}",
        cx.warnings
    );
    assert!(warned("'val_13'", "not trained"), "{:?}", cx.warnings);
}

#[test]
fn a_tied_weight_is_one_parameter_with_summed_gradient() {
    let mut g = Graph::new("tied");
    let ids = input(&mut g, "ids", DType::I64, &[batch()]);
    let emb = weight(&mut g, "wte", &[6, 3]);
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.op(Op::Gather, &[emb, ids], vec![]);
    let t = b.transpose(emb, &[1, 0]);
    let logits = b.matmul(h, t);
    assert!(g.rename(logits, "logits"));
    g.outputs = vec![logits];
    let (m, cx) = run_grad(g, CompileOptions::default()).expect("grad pipeline");
    assert_eq!(names(&m.graph, &cx.params), ["wte"]);
    let grad = m.graph.producer(cx.grads[0]).expect("computed gradient");
    assert_eq!(
        m.graph.node(grad).op,
        Op::Add,
        "both uses of the tied weight contribute"
    );
}

#[test]
fn no_trainable_parameters_is_an_error() {
    let options = CompileOptions {
        freeze: Some(regex::Regex::new("fc").expect("regex")),
        ..CompileOptions::default()
    };
    let e = stage_error(linear(), options);
    assert!(
        e.contains("no trainable parameters") && e.contains("2 frozen"),
        "{e}"
    );
}

/// x [batch, 2, 4, 4] → BatchNormalization in inference mode (as the dynamo exporter writes
/// it) → Dropout (training) → GlobalAveragePool → Flatten → `logits`.
fn bn_dropout_model(ratio: f32) -> Graph {
    let mut g = Graph::new("bn");
    let x = input(
        &mut g,
        "input",
        DType::F32,
        &[batch(), fixed(2), fixed(4), fixed(4)],
    );
    let scale = weight(&mut g, "bn.weight", &[2]);
    let shift = weight(&mut g, "bn.bias", &[2]);
    let mean = weight(&mut g, "bn.running_mean", &[2]);
    let var = weight(&mut g, "bn.running_var", &[2]);
    let mut b = Builder::new(&mut g, 17, "");
    let y = b.op(
        Op::BatchNormalization,
        &[x, scale, shift, mean, var],
        vec![],
    );
    let r = b.scalar(DType::F32, ratio as f64);
    let t = b.constant(Tensor::from_bool(&[], &[true]));
    let d = b.op(Op::Dropout, &[y, r, t], vec![]);
    let p = b.unary(Op::GlobalAveragePool, d);
    let logits = b.unary(Op::Flatten, p);
    assert!(g.rename(logits, "logits"));
    g.outputs = vec![logits];
    g
}

#[test]
fn batchnorm_statistics_become_buffers_and_dropout_a_recorded_mask() {
    let (m, cx) =
        run_grad(bn_dropout_model(0.5), CompileOptions::default()).expect("grad pipeline");
    let g = &m.graph;
    assert!(
        g.order()
            .iter()
            .all(|&n| !matches!(g.node(n).op, Op::BatchNormalization | Op::Dropout)),
        "no BatchNormalization or Dropout left"
    );
    let buffers: Vec<String> = cx
        .buffers
        .iter()
        .map(|&(i, _)| g.name(i).to_string())
        .collect();
    assert_eq!(buffers, ["bn.running_mean", "bn.running_var"]);
    for &(i, _) in &cx.buffers {
        assert_eq!(g.value(i).def, ValueDef::Input);
        assert!(g.value(i).init.is_some());
    }
    assert_eq!(names(g, &cx.params), ["bn.weight", "bn.bias"]);
    assert_eq!(cx.dropouts.len(), 1);
    assert_eq!(cx.dropouts[0].ratio, 0.5);
    let region = grad::loss_region(g, cx.loss.expect("loss"));
    let mul = g.producer(cx.dropouts[0].output).expect("mask product");
    assert!(region.contains(&mul), "the dropout is in the loss region");
    assert!(g
        .order()
        .iter()
        .any(|&n| g.node(n).op == Op::RandomUniformLike));
}

#[test]
fn ratio_zero_dropout_is_an_identity() {
    let (m, cx) =
        run_grad(bn_dropout_model(0.0), CompileOptions::default()).expect("grad pipeline");
    assert!(cx.dropouts.is_empty());
    let g = &m.graph;
    assert!(g
        .order()
        .iter()
        .all(|&n| g.node(n).op != Op::RandomUniformLike));
}

#[test]
fn split_to_sequence_pieces_become_slices() {
    let mut g = Graph::new("split");
    let x = input(&mut g, "input", DType::F32, &[batch(), fixed(6)]);
    let w = weight(&mut g, "w", &[6]);
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.mul(x, w);
    let split = b.scalar(DType::I64, 2.0);
    let (_, seq) = b.node(
        Op::SplitToSequence,
        &[Some(h), Some(split)],
        1,
        vec![("axis", Attr::Int(1))],
    );
    let i1 = b.scalar(DType::I64, 1.0);
    let last = b.scalar(DType::I64, -1.0);
    let a = b.op(Op::SequenceAt, &[seq[0], i1], vec![]);
    let c = b.op(Op::SequenceAt, &[seq[0], last], vec![]);
    let logits = b.add(a, c);
    assert!(g.rename(logits, "logits"));
    g.outputs = vec![logits];
    let (m, cx) = run_grad(g, CompileOptions::default()).expect("grad pipeline");
    let g = &m.graph;
    let region = grad::loss_region(g, cx.loss.expect("loss"));
    assert!(region.iter().all(|&n| g.node(n).op != Op::SequenceAt));
    assert_eq!(
        region
            .iter()
            .filter(|&&n| g.node(n).op == Op::Slice)
            .count(),
        2
    );
}

#[test]
fn opset_is_raised_when_every_node_allows_it() {
    let (m, _) = {
        let mut mm = Model::new(linear(), 12);
        let mut cx = Context::default();
        let mut passes = cleanup_passes();
        passes.extend(grad::passes(&cx).expect("stages"));
        PassManager::new(passes)
            .run(&mut mm, &mut cx)
            .expect("grad pipeline");
        (mm, cx)
    };
    assert_eq!(m.opset(), gen_passes::autodiff::MIN_OPSET);

    let mut g = linear();
    let y = g.outputs[0];
    let s = Builder::new(&mut g, 11, "").op(Op::Softmax, &[y], vec![("axis", Attr::Int(1))]);
    assert!(g.rename(y, "pre"));
    assert!(g.rename(s, "logits"));
    g.outputs = vec![s];
    let mut mm = Model::new(g, 11);
    let mut cx = Context::default();
    let e = PassManager::new(grad::passes(&cx).expect("stages"))
        .run(&mut mm, &mut cx)
        .expect_err("Softmax changed at opset 13")
        .to_string();
    assert!(e.contains("Softmax") && e.contains("opset 13"), "{e}");
}

#[test]
fn an_operator_without_gradient_names_op_node_and_parameter() {
    let mut g = Graph::new("custom");
    let x = input(&mut g, "x", DType::F32, &[fixed(2), fixed(3)]);
    let w = weight(&mut g, "w", &[3]);
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.mul(x, w);
    let (n, outs) = b.node(
        Op::Other {
            domain: "com.microsoft".into(),
            op_type: "FastGelu".into(),
        },
        &[Some(h)],
        1,
        vec![],
    );
    b.g.node_mut(n).name = "act".into();
    b.g.value_mut(outs[0]).ty =
        Type::Tensor(TensorType::new(DType::F32, Some(vec![fixed(2), fixed(3)])));
    let loss = b.sum_all(outs[0]);
    match differentiate(&mut g, 17, loss, &[w]) {
        Err(e @ AutodiffError::NoRule { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("com.microsoft::FastGelu")
                    && text.contains("'act'")
                    && text.contains("'w'"),
                "{text}"
            );
        }
        other => panic!("expected NoRule, got {other:?}"),
    }
}

#[test]
fn an_unsupported_configuration_is_a_typed_rule_error() {
    // an einsum reading a diagonal ("ii->i")
    let mut g = Graph::new("diagonal");
    let w = weight(&mut g, "w", &[3, 3]);
    let mut b = Builder::new(&mut g, 17, "");
    let p = b.op(
        Op::Einsum,
        &[w],
        vec![("equation", Attr::String(b"ii->i".to_vec()))],
    );
    let loss = b.sum_all(p);
    match differentiate(&mut g, 17, loss, &[w]) {
        Err(AutodiffError::Rule {
            op, param, reason, ..
        }) => {
            assert_eq!(op, "Einsum");
            assert_eq!(param, "w");
            assert!(matches!(reason, GradError::Unsupported(_)));
        }
        other => panic!("expected a rule error, got {other:?}"),
    }
}

#[test]
fn stop_gradient_inputs_and_unreachable_parameters() {
    // w only shapes the computation (through Shape): no gradient flows, the result is zero
    let mut g = Graph::new("stop");
    let x = input(&mut g, "x", DType::F32, &[fixed(2), fixed(3)]);
    let w = weight(&mut g, "w", &[6]);
    let mut b = Builder::new(&mut g, 17, "");
    let s = b.shape_of(x);
    let r = b.reshape(w, s);
    let shape_only = b.shape_of(r);
    let y = b.reshape(x, shape_only);
    let loss = b.sum_all(y);
    let grads = differentiate(&mut g, 17, loss, &[w]).expect("differentiable");
    let n = g.producer(grads[0]).expect("zeros");
    assert_eq!(g.node(n).op, Op::ConstantOfShape);
}

#[test]
fn differentiate_refuses_old_opsets_and_integer_targets() {
    let mut g = linear();
    let y = g.outputs[0];
    let w = g.by_name("fc.weight").expect("weight");
    let loss = Builder::new(&mut g, 17, "").sum_all(y);
    assert!(matches!(
        differentiate(&mut g, 13, loss, &[w]),
        Err(AutodiffError::Opset { opset: 13, .. })
    ));
    let ids = input(&mut g, "ids", DType::I64, &[fixed(2)]);
    assert!(matches!(
        differentiate(&mut g, 17, loss, &[ids]),
        Err(AutodiffError::NotFloat { .. })
    ));
}
