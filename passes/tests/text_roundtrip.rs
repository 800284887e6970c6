//! The text form reads back: print → parse → print gives the same text for every committed
//! fixture under models/ and for the ONNX backend node tests; hand-written text parses into
//! a valid graph; malformed text is reported with its line and column.

use gen_passes::ir::text::{model_to_text, parse_model, tensors_by_hash, TextErrorKind};
use gen_passes::ir::verify::verify;
use gen_passes::ir::{Attr, DType, Dim, Op, Type};
use gen_passes::onnx;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.onnx` files under `dir`, sorted, at any depth.
fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Print → parse → print of the model in `path`; Err when the text differs or fails to parse.
fn round_trip(path: &Path) -> Result<(), String> {
    let m = onnx::load(path).map_err(|e| format!("{}: import: {e}", path.display()))?;
    let text = model_to_text(&m);
    let parsed = parse_model(&text, &tensors_by_hash(&m))
        .map_err(|e| format!("{}: {e}\n{text}", path.display()))?;
    verify(&parsed.graph).map_err(|e| format!("{}: parsed graph invalid: {e}", path.display()))?;
    let again = model_to_text(&parsed);
    if again != text {
        let line = text
            .lines()
            .zip(again.lines())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("\n  printed: {a}\n  re-read: {b}"))
            .unwrap_or_default();
        return Err(format!("{}: text differs{line}", path.display()));
    }
    Ok(())
}

#[test]
fn every_fixture_round_trips_through_the_text_form() {
    let files = onnx_files(&repo().join("models"));
    let mut checked = 0;
    let mut failures = Vec::new();
    for f in &files {
        // the deliberately broken fixtures are rejected by import; everything else must load
        let broken = f.components().any(|c| c.as_os_str() == "bad")
            || f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("bad_"));
        if broken && onnx::load(f).is_err() {
            continue;
        }
        checked += 1;
        if let Err(e) = round_trip(f) {
            failures.push(e);
        }
    }
    assert!(checked >= 25, "only {checked} fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn backend_corpus() -> PathBuf {
    if let Ok(d) = std::env::var("GEN_ONNX_BACKEND_DIR") {
        return PathBuf::from(d);
    }
    let lib = repo().join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .map(|e| e.path().join("site-packages/onnx/backend/test/data/node"))
                .find(|p| p.is_dir())
        })
        .unwrap_or_else(|| {
            panic!(
                "ONNX backend test corpus not found under {}: run scripts/setup.sh or set \
                 GEN_ONNX_BACKEND_DIR",
                lib.display()
            )
        })
}

/// Every third backend node test (about 540 models: every operator family, subgraphs,
/// optional inputs, sequences, strings, every element type).
#[test]
fn backend_node_tests_round_trip_through_the_text_form() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(backend_corpus())
        .unwrap()
        .flatten()
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    cases.sort();
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases.iter().step_by(3) {
        // models the importer rejects are the import tests' business, not this one's
        if onnx::load(case).is_err() {
            continue;
        }
        checked += 1;
        if let Err(e) = round_trip(case) {
            failures.push(e);
        }
    }
    assert!(checked >= 400, "only {checked} backend models imported");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const HAND_WRITTEN: &str = r#"
model ir=8 opsets[ai.onnx=17, com.example=1]
meta "purpose" = "test"
graph "hand" {
  in %x "x": f32[batch,"n + 1"]
  in %k "k": f32[] = f32[] {0.5}
  init %w "w" = f32[3] {1, -2.5, 1e-3}
  %y: f32[batch,3] = Mul(%x, %w)
  %c: bool[] = Constant() {value=bool[] {1}}
  %z: f32[..], _ = Dropout(%y, _, _) {seed=7}
  %r: ? = com.example::Fancy(%z) {alpha=1.0, names=["a", "b"], pads=ints[], raw=<raw 0aff>}
  %s: f32[..] = If(%c)
    else_branch:
      graph "e" {
        %e: f32[..] = Neg(%r)
        return %e "e_out"
      }
    then_branch:
      graph "t" {
        return %k "t_out"
      }
  return %s "out", %y "scaled"
}
"#;

#[test]
fn hand_written_text_parses_into_a_valid_graph() {
    let m = parse_model(HAND_WRITTEN, &HashMap::new()).unwrap();
    verify(&m.graph).unwrap();
    let g = &m.graph;
    assert_eq!(m.opsets.get(""), Some(&17));
    assert_eq!(m.opsets.get("com.example"), Some(&1));
    assert_eq!(m.metadata("purpose"), Some("test"));
    let x = g.by_name("x").unwrap();
    assert_eq!(
        g.ty(x).shape().unwrap(),
        &[Dim::Sym("batch".into()), Dim::Sym("n + 1".into())]
    );
    let k = g.by_name("k").unwrap();
    assert_eq!(
        g.value(k).init.as_ref().unwrap().to_f64_vec(),
        Some(vec![0.5])
    );
    let w = g.constant(g.by_name("w").unwrap()).unwrap();
    assert_eq!(w.to_f64_vec().unwrap()[1], -2.5);
    assert_eq!(w.to_f64_vec().unwrap()[2], 1e-3f32 as f64);
    let names: Vec<&str> = g.outputs.iter().map(|&o| g.name(o)).collect();
    assert_eq!(names, ["out", "scaled"]);
    let ops: Vec<String> = g
        .order()
        .iter()
        .map(|&n| g.node(n).op.to_string())
        .collect();
    assert_eq!(
        ops,
        ["Mul", "Constant", "Dropout", "com.example::Fancy", "If"]
    );
    let dropout = g.node(g.order()[2]);
    assert_eq!(dropout.inputs[1], None);
    assert_eq!(dropout.outputs[1], None);
    let fancy = g.node(g.order()[3]);
    assert_eq!(
        fancy.op,
        Op::Other {
            domain: "com.example".into(),
            op_type: "Fancy".into()
        }
    );
    assert_eq!(fancy.attr_float("alpha"), Some(1.0));
    assert_eq!(fancy.attr("pads"), Some(&Attr::Ints(vec![])));
    assert_eq!(fancy.attr("raw"), Some(&Attr::Raw(vec![0x0a, 0xff])));
    assert_eq!(g.ty(fancy.output(0).unwrap()), &Type::Unknown);
    // the If reads `k` (then) and the Fancy output (else) through captures by name
    let uses: Vec<&str> = g
        .node_uses(g.order()[4])
        .iter()
        .map(|&v| g.name(v))
        .collect();
    assert!(uses.contains(&"k") && uses.len() == 3, "{uses:?}");
    let c = g.constant(g.node(g.order()[1]).output(0).unwrap()).unwrap();
    assert_eq!((c.dtype, c.to_i64_vec()), (DType::Bool, Some(vec![1])));
    // and it prints back to what reads back the same
    let text = model_to_text(&m);
    let again = model_to_text(&parse_model(&text, &HashMap::new()).unwrap());
    assert_eq!(text, again);
}

#[test]
fn big_tensors_come_from_the_side_table() {
    let m = onnx::load(&repo().join("models/digits/mlp.onnx")).unwrap();
    let text = model_to_text(&m);
    let hashed = text
        .lines()
        .find_map(|l| l.split_once(" #").map(|(_, h)| h.trim().to_string()))
        .expect("the MLP has a hashed weight");
    let e = parse_model(&text, &HashMap::new()).unwrap_err();
    assert!(
        matches!(&e.kind, TextErrorKind::MissingTensor(h) if *h == hashed),
        "{e}"
    );
    let parsed = parse_model(&text, &tensors_by_hash(&m)).unwrap();
    let (a, b) = (
        m.graph.initializers().count(),
        parsed.graph.initializers().count(),
    );
    assert_eq!(a, b);
    for (v, t) in m.graph.initializers() {
        let p = parsed.graph.by_name(m.graph.name(v)).unwrap();
        assert_eq!(parsed.graph.value(p).init.as_ref(), Some(t));
    }
}

#[test]
fn errors_name_line_and_column() {
    let cases: [(&str, usize, usize, &str); 5] = [
        (
            "model ir=8 opsets[ai.onnx=17]\ngraph \"g\" {\n  return %9 \"y\"\n}",
            3,
            10,
            "not defined",
        ),
        (
            "model ir=8 opsets[ai.onnx=17]\ngraph \"g\" {\n  in %0 \"x\": q32[2]\n  return\n}",
            3,
            14,
            "element type",
        ),
        (
            "model ir=8 opsets[]\ngraph \"g\" {\n  init %0 \"w\" = f32[2] {1}\n  return\n}",
            3,
            25,
            "1 values",
        ),
        (
            "model ir=8 opsets[]\ngraph \"g\" {\n  init %0 \"w\" = u16[1] {3}\n  return\n}",
            3,
            25,
            "u16",
        ),
        (
            "model ir=8 opsets[]\ngraph \"g\" {\n  %1: f32[] = Relu(%0)\n  return %1 \"y\"\n}",
            3,
            3,
            "%0",
        ),
    ];
    for (text, line, col, needle) in cases {
        let e = parse_model(text, &HashMap::new()).unwrap_err();
        assert_eq!((e.line, e.col), (line, col), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}
