//! The eval graph's inference-mode rewrite.
//!
//! `eval-mode`: BatchNormalization nodes exported in training mode (`training_mode = 1`, the
//! TorchScript exporter with `TrainingMode.TRAINING`) switch to inference mode (running
//! statistics used, none updated; any reader of the updated statistics reads the current
//! ones), and Dropout nodes lose their `training_mode` input (inference: identity). The
//! running statistics read by BatchNormalization become graph inputs with their initializer as
//! default, recorded in `cx.buffers` as (input, input), so the runtime can feed the train
//! graph's current buffers (same names) into the eval graph.
//! Needs: nothing. Guarantees: no node of the graph updates state or draws random numbers
//! for dropout.

use super::training_mode::make_state;
use super::{Context, Pass};
use crate::error::Result;
use crate::ir::{Attr, Model, Op, ValueDef, ValueId};

pub struct EvalModePass;

impl Pass for EvalModePass {
    fn name(&self) -> &'static str {
        "eval-mode"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let g = &mut m.graph;
        let mut changed = false;
        let mut stats: Vec<ValueId> = Vec::new();
        for n in g.order().to_vec() {
            match g.node(n).op {
                Op::BatchNormalization => {
                    let node = g.node(n);
                    if node.attr_int("training_mode") == Some(1) {
                        let mean = node.input(3);
                        let var = node.input(4);
                        let outs: Vec<Option<ValueId>> = node.outputs.clone();
                        for (slot, stat) in [(1, mean), (2, var)] {
                            if let (Some(Some(o)), Some(s)) = (outs.get(slot), stat) {
                                g.replace_uses(*o, s);
                                g.outputs.retain(|v| v != o);
                            }
                        }
                        let node = g.node_mut(n);
                        node.attrs.insert("training_mode".into(), Attr::Int(0));
                        node.outputs.truncate(1);
                        changed = true;
                    }
                    let node = g.node(n);
                    stats.extend([node.input(3), node.input(4)].into_iter().flatten());
                }
                Op::Dropout => {
                    let node = g.node_mut(n);
                    if node.inputs.len() > 2 {
                        node.inputs.truncate(2);
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        for s in stats {
            if g.value(s).def == ValueDef::Initializer {
                changed |= make_state(g, s);
            }
            if g.value(s).def == ValueDef::Input
                && g.value(s).init.is_some()
                && !cx.buffers.iter().any(|&(i, _)| i == s)
            {
                cx.buffers.push((s, s));
            }
        }
        Ok(changed)
    }
}

/// The loss and parameter stages of the gradient pipeline, as the eval graph needs them
/// (after `eval-mode`, so running statistics are buffers, not parameters).
pub fn loss_and_params(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Ok(vec![
        Box::new(super::loss::AttachLoss),
        Box::new(super::params::DiscoverParams),
    ])
}
