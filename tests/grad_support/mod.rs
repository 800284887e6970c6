//! Shared helpers of the gradient tests: tiny graphs built with the builder, the gradient
//! pipeline, ONNX Runtime through gen-runtime, reference fixtures, random numbers and the
//! comparisons.
#![allow(dead_code)]

use gen_passes::ir::{Builder, DType, Dim, Graph, Model, TensorType, Type, ValueId};
use gen_passes::pipeline::{cleanup_passes, grad, Context, PassManager};
use gen_passes::CompileOptions;
use gen_runtime::{run_model, HostTensor, RunModelOptions};
use std::collections::HashMap;

#[path = "../support/common.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{require_ort, root};

/// A deterministic generator of test values (the runtime's SplitMix64 underneath).
pub struct Rng(gen_runtime::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(gen_runtime::SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A float host tensor of `dtype` (F32 or F64).
pub fn float_tensor(dtype: DType, shape: &[usize], values: &[f64]) -> HostTensor {
    let shape = shape.to_vec();
    match dtype {
        DType::F64 => HostTensor::from_vec(shape, values.to_vec()),
        _ => HostTensor::from_vec(shape, values.iter().map(|&v| v as f32).collect()),
    }
    .expect("tensor of matching size")
}

/// A model around `g` at `opset`.
pub fn model(g: Graph, opset: i64) -> Model {
    let mut m = Model {
        ir_version: 8,
        graph: g,
        ..Model::default()
    };
    m.opsets.insert(String::new(), opset);
    m
}

/// Adds a graph input of `dtype` with `dims` (dim 0 symbolic "batch" when `sym_batch`).
pub fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[usize], sym_batch: bool) -> ValueId {
    let shape = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| match (i, sym_batch) {
            (0, true) => Dim::Sym("batch".into()),
            _ => Dim::Fixed(d as i64),
        })
        .collect();
    g.add_input(name, Type::Tensor(TensorType::new(dtype, Some(shape))))
}

/// Runs a model (all ONNX Runtime graph optimisations on) and returns its outputs by name.
pub fn run(
    bytes: &[u8],
    feeds: &[(String, HostTensor)],
) -> Result<HashMap<String, HostTensor>, String> {
    let r = run_model(bytes, feeds, &RunModelOptions::default())
        .map_err(|e| format!("ONNX Runtime failed: {e}"))?;
    Ok(r.outputs.into_iter().collect())
}

/// Runs the gradient pipeline (`--emit grad`) on `m`; keeps the buffer updates as extra
/// outputs named `<buffer>.next` when `with_buffers`.
pub fn compile_grad(mut m: Model, options: CompileOptions, with_buffers: bool) -> (Model, Context) {
    let mut cx = Context {
        options,
        ..Context::default()
    };
    let mut passes = cleanup_passes();
    passes.extend(grad::passes(&cx).expect("gradient stages"));
    passes.push(grad::grad_outputs_pass());
    PassManager::new(passes)
        .run(&mut m, &mut cx)
        .unwrap_or_else(|e| panic!("gradient pipeline failed: {e}"));
    if with_buffers {
        for &(i, u) in &cx.buffers.clone() {
            let name = format!("{}.next", m.graph.name(i));
            let v =
                Builder::new(&mut m.graph, 17, "buffer/").unary(gen_passes::ir::Op::Identity, u);
            assert!(m.graph.rename(v, &name));
            m.graph.outputs.push(v);
        }
    }
    PassManager::new(cleanup_passes())
        .run(&mut m, &mut cx)
        .expect("cleanup");
    (m, cx)
}

/// ‖a − b‖ / ‖b‖ (0 when both are zero).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if n == 0.0 {
        d
    } else {
        d / n
    }
}

pub fn norm(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
