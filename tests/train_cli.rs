//! End-to-end tests of the `gen-train` binary on the contract_toy fixture
//! (models/contract_toy/make.py: softmax regression, SGD, a fake GeN that multiplies lr by
//! 1 + 0.1·scale, capped at 1.0, every lazy_freq = 4 steps).

mod train_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gen_runtime::{
    run_model, Checkpoint, Dataset, HostTensor, OnnxModel, RunModelOptions, CSV_COLUMNS,
};
use train_support::*;

const LR0: f64 = 0.2;

fn train_toy(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        s(&toy("train.onnx")).to_string(),
        "--data".into(),
        s(&toy("train.npz")).to_string(),
        "--batch-size".into(),
        "16".into(),
        "--out".into(),
        s(out).to_string(),
        "--quiet".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    ok(&gen_train(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
}

#[test]
fn trains_the_toy_with_eval_metrics_plots_and_export() {
    let out = scratch("e2e").join("run");
    let stdout = train_toy(
        &out,
        &[
            "--epochs",
            "5",
            "--eval-data",
            s(&toy("val.npz")),
            "--eval-every",
            "20",
            "--seed",
            "1",
        ],
    );
    assert!(stdout.contains("CPUExecutionProvider"), "{stdout}");
    assert!(stdout.contains("trained 65/65 steps"), "{stdout}");

    let rs = records(&out);
    assert_eq!(
        rs.len(),
        65,
        "13 batches per epoch (200 samples, last batch of 8 kept) x 5"
    );
    assert_eq!(
        rs.iter().map(|r| r.step).collect::<Vec<_>>(),
        (1..=65).collect::<Vec<_>>()
    );
    assert_eq!(rs[12].epoch, 1);
    assert_eq!(rs[13].epoch, 2);

    // Loss falls.
    let mean =
        |r: &[gen_runtime::MetricsRecord]| r.iter().map(|r| r.loss).sum::<f64>() / r.len() as f64;
    assert!(
        mean(&rs[55..]) < 0.6 * mean(&rs[..3]),
        "{} vs {}",
        mean(&rs[55..]),
        mean(&rs[..3])
    );

    // GeN runs on steps 4, 8, ...: lr changes exactly there (x1.1, capped at 1.0) and the probe
    // losses are logged exactly there.
    let mut lr = LR0 as f32;
    for r in &rs {
        let gen = r.step % 4 == 0;
        assert_eq!(r.gen_applied, Some(gen), "step {}", r.step);
        if gen {
            lr = (lr * 1.1f32).min(1.0);
        }
        assert_eq!(r.lr, Some(f64::from(lr)), "step {}", r.step);
        assert_eq!(r.probe_loss_minus.is_some(), gen);
        assert_eq!(r.probe_loss_zero.is_some(), gen);
        assert!(r.train_accuracy.is_some());
    }

    // Eval every 20 steps and at the end.
    let evals: Vec<u64> = rs
        .iter()
        .filter(|r| r.eval_loss.is_some())
        .map(|r| r.step)
        .collect();
    assert_eq!(evals, vec![20, 40, 60, 65]);
    let last = rs.last().unwrap();
    assert!(last.eval_accuracy.unwrap() > 0.85, "{last:?}");

    // CSV: the documented columns, one row per step.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), CSV_COLUMNS.join(","));
    assert_eq!(lines.count(), 65);

    for png in ["loss.png", "lr.png", "accuracy.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
    }
    assert!(out.join("checkpoint.bin").is_file() && out.join("run.json").is_file());
    check_eval_numbers(&out, last.eval_loss.unwrap(), last.eval_accuracy.unwrap());
    check_exported_model(&out);
}

/// The logged eval numbers are the eval graph's loss / accuracy over the whole validation set.
fn check_eval_numbers(out: &Path, eval_loss: f64, eval_accuracy: f64) {
    let ckpt = Checkpoint::load(&out.join("checkpoint.bin")).unwrap();
    let mut feeds = Dataset::load(&toy("val.npz")).unwrap().arrays().to_vec();
    feeds.extend(
        ckpt.state
            .iter()
            .filter(|(n, _)| ["fc.weight", "fc.bias", "norm.mean"].contains(&n.as_str()))
            .cloned(),
    );
    let run = run_model(&toy("train.eval.onnx"), &feeds, &RunModelOptions::default()).unwrap();
    let get = |name: &str| {
        run.outputs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .scalar_f64()
            .unwrap()
    };
    assert!(
        (get("loss") - eval_loss).abs() < 1e-6,
        "{} vs {eval_loss}",
        get("loss")
    );
    assert!((get("accuracy") - eval_accuracy).abs() < 1e-6);
}

/// model.onnx: inputs = model_inputs, outputs = model_outputs, trained weights baked in, and the
/// same logits as the eval graph fed the final state.
fn check_exported_model(out: &Path) {
    let exported = OnnxModel::read(&out.join("model.onnx")).unwrap();
    assert_eq!(exported.input_names(), vec!["input"]);
    assert_eq!(exported.output_names(), vec!["logits"]);
    assert!(exported.metadata(gen_runtime::CONTRACT_KEY).is_none());

    let ckpt = Checkpoint::load(&out.join("checkpoint.bin")).unwrap();
    let val = Dataset::load(&toy("val.npz")).unwrap();
    let mut feeds = val.arrays().to_vec();
    feeds.extend(
        ckpt.state
            .iter()
            .filter(|(n, _)| !n.starts_with("gen."))
            .cloned(),
    );
    let opts = RunModelOptions::default();
    let reference = run_model(&toy("train.eval.onnx"), &feeds, &opts).unwrap();
    let input = val
        .arrays()
        .iter()
        .find(|(n, _)| n == "input")
        .unwrap()
        .clone();
    let ours = run_model(&out.join("model.onnx"), &[input], &opts).unwrap();
    let logits = |outputs: &[(String, HostTensor)]| {
        outputs
            .iter()
            .find(|(n, _)| n == "logits")
            .unwrap()
            .1
            .to_vec::<f32>()
            .unwrap()
    };
    let (a, b) = (logits(&reference.outputs), logits(&ours.outputs));
    assert_eq!(a.len(), 200);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
    }
}

#[test]
fn resume_continues_bit_identically() {
    let dir = scratch("resume");
    let common = [
        "--steps",
        "40",
        "--scale",
        "linear",
        "--seed",
        "3",
        "--checkpoint-every",
        "5",
    ];
    let whole = dir.join("whole");
    train_toy(&whole, &common);
    let split = dir.join("split");
    let first: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--stop-after", "17"])
        .collect();
    train_toy(&split, &first);
    assert_eq!(
        Checkpoint::load(&split.join("checkpoint.bin"))
            .unwrap()
            .steps,
        17
    );
    assert_eq!(records(&split).len(), 17);
    // Resume in place: same settings, --resume instead of --out.
    let (model, data) = (toy("train.onnx"), toy("train.npz"));
    let mut args = vec![
        s(&model),
        "--data",
        s(&data),
        "--batch-size",
        "16",
        "--quiet",
        "--resume",
        s(&split),
    ];
    args.extend(common);
    ok(&gen_train(&args));

    let a = Checkpoint::load(&whole.join("checkpoint.bin")).unwrap();
    let b = Checkpoint::load(&split.join("checkpoint.bin")).unwrap();
    assert_eq!(a.steps, 40);
    assert_eq!(
        a.state, b.state,
        "parameters, buffers, step and lr identical bit for bit"
    );
    assert_eq!(
        (a.train_stream, a.probe_stream, a.epoch),
        (b.train_stream, b.probe_stream, b.epoch)
    );
    let strip = |rs: Vec<gen_runtime::MetricsRecord>| -> Vec<_> {
        rs.into_iter()
            .map(|r| (r.step, r.epoch, r.loss.to_bits(), r.lr, r.probe_loss_plus))
            .collect()
    };
    assert_eq!(strip(records(&whole)), strip(records(&split)));

    // Resuming with different settings is refused.
    let mut bad = args.clone();
    let seed = bad.iter().position(|a| *a == "--seed").unwrap();
    bad[seed + 1] = "4";
    let steps = bad.iter().position(|a| *a == "--steps").unwrap();
    bad[steps + 1] = "50";
    let err = fails(&gen_train(&bad));
    assert!(err.contains("--seed 4 (was 3)"), "{err}");
}

#[test]
fn ctrl_c_checkpoints_and_the_run_resumes() {
    require_ort();
    let out = scratch("ctrlc").join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_gen-train"))
        .args([
            s(&toy("train.onnx")),
            "--data",
            s(&toy("train.npz")),
            "--batch-size",
            "16",
            "--steps",
            "100000000",
            "--quiet",
            "--out",
            s(&out),
        ])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while records_so_far(&out) < 30 {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("interrupted after") && stdout.contains("--resume"),
        "{stdout}"
    );
    let ckpt = Checkpoint::load(&out.join("checkpoint.bin")).unwrap();
    assert_eq!(
        ckpt.steps as usize,
        records(&out).len(),
        "checkpoint and metrics agree"
    );
    assert!(out.join("model.onnx").is_file());

    let target = (ckpt.steps + 10).to_string();
    ok(&gen_train(&[
        s(&toy("train.onnx")),
        "--data",
        s(&toy("train.npz")),
        "--batch-size",
        "16",
        "--steps",
        &target,
        "--quiet",
        "--resume",
        s(&out),
    ]));
    assert_eq!(records(&out).len() as u64, ckpt.steps + 10);
}

fn records_so_far(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

#[test]
fn scale_and_lazy_freq_reach_the_graph() {
    let out = scratch("scale").join("run");
    train_toy(
        &out,
        &["--steps", "24", "--scale", "linear", "--lazy-freq", "3"],
    );
    let mut lr = LR0 as f32;
    for r in records(&out) {
        let t = r.step - 1;
        let gen = r.step % 3 == 0;
        assert_eq!(r.gen_applied, Some(gen));
        if gen {
            let scale = (1.0 - t as f64 / 24.0) as f32;
            lr = (lr * (1.0f32 + 0.1f32 * scale)).min(1.0);
        }
        assert_eq!(r.lr, Some(f64::from(lr)), "step {}", r.step);
    }

    // A period of 0 turns GeN off: no probe batches, lr constant.
    let off = scratch("scale").join("off");
    train_toy(&off, &["--steps", "8", "--lazy-freq", "0"]);
    assert!(records(&off)
        .iter()
        .all(|r| r.gen_applied == Some(false) && r.lr == Some(f64::from(LR0 as f32))));
}

#[test]
fn trains_without_gen_and_from_external_data() {
    let dir = scratch("variants");
    let out = dir.join("nogen");
    ok(&gen_train(&[
        s(&toy("train.nogen.onnx")),
        "--data",
        s(&toy("train.npz")),
        "--batch-size",
        "16",
        "--steps",
        "10",
        "--quiet",
        "--out",
        s(&out),
    ]));
    assert!(records(&out)
        .iter()
        .all(|r| r.lr == Some(f64::from(LR0 as f32)) && r.gen_applied.is_none()));

    let inline = dir.join("inline");
    train_toy(&inline, &["--steps", "12"]);
    let external = dir.join("external");
    ok(&gen_train(&[
        s(&toy("external/train.onnx")),
        "--data",
        s(&toy("train.npz")),
        "--batch-size",
        "16",
        "--steps",
        "12",
        "--quiet",
        "--out",
        s(&external),
    ]));
    let losses = |d: &Path| {
        records(d)
            .iter()
            .map(|r| r.loss.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&inline), losses(&external));
    assert!(external.join("model.onnx").is_file());
}

#[test]
fn bench_reports_time_and_memory_ratios() {
    let out = ok(&gen_train(&[
        "bench",
        s(&toy("train.onnx")),
        s(&toy("train.nogen.onnx")),
        "--data",
        s(&toy("train.npz")),
        "--batch-size",
        "16",
        "--steps",
        "40",
        "--rounds",
        "4",
        "--warmup",
        "2",
    ]));
    let ratio = |label: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("{out}"));
        let value = line
            .split(label)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        value.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    assert!(ratio("wall-time ratio A/B:") > 0.0);
    assert!(ratio("peak-memory ratio A/B:") > 0.0);
    assert!(out.contains("CPUExecutionProvider"), "{out}");
}

/// Every bad input is one readable error, exit 1, no panic, and no run directory left behind.
#[test]
fn bad_inputs_are_clear_errors() {
    let dir = scratch("errors");
    let run = |model: &Path, data: &Path, extra: &[&str]| -> String {
        let out = dir.join("run");
        let mut args = vec![
            s(model),
            "--data",
            s(data),
            "--steps",
            "3",
            "--out",
            s(&out),
        ];
        if !extra.contains(&"--batch-size") {
            args.extend(["--batch-size", "16"]);
        }
        args.extend(extra);
        let err = fails(&gen_train(&args));
        assert!(
            !out.exists(),
            "run directory created for a failing run: {err}"
        );
        err
    };
    let (model, data) = (toy("train.onnx"), toy("train.npz"));
    let expect = |err: String, parts: &[&str]| {
        for p in parts {
            assert!(err.contains(p), "missing {p:?} in: {err}");
        }
    };

    expect(
        run(&model, &toy("bad/missing_labels.npz"), &[]),
        &[
            "no array named `labels`",
            "`input` f32 [?, 4], `labels` i64 [?]",
            "the file has `input` f32 [200, 4]",
        ],
    );
    expect(
        run(&model, &toy("bad/labels_int32.npz"), &[]),
        &["array `labels` is i32, the model expects `labels` i64 [?]"],
    );
    expect(
        run(&model, &toy("bad/three_features.npz"), &[]),
        &["array `input` has shape [200, 3]", "`input` f32 [?, 4]"],
    );
    expect(
        run(&model, &toy("bad/empty.npz"), &[]),
        &["no array named `input`", "no arrays"],
    );
    expect(
        run(&model, &dir.join("absent.npz"), &[]),
        &["absent.npz", "No such file"],
    );
    expect(
        run(&model, &data, &["--batch-size", "500"]),
        &["batch size 500 is larger than the data", "200 samples"],
    );
    expect(
        run(&toy("bad/no_contract.onnx"), &data, &[]),
        &["no `gen.contract`", "gen-compile"],
    );
    expect(
        run(&toy("bad/random.onnx"), &data, &[]),
        &["random.onnx", "not an ONNX model"],
    );
    expect(
        run(&toy("train.eval.onnx"), &data, &[]),
        &["kind is `eval`", "--emit train"],
    );
    expect(
        run(&model, &data, &["--device", "cuda"]),
        &[
            "device cuda:0",
            "no CUDA execution provider",
            "onnxruntime-gpu[cuda,cudnn]==1.31.1",
        ],
    );
    // A malformed flag is a usage error (clap's exit code 2).
    let usage = gen_train(&[
        s(&model),
        "--data",
        s(&data),
        "--batch-size",
        "16",
        "--steps",
        "3",
        "--device",
        "tpu",
    ]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(text(&usage.stderr).contains("unknown device `tpu`: expected cpu, cuda or cuda:N"));

    // A run directory below a regular file cannot be created.
    let file = dir.join("file.txt");
    std::fs::write(&file, b"x").unwrap();
    let below = file.join("run");
    let err = fails(&gen_train(&[
        s(&model),
        "--data",
        s(&data),
        "--batch-size",
        "16",
        "--steps",
        "3",
        "--out",
        s(&below),
    ]));
    expect(err, &["run directory", "is not writable"]);

    // A non-empty run directory needs --resume, and is left untouched.
    let used = dir.join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("notes.txt"), b"mine").unwrap();
    let err = fails(&gen_train(&[
        s(&model),
        "--data",
        s(&data),
        "--batch-size",
        "16",
        "--steps",
        "3",
        "--out",
        s(&used),
    ]));
    expect(err, &["is not empty", "--resume"]);
    assert_eq!(std::fs::read_dir(&used).unwrap().count(), 1);

    // --resume of a directory without a checkpoint.
    let err = fails(&gen_train(&[
        s(&model),
        "--data",
        s(&data),
        "--batch-size",
        "16",
        "--steps",
        "3",
        "--resume",
        s(&used),
    ]));
    expect(err, &["has no checkpoint.bin"]);
}
