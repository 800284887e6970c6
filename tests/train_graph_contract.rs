//! The emitted train graph as a whole: the contract in its metadata, only default-domain
//! operators, carried buffers (default vs reference-compat probes), `--gen off`, external data.

mod gen_support;

use gen_passes::ir::Op;
use gen_passes::onnx::{ExportOptions, ExternalData};
use gen_passes::options::{GenCompat, OptimizerKind};
use gen_passes::pipeline::contract::{self, Controls, GraphKind, Outputs, StateRole};
use gen_passes::CompileOptions;
use gen_runtime::HostTensor;
use gen_support::*;

fn opts(compat: GenCompat, gen: bool) -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::Momentum,
        momentum: 0.9,
        lr: 0.1,
        weight_decay: Some(0.0),
        lazy_freq: 2,
        gen,
        compat,
        ..CompileOptions::default()
    }
}

fn x(rows: &[[f32; 2]]) -> Vec<(String, HostTensor)> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    vec![("x".into(), f32_tensor(&[rows.len(), 2], &flat))]
}

#[test]
fn contract_lists_every_input_and_output() {
    let (mut m, cx) = running_mean_model(opts(GenCompat::Default, true), &[1.0, 2.0], &[1.0, -1.0]);
    run_train_passes(&mut m, cx);
    let c = contract::read(&m).expect("gen.contract");
    assert_eq!(c.version, 1);
    assert_eq!(c.kind, GraphKind::Train);
    assert_eq!(c.loss, "loss");
    assert_eq!(c.data, vec!["x"]);
    assert_eq!(c.probe_data.get("probe.x").map(String::as_str), Some("x"));
    let state: Vec<(&str, Option<&str>, StateRole)> = c
        .state
        .iter()
        .map(|s| (s.input.as_str(), s.output.as_deref(), s.role))
        .collect();
    assert_eq!(
        state,
        vec![
            ("w", Some("w.next"), StateRole::Param),
            ("r", Some("r.next"), StateRole::Buffer),
            ("opt.buf.w", Some("opt.buf.w.next"), StateRole::Optimizer),
            ("gen.step", Some("gen.step.next"), StateRole::Step),
            ("gen.lr", Some("gen.lr.next"), StateRole::Lr),
        ]
    );
    assert_eq!(c.controls.scale.as_deref(), Some("gen.scale"));
    assert_eq!(c.controls.lazy_freq.as_deref(), Some("gen.lazy_freq"));
    assert_eq!(c.outputs.lr.as_deref(), Some("gen.lr.next"));
    assert_eq!(c.outputs.gen_applied.as_deref(), Some("gen.applied"));
    assert_eq!(c.outputs.probe_losses.as_deref(), Some("gen.probe_losses"));
    assert_eq!(c.config["optimizer"], "momentum");
    assert_eq!(c.config["lazy_freq"], 2);
    assert_eq!(c.config["compat"], "default");
    // inputs: every state input has an initializer default of the same name; outputs exist
    let g = &m.graph;
    for s in &c.state {
        let v = g.by_name(&s.input).expect("state input");
        assert!(g.inputs.contains(&v), "{} is a graph input", s.input);
        assert!(g.value(v).init.is_some(), "{} has a default", s.input);
        let o = g
            .by_name(s.output.as_deref().unwrap())
            .expect("state output");
        assert!(g.outputs.contains(&o));
    }
    for control in [&c.controls.scale, &c.controls.lazy_freq]
        .into_iter()
        .flatten()
    {
        let v = g.by_name(control).unwrap();
        assert!(g.inputs.contains(&v) && g.value(v).init.is_some());
    }
    let p = g.by_name("probe.x").unwrap();
    assert!(g.inputs.contains(&p) && g.value(p).init.is_none());
    // only standard default-domain operators, no training ops
    assert_eq!(m.opsets.keys().collect::<Vec<_>>(), vec![""]);
    for node in all_nodes(&m.graph) {
        assert_eq!(
            node.op.domain(),
            "",
            "{} is not a default-domain op",
            node.op
        );
        assert!(
            !matches!(node.op, Op::Other { .. }),
            "unexpected op {}",
            node.op
        );
    }
}

/// Running statistics: the training forward updates them once per step; default-mode probes
/// leave them alone, reference-compat probes update them three times (w − Δ, w, w + Δ).
#[test]
fn buffers_default_vs_reference_probes() {
    let train = [[1.0, 2.0], [3.0, 4.0]]; // mean (2, 3)
    let probe = [[10.0, 0.0], [20.0, 0.0]]; // mean (15, 0)
    for compat in [GenCompat::Default, GenCompat::Reference] {
        let (mut m, cx) = running_mean_model(opts(compat, true), &[1.0, 2.0], &[1.0, -1.0]);
        run_train_passes(&mut m, cx);
        let dir = scratch(&format!("train-graph-buffers-{compat:?}"));
        let path = dir.join("train.onnx");
        save(&m, &path);
        let mut s = open(&path);
        // step 0: no GeN
        let r0 = s.step(&x(&train), Some(&x(&probe)), 1.0).unwrap();
        assert_eq!(r0.gen_applied, Some(false));
        let after0 = state_f64(&s, "r");
        let want0 = [0.2, 0.3];
        for i in 0..2 {
            assert!(
                (after0[i] - want0[i]).abs() < 1e-6,
                "{compat:?}: {after0:?}"
            );
        }
        // step 1: GeN
        let r1 = s.step(&x(&train), Some(&x(&probe)), 1.0).unwrap();
        assert_eq!(r1.gen_applied, Some(true));
        let after1 = state_f64(&s, "r");
        let mut want: Vec<f64> = (0..2)
            .map(|i| 0.9 * want0[i] + 0.1 * [2.0, 3.0][i])
            .collect();
        if compat == GenCompat::Reference {
            for _ in 0..3 {
                want = (0..2)
                    .map(|i| 0.9 * want[i] + 0.1 * [15.0, 0.0][i])
                    .collect();
            }
        }
        for i in 0..2 {
            assert!(
                (after1[i] - want[i]).abs() < 1e-5,
                "{compat:?}: {after1:?} vs {want:?}"
            );
        }
    }
}

/// Reference compat advances the momentum buffer twice on GeN steps (same gradient) and
/// applies the direction after the second advance; default mode advances it once.
#[test]
fn reference_compat_advances_optimizer_twice() {
    let train = [[1.0, 2.0], [3.0, 4.0]];
    for compat in [GenCompat::Default, GenCompat::Reference] {
        let (mut m, cx) = running_mean_model(opts(compat, true), &[1.0, 2.0], &[1.0, -1.0]);
        run_train_passes(&mut m, cx);
        let dir = scratch(&format!("train-graph-twice-{compat:?}"));
        let path = dir.join("train.onnx");
        save(&m, &path);
        let mut s = open(&path);
        let mut w = vec![1.0f64, -1.0];
        let mut buf = vec![0.0f64; 2];
        for t in 0..4 {
            let r = s.step(&x(&train), Some(&x(&train)), 1.0).unwrap();
            let gen = r.gen_applied.unwrap();
            let g: Vec<f64> = (0..2).map(|i| [1.0, 2.0][i] * w[i]).collect(); // mean(y) = 0
            let advances = if gen && compat == GenCompat::Reference {
                2
            } else {
                1
            };
            for k in 0..advances {
                for i in 0..2 {
                    buf[i] = if t == 0 && k == 0 {
                        g[i]
                    } else {
                        0.9 * buf[i] + g[i]
                    };
                }
            }
            let lr = r.lr.unwrap();
            for i in 0..2 {
                w[i] -= lr * buf[i];
            }
            let wg = state_f64(&s, "w");
            let bg = state_f64(&s, "opt.buf.w");
            for i in 0..2 {
                assert!(
                    (wg[i] - w[i]).abs() < 1e-5,
                    "{compat:?} step {t}: w {wg:?} vs {w:?}"
                );
                assert!(
                    (bg[i] - buf[i]).abs() < 1e-5,
                    "{compat:?} step {t}: buf {bg:?} vs {buf:?}"
                );
            }
        }
    }
}

#[test]
fn gen_off_is_a_plain_optimizer_step() {
    let (mut m, cx) =
        running_mean_model(opts(GenCompat::Default, false), &[1.0, 2.0], &[1.0, -1.0]);
    run_train_passes(&mut m, cx);
    let c = contract::read(&m).unwrap();
    assert!(c.probe_data.is_empty() && c.controls == Controls::default());
    let only_lr = Outputs {
        lr: Some("gen.lr.next".into()),
        ..Outputs::default()
    };
    assert_eq!(c.outputs, only_lr);
    assert_eq!(c.config["gen"], false);
    assert!(all_nodes(&m.graph).iter().all(|n| n.op != Op::If));
    let dir = scratch("train-graph-gen-off");
    let path = dir.join("train.onnx");
    save(&m, &path);
    let mut s = open(&path);
    for _ in 0..3 {
        let r = s.step(&x(&[[1.0, 2.0], [3.0, 4.0]]), None, 1.0).unwrap();
        assert_eq!(r.gen_applied, None);
        assert_eq!(r.lr, Some(0.1f32 as f64));
    }
}

/// External data: the same graph with every tensor in `train.onnx.data` trains identically.
#[test]
fn external_data_trains_identically() {
    let (mut m, cx) = running_mean_model(opts(GenCompat::Default, true), &[1.0; 300], &[0.5; 300]);
    run_train_passes(&mut m, cx);
    let dir = scratch("train-graph-external");
    let inline = dir.join("inline.onnx");
    let ext_dir = dir.join("ext");
    std::fs::create_dir_all(&ext_dir).unwrap();
    let external = ext_dir.join("train.onnx");
    save(&m, &inline);
    let opts = ExportOptions {
        external: ExternalData::Always,
        ..ExportOptions::default()
    };
    gen_passes::onnx::save(&m, &external, &opts).unwrap();
    assert!(ext_dir.join("train.onnx.data").exists());
    assert!(
        std::fs::metadata(&external).unwrap().len() < std::fs::metadata(&inline).unwrap().len()
    );
    let batch: Vec<f32> = (0..600).map(|i| (i % 7) as f32 * 0.1).collect();
    let feed = vec![("x".to_string(), f32_tensor(&[2, 300], &batch))];
    let mut a = open(&inline);
    let mut b = open(&external);
    for _ in 0..4 {
        let ra = a.step(&feed, Some(&feed), 1.0).unwrap();
        let rb = b.step(&feed, Some(&feed), 1.0).unwrap();
        assert_eq!(ra, rb);
    }
    assert_eq!(state_f64(&a, "w"), state_f64(&b, "w"));
}
