//! Parity with the GeN reference run (gen-optim 0.1.1, models/gen_reference): the compiled
//! train graph, driven only through its contract by gen-runtime, reproduces the per-step loss
//! and lr of the reference log and the same accept/reject decision on every GeN step.
//!
//! The gradient of the fixture's MLP is written by hand here (tests/gen_support), so these
//! runs check the optimizer and GeN stages on their own.

mod gen_support;

use gen_passes::options::{GenCompat, OptimizerKind, ProbeBatch};
use gen_passes::CompileOptions;
use gen_runtime::{Dataset, HostTensor};
use gen_support::*;
use serde_json::Value;

/// Agreement of one run with the reference log.
#[derive(Debug, Default)]
pub struct Parity {
    pub max_rel_loss: f64,
    pub max_rel_lr: f64,
    pub max_rel_probe: f64,
    pub gen_steps: usize,
    pub mismatches: Vec<usize>,
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

/// The decision the reference logs, from the three probe losses.
pub fn decision(lr: f64, p: [f64; 3]) -> &'static str {
    if p.iter().any(|v| !v.is_finite()) {
        return "nan";
    }
    let a = (p[0] + p[1] - 2.0 * p[2]) / (lr * lr);
    let b = (p[0] - p[1]) / (2.0 * lr);
    if a > 0.0 && b > 0.0 {
        "accept"
    } else {
        "reject"
    }
}

fn options(compat: GenCompat) -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::AdamW,
        lr: 1e-3,
        weight_decay: Some(0.01),
        betas: (0.9, 0.999),
        eps: 1e-8,
        gen: true,
        lazy_freq: 4,
        probe_batch: ProbeBatch::Next,
        compat,
        ..CompileOptions::default()
    }
}

fn rows_of(t: &HostTensor, i: usize) -> Vec<usize> {
    let v = t.to_vec::<i64>().expect("indices");
    let w = t.shape()[1];
    v[i * w..(i + 1) * w].iter().map(|&x| x as usize).collect()
}

/// Runs the train graph at `path` on the fixture's batches and compares with `run` of the log.
pub fn drive(path: &std::path::Path, run: &str, linear_scale: bool) -> Parity {
    let dir = root().join("models/gen_reference");
    let log: Value =
        serde_json::from_slice(&std::fs::read(dir.join("log.json")).expect("log.json"))
            .expect("json");
    let rows = log[run]["rows"].as_array().expect("rows").clone();
    let setup = Dataset::load(&dir.join("setup.npz")).expect("setup.npz");
    let get = |n: &str| {
        setup
            .arrays()
            .iter()
            .find(|(k, _)| k == n)
            .unwrap_or_else(|| panic!("setup.npz has no {n}"))
            .1
            .clone()
    };
    let (xtr, ytr) = (get("Xtr"), get("ytr"));
    let (main_idx, probe_idx) = (get("main_batch_idx"), get("probe_batch_idx"));
    let batch = |idx: &[usize]| {
        vec![
            ("input".to_string(), xtr.select_rows(idx).expect("rows")),
            ("labels".to_string(), ytr.select_rows(idx).expect("rows")),
        ]
    };
    let mut s = open(path);
    let steps = rows.len();
    let mut out = Parity::default();
    let mut k = 0;
    for (t, row) in rows.iter().enumerate() {
        let b = batch(&rows_of(&main_idx, t));
        let gen = (t + 1) % 4 == 0;
        let probe = gen.then(|| {
            k += 1;
            batch(&rows_of(&probe_idx, k - 1))
        });
        let scale = if linear_scale {
            1.0 - t as f64 / steps as f64
        } else {
            1.0
        };
        let lr_before = s
            .state()
            .expect("state")
            .iter()
            .find(|(n, _)| n == "gen.lr")
            .unwrap()
            .1
            .scalar_f64()
            .unwrap();
        let r = s.step(&b, probe.as_deref(), scale as f32).expect("step");
        assert_eq!(r.gen_applied, Some(gen), "step {t}");
        out.max_rel_loss = out
            .max_rel_loss
            .max(rel(r.loss, row["loss"].as_f64().unwrap()));
        out.max_rel_lr = out
            .max_rel_lr
            .max(rel(r.lr.unwrap(), row["lr_used"].as_f64().unwrap()));
        if let Some(g) = row.get("gen") {
            out.gen_steps += 1;
            let p = r.probe_losses.unwrap();
            let want = [
                g["L_m1"].as_f64().unwrap(),
                g["L_p1"].as_f64().unwrap(),
                g["L_0"].as_f64().unwrap(),
            ];
            for (a, b) in p.iter().zip(want) {
                out.max_rel_probe = out.max_rel_probe.max(rel(*a, b));
            }
            if decision(lr_before, p) != g["decision"].as_str().unwrap() {
                out.mismatches.push(t);
            }
        }
    }
    out
}

fn compile_hand_mlp(name: &str, compat: GenCompat) -> std::path::PathBuf {
    let (mut m, cx) = reference_mlp(options(compat));
    run_train_passes(&mut m, cx);
    let dir = scratch(name);
    let path = dir.join("train.onnx");
    save(&m, &path);
    path
}

fn check(name: &str, p: &Parity) {
    eprintln!(
        "{name}: max rel err loss {:.2e}, lr {:.2e}, probe losses {:.2e}; {} GeN steps, decision mismatches {:?}",
        p.max_rel_loss, p.max_rel_lr, p.max_rel_probe, p.gen_steps, p.mismatches
    );
    assert_eq!(p.gen_steps, 50);
    assert!(
        p.mismatches.is_empty(),
        "{name}: decisions differ at steps {:?}",
        p.mismatches
    );
    assert!(p.max_rel_loss < 1e-3, "{name}: loss {:e}", p.max_rel_loss);
    assert!(p.max_rel_lr < 1e-3, "{name}: lr {:e}", p.max_rel_lr);
}

#[test]
fn reference_compat_reproduces_gen_optim() {
    let path = compile_hand_mlp("gen-ref-compat", GenCompat::Reference);
    check(
        "gen_adamw_compat_lr1e-3",
        &drive(&path, "gen_adamw_compat_lr1e-3", false),
    );
    check(
        "gen_adamw_compat_lr1e-3_scale_linear",
        &drive(&path, "gen_adamw_compat_lr1e-3_scale_linear", true),
    );
}

#[test]
fn default_mode_reproduces_single_advance_run() {
    let path = compile_hand_mlp("gen-ref-default", GenCompat::Default);
    check(
        "gen_adamw_default_lr1e-3",
        &drive(&path, "gen_adamw_default_lr1e-3", false),
    );
}

/// The whole pipeline (loss attachment, parameter discovery, autodiff, optimizer, GeN) on the
/// fixture's exported model, driven through the contract.
#[test]
fn compiled_mlp_reproduces_reference_runs() {
    let model = root().join("models/gen_reference/mlp.onnx");
    for (compat, runs) in [
        (
            GenCompat::Reference,
            vec![
                ("gen_adamw_compat_lr1e-3", false),
                ("gen_adamw_compat_lr1e-3_scale_linear", true),
            ],
        ),
        (
            GenCompat::Default,
            vec![("gen_adamw_default_lr1e-3", false)],
        ),
    ] {
        let dir = scratch(&format!("gen-ref-compiled-{compat:?}"));
        let path = compile_file(&model, &options(compat), &dir);
        let m = gen_passes::onnx::load(&path).unwrap();
        let nodes = all_nodes(&m.graph).len();
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "compiled {compat:?}: train.onnx {} main-graph nodes, {nodes} nodes with the GeN branches, {size} bytes",
            m.graph.node_count()
        );
        for (run, linear) in runs {
            check(&format!("{run} (compiled)"), &drive(&path, run, linear));
        }
    }
}
