//! The optimizers against PyTorch (models/optim: torch.optim SGD, momentum with dampening,
//! Nesterov, weight decay, Adam with L2, AdamW; 5 steps). The recorded gradients are fed to a
//! graph whose loss has exactly those gradients (tests/gen_support::fed_gradient), so the
//! optimizer update is checked on its own: parameters and optimizer state after every step
//! within 1e-5 of PyTorch's.

mod gen_support;

use gen_passes::options::OptimizerKind;
use gen_passes::CompileOptions;
use gen_runtime::{Dataset, HostTensor};
use gen_support::*;
use serde_json::Value;
use std::path::PathBuf;

const PARAMS: [&str; 4] = ["0.weight", "0.bias", "2.weight", "2.bias"];

fn options_for(cfg: &Value, gen: bool) -> CompileOptions {
    let kind = match (
        cfg["optimizer"].as_str().unwrap(),
        cfg["momentum"].as_f64().unwrap_or(0.0),
    ) {
        ("SGD", 0.0) => OptimizerKind::Sgd,
        ("SGD", _) => OptimizerKind::Momentum,
        ("Adam", _) => OptimizerKind::Adam,
        ("AdamW", _) => OptimizerKind::AdamW,
        (o, _) => panic!("unknown optimizer {o}"),
    };
    let betas = cfg["betas"]
        .as_array()
        .map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap()));
    CompileOptions {
        optimizer: kind,
        lr: cfg["lr"].as_f64().unwrap(),
        weight_decay: Some(cfg["weight_decay"].as_f64().unwrap()),
        momentum: cfg["momentum"].as_f64().unwrap_or(0.0),
        dampening: cfg["dampening"].as_f64().unwrap_or(0.0),
        nesterov: cfg["nesterov"].as_bool().unwrap_or(false),
        betas: betas.unwrap_or((0.9, 0.999)),
        eps: cfg["eps"].as_f64().unwrap_or(1e-8),
        gen,
        // with GeN compiled in but never due, the step must be the plain optimizer step
        lazy_freq: 1000,
        ..CompileOptions::default()
    }
}

/// The optimizer fixture: its folder, optim.json and optim.npz.
fn fixture() -> (PathBuf, Value, Dataset) {
    let dir = root().join("models/optim");
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("optim.json")).expect("optim.json"))
            .unwrap();
    let data = Dataset::load(&dir.join("optim.npz")).expect("optim.npz");
    (dir, meta, data)
}

/// One array of optim.npz by key.
fn array(data: &Dataset, name: &str) -> HostTensor {
    data.arrays()
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("optim.npz has no {name}"))
        .1
        .clone()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn optimizers_match_torch_optim() {
    let (_, meta, data) = fixture();
    let get = |n: &str| array(&data, n);
    let steps = meta["steps"].as_u64().unwrap() as usize;
    let configs = meta["configs"].as_object().unwrap();
    assert!(configs.len() >= 8);
    let mut report = Vec::new();
    for (name, cfg) in configs {
        for gen in [false, true] {
            let params: Vec<(String, Vec<i64>, Vec<f32>)> = PARAMS
                .iter()
                .map(|p| {
                    let t = get(&format!("init:{p}"));
                    let shape = t.shape().iter().map(|&d| d as i64).collect();
                    let v = t.to_f64_vec().unwrap().iter().map(|&x| x as f32).collect();
                    (p.to_string(), shape, v)
                })
                .collect();
            let (mut m, cx) = fed_gradient(options_for(cfg, gen), &params);
            run_train_passes(&mut m, cx);
            let scratch = scratch(&format!("optim-{name}-{gen}"));
            let path = scratch.join("train.onnx");
            save(&m, &path);
            let mut s = open(&path);
            let mut worst: f64 = 0.0;
            for k in 0..steps {
                let batch: Vec<(String, HostTensor)> = PARAMS
                    .iter()
                    .map(|p| {
                        let g = get(&format!("{name}:step{k}:grad:{p}"));
                        let v: Vec<f32> =
                            g.to_f64_vec().unwrap().iter().map(|&x| x as f32).collect();
                        (format!("grad.{p}"), f32_tensor(g.shape(), &v))
                    })
                    .collect();
                let probe = batch.clone();
                let r = s.step(&batch, Some(&probe), 1.0).expect("step");
                assert_eq!(r.gen_applied, if gen { Some(false) } else { None });
                for p in PARAMS {
                    let want = get(&format!("{name}:step{k}:{p}")).to_f64_vec().unwrap();
                    let got = state_f64(&s, p);
                    let e = max_abs_diff(&got, &want);
                    worst = worst.max(e);
                    assert!(e < 1e-5, "{name} (gen {gen}) step {k} {p}: max |Δ| {e:e}");
                    for (slot, state) in [
                        ("momentum_buffer", "opt.buf"),
                        ("exp_avg", "opt.m"),
                        ("exp_avg_sq", "opt.v"),
                    ] {
                        let key = format!("{name}:step{k}:{slot}:{p}");
                        if data.arrays().iter().any(|(n, _)| *n == key) {
                            let want = get(&key).to_f64_vec().unwrap();
                            let got = state_f64(&s, &format!("{state}.{p}"));
                            let e = max_abs_diff(&got, &want);
                            assert!(e < 1e-5, "{name} step {k} {slot} {p}: max |Δ| {e:e}");
                        }
                    }
                }
            }
            report.push(format!(
                "{name}{}: {worst:.1e}",
                if gen { "+gen" } else { "" }
            ));
        }
    }
    eprintln!(
        "max |param − torch| over {steps} steps: {}",
        report.join(", ")
    );
}

/// The whole pipeline on the fixture's exported model (loss, autodiff, optimizer): the loss of
/// every step and the parameters after it match PyTorch's.
#[test]
fn compiled_model_matches_torch_optim() {
    let (dir, meta, data) = fixture();
    let get = |n: &str| array(&data, n);
    let steps = meta["steps"].as_u64().unwrap() as usize;
    let mut report = Vec::new();
    for (name, cfg) in meta["configs"].as_object().unwrap() {
        let scratch = scratch(&format!("optim-compiled-{name}"));
        let mut options = options_for(cfg, false);
        options.loss = gen_passes::options::LossKind::CrossEntropy;
        let path = compile_file(&dir.join("model.onnx"), &options, &scratch);
        let mut s = open(&path);
        let (mut worst_loss, mut worst_param): (f64, f64) = (0.0, 0.0);
        for k in 0..steps {
            let batch = vec![
                ("input".to_string(), get(&format!("batch{k}:input"))),
                ("labels".to_string(), get(&format!("batch{k}:labels"))),
            ];
            let r = s.step(&batch, None, 1.0).expect("step");
            let want = get(&format!("{name}:step{k}:loss")).scalar_f64().unwrap();
            let e = (r.loss - want).abs() / want.abs();
            worst_loss = worst_loss.max(e);
            assert!(e < 1e-5, "{name} step {k}: loss {} vs torch {want}", r.loss);
            for p in PARAMS {
                let want = get(&format!("{name}:step{k}:{p}")).to_f64_vec().unwrap();
                let e = max_abs_diff(&state_f64(&s, p), &want);
                worst_param = worst_param.max(e);
                assert!(e < 1e-5, "{name} step {k} {p}: max |Δ| {e:e}");
            }
        }
        report.push(format!(
            "{name}: loss {worst_loss:.1e}, params {worst_param:.1e}"
        ));
    }
    eprintln!(
        "compiled model vs torch over {steps} steps: {}",
        report.join("; ")
    );
}
