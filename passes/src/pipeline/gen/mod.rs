//! The GeN learning-rate controller (SPEC section 2) as graph nodes.
//!
//! Adds: the controls `gen.scale` (float32 scalar, default 1) and `gen.lazy_freq` (int64
//! scalar, default `--lazy-freq`), the probe inputs `probe.<data input>` (with
//! `--probe-batch next`), and one `If` node gated on `(step + 1) % lazy_freq == 0` (never when
//! `lazy_freq <= 0`). Its then-branch
//! 1. forms `w − Δ = w + lr·d` and `w + Δ = w − lr·d` from the optimizer's direction `d`,
//! 2. clones the forward + loss region twice (three times with a separate probe batch) with the
//!    parameters (and data inputs) substituted: cloned values get the suffixes `.gen_m`,
//!    `.gen_p`, `.gen_0`; weights, constants and everything the substitution does not change
//!    are captured from the main graph, never copied;
//! 3. hands the three probe losses to the controller (`controller.rs`, a [`GenController`]),
//!    today the paper's parabola rule: fit in float64, guards, `lr ← 0.9·lr + 0.1·scale·clip(…)`.
//!
//! The else-branch passes lr (and the controller's state) through. The `If` outputs the lr the
//! step applies, `gen.applied` (bool) and `gen.probe_losses` = [L(w − Δ), L(w + Δ), L(w)]
//! (zeros on other steps).
//!
//! Default mode: the probes read each lowered dropout's input where the training forward reads
//! its output (`cx.dropouts`: dropout off), and BatchNorm uses batch statistics without
//! updating running statistics (only the loss region is cloned).
//! Reference mode (`--gen-compat reference`, gen-optim 0.1.1): the probes run in train mode
//! (fresh dropout masks; running statistics updated by each probe, in the reference's order
//! w − Δ, w, w + Δ), and the then-branch advances the optimizer state a second time with the
//! same gradient; the step applies the direction after that second advance.
//!
//! Files: `clone.rs` the region cloning, `controller.rs` the lr rule, `compat.rs` the second
//! advance of reference compat, `layout.rs` the named layout of the `If`'s outputs (written
//! by both branches and read back here by name; a controller's own carried state and outputs
//! get slots there too).
//!
//! Needs: `cx.train` from the optimizer pass, `cx.loss`. Guarantees: `cx.train.lr_applied` is
//! the lr to apply; with reference compat the directions, slots and buffers to apply are the
//! `If`'s outputs.

pub mod adaptive;
pub mod clone;
pub mod compat;
pub mod controller;
pub mod layout;

use self::adaptive::Adaptive;
use self::clone::{capture, clone_region, distinct_outputs};
use self::controller::{GenController, Paper, ProbeLosses, RuleInputs, Schedule};
use self::layout::{if_layout, probe_roots, GenOut, GenShape, ProbeRoot};
use crate::error::{Error, Result};
use crate::ir::{Attr, Builder, DType, Graph, Model, Op, Tensor, ValueDef, ValueId};
use crate::options::{CompileOptions, ControllerKind, GenCompat, ProbeBatch};
use crate::pipeline::build::{cast_to, reserved_prefix, state_input};
use crate::pipeline::context::{ControllerState, GenPlan, ProbeInput, TrainPlan};
use crate::pipeline::layout::LayoutError;
use crate::pipeline::{Context, Pass};
use std::collections::HashMap;

/// Why the GeN stage cannot build its controller.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("GeN needs the optimizer stage to run first")]
    NoPlan,
    #[error("GeN needs a loss")]
    NoLoss,
    #[error("the loss '{0}' is not a float scalar")]
    BadLoss(String),
    #[error("data input '{0}' is not a graph input")]
    MissingData(String),
    #[error("lazy_freq must be at least 1, got {0}")]
    LazyFreq(i64),
    #[error("--gen-controller {0} is defined for --gen-compat default only")]
    ControllerCompat(&'static str),
    #[error("the GeN `If`: {0}")]
    Layout(#[from] LayoutError),
}

/// The controller the options ask for.
pub fn select(options: &CompileOptions) -> Box<dyn GenController> {
    match options.controller {
        ControllerKind::Paper => Box::new(Paper),
        ControllerKind::Adaptive => Box::new(Adaptive::new(options)),
    }
}

/// Reads that make a probe deterministic: each lowered dropout's output read as its input.
fn deterministic_aliases(cx: &Context) -> HashMap<ValueId, ValueId> {
    cx.dropouts.iter().map(|d| (d.output, d.input)).collect()
}

/// The data inputs (model inputs and labels) by name, as graph inputs of `g`.
fn data_inputs(g: &Graph, cx: &Context) -> Result<Vec<ValueId>, GenError> {
    let mut names: Vec<String> = cx.model_inputs.clone();
    for &l in &cx.label_inputs {
        let n = g.name(l).to_string();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
        .iter()
        .map(|n| {
            g.by_name(n)
                .filter(|&v| g.value(v).def == ValueDef::Input)
                .ok_or_else(|| GenError::MissingData(n.clone()))
        })
        .collect()
}

/// The `gen` pass.
pub struct GenPass;

impl Pass for GenPass {
    fn name(&self) -> &'static str {
        "gen"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("gen", e);
        if !cx.options.gen {
            return Ok(false);
        }
        if cx.options.lazy_freq < 1 {
            return Err(err(GenError::LazyFreq(cx.options.lazy_freq)));
        }
        let loss = cx.loss.ok_or_else(|| err(GenError::NoLoss))?;
        let data = data_inputs(&m.graph, cx).map_err(err)?;
        if cx.options.controller != ControllerKind::Paper && cx.options.compat != GenCompat::Default
        {
            return Err(err(GenError::ControllerCompat(
                cx.options.controller.as_str(),
            )));
        }
        let mut plan = cx.train.take().ok_or_else(|| err(GenError::NoPlan))?;
        let controller = select(&cx.options);
        let result = build(m, cx, &mut plan, controller.as_ref(), loss, &data);
        cx.train = Some(plan);
        let notes = result.map_err(err)?;
        cx.config.extend(notes);
        Ok(true)
    }
}

fn build(
    m: &mut Model,
    cx: &Context,
    plan: &mut TrainPlan,
    controller: &dyn GenController,
    loss: ValueId,
    data: &[ValueId],
) -> Result<serde_json::Map<String, serde_json::Value>, GenError> {
    let opset = m.opset();
    let opts = &cx.options;
    let compat = opts.compat == GenCompat::Reference;
    let g = &mut m.graph;
    let loss_dt = g.ty(loss).dtype().unwrap_or(DType::F32);
    if !loss_dt.is_float() || g.ty(loss).rank().is_some_and(|r| r != 0) {
        return Err(GenError::BadLoss(g.name(loss).to_string()));
    }

    // controls, the controller's carried state and probe inputs
    let scale = {
        let n = g.fresh_name("gen.scale");
        state_input(g, &n, Tensor::scalar(DType::F32, 1.0))
    };
    let lazy_freq = {
        let n = g.fresh_name("gen.lazy_freq");
        state_input(g, &n, Tensor::from_i64(&[], &[opts.lazy_freq]))
    };
    let declared = controller.state();
    let state_inputs: Vec<ValueId> = declared
        .iter()
        .map(|s| {
            let n = g.fresh_name(s.name);
            state_input(g, &n, s.init.clone())
        })
        .collect();
    let output_names = controller.outputs();
    let mut probe_inputs = Vec::new();
    if opts.probe_batch == ProbeBatch::Next {
        for &d in data {
            let data_name = g.name(d).to_string();
            let n = g.fresh_name(&format!("probe.{data_name}"));
            let ty = g.ty(d).clone();
            let input = g.add_input(&n, ty);
            probe_inputs.push(ProbeInput {
                input,
                data: d,
                data_name,
            });
        }
    }

    // the condition (the paper's: (step + 1) % lazy_freq == 0 and lazy_freq > 0)
    let main_prefix = reserved_prefix(g, "gen/");
    let schedule = Schedule {
        step: plan.step,
        lazy_freq,
    };
    let cond = {
        let mut b = Builder::new(g, opset, &main_prefix);
        controller.gate(&mut b, schedule, &state_inputs)
    };

    // reference compat: running statistics updated by every probe forward, in the reference's
    // order (w − Δ, w, w + Δ), starting from the training forward's update
    let buffers: Vec<(ValueId, ValueId)> = if compat { cx.buffers.clone() } else { vec![] };
    let layout = if_layout(
        plan,
        GenShape {
            compat,
            buffers: buffers.len(),
            controller_state: declared.len(),
            controller_outputs: output_names.len(),
        },
    );

    // ----- then: probes, controller -----
    // subgraph-local names get their own prefix, free in the main graph, so captures by name
    // can never resolve to a local value
    let prefix = reserved_prefix(g, "gen.probe/");
    let src: &Graph = g;
    let mut tg = Graph::new("gen_probe");
    let lr_t = capture(src, &mut tg, plan.lr);
    let scale_t = capture(src, &mut tg, scale);
    let state_t: Vec<ValueId> = state_inputs
        .iter()
        .map(|&s| capture(src, &mut tg, s))
        .collect();
    let schedule_t = controller.reads_schedule().then(|| Schedule {
        step: capture(src, &mut tg, plan.step),
        lazy_freq: capture(src, &mut tg, lazy_freq),
    });
    let mut w_minus = HashMap::new(); // w − Δ = w + r·d (r = lr for the paper rule)
    let mut w_plus = HashMap::new(); // w + Δ = w − r·d
    {
        let pairs: Vec<(ValueId, ValueId, ValueId)> = plan
            .params
            .iter()
            .map(|p| (p.w, capture(src, &mut tg, p.w), capture(src, &mut tg, p.d)))
            .collect();
        let mut b = Builder::new(&mut tg, opset, &prefix);
        let radius = controller.radius(&mut b, lr_t, &state_t);
        for (w_src, w, d) in pairs {
            let dt = b.dtype(w);
            let lr_p = cast_to(&mut b, radius, dt);
            let step = b.mul(lr_p, d);
            w_minus.insert(w_src, b.add(w, step));
            w_plus.insert(w_src, b.sub(w, step));
        }
    }
    let mut data_subst = HashMap::new();
    for p in &probe_inputs {
        data_subst.insert(p.data, capture(src, &mut tg, p.input));
    }
    let mut chain: Vec<ValueId> = buffers
        .iter()
        .map(|&(_, next)| capture(src, &mut tg, next))
        .collect();
    // default mode: probes without dropout (a lowered dropout's output read as its input)
    let alias = if compat {
        HashMap::new()
    } else {
        deterministic_aliases(cx)
    };
    let roots_layout = probe_roots(buffers.len());
    let roots = roots_layout.arrange(|r| match r {
        ProbeRoot::Loss => loss,
        ProbeRoot::Buffer(i) => buffers[i].1,
    });
    let probe = |tg: &mut Graph,
                 params: &HashMap<ValueId, ValueId>,
                 chain: &mut Vec<ValueId>,
                 suffix: &str|
     -> Result<ValueId, LayoutError> {
        let mut subst = data_subst.clone();
        subst.extend(params.iter().map(|(&k, &v)| (k, v)));
        for (&(input, _), &cur) in buffers.iter().zip(chain.iter()) {
            subst.insert(input, cur);
        }
        let out = clone_region(src, tg, &roots, &subst, &alias, &prefix, suffix);
        for (i, c) in chain.iter_mut().enumerate() {
            *c = roots_layout.get(&out, ProbeRoot::Buffer(i))?;
        }
        roots_layout.get(&out, ProbeRoot::Loss)
    };
    let minus = probe(&mut tg, &w_minus, &mut chain, ".gen_m")?;
    let zero = match opts.probe_batch {
        ProbeBatch::Next => probe(&mut tg, &HashMap::new(), &mut chain, ".gen_0")?,
        ProbeBatch::Current => capture(src, &mut tg, loss),
    };
    let plus = probe(&mut tg, &w_plus, &mut chain, ".gen_p")?;
    let losses = ProbeLosses { minus, plus, zero };

    let second = if compat {
        compat::second_advance(src, &mut tg, plan, opset, &prefix)
    } else {
        Vec::new()
    };

    let (decision, losses_vec, applied) = {
        let mut b = Builder::new(&mut tg, opset, &prefix);
        let inputs = RuleInputs {
            lr: lr_t,
            scale: scale_t,
            losses,
            state: state_t,
            schedule: schedule_t,
        };
        let decision = controller.decide(&mut b, &inputs);
        let losses_vec = probe_loss_vector(&mut b, &losses);
        let applied = b.constant(Tensor::from_bool(&[], &[true]));
        (decision, losses_vec, applied)
    };
    let then_outs = layout.arrange(|k| match k {
        GenOut::Lr => decision.lr,
        GenOut::Applied => applied,
        GenOut::ProbeLosses => losses_vec,
        GenOut::Direction(i) => second[i].d,
        GenOut::OptSlot { param, slot } => second[param].slots[slot],
        GenOut::Buffer(i) => chain[i],
        GenOut::ControllerState(k) => decision.state[k],
        GenOut::ControllerOutput(k) => decision.outputs[k],
    });
    tg.outputs = {
        let mut b = Builder::new(&mut tg, opset, &prefix);
        distinct_outputs(&mut b, then_outs)
    };

    // ----- else: pass everything through -----
    let mut eg = Graph::new("gen_skip");
    {
        // the controller's state on steps without probes (nothing captured without state)
        let skipped_state = if declared.is_empty() {
            Vec::new()
        } else {
            let state_e: Vec<ValueId> = state_inputs
                .iter()
                .map(|&s| capture(src, &mut eg, s))
                .collect();
            let schedule_e = Schedule {
                step: capture(src, &mut eg, plan.step),
                lazy_freq: capture(src, &mut eg, lazy_freq),
            };
            let mut b = Builder::new(&mut eg, opset, &prefix);
            controller.skipped_state(&mut b, &state_e, schedule_e)
        };
        let mut b = Builder::new(&mut eg, opset, &prefix);
        let pass = |b: &mut Builder, v: ValueId| {
            let c = capture(src, b.g, v);
            b.op(Op::Identity, &[c], vec![])
        };
        let outs = layout.arrange(|k| match k {
            GenOut::Lr => pass(&mut b, plan.lr),
            GenOut::Applied => b.constant(Tensor::from_bool(&[], &[false])),
            GenOut::ProbeLosses => b.constant(Tensor::from_f32(&[3], &[0.0; 3])),
            GenOut::Direction(i) => pass(&mut b, plan.params[i].d),
            GenOut::OptSlot { param, slot } => pass(&mut b, plan.params[param].slots[slot].next),
            GenOut::Buffer(i) => pass(&mut b, buffers[i].1),
            GenOut::ControllerState(k) => skipped_state[k],
            GenOut::ControllerOutput(k) => controller.skipped_output(&mut b, k),
        });
        b.g.outputs = outs;
    }

    // ----- the If node and what follows from it -----
    let mut b = Builder::new(g, opset, &main_prefix);
    let (_, outs) = b.node(
        Op::If,
        &[Some(cond)],
        layout.len(),
        vec![
            ("then_branch", Attr::Graph(Box::new(tg))),
            ("else_branch", Attr::Graph(Box::new(eg))),
        ],
    );
    plan.lr_applied = layout.get(&outs, GenOut::Lr)?;
    if compat {
        for (param, p) in plan.params.iter_mut().enumerate() {
            p.d_apply = layout.get(&outs, GenOut::Direction(param))?;
            for (slot, s) in p.slots.iter_mut().enumerate() {
                s.next = layout.get(&outs, GenOut::OptSlot { param, slot })?;
            }
        }
        for (i, bn) in plan.buffers_next.iter_mut().enumerate() {
            *bn = layout.get(&outs, GenOut::Buffer(i))?;
        }
    }
    for (k, (decl, &input)) in declared.iter().zip(&state_inputs).enumerate() {
        plan.controller_state.push(ControllerState {
            input,
            next: layout.get(&outs, GenOut::ControllerState(k))?,
            role: decl.role,
        });
    }
    let controller_outputs = output_names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            Ok((
                name.to_string(),
                layout.get(&outs, GenOut::ControllerOutput(k))?,
            ))
        })
        .collect::<Result<Vec<_>, LayoutError>>()?;
    plan.gen = Some(GenPlan {
        cond,
        scale,
        lazy_freq,
        applied: layout.get(&outs, GenOut::Applied)?,
        probe_losses: layout.get(&outs, GenOut::ProbeLosses)?,
        probe_inputs,
        controller_outputs,
    });
    let state_names: Vec<String> = state_inputs
        .iter()
        .map(|&v| g.name(v).to_string())
        .collect();
    Ok(controller.contract_notes(&state_names))
}

/// The probe losses as the float32 [3] vector `gen.probe_losses`.
fn probe_loss_vector(b: &mut Builder, losses: &ProbeLosses) -> ValueId {
    let as_f32 = losses.in_output_order().map(|l| {
        let l = cast_to(b, l, DType::F32);
        b.unsqueeze(l, &[0])
    });
    b.op(Op::Concat, &as_f32, vec![("axis", Attr::Int(0))])
}
