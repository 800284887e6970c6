//! Round trip of the official ONNX backend node tests (the `onnx==1.19.0` wheel in .venv,
//! `onnx/backend/test/data/node`): import → `--emit forward` pipeline → export, run the
//! original and ours on ONNX Runtime, outputs identical. Counted over the cases ONNX Runtime
//! itself passes (its outputs match the corpus's expected outputs); target ≥ 99%.
//!
//! The full report is written to `target/onnx-backend-roundtrip.txt`.

use gen_passes::onnx::{
    self,
    tensor::{decode, ExternalPolicy},
};
use gen_passes::pipeline::Debug;
use gen_passes::{compile, CompileOptions, Emit};
use gen_runtime::{run_model, HostTensor, RunModelOptions};
use onnx_protobuf::{Message, TensorProto};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    if let Ok(d) = std::env::var("GEN_ONNX_BACKEND_DIR") {
        return PathBuf::from(d);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path().join("site-packages/onnx/backend/test/data/node"))
            .find(|p| p.is_dir())
    });
    found.unwrap_or_else(|| {
        panic!(
            "ONNX backend test corpus not found under {}: run scripts/setup.sh (installs onnx==1.19.0) \
             or set GEN_ONNX_BACKEND_DIR",
            lib.display()
        )
    })
}

/// A `.pb` TensorProto as a host tensor; None when the file is not a plain tensor
/// (sequence / optional inputs).
fn read_pb(path: &Path) -> Option<(String, HostTensor)> {
    let bytes = std::fs::read(path).ok()?;
    let tp = TensorProto::parse_from_bytes(&bytes).ok()?;
    if tp.data_type == 0 {
        return None;
    }
    let t = decode(&tp, &ExternalPolicy::within(path.parent())).ok()?;
    let dtype = t.dtype;
    let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    let host = match &t.data {
        gen_passes::ir::TensorData::Raw(b) => {
            HostTensor::from_bytes(dtype, shape, b.clone()).ok()?
        }
        gen_passes::ir::TensorData::Strings(s) => HostTensor::from_strings(
            shape,
            s.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
        )
        .ok()?,
    };
    Some((tp.name.clone(), host))
}

fn sorted_pbs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".pb"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|p| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.rsplit('_').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0)
    });
    v
}

/// Expected-output agreement in the backend tests' sense (rtol 1e-3, atol 1e-7).
fn close(a: &HostTensor, b: &HostTensor) -> bool {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return false;
    }
    match (a.to_f64_vec(), b.to_f64_vec()) {
        (Ok(x), Ok(y)) => x.iter().zip(&y).all(|(p, q)| {
            (p.is_nan() && q.is_nan()) || p == q || (p - q).abs() <= 1e-7 + 1e-3 * q.abs()
        }),
        _ => a.bytes() == b.bytes() && a.strings() == b.strings(),
    }
}

/// Bit-for-bit equality (NaNs equal to NaNs of the same bits).
fn identical(a: &HostTensor, b: &HostTensor) -> bool {
    a.dtype() == b.dtype()
        && a.shape() == b.shape()
        && a.bytes() == b.bytes()
        && a.strings() == b.strings()
}

enum Outcome {
    /// Inputs or outputs are not plain tensors: not applicable to a tensor runtime check.
    NotTensor,
    /// ONNX Runtime fails the original case: excluded from the denominator.
    OrtFails,
    Pass,
    Fail(String),
}

fn run_case(dir: &Path) -> Outcome {
    let model_path = dir.join("model.onnx");
    let data = dir.join("test_data_set_0");
    let mut inputs = Vec::new();
    for p in sorted_pbs(&data, "input_") {
        match read_pb(&p) {
            Some(t) => inputs.push(t),
            None => return Outcome::NotTensor,
        }
    }
    let mut expected = Vec::new();
    for p in sorted_pbs(&data, "output_") {
        match read_pb(&p) {
            Some(t) => expected.push(t),
            None => return Outcome::NotTensor,
        }
    }
    // graph input names come from the model (the .pb names are sometimes empty)
    let original = match onnx_protobuf::ModelProto::parse_from_bytes(
        &std::fs::read(&model_path).unwrap_or_default(),
    ) {
        Ok(m) => m,
        Err(_) => return Outcome::OrtFails,
    };
    let graph_inputs: Vec<String> = original
        .graph
        .input
        .iter()
        .filter(|i| !original.graph.initializer.iter().any(|t| t.name == i.name))
        .map(|i| i.name.clone())
        .collect();
    if graph_inputs.len() < inputs.len() {
        return Outcome::NotTensor;
    }
    let feeds: Vec<(String, HostTensor)> = graph_inputs
        .iter()
        .zip(inputs)
        .map(|(n, (_, t))| (n.clone(), t))
        .collect();
    let opts = RunModelOptions {
        intra_threads: Some(1),
        ..RunModelOptions::default()
    };
    let reference = match run_model(model_path.as_path(), &feeds, &opts) {
        Ok(r) => r.outputs,
        Err(_) => return Outcome::OrtFails,
    };
    if reference.len() != expected.len()
        || !reference
            .iter()
            .zip(&expected)
            .all(|((_, a), (_, b))| close(a, b))
    {
        return Outcome::OrtFails;
    }
    let model = match onnx::load(&model_path) {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(format!("import: {e}")),
    };
    let compiled = match compile(
        model,
        Emit::Forward,
        &CompileOptions::default(),
        &Debug::default(),
    ) {
        Ok(c) => c.model,
        Err(e) => return Outcome::Fail(format!("compile: {e}")),
    };
    let bytes = onnx::to_bytes(&compiled);
    let ours = match run_model(bytes.as_slice(), &feeds, &opts) {
        Ok(r) => r.outputs,
        Err(e) => return Outcome::Fail(format!("onnxruntime rejects our export: {e}")),
    };
    if ours.len() != reference.len() {
        return Outcome::Fail(format!(
            "{} outputs instead of {}",
            ours.len(),
            reference.len()
        ));
    }
    for ((name, a), (_, b)) in ours.iter().zip(&reference) {
        if !identical(a, b) {
            return Outcome::Fail(format!("output '{name}' differs"));
        }
    }
    Outcome::Pass
}

/// Every case (sequence and optional ones included): import → export → import gives the same
/// canonical text, so nothing the IR models is lost or changed by a round trip.
#[test]
fn onnx_backend_models_reimport_identically() {
    let root = corpus_dir();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&root)
        .expect("corpus folder readable")
        .flatten()
    {
        let path = entry.path().join("model.onnx");
        if !path.is_file() {
            continue;
        }
        checked += 1;
        let first = match onnx::load(&path) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: import: {e}", path.display()));
                continue;
            }
        };
        let again = onnx::from_bytes(&onnx::to_bytes(&first), None);
        match again {
            Ok(m) if text(&m) == text(&first) => {}
            Ok(_) => failures.push(format!(
                "{}: text differs after a round trip",
                path.display()
            )),
            Err(e) => failures.push(format!("{}: re-import: {e}", path.display())),
        }
    }
    assert!(checked > 1500, "only {checked} models");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn text(m: &gen_passes::ir::Model) -> String {
    gen_passes::ir::text::model_to_text(m)
}

#[test]
fn onnx_backend_node_tests_round_trip() {
    let root = corpus_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("corpus folder readable")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() > 1000,
        "only {} cases in {}",
        cases.len(),
        root.display()
    );
    let (mut pass, mut not_tensor, mut ort_fails) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        match run_case(case) {
            Outcome::Pass => pass += 1,
            Outcome::NotTensor => not_tensor += 1,
            Outcome::OrtFails => ort_fails += 1,
            Outcome::Fail(why) => failures.push(format!("{name}: {why}")),
        }
    }
    let counted = pass + failures.len();
    let rate = pass as f64 / counted.max(1) as f64;
    let report = format!(
        "ONNX backend node tests: {} cases; {} not plain-tensor, {} failed by onnxruntime itself; \
         round trip identical on {pass}/{counted} ({:.2}%)\n{}\n",
        cases.len(),
        not_tensor,
        ort_fails,
        100.0 * rate,
        failures.join("\n")
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx-backend-roundtrip.txt");
    let _ = std::fs::write(&out, &report);
    eprintln!("{}", report.lines().take(40).collect::<Vec<_>>().join("\n"));
    assert!(counted > 1000, "too few cases counted: {counted}");
    assert!(
        rate >= 0.99,
        "round trip rate {:.2}% below 99%",
        100.0 * rate
    );
}

/// The full corpus, sequence and optional cases included, compared by onnxruntime-python
/// (tests/support/backend_compare.py) on our exports. Target: ≥ 99% of the cases onnxruntime
/// itself passes.
#[test]
fn onnx_backend_full_corpus_round_trip_with_onnxruntime_python() {
    let root = corpus_dir();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = manifest.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup.sh",
        python.display()
    );
    let out = std::env::temp_dir().join(format!("gen-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    for entry in std::fs::read_dir(&root)
        .expect("corpus folder readable")
        .flatten()
    {
        let src = entry.path().join("model.onnx");
        let Ok(model) = onnx::load(&src) else {
            continue;
        };
        let Ok(compiled) = compile(
            model,
            Emit::Forward,
            &CompileOptions::default(),
            &Debug::default(),
        ) else {
            continue;
        };
        let dir = out.join(entry.file_name());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), onnx::to_bytes(&compiled.model)).unwrap();
    }
    let o = std::process::Command::new(&python)
        .arg(manifest.join("tests/support/backend_compare.py"))
        .arg(&root)
        .arg(&out)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_dir_all(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(o.stdout.trim_ascii()).expect("one JSON line");
    let counted = summary["counted"].as_u64().unwrap();
    let passed = summary["passed"].as_u64().unwrap();
    let rate = passed as f64 / counted.max(1) as f64;
    let report = format!(
        "full corpus via onnxruntime-python: identical on {passed}/{counted} ({:.2}%) of the cases \
         onnxruntime passes; {} cases failed by onnxruntime itself\n{}\n",
        100.0 * rate,
        summary["ort_fails"],
        summary["failures"]
    );
    let _ = std::fs::write(
        manifest.join("target/onnx-backend-full-corpus.txt"),
        &report,
    );
    eprintln!("{report}");
    assert!(counted > 1300, "too few cases counted: {counted}");
    assert!(
        rate >= 0.99,
        "round trip rate {:.2}% below 99%",
        100.0 * rate
    );
}
