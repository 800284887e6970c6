//! The named layouts of the GeN construct: the `If`'s outputs and the roots of a probe clone.

use crate::pipeline::context::TrainPlan;
use crate::pipeline::layout::Layout;

/// Names one output of the GeN `If` (both branches write it, the main graph reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GenOut {
    /// The lr the step applies.
    Lr,
    /// bool scalar: the probes ran (`gen.applied`).
    Applied,
    /// float32 [3]: [L(w − Δ), L(w + Δ), L(w)] (zeros on steps without probes).
    ProbeLosses,
    /// Reference compat: the direction of parameter `param` after the second advance.
    Direction(usize),
    /// Reference compat: optimizer slot `slot` of parameter `param` after the second advance.
    OptSlot { param: usize, slot: usize },
    /// Reference compat: buffer `i` after the probes' running-statistics updates.
    Buffer(usize),
    /// The controller's carried value `k` for the next step.
    ControllerState(usize),
    /// The controller's extra reported output `k`.
    ControllerOutput(usize),
}

/// How many values of each kind the `If` carries besides lr, applied and the probe losses.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenShape {
    /// Reference compat: the twice-advanced optimizer state and the buffers come out of the `If`.
    pub compat: bool,
    pub buffers: usize,
    pub controller_state: usize,
    pub controller_outputs: usize,
}

/// The `If`'s outputs: lr, applied, probe losses; in reference compat each parameter's direction
/// and slots, then the buffers; then the controller's state and outputs.
pub fn if_layout(plan: &TrainPlan, shape: GenShape) -> Layout<GenOut> {
    let mut keys = vec![GenOut::Lr, GenOut::Applied, GenOut::ProbeLosses];
    if shape.compat {
        for (param, p) in plan.params.iter().enumerate() {
            keys.push(GenOut::Direction(param));
            keys.extend((0..p.slots.len()).map(|slot| GenOut::OptSlot { param, slot }));
        }
        keys.extend((0..shape.buffers).map(GenOut::Buffer));
    }
    keys.extend((0..shape.controller_state).map(GenOut::ControllerState));
    keys.extend((0..shape.controller_outputs).map(GenOut::ControllerOutput));
    Layout::new(keys)
}

/// Names one root of a probe clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeRoot {
    Loss,
    /// The next value of carried buffer `i` (reference compat: the probes update them).
    Buffer(usize),
}

/// The roots a probe clones: the loss, then each buffer's next value.
pub fn probe_roots(buffers: usize) -> Layout<ProbeRoot> {
    let mut keys = vec![ProbeRoot::Loss];
    keys.extend((0..buffers).map(ProbeRoot::Buffer));
    Layout::new(keys)
}
