//! The gen-compile command line as a user meets it: `--emit forward` end to end, IR printing,
//! and bad input — each a non-zero exit with one readable message naming the file, node or
//! flag, no panic, and no output file left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gen-compile"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gen-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `gen-compile MODEL -o OUT ARGS...` from the repository root, expecting success.
fn compiles(model: &str, out: &Path, args: &[&str]) -> Output {
    let o = bin()
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{model} {args:?}: {}", stderr(&o));
    o
}

/// Runs gen-compile expecting failure; checks one readable message containing `needle` and
/// that nothing was written to `out`.
fn fails_with(args: &[&str], out: &Path, needle: &str) {
    let o = bin().args(args).output().unwrap();
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "expected failure for {args:?}, got success"
    );
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert!(
        err.contains(needle),
        "message for {args:?} lacks {needle:?}: {err}"
    );
    assert!(!out.exists(), "{} left behind for {args:?}", out.display());
    if let Some(dir) = out.parent() {
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            leftovers
                .iter()
                .all(|n| !n.to_string_lossy().contains(".tmp-")),
            "temporary files left: {leftovers:?}"
        );
    }
}

#[test]
fn emit_forward_round_trips_and_prints_ir() {
    let dir = tmpdir("fwd");
    let out = dir.join("mlp.onnx");
    let o = compiles(
        "models/digits/mlp.onnx",
        &out,
        &["--emit", "forward", "--print-ir"],
    );
    let ir = String::from_utf8_lossy(&o.stdout);
    assert!(ir.contains("Gemm(") && ir.contains("\"logits\""), "{ir}");
    let back = gen_passes::onnx::load(&out).unwrap();
    assert_eq!(back.graph.node_count(), 3);
    assert!(stderr(&o).contains("wrote"));
}

#[test]
fn external_data_input_gives_external_data_output() {
    let dir = tmpdir("ext");
    let out = dir.join("ext.onnx");
    compiles("models/core/external.onnx", &out, &["--emit", "forward"]);
    assert!(dir.join("ext.onnx.data").is_file());
}

#[test]
fn unknown_domain_op_is_fine_for_emit_forward() {
    let dir = tmpdir("unk");
    let out = dir.join("u.onnx");
    compiles(
        "models/core/unknown_domain.onnx",
        &out,
        &["--emit", "forward"],
    );
    let m = gen_passes::onnx::load(&out).unwrap();
    assert!(m
        .graph
        .order()
        .iter()
        .any(|&n| m.graph.node(n).op.domain() == "com.example"));
}

#[test]
fn bad_model_files_fail_cleanly() {
    let dir = tmpdir("badfiles");
    let out = dir.join("out.onnx");
    let out_s = out.to_str().unwrap();
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    fails_with(
        &[empty.to_str().unwrap(), "-o", out_s, "--emit", "forward"],
        &out,
        "empty.onnx",
    );
    let random = dir.join("random.onnx");
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2246822519) >> 11) as u8)
        .collect();
    std::fs::write(&random, noise).unwrap();
    fails_with(
        &[random.to_str().unwrap(), "-o", out_s, "--emit", "forward"],
        &out,
        "random.onnx",
    );
    let full = std::fs::read(root().join("models/digits/mlp.onnx")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &full[..full.len() - 700]).unwrap();
    fails_with(
        &[
            truncated.to_str().unwrap(),
            "-o",
            out_s,
            "--emit",
            "forward",
        ],
        &out,
        "truncated.onnx",
    );
    let ghost = root().join("models/core/bad_undefined_input.onnx");
    fails_with(
        &[ghost.to_str().unwrap(), "-o", out_s, "--emit", "forward"],
        &out,
        "ghost",
    );
    let missing = dir.join("missing.onnx");
    fails_with(
        &[missing.to_str().unwrap(), "-o", out_s],
        &out,
        "missing.onnx",
    );
}

#[test]
fn unwritable_outputs_fail_cleanly() {
    let model = root().join("models/digits/mlp.onnx");
    let m = model.to_str().unwrap();
    let nowhere = Path::new("/nonexistent-gen-dir/out.onnx");
    fails_with(
        &[m, "-o", nowhere.to_str().unwrap(), "--emit", "forward"],
        nowhere,
        "does not exist",
    );
    let proc_out = Path::new("/proc/gen-compile-test.onnx");
    fails_with(
        &[m, "-o", proc_out.to_str().unwrap(), "--emit", "forward"],
        proc_out,
        "/proc/gen-compile-test.onnx",
    );
}

#[test]
fn invalid_flag_values_name_the_flag() {
    let dir = tmpdir("flags");
    let out = dir.join("o.onnx");
    let model = root().join("models/digits/mlp.onnx");
    let m = model.to_str().unwrap();
    let o = out.to_str().unwrap();
    fails_with(&[m, "-o", o, "--lr", "-1"], &out, "--lr");
    fails_with(&[m, "-o", o, "--lr", "nan"], &out, "--lr");
    fails_with(&[m, "-o", o, "--betas", "0.9"], &out, "--betas");
    fails_with(&[m, "-o", o, "--betas", "1.5,0.9"], &out, "--betas");
    fails_with(&[m, "-o", o, "--lazy-freq", "0"], &out, "--lazy-freq");
    fails_with(&[m, "-o", o, "--freeze", "("], &out, "--freeze");
    fails_with(&[m, "-o", o, "--optimizer", "lbfgs"], &out, "--optimizer");
    fails_with(&[m, "-o", o, "--emit", "everything"], &out, "--emit");
    fails_with(
        &[m, "-o", o, "--weight-decay", "-0.1"],
        &out,
        "--weight-decay",
    );
}

#[test]
fn print_after_and_dump_dir_show_the_ir_between_passes() {
    let dir = tmpdir("dump");
    let out = dir.join("chain.onnx");
    let dump = dir.join("ir");
    let o = bin()
        .args(["models/core/shape_chain.onnx", "-o"])
        .arg(&out)
        .args([
            "--emit",
            "forward",
            "--print-after",
            "constant-folding",
            "--dump-dir",
        ])
        .arg(&dump)
        .arg("--verbose")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(
        printed.contains("// IR after constant-folding"),
        "{printed}"
    );
    assert!(
        stderr(&o).contains("pass constant-folding"),
        "{}",
        stderr(&o)
    );
    let files: Vec<String> = std::fs::read_dir(&dump)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("-constant-folding.txt")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.ends_with("-dce.txt")), "{files:?}");
}

#[test]
fn emit_grad_writes_loss_and_one_gradient_per_parameter() {
    let dir = tmpdir("grad");
    let out = dir.join("grad.onnx");
    compiles(
        "models/digits/mlp.onnx",
        &out,
        &["--emit", "grad", "--loss", "cross-entropy"],
    );
    let m = gen_passes::onnx::load(&out).unwrap();
    let grads: serde_json::Value =
        serde_json::from_str(m.metadata("gen.grads").expect("gen.grads metadata")).unwrap();
    let map = grads.as_object().unwrap();
    let mut params: Vec<&str> = map.keys().map(String::as_str).collect();
    params.sort();
    assert_eq!(params, ["0.bias", "0.weight", "2.bias", "2.weight"]);
    let outputs: Vec<&str> = m.graph.outputs.iter().map(|&v| m.graph.name(v)).collect();
    assert_eq!(outputs.len(), 5, "{outputs:?}");
    for g in map.values() {
        assert!(
            outputs.contains(&g.as_str().unwrap()),
            "{g} not an output: {outputs:?}"
        );
    }
    assert!(m.graph.by_name("labels").is_some(), "labels input added");
}

/// Runs `gen-compile ARGS...` in `dir`, expecting failure; returns stderr.
fn fails_in(dir: &Path, args: &[&str]) -> String {
    let o = bin().args(args).current_dir(dir).output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "expected failure for {args:?}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    err
}

/// Every file in `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn outputs_never_overwrite_the_input() {
    let dir = tmpdir("overwrite");
    let mlp = std::fs::read(root().join("models/digits/mlp.onnx")).unwrap();
    std::fs::write(dir.join("same.onnx"), &mlp).unwrap();
    std::fs::write(dir.join("m.eval.onnx"), &mlp).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.join("same.onnx"), dir.join("link.onnx")).unwrap();
    let before = snapshot(&dir);
    let cases: &[(&[&str], &[&str])] = &[
        // -o is the input, spelled the same, with ./, through a folder and back, via a symlink
        (
            &["same.onnx", "-o", "same.onnx", "--emit", "forward"],
            &["-o same.onnx", "the input model"],
        ),
        (&["same.onnx", "-o", "./same.onnx"], &["./same.onnx"]),
        (
            &["./same.onnx", "-o", "sub/../same.onnx"],
            &["sub/../same.onnx"],
        ),
        (
            &["same.onnx", "-o", "link.onnx"],
            &["link.onnx", "same.onnx"],
        ),
        // the eval companion of m.onnx is m.eval.onnx, the input
        (
            &["m.eval.onnx", "-o", "m.onnx"],
            &["m.eval.onnx (the eval companion)", "the input model"],
        ),
    ];
    for (args, needles) in cases {
        let err = fails_in(&dir, args);
        for n in *needles {
            assert!(err.contains(n), "{args:?}: message lacks {n:?}: {err}");
        }
        assert!(err.contains("would overwrite"), "{args:?}: {err}");
        assert_eq!(snapshot(&dir), before, "{args:?} changed the folder");
    }
}

/// `dir/in.onnx`: the digits MLP with its tensors in the external-data file `data_of`.onnx.data
/// (saved as `data_of`, then renamed, so the data file keeps the other model's name).
fn mlp_with_data_of(dir: &Path, data_of: &str) {
    use gen_passes::onnx::{save, ExportOptions, ExternalData};
    let mlp = gen_passes::onnx::load(&root().join("models/digits/mlp.onnx")).unwrap();
    let opts = ExportOptions {
        external: ExternalData::Always,
        ..ExportOptions::default()
    };
    save(&mlp, &dir.join(data_of), &opts).unwrap();
    std::fs::rename(dir.join(data_of), dir.join("in.onnx")).unwrap();
    assert!(dir.join(format!("{data_of}.data")).is_file());
}

#[test]
fn outputs_never_overwrite_the_inputs_external_data() {
    // -o out.onnx writes out.onnx.data, the input's external data
    let dir = tmpdir("overwrite-ext");
    mlp_with_data_of(&dir, "out.onnx");
    let before = snapshot(&dir);
    let err = fails_in(&dir, &["in.onnx", "-o", "out.onnx", "--emit", "forward"]);
    for n in [
        "out.onnx.data (its external data)",
        "external data of the input model",
    ] {
        assert!(err.contains(n), "message lacks {n:?}: {err}");
    }
    assert_eq!(snapshot(&dir), before, "the folder changed");
    // without external data in the output nothing clashes
    let o = bin()
        .args(["in.onnx", "-o", "out.onnx", "--emit", "forward"])
        .args(["--external-data", "never"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        snapshot(&dir)
            .into_iter()
            .filter(|(n, _)| n != "out.onnx")
            .collect::<Vec<_>>(),
        before
    );

    // -o out.onnx (train) writes the eval companion's out.eval.onnx.data, the input's data
    let dir = tmpdir("overwrite-eval-ext");
    mlp_with_data_of(&dir, "out.eval.onnx");
    let before = snapshot(&dir);
    let err = fails_in(&dir, &["in.onnx", "-o", "out.onnx"]);
    assert!(
        err.contains("out.eval.onnx.data (the eval companion's external data)"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before, "the folder changed");
}

#[cfg(unix)]
#[test]
fn external_data_symlinked_out_of_the_folder_needs_the_opt_out() {
    let dir = tmpdir("extlink");
    let (model_dir, store) = (dir.join("model"), dir.join("store"));
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::create_dir_all(&store).unwrap();
    let model = model_dir.join("external.onnx");
    std::fs::copy(root().join("models/core/external.onnx"), &model).unwrap();
    std::fs::copy(
        root().join("models/core/external.onnx.data"),
        store.join("external.onnx.data"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../store/external.onnx.data",
        model_dir.join("external.onnx.data"),
    )
    .unwrap();
    let out = dir.join("out.onnx");
    let model_s = model.to_str().unwrap();
    let out_s = out.to_str().unwrap();
    fails_with(
        &[model_s, "-o", out_s, "--emit", "forward"],
        &out,
        "outside the model's folder",
    );
    compiles(
        model_s,
        &out,
        &["--emit", "forward", "--allow-external-outside-dir"],
    );
    assert!(out.is_file());
}

/// The contracts gen-compile writes are byte for byte the committed examples that
/// `format/tests/contract_example.rs` round-trips through the `Contract` type.
#[test]
fn written_contracts_match_the_committed_examples() {
    let dir = tmpdir("contract-example");
    for (args, example) in [
        (&[][..], "contract.example.json"),
        (&["--emit", "grad"][..], "contract.grad.example.json"),
    ] {
        let out = dir.join("train.onnx");
        compiles("models/digits/mlp.onnx", &out, args);
        let m = gen_passes::onnx::load(&out).unwrap();
        let want = std::fs::read_to_string(root().join("docs").join(example)).unwrap();
        assert_eq!(m.metadata("gen.contract"), Some(want.as_str()), "{args:?}");
    }
}
