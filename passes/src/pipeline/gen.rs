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
//! 3. fits the parabola in float64: `A = (L₋ + L₊ − 2L₀)/lr²`, `B = (L₋ − L₊)/(2·lr)`;
//! 4. guards: a non-finite probe loss halves lr (checked first); else `A > 0 and B > 0` gives
//!    `lr ← 0.9·lr + 0.1·scale·clip(B/A, lr/2, 2·lr)`; else lr is unchanged.
//!
//! The else-branch passes lr through. The `If` outputs the lr the step applies, `gen.applied`
//! (bool) and `gen.probe_losses` = [L(w − Δ), L(w + Δ), L(w)] (zeros on other steps).
//!
//! Default mode: the probes read each lowered dropout's input where the training forward reads
//! its output (`cx.dropouts`: dropout off), and BatchNorm uses batch statistics without
//! updating running statistics (only the loss region is cloned).
//! Reference mode (`--gen-compat reference`, gen-optim 0.1.1): the probes run in train mode
//! (fresh dropout masks; running statistics updated by each probe, in the reference's order
//! w − Δ, w, w + Δ), and the then-branch advances the optimizer state a second time with the
//! same gradient; the step applies the direction after that second advance.
//!
//! Needs: `cx.train` from the optimizer pass, `cx.loss`. Guarantees: `cx.train.lr_applied` is
//! the lr to apply; with reference compat the directions, slots and buffers to apply are the
//! `If`'s outputs.

use super::optimizer::{cast_to, state_input};
use super::train::{GenPlan, TrainPlan};
use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::{Attr, Builder, DType, Graph, Model, Op, Tensor, ValueDef, ValueId};
use crate::options::{GenCompat, ProbeBatch};
use std::collections::{HashMap, HashSet};

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
}

/// A name prefix no value of `g` (or its subgraphs' locals, which live in their own scopes)
/// starts with, so values created under it never clash with captured names.
pub fn reserved_prefix(g: &Graph, base: &str) -> String {
    let taken = |p: &str| g.value_ids().any(|v| g.name(v).starts_with(p));
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{}{i}/", base.trim_end_matches('/')))
        .find(|p| !taken(p))
        .unwrap_or_default()
}

/// Captures value `v` of the enclosing graph `src` in subgraph `dst` (by name).
pub fn capture(src: &Graph, dst: &mut Graph, v: ValueId) -> ValueId {
    dst.add_outer(src.name(v), src.ty(v).clone())
}

/// Copies into subgraph `dst` the part of `src` that computes `roots` with the values in
/// `subst` (keys: values of `src`; values: values of `dst`) replaced, and every read of a key
/// of `alias` read as its value instead (both values of `src`: a lowered dropout's output read
/// as its input makes the copy deterministic). Only nodes that depend on a substituted or
/// aliased value (or draw random numbers) are copied, with `prefix` prepended and `suffix`
/// appended to their names; every other value they read is captured from `src` by name.
/// Returns the `dst` values of `roots`.
pub fn clone_region(
    src: &Graph,
    dst: &mut Graph,
    roots: &[ValueId],
    subst: &HashMap<ValueId, ValueId>,
    alias: &HashMap<ValueId, ValueId>,
    prefix: &str,
    suffix: &str,
) -> Vec<ValueId> {
    let resolve = |mut v: ValueId| {
        // aliases may chain (dropout of a dropout); a cycle would be a caller's bug
        for _ in 0..=alias.len() {
            match alias.get(&v) {
                Some(&a) => v = a,
                None => break,
            }
        }
        v
    };
    // nodes the roots depend on, not looking through substituted values
    let mut needed: HashSet<ValueId> = HashSet::new();
    let mut stack: Vec<ValueId> = roots.iter().map(|&r| resolve(r)).collect();
    let mut region = HashSet::new();
    while let Some(v) = stack.pop() {
        if !needed.insert(v) || subst.contains_key(&v) {
            continue;
        }
        if let Some(n) = src.producer(v) {
            if region.insert(n) {
                stack.extend(src.node_uses(n).into_iter().map(resolve));
            }
        }
    }
    let mut map: HashMap<ValueId, ValueId> = subst.clone();
    for &n in src.order() {
        if !region.contains(&n) {
            continue;
        }
        let node = src.node(n);
        let uses = src.node_uses(n);
        let varying = node.op.is_random()
            || uses
                .iter()
                .any(|&v| alias.contains_key(&v) || map.contains_key(&v));
        if !varying {
            continue;
        }
        let inputs: Vec<Option<ValueId>> = node
            .inputs
            .iter()
            .map(|i| {
                i.map(|v| {
                    let v = resolve(v);
                    match map.get(&v) {
                        Some(&m) => m,
                        None => capture(src, dst, v),
                    }
                })
            })
            .collect();
        let out_names: Vec<String> = node
            .outputs
            .iter()
            .map(|o| match o {
                Some(o) => format!("{prefix}{}{suffix}", src.name(*o)),
                None => String::new(),
            })
            .collect();
        let out_refs: Vec<&str> = out_names.iter().map(String::as_str).collect();
        let mut attrs = node.attrs.clone();
        for a in attrs.values_mut() {
            match a {
                Attr::Graph(sg) => fix_captures(sg, src, dst, &map),
                Attr::Graphs(gs) => gs
                    .iter_mut()
                    .for_each(|sg| fix_captures(sg, src, dst, &map)),
                _ => {}
            }
        }
        let name = if node.name.is_empty() {
            String::new()
        } else {
            format!("{prefix}{}{suffix}", node.name)
        };
        let new = dst.add_node(node.op.clone(), &name, inputs, &out_refs, attrs);
        {
            let nn = dst.node_mut(new);
            nn.doc = node.doc.clone();
            nn.extra = without_metadata(&node.extra);
        }
        let new_outs = dst.node(new).outputs.clone();
        for (o, no) in node.outputs.iter().zip(new_outs) {
            if let (Some(o), Some(no)) = (o, no) {
                dst.value_mut(no).ty = src.ty(*o).clone();
                map.insert(*o, no);
            }
        }
    }
    roots
        .iter()
        .map(|&r| {
            let r = resolve(r);
            match map.get(&r) {
                Some(&m) => m,
                None => capture(src, dst, r),
            }
        })
        .collect()
}

/// A node's unmodelled protobuf fields without its `metadata_props`: exporters' per-node
/// debug information (source scopes, class hierarchies) is not repeated in every probe copy.
fn without_metadata(extra: &[u8]) -> Vec<u8> {
    use onnx_protobuf::{Message, NodeProto};
    if extra.is_empty() {
        return Vec::new();
    }
    match NodeProto::parse_from_bytes(extra) {
        Ok(mut p) => {
            p.metadata_props.clear();
            p.write_to_bytes().unwrap_or_default()
        }
        Err(_) => extra.to_vec(),
    }
}

/// A subgraph copied into a cloned node reads enclosing values by name: point the captures of
/// substituted or cloned values at their copies, and capture the others through `dst`.
fn fix_captures(sg: &mut Graph, src: &Graph, dst: &mut Graph, map: &HashMap<ValueId, ValueId>) {
    let outer: Vec<ValueId> = sg.outer_values().collect();
    for o in outer {
        let name = sg.name(o).to_string();
        let Some(sv) = src.by_name(&name) else {
            continue;
        };
        match map.get(&sv) {
            Some(&m) => {
                let new_name = dst.name(m).to_string();
                sg.rename(o, &new_name);
            }
            None => {
                capture(src, dst, sv);
            }
        }
    }
}

/// Subgraph outputs as distinct values produced inside the subgraph: a value listed twice
/// (momentum's direction is its buffer) or captured from outside goes through an Identity.
fn distinct_outputs(b: &mut Builder, outs: Vec<ValueId>) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    outs.into_iter()
        .map(|v| {
            let local = matches!(b.g.value(v).def, ValueDef::Node(..));
            if local && seen.insert(v) {
                v
            } else {
                b.op(Op::Identity, &[v], vec![])
            }
        })
        .collect()
}

/// Reads that make a probe deterministic: each lowered dropout's output read as its input.
fn deterministic_aliases(cx: &Context) -> HashMap<ValueId, ValueId> {
    cx.dropouts.iter().map(|d| (d.output, d.input)).collect()
}

/// The data inputs (model inputs and labels) by name, as graph inputs of `g`.
pub fn data_inputs(g: &Graph, cx: &Context) -> Result<Vec<ValueId>, GenError> {
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
        let mut plan = cx.train.take().ok_or_else(|| err(GenError::NoPlan))?;
        let result = build(m, cx, &mut plan, loss, &data);
        cx.train = Some(plan);
        result.map_err(err)?;
        Ok(true)
    }
}

fn build(
    m: &mut Model,
    cx: &Context,
    plan: &mut TrainPlan,
    loss: ValueId,
    data: &[ValueId],
) -> Result<(), GenError> {
    let opset = m.opset();
    let opts = &cx.options;
    let compat = opts.compat == GenCompat::Reference;
    let g = &mut m.graph;
    let loss_dt = g.ty(loss).dtype().unwrap_or(DType::F32);
    if !loss_dt.is_float() || g.ty(loss).rank().is_some_and(|r| r != 0) {
        return Err(GenError::BadLoss(g.name(loss).to_string()));
    }

    // controls and probe inputs
    let scale = {
        let n = g.fresh_name("gen.scale");
        state_input(g, &n, Tensor::scalar(DType::F32, 1.0))
    };
    let lazy_freq = {
        let n = g.fresh_name("gen.lazy_freq");
        state_input(g, &n, Tensor::from_i64(&[], &[opts.lazy_freq]))
    };
    let mut probe_inputs = Vec::new();
    if opts.probe_batch == ProbeBatch::Next {
        for &d in data {
            let mirrored = g.name(d).to_string();
            let n = g.fresh_name(&format!("probe.{mirrored}"));
            let ty = g.ty(d).clone();
            let p = g.add_input(&n, ty);
            probe_inputs.push((p, mirrored, d));
        }
    }

    // the condition: (step + 1) % lazy_freq == 0 and lazy_freq > 0
    let main_prefix = reserved_prefix(g, "gen/");
    let cond = {
        let mut b = Builder::new(g, opset, &main_prefix);
        let one = b.scalar(DType::I64, 1.0);
        let zero = b.scalar(DType::I64, 0.0);
        let t1 = b.add(plan.step, one);
        let pos = b.op(Op::Greater, &[lazy_freq, zero], vec![]);
        let safe = b.where_(pos, lazy_freq, one);
        let r = b.op(Op::Mod, &[t1, safe], vec![]);
        let hit = b.op(Op::Equal, &[r, zero], vec![]);
        b.op(Op::And, &[pos, hit], vec![])
    };

    // ----- then: probes, parabola, guards -----
    // subgraph-local names get their own prefix, free in the main graph, so captures by name
    // can never resolve to a local value
    let prefix = reserved_prefix(g, "gen.probe/");
    let src: &Graph = g;
    let mut tg = Graph::new("gen_probe");
    let lr_t = capture(src, &mut tg, plan.lr);
    let scale_t = capture(src, &mut tg, scale);
    let mut w_minus = HashMap::new(); // w − Δ = w + lr·d
    let mut w_plus = HashMap::new(); // w + Δ = w − lr·d
    {
        let pairs: Vec<(ValueId, ValueId, ValueId)> = plan
            .params
            .iter()
            .map(|p| (p.w, capture(src, &mut tg, p.w), capture(src, &mut tg, p.d)))
            .collect();
        let mut b = Builder::new(&mut tg, opset, &prefix);
        for (w_src, w, d) in pairs {
            let dt = b.dtype(w);
            let lr_p = cast_to(&mut b, lr_t, dt);
            let step = b.mul(lr_p, d);
            w_minus.insert(w_src, b.add(w, step));
            w_plus.insert(w_src, b.sub(w, step));
        }
    }
    let mut data_subst = HashMap::new();
    for (p, _, d) in &probe_inputs {
        data_subst.insert(*d, capture(src, &mut tg, *p));
    }
    // reference compat: running statistics updated by every probe forward, in the reference's
    // order (w − Δ, w, w + Δ), starting from the training forward's update
    let buffers: Vec<(ValueId, ValueId)> = if compat { cx.buffers.clone() } else { vec![] };
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
    let roots: Vec<ValueId> = std::iter::once(loss)
        .chain(buffers.iter().map(|&(_, next)| next))
        .collect();
    let probe = |tg: &mut Graph,
                 params: &HashMap<ValueId, ValueId>,
                 chain: &mut Vec<ValueId>,
                 suffix: &str| {
        let mut subst = data_subst.clone();
        subst.extend(params.iter().map(|(&k, &v)| (k, v)));
        for (&(input, _), &cur) in buffers.iter().zip(chain.iter()) {
            subst.insert(input, cur);
        }
        let out = clone_region(src, tg, &roots, &subst, &alias, &prefix, suffix);
        for (c, &o) in chain.iter_mut().zip(&out[1..]) {
            *c = o;
        }
        out[0]
    };
    let l_minus = probe(&mut tg, &w_minus, &mut chain, ".gen_m");
    let l_zero = match opts.probe_batch {
        ProbeBatch::Next => probe(&mut tg, &HashMap::new(), &mut chain, ".gen_0"),
        ProbeBatch::Current => capture(src, &mut tg, loss),
    };
    let l_plus = probe(&mut tg, &w_plus, &mut chain, ".gen_p");

    // compat: the second advance of the optimizer state with the same gradient
    let mut second: Vec<(ValueId, Vec<ValueId>)> = Vec::new();
    if compat {
        let count = capture(src, &mut tg, plan.opt_step.unwrap_or(plan.step));
        let caps: Vec<(ValueId, ValueId, Vec<ValueId>)> = plan
            .params
            .iter()
            .map(|p| {
                (
                    capture(src, &mut tg, p.w),
                    capture(src, &mut tg, p.grad),
                    p.slots
                        .iter()
                        .map(|&(_, _, next)| capture(src, &mut tg, next))
                        .collect(),
                )
            })
            .collect();
        let mut b = Builder::new(&mut tg, opset, &prefix);
        let one = b.scalar(DType::I64, 1.0);
        let count1 = b.add(count, one);
        let mut sc = plan.optimizer.scalars(&mut b, count1);
        for (w, grad, slots) in caps {
            let adv = plan.optimizer.advance(&mut b, w, grad, &slots, &mut sc);
            second.push((adv.d, adv.slots));
        }
    }

    let (then_lr, then_losses) = {
        let mut b = Builder::new(&mut tg, opset, &prefix);
        parabola(&mut b, lr_t, scale_t, [l_minus, l_plus, l_zero])
    };
    let mut then_outs = {
        let mut b = Builder::new(&mut tg, opset, &prefix);
        let t = b.constant(Tensor::from_bool(&[], &[true]));
        vec![then_lr, t, then_losses]
    };
    for (d, slots) in &second {
        then_outs.push(*d);
        then_outs.extend(slots);
    }
    then_outs.extend(&chain);
    tg.outputs = {
        let mut b = Builder::new(&mut tg, opset, &prefix);
        distinct_outputs(&mut b, then_outs)
    };

    // ----- else: pass everything through -----
    let mut eg = Graph::new("gen_skip");
    let mut passthrough = vec![plan.lr];
    let mut else_tail = Vec::new();
    if compat {
        for p in &plan.params {
            else_tail.push(p.d);
            else_tail.extend(p.slots.iter().map(|&(_, _, next)| next));
        }
        else_tail.extend(buffers.iter().map(|&(_, next)| next));
    }
    passthrough.extend(&else_tail);
    let caps: Vec<ValueId> = passthrough
        .iter()
        .map(|&v| capture(src, &mut eg, v))
        .collect();
    {
        let mut b = Builder::new(&mut eg, opset, &prefix);
        let mut outs = Vec::new();
        let lr_id = b.op(Op::Identity, &[caps[0]], vec![]);
        outs.push(lr_id);
        outs.push(b.constant(Tensor::from_bool(&[], &[false])));
        outs.push(b.constant(Tensor::from_f32(&[3], &[0.0; 3])));
        for &c in &caps[1..] {
            outs.push(b.op(Op::Identity, &[c], vec![]));
        }
        b.g.outputs = outs;
    }

    // ----- the If node and what follows from it -----
    let n_out = tg.outputs.len();
    let mut b = Builder::new(g, opset, &main_prefix);
    let (_, outs) = b.node(
        Op::If,
        &[Some(cond)],
        n_out,
        vec![
            ("then_branch", Attr::Graph(Box::new(tg))),
            ("else_branch", Attr::Graph(Box::new(eg))),
        ],
    );
    plan.lr_applied = outs[0];
    let mut k = 3;
    if compat {
        for p in plan.params.iter_mut() {
            p.d_apply = outs[k];
            k += 1;
            for slot in p.slots.iter_mut() {
                slot.2 = outs[k];
                k += 1;
            }
        }
        for bn in plan.buffers_next.iter_mut() {
            *bn = outs[k];
            k += 1;
        }
    }
    plan.gen = Some(GenPlan {
        cond,
        scale,
        lazy_freq,
        applied: outs[1],
        probe_losses: outs[2],
        probe_inputs: probe_inputs
            .into_iter()
            .map(|(p, mirrored, _)| (p, mirrored))
            .collect(),
    });
    Ok(())
}

/// The parabola fit and the lr update, in float64. `losses` = [L(w − Δ), L(w + Δ), L(w)].
/// Returns the new lr (float32 scalar) and the probe losses as a float32 [3] vector.
pub fn parabola(
    b: &mut Builder,
    lr: ValueId,
    scale: ValueId,
    losses: [ValueId; 3],
) -> (ValueId, ValueId) {
    let [lm, lp, l0] = losses.map(|l| cast_to(b, l, DType::F64));
    let lr64 = cast_to(b, lr, DType::F64);
    let scale64 = cast_to(b, scale, DType::F64);
    let c = |b: &mut Builder, v: f64| b.scalar(DType::F64, v);
    // A = (L₋ + L₊ − 2·L₀) / lr², B = (L₋ − L₊) / (2·lr)
    let sum_pm = b.add(lm, lp);
    let two = c(b, 2.0);
    let twice0 = b.mul(two, l0);
    let num_a = b.sub(sum_pm, twice0);
    let lr2 = b.mul(lr64, lr64);
    let a = b.div(num_a, lr2);
    let num_b = b.sub(lm, lp);
    let two_lr = b.mul(two, lr64);
    let bb = b.div(num_b, two_lr);
    let zero = c(b, 0.0);
    let a_pos = b.op(Op::Greater, &[a, zero], vec![]);
    let b_pos = b.op(Op::Greater, &[bb, zero], vec![]);
    let accept = b.op(Op::And, &[a_pos, b_pos], vec![]);
    // lr ← 0.9·lr + 0.1·scale·clip(B/A, lr/2, 2·lr)
    let eta = b.div(bb, a);
    let half = c(b, 0.5);
    let lo = b.mul(lr64, half);
    let hi = b.mul(lr64, two);
    let capped = b.op(Op::Min, &[eta, hi], vec![]);
    let clipped = b.op(Op::Max, &[capped, lo], vec![]);
    let k9 = c(b, 0.9);
    let k1 = c(b, 0.1);
    let keep = b.mul(k9, lr64);
    let s = b.mul(k1, scale64);
    let s = b.mul(s, clipped);
    let moved = b.add(keep, s);
    let accepted = b.where_(accept, moved, lr64);
    // any non-finite probe loss: lr/2 (the sum of the three is finite iff all are)
    let sum = b.add(sum_pm, l0);
    let mag = b.unary(Op::Abs, sum);
    let inf = c(b, f64::INFINITY);
    let finite = b.op(Op::Less, &[mag, inf], vec![]);
    let lr_new = b.where_(finite, accepted, lo);
    let lr_dt = b.dtype(lr);
    let lr_out = cast_to(b, lr_new, lr_dt);
    let as_f32 = losses.map(|l| {
        let l = cast_to(b, l, DType::F32);
        b.unsqueeze(l, &[0])
    });
    let vec3 = b.op(Op::Concat, &as_f32, vec![("axis", Attr::Int(0))]);
    (lr_out, vec3)
}
