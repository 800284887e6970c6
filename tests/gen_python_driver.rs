//! examples/drive_train.py drives a compiled train graph with stock onnxruntime-python through
//! its contract alone, and reproduces the GeN reference runs (models/gen_reference).

mod gen_support;

use gen_passes::options::{GenCompat, OptimizerKind, ProbeBatch};
use gen_passes::CompileOptions;
use gen_support::*;
use serde_json::Value;
use std::process::Command;

fn python() -> std::path::PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup.sh (it installs onnxruntime, onnx and numpy)",
        py.display()
    );
    py
}

fn options(compat: GenCompat) -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::AdamW,
        lr: 1e-3,
        weight_decay: Some(0.01),
        lazy_freq: 4,
        probe_batch: ProbeBatch::Next,
        compat,
        ..CompileOptions::default()
    }
}

fn replay(compat: GenCompat, runs: &[&str], name: &str) {
    require_ort();
    let (mut m, cx) = reference_mlp(options(compat));
    run_train_passes(&mut m, cx);
    let dir = scratch(name);
    let path = dir.join("train.onnx");
    save(&m, &path);
    let mut cmd = Command::new(python());
    cmd.arg(root().join("examples/drive_train.py"))
        .arg(&path)
        .arg("--reference")
        .arg(root().join("models/gen_reference"))
        .arg("--json");
    for r in runs {
        cmd.arg("--run").arg(r);
    }
    let out = cmd.output().expect("run examples/drive_train.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(results.len(), runs.len(), "one result per run");
    for r in &results {
        assert_eq!(r["gen_steps"], 50);
        assert!(
            r["decision_mismatches"].as_array().unwrap().is_empty(),
            "{r}"
        );
        assert!(r["ok"].as_bool().unwrap(), "{r}");
    }
    assert!(out.status.success());
}

#[test]
fn python_driver_reproduces_reference_compat() {
    replay(
        GenCompat::Reference,
        &[
            "gen_adamw_compat_lr1e-3",
            "gen_adamw_compat_lr1e-3_scale_linear",
        ],
        "gen-py-compat",
    );
}

#[test]
fn python_driver_reproduces_default_mode() {
    replay(
        GenCompat::Default,
        &["gen_adamw_default_lr1e-3"],
        "gen-py-default",
    );
}
