//! The `gen.contract` metadata (docs/CONTRACT.md) and the passes that give a train or eval
//! graph its final outputs.
//!
//! `train-contract` needs `cx.train` with `carried` set (apply-update). It names the outputs
//! (`loss`, `<input>.next` for every carried value, `gen.applied`, `gen.probe_losses`,
//! `accuracy` for classification), makes them the graph's outputs (everything else is left to
//! the final dead-code elimination) and writes the contract JSON into
//! `metadata_props["gen.contract"]`.
//! `eval-contract` needs `cx.loss` and `cx.params`: outputs `loss`, `accuracy` (classification)
//! and the model's outputs; state lists the parameters and buffers as inputs only.

use super::build::{cast_to, reserved_prefix};
use super::context::StateKey;
use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::{Builder, DType, Graph, Model, Op, ValueDef, ValueId};
use crate::options::{GenCompat, LossKind, OptimizerKind, ProbeBatch};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

pub use gen_format::contract::{
    Contract, Controls, GraphKind, Outputs, StateEntry, StateRole, CONTRACT_KEY,
};

/// The contract stored in `m`'s metadata, if there is a valid one.
pub fn read(m: &Model) -> Option<Contract> {
    Contract::parse(m.metadata(CONTRACT_KEY)?).ok()
}

/// Stores `contract` in `m`'s metadata.
pub fn write(contract: &Contract, m: &mut Model) {
    m.set_metadata(CONTRACT_KEY, contract.to_json());
}

/// Records the companion eval graph's file name (written beside the train graph) in the
/// contract of `train`. The command line calls this once it knows the output path.
pub fn set_eval_model(train: &mut Model, file_name: &str) {
    if let Some(mut c) = read(train) {
        c.eval_model = Some(file_name.to_string());
        write(&c, train);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the {0} contract needs a loss")]
    NoLoss(&'static str),
    #[error("the train contract needs the optimizer and apply-update stages")]
    NoPlan,
}

/// Names of values captured by subgraphs of `g`'s nodes (those must keep their names).
fn captured_names(g: &Graph) -> HashSet<String> {
    let mut out = HashSet::new();
    for &n in g.order() {
        for sg in g.node(n).subgraphs() {
            for o in sg.outer_values() {
                out.insert(sg.name(o).to_string());
            }
        }
    }
    out
}

/// Gives `v` the output name `desired` (or a fresh variant when taken): renamed in place when
/// that is safe, else through an `Identity`. `used` collects values already chosen as outputs.
fn name_output(
    b: &mut Builder,
    v: ValueId,
    desired: &str,
    captured: &HashSet<String>,
    used: &mut HashSet<ValueId>,
) -> ValueId {
    if b.g.name(v) == desired && !used.contains(&v) {
        used.insert(v);
        return v;
    }
    let renamable = matches!(b.g.value(v).def, ValueDef::Node(..))
        && !captured.contains(b.g.name(v))
        && !used.contains(&v)
        && b.g.by_name(desired).is_none();
    if renamable {
        b.g.rename(v, desired);
        used.insert(v);
        return v;
    }
    let id = b.op(Op::Identity, &[v], vec![]);
    let fresh = b.g.fresh_name(desired);
    b.g.rename(id, &fresh);
    used.insert(id);
    id
}

/// The outputs a contract pass gives the graph, in order, and the named ones the contract lists.
struct GraphOutputs {
    captured: HashSet<String>,
    used: HashSet<ValueId>,
    list: Vec<ValueId>,
    named: Outputs,
}

impl GraphOutputs {
    fn new(g: &Graph) -> Self {
        GraphOutputs {
            captured: captured_names(g),
            used: HashSet::new(),
            list: Vec::new(),
            named: Outputs::default(),
        }
    }

    /// Appends `v` as an output named `desired` (see `name_output`).
    fn add(&mut self, b: &mut Builder, v: ValueId, desired: &str) -> ValueId {
        let out = name_output(b, v, desired, &self.captured, &mut self.used);
        self.list.push(out);
        out
    }

    /// Appends `v` and lists it in the contract's `outputs` in the field `slot` picks.
    fn add_named(
        &mut self,
        b: &mut Builder,
        v: ValueId,
        desired: &str,
        slot: fn(&mut Outputs) -> &mut Option<String>,
    ) -> ValueId {
        let out = self.add(b, v, desired);
        *slot(&mut self.named) = Some(b.g.name(out).to_string());
        out
    }

    /// Fills `contract` with what every graph's contract says (data, state, named outputs, the
    /// model's own inputs and outputs, config) and returns the graph's output list.
    fn finish(
        self,
        contract: &mut Contract,
        data: Vec<String>,
        state: Vec<StateEntry>,
        cx: &Context,
    ) -> Vec<ValueId> {
        contract.data = data;
        contract.state = state;
        contract.outputs = self.named;
        contract.model_inputs = cx.model_inputs.clone();
        contract.model_outputs = cx.model_outputs.clone();
        contract.config = config(cx);
        self.list
    }

    /// Appends `v` and lists it in the contract's `outputs` under `key` (a controller's own
    /// reported value).
    fn add_other(&mut self, b: &mut Builder, v: ValueId, key: &str) -> ValueId {
        let out = self.add(b, v, key);
        let name = b.g.name(out).to_string();
        self.named
            .other
            .insert(key.to_string(), Value::String(name));
        out
    }

    /// The accuracy output of a classification loss, if there is one.
    fn add_accuracy(&mut self, b: &mut Builder, class: Option<(ValueId, ValueId)>) {
        if let Some((logits, labels)) = class {
            let acc = accuracy(b, logits, labels);
            self.add_named(b, acc, "accuracy", |o| &mut o.accuracy);
        }
    }
}

/// The classification logits and labels of the loss, when there are such: integer labels
/// added by the loss stage and a float model output with one more axis.
pub fn classification(g: &Graph, cx: &Context) -> Option<(ValueId, ValueId)> {
    if cx.options.loss == LossKind::Mse {
        return None;
    }
    let labels: Vec<ValueId> = cx
        .label_inputs
        .iter()
        .copied()
        .filter(|&l| {
            g.ty(l)
                .dtype()
                .is_some_and(|d| !d.is_float() && d != DType::Bool)
        })
        .collect();
    let [labels] = labels.as_slice() else {
        return None;
    };
    let float_outputs: Vec<ValueId> = cx
        .model_outputs
        .iter()
        .filter_map(|n| g.by_name(n))
        .filter(|&v| g.ty(v).dtype().is_some_and(DType::is_float))
        .collect();
    let logits = match &cx.options.logits {
        Some(n) => g.by_name(n)?,
        None => match float_outputs.iter().find(|&&v| g.name(v) == "logits") {
            Some(&v) => v,
            None => match float_outputs.as_slice() {
                [v] => *v,
                _ => return None,
            },
        },
    };
    let (lr, yr) = (g.ty(logits).rank(), g.ty(*labels).rank());
    if let (Some(lr), Some(yr)) = (lr, yr) {
        if lr != yr + 1 {
            return None;
        }
    }
    Some((logits, *labels))
}

/// The `config` object: the options in effect plus what earlier passes noted.
pub fn config(cx: &Context) -> Map<String, Value> {
    let o = &cx.options;
    let mut c = Map::new();
    let opt = match o.optimizer {
        OptimizerKind::Sgd => "sgd",
        OptimizerKind::Momentum => "momentum",
        OptimizerKind::Adam => "adam",
        OptimizerKind::AdamW => "adamw",
    };
    c.insert("optimizer".into(), json!(opt));
    c.insert("lr".into(), json!(o.lr));
    c.insert("weight_decay".into(), json!(o.weight_decay()));
    match o.optimizer {
        OptimizerKind::Sgd => {}
        OptimizerKind::Momentum => {
            c.insert("momentum".into(), json!(o.momentum));
            c.insert("dampening".into(), json!(o.dampening));
            c.insert("nesterov".into(), json!(o.nesterov));
        }
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            c.insert("betas".into(), json!([o.betas.0, o.betas.1]));
            c.insert("eps".into(), json!(o.eps));
        }
    }
    c.insert("gen".into(), json!(o.gen));
    c.insert("lazy_freq".into(), json!(o.lazy_freq));
    c.insert(
        "compat".into(),
        json!(match o.compat {
            GenCompat::Default => "default",
            GenCompat::Reference => "reference",
        }),
    );
    c.insert(
        "probe_batch".into(),
        json!(match o.probe_batch {
            ProbeBatch::Next => "next",
            ProbeBatch::Current => "current",
        }),
    );
    c.insert(
        "loss".into(),
        json!(match o.loss {
            LossKind::Auto => "auto",
            LossKind::CrossEntropy => "cross-entropy",
            LossKind::Mse => "mse",
        }),
    );
    for (k, v) in &cx.config {
        c.insert(k.clone(), v.clone());
    }
    c
}

/// The data inputs' names: the model's inputs, then the labels.
fn data_names(g: &Graph, cx: &Context) -> Vec<String> {
    let mut names: Vec<String> = cx
        .model_inputs
        .iter()
        .filter(|n| {
            g.by_name(n)
                .is_some_and(|v| g.value(v).def == ValueDef::Input)
        })
        .cloned()
        .collect();
    for &l in &cx.label_inputs {
        let n = g.name(l).to_string();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The `train-contract` pass.
pub struct TrainContractPass;

impl Pass for TrainContractPass {
    fn name(&self) -> &'static str {
        "train-contract"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("train-contract", e);
        let loss = cx.loss.ok_or_else(|| err(ContractError::NoLoss("train")))?;
        let plan = cx
            .train
            .as_ref()
            .ok_or_else(|| err(ContractError::NoPlan))?;
        if plan.carried.is_empty() {
            return Err(err(ContractError::NoPlan));
        }
        let opset = m.opset();
        let prefix = reserved_prefix(&m.graph, "contract/");
        let mut outs = GraphOutputs::new(&m.graph);
        let data = data_names(&m.graph, cx);
        let class = classification(&m.graph, cx);
        let mut b = Builder::new(&mut m.graph, opset, &prefix);
        let loss_out = outs.add(&mut b, loss, "loss");
        let mut state = Vec::new();
        for c in &plan.carried {
            let in_name = b.g.name(c.input).to_string();
            let desired = format!("{in_name}.next");
            let out = if c.key == StateKey::Lr {
                outs.add_named(&mut b, c.next, &desired, |o| &mut o.lr)
            } else {
                outs.add(&mut b, c.next, &desired)
            };
            state.push(StateEntry {
                input: in_name,
                output: Some(b.g.name(out).to_string()),
                role: c.role,
            });
        }
        let mut contract = Contract::new(GraphKind::Train, b.g.name(loss_out).to_string());
        if let Some(gp) = &plan.gen {
            outs.add_named(&mut b, gp.applied, "gen.applied", |o| &mut o.gen_applied);
            outs.add_named(&mut b, gp.probe_losses, "gen.probe_losses", |o| {
                &mut o.probe_losses
            });
            contract.controls = Controls {
                lazy_freq: Some(b.g.name(gp.lazy_freq).to_string()),
                scale: Some(b.g.name(gp.scale).to_string()),
            };
            for p in &gp.probe_inputs {
                contract
                    .probe_data
                    .insert(b.g.name(p.input).to_string(), p.data_name.clone());
            }
            for (name, v) in &gp.controller_outputs {
                outs.add_other(&mut b, *v, name);
            }
        }
        outs.add_accuracy(&mut b, class);
        b.g.outputs = outs.finish(&mut contract, data, state, cx);
        write(&contract, m);
        Ok(true)
    }
}

/// The `eval-contract` pass.
pub struct EvalContractPass;

impl Pass for EvalContractPass {
    fn name(&self) -> &'static str {
        "eval-contract"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("eval-contract", e);
        let loss = cx.loss.ok_or_else(|| err(ContractError::NoLoss("eval")))?;
        let opset = m.opset();
        let prefix = reserved_prefix(&m.graph, "contract/");
        let mut outs = GraphOutputs::new(&m.graph);
        let data = data_names(&m.graph, cx);
        let class = classification(&m.graph, cx);
        let mut b = Builder::new(&mut m.graph, opset, &prefix);
        let loss_out = outs.add(&mut b, loss, "loss");
        outs.add_accuracy(&mut b, class);
        for n in &cx.model_outputs {
            if let Some(v) = b.g.by_name(n) {
                if outs.used.insert(v) {
                    outs.list.push(v);
                }
            }
        }
        let mut state = Vec::new();
        for &p in &cx.params {
            state.push(StateEntry {
                input: b.g.name(p).to_string(),
                output: None,
                role: StateRole::Param,
            });
        }
        for &(input, _) in &cx.buffers {
            state.push(StateEntry {
                input: b.g.name(input).to_string(),
                output: None,
                role: StateRole::Buffer,
            });
        }
        let mut contract = Contract::new(GraphKind::Eval, b.g.name(loss_out).to_string());
        b.g.outputs = outs.finish(&mut contract, data, state, cx);
        write(&contract, m);
        Ok(true)
    }
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
