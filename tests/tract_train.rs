//! `gen-train --backend tract`: the digits MLP (models/digits) compiled with the default
//! pipeline (AdamW, GeN every 4 steps) and trained for 50 steps on tract and on ONNX Runtime must
//! report the same losses, learning rates and eval results within 1e-4 (relative) and take the
//! same GeN decisions; a run split by `--stop-after` and `--resume` on tract continues exactly;
//! the ONNX Runtime-only settings are errors on tract, and without the `tract` cargo feature
//! `--backend tract` says how to build it.

// Both support modules include the stateless tests/support/common.rs; two copies are harmless.
#![allow(clippy::duplicate_mod)]

#[cfg(feature = "tract")]
mod gen_support;
mod train_support;

use train_support::{fails, gen_train, s, scratch};

#[cfg(feature = "tract")]
mod with_tract {
    use super::*;
    use crate::gen_support;
    use gen_runtime::MetricsRecord;
    use std::path::{Path, PathBuf};
    use train_support::{ok, records};

    const STEPS: &str = "50";

    /// The digits MLP's train graph (and eval companion) in `dir`.
    fn digits_train_graph(dir: &Path) -> PathBuf {
        let model = train_support::root().join("models/digits/mlp.onnx");
        gen_support::compile_file(&model, &gen_passes::CompileOptions::default(), dir)
    }

    /// `gen-train` on the digits data for 50 steps with `extra` (`--out` or `--resume` among them).
    fn train(model: &Path, backend: &str, extra: &[&str]) -> String {
        let digits = train_support::root().join("models/digits");
        let (data, val) = (digits.join("train.npz"), digits.join("val.npz"));
        let mut args = vec![
            s(model),
            "--data",
            s(&data),
            "--eval-data",
            s(&val),
            "--batch-size",
            "32",
            "--steps",
            STEPS,
            "--backend",
            backend,
            "--quiet",
        ];
        args.extend(extra);
        ok(&gen_train(&args))
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }

    /// GeN's decision on a step (docs/CONTRACT.md) from its probe losses and the lr before it.
    fn decision(r: &MetricsRecord, lr_before: f64) -> Option<&'static str> {
        let p = [r.probe_loss_minus?, r.probe_loss_plus?, r.probe_loss_zero?];
        if p.iter().any(|v| !v.is_finite()) {
            return Some("halve");
        }
        let a = (p[0] + p[1] - 2.0 * p[2]) / (lr_before * lr_before);
        let b = (p[0] - p[1]) / (2.0 * lr_before);
        Some(if a > 0.0 && b > 0.0 { "fit" } else { "keep" })
    }

    /// The decisions of a run, by step (`None` on steps without GeN).
    fn decisions(rs: &[MetricsRecord], lr0: f64) -> Vec<Option<&'static str>> {
        let mut lr = lr0;
        rs.iter()
            .map(|r| {
                let d = decision(r, lr);
                lr = r.lr.expect("lr reported");
                d
            })
            .collect()
    }

    #[test]
    fn digits_trains_the_same_on_tract_and_onnx_runtime() {
        let dir = scratch("tract-digits");
        let model = digits_train_graph(&dir);
        let ort_out = train(&model, "ort", &["--out", s(&dir.join("ort"))]);
        let tract_out = train(&model, "tract", &["--out", s(&dir.join("tract"))]);
        assert!(ort_out.contains("CPUExecutionProvider"), "{ort_out}");
        assert!(tract_out.contains("train graph: tract ("), "{tract_out}");
        assert!(tract_out.contains("eval graph: tract ("), "{tract_out}");
        assert!(
            dir.join("tract/model.onnx").is_file(),
            "the tract run exports the trained model"
        );

        let (o, t) = (records(&dir.join("ort")), records(&dir.join("tract")));
        assert_eq!(o.len(), 50);
        assert_eq!(t.len(), 50);
        let lr0 = gen_passes::CompileOptions::default().lr;
        let (od, td) = (decisions(&o, lr0), decisions(&t, lr0));
        assert_eq!(
            td, od,
            "GeN decisions differ between tract and ONNX Runtime"
        );
        assert!(
            od.contains(&Some("fit")),
            "some GeN step accepts the parabola fit: {od:?}"
        );
        for (a, b) in t.iter().zip(&o) {
            assert_eq!(a.gen_applied, b.gen_applied, "step {}", b.step);
            assert!(
                rel(a.loss, b.loss) <= 1e-4,
                "step {}: loss {} on tract, {} on ONNX Runtime",
                b.step,
                a.loss,
                b.loss
            );
            let (la, lb) = (a.lr.expect("lr"), b.lr.expect("lr"));
            assert!(rel(la, lb) <= 1e-4, "step {}: lr {la} vs {lb}", b.step);
        }
        let (a, b) = (&t[49], &o[49]);
        let (ea, eb) = (a.eval_loss.expect("eval"), b.eval_loss.expect("eval"));
        assert!(
            rel(ea, eb) <= 1e-4,
            "eval loss {ea} on tract, {eb} on ONNX Runtime"
        );
        assert_eq!(a.eval_accuracy, b.eval_accuracy, "eval accuracy");
    }

    #[test]
    fn tract_runs_resume_exactly() {
        let dir = scratch("tract-resume");
        let model = digits_train_graph(&dir);
        let (whole, split) = (dir.join("whole"), dir.join("split"));
        train(&model, "tract", &["--out", s(&whole)]);
        train(&model, "tract", &["--out", s(&split), "--stop-after", "23"]);
        train(&model, "tract", &["--resume", s(&split)]);
        let (whole, split) = (records(&whole), records(&split));
        assert_eq!(split.len(), whole.len());
        for (a, b) in split.iter().zip(&whole) {
            assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "step {}", b.step);
            assert_eq!(a.lr, b.lr, "step {}", b.step);
        }
    }

    #[test]
    fn onnx_runtime_settings_are_errors_on_tract() {
        let dir = scratch("tract-settings");
        let model = digits_train_graph(&dir);
        let data = train_support::root().join("models/digits/train.npz");
        for (extra, says) in [
            (
                &["--device", "cuda"][..],
                "the tract backend runs on the CPU only",
            ),
            (&["--threads", "2"][..], "--threads applies to ONNX Runtime"),
            (
                &["--no-cpu-fallback"][..],
                "--no-cpu-fallback applies to ONNX Runtime",
            ),
        ] {
            let out = dir.join(extra[0].trim_start_matches('-'));
            let mut args = vec![
                s(&model),
                "--data",
                s(&data),
                "--batch-size",
                "32",
                "--steps",
                "2",
                "--out",
                s(&out),
                "--backend",
                "tract",
            ];
            args.extend(extra);
            let stderr = fails(&gen_train(&args));
            assert!(stderr.contains(says), "{extra:?}: {stderr}");
            assert!(
                !out.exists(),
                "{extra:?}: no run directory on a setup error"
            );
        }
    }
}

#[cfg(not(feature = "tract"))]
#[test]
fn backend_tract_needs_the_feature() {
    let dir = scratch("tract-missing");
    let toy = train_support::toy("train.onnx");
    let stderr = fails(&gen_train(&[
        s(&toy),
        "--data",
        s(&train_support::toy("train.npz")),
        "--batch-size",
        "16",
        "--steps",
        "1",
        "--out",
        s(&dir.join("run")),
        "--backend",
        "tract",
    ]));
    assert!(
        stderr.contains("`tract` cargo feature") && stderr.contains("--features tract"),
        "{stderr}"
    );
}
