//! Reference compat (`--gen-compat reference`, gen-optim 0.1.1): on steps with probes the
//! then-branch advances the optimizer state a second time with the same gradient, and the step
//! applies the direction after that second advance. (The other half of reference compat, the
//! probes updating the running statistics in the reference's order, is the probe chain in
//! `mod.rs`.)

use super::clone::capture;
use crate::ir::{Builder, DType, Graph, ValueId};
use crate::pipeline::context::TrainPlan;
use crate::pipeline::optimizer::Advance;

/// The second advance of every parameter's optimizer state, built in the then-branch `tg` of
/// the main graph `src`: one [`Advance`] per parameter (direction and slots), aligned with
/// `plan.params`.
pub fn second_advance(
    src: &Graph,
    tg: &mut Graph,
    plan: &TrainPlan,
    opset: i64,
    prefix: &str,
) -> Vec<Advance> {
    let count = capture(src, tg, plan.opt_step.unwrap_or(plan.step));
    let caps: Vec<(ValueId, ValueId, Vec<ValueId>)> = plan
        .params
        .iter()
        .map(|p| {
            (
                capture(src, tg, p.w),
                capture(src, tg, p.grad),
                p.slots.iter().map(|s| capture(src, tg, s.next)).collect(),
            )
        })
        .collect();
    let mut b = Builder::new(tg, opset, prefix);
    let one = b.scalar(DType::I64, 1.0);
    let count1 = b.add(count, one);
    let mut sc = plan.optimizer.scalars(&mut b, count1);
    caps.into_iter()
        .map(|(w, grad, slots)| plan.optimizer.advance(&mut b, w, grad, &slots, &mut sc))
        .collect()
}
