//! The adaptive GeN controller (`--gen-controller adaptive`, docs/CONTRACT.md) end to end:
//! the compiled graph driven through gen-runtime on the digits MLP against a scalar
//! re-implementation of the rule (research `controller.py`, `adaptive_step`, v11) fed the
//! graph's own probe losses; exact resume; other lazy_freq values and probe batches; non-finite
//! probe losses on a quadratic model.

mod gen_support;

use gen_passes::options::{ControllerKind, OptimizerKind};
use gen_passes::CompileOptions;
use gen_runtime::{read_records, Checkpoint, Dataset, HostTensor, TrainOptions, TrainSession};
use gen_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------------------------------
// The rule as scalars (written from controller.py, independently of the graph builder).

#[derive(Clone, Copy, Debug, PartialEq)]
struct State {
    phase: i64,
    n: i64,
    ea: f64,
    eb: f64,
    em: f64,
    c: f64,
    period: i64,
    skip: i64,
    calm: i64,
}

const INIT: State = State {
    phase: 0,
    n: 0,
    ea: 0.0,
    eb: 0.0,
    em: 0.0,
    c: 1.0,
    period: 1,
    skip: 0,
    calm: 0,
};

/// `gen_gate`: (probes run, a lazy step skipped while settled).
fn gate(st: &State, step: u64, lazy: u64) -> (bool, bool) {
    let lazy_ok = lazy > 0 && (step + 1).is_multiple_of(lazy);
    let now = lazy > 0 && (st.phase == 0 || (lazy_ok && st.skip <= 0));
    let skipped = lazy > 0 && st.phase == 1 && lazy_ok && st.skip > 0;
    (now, skipped)
}

/// `adaptive_step` with scale 1.
#[allow(clippy::too_many_arguments)]
fn rule(
    lr: f64,
    st: State,
    lm: f64,
    lp: f64,
    l0: f64,
    step: u64,
    kappa: f64,
    mu: f64,
    lazy: u64,
) -> (f64, State) {
    let mut s = st;
    let k = 1.0 - mu.powf((step + 1) as f64);
    let fin = lm.is_finite() && lp.is_finite() && l0.is_finite();
    let r = s.c * lr;
    let grow = if lazy > 0 && (step + 1).is_multiple_of(lazy) {
        2.0
    } else {
        1.0
    };
    let tol = 16.0 * 2f64.powi(-23) * lm.abs().max(lp.abs()).max(l0.abs()).max(1e-30);
    let sd = lm + lp - 2.0 * l0;
    let q = lm - lp;
    if s.phase == 0 {
        s.n += 1;
        if s.n >= 16 {
            s.phase = 1;
        }
        if !fin {
            return (lr / 4.0, s);
        }
        if sd.abs() <= tol {
            return if q > tol || q.abs() <= tol {
                (lr * grow, s)
            } else {
                (lr / 2.0, s)
            };
        }
        let (a, b) = (sd / (r * r), q / (2.0 * r));
        if b <= 0.0 {
            return (lr / 2.0, s);
        }
        if a <= 0.0 || k * b / a > 2.0 * r {
            return (lr * grow, s);
        }
        let new_lr = (kappa * k * b / a).max(lr / 16.0).min(lr);
        let nrm = a.abs() * r + b.abs();
        s.phase = 1;
        s.ea = a / nrm;
        s.eb = b / nrm;
        s.em = b.abs() / nrm;
        return (new_lr, s);
    }
    if !fin {
        (s.period, s.skip, s.calm) = (1, 0, 0);
        if s.c > 1.0 {
            s.c = (s.c / 4.0).max(1.0);
            return (lr, s);
        }
        return (lr / 2.0, s);
    }
    if sd.abs() <= tol {
        s.c = (2.0 * s.c).min(64.0);
        (s.period, s.skip, s.calm) = (1, 0, 0);
        return (lr, s);
    }
    let (a, b) = (sd / (r * r), q / (2.0 * r));
    let nrm = a.abs() * r + b.abs();
    s.ea = 0.9 * s.ea + (1.0 - 0.9) * a / nrm;
    s.eb = 0.9 * s.eb + (1.0 - 0.9) * b / nrm;
    s.em = 0.9 * s.em + (1.0 - 0.9) * b.abs() / nrm;
    let target;
    if s.eb.abs() < 0.3 * s.em {
        target = lr;
    } else if s.ea > 0.0 && s.eb > 0.0 {
        target = kappa * k * s.eb / s.ea;
        s.c = (target / lr).clamp(1.0, 64.0);
    } else if s.eb > 0.0 {
        target = 4.0 * lr;
        s.c = (2.0 * s.c).min(64.0);
    } else {
        target = 0.25 * lr;
        s.c = 1.0;
    }
    let mut f = (target / lr).powf(0.5).clamp(0.5, 1.5);
    if f > 1.0 {
        f = f.min(if lp < l0 { r / lr } else { 1.0 });
    }
    if f.ln().abs() < 1.2f64.ln() {
        s.calm += 1;
        if s.calm >= 2 {
            s.period = (2 * s.period).min(4);
        }
    } else {
        (s.calm, s.period) = (0, 1);
    }
    s.skip = s.period - 1;
    (lr * f, s)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn digits(name: &str) -> PathBuf {
    root().join("models/digits").join(name)
}

fn run_bin(bin: &str, args: &[&str]) -> Output {
    require_ort();
    Command::new(bin)
        .args(args)
        .current_dir(root())
        .output()
        .expect("run binary")
}

fn ok(out: Output) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// gen-compile of the digits MLP with the adaptive controller and `extra` flags.
fn compile_digits(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        digits("mlp.onnx").to_string_lossy().into_owned(),
        "-o".into(),
        out.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(run_bin(env!("CARGO_BIN_EXE_gen-compile"), &args));
    out
}

fn scalar(state: &[(String, HostTensor)], name: &str) -> f64 {
    state
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no state input {name}"))
        .1
        .scalar_f64()
        .unwrap()
}

fn graph_state(state: &[(String, HostTensor)]) -> State {
    let i = |n: &str| scalar(state, n) as i64;
    State {
        phase: i("gen.phase"),
        n: i("gen.n"),
        ea: scalar(state, "gen.ea"),
        eb: scalar(state, "gen.eb"),
        em: scalar(state, "gen.em"),
        c: scalar(state, "gen.c"),
        period: i("gen.period"),
        skip: i("gen.skip"),
        calm: i("gen.calm"),
    }
}

fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
}

fn same_state(g: &State, r: &State) -> bool {
    (g.phase, g.n, g.period, g.skip, g.calm) == (r.phase, r.n, r.period, r.skip, r.calm)
        && close(g.ea, r.ea)
        && close(g.eb, r.eb)
        && close(g.em, r.em)
        && close(g.c, r.c)
}

/// Drives the compiled graph on fixed batches and checks lr, state and gating against the
/// scalar rule fed the graph's probe losses, step by step. Returns (probed steps, tracking
/// calls, skipped lazy steps).
fn parity(name: &str, extra: &[&str], kappa: f64, mu: f64, steps: u64) -> (usize, usize, usize) {
    let dir = scratch(name);
    let path = compile_digits(&dir, "train.onnx", extra);
    let mut s = TrainSession::open(&path, &TrainOptions::default()).expect("open");
    let lazy = s.lazy_freq().expect("GeN on");
    let mut data = Dataset::load(&digits("train.npz")).unwrap();
    data.conform(&s.data_specs()).unwrap();
    let rows = data.rows();
    let batch = |from: usize| -> Vec<usize> { (0..32).map(|i| (from + i) % rows).collect() };
    let state0 = s.state().unwrap();
    let mut lr = scalar(&state0, "gen.lr");
    let mut st = INIT;
    assert_eq!(graph_state(&state0), INIT, "initial values");
    let (mut probed, mut tracked, mut skipped_steps) = (0, 0, 0);
    for t in 0..steps {
        let (now, skipped) = gate(&st, t, lazy);
        assert_eq!(s.next_is_gen_step().unwrap(), now, "step {t}: runtime gate");
        let b = data.batch(&batch(32 * t as usize)).unwrap();
        let p = data.batch(&batch(32 * t as usize + 500)).unwrap();
        let res = s.step(&b, Some(&p), 1.0).expect("step");
        assert_eq!(res.gen_applied, Some(now), "step {t}: gen_applied");
        if now {
            let [lm, lp, l0] = res.probe_losses.unwrap();
            probed += 1;
            tracked += usize::from(st.phase == 1);
            let (new_lr, new_st) = rule(lr, st, lm, lp, l0, t, kappa, mu, lazy);
            lr = new_lr as f32 as f64; // the graph carries lr in float32
            st = new_st;
        } else if skipped {
            st.skip -= 1;
            skipped_steps += 1;
        }
        let g = s.state().unwrap();
        let glr = scalar(&g, "gen.lr");
        assert!(
            (glr - lr).abs() <= 2.0 * f32::EPSILON as f64 * lr,
            "step {t}: lr {glr} (graph) vs {lr} (rule)"
        );
        assert_eq!(
            res.lr,
            Some(glr),
            "step {t}: the applied lr is the carried one"
        );
        lr = glr;
        let gs = graph_state(&g);
        assert!(
            same_state(&gs, &st),
            "step {t}: state {gs:?} (graph) vs {st:?} (rule)"
        );
        st = gs;
    }
    (probed, tracked, skipped_steps)
}

#[test]
fn adamw_digits_matches_the_scalar_rule() {
    let (probed, tracked, skipped) = parity(
        "adaptive-parity-adamw",
        &["--gen-controller", "adaptive", "--lr", "1e-3"],
        0.5,
        0.0,
        120,
    );
    // the search probes the first 16 steps, then tracking calls, then settled skips
    assert!(probed >= 16 + 5, "probed {probed}");
    assert!(tracked >= 5, "tracking calls {tracked}");
    assert!(skipped >= 1, "skipped lazy steps {skipped}");
}

#[test]
fn momentum_digits_matches_the_scalar_rule() {
    let (probed, tracked, _) = parity(
        "adaptive-parity-momentum",
        &[
            "--gen-controller",
            "adaptive",
            "--optimizer",
            "momentum",
            "--lr",
            "1e-2",
            "--lazy-freq",
            "3",
        ],
        1.0,
        0.9,
        80,
    );
    assert!(
        probed >= 16 && tracked >= 3,
        "probed {probed}, tracking calls {tracked}"
    );
}

// ---------------------------------------------------------------------------------------------
// gen-train runs

fn train(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        model.to_string_lossy().into_owned(),
        "--data".into(),
        digits("train.npz").to_string_lossy().into_owned(),
        "--batch-size".into(),
        "32".into(),
        "--quiet".into(),
    ];
    if !extra.contains(&"--resume") {
        args.extend(["--out".into(), out.to_string_lossy().into_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_bin(env!("CARGO_BIN_EXE_gen-train"), &args)
}

#[test]
fn resume_is_exact_and_refuses_another_controller() {
    let dir = scratch("adaptive-resume");
    let model = compile_digits(&dir, "train.onnx", &["--gen-controller", "adaptive"]);
    let common = ["--steps", "80", "--scale", "linear", "--seed", "5"];
    let whole = dir.join("whole");
    ok(train(&model, &whole, &common));
    let split = dir.join("split");
    let first: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--stop-after", "40"])
        .collect();
    ok(train(&model, &split, &first));
    let split_s = split.to_string_lossy().into_owned();
    let resume: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--resume", &split_s])
        .collect();
    ok(train(&model, &split, &resume));
    let a = Checkpoint::load(&whole.join("checkpoint.bin")).unwrap();
    let b = Checkpoint::load(&split.join("checkpoint.bin")).unwrap();
    assert_eq!(a.steps, 80);
    assert!(
        a.state.iter().any(|(n, _)| n == "gen.ea"),
        "the controller state is checkpointed"
    );
    assert_eq!(
        a.state, b.state,
        "parameters, optimizer, lr and controller state bit for bit"
    );
    assert_eq!(a.probe_stream, b.probe_stream);
    let strip = |p: &Path| -> Vec<_> {
        read_records(&p.join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.step,
                    r.loss.to_bits(),
                    r.lr,
                    r.gen_applied,
                    r.probe_loss_plus,
                )
            })
            .collect()
    };
    assert_eq!(strip(&whole), strip(&split));

    // the paper controller's graph cannot continue this run
    let paper = compile_digits(&dir, "paper.onnx", &[]);
    let out = train(&paper, &split, &resume);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("adaptive GeN controller") && err.contains("paper controller"),
        "{err}"
    );
}

/// Trains 60 steps and returns the records, asserting every loss and lr is finite.
fn trains_finite(name: &str, extra: &[&str]) -> Vec<gen_runtime::MetricsRecord> {
    let dir = scratch(name);
    let mut flags = vec!["--gen-controller", "adaptive"];
    flags.extend(extra);
    let model = compile_digits(&dir, "train.onnx", &flags);
    let out = dir.join("run");
    ok(train(&model, &out, &["--steps", "60"]));
    let records = read_records(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(records.len(), 60);
    for r in &records {
        assert!(
            r.loss.is_finite(),
            "{name}: step {} loss {}",
            r.step,
            r.loss
        );
        let lr = r.lr.unwrap();
        assert!(
            lr.is_finite() && lr > 0.0,
            "{name}: step {} lr {lr}",
            r.step
        );
    }
    records
}

#[test]
fn lazy_freq_one_and_seven_and_the_current_batch_train() {
    let applied = |rs: &[gen_runtime::MetricsRecord]| -> Vec<bool> {
        rs.iter().map(|r| r.gen_applied.unwrap()).collect()
    };
    let one = trains_finite("adaptive-lazy1", &["--lazy-freq", "1"]);
    assert!(applied(&one)[0]);
    let seven = trains_finite("adaptive-lazy7", &["--lazy-freq", "7"]);
    // the search probes every step whatever lazy_freq is (from step 0, at most 16 steps);
    // afterwards only lazy steps probe
    let a7 = applied(&seven);
    assert!(a7[0] && a7[1], "{a7:?}");
    for (i, &a) in a7.iter().enumerate().skip(16) {
        assert!(
            !a || (i + 1) % 7 == 0,
            "step {i} probed off the lazy schedule"
        );
    }
    let current = trains_finite("adaptive-current", &["--probe-batch", "current"]);
    assert!(applied(&current)[0]);
}

// ---------------------------------------------------------------------------------------------
// Non-finite probe losses

#[test]
fn non_finite_probes_never_reach_the_state() {
    let opts = CompileOptions {
        optimizer: OptimizerKind::Sgd,
        lr: 1e-3,
        weight_decay: Some(0.0),
        lazy_freq: 2,
        controller: ControllerKind::Adaptive,
        ..CompileOptions::default()
    };
    let (mut m, cx) = quadratic(opts, &[1.0, 2.0, 4.0], &[1.0, 1.0, 1.0], 1.0);
    run_train_passes(&mut m, cx);
    let dir = scratch("adaptive-nan");
    let path = dir.join("train.onnx");
    save(&m, &path);
    let mut s = TrainSession::open(&path, &TrainOptions::default()).expect("open");
    // data far out: every loss overflows float64, so every probe is non-finite
    let x = |v: f64| {
        vec![(
            "x".to_string(),
            f64_tensor(&[2, 3], &[v, 0.5, 0.0, v, 0.5, 1.0]),
        )]
    };
    let mut lr_prev = 1e-3f32 as f64;
    let mut non_finite = 0;
    for t in 0..30u64 {
        let res = s.step(&x(1e200), Some(&x(2e200)), 1.0).expect("step");
        let probes = res.probe_losses.unwrap();
        let bad = probes.iter().any(|p| !p.is_finite());
        let g = s.state().unwrap();
        let st = graph_state(&g);
        let lr = scalar(&g, "gen.lr");
        assert!(lr.is_finite() && lr > 0.0, "step {t}: lr {lr}");
        // averages untouched: no call was ever finite
        assert_eq!(
            (st.ea, st.eb, st.em, st.c),
            (0.0, 0.0, 0.0, 1.0),
            "step {t}: {st:?}"
        );
        if bad && res.gen_applied == Some(true) {
            non_finite += 1;
            let factor = if st.phase == 1 && t >= 16 { 0.5 } else { 0.25 };
            assert_eq!(lr, (lr_prev * factor) as f32 as f64, "step {t}");
        }
        assert_eq!(
            st.phase,
            i64::from(t >= 15),
            "step {t}: search ends after 16 calls"
        );
        lr_prev = lr;
    }
    assert!(non_finite >= 20, "only {non_finite} non-finite probe steps");
}

#[test]
fn unknown_controller_and_reference_compat_are_refused() {
    let dir = scratch("adaptive-cli");
    let out = dir.join("x.onnx");
    let (model, out) = (digits("mlp.onnx"), out.to_string_lossy().into_owned());
    let model = model.to_string_lossy().into_owned();
    let compile = |extra: &[&str]| {
        let mut args = vec![model.as_str(), "-o", out.as_str()];
        args.extend(extra);
        run_bin(env!("CARGO_BIN_EXE_gen-compile"), &args)
    };
    let bad = compile(&["--gen-controller", "fancy"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("fancy") && err.contains("paper, adaptive"),
        "{err}"
    );
    let bad = compile(&["--gen-controller", "adaptive", "--gen-compat", "reference"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("--gen-compat default only"), "{err}");
}
