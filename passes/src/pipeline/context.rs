//! What the passes hand to each other: the [`Context`], and the training step the train stages
//! build up in it ([`TrainPlan`]: per-parameter updates, what GeN added, the carried state by
//! name).

use super::layout::Layout;
use super::optimizer::{Optimizer, Slot};
use crate::ir::ValueId;
use crate::options::CompileOptions;

/// What the training passes hand to each other.
#[derive(Debug, Default)]
pub struct Context {
    pub options: CompileOptions,
    /// The scalar loss (set by the loss pass).
    pub loss: Option<ValueId>,
    /// Trainable parameters: graph inputs with initializer defaults (set by parameter discovery).
    pub params: Vec<ValueId>,
    /// Carried non-parameter state such as BatchNorm running statistics: (input, updated output).
    pub buffers: Vec<(ValueId, ValueId)>,
    /// One gradient per parameter, aligned with `params` (set by autodiff).
    pub grads: Vec<ValueId>,
    /// Names of the user's model inputs and outputs before any training pass.
    pub model_inputs: Vec<String>,
    pub model_outputs: Vec<String>,
    /// Inputs the loss pass added (labels).
    pub label_inputs: Vec<ValueId>,
    /// Free-form notes passes leave for the contract's `config` (JSON values).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The training step being built by the train stages (optimizer, GeN, update, contract).
    pub train: Option<TrainPlan>,
    /// Dropouts lowered to explicit masks (set by training-mode lowering): a deterministic
    /// clone of the forward graph (GeN probes) maps each `output` to its `input`.
    pub dropouts: Vec<LoweredDropout>,
    /// Warnings for the user (the CLI prints them), e.g. parameters folded by the exporter.
    pub warnings: Vec<String>,
}

/// A Dropout lowered to an explicit mask: `output = input · Cast(mask) / (1 − ratio)`.
/// Replacing `output` by `input` in a clone makes that clone deterministic.
#[derive(Clone, Debug, PartialEq)]
pub struct LoweredDropout {
    pub input: ValueId,
    pub output: ValueId,
    /// The bool keep-mask (true = kept), also the Dropout's second output.
    pub mask: ValueId,
    pub ratio: f64,
}

/// One optimizer state slot of one parameter.
#[derive(Clone, Copy, Debug)]
pub struct SlotState {
    pub slot: Slot,
    /// The carried state input.
    pub input: ValueId,
    /// Its value for the next step.
    pub next: ValueId,
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
    /// Aligned with `Optimizer::slots`.
    pub slots: Vec<SlotState>,
}

/// A probe input `probe.<data>`: the probe batch's value of data input `data`.
#[derive(Clone, Debug)]
pub struct ProbeInput {
    pub input: ValueId,
    pub data: ValueId,
    /// The name of `data` (the contract's `probe_data` maps the probe input to it).
    pub data_name: String,
}

/// A value the GeN controller carries from step to step: an input with a default and the
/// `If`'s output for the next step.
#[derive(Clone, Copy, Debug)]
pub struct ControllerState {
    pub input: ValueId,
    pub next: ValueId,
    pub role: Role,
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
    pub probe_inputs: Vec<ProbeInput>,
    /// The controller's extra reported outputs: (output name and contract key, value).
    pub controller_outputs: Vec<(String, ValueId)>,
}

/// Role of a carried value in the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    Buffer,
    Optimizer,
    Step,
    Lr,
    /// A GeN controller's own state (the adaptive rule's phase, counters, averages, radius).
    Gen,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Param => "param",
            Role::Buffer => "buffer",
            Role::Optimizer => "optimizer",
            Role::Step => "step",
            Role::Lr => "lr",
            Role::Gen => "gen",
        }
    }
}

/// Names one carried value of the training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKey {
    Param(usize),
    Buffer(usize),
    /// Optimizer slot `slot` (index into `Optimizer::slots`) of parameter `param`.
    Optimizer {
        param: usize,
        slot: usize,
    },
    /// The optimizer's own advance count (reference compat with Adam).
    OptimizerStep,
    Step,
    Lr,
    /// The GeN controller's carried value `k`.
    Controller(usize),
}

/// One carried value: the input, its value for the next step and its contract role.
#[derive(Clone, Copy, Debug)]
pub struct Carried {
    pub key: StateKey,
    pub input: ValueId,
    pub next: ValueId,
    pub role: Role,
}

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
    /// The GeN controller's own carried state (none without GeN and for the paper rule).
    pub controller_state: Vec<ControllerState>,
    /// Every carried value in contract order (set by apply-update).
    pub carried: Vec<Carried>,
}

impl TrainPlan {
    /// The carried values in contract order: parameters, buffers, optimizer slots (parameter
    /// by parameter), the optimizer's own step, the step, the lr, the controller's state.
    pub fn state_layout(&self) -> Layout<StateKey> {
        let mut keys: Vec<StateKey> = (0..self.params.len()).map(StateKey::Param).collect();
        keys.extend((0..self.buffers_next.len()).map(StateKey::Buffer));
        for (param, p) in self.params.iter().enumerate() {
            keys.extend((0..p.slots.len()).map(|slot| StateKey::Optimizer { param, slot }));
        }
        if self.opt_step.is_some() {
            keys.push(StateKey::OptimizerStep);
        }
        keys.extend([StateKey::Step, StateKey::Lr]);
        keys.extend((0..self.controller_state.len()).map(StateKey::Controller));
        Layout::new(keys)
    }
}
