//! GeN's parabola and guards on an exactly quadratic model, run through ONNX Runtime:
//! `L(w) = sign · mean_b Σ_i ½·a_i·(w_i − x_bi)²` in float64 with plain SGD (d = gradient), so
//! the loss along `w + u·d` is exactly quadratic and the fit must recover the true curvature
//! `A = sign·Σ a·d²`, slope `B = Gᵀd` (G: the probe batch's gradient) and minimiser `η* = B/A`.

mod gen_support;

use gen_passes::options::{OptimizerKind, ProbeBatch};
use gen_passes::CompileOptions;
use gen_runtime::{HostTensor, StepResult, TrainSession};
use gen_support::*;

const A: [f64; 3] = [1.0, 2.0, 4.0];
const W0: [f64; 3] = [1.0, 1.0, 1.0];

fn options(lr: f64, lazy_freq: i64) -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::Sgd,
        lr,
        weight_decay: Some(0.0),
        lazy_freq,
        ..CompileOptions::default()
    }
}

fn rows(xs: &[[f64; 3]]) -> HostTensor {
    let flat: Vec<f64> = xs.iter().flatten().copied().collect();
    f64_tensor(&[xs.len(), 3], &flat)
}

fn compile_quadratic(
    name: &str,
    opts: CompileOptions,
    sign: f64,
) -> (TrainSession, std::path::PathBuf) {
    let (mut m, cx) = quadratic(opts, &A, &W0, sign);
    run_train_passes(&mut m, cx);
    let dir = scratch(name);
    let path = dir.join("train.onnx");
    save(&m, &path);
    (open(&path), dir)
}

fn step(s: &mut TrainSession, x: &[[f64; 3]], probe: &[[f64; 3]], scale: f32) -> StepResult {
    let batch = vec![("x".to_string(), rows(x))];
    let probe = vec![("x".to_string(), rows(probe))];
    s.step(&batch, Some(&probe), scale).expect("step")
}

/// The model in f64: loss and gradient on a batch.
fn loss(w: &[f64], xs: &[[f64; 3]], sign: f64) -> f64 {
    let n = xs.len() as f64;
    xs.iter()
        .map(|x| {
            (0..3)
                .map(|i| 0.5 * A[i] * (w[i] - x[i]).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        * sign
        / n
}

fn grad(w: &[f64], xs: &[[f64; 3]], sign: f64) -> Vec<f64> {
    let n = xs.len() as f64;
    (0..3)
        .map(|i| sign * A[i] * (w[i] - xs.iter().map(|x| x[i]).sum::<f64>() / n))
        .collect()
}

/// The exact curvature and slope along d on the probe batch.
fn exact_ab(w: &[f64], d: &[f64], probe: &[[f64; 3]], sign: f64) -> (f64, f64) {
    let a: f64 = (0..3).map(|i| sign * A[i] * d[i] * d[i]).sum();
    let g = grad(w, probe, sign);
    let b: f64 = (0..3).map(|i| g[i] * d[i]).sum();
    (a, b)
}

fn close(x: f64, y: f64, rel: f64) -> bool {
    (x - y).abs() <= rel * y.abs().max(1e-30)
}

const TRAIN: [[f64; 3]; 2] = [[0.5, -0.5, 0.0], [-0.5, 0.5, 0.0]]; // mean 0: m = w − x̄ = 1
const PROBE: [[f64; 3]; 2] = [[0.0, 0.25, -0.5], [0.0, -0.25, 0.5]]; // mean 0 as well

/// η* inside [lr/2, 2lr]: lr ← 0.9·lr + 0.1·η*, and the fit recovers A, B and η* exactly.
#[test]
fn parabola_recovers_minimiser_and_curvature() {
    let lr = 0.25;
    let (mut s, _dir) = compile_quadratic("gen-parabola-exact", options(lr, 1), 1.0);
    let r = step(&mut s, &TRAIN, &PROBE, 1.0);
    let d = grad(&W0, &TRAIN, 1.0);
    let (a, b) = exact_ab(&W0, &d, &PROBE, 1.0);
    let eta = b / a;
    assert!(close(eta, 21.0 / 73.0, 1e-12));
    assert_eq!(r.gen_applied, Some(true));
    let lr_new = r.lr.expect("lr");
    let expected = 0.9 * lr + 0.1 * eta;
    assert!(close(lr_new, expected, 1e-7), "lr {lr_new} vs {expected}");
    // the minimiser, recovered from the lr the graph chose (float32 lr: relative round-off)
    let eta_graph = (lr_new - 0.9 * lr) / 0.1;
    assert!(close(eta_graph, eta, 2e-6), "η* {eta_graph} vs {eta}");
    // the probe losses are the exact losses at w ∓ Δ (float32 outputs)
    let p = r.probe_losses.expect("probe losses");
    let wm: Vec<f64> = (0..3).map(|i| W0[i] + lr * d[i]).collect();
    let wp: Vec<f64> = (0..3).map(|i| W0[i] - lr * d[i]).collect();
    let want = [
        loss(&wm, &PROBE, 1.0),
        loss(&wp, &PROBE, 1.0),
        loss(&W0, &PROBE, 1.0),
    ];
    for (got, want) in p.iter().zip(want) {
        assert!(close(*got, want, 1e-6), "probe loss {got} vs {want}");
    }
    // curvature and slope from the reported losses, to float32 round-off
    let a_fit = (p[0] + p[1] - 2.0 * p[2]) / (lr * lr);
    let b_fit = (p[0] - p[1]) / (2.0 * lr);
    assert!(close(a_fit, a, 1e-5), "A {a_fit} vs {a}");
    assert!(close(b_fit, b, 1e-5), "B {b_fit} vs {b}");
    // the training loss is at w, the step applies the new lr to the same direction
    assert!(close(r.loss, loss(&W0, &TRAIN, 1.0), 1e-12));
    let w1 = state_f64(&s, "w");
    for i in 0..3 {
        assert!(
            close(w1[i], W0[i] - lr_new * d[i], 1e-12),
            "w[{i}] {}",
            w1[i]
        );
    }
}

/// η* > 2·lr is clipped to 2·lr (lr grows by 10%); η* < lr/2 is clipped to lr/2 (shrinks 5%).
#[test]
fn parabola_clips_both_ways() {
    let (mut s, _dir) = compile_quadratic("gen-parabola-clip-up", options(0.05, 1), 1.0);
    let r = step(&mut s, &TRAIN, &PROBE, 1.0);
    assert!(close(r.lr.unwrap(), 0.055, 1e-7), "up: {:?}", r.lr);
    let (mut s, _dir) = compile_quadratic("gen-parabola-clip-down", options(1.0, 1), 1.0);
    let r = step(&mut s, &TRAIN, &PROBE, 1.0);
    assert!(close(r.lr.unwrap(), 0.95, 1e-7), "down: {:?}", r.lr);
    // scale multiplies the clipped minimiser only
    let (mut s, _dir) = compile_quadratic("gen-parabola-scale", options(0.05, 1), 1.0);
    let r = step(&mut s, &TRAIN, &PROBE, 0.5);
    assert!(
        close(r.lr.unwrap(), 0.9 * 0.05 + 0.1 * 0.5 * 0.1, 1e-7),
        "scale: {:?}",
        r.lr
    );
}

/// A < 0 (concave loss): lr unchanged, and scale is not applied.
#[test]
fn negative_curvature_keeps_lr() {
    let (mut s, _dir) = compile_quadratic("gen-parabola-concave", options(0.25, 1), -1.0);
    let r = step(&mut s, &TRAIN, &PROBE, 0.3);
    assert_eq!(r.gen_applied, Some(true));
    let p = r.probe_losses.unwrap();
    assert!(
        p[0] + p[1] - 2.0 * p[2] < 0.0,
        "curvature should be negative: {p:?}"
    );
    assert!(close(r.lr.unwrap(), 0.25, 1e-7), "{:?}", r.lr);
}

/// B < 0 (the direction does not descend on the probe batch): lr unchanged.
#[test]
fn non_descent_keeps_lr() {
    let (mut s, _dir) = compile_quadratic("gen-parabola-ascent", options(0.25, 1), 1.0);
    let probe = [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]; // w − x̄' = −1: the probe gradient opposes d
    let r = step(&mut s, &TRAIN, &probe, 1.0);
    let p = r.probe_losses.unwrap();
    assert!(p[0] < p[1], "L(w − Δ) should be below L(w + Δ): {p:?}");
    assert!(close(r.lr.unwrap(), 0.25, 1e-7), "{:?}", r.lr);
}

/// A non-finite probe loss (NaN or inf in the probe batch) halves lr; the step still applies.
#[test]
fn non_finite_probe_halves_lr() {
    for (name, bad) in [("nan", f64::NAN), ("inf", f64::INFINITY)] {
        let (mut s, _dir) =
            compile_quadratic(&format!("gen-parabola-{name}"), options(0.25, 1), 1.0);
        let probe = [[bad, 0.0, 0.0], [0.0, 0.0, 0.0]];
        let r = step(&mut s, &TRAIN, &probe, 1.0);
        assert_eq!(r.gen_applied, Some(true));
        assert!(r.probe_losses.unwrap().iter().any(|v| !v.is_finite()));
        assert!(close(r.lr.unwrap(), 0.125, 1e-7), "{name}: {:?}", r.lr);
        assert!(r.loss.is_finite());
        let w1 = state_f64(&s, "w");
        let d = grad(&W0, &TRAIN, 1.0);
        for i in 0..3 {
            assert!(close(w1[i], W0[i] - 0.125 * d[i], 1e-12));
        }
    }
}

/// GeN runs exactly when (step + 1) % lazy_freq == 0; other steps keep lr, report zeros, and
/// the whole trajectory matches an f64 simulation (with a horizon scale and probe batches of
/// another size than the training batches).
#[test]
fn lazy_freq_schedule_and_trajectory() {
    let lr0 = 0.1;
    let (mut s, _dir) = compile_quadratic("gen-parabola-lazy", options(lr0, 3), 1.0);
    let mut w = W0.to_vec();
    let mut lr = lr0;
    let steps = 9;
    for t in 0..steps {
        let shift = 0.1 * t as f64;
        let x = [[shift, -shift, 0.5], [shift, shift, -0.5]];
        // a probe batch of another size than the training batch
        let probe = [
            [0.2, 0.1 * t as f64, 0.0],
            [0.0, 0.3, 0.1],
            [0.1, -0.2, 0.4],
        ];
        let scale = 1.0 - t as f64 / steps as f64;
        let r = step(&mut s, &x, &probe, scale as f32);
        let gen = (t + 1) % 3 == 0;
        assert_eq!(r.gen_applied, Some(gen), "step {t}");
        assert_eq!(r.step, t as u64);
        let d = grad(&w, &x, 1.0);
        assert!(close(r.loss, loss(&w, &x, 1.0), 1e-12), "loss at step {t}");
        if gen {
            let (a, b) = exact_ab(&w, &d, &probe, 1.0);
            if a > 0.0 && b > 0.0 {
                lr = 0.9 * lr + 0.1 * scale * (b / a).clamp(lr / 2.0, 2.0 * lr);
            }
        } else {
            assert_eq!(r.probe_losses, Some([0.0; 3]), "step {t}");
        }
        assert!(
            close(r.lr.unwrap(), lr, 1e-6),
            "lr at step {t}: {:?} vs {lr}",
            r.lr
        );
        lr = r.lr.unwrap(); // carried in float32
        for i in 0..3 {
            w[i] -= lr * d[i];
        }
        let wg = state_f64(&s, "w");
        for i in 0..3 {
            assert!(close(wg[i], w[i], 1e-9), "w at step {t}");
        }
    }
}

/// `--probe-batch current`: no probe inputs; the probes use the training batch and L(w) is
/// the training loss itself.
#[test]
fn probe_batch_current_uses_training_batch() {
    let opts = CompileOptions {
        probe_batch: ProbeBatch::Current,
        ..options(0.25, 1)
    };
    let (mut m, cx) = quadratic(opts, &A, &W0, 1.0);
    run_train_passes(&mut m, cx);
    let c = gen_passes::pipeline::contract::read(&m).expect("contract");
    assert!(c.probe_data.is_empty());
    let dir = scratch("gen-parabola-current");
    let path = dir.join("train.onnx");
    save(&m, &path);
    let mut s = open(&path);
    let batch = vec![("x".to_string(), rows(&TRAIN))];
    let r = s.step(&batch, None, 1.0).expect("step");
    let p = r.probe_losses.unwrap();
    assert_eq!(p[2], r.loss as f32 as f64, "L(w) is the training loss");
    let d = grad(&W0, &TRAIN, 1.0);
    let (a, b) = exact_ab(&W0, &d, &TRAIN, 1.0);
    assert!(close(
        r.lr.unwrap(),
        0.9 * 0.25 + 0.1 * (b / a).clamp(0.125, 0.5),
        1e-7
    ));
}

/// `gen.lazy_freq` is an input: a fed value overrides the default, and a value ≤ 0 turns GeN
/// off (no division by zero).
#[test]
fn lazy_freq_input_overrides_and_disables() {
    let (_s, dir) = compile_quadratic("gen-parabola-lazy-input", options(0.25, 4), 1.0);
    let path = dir.join("train.onnx");
    for (freq, step, want) in [
        (4i64, 3i64, true),
        (4, 1, false),
        (2, 1, true),
        (0, 3, false),
        (-3, 2, false),
    ] {
        let feeds = vec![
            ("x".to_string(), rows(&TRAIN)),
            ("probe.x".to_string(), rows(&PROBE)),
            ("gen.lazy_freq".to_string(), HostTensor::scalar(freq)),
            ("gen.step".to_string(), HostTensor::scalar(step)),
        ];
        let run = gen_runtime::run_model(path.as_path(), &feeds, &Default::default()).expect("run");
        let applied = run
            .outputs
            .iter()
            .find(|(n, _)| n == "gen.applied")
            .unwrap()
            .1
            .scalar_f64()
            .unwrap();
        assert_eq!(applied != 0.0, want, "lazy_freq {freq}, step {step}");
    }
}
