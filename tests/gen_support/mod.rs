//! Shared helpers of the optimizer / GeN / train-graph tests: small models whose gradient is
//! written by hand (so these tests check the training stages on their own, independently of
//! autodiff), the train pipeline run on them, and ONNX Runtime through gen-runtime.
#![allow(dead_code)]

use gen_passes::ir::{
    Attr, Builder, DType, Dim, Model, Op, Tensor, TensorType, Type, ValueDef, ValueId,
};
use gen_passes::pipeline::{cleanup_passes, train, Context, PassManager};
use gen_passes::CompileOptions;
use gen_runtime::HostTensor;
use std::path::{Path, PathBuf};

#[path = "../support/common.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{require_ort, root};

pub const OPSET: i64 = 17;

/// A fresh scratch folder under target/tmp/gen-tests (emptied first; names are unique per
/// test, and the files stay there for inspection after a failure).
pub fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target")
        .join("tmp")
        .join("gen-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// A model with an empty graph at `OPSET`.
pub fn empty_model() -> Model {
    let mut m = Model {
        ir_version: 8,
        ..Model::default()
    };
    m.opsets.insert(String::new(), OPSET);
    m.graph.name = "test".into();
    m
}

/// Makes an initializer a graph input with itself as default (what parameter discovery does).
pub fn make_param(m: &mut Model, v: ValueId) {
    let g = &mut m.graph;
    if g.value(v).def == ValueDef::Initializer {
        g.value_mut(v).def = ValueDef::Input;
        g.inputs.push(v);
    }
}

/// Adds a parameter input with default `init`.
pub fn param(m: &mut Model, name: &str, init: Tensor) -> ValueId {
    let v = m.graph.add_initializer(name, init);
    make_param(m, v);
    v
}

pub fn batch_input(m: &mut Model, name: &str, dtype: DType, rest: &[i64]) -> ValueId {
    let mut shape = vec![Dim::Sym("batch".into())];
    shape.extend(rest.iter().map(|&d| Dim::Fixed(d)));
    m.graph
        .add_input(name, Type::Tensor(TensorType::new(dtype, Some(shape))))
}

/// Runs the train stages (and the final cleanup) on a model whose `cx` already holds the loss,
/// parameters and gradients.
pub fn run_train_passes(m: &mut Model, mut cx: Context) -> Context {
    let mut passes = train::passes(&cx).expect("train passes");
    passes.extend(cleanup_passes());
    let mut pm = PassManager::new(passes);
    pm.run(m, &mut cx).expect("train passes run");
    cx
}

/// A context for a hand-built model.
pub fn context(
    options: CompileOptions,
    loss: ValueId,
    params: Vec<ValueId>,
    grads: Vec<ValueId>,
    model_inputs: &[&str],
    model_outputs: &[&str],
    labels: Vec<ValueId>,
) -> Context {
    Context {
        options,
        loss: Some(loss),
        params,
        grads,
        model_inputs: model_inputs.iter().map(|s| s.to_string()).collect(),
        model_outputs: model_outputs.iter().map(|s| s.to_string()).collect(),
        label_inputs: labels,
        ..Context::default()
    }
}

pub fn save(m: &Model, path: &Path) {
    gen_passes::onnx::save(m, path, &gen_passes::onnx::ExportOptions::default()).expect("save");
}

/// The exactly quadratic model `L(w) = sign · mean_b Σ_i ½·a_i·(w_i − x_bi)²` in float64, with
/// its hand-written gradient `sign · a ⊙ (w − mean_b x)`. Data input `x` [batch, n].
pub fn quadratic(options: CompileOptions, a: &[f64], w0: &[f64], sign: f64) -> (Model, Context) {
    let n = a.len() as i64;
    let mut m = empty_model();
    let x = batch_input(&mut m, "x", DType::F64, &[n]);
    let w = param(&mut m, "w", Tensor::from_f64(&[n], w0));
    let mut b = Builder::new(&mut m.graph, OPSET, "quad/");
    let half_a: Vec<f64> = a.iter().map(|v| 0.5 * v * sign).collect();
    let ha = b.constant(Tensor::from_f64(&[n], &half_a));
    let diff = b.sub(w, x);
    let sq = b.mul(diff, diff);
    let weighted = b.mul(sq, ha);
    let per = b.reduce_sum(weighted, &[1], false);
    let loss = b.reduce_mean(per, &[0], false);
    let sa: Vec<f64> = a.iter().map(|v| v * sign).collect();
    let sa = b.constant(Tensor::from_f64(&[n], &sa));
    let mean_diff = b.reduce_mean(diff, &[0], false);
    let grad = b.mul(sa, mean_diff);
    let cx = context(options, loss, vec![w], vec![grad], &["x"], &[], vec![]);
    (m, cx)
}

/// A model whose gradient is fed: parameters `names` (shapes `shapes`, initial `inits`), data
/// inputs `grad.<name>`, loss `Σ sum(grad ⊙ w)` whose gradient is exactly the fed tensor. Lets
/// the optimizer be checked against recorded PyTorch gradients.
pub fn fed_gradient(
    options: CompileOptions,
    params: &[(String, Vec<i64>, Vec<f32>)],
) -> (Model, Context) {
    let mut m = empty_model();
    let mut ws = Vec::new();
    let mut gs = Vec::new();
    let mut inputs = Vec::new();
    for (name, shape, init) in params {
        let gname = format!("grad.{name}");
        let g = m
            .graph
            .add_input(&gname, Type::Tensor(TensorType::fixed(DType::F32, shape)));
        let w = param(&mut m, name, Tensor::from_f32(shape, init));
        ws.push(w);
        gs.push(g);
        inputs.push(gname);
    }
    let mut b = Builder::new(&mut m.graph, OPSET, "fed/");
    let mut loss = None;
    for (&w, &g) in ws.iter().zip(&gs) {
        let p = b.mul(w, g);
        let s = b.sum_all(p);
        loss = Some(match loss {
            None => s,
            Some(l) => b.add(l, s),
        });
    }
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let cx = context(
        options,
        loss.expect("a parameter"),
        ws,
        gs.clone(),
        &names,
        &[],
        vec![],
    );
    (m, cx)
}

/// The reference fixture's MLP (models/gen_reference/mlp.onnx) with mean cross-entropy and a
/// hand-written gradient (Gemm → Relu → Gemm).
pub fn reference_mlp(options: CompileOptions) -> (Model, Context) {
    let path = root().join("models/gen_reference/mlp.onnx");
    let mut m = gen_passes::onnx::load(&path).expect("load mlp.onnx");
    let opset = m.opset();
    let g = &m.graph;
    let by = |n: &str| {
        g.by_name(n)
            .unwrap_or_else(|| panic!("mlp.onnx has no value {n}"))
    };
    let (w0, b0, w1, b1) = (by("0.weight"), by("0.bias"), by("2.weight"), by("2.bias"));
    let x = by("input");
    let logits = by("logits");
    let gemms: Vec<_> = g
        .order()
        .iter()
        .copied()
        .filter(|&n| g.node(n).op == Op::Gemm)
        .collect();
    let relu = g
        .order()
        .iter()
        .copied()
        .find(|&n| g.node(n).op == Op::Relu)
        .expect("relu");
    let h = g.node(gemms[0]).output(0).expect("h");
    let r = g.node(relu).output(0).expect("r");
    for v in [w0, b0, w1, b1] {
        make_param(&mut m, v);
    }
    let labels = batch_input(&mut m, "labels", DType::I64, &[]);
    let mut b = Builder::new(&mut m.graph, opset, "ce/");
    let logp = b.op(Op::LogSoftmax, &[logits], vec![("axis", Attr::Int(-1))]);
    let loss = b.op(
        Op::NegativeLogLikelihoodLoss,
        &[logp, labels],
        vec![("reduction", Attr::String(b"mean".to_vec()))],
    );
    // d loss / d logits = (softmax − onehot) / batch
    let p = b.unary(Op::Exp, logp);
    let depth = b.constant(Tensor::from_i64(&[], &[10]));
    let values = b.constant(Tensor::from_f32(&[2], &[0.0, 1.0]));
    let onehot = b.op(
        Op::OneHot,
        &[labels, depth, values],
        vec![("axis", Attr::Int(-1))],
    );
    let count = b.sum_all(onehot);
    let diff = b.sub(p, onehot);
    let dz = b.div(diff, count);
    let dzt = b.transpose(dz, &[1, 0]);
    let gw1 = b.matmul(dzt, r);
    let gb1 = b.reduce_sum(dz, &[0], false);
    let dr = b.matmul(dz, w1);
    let zero = b.scalar(DType::F32, 0.0);
    let on = b.op(Op::Greater, &[h, zero], vec![]);
    let dh = b.where_(on, dr, zero);
    let dht = b.transpose(dh, &[1, 0]);
    let gw0 = b.matmul(dht, x);
    let gb0 = b.reduce_sum(dh, &[0], false);
    let cx = context(
        options,
        loss,
        vec![w0, b0, w1, b1],
        vec![gw0, gb0, gw1, gb1],
        &["input"],
        &["logits"],
        vec![labels],
    );
    (m, cx)
}

pub fn f64_tensor(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor::from_vec(shape.to_vec(), v.to_vec()).expect("tensor")
}

pub fn f32_tensor(shape: &[usize], v: &[f32]) -> HostTensor {
    HostTensor::from_vec(shape.to_vec(), v.to_vec()).expect("tensor")
}

/// A state value of a train session, as f64.
pub fn state_f64(s: &gen_runtime::TrainSession, name: &str) -> Vec<f64> {
    let st = s.state().expect("state");
    st.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no state {name}"))
        .1
        .to_f64_vec()
        .expect("numeric")
}

/// Opens a train graph on the CPU with ONNX Runtime (all optimisations, as gen-train does).
pub fn open(path: &Path) -> gen_runtime::TrainSession {
    require_ort();
    gen_runtime::TrainSession::open(path, &gen_runtime::TrainOptions::default())
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// A model with carried non-parameter state, like BatchNorm's running statistics:
/// `y = x − mean_b(x)` (batch statistics), `L = mean_b Σ ½·a·(w − y_b)²` (float32), and the
/// buffer `r ← 0.9·r + 0.1·mean_b(x)` (input `r`, zeros as default) in `cx.buffers`.
pub fn running_mean_model(options: CompileOptions, a: &[f32], w0: &[f32]) -> (Model, Context) {
    let n = a.len() as i64;
    let mut m = empty_model();
    let x = batch_input(&mut m, "x", DType::F32, &[n]);
    let w = param(&mut m, "w", Tensor::from_f32(&[n], w0));
    let r = param(&mut m, "r", Tensor::from_f32(&[n], &vec![0.0; a.len()]));
    let mut b = Builder::new(&mut m.graph, OPSET, "rm/");
    let mu = b.reduce_mean(x, &[0], true);
    let y = b.sub(x, mu);
    let diff = b.sub(w, y);
    let sq = b.mul(diff, diff);
    let half_a: Vec<f32> = a.iter().map(|v| 0.5 * v).collect();
    let ha = b.constant(Tensor::from_f32(&[n], &half_a));
    let weighted = b.mul(sq, ha);
    let per = b.reduce_sum(weighted, &[1], false);
    let loss = b.reduce_mean(per, &[0], false);
    let av = b.constant(Tensor::from_f32(&[n], a));
    let mean_diff = b.reduce_mean(diff, &[0], false);
    let grad = b.mul(av, mean_diff);
    let mu1 = b.reduce_mean(x, &[0], false);
    let keep = b.scale(r, 0.9);
    let add = b.scale(mu1, 0.1);
    let r_next = b.add(keep, add);
    let mut cx = context(options, loss, vec![w], vec![grad], &["x"], &[], vec![]);
    cx.buffers = vec![(r, r_next)];
    (m, cx)
}

/// Every node of `g` and its subgraphs.
pub fn all_nodes(g: &gen_passes::ir::Graph) -> Vec<gen_passes::ir::Node> {
    let mut out = Vec::new();
    for &n in g.order() {
        let node = g.node(n);
        for sg in node.subgraphs() {
            out.extend(all_nodes(sg));
        }
        out.push(node.clone());
    }
    out
}

/// Compiles `model` (an .onnx file) with the whole `--emit train` pipeline and writes the
/// train graph and its eval companion as the command line does (`train.onnx`,
/// `train.eval.onnx`) into `dir`. Returns the train graph's path.
pub fn compile_file(model: &Path, options: &CompileOptions, dir: &Path) -> PathBuf {
    let m = gen_passes::onnx::load(model).expect("load model");
    let mut compiled = gen_passes::compile(
        m,
        gen_passes::Emit::Train,
        options,
        &gen_passes::pipeline::Debug::default(),
    )
    .unwrap_or_else(|e| panic!("compiling {}: {e}", model.display()));
    let path = dir.join("train.onnx");
    for (suffix, c) in &compiled.companions {
        let name = format!("train.{suffix}.onnx");
        save(c, &dir.join(&name));
        if suffix == "eval" {
            gen_passes::pipeline::contract::set_eval_model(&mut compiled.model, &name);
        }
    }
    save(&compiled.model, &path);
    path
}
