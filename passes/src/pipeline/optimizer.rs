//! The base optimizers as graph nodes, with `torch.optim` semantics (single-tensor
//! implementation, one parameter group):
//!
//! - SGD: `g ← g + wd·w`; with momentum `buf ← μ·buf + (1 − dampening)·g` (on the very first
//!   step `buf ← g`, no dampening: torch creates the buffer as a copy of the gradient);
//!   Nesterov: `d = g + μ·buf`, else `d = buf` (plain SGD: `d = g`).
//! - Adam: `g ← g + wd·w` (L2), `m ← m + (1 − β1)·(g − m)` (torch's `lerp_`),
//!   `v ← β2·v + (1 − β2)·g²`, `d = (m / (√v / √(1 − β2ᵗ) + eps)) / (1 − β1ᵗ)`.
//! - AdamW: Adam without the L2 term, plus decoupled decay: `d = adam + wd·w`
//!   (torch's `w ← w·(1 − lr·wd)` followed by the Adam step is `w ← w − lr·d`).
//!
//! The update the step applies is always `w ← w − lr·d`, so GeN can probe `w ± lr·d` with the
//! very direction the step uses. The bias-correction factors are computed in float64 from the
//! int64 step counter (as torch computes them in Python floats) and cast to the parameter type.
//!
//! The `optimizer` pass that adds the state inputs and calls these rules is in `train.rs`.

use super::build::cast_to;
use crate::ir::{Builder, DType, Op, ValueId};
use crate::options::{CompileOptions, OptimizerKind};

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

/// Why the optimizer stage cannot build the update.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    #[error("no loss and gradients: the optimizer stage must run after autodiff")]
    NoGradients,
    #[error("{params} parameters but {grads} gradients")]
    Misaligned { params: usize, grads: usize },
    #[error("parameter '{name}' has type {ty}: only float tensors of known shape can be trained")]
    BadParam { name: String, ty: String },
    #[error("Nesterov momentum requires a momentum > 0 and zero dampening (torch.optim.SGD)")]
    Nesterov,
}

/// One optimizer, its hyper-parameters resolved from the options.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// 0 for plain SGD.
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub betas: (f64, f64),
    pub eps: f64,
}

/// Per-step scalars shared by every parameter, computed from the optimizer's step counter,
/// and the hyper-parameter constants (one `Constant` per element type and value).
#[derive(Clone, Debug)]
pub struct StepScalars {
    /// bool: this is the optimizer's first step (momentum buffer = gradient).
    pub first: Option<ValueId>,
    /// f32: 1 / (1 − β1ᵗ).
    pub inv_bc1: Option<ValueId>,
    /// f32: √(1 − β2ᵗ).
    pub sqrt_bc2: Option<ValueId>,
    consts: std::collections::HashMap<(DType, u64), ValueId>,
}

impl StepScalars {
    /// The scalar constant `v` of type `dt`, created once.
    fn constant(&mut self, b: &mut Builder, dt: DType, v: f64) -> ValueId {
        *self
            .consts
            .entry((dt, v.to_bits()))
            .or_insert_with(|| b.scalar(dt, v))
    }

    /// `x · v` with a shared constant.
    fn scale(&mut self, b: &mut Builder, x: ValueId, v: f64) -> ValueId {
        let dt = b.dtype(x);
        let c = self.constant(b, dt, v);
        b.mul(x, c)
    }
}

/// The result of advancing the optimizer once for one parameter.
#[derive(Clone, Debug)]
pub struct Advance {
    /// The update direction: the step is `w ← w − lr·d`.
    pub d: ValueId,
    /// The new slot values, aligned with `Optimizer::slots`.
    pub slots: Vec<ValueId>,
}

impl Optimizer {
    pub fn from_options(o: &CompileOptions) -> Result<Optimizer, OptimizerError> {
        let (momentum, dampening, nesterov) = match o.optimizer {
            OptimizerKind::Sgd => {
                if o.nesterov {
                    return Err(OptimizerError::Nesterov);
                }
                (0.0, 0.0, false)
            }
            OptimizerKind::Momentum => (o.momentum, o.dampening, o.nesterov),
            _ => (0.0, 0.0, false),
        };
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(OptimizerError::Nesterov);
        }
        // the numeric ranges were checked by `CompileOptions::validate` when compiling began
        Ok(Optimizer {
            kind: o.optimizer,
            weight_decay: o.weight_decay(),
            momentum,
            dampening,
            nesterov,
            betas: o.betas,
            eps: o.eps,
        })
    }

    /// The torch.optim class this optimizer reproduces.
    pub fn torch_name(&self) -> &'static str {
        match self.kind {
            OptimizerKind::Sgd | OptimizerKind::Momentum => "SGD",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::AdamW => "AdamW",
        }
    }

    fn is_adam(&self) -> bool {
        matches!(self.kind, OptimizerKind::Adam | OptimizerKind::AdamW)
    }

    /// The state slots kept per parameter.
    pub fn slots(&self) -> &'static [Slot] {
        if self.is_adam() {
            &[Slot::ExpAvg, Slot::ExpAvgSq]
        } else if self.momentum != 0.0 {
            &[Slot::MomentumBuffer]
        } else {
            &[]
        }
    }

    /// Whether the per-step scalars depend on how many times the optimizer advanced (Adam's
    /// bias correction), as opposed to only on whether it is the first step.
    pub fn counts_steps(&self) -> bool {
        self.is_adam()
    }

    /// Scalars for an advance made when the optimizer has already advanced `count` times
    /// (`count`: int64 scalar).
    pub fn scalars(&self, b: &mut Builder, count: ValueId) -> StepScalars {
        let mut sc = StepScalars {
            first: None,
            inv_bc1: None,
            sqrt_bc2: None,
            consts: Default::default(),
        };
        if self.momentum != 0.0 {
            let zero = b.scalar(DType::I64, 0.0);
            sc.first = Some(b.op(Op::Equal, &[count, zero], vec![]));
        }
        if self.is_adam() {
            // t = count + 1, in float64 as torch computes `1 - beta ** step` in Python
            let c = b.cast(count, DType::F64);
            let one = b.scalar(DType::F64, 1.0);
            let t = b.add(c, one);
            let b1 = b.scalar(DType::F64, self.betas.0);
            let b2 = b.scalar(DType::F64, self.betas.1);
            let p1 = b.op(Op::Pow, &[b1, t], vec![]);
            let p2 = b.op(Op::Pow, &[b2, t], vec![]);
            let bc1 = b.sub(one, p1);
            let bc2 = b.sub(one, p2);
            let inv = b.div(one, bc1);
            let sq = b.unary(Op::Sqrt, bc2);
            sc.inv_bc1 = Some(b.cast(inv, DType::F32));
            sc.sqrt_bc2 = Some(b.cast(sq, DType::F32));
        }
        sc
    }

    /// Advances the optimizer once for parameter `w` with gradient `g` and slots `state`
    /// (aligned with `slots()`): returns the direction and the new slots.
    pub fn advance(
        &self,
        b: &mut Builder,
        w: ValueId,
        g: ValueId,
        state: &[ValueId],
        sc: &mut StepScalars,
    ) -> Advance {
        let dt = b.dtype(w);
        let wd = self.weight_decay;
        let mut g = g;
        if wd != 0.0 && self.kind != OptimizerKind::AdamW {
            let decay = sc.scale(b, w, wd);
            g = b.add(g, decay);
        }
        if self.is_adam() {
            let (m, v) = (state[0], state[1]);
            // m ← m + (1 − β1)(g − m)
            let diff = b.sub(g, m);
            let step = sc.scale(b, diff, 1.0 - self.betas.0);
            let m_new = b.add(m, step);
            // v ← β2·v + (1 − β2)·g·g
            let vb = sc.scale(b, v, self.betas.1);
            let gg = sc.scale(b, g, 1.0 - self.betas.1);
            let gg = b.mul(gg, g);
            let v_new = b.add(vb, gg);
            let sqrt_bc2 = cast_to(b, sc.sqrt_bc2.expect("adam scalars"), dt);
            let inv_bc1 = cast_to(b, sc.inv_bc1.expect("adam scalars"), dt);
            let root = b.unary(Op::Sqrt, v_new);
            let denom = b.div(root, sqrt_bc2);
            let eps = sc.constant(b, dt, self.eps);
            let denom = b.add(denom, eps);
            let ratio = b.div(m_new, denom);
            let mut d = b.mul(ratio, inv_bc1);
            if self.kind == OptimizerKind::AdamW && wd != 0.0 {
                let decay = sc.scale(b, w, wd);
                d = b.add(d, decay);
            }
            Advance {
                d,
                slots: vec![m_new, v_new],
            }
        } else if self.momentum != 0.0 {
            let buf = state[0];
            let mb = sc.scale(b, buf, self.momentum);
            let gd = if self.dampening != 0.0 {
                sc.scale(b, g, 1.0 - self.dampening)
            } else {
                g
            };
            let later = b.add(mb, gd);
            let first = sc.first.expect("momentum scalars");
            let buf_new = b.where_(first, g, later);
            let d = if self.nesterov {
                let nb = sc.scale(b, buf_new, self.momentum);
                b.add(g, nb)
            } else {
                buf_new
            };
            Advance {
                d,
                slots: vec![buf_new],
            }
        } else {
            Advance {
                d: g,
                slots: vec![],
            }
        }
    }
}
