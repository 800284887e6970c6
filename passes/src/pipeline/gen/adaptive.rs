//! The adaptive GeN controller (`--gen-controller adaptive`; docs/CONTRACT.md, "The adaptive
//! controller", gives the rule in full) as graph nodes: a bracket search that probes every step
//! (at most 16 calls), then damped tracking of the ratio of averaged parabola coefficients
//! `κ·k·EMA(B)/EMA(A)`, probing wider when the losses cannot resolve the curvature and less often
//! once lr has settled.
//!
//! Everything is scalar `Where`s over both phases' candidate values; the rule runs in float64 on
//! the float32 probe losses, lr is carried in its own type. The carried state (role `gen`) is
//! `phase, n, ea, eb, em, c, period, skip, calm` ([`STATE`]). Non-finite probe losses only halve lr
//! (or narrow the probe radius) and reset the probing period: the averages only ever receive
//! finite values.

use super::controller::{lazy_step, Decision, GenController, RuleInputs, Schedule, StateDecl};
use crate::ir::{Builder, DType, Op, Tensor, ValueId};
use crate::options::{CompileOptions, OptimizerKind};
use crate::pipeline::build::cast_to;
use crate::pipeline::context::Role;
use serde_json::{json, Map, Value};

/// EMA factor of the normalised A and B (per call).
const BETA: f64 = 0.9;
/// Widest probe radius, in units of lr.
const C_MAX: f64 = 64.0;
/// float32 resolution threshold on the loss differences: 16 ulps, relative.
const TOL: f64 = 16.0 * f32::EPSILON as f64;
/// Search calls at most.
const SEARCH_MAX: f64 = 16.0;
/// Search: lr factor per lazy step.
const GROW: f64 = 2.0;
/// Track: lr factor per call, after damping.
const F_MIN: f64 = 0.5;
const F_MAX: f64 = 1.5;
/// Track: move half-way to the target in log space.
const DAMP: f64 = 0.5;
/// A call "settled" if it moved lr by less than this factor.
const SETTLE: f64 = 1.2;
/// Settled: probe at most every `PERIOD_MAX`-th lazy step.
const PERIOD_MAX: f64 = 4.0;
/// `|EMA(b)| < DEAD·EMA(|b|)`: the slope is noise, hold lr.
const DEAD: f64 = 0.3;

/// The carried state, in order: name, dtype, initial value.
pub const STATE: [(&str, DType, f64); 9] = [
    ("gen.phase", DType::I64, 0.0),
    ("gen.n", DType::I64, 0.0),
    ("gen.ea", DType::F64, 0.0),
    ("gen.eb", DType::F64, 0.0),
    ("gen.em", DType::F64, 0.0),
    ("gen.c", DType::F64, 1.0),
    ("gen.period", DType::I64, 1.0),
    ("gen.skip", DType::I64, 0.0),
    ("gen.calm", DType::I64, 0.0),
];
const PHASE: usize = 0;
const N: usize = 1;
const EA: usize = 2;
const EB: usize = 3;
const EM: usize = 4;
const C: usize = 5;
const PERIOD: usize = 6;
const SKIP: usize = 7;
const CALM: usize = 8;

/// The adaptive rule with the optimizer's constants.
pub struct Adaptive {
    /// target = κ · smoothed one-batch minimiser: 0.5 for Adam/AdamW, 1 for SGD(-momentum).
    kappa: f64,
    /// SGD-momentum's μ (the buffer warm-up factor is `1 − μ^(step+1)`); 0 otherwise.
    mu: f64,
}

impl Adaptive {
    pub fn new(options: &CompileOptions) -> Self {
        let (kappa, mu) = match options.optimizer {
            OptimizerKind::Adam | OptimizerKind::AdamW => (0.5, 0.0),
            OptimizerKind::Sgd => (1.0, 0.0),
            OptimizerKind::Momentum => (1.0, options.momentum),
        };
        Adaptive { kappa, mu }
    }
}

fn f64c(b: &mut Builder, v: f64) -> ValueId {
    b.scalar(DType::F64, v)
}

fn i64c(b: &mut Builder, v: f64) -> ValueId {
    b.scalar(DType::I64, v)
}

fn cmp(b: &mut Builder, op: Op, x: ValueId, y: ValueId) -> ValueId {
    b.op(op, &[x, y], vec![])
}

fn min(b: &mut Builder, x: ValueId, y: ValueId) -> ValueId {
    b.op(Op::Min, &[x, y], vec![])
}

fn max(b: &mut Builder, x: ValueId, y: ValueId) -> ValueId {
    b.op(Op::Max, &[x, y], vec![])
}

fn scaled(b: &mut Builder, k: f64, x: ValueId) -> ValueId {
    let k = f64c(b, k);
    b.mul(k, x)
}

impl GenController for Adaptive {
    fn state(&self) -> Vec<StateDecl> {
        STATE
            .iter()
            .map(|&(name, dt, init)| StateDecl {
                name,
                init: Tensor::scalar(dt, init),
                role: Role::Gen,
            })
            .collect()
    }

    fn reads_schedule(&self) -> bool {
        true
    }

    /// `lazy_freq > 0 and (phase == 0 or (lazy step and skip <= 0))`.
    fn gate(&self, b: &mut Builder, schedule: Schedule, state: &[ValueId]) -> ValueId {
        let (on, lazy) = lazy_step(b, schedule);
        let zero = i64c(b, 0.0);
        let searching = cmp(b, Op::Equal, state[PHASE], zero);
        let due = cmp(b, Op::LessOrEqual, state[SKIP], zero);
        let lazy_due = b.op(Op::And, &[lazy, due], vec![]);
        let now = b.op(Op::Or, &[searching, lazy_due], vec![]);
        b.op(Op::And, &[on, now], vec![])
    }

    /// `r = c·lr`.
    fn radius(&self, b: &mut Builder, lr: ValueId, state: &[ValueId]) -> ValueId {
        let lr_dt = b.dtype(lr);
        let lr64 = cast_to(b, lr, DType::F64);
        let r = b.mul(state[C], lr64);
        cast_to(b, r, lr_dt)
    }

    fn decide(&self, b: &mut Builder, inputs: &RuleInputs) -> Decision {
        let st = &inputs.state;
        let sched = inputs
            .schedule
            .expect("the GeN pass hands the schedule to a controller that reads it");
        let lr_dt = b.dtype(inputs.lr);
        let lr = cast_to(b, inputs.lr, DType::F64);
        let scale = cast_to(b, inputs.scale, DType::F64);
        let [lm, lp, l0] = inputs
            .losses
            .in_output_order()
            .map(|l| cast_to(b, l, DType::F64));
        let one = f64c(b, 1.0);
        let zero = f64c(b, 0.0);
        let (_, lazy) = lazy_step(b, sched);
        let grow_k = f64c(b, GROW);
        let grow = b.where_(lazy, grow_k, one);
        // k = 1 − μ^(step+1): the momentum buffer's warm-up
        let k = if self.mu == 0.0 {
            one
        } else {
            let step = cast_to(b, sched.step, DType::F64);
            let t1 = b.add(step, one);
            let mu = f64c(b, self.mu);
            let p = b.op(Op::Pow, &[mu, t1], vec![]);
            b.sub(one, p)
        };
        // s = L₋ + L₊ − 2L₀, q = L₋ − L₊, r = c·lr, A = s/r², B = q/(2r)
        let sum_pm = b.add(lm, lp);
        let twice0 = scaled(b, 2.0, l0);
        let s = b.sub(sum_pm, twice0);
        let q = b.sub(lm, lp);
        let all = b.add(sum_pm, l0);
        let mag = b.unary(Op::Abs, all);
        let inf = f64c(b, f64::INFINITY);
        let fin = cmp(b, Op::Less, mag, inf);
        let (alm, alp, al0) = (
            b.unary(Op::Abs, lm),
            b.unary(Op::Abs, lp),
            b.unary(Op::Abs, l0),
        );
        let tiny = f64c(b, 1e-30);
        let biggest = b.op(Op::Max, &[alm, alp, al0, tiny], vec![]);
        let tol = scaled(b, TOL, biggest);
        let abs_s = b.unary(Op::Abs, s);
        let unres = cmp(b, Op::LessOrEqual, abs_s, tol);
        let resolved = b.op(Op::Not, &[unres], vec![]);
        let r = b.mul(st[C], lr);
        let r2 = b.mul(r, r);
        let a = b.div(s, r2);
        let two_r = scaled(b, 2.0, r);
        let bb = b.div(q, two_r);
        let abs_a = b.unary(Op::Abs, a);
        let abs_b = b.unary(Op::Abs, bb);
        let ar = b.mul(abs_a, r);
        let norm = b.add(ar, abs_b);
        let a_n = b.div(a, norm);
        let b_n = b.div(bb, norm);
        let m_n = b.div(abs_b, norm);
        let half_lr = scaled(b, 0.5, lr);
        let grown = b.mul(lr, grow);

        // ---- SEARCH
        let n1 = {
            let one_i = i64c(b, 1.0);
            b.add(st[N], one_i)
        };
        let search_max = i64c(b, SEARCH_MAX);
        let ended = cmp(b, Op::GreaterOrEqual, n1, search_max);
        let one_i = i64c(b, 1.0);
        let phase_s = b.where_(ended, one_i, st[PHASE]);
        let quarter_lr = scaled(b, 0.25, lr);
        // unresolved: q > tol or |q| <= tol → grow (linear descent / nothing seen), else halve
        let q_down = cmp(b, Op::Greater, q, tol);
        let abs_q = b.unary(Op::Abs, q);
        let q_flat = cmp(b, Op::LessOrEqual, abs_q, tol);
        let flat_grow = b.op(Op::Or, &[q_down, q_flat], vec![]);
        let lr_unres = b.where_(flat_grow, grown, half_lr);
        // resolved: B <= 0 → halve; A <= 0 or k·B/A > 2r → grow; else bracketed
        let b_up = cmp(b, Op::LessOrEqual, bb, zero);
        let a_flat = cmp(b, Op::LessOrEqual, a, zero);
        let kb = b.mul(k, bb);
        let kba = b.div(kb, a);
        let beyond = cmp(b, Op::Greater, kba, two_r);
        let further = b.op(Op::Or, &[a_flat, beyond], vec![]);
        let kk = scaled(b, self.kappa, k);
        let kks = b.mul(kk, scale);
        let kksb = b.mul(kks, bb);
        let exit_target = b.div(kksb, a);
        let floor = scaled(b, 1.0 / 16.0, lr);
        let exit_lr = max(b, exit_target, floor);
        let exit_lr = min(b, exit_lr, lr);
        let lr_res = b.where_(further, grown, exit_lr);
        let lr_res = b.where_(b_up, half_lr, lr_res);
        let lr_fin = b.where_(unres, lr_unres, lr_res);
        let lr_search = b.where_(fin, lr_fin, quarter_lr);
        let not_up = b.op(Op::Not, &[b_up], vec![]);
        let not_further = b.op(Op::Not, &[further], vec![]);
        let bracket = b.op(Op::And, &[fin, resolved], vec![]);
        let bracket = b.op(Op::And, &[bracket, not_up], vec![]);
        let bracket = b.op(Op::And, &[bracket, not_further], vec![]);
        let phase_search = b.where_(bracket, one_i, phase_s);
        let ea_search = b.where_(bracket, a_n, st[EA]);
        let eb_search = b.where_(bracket, b_n, st[EB]);
        let em_search = b.where_(bracket, m_n, st[EM]);

        // ---- TRACK, a resolved call: update the averages, move towards the target
        let ema = |b: &mut Builder, old: ValueId, x: ValueId| {
            let kept = scaled(b, BETA, old);
            let new = scaled(b, 1.0 - BETA, x);
            let new = b.div(new, norm);
            b.add(kept, new)
        };
        let ea_t = ema(b, st[EA], a);
        let eb_t = ema(b, st[EB], bb);
        let em_t = ema(b, st[EM], abs_b);
        let abs_eb = b.unary(Op::Abs, eb_t);
        let dead = scaled(b, DEAD, em_t);
        let noise = cmp(b, Op::Less, abs_eb, dead);
        let ea_pos = cmp(b, Op::Greater, ea_t, zero);
        let eb_pos = cmp(b, Op::Greater, eb_t, zero);
        let both = b.op(Op::And, &[ea_pos, eb_pos], vec![]);
        let keb = b.mul(kk, eb_t);
        let min_target = b.div(keb, ea_t);
        let four_lr = scaled(b, 4.0, lr);
        let target = b.where_(eb_pos, four_lr, quarter_lr);
        let target = b.where_(both, min_target, target);
        let target = b.where_(noise, lr, target);
        let c_max = f64c(b, C_MAX);
        let ratio = b.div(min_target, lr);
        let c_min = max(b, ratio, one);
        let c_min = min(b, c_min, c_max);
        let c2 = scaled(b, 2.0, st[C]);
        let c_wide = min(b, c2, c_max);
        let c_t = b.where_(eb_pos, c_wide, one);
        let c_t = b.where_(both, c_min, c_t);
        let c_t = b.where_(noise, st[C], c_t);
        let st_ = b.mul(scale, target);
        let rel = b.div(st_, lr);
        let damp = f64c(b, DAMP);
        let f = b.op(Op::Pow, &[rel, damp], vec![]);
        let f_min = f64c(b, F_MIN);
        let f_max = f64c(b, F_MAX);
        let f = max(b, f, f_min);
        let f = min(b, f, f_max);
        // growth only up to a radius this call saw descend
        let descended = cmp(b, Op::Less, lp, l0);
        let r_rel = b.div(r, lr);
        let cap = b.where_(descended, r_rel, one);
        let capped = min(b, f, cap);
        let rising = cmp(b, Op::Greater, f, one);
        let f = b.where_(rising, capped, f);
        let log_f = b.unary(Op::Log, f);
        let abs_log = b.unary(Op::Abs, log_f);
        let settle = f64c(b, SETTLE.ln());
        let settled = cmp(b, Op::Less, abs_log, settle);
        let zero_i = i64c(b, 0.0);
        let calm1 = b.add(st[CALM], one_i);
        let calm_r = b.where_(settled, calm1, zero_i);
        let two_i = i64c(b, 2.0);
        let calm_enough = cmp(b, Op::GreaterOrEqual, calm1, two_i);
        let doubled = b.mul(st[PERIOD], two_i);
        let period_max = i64c(b, PERIOD_MAX);
        let doubled = min(b, doubled, period_max);
        let period_s = b.where_(calm_enough, doubled, st[PERIOD]);
        let period_r = b.where_(settled, period_s, one_i);
        let skip_r = b.sub(period_r, one_i);
        let lr_r = b.mul(lr, f);

        // ---- TRACK: non-finite probes narrow a wide radius (lr kept) or halve lr; unresolved
        // curvature widens the radius (lr held)
        let wide = cmp(b, Op::Greater, st[C], one);
        let lr_nf = b.where_(wide, lr, half_lr);
        let c_quarter = scaled(b, 0.25, st[C]);
        let c_narrow = max(b, c_quarter, one);
        let c_nf = b.where_(wide, c_narrow, st[C]);
        let regular = b.op(Op::And, &[fin, resolved], vec![]);
        let lr_fin = b.where_(unres, lr, lr_r);
        let lr_track = b.where_(fin, lr_fin, lr_nf);
        let c_fin = b.where_(unres, c_wide, c_t);
        let c_track = b.where_(fin, c_fin, c_nf);
        let ea_track = b.where_(regular, ea_t, st[EA]);
        let eb_track = b.where_(regular, eb_t, st[EB]);
        let em_track = b.where_(regular, em_t, st[EM]);
        let period_track = b.where_(regular, period_r, one_i);
        let skip_track = b.where_(regular, skip_r, zero_i);
        let calm_track = b.where_(regular, calm_r, zero_i);

        // ---- the phase picks
        let searching = cmp(b, Op::Equal, st[PHASE], zero_i);
        let lr_new = b.where_(searching, lr_search, lr_track);
        let pick =
            |b: &mut Builder, search: ValueId, track: ValueId| b.where_(searching, search, track);
        let state = vec![
            pick(b, phase_search, st[PHASE]),
            pick(b, n1, st[N]),
            pick(b, ea_search, ea_track),
            pick(b, eb_search, eb_track),
            pick(b, em_search, em_track),
            pick(b, st[C], c_track),
            pick(b, st[PERIOD], period_track),
            pick(b, st[SKIP], skip_track),
            pick(b, st[CALM], calm_track),
        ];
        Decision {
            lr: cast_to(b, lr_new, lr_dt),
            state,
            outputs: Vec::new(),
        }
    }

    /// A lazy step skipped while settled counts `skip` down; everything else passes through.
    fn skipped_state(
        &self,
        b: &mut Builder,
        state: &[ValueId],
        schedule: Schedule,
    ) -> Vec<ValueId> {
        let (_, lazy) = lazy_step(b, schedule);
        let zero = i64c(b, 0.0);
        let one = i64c(b, 1.0);
        let tracking = cmp(b, Op::Equal, state[PHASE], one);
        let pending = cmp(b, Op::Greater, state[SKIP], zero);
        let skipped = b.op(Op::And, &[lazy, tracking], vec![]);
        let skipped = b.op(Op::And, &[skipped, pending], vec![]);
        let counted = b.sub(state[SKIP], one);
        state
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                if k == SKIP {
                    b.where_(skipped, counted, v)
                } else {
                    b.op(Op::Identity, &[v], vec![])
                }
            })
            .collect()
    }

    fn contract_notes(&self, state_inputs: &[String]) -> Map<String, Value> {
        let mut notes = Map::new();
        notes.insert("gen_controller".into(), json!("adaptive"));
        notes.insert(
            "gen_gate".into(),
            json!({ "phase": state_inputs[PHASE], "skip": state_inputs[SKIP] }),
        );
        notes
    }
}
