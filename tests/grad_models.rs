//! Whole-model gradient checks on the PyTorch fixtures in models/ (see models/README.md):
//! the `--emit grad` graph of each fixture, run on ONNX Runtime (CPU, all graph optimisations
//! on) with the reference batch, must give
//! - the reference loss within 1e-5 (relative),
//! - every parameter's gradient within 1e-3 of PyTorch's (relative, norm-wise; a gradient that
//!   is zero in exact arithmetic, such as a bias followed by BatchNorm, must stay at rounding
//!   level),
//! - exactly the fixture's parameters, and BatchNorm running statistics updated as PyTorch
//!   does (`buffer_after:*`),
//! - a directional derivative that matches the central difference of the loss along a
//!   direction in parameter space (half gradient, half random).

mod grad_support;

use gen_passes::options::LossKind;
use gen_passes::CompileOptions;
use gen_runtime::{Dataset, HostTensor};
use grad_support::{compile_grad, dot, norm, rel_err, require_ort, root, run, Rng};
use std::collections::HashMap;

/// A gradient whose reference norm is below this fraction of the largest gradient norm of the
/// model is zero in exact arithmetic (PyTorch's value is rounding noise).
const ZERO_GRADIENT: f64 = 1e-6;

struct Fixture {
    name: String,
    meta: serde_json::Value,
    reference: HashMap<String, HostTensor>,
}

fn fixture(name: &str) -> Fixture {
    let dir = root().join("models").join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("fixture meta.json"))
            .expect("meta.json is JSON");
    let reference = Dataset::load(&dir.join("reference.npz"))
        .expect("fixture reference.npz")
        .arrays()
        .iter()
        .cloned()
        .collect();
    Fixture {
        name: name.to_string(),
        meta,
        reference,
    }
}

impl Fixture {
    fn strings(&self, key: &str) -> Vec<String> {
        self.meta[key]
            .as_array()
            .unwrap_or_else(|| panic!("meta.json of {}: no list '{key}'", self.name))
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    }

    fn reference(&self, key: &str) -> Vec<f64> {
        self.reference
            .get(key)
            .unwrap_or_else(|| panic!("reference.npz of {}: no array '{key}'", self.name))
            .to_f64_vec()
            .expect("numeric array")
    }

    /// The reference batch: model inputs and labels.
    fn feeds(&self) -> Vec<(String, HostTensor)> {
        let mut feeds: Vec<(String, HostTensor)> = self
            .reference
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("input:").map(|n| (n.to_string(), t.clone())))
            .collect();
        feeds.push(("labels".to_string(), self.reference["labels"].clone()));
        feeds
    }
}

/// What the check measured.
struct Report {
    loss_err: f64,
    worst_grad: (f64, String),
    directional: f64,
}

fn check(name: &str) -> Report {
    require_ort();
    let fx = fixture(name);
    let dir = root().join("models").join(name);
    let model = gen_passes::onnx::load(&dir.join("model.onnx")).expect("fixture model");
    let options = CompileOptions {
        loss: match fx.meta["loss"].as_str() {
            Some("mse") => LossKind::Mse,
            _ => LossKind::Auto,
        },
        ..CompileOptions::default()
    };
    let (m, cx) = compile_grad(model, options, true);
    let bytes = gen_passes::onnx::to_bytes(&m);
    let grads: HashMap<String, String> =
        serde_json::from_str(m.metadata("gen.grads").expect("gen.grads metadata"))
            .expect("gen.grads is a JSON object");

    let mut params = fx.strings("parameters");
    let mut found: Vec<String> = grads.keys().cloned().collect();
    params.sort();
    found.sort();
    assert_eq!(
        found, params,
        "{name}: discovered parameters differ from the fixture's"
    );

    let feeds = fx.feeds();
    let out = run(&bytes, &feeds).unwrap_or_else(|e| panic!("{name}: {e}"));
    let loss_name = m.graph.name(m.graph.outputs[0]).to_string();
    let loss = out[&loss_name].scalar_f64().expect("scalar loss");
    let ref_loss = fx.reference("loss")[0];
    let loss_err = (loss - ref_loss).abs() / ref_loss.abs();
    assert!(
        loss_err <= 1e-5,
        "{name}: loss {loss} vs PyTorch {ref_loss} (relative error {loss_err:.2e})"
    );

    let refs: HashMap<&String, Vec<f64>> = params
        .iter()
        .map(|p| (p, fx.reference(&format!("grad:{p}"))))
        .collect();
    let scale = refs.values().map(|r| norm(r)).fold(0.0, f64::max);
    let mut worst = (0.0, String::new());
    let mut ours: HashMap<&String, Vec<f64>> = HashMap::new();
    for p in &params {
        let g = out[&grads[p]].to_f64_vec().expect("gradient");
        let r = &refs[p];
        assert_eq!(
            g.len(),
            r.len(),
            "{name}: gradient of {p} has the wrong size"
        );
        let err = if norm(r) < ZERO_GRADIENT * scale {
            assert!(
                norm(&g) < ZERO_GRADIENT * scale,
                "{name}: gradient of {p} should be zero (PyTorch: {:.2e}), is {:.2e}",
                norm(r),
                norm(&g)
            );
            0.0
        } else {
            rel_err(&g, r)
        };
        assert!(
            err <= 1e-3,
            "{name}: gradient of {p} differs from PyTorch's (relative error {err:.2e})"
        );
        if err >= worst.0 {
            worst = (err, p.clone());
        }
        ours.insert(p, g);
    }

    for (key, after) in &fx.reference {
        let Some(buffer) = key.strip_prefix("buffer_after:") else {
            continue;
        };
        let got = out
            .get(&format!("{buffer}.next"))
            .unwrap_or_else(|| panic!("{name}: no update of running statistic {buffer}"));
        let err = rel_err(
            &got.to_f64_vec().expect("f64"),
            &after.to_f64_vec().expect("f64"),
        );
        assert!(
            err <= 1e-5,
            "{name}: running statistic {buffer} after the step: relative error {err:.2e}"
        );
    }
    // every running statistic has a `buffer_after:` reference (meta.json's `buffers` also
    // lists integer buffers such as RoBERTa's token_type_ids)
    assert_eq!(
        cx.buffers.len(),
        fx.reference
            .keys()
            .filter(|k| k.starts_with("buffer_after:"))
            .count(),
        "{name}: BatchNorm running statistics carried as buffers"
    );

    // directional derivative along d = ĝ + r̂ (unit gradient plus a unit random direction):
    // float32 rounding in the loss drowns the tiny projection of a purely random direction
    let mut rng = Rng::new(0x5eed);
    let random: HashMap<&String, Vec<f64>> = params
        .iter()
        .map(|p| (p, (0..refs[p].len()).map(|_| rng.normal()).collect()))
        .collect();
    let rnorm: f64 = random.values().map(|d| dot(d, d)).sum::<f64>().sqrt();
    let gnorm: f64 = ours.values().map(|g| dot(g, g)).sum::<f64>().sqrt();
    let dirs: HashMap<&String, Vec<f64>> = params
        .iter()
        .map(|p| {
            (
                p,
                ours[p]
                    .iter()
                    .zip(&random[p])
                    .map(|(g, r)| g / gnorm + r / rnorm)
                    .collect(),
            )
        })
        .collect();
    let total: f64 = dirs.values().map(|d| dot(d, d)).sum::<f64>().sqrt();
    let analytic: f64 = params.iter().map(|p| dot(&ours[p], &dirs[p])).sum::<f64>() / total;
    let h = 1e-3;
    let initial = |p: &str| -> Vec<f64> {
        m.graph
            .by_name(p)
            .and_then(|v| m.graph.value(v).init.as_ref())
            .and_then(|t| t.to_f64_vec())
            .expect("parameter default")
    };
    let loss_at = |sign: f64| -> f64 {
        let mut f = feeds.clone();
        for p in &params {
            let w: Vec<f32> = initial(p)
                .iter()
                .zip(&dirs[p])
                .map(|(w, d)| (w + sign * h * d / total) as f32)
                .collect();
            let shape = fx.reference[&format!("grad:{p}")].shape().to_vec();
            f.push((p.clone(), HostTensor::from_vec(shape, w).expect("tensor")));
        }
        run(&bytes, &f).unwrap_or_else(|e| panic!("{name}: {e}"))[&loss_name]
            .scalar_f64()
            .expect("scalar loss")
    };
    let fd = (loss_at(1.0) - loss_at(-1.0)) / (2.0 * h);
    let directional = (fd - analytic).abs() / analytic.abs().max(1e-3);
    assert!(
        directional <= 2e-2,
        "{name}: directional derivative {analytic:.6e}, central difference {fd:.6e} (relative error {directional:.2e})"
    );
    let report = Report {
        loss_err,
        worst_grad: worst,
        directional,
    };
    println!(
        "{name}: loss error {:.1e}, worst gradient error {:.1e} ({}), directional derivative error {:.1e}",
        report.loss_err, report.worst_grad.0, report.worst_grad.1, report.directional
    );
    report
}

#[test]
fn mlp_matches_pytorch() {
    check("mlp");
}

#[test]
fn cnn_bn_matches_pytorch() {
    check("cnn_bn");
}

#[test]
fn resnet_dynamo_matches_pytorch() {
    check("resnet");
}

#[test]
fn vit_matches_pytorch() {
    check("vit");
}

#[test]
fn vit_dynamo_matches_pytorch() {
    check("vit_dynamo");
}

#[test]
fn gpt2_dynamo_matches_pytorch() {
    check("gpt2");
}

#[test]
fn bert_matches_pytorch() {
    check("bert");
}

#[test]
fn recsys_matches_pytorch() {
    check("recsys");
}

// export_zoo.py fixtures

#[test]
fn unet_segmentation_matches_pytorch() {
    check("unet_ts");
}

#[test]
fn roberta_dynamo_matches_pytorch() {
    check("roberta_dynamo");
}

#[test]
fn group_norm_reflect_pad_matches_pytorch() {
    check("gn_reflect_ts");
}
