//! Helpers of the gen-train tests: the contract_toy fixture (models/contract_toy/make.py), the
//! binary, scratch folders, and a loud failure when ONNX Runtime is missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gen_runtime::{read_records, MetricsRecord};

#[path = "../support/common.rs"]
mod common;
#[allow(unused_imports)]
pub use common::{require_ort, root};

/// A file of the contract_toy fixture.
pub fn toy(name: &str) -> PathBuf {
    root().join("models/contract_toy").join(name)
}

/// A fresh, empty scratch folder under target/tmp.
pub fn scratch(name: &str) -> PathBuf {
    let dir = root()
        .join("target/tmp")
        .join(format!("train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// `gen-train` with `args`, run from the repository root.
pub fn gen_train(args: &[&str]) -> Output {
    require_ort();
    Command::new(env!("CARGO_BIN_EXE_gen-train"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run gen-train")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "gen-train failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Asserts a clean failure (exit 1, an `error:` message, no panic) and returns stderr.
pub fn fails(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1\nstdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(stderr.starts_with("error: "), "no error line: {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    stderr
}

pub fn records(run_dir: &Path) -> Vec<MetricsRecord> {
    read_records(&run_dir.join("metrics.jsonl")).expect("metrics.jsonl")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
