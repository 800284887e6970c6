//! Gradient graphs on tract (cargo feature `tract`): every model fixture in models/ compiled with
//! `--emit grad`, run once on tract and once on ONNX Runtime with the same batch and the
//! parameters fed as inputs (as a training step feeds them); the loss, every gradient and every
//! other output must agree within 1e-4 (relative, norm-wise; a gradient that is zero in exact
//! arithmetic, such as a bias before BatchNorm, must stay at rounding level on both).
//!
//! Fixtures tract cannot run are listed in `EXPECTED_FAILURES` with the reason, so a change that
//! makes one run (or breaks another) fails here and the table in docs/RUNTIME.md is updated.
#![cfg(feature = "tract")]

mod grad_support;

use gen_passes::ir::{Attr, Builder, DType, Graph, Op};
use gen_passes::options::LossKind;
use gen_passes::CompileOptions;
use gen_runtime::{run_model_tract, Dataset, HostTensor, OnnxModel};
use grad_support::{float_tensor, input, model, norm, rel_err, require_ort, root, run, Rng};
use std::collections::HashMap;
use std::path::Path;

/// Fixtures tract rejects: (fixture, a phrase of tract's error naming the op or limitation).
const EXPECTED_FAILURES: &[(&str, &str)] = &[(
    // position ids: a cumulative sum over integers computed from shapes, which tract holds as
    // symbolic dimensions (TDim) and its CumSum cannot add
    "gpt2",
    "CumSum: TDim is not a number",
)];

/// Relative agreement required between the two runtimes.
const TOLERANCE: f64 = 1e-4;

/// An output whose ONNX Runtime norm is below this fraction of the largest gradient norm is zero
/// in exact arithmetic: both runtimes must keep it at that level.
const ZERO: f64 = 1e-6;

/// The reference batch of a PyTorch fixture: model inputs and labels.
fn fixture_batch(name: &str) -> (std::path::PathBuf, LossKind, Vec<(String, HostTensor)>) {
    let dir = root().join("models").join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
            .expect("meta.json is JSON");
    let loss = match meta["loss"].as_str() {
        Some("mse") => LossKind::Mse,
        _ => LossKind::Auto,
    };
    let reference = Dataset::load(&dir.join("reference.npz")).expect("reference.npz");
    let mut feeds: Vec<(String, HostTensor)> = reference
        .arrays()
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("input:").map(|n| (n.to_string(), t.clone())))
        .collect();
    let labels = reference
        .arrays()
        .iter()
        .find(|(k, _)| k == "labels")
        .expect("reference labels");
    feeds.push(labels.clone());
    (dir.join("model.onnx"), loss, feeds)
}

/// The first 32 samples of the digits data set.
fn digits_batch() -> Vec<(String, HostTensor)> {
    let data = Dataset::load(&root().join("models/digits/train.npz")).expect("digits train.npz");
    let rows: Vec<usize> = (0..32).collect();
    data.batch(&rows).expect("a batch")
}

/// A compiled gradient graph and what to feed it.
struct GradGraph {
    bytes: Vec<u8>,
    /// parameter → gradient output
    grads: HashMap<String, String>,
    /// the batch plus every parameter at its initial value
    feeds: Vec<(String, HostTensor)>,
}

/// Compiles `model` with `--emit grad` and feeds it `batch` and the initial parameters.
fn grad_graph(model: &Path, loss: LossKind, batch: Vec<(String, HostTensor)>) -> GradGraph {
    let m = gen_passes::onnx::load(model).expect("load the fixture");
    let options = CompileOptions {
        loss,
        ..CompileOptions::default()
    };
    let compiled = gen_passes::compile(
        m,
        gen_passes::Emit::Grad,
        &options,
        &gen_passes::pipeline::Debug::default(),
    )
    .unwrap_or_else(|e| panic!("compiling {}: {e}", model.display()));
    let bytes = gen_passes::onnx::to_bytes(&compiled.model);
    let grads: HashMap<String, String> = serde_json::from_str(
        compiled
            .model
            .metadata("gen.grads")
            .expect("gen.grads metadata"),
    )
    .expect("gen.grads is JSON");
    let parsed = OnnxModel::parse(model, &bytes).expect("the grad graph parses");
    let mut feeds = batch;
    for param in grads.keys() {
        let init = parsed
            .initializer(param)
            .unwrap_or_else(|| panic!("parameter {param} has no initializer"))
            .expect("initializer decodes");
        feeds.push((param.clone(), init));
    }
    GradGraph {
        bytes,
        grads,
        feeds,
    }
}

/// Runs the grad graph of `name` on both runtimes and compares every output; a fixture in
/// `EXPECTED_FAILURES` must fail on tract with its phrase.
fn compare(name: &str, model: &Path, loss: LossKind, batch: Vec<(String, HostTensor)>) {
    require_ort();
    let GradGraph {
        bytes,
        grads,
        feeds,
    } = grad_graph(model, loss, batch);
    let ort = run(&bytes, &feeds).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = EXPECTED_FAILURES.iter().find(|(n, _)| *n == name);
    let tract = match (run_model_tract(bytes.as_slice(), &feeds), expected) {
        (Ok(outputs), None) => outputs,
        (Err(e), Some((_, why))) => {
            let message = e.to_string();
            assert!(
                message.contains(why),
                "{name}: tract failed as expected, but not with `{why}`: {message}"
            );
            println!("{name}: tract rejects it, as expected: {why}");
            return;
        }
        (Ok(_), Some((_, why))) => panic!(
            "{name}: tract now runs this gradient graph (expected failure: {why}); remove it \
             from EXPECTED_FAILURES and update the table in docs/RUNTIME.md"
        ),
        (Err(e), None) => panic!("{name}: tract failed: {e}"),
    };
    let scale = grads
        .values()
        .map(|g| norm(&ort[g].to_f64_vec().expect("numeric gradient")))
        .fold(0.0, f64::max);
    assert_eq!(
        tract.len(),
        ort.len(),
        "{name}: tract and ONNX Runtime return different outputs"
    );
    let mut worst = (0.0, String::new());
    for (output, t) in &tract {
        let o = &ort[output];
        assert_eq!(t.dtype(), o.dtype(), "{name}: dtype of {output}");
        assert_eq!(t.shape(), o.shape(), "{name}: shape of {output}");
        let (t, o) = (
            t.to_f64_vec().expect("numeric"),
            o.to_f64_vec().expect("numeric"),
        );
        let diff: Vec<f64> = t.iter().zip(&o).map(|(a, b)| a - b).collect();
        if norm(&o) < ZERO * scale {
            // zero in exact arithmetic: both runtimes at rounding level, not compared relatively
            assert!(
                norm(&t) < ZERO * scale,
                "{name}: {output} should be zero (ONNX Runtime: {:.2e}), tract gives {:.2e}",
                norm(&o),
                norm(&t)
            );
            println!(
                "{name}: {output} is zero in exact arithmetic: ONNX Runtime {:.1e}, tract {:.1e}",
                norm(&o),
                norm(&t)
            );
            continue;
        }
        let err = norm(&diff) / norm(&o);
        assert!(
            err <= TOLERANCE,
            "{name}: {output} differs between tract and ONNX Runtime (relative error {err:.2e})"
        );
        if err >= worst.0 {
            worst = (err, output.clone());
        }
    }
    println!(
        "{name}: tract matches ONNX Runtime on {} outputs ({} gradients), worst relative error {:.1e} ({})",
        tract.len(),
        grads.len(),
        worst.0,
        worst.1
    );
}

fn fixture(name: &str) {
    let (model, loss, batch) = fixture_batch(name);
    compare(name, &model, loss, batch);
}

#[test]
fn mlp_grad_on_tract() {
    fixture("mlp");
}

#[test]
fn cnn_bn_grad_on_tract() {
    fixture("cnn_bn");
}

#[test]
fn resnet_grad_on_tract() {
    fixture("resnet");
}

#[test]
fn vit_grad_on_tract() {
    fixture("vit");
}

#[test]
fn vit_dynamo_grad_on_tract() {
    fixture("vit_dynamo");
}

#[test]
fn gpt2_grad_on_tract() {
    fixture("gpt2");
}

#[test]
fn bert_grad_on_tract() {
    fixture("bert");
}

#[test]
fn recsys_grad_on_tract() {
    fixture("recsys");
}

#[test]
fn digits_mlp_grad_on_tract() {
    let model = root().join("models/digits/mlp.onnx");
    compare("digits", &model, LossKind::Auto, digits_batch());
}

/// Every fixture named in the expected-failure list exists (a renamed fixture must not leave a
/// stale entry behind).
#[test]
fn expected_failures_name_fixtures() {
    for (name, _) in EXPECTED_FAILURES {
        assert!(
            *name == "digits"
                || root()
                    .join("models")
                    .join(name)
                    .join("model.onnx")
                    .is_file(),
            "EXPECTED_FAILURES names {name}, which is not a fixture"
        );
    }
}

/// The loss ops tract lacks are expanded into standard ops when tract loads a graph: every
/// variant (SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss; reduction mean, sum and none;
/// with and without class weights and ignore_index; scores [N, C, d]) agrees with ONNX Runtime's
/// kernels.
#[test]
fn loss_ops_expand_like_onnx_runtime() {
    require_ort();
    let mut rng = Rng::new(11);
    let (n, c, d) = (4, 3, 2);
    let scores: Vec<f64> = (0..n * c * d).map(|_| rng.normal()).collect();
    let labels: Vec<i64> = (0..n * d).map(|i| (i as i64 * 7 + 1) % c as i64).collect();
    let weights: Vec<f64> = (0..c).map(|_| 0.5 + rng.uniform()).collect();
    for op in [Op::SoftmaxCrossEntropyLoss, Op::NegativeLogLikelihoodLoss] {
        for reduction in ["mean", "sum", "none"] {
            for weighted in [false, true] {
                for ignore_index in [None, Some(1)] {
                    let case = format!(
                        "{op:?} {reduction} weighted={weighted} ignore_index={ignore_index:?}"
                    );
                    let mut g = Graph::new("loss");
                    let x = input(&mut g, "x", DType::F32, &[n, c, d], false);
                    let t = input(&mut g, "t", DType::I64, &[n, d], false);
                    let mut ins = vec![x, t];
                    let mut feeds = vec![
                        (
                            "x".to_string(),
                            float_tensor(DType::F32, &[n, c, d], &scores),
                        ),
                        (
                            "t".to_string(),
                            HostTensor::from_vec(vec![n, d], labels.clone()).expect("labels"),
                        ),
                    ];
                    if weighted {
                        ins.push(input(&mut g, "w", DType::F32, &[c], false));
                        feeds.push(("w".to_string(), float_tensor(DType::F32, &[c], &weights)));
                    }
                    let mut attrs = vec![("reduction", Attr::String(reduction.into()))];
                    if let Some(ii) = ignore_index {
                        attrs.push(("ignore_index", Attr::Int(ii)));
                    }
                    let loss = Builder::new(&mut g, 17, "loss/").op(op.clone(), &ins, attrs);
                    g.outputs.push(loss);
                    let bytes = gen_passes::onnx::to_bytes(&model(g, 17));
                    let ort = run(&bytes, &feeds).unwrap_or_else(|e| panic!("{case}: {e}"));
                    let tract = run_model_tract(bytes.as_slice(), &feeds)
                        .unwrap_or_else(|e| panic!("{case}: tract: {e}"));
                    let (name, got) = &tract[0];
                    let want = &ort[name];
                    assert_eq!(got.shape(), want.shape(), "{case}");
                    let err = rel_err(
                        &got.to_f64_vec().expect("numeric"),
                        &want.to_f64_vec().expect("numeric"),
                    );
                    assert!(err <= 1e-6, "{case}: relative error {err:.2e}");
                }
            }
        }
    }
}
