//! Loss attachment (SPEC 1a): chooses the value to minimise and, for a model that outputs
//! predictions, adds the labels input and the loss.
//!
//! - `--loss auto`: the model's scalar float output if it has exactly one (and no `--logits`);
//!   otherwise cross-entropy on the float output named `logits`, or on the only float output.
//! - cross-entropy: over the last axis of the logits, int64 labels shaped like the logits
//!   without that axis, mean over the positions whose label is not −100 (PyTorch's
//!   conventions): logits [.., C] are flattened to [N, C] for SoftmaxCrossEntropyLoss (classes
//!   on axis 1) with ignore_index −100.
//! - mse: mean of the squared difference over all elements, labels shaped like the prediction.
//!
//! Needs: nothing. Guarantees: `Context::loss` is a float scalar; `Context::label_inputs`
//! holds the added labels input (a graph input without default).

use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::text::type_text;
use crate::ir::{Attr, Builder, DType, Dim, Graph, Model, Op, TensorType, Type, ValueId};
use crate::options::LossKind;
use serde_json::json;

pub struct AttachLoss;

/// PyTorch's default ignore_index for cross-entropy.
pub const IGNORE_INDEX: i64 = -100;

#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("the model has no floating-point output to compute a loss from (outputs: {outputs})")]
    NoFloatOutput { outputs: String },
    #[error(
        "the model has several floating-point outputs ({outputs}) and none is named 'logits': \
         name the one to train with --logits NAME"
    )]
    Ambiguous { outputs: String },
    #[error("--logits '{name}': the model has no value of that name (outputs: {outputs})")]
    UnknownLogits { name: String, outputs: String },
    #[error(
        "'{name}' is not a floating-point tensor (type {ty}); the loss needs float predictions"
    )]
    NotFloat { name: String, ty: String },
    #[error(
        "cross-entropy needs logits of known rank with the classes on the last axis; '{name}' \
         has type {ty}"
    )]
    BadLogits { name: String, ty: String },
    #[error(
        "the labels input '{name}' would clash with a value of the model of the same name; \
         choose another name with --labels NAME"
    )]
    LabelsTaken { name: String },
}

impl Pass for AttachLoss {
    fn name(&self) -> &'static str {
        "attach-loss"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let err = |e| Error::stage("loss", e);
        let g = &mut m.graph;
        let opts = &cx.options;
        let floats: Vec<ValueId> = g
            .outputs
            .iter()
            .copied()
            .filter(|&o| g.ty(o).dtype().is_some_and(DType::is_float))
            .collect();
        let scalars: Vec<ValueId> = floats
            .iter()
            .copied()
            .filter(|&o| g.ty(o).rank() == Some(0))
            .collect();
        if opts.loss == LossKind::Auto && opts.logits.is_none() && scalars.len() == 1 {
            cx.loss = Some(scalars[0]);
            cx.config.insert("loss".into(), json!("model"));
            return Ok(false);
        }
        let pred = prediction(g, opts.logits.as_deref(), &floats).map_err(err)?;
        if !g.ty(pred).dtype().is_some_and(DType::is_float) {
            return Err(err(LossError::NotFloat {
                name: g.name(pred).to_string(),
                ty: type_text(g.ty(pred)),
            }));
        }
        if g.by_name(&opts.labels).is_some() {
            return Err(err(LossError::LabelsTaken {
                name: opts.labels.clone(),
            }));
        }
        let (loss, labels, kind) = match opts.loss {
            LossKind::Mse => {
                let (l, y) = mse(g, opset, pred, &opts.labels);
                (l, y, "mse")
            }
            _ => {
                if let Some(w) = channels_first_warning(g, pred) {
                    cx.warnings.push(w);
                }
                let (l, y) = cross_entropy(g, opset, pred, &opts.labels).map_err(err)?;
                cx.config.insert("ignore_index".into(), json!(IGNORE_INDEX));
                (l, y, "cross-entropy")
            }
        };
        let name = g.fresh_name("loss");
        g.rename(loss, &name);
        cx.config.insert("loss".into(), json!(kind));
        cx.config
            .insert("logits".into(), json!(g.name(pred).to_string()));
        cx.config
            .insert("labels".into(), json!(g.name(labels).to_string()));
        cx.loss = Some(loss);
        cx.label_inputs.push(labels);
        Ok(true)
    }
}

/// The predictions the loss is taken of: `--logits NAME`, else the float output named
/// "logits", else the only float output.
fn prediction(g: &Graph, logits: Option<&str>, floats: &[ValueId]) -> Result<ValueId, LossError> {
    let outputs = || {
        g.outputs
            .iter()
            .map(|&o| format!("'{}' {}", g.name(o), type_text(g.ty(o))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = logits {
        return g.by_name(name).ok_or_else(|| LossError::UnknownLogits {
            name: name.to_string(),
            outputs: outputs(),
        });
    }
    if let Some(&o) = floats.iter().find(|&&o| g.name(o) == "logits") {
        return Ok(o);
    }
    match floats {
        [one] => Ok(*one),
        [] => Err(LossError::NoFloatOutput { outputs: outputs() }),
        _ => Err(LossError::Ambiguous { outputs: outputs() }),
    }
}

/// Operators whose outputs are channels-first ([N, C, spatial...]).
fn channels_first(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv
            | Op::ConvTranspose
            | Op::BatchNormalization
            | Op::InstanceNormalization
            | Op::GroupNormalization
            | Op::MaxPool
            | Op::AveragePool
            | Op::Resize
            | Op::Upsample
            | Op::DepthToSpace
    )
}

/// A warning when cross-entropy over the last axis meets logits of rank >= 4 that a
/// channels-first operator produced (directly or through one elementwise sum or product):
/// a segmentation head whose classes are on axis 1, which PyTorch's own cross_entropy would
/// use.
fn channels_first_warning(g: &Graph, logits: ValueId) -> Option<String> {
    let ty = g.ty(logits);
    if ty.rank()? < 4 {
        return None;
    }
    let node = g.node(g.producer(logits)?);
    let sources: Vec<&Op> = if matches!(node.op, Op::Add | Op::Sub | Op::Mul | Op::Sum) {
        node.inputs
            .iter()
            .flatten()
            .filter_map(|&v| Some(&g.node(g.producer(v)?).op))
            .collect()
    } else {
        vec![&node.op]
    };
    let op = sources.into_iter().find(|op| channels_first(op))?;
    Some(format!(
        "cross-entropy is taken over the last axis of '{}' ({}), which comes from a \
         channels-first operator ({op}): if its classes are on axis 1 ([N, C, H, W] \
         segmentation logits), output them channels-last (e.g. logits.permute(0, 2, 3, 1) in \
         the model) so that the labels are [N, H, W]",
        g.name(logits),
        type_text(ty),
    ))
}

/// Mean softmax cross-entropy over the last axis, ignore_index −100.
fn cross_entropy(
    g: &mut Graph,
    opset: i64,
    logits: ValueId,
    labels_name: &str,
) -> Result<(ValueId, ValueId), LossError> {
    let shape: Vec<Dim> = match g.ty(logits).shape() {
        Some(s) if !s.is_empty() => s.to_vec(),
        _ => {
            return Err(LossError::BadLogits {
                name: g.name(logits).to_string(),
                ty: type_text(g.ty(logits)),
            })
        }
    };
    let r = shape.len();
    let label_ty = TensorType::new(DType::I64, Some(shape[..r - 1].to_vec()));
    let labels = g.add_input(labels_name, Type::Tensor(label_ty));
    let mut b = Builder::new(g, opset, "loss/");
    let (scores, lab) = match r {
        1 => (b.unsqueeze(logits, &[0]), b.unsqueeze(labels, &[0])),
        2 => (logits, labels),
        _ => {
            let to2 = match shape[r - 1].fixed() {
                Some(c) => b.ints(&[-1, c]),
                None => {
                    let m1 = b.ints(&[-1]);
                    let c = b.op(Op::Shape, &[logits], vec![("start", Attr::Int(-1))]);
                    b.op(Op::Concat, &[m1, c], vec![("axis", Attr::Int(0))])
                }
            };
            let to1 = b.ints(&[-1]);
            (b.reshape(logits, to2), b.reshape(labels, to1))
        }
    };
    let loss = b.op(
        Op::SoftmaxCrossEntropyLoss,
        &[scores, lab],
        vec![
            ("reduction", Attr::String(b"mean".to_vec())),
            ("ignore_index", Attr::Int(IGNORE_INDEX)),
        ],
    );
    Ok((loss, labels))
}

/// Mean squared error over all elements.
fn mse(g: &mut Graph, opset: i64, pred: ValueId, labels_name: &str) -> (ValueId, ValueId) {
    let ty = g.ty(pred).clone();
    let labels = g.add_input(labels_name, ty);
    let mut b = Builder::new(g, opset, "loss/");
    let d = b.sub(pred, labels);
    let sq = b.mul(d, d);
    let loss = match b.rank(sq) {
        Some(0) => sq,
        Some(r) => {
            let axes: Vec<i64> = (0..r as i64).collect();
            b.reduce_mean(sq, &axes, false)
        }
        None => {
            let flat = b.ints(&[-1]);
            let f = b.reshape(sq, flat);
            b.reduce_mean(f, &[0], false)
        }
    };
    (loss, labels)
}
