//! What every test-support module shares: the repository root and the loud ONNX Runtime check.
//! Included with `#[path]` by tests/{gen,grad,train}_support/mod.rs.

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails loudly when ONNX Runtime is missing: these tests must not pass without it.
pub fn require_ort() {
    if let Err(e) = gen_runtime::find_library(None) {
        panic!(
            "ONNX Runtime is required by this test and was not found ({e}); run scripts/setup.sh"
        );
    }
}
