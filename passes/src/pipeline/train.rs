//! The training stages: optimizer update, GeN controller and the train.onnx contract; and the
//! eval graph.
//!
//! Order of `--emit train` after the gradient stages (each needs the one before):
//! 1. `optimizer` (optimizer.rs): carried step / lr / optimizer state, direction `d` per
//!    parameter after one advance of the optimizer state;
//! 2. `gen` (gen.rs): the GeN `If` node choosing the lr the step applies (no-op with
//!    `--gen off`); in reference compat it also supplies the twice-advanced state;
//! 3. `apply-update` (here): `w ← w − lr·d`, step + 1, every carried value's next value;
//! 4. `train-contract` (contract.rs): names the outputs, sets the graph outputs (everything
//!    else becomes dead code for the final cleanup) and writes `gen.contract`.
//!
//! `--emit eval`: `eval-mode` (BatchNorm in inference mode, Dropout removed), the loss and
//! parameter stages of the gradient pipeline, then `eval-contract`.

use super::contract::{EvalContractPass, TrainContractPass};
use super::eval::EvalModePass;
use super::gen::GenPass;
use super::optimizer::{cast_to, Optimizer, OptimizerPass};
use super::{Context, Debug, Pass};
use crate::compile::{compile, Emit};
use crate::error::{Error, Result};
use crate::ir::{Builder, DType, Model, Op, ValueId};
use crate::options::CompileOptions;

/// One optimizer state slot kept per parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// SGD's momentum buffer.
    MomentumBuffer,
    /// Adam's first moment.
    ExpAvg,
    /// Adam's second moment.
    ExpAvgSq,
}

impl Slot {
    /// Prefix of the state input's name (`opt.m.<param>`).
    pub fn prefix(self) -> &'static str {
        match self {
            Slot::MomentumBuffer => "opt.buf",
            Slot::ExpAvg => "opt.m",
            Slot::ExpAvgSq => "opt.v",
        }
    }
}

/// One parameter's update.
#[derive(Clone, Debug)]
pub struct ParamPlan {
    /// The parameter (graph input with initializer default).
    pub w: ValueId,
    pub grad: ValueId,
    /// The direction GeN probes (after one advance of the optimizer state).
    pub d: ValueId,
    /// The direction the step applies (`d`, or after the second advance in reference compat).
    pub d_apply: ValueId,
    /// (slot, state input, next value).
    pub slots: Vec<(Slot, ValueId, ValueId)>,
}

/// What the GeN pass added.
#[derive(Clone, Debug)]
pub struct GenPlan {
    /// bool scalar: GeN runs this step.
    pub cond: ValueId,
    /// Controls (graph inputs with defaults).
    pub scale: ValueId,
    pub lazy_freq: ValueId,
    /// bool scalar output.
    pub applied: ValueId,
    /// float32 [3] output.
    pub probe_losses: ValueId,
    /// (probe input, name of the data input it mirrors).
    pub probe_inputs: Vec<(ValueId, String)>,
}

/// Role of a carried value in the contract.
pub use gen_format::StateRole as Role;

/// The training step as the train passes build it up (`cx.train`).
#[derive(Clone, Debug)]
pub struct TrainPlan {
    pub optimizer: Optimizer,
    /// int64 scalar: steps done (0 at the start).
    pub step: ValueId,
    /// float32 scalar: the carried lr.
    pub lr: ValueId,
    /// int64 scalar: the optimizer's own advance count (reference compat with Adam only).
    pub opt_step: Option<ValueId>,
    pub params: Vec<ParamPlan>,
    /// The lr the step applies (after GeN).
    pub lr_applied: ValueId,
    pub gen: Option<GenPlan>,
    /// The values of `cx.buffers`' inputs for the next step.
    pub buffers_next: Vec<ValueId>,
    /// Every carried value: (input, next value, role), in contract order (set by apply-update).
    pub carried: Vec<(ValueId, ValueId, Role)>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the update needs the optimizer stage to run first")]
    NoPlan,
}

/// The `apply-update` pass: `w ← w − lr·d` and the next value of every carried input.
pub struct ApplyUpdatePass;

impl Pass for ApplyUpdatePass {
    fn name(&self) -> &'static str {
        "apply-update"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let plan = cx
            .train
            .as_mut()
            .ok_or_else(|| Error::stage("apply-update", TrainError::NoPlan))?;
        let prefix = super::gen::reserved_prefix(&m.graph, "update/");
        let mut b = Builder::new(&mut m.graph, opset, &prefix);
        let mut carried = Vec::new();
        for p in &plan.params {
            let dt = b.dtype(p.w);
            let lr = cast_to(&mut b, plan.lr_applied, dt);
            let step = b.mul(lr, p.d_apply);
            let next = b.sub(p.w, step);
            carried.push((p.w, next, Role::Param));
        }
        for (&(input, _), &next) in cx.buffers.iter().zip(&plan.buffers_next) {
            carried.push((input, next, Role::Buffer));
        }
        for p in &plan.params {
            for &(_, input, next) in &p.slots {
                carried.push((input, next, Role::Optimizer));
            }
        }
        let one = b.scalar(DType::I64, 1.0);
        if let Some(os) = plan.opt_step {
            // the optimizer advanced twice on GeN steps
            let inc = match &plan.gen {
                Some(gp) => {
                    let two = b.scalar(DType::I64, 2.0);
                    b.where_(gp.cond, two, one)
                }
                None => one,
            };
            let next = b.add(os, inc);
            carried.push((os, next, Role::Optimizer));
        }
        let step_next = b.add(plan.step, one);
        carried.push((plan.step, step_next, Role::Step));
        carried.push((plan.lr, plan.lr_applied, Role::Lr));
        plan.carried = carried;
        Ok(true)
    }
}

/// The passes of `--emit train` that follow the gradient stages.
pub fn passes(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Ok(vec![
        Box::new(OptimizerPass),
        Box::new(GenPass),
        Box::new(ApplyUpdatePass),
        Box::new(TrainContractPass),
    ])
}

/// The passes of `--emit eval`, after cleanup.
pub fn eval_passes(cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    let mut v: Vec<Box<dyn Pass>> = vec![Box::new(EvalModePass)];
    v.extend(super::eval::loss_and_params(cx)?);
    v.push(Box::new(EvalContractPass));
    Ok(v)
}

/// Companion files of a train graph (the eval graph), compiled from the imported model.
pub fn companions(
    start: Model,
    options: &CompileOptions,
    debug: &Debug,
) -> Result<Vec<(String, Model)>> {
    let eval = compile(start, Emit::Eval, options, debug)?;
    Ok(vec![("eval".to_string(), eval.model)])
}

/// The classification accuracy of `logits` (class axis last) against integer `labels`:
/// the fraction of positions whose label is not −100 where the argmax equals the label.
pub fn accuracy(b: &mut Builder, logits: ValueId, labels: ValueId) -> ValueId {
    let pred = b.op(
        Op::ArgMax,
        &[logits],
        vec![
            ("axis", crate::ir::Attr::Int(-1)),
            ("keepdims", crate::ir::Attr::Int(0)),
        ],
    );
    let labels = cast_to(b, labels, DType::I64);
    let eq = b.op(Op::Equal, &[pred, labels], vec![]);
    let ignore = b.scalar(DType::I64, -100.0);
    let ignored = b.op(Op::Equal, &[labels, ignore], vec![]);
    let valid = b.op(Op::Not, &[ignored], vec![]);
    let hit = b.op(Op::And, &[eq, valid], vec![]);
    let hit = b.cast(hit, DType::F32);
    let valid = b.cast(valid, DType::F32);
    let hits = b.sum_all(hit);
    let count = b.sum_all(valid);
    let one = b.scalar(DType::F32, 1.0);
    let count = b.op(Op::Max, &[count, one], vec![]);
    b.div(hits, count)
}
