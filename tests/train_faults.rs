//! Faults `gen-train` must refuse clearly or survive (issue 17): non-finite data, labels outside
//! the classes, divergence, damaged checkpoints, runs killed at any point, a torn metrics line and
//! two runs on one directory. On the contract_toy fixture, and on the digits MLP compiled by
//! gen-compile where a real optimizer or ignore index is needed.

mod train_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gen_runtime::{Checkpoint, DType, Dataset, HostTensor};
use train_support::*;

/// Writes `arrays` as an .npz (a zip of .npy files, as numpy.savez does).
fn write_npz(path: &Path, arrays: &[(&str, HostTensor)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, t) in arrays {
        let descr = match t.dtype() {
            DType::F32 => "<f4",
            DType::I64 => "<i8",
            d => panic!("no .npy writer for {d}"),
        };
        let shape: String = t.shape().iter().map(|d| format!("{d},")).collect();
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({shape}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
        zip.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
        zip.write_all(header.as_bytes()).unwrap();
        zip.write_all(t.bytes().unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

/// A copy of the data set `src` (f32 `input`, i64 `labels`) at `dst`, edited by `edit`.
fn data_with(src: &Path, dst: &Path, edit: impl FnOnce(&mut Vec<f32>, &mut Vec<i64>)) -> PathBuf {
    let data = Dataset::load(src).unwrap();
    let get = |name: &str| {
        data.arrays()
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .clone()
    };
    let (x, y) = (get("input"), get("labels"));
    let (mut xs, mut ys) = (x.to_vec::<f32>().unwrap(), y.to_vec::<i64>().unwrap());
    edit(&mut xs, &mut ys);
    write_npz(
        dst,
        &[
            (
                "input",
                HostTensor::from_vec(x.shape().to_vec(), xs).unwrap(),
            ),
            (
                "labels",
                HostTensor::from_vec(y.shape().to_vec(), ys).unwrap(),
            ),
        ],
    );
    dst.to_path_buf()
}

/// `gen-train MODEL --data DATA --batch-size 16 EXTRA...`.
fn train(model: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![s(model), "--data", s(data), "--batch-size", "16"];
    args.extend(extra);
    gen_train(&args)
}

/// The toy on its own data, quietly, with `extra`.
fn toy_run(extra: &[&str]) -> Output {
    let mut args = vec!["--quiet"];
    args.extend(extra);
    train(&toy("train.onnx"), &toy("train.npz"), &args)
}

/// The digits MLP compiled by gen-compile with `flags` into `dir` (train.onnx + its eval graph).
fn digits_graph(dir: &Path, flags: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let model = dir.join("train.onnx");
    let mlp = root().join("models/digits/mlp.onnx");
    let mut args = vec![s(&mlp), "-o", s(&model)];
    args.extend(flags);
    let out = Command::new(env!("CARGO_BIN_EXE_gen-compile"))
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    model
}

fn digits_data() -> PathBuf {
    root().join("models/digits/train.npz")
}

/// Every float tensor of the checkpoint is finite.
fn all_finite(ckpt: &Checkpoint) -> bool {
    ckpt.state.iter().all(|(_, t)| {
        !matches!(t.dtype(), DType::F32 | DType::F64)
            || t.to_f64_vec().unwrap().iter().all(|v| v.is_finite())
    })
}

#[test]
fn non_finite_data_is_refused_before_training() {
    let dir = scratch("faults-nan");
    let out = dir.join("run");
    for (value, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
        let data = data_with(&toy("train.npz"), &dir.join("bad.npz"), |x, _| {
            x[17 * 4 + 1] = value
        });
        let err = fails(&train(
            &toy("train.onnx"),
            &data,
            &["--steps", "3", "--out", s(&out)],
        ));
        assert!(
            err.contains(&format!(
                "array `input` holds {shown} at element 69 (sample 17)"
            )),
            "{err}"
        );
        assert!(!out.exists(), "no run directory for a refused run");
        // The same check covers the evaluation data.
        let err = fails(&train(
            &toy("train.onnx"),
            &toy("train.npz"),
            &["--steps", "3", "--out", s(&out), "--eval-data", s(&data)],
        ));
        assert!(err.contains("bad.npz") && err.contains(shown), "{err}");
    }
}

#[test]
fn labels_outside_the_classes_are_refused() {
    let dir = scratch("faults-labels");
    let out = dir.join("run");
    // The toy's loss has 2 classes and no ignore index.
    for (label, at) in [(2, 5), (-5, 9), (-100, 0)] {
        let data = data_with(&toy("train.npz"), &dir.join("bad.npz"), |_, y| {
            y[at] = label
        });
        let err = fails(&train(
            &toy("train.onnx"),
            &data,
            &["--steps", "3", "--out", s(&out)],
        ));
        let expected = format!(
            "array `labels` holds the label {label} at element {at} (sample {at}), which is \
             neither a class index in 0..2"
        );
        assert!(err.contains(&expected), "{err}");
        assert!(!err.contains("ignore index"), "{err}");
        assert!(!out.exists());
    }

    // A compiled cross-entropy graph: 10 classes, ignore index -100 accepted.
    let model = digits_graph(&dir, &[]);
    let data = data_with(&digits_data(), &dir.join("digits.npz"), |_, y| {
        y[3] = -100;
        y[7] = 10;
    });
    let err = fails(&train(&model, &data, &["--steps", "3", "--out", s(&out)]));
    assert!(
        err.contains(
            "holds the label 10 at element 7 (sample 7), which is neither a class index in \
             0..10 nor the ignore index -100"
        ),
        "{err}"
    );
}

#[test]
fn divergence_stops_the_run_without_a_nan_model() {
    let dir = scratch("faults-diverge");
    // A learning rate of 1e6: the parameters leave the finite range within a few steps.
    let model = digits_graph(&dir.join("graph"), &["--lr", "1e6"]);
    let out = dir.join("run");
    let err = fails(&train(
        &model,
        &digits_data(),
        &[
            "--steps",
            "200",
            "--checkpoint-every",
            "1",
            "--quiet",
            "--out",
            s(&out),
        ],
    ));
    assert!(err.contains("training diverged at step"), "{err}");
    assert!(
        err.contains("keeps the last good checkpoint (step")
            && err.contains("no model.onnx was written"),
        "{err}"
    );
    assert!(!out.join("model.onnx").exists(), "a NaN model was exported");
    let ckpt = Checkpoint::load(&out.join("checkpoint.bin")).unwrap();
    assert!(
        all_finite(&ckpt),
        "the kept checkpoint holds non-finite values"
    );
    assert!(
        err.contains(&format!("(step {})", ckpt.steps)),
        "{err} vs step {}",
        ckpt.steps
    );

    // Every label of a batch the ignore index: the mean loss over no positions is 0/0.
    let model = digits_graph(&dir.join("graph2"), &[]);
    let ignored = data_with(&digits_data(), &dir.join("ignored.npz"), |_, y| {
        y.iter_mut().for_each(|l| *l = -100)
    });
    let out = dir.join("ignored");
    let err = fails(&train(
        &model,
        &ignored,
        &["--steps", "5", "--quiet", "--out", s(&out)],
    ));
    assert!(
        err.contains(
            "training diverged at step 1: the loss is NaN: every label of the batch \
             (`labels`) is the ignore index -100"
        ),
        "{err}"
    );
    assert!(err.contains("no checkpoint had been written"), "{err}");
    assert!(!out.join("model.onnx").exists());
}

#[test]
fn damaged_checkpoints_are_detected_and_the_previous_one_is_used() {
    let dir = scratch("faults-ckpt");
    let common = ["--steps", "12", "--seed", "5", "--checkpoint-every", "4"];
    let whole = dir.join("whole");
    ok(&toy_run(&[&common[..], &["--out", s(&whole)]].concat()));
    let split = dir.join("split");
    ok(&toy_run(
        &[&common[..], &["--stop-after", "8", "--out", s(&split)]].concat(),
    ));
    let newest = split.join("checkpoint.bin");
    let previous = split.join("checkpoint.prev.bin");
    assert_eq!(Checkpoint::load(&newest).unwrap().steps, 8);
    assert_eq!(Checkpoint::load(&previous).unwrap().steps, 4);

    // Every single-bit flip of a real checkpoint is refused.
    let bytes = std::fs::read(&newest).unwrap();
    let probe = dir.join("flipped.bin");
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&probe, &flipped).unwrap();
        assert!(
            Checkpoint::load(&probe).is_err(),
            "flip of bit {bit} of {} went unnoticed",
            bytes.len() * 8
        );
    }

    // A flip in the stored lr (the last state tensor, just before the checksum): the resume says
    // so, continues from the previous checkpoint and ends bit-identical to the whole run.
    let mut damaged = bytes.clone();
    let lr_byte = bytes.len() - 5;
    damaged[lr_byte] ^= 0x10;
    std::fs::write(&newest, &damaged).unwrap();
    let resumed = train(
        &toy("train.onnx"),
        &toy("train.npz"),
        &[&common[..], &["--resume", s(&split)]].concat(),
    );
    ok(&resumed);
    let stderr = text(&resumed.stderr);
    assert!(
        stderr.contains("corrupt: checksum mismatch")
            && stderr
                .contains("resuming from the previous checkpoint, checkpoint.prev.bin (step 4)"),
        "{stderr}"
    );
    let a = Checkpoint::load(&whole.join("checkpoint.bin")).unwrap();
    let b = Checkpoint::load(&newest).unwrap();
    assert_eq!((a.steps, &a.state), (b.steps, &b.state));
    assert_eq!(records(&split).len(), 12);

    // Both damaged: a clear error naming both.
    let broken = dir.join("broken");
    ok(&toy_run(
        &[&common[..], &["--stop-after", "8", "--out", s(&broken)]].concat(),
    ));
    for name in ["checkpoint.bin", "checkpoint.prev.bin"] {
        let path = broken.join(name);
        let mut b = std::fs::read(&path).unwrap();
        b[20] ^= 1;
        std::fs::write(&path, b).unwrap();
    }
    let err = fails(&toy_run(&[&common[..], &["--resume", s(&broken)]].concat()));
    assert!(
        err.contains("no usable checkpoint")
            && err.contains("checkpoint.bin: corrupt")
            && err.contains("checkpoint.prev.bin: corrupt"),
        "{err}"
    );
}

/// Lines of metrics.jsonl so far (0 before it exists).
fn lines_so_far(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// Temporary files left in a run directory.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.starts_with(".gen-train-write-test-"))
        .collect()
}

#[test]
fn runs_killed_anywhere_resume_to_the_uninterrupted_model() {
    require_ort();
    let dir = scratch("faults-kill");
    const STEPS: usize = 150;
    let steps = STEPS.to_string();
    let common = ["--steps", &steps, "--seed", "2", "--checkpoint-every", "1"];
    let reference = dir.join("reference");
    ok(&toy_run(&[&common[..], &["--out", s(&reference)]].concat()));
    let model = std::fs::read(reference.join("model.onnx")).unwrap();
    let final_state = Checkpoint::load(&reference.join("checkpoint.bin"))
        .unwrap()
        .state;

    // Kill points: two random ones (the seed is printed to reproduce a failure) and right after
    // the last step's metrics line, before or while the model and final checkpoint are written.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    eprintln!("kill points seed {seed}");
    let points = [2 + seed % 60, 60 + (seed / 60) % (STEPS - 61), STEPS];
    for (i, &at) in points.iter().enumerate() {
        let out = dir.join(format!("killed-{i}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gen-train"))
            .args([s(&toy("train.onnx")), "--data", s(&toy("train.npz"))])
            .args(["--batch-size", "16", "--quiet", "--out", s(&out)])
            .args(common)
            .current_dir(root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let began = Instant::now();
        while lines_so_far(&out) < at && child.try_wait().unwrap().is_none() {
            assert!(began.elapsed() < Duration::from_secs(120), "no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // A leftover of some dead gen-train (no such process id) must be cleaned up too.
        std::fs::write(out.join(".checkpoint.bin.tmp-4194999"), b"x").unwrap();

        let done = Checkpoint::load(&out.join("checkpoint.bin")).map_or(0, |c| c.steps);
        let finished = done == STEPS as u64 && out.join("model.onnx").exists();
        eprintln!(
            "killed at line {at}: checkpoint at step {done}, model.onnx {}",
            if out.join("model.onnx").exists() {
                "written"
            } else {
                "missing"
            }
        );
        let resumed = toy_run(&[&common[..], &["--resume", s(&out)]].concat());
        if finished {
            // Killed after its very end: nothing is left to do.
            assert!(
                text(&resumed.stderr).contains("nothing to do"),
                "kill at {at}"
            );
        } else {
            ok(&resumed);
        }
        assert_eq!(
            std::fs::read(out.join("model.onnx")).unwrap(),
            model,
            "model.onnx after a kill at line {at} (checkpoint at step {done})"
        );
        let ckpt = Checkpoint::load(&out.join("checkpoint.bin")).unwrap();
        assert_eq!(ckpt.state, final_state, "kill at {at}");
        let steps: Vec<u64> = records(&out).iter().map(|r| r.step).collect();
        assert_eq!(
            steps,
            (1..=STEPS as u64).collect::<Vec<_>>(),
            "kill at {at}"
        );
        if !finished {
            assert_eq!(temp_files(&out), Vec::<String>::new(), "kill at {at}");
        }
    }

    // A finished run whose model.onnx is gone (the old order wrote it after the final
    // checkpoint): --resume exports it again, identical.
    std::fs::remove_file(reference.join("model.onnx")).unwrap();
    let stdout = ok(&toy_run(
        &[&common[..], &["--resume", s(&reference)]].concat(),
    ));
    assert!(stdout.contains("trained model:"), "{stdout}");
    assert_eq!(std::fs::read(reference.join("model.onnx")).unwrap(), model);
    let err = fails(&toy_run(
        &[&common[..], &["--resume", s(&reference)]].concat(),
    ));
    assert!(err.contains("nothing to do"), "{err}");
}

#[test]
fn a_torn_metrics_line_does_not_stop_a_resume() {
    let dir = scratch("faults-metrics");
    let out = dir.join("run");
    let common = ["--steps", "20", "--checkpoint-every", "5"];
    ok(&toy_run(
        &[&common[..], &["--stop-after", "10", "--out", s(&out)]].concat(),
    ));
    // What a full disk or a crash mid-write leaves: a line without its end.
    let path = out.join("metrics.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(br#"{"step":11,"epoch":1,"loss":0.4"#)
        .unwrap();
    drop(file);
    assert_eq!(records(&out).len(), 10, "the torn line is not a record");
    ok(&toy_run(&[&common[..], &["--resume", s(&out)]].concat()));
    let steps: Vec<u64> = records(&out).iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=20).collect::<Vec<_>>());
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21);
}

#[test]
fn a_second_run_on_a_busy_directory_fails_at_once() {
    require_ort();
    let dir = scratch("faults-lock");
    let out = dir.join("run");
    let first = Command::new(env!("CARGO_BIN_EXE_gen-train"))
        .args([s(&toy("train.onnx")), "--data", s(&toy("train.npz"))])
        .args(["--batch-size", "16", "--steps", "100000000", "--quiet"])
        .args(["--out", s(&out)])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while lines_so_far(&out) < 5 {
        assert!(began.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = format!("is in use by another gen-train (pid {})", first.id());
    for flag in ["--resume", "--out"] {
        let began = Instant::now();
        let err = fails(&toy_run(&["--steps", "100000000", flag, s(&out)]));
        assert!(err.contains(&holder), "{flag}: {err}");
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{flag} waited for the lock"
        );
    }
    let status = Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = first.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    // One writer only: the metrics are one run's steps, in order.
    let steps: Vec<u64> = records(&out).iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
    // Once it has ended the directory can be resumed.
    let target = (steps.len() + 3).to_string();
    ok(&toy_run(&["--steps", &target, "--resume", s(&out)]));
}

/// Resume restores the optimizer state bit for bit: AdamW's moments (and, with
/// `--gen-compat reference`, its own step count `opt.step`) after a split run equal the whole
/// run's.
#[test]
fn resume_restores_the_optimizer_state_exactly() {
    let dir = scratch("faults-optim");
    for compat in ["default", "reference"] {
        let model = digits_graph(&dir.join(compat), &["--gen-compat", compat]);
        let common = ["--steps", "30", "--seed", "4", "--quiet"];
        let whole = dir.join(format!("{compat}-whole"));
        ok(&train(
            &model,
            &digits_data(),
            &[&common[..], &["--out", s(&whole)]].concat(),
        ));
        let split = dir.join(format!("{compat}-split"));
        ok(&train(
            &model,
            &digits_data(),
            &[&common[..], &["--stop-after", "13", "--out", s(&split)]].concat(),
        ));
        ok(&train(
            &model,
            &digits_data(),
            &[&common[..], &["--resume", s(&split)]].concat(),
        ));
        let a = Checkpoint::load(&whole.join("checkpoint.bin")).unwrap();
        let b = Checkpoint::load(&split.join("checkpoint.bin")).unwrap();
        let slots = |c: &Checkpoint| {
            c.state
                .iter()
                .filter(|(n, _)| n.starts_with("opt."))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(slots(&a).len() >= 2, "{compat}: AdamW moments expected");
        assert_eq!(
            slots(&a).iter().any(|(n, _)| n == "opt.step"),
            compat == "reference"
        );
        assert_eq!(slots(&a), slots(&b), "{compat}: optimizer state differs");
        assert_eq!(a.state, b.state, "{compat}");
    }
}
