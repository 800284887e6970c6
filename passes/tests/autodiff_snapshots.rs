//! Snapshots (canonical text form) of the backward graphs of tiny models: what autodiff emits,
//! reviewed once and then guarded against accidental change. Refresh with
//! `INSTA_UPDATE=always cargo test -p gen-passes --test autodiff_snapshots` and review the diff.

use gen_passes::autodiff::differentiate;
use gen_passes::ir::text::model_to_text;
use gen_passes::ir::{Attr, Builder, DType, Dim, Graph, Model, Op, Tensor, ValueId};
use gen_passes::pipeline::{cleanup_passes, grad, Context, PassManager};

mod common;
use common::{batch, weight_of};

fn input(g: &mut Graph, name: &str, dims: &[Dim]) -> ValueId {
    common::input(g, name, DType::F32, dims)
}

fn weight(g: &mut Graph, name: &str, dims: &[i64]) -> ValueId {
    weight_of(g, name, dims, |i| (i as f32 * 0.37).sin())
}

/// Differentiates `loss` with respect to `wrt` and snapshots the graph with outputs
/// loss + gradients.
fn backward_text(mut g: Graph, loss: ValueId, wrt: &[ValueId]) -> String {
    let grads = differentiate(&mut g, 17, loss, wrt).expect("differentiable");
    g.outputs = std::iter::once(loss).chain(grads).collect();
    let mut m = Model::new(g, 17);
    PassManager::new(cleanup_passes())
        .run(&mut m, &mut Context::default())
        .expect("cleanup");
    model_to_text(&m)
}

/// MatMul + bias + Relu, mean squared error against a target; symbolic batch.
#[test]
fn linear_relu_mse() {
    let mut g = Graph::new("linear_relu_mse");
    let x = input(&mut g, "x", &[batch(), Dim::Fixed(3)]);
    let t = input(&mut g, "target", &[batch(), Dim::Fixed(2)]);
    let w = weight(&mut g, "w", &[3, 2]);
    let bias = weight(&mut g, "b", &[2]);
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.matmul(x, w);
    let h = b.add(h, bias);
    let y = b.unary(Op::Relu, h);
    let d = b.sub(y, t);
    let sq = b.mul(d, d);
    let loss = b.reduce_mean(sq, &[0, 1], false);
    insta::assert_snapshot!(backward_text(g, loss, &[w, bias]));
}

/// Attention-style scores: broadcast bias, masking with Where, Softmax, a weighted sum.
#[test]
fn masked_softmax_broadcast() {
    let mut g = Graph::new("masked_softmax");
    let x = input(&mut g, "x", &[batch(), Dim::Fixed(4)]);
    let bias = weight(&mut g, "bias", &[4]);
    let v = weight(&mut g, "v", &[4, 1]);
    let mut b = Builder::new(&mut g, 17, "");
    let s = b.add(x, bias);
    let mask = b.constant(Tensor::from_bool(&[4], &[true, true, false, true]));
    let neg = b.scalar(DType::F32, -1e9);
    let masked = b.where_(mask, s, neg);
    let p = b.op(Op::Softmax, &[masked], vec![("axis", Attr::Int(-1))]);
    let o = b.matmul(p, v);
    let loss = b.sum_all(o);
    insta::assert_snapshot!(backward_text(g, loss, &[bias, v]));
}

/// The whole `--emit grad` pipeline on a small classifier exported in training mode: Gemm,
/// BatchNormalization (training_mode=1, 3 outputs), Dropout (ratio 0.25), cross-entropy.
#[test]
fn classifier_grad_pipeline() {
    let mut g = Graph::new("classifier");
    let x = input(&mut g, "input", &[batch(), Dim::Fixed(3)]);
    let w = weight(&mut g, "fc.weight", &[4, 3]);
    let bias = weight(&mut g, "fc.bias", &[4]);
    let scale = weight(&mut g, "bn.weight", &[4]);
    let shift = weight(&mut g, "bn.bias", &[4]);
    let mean = weight(&mut g, "bn.running_mean", &[4]);
    let var = g.add_initializer(
        "bn.running_var",
        Tensor::from_f32(&[4], &[1.0, 0.5, 2.0, 1.5]),
    );
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.op(Op::Gemm, &[x, w, bias], vec![("transB", Attr::Int(1))]);
    let (_, bn) = b.node(
        Op::BatchNormalization,
        &[Some(h), Some(scale), Some(shift), Some(mean), Some(var)],
        3,
        vec![
            ("training_mode", Attr::Int(1)),
            ("momentum", Attr::Float(0.9)),
        ],
    );
    let ratio = b.scalar(DType::F32, 0.25);
    let train = b.constant(Tensor::from_bool(&[], &[true]));
    let (_, dr) = b.node(
        Op::Dropout,
        &[Some(bn[0]), Some(ratio), Some(train)],
        1,
        vec![],
    );
    let logits = b.unary(Op::Relu, dr[0]);
    assert!(g.rename(logits, "logits"));
    g.outputs = vec![logits];
    let mut m = Model::new(g, 17);
    let mut cx = Context::default();
    let mut passes = cleanup_passes();
    passes.extend(grad::passes(&cx).expect("stages"));
    passes.push(grad::grad_outputs_pass());
    passes.extend(cleanup_passes());
    PassManager::new(passes)
        .run(&mut m, &mut cx)
        .expect("grad pipeline");
    insta::assert_snapshot!(model_to_text(&m));
}
