//! The training stages: optimizer update, GeN controller and the train.onnx contract; and the
//! eval graph.
//!
//! Order of `--emit train` after the gradient stages (each needs the one before):
//! 1. `optimizer` (here, with the rules in optimizer.rs): carried step / lr / optimizer state,
//!    direction `d` per parameter after one advance of the optimizer state;
//! 2. `gen` (gen/): the GeN `If` node choosing the lr the step applies (no-op with
//!    `--gen off`); in reference compat it also supplies the twice-advanced state;
//! 3. `apply-update` (here): `w ← w − lr·d`, step + 1, every carried value's next value;
//! 4. `train-contract` (contract.rs): names the outputs, sets the graph outputs (everything
//!    else becomes dead code for the final cleanup) and writes `gen.contract`.
//!
//! `optimizer` needs `cx.params`, `cx.grads` (autodiff). It adds the carried `gen.step` and
//! `gen.lr` state, one state input per optimizer slot and parameter (`opt.m.<param>` ...; zeros
//! as defaults), and in reference-compat mode with Adam the optimizer's own step counter
//! `opt.step`. It guarantees: `cx.train` holds, per parameter, the direction `d` after one
//! advance of the optimizer state and the advanced state; nothing is applied yet
//! (`apply-update` does that once GeN has chosen the lr).
//!
//! `--emit eval`: `eval-mode` (BatchNorm in inference mode, Dropout removed), the loss and
//! parameter stages of the gradient pipeline, then `eval-contract`. The eval companion of a
//! train graph is compiled by the driver (`compile.rs`), not from here.

use super::build::{cast_to, reserved_prefix, state_input};
use super::context::{Carried, ParamPlan, Role, SlotState, StateKey, TrainPlan};
use super::contract::{EvalContractPass, TrainContractPass};
use super::eval::EvalModePass;
use super::gen::GenPass;
use super::optimizer::{Optimizer, OptimizerError, Slot};
use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::{Builder, DType, Model, Tensor, TensorData, Type, ValueId};
use crate::options::GenCompat;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the update needs the optimizer stage to run first")]
    NoPlan,
}

/// A zero tensor like `ty` (fully known shape).
fn zeros(ty: &Type) -> Option<Tensor> {
    let tt = ty.tensor()?;
    let dims = tt.fixed_dims()?;
    let n: i64 = dims.iter().product();
    let bytes = (tt.dtype.bits() / 8) * n.max(0) as usize;
    if !tt.dtype.is_float() {
        return None;
    }
    Some(Tensor {
        dtype: tt.dtype,
        dims,
        data: TensorData::Raw(vec![0u8; bytes]),
    })
}

/// The `optimizer` pass: state inputs and the optimizer's direction for every parameter.
pub struct OptimizerPass;

impl Pass for OptimizerPass {
    fn name(&self) -> &'static str {
        "optimizer"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("optimizer", e);
        if cx.loss.is_none() {
            return Err(err(OptimizerError::NoGradients));
        }
        if cx.params.len() != cx.grads.len() {
            return Err(err(OptimizerError::Misaligned {
                params: cx.params.len(),
                grads: cx.grads.len(),
            }));
        }
        let opt = Optimizer::from_options(&cx.options).map_err(err)?;
        let opset = m.opset();
        let g = &mut m.graph;
        let mut params = Vec::with_capacity(cx.params.len());
        for (&w, &grad) in cx.params.iter().zip(&cx.grads) {
            let ty = g.ty(w).clone();
            let z = zeros(&ty).ok_or_else(|| {
                err(OptimizerError::BadParam {
                    name: g.name(w).to_string(),
                    ty: format!("{ty:?}"),
                })
            })?;
            let name = g.name(w).to_string();
            let slots: Vec<(Slot, ValueId)> = opt
                .slots()
                .iter()
                .map(|s| {
                    let n = g.fresh_name(&format!("{}.{name}", s.prefix()));
                    (*s, state_input(g, &n, z.clone()))
                })
                .collect();
            params.push((w, grad, slots));
        }
        let step = {
            let n = g.fresh_name("gen.step");
            state_input(g, &n, Tensor::from_i64(&[], &[0]))
        };
        let lr = {
            let n = g.fresh_name("gen.lr");
            state_input(g, &n, Tensor::scalar(DType::F32, cx.options.lr))
        };
        // the optimizer's own counter only differs from the step counter when GeN advances
        // the state twice (reference compat) and the optimizer counts its steps (Adam)
        let compat_twice = cx.options.gen && cx.options.compat == GenCompat::Reference;
        let opt_step = (compat_twice && opt.counts_steps()).then(|| {
            let n = g.fresh_name("opt.step");
            state_input(g, &n, Tensor::from_i64(&[], &[0]))
        });
        let mut b = Builder::new(g, opset, "opt/");
        let mut sc = opt.scalars(&mut b, opt_step.unwrap_or(step));
        let mut plans = Vec::with_capacity(params.len());
        for (w, grad, slots) in params {
            let state: Vec<ValueId> = slots.iter().map(|(_, v)| *v).collect();
            let adv = opt.advance(&mut b, w, grad, &state, &mut sc);
            plans.push(ParamPlan {
                w,
                grad,
                d: adv.d,
                d_apply: adv.d,
                slots: slots
                    .iter()
                    .zip(&adv.slots)
                    .map(|(&(slot, input), &next)| SlotState { slot, input, next })
                    .collect(),
            });
        }
        cx.train = Some(TrainPlan {
            optimizer: opt,
            step,
            lr,
            opt_step,
            params: plans,
            lr_applied: lr,
            gen: None,
            buffers_next: cx.buffers.iter().map(|&(_, o)| o).collect(),
            controller_state: Vec::new(),
            carried: Vec::new(),
        });
        Ok(true)
    }
}

/// The `apply-update` pass: `w ← w − lr·d` and the next value of every carried input.
pub struct ApplyUpdatePass;

impl Pass for ApplyUpdatePass {
    fn name(&self) -> &'static str {
        "apply-update"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("apply-update", e);
        let opset = m.opset();
        let plan = cx.train.as_mut().ok_or_else(|| err(TrainError::NoPlan))?;
        let prefix = reserved_prefix(&m.graph, "update/");
        let mut b = Builder::new(&mut m.graph, opset, &prefix);
        let layout = plan.state_layout();
        let mut one = None;
        let carried = layout.arrange(|key| {
            let (input, next, role) = match key {
                StateKey::Param(i) => {
                    let p = &plan.params[i];
                    let dt = b.dtype(p.w);
                    let lr = cast_to(&mut b, plan.lr_applied, dt);
                    let step = b.mul(lr, p.d_apply);
                    (p.w, b.sub(p.w, step), Role::Param)
                }
                StateKey::Buffer(i) => (cx.buffers[i].0, plan.buffers_next[i], Role::Buffer),
                StateKey::Optimizer { param, slot } => {
                    let s = plan.params[param].slots[slot];
                    (s.input, s.next, Role::Optimizer)
                }
                StateKey::OptimizerStep | StateKey::Step => {
                    let one = *one.get_or_insert_with(|| b.scalar(DType::I64, 1.0));
                    match (key, plan.opt_step) {
                        (StateKey::OptimizerStep, Some(os)) => {
                            // the optimizer advanced twice on GeN steps
                            let inc = match &plan.gen {
                                Some(gp) => {
                                    let two = b.scalar(DType::I64, 2.0);
                                    b.where_(gp.cond, two, one)
                                }
                                None => one,
                            };
                            (os, b.add(os, inc), Role::Optimizer)
                        }
                        _ => (plan.step, b.add(plan.step, one), Role::Step),
                    }
                }
                StateKey::Lr => (plan.lr, plan.lr_applied, Role::Lr),
                StateKey::Controller(k) => {
                    let s = plan.controller_state[k];
                    (s.input, s.next, s.role)
                }
            };
            Carried {
                key,
                input,
                next,
                role,
            }
        });
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
