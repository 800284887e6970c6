//! The rule that turns the three probe losses into the lr the step applies.
//!
//! A controller is a [`GenController`]: it may declare carried state of its own (graph inputs
//! with defaults whose next values come out of the GeN `If`) and extra reported outputs; the
//! GeN pass gives them named slots in the `If`'s layout (`GenOut::ControllerState`,
//! `GenOut::ControllerOutput`) and in the carried state (`StateKey::Controller`), so a new
//! controller touches neither the cloning nor the reference-compat code.
//!
//! A controller also decides when the probes run ([`GenController::gate`], by default the
//! paper's `(step + 1) % lazy_freq == 0`), how far they reach ([`GenController::radius`], by
//! default lr) and what its state does on steps without probes
//! ([`GenController::skipped_state`], by default passes through). The adaptive rule lives in
//! `adaptive.rs`.
//!
//! [`Paper`] is the rule of the GeN paper (SPEC section 2): fit the parabola in float64,
//! `A = (L₋ + L₊ − 2L₀)/lr²`, `B = (L₋ − L₊)/(2·lr)`; a non-finite probe loss halves lr (checked
//! first); else `A > 0 and B > 0` gives `lr ← 0.9·lr + 0.1·scale·clip(B/A, lr/2, 2·lr)`; else lr
//! is unchanged.

use crate::ir::{Builder, DType, Op, Tensor, ValueId};
use crate::pipeline::build::cast_to;
use crate::pipeline::context::Role;

/// The probe losses: L(w − Δ), L(w + Δ) and L(w).
#[derive(Clone, Copy, Debug)]
pub struct ProbeLosses {
    pub minus: ValueId,
    pub plus: ValueId,
    pub zero: ValueId,
}

impl ProbeLosses {
    /// In the order of the `gen.probe_losses` output: [L(w − Δ), L(w + Δ), L(w)].
    pub fn in_output_order(&self) -> [ValueId; 3] {
        [self.minus, self.plus, self.zero]
    }
}

/// A value the controller carries from step to step.
#[derive(Clone, Debug)]
pub struct StateDecl {
    /// Base name of the graph input (made unique when taken).
    pub name: &'static str,
    /// Its value before the first step (the input's default).
    pub init: Tensor,
    pub role: Role,
}

/// What the rule reads inside the `If`'s then-branch (all local to it).
#[derive(Clone, Debug)]
pub struct RuleInputs {
    /// The carried lr.
    pub lr: ValueId,
    /// The `gen.scale` control.
    pub scale: ValueId,
    pub losses: ProbeLosses,
    /// The controller's carried state, aligned with `GenController::state`.
    pub state: Vec<ValueId>,
    /// The step counter and the `gen.lazy_freq` control, when the controller reads them
    /// ([`GenController::reads_schedule`]).
    pub schedule: Option<Schedule>,
}

/// The step counter (int64, steps done) and the `gen.lazy_freq` control (int64).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub step: ValueId,
    pub lazy_freq: ValueId,
}

/// `(lazy_freq > 0, lazy_freq > 0 and (step + 1) % lazy_freq == 0)`: GeN is on, and this is a
/// lazy step.
pub fn lazy_step(b: &mut Builder, s: Schedule) -> (ValueId, ValueId) {
    let one = b.scalar(DType::I64, 1.0);
    let zero = b.scalar(DType::I64, 0.0);
    let t1 = b.add(s.step, one);
    let pos = b.op(Op::Greater, &[s.lazy_freq, zero], vec![]);
    let safe = b.where_(pos, s.lazy_freq, one);
    let r = b.op(Op::Mod, &[t1, safe], vec![]);
    let hit = b.op(Op::Equal, &[r, zero], vec![]);
    (pos, b.op(Op::And, &[pos, hit], vec![]))
}

/// What the rule decides on a step with probes.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The lr the step applies (and carries).
    pub lr: ValueId,
    /// Next values of the controller's state, aligned with `GenController::state`.
    pub state: Vec<ValueId>,
    /// Values of the extra outputs, aligned with `GenController::outputs`.
    pub outputs: Vec<ValueId>,
}

/// A learning-rate controller inside the GeN `If`. On steps without probes the lr and the
/// controller's state pass through unchanged.
pub trait GenController {
    /// Carried values of the controller's own (none by default).
    fn state(&self) -> Vec<StateDecl> {
        Vec::new()
    }
    /// Names of extra reported outputs (graph output and contract `outputs` key; none by
    /// default).
    fn outputs(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Whether the rule reads the step counter and `lazy_freq` (`RuleInputs::schedule`).
    fn reads_schedule(&self) -> bool {
        false
    }
    /// The `If`'s condition, built in the main graph from the schedule and the controller's
    /// state inputs: by default `(step + 1) % lazy_freq == 0` (never when `lazy_freq <= 0`).
    fn gate(&self, b: &mut Builder, schedule: Schedule, _state: &[ValueId]) -> ValueId {
        lazy_step(b, schedule).1
    }
    /// The probe radius r (lr's type) from the carried lr and the controller's state: the
    /// probes are at `w ± r·d`. By default lr.
    fn radius(&self, _b: &mut Builder, lr: ValueId, _state: &[ValueId]) -> ValueId {
        lr
    }
    /// Builds the rule in the then-branch.
    fn decide(&self, b: &mut Builder, inputs: &RuleInputs) -> Decision;
    /// The state's next values on steps without probes, built in the else-branch from the
    /// (captured) state and schedule; by default the state passes through.
    fn skipped_state(
        &self,
        b: &mut Builder,
        state: &[ValueId],
        _schedule: Schedule,
    ) -> Vec<ValueId> {
        state
            .iter()
            .map(|&v| b.op(Op::Identity, &[v], vec![]))
            .collect()
    }
    /// Entries for the contract's `config`, given the names of the state inputs (aligned with
    /// `state`); none by default (no `gen_controller` entry means the paper rule).
    fn contract_notes(
        &self,
        _state_inputs: &[String],
    ) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
    /// The value of extra output `k` on steps without probes (a float32 zero by default).
    fn skipped_output(&self, b: &mut Builder, _k: usize) -> ValueId {
        b.scalar(DType::F32, 0.0)
    }
}

/// The GeN paper's parabola rule (see the file's documentation); stateless.
pub struct Paper;

impl GenController for Paper {
    fn decide(&self, b: &mut Builder, inputs: &RuleInputs) -> Decision {
        Decision {
            lr: parabola(b, inputs.lr, inputs.scale, &inputs.losses),
            state: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

/// The parabola fit and the lr update, in float64; returns the new lr (lr's type).
pub fn parabola(b: &mut Builder, lr: ValueId, scale: ValueId, losses: &ProbeLosses) -> ValueId {
    let [lm, lp, l0] = losses.in_output_order().map(|l| cast_to(b, l, DType::F64));
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
    cast_to(b, lr_new, lr_dt)
}
