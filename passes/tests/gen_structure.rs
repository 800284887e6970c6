//! Structure of the optimizer and GeN stages on small hand-built graphs (no runtime needed):
//! what the If's branches contain, that weights are captured and never copied, names, state,
//! and the typed errors.

use gen_passes::ir::{
    Attr, Builder, DType, Dim, Graph, Model, Op, Tensor, TensorType, Type, ValueDef,
};
use gen_passes::options::{GenCompat, OptimizerKind, ProbeBatch};
use gen_passes::pipeline::contract::{self, Controls, StateRole};
use gen_passes::pipeline::{cleanup_passes, train, Context, PassManager};
use gen_passes::CompileOptions;

/// `L = mean((x·W + b − 1)²)` with a hand-written gradient; W is 64×16 so a copy would show.
fn model(options: CompileOptions) -> (Model, Context) {
    let mut m = Model::new(Graph::default(), 17);
    let g = &mut m.graph;
    let x = g.add_input(
        "x",
        Type::Tensor(TensorType::new(
            DType::F32,
            Some(vec![Dim::Sym("batch".into()), Dim::Fixed(64)]),
        )),
    );
    let mut params = Vec::new();
    for (name, dims) in [("W", vec![64, 16]), ("b", vec![16])] {
        let n: i64 = dims.iter().product();
        let v = g.add_initializer(name, Tensor::from_f32(&dims, &vec![0.01; n as usize]));
        g.value_mut(v).def = ValueDef::Input;
        g.inputs.push(v);
        params.push(v);
    }
    let mut b = Builder::new(g, 17, "m/");
    let h = b.matmul(x, params[0]);
    let y = b.add(h, params[1]);
    let one = b.scalar(DType::F32, 1.0);
    let r = b.sub(y, one);
    let sq = b.mul(r, r);
    let loss = b.reduce_mean(sq, &[0, 1], false);
    // dL/dy = 2r / numel; dW = xᵀ·dy, db = Σ_batch dy
    let count = b.shape_of(r);
    let count = b.op(Op::ReduceProd, &[count], vec![("keepdims", Attr::Int(0))]);
    let count = b.cast(count, DType::F32);
    let two_r = b.scale(r, 2.0);
    let dy = b.div(two_r, count);
    let xt = b.transpose(x, &[1, 0]);
    let dw = b.matmul(xt, dy);
    let db = b.reduce_sum(dy, &[0], false);
    let cx = Context {
        options,
        loss: Some(loss),
        params,
        grads: vec![dw, db],
        model_inputs: vec!["x".into()],
        ..Context::default()
    };
    (m, cx)
}

fn compile(options: CompileOptions) -> gen_passes::Result<Model> {
    let (mut m, mut cx) = model(options);
    let mut passes = train::passes(&cx)?;
    passes.extend(cleanup_passes());
    PassManager::new(passes).run(&mut m, &mut cx)?;
    Ok(m)
}

fn if_node(g: &Graph) -> (&Graph, &Graph) {
    let n = g
        .order()
        .iter()
        .copied()
        .find(|&n| g.node(n).op == Op::If)
        .expect("an If node");
    let node = g.node(n);
    let branch = |k: &str| match node.attr(k) {
        Some(Attr::Graph(sg)) => sg.as_ref(),
        _ => panic!("no {k}"),
    };
    (branch("then_branch"), branch("else_branch"))
}

fn opts() -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::Adam,
        ..CompileOptions::default()
    }
}

#[test]
fn probes_capture_weights_and_never_copy_them() {
    let m = compile(opts()).unwrap();
    let (then, els) = if_node(&m.graph);
    // nothing in the branches holds a tensor bigger than a scalar or a 3-vector
    for sg in [then, els] {
        assert_eq!(sg.initializers().count(), 0);
        for &n in sg.order() {
            if let Some(Attr::Tensor(t)) = sg.node(n).attr("value") {
                assert!(t.numel() <= 3, "branch holds a {:?} constant", t.dims);
            }
        }
        for o in sg.outer_values() {
            assert!(
                m.graph.by_name(sg.name(o)).is_some(),
                "capture '{}' resolves",
                sg.name(o)
            );
        }
    }
    let captured: Vec<&str> = then.outer_values().map(|o| then.name(o)).collect();
    for name in ["W", "b", "gen.lr", "gen.scale", "probe.x"] {
        assert!(
            captured.contains(&name),
            "then-branch captures {name}: {captured:?}"
        );
    }
    // three clones of the forward pass, suffixed
    for suffix in [".gen_m", ".gen_p", ".gen_0"] {
        let clones = then
            .order()
            .iter()
            .filter(|&&n| then.node(n).op == Op::MatMul && then.node(n).name.ends_with(suffix))
            .count();
        assert_eq!(clones, 1, "one MatMul{suffix}");
    }
    // exactly one copy of each weight in the file: the parameter's default
    let inits: Vec<&str> = m
        .graph
        .initializers()
        .map(|(v, _)| m.graph.name(v))
        .collect();
    assert_eq!(inits.iter().filter(|n| **n == "W").count(), 1);
    assert_eq!(then.outputs.len(), 3);
    assert_eq!(els.outputs.len(), 3);
}

#[test]
fn probe_batch_current_clones_two_forwards() {
    let m = compile(CompileOptions {
        probe_batch: ProbeBatch::Current,
        ..opts()
    })
    .unwrap();
    let (then, _) = if_node(&m.graph);
    let matmuls = then
        .order()
        .iter()
        .filter(|&&n| then.node(n).op == Op::MatMul)
        .count();
    assert_eq!(matmuls, 2);
    assert!(m.graph.by_name("probe.x").is_none());
    assert!(contract::read(&m).unwrap().probe_data.is_empty());
}

#[test]
fn reference_compat_advances_state_in_the_branch() {
    let m = compile(CompileOptions {
        compat: GenCompat::Reference,
        ..opts()
    })
    .unwrap();
    let (then, els) = if_node(&m.graph);
    // lr, applied, probe losses, then per parameter: direction, m, v
    assert_eq!(then.outputs.len(), 3 + 2 * 3);
    assert_eq!(els.outputs.len(), then.outputs.len());
    let c = contract::read(&m).unwrap();
    let opt_step = c
        .state
        .iter()
        .find(|s| s.input == "opt.step")
        .expect("opt.step");
    assert_eq!(opt_step.role, StateRole::Optimizer);
    assert_eq!(c.config["compat"], "reference");
    // SGD has no step count to carry
    let m = compile(CompileOptions {
        compat: GenCompat::Reference,
        optimizer: OptimizerKind::Momentum,
        ..opts()
    })
    .unwrap();
    assert!(m.graph.by_name("opt.step").is_none());
}

#[test]
fn gen_off_has_no_branch_and_no_controls() {
    let m = compile(CompileOptions {
        gen: false,
        ..opts()
    })
    .unwrap();
    assert!(m
        .graph
        .order()
        .iter()
        .all(|&n| m.graph.node(n).op != Op::If));
    let c = contract::read(&m).unwrap();
    assert!(c.controls == Controls::default() && c.probe_data.is_empty());
    let names: Vec<&str> = c.state.iter().map(|s| s.input.as_str()).collect();
    assert_eq!(
        names,
        vec!["W", "b", "opt.m.W", "opt.v.W", "opt.m.b", "opt.v.b", "gen.step", "gen.lr"]
    );
}

#[test]
fn slots_per_optimizer() {
    for (kind, slots) in [
        (OptimizerKind::Sgd, vec![]),
        (OptimizerKind::Momentum, vec!["opt.buf.W", "opt.buf.b"]),
        (
            OptimizerKind::AdamW,
            vec!["opt.m.W", "opt.v.W", "opt.m.b", "opt.v.b"],
        ),
    ] {
        let m = compile(CompileOptions {
            optimizer: kind,
            ..opts()
        })
        .unwrap();
        let c = contract::read(&m).unwrap();
        let got: Vec<&str> = c
            .state
            .iter()
            .filter(|s| s.role == StateRole::Optimizer)
            .map(|s| s.input.as_str())
            .collect();
        assert_eq!(got, slots, "{kind:?}");
        for s in &c.state {
            let v = m.graph.by_name(&s.input).unwrap();
            let init = m.graph.value(v).init.as_ref().expect("default");
            if s.role == StateRole::Optimizer {
                assert!(init.to_f64_vec().unwrap().iter().all(|&x| x == 0.0));
            }
        }
    }
}

#[test]
fn invalid_settings_are_typed_errors() {
    let e = compile(CompileOptions {
        optimizer: OptimizerKind::Momentum,
        nesterov: true,
        dampening: 0.1,
        ..opts()
    })
    .unwrap_err();
    assert!(e.to_string().contains("Nesterov"), "{e}");
    let e = compile(CompileOptions {
        lazy_freq: 0,
        ..opts()
    })
    .unwrap_err();
    assert!(e.to_string().contains("lazy_freq"), "{e}");
    let (mut m, mut cx) = model(opts());
    cx.loss = None;
    let mut pm = PassManager::new(train::passes(&cx).unwrap());
    let e = pm.run(&mut m, &mut cx).unwrap_err();
    assert!(e.to_string().contains("optimizer"), "{e}");
}
