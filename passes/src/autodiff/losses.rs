//! Gradients of the loss operators: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss
//! (classes on axis 1, any number of trailing axes, optional class weights, ignore_index,
//! reductions none/sum/mean; mean divides by the summed weights of non-ignored positions).
//! Opsets 13+. Labels and weights are stop-gradient. The one-hot of the labels is built with
//! Equal against Range(C), so every float type works.

use super::activation::log_softmax_grad;
use super::cx::{GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::{Attr, DType, Op, Tensor, ValueId};

/// Labels, made safe to index with (ignored positions set to class 0), and the per-position
/// gradient factor dL/d(loss_i), unsqueezed at axis 1 to broadcast over the classes.
struct Positions {
    safe: ValueId,
    factor: ValueId,
}

fn positions(cx: &mut GradCx, scores: ValueId, dy: ValueId) -> Result<Positions, GradError> {
    let (labels, y) = (cx.x(1)?, cx.y(0)?);
    let lab = if cx.b.dtype(labels) == DType::I64 {
        labels
    } else {
        cx.b.cast(labels, DType::I64)
    };
    let dt = cx.b.dtype(scores);
    let valid = cx.node.attr_int("ignore_index").map(|ii| {
        let c = cx.b.scalar(DType::I64, ii as f64);
        let eq = cx.b.op(Op::Equal, &[lab, c], vec![]);
        cx.b.op(Op::Not, &[eq], vec![])
    });
    let safe = match valid {
        Some(v) => {
            let zero = cx.b.scalar(DType::I64, 0.0);
            cx.b.where_(v, lab, zero)
        }
        None => lab,
    };
    let class_w = cx.opt_x(2).map(|w| {
        cx.b.op(Op::Gather, &[w, safe], vec![("axis", Attr::Int(0))])
    });
    let weight = match (class_w, valid) {
        (Some(w), Some(v)) => Some(cx.b.keep_where(v, w)),
        (None, Some(v)) => Some(cx.b.cast(v, dt)),
        (w, None) => w,
    };
    let reduction = cx.str_attr("reduction", "mean");
    let factor = match (reduction.as_str(), weight) {
        ("none" | "sum", Some(w)) => cx.b.mul(w, dy),
        ("none" | "sum", None) => dy,
        ("mean", w) => {
            let denom = match w {
                Some(w) => cx.b.sum_all(w),
                None => {
                    let n = cx.b.count_ratio(lab, y);
                    cx.b.cast_to_like(n, scores)
                }
            };
            let c = cx.b.div(dy, denom);
            match w {
                Some(w) => cx.b.mul(w, c),
                None => c,
            }
        }
        (other, _) => return Err(GradError::Unsupported(format!("reduction '{other}'"))),
    };
    let factor = match cx.b.rank(factor) {
        Some(0) => factor,
        _ => cx.b.unsqueeze(factor, &[1]),
    };
    Ok(Positions { safe, factor })
}

/// Up to this many classes the class ids are a constant, beyond it a Range.
const MAX_CONST_CLASSES: i64 = 4096;

/// [N, C, d...] one-hot (in the scores' type) of labels [N, d...] over axis 1: the labels
/// compared with the class ids 0..C laid along axis 1.
fn one_hot(cx: &mut GradCx, labels: ValueId, scores: ValueId) -> Result<ValueId, GradError> {
    let r = cx.rank(scores)?;
    let view: Vec<i64> = (0..r).map(|i| if i == 1 { -1 } else { 1 }).collect();
    let classes = match cx.dim(scores, 1).ok().filter(|&c| c <= MAX_CONST_CLASSES) {
        Some(c) => {
            let dims: Vec<i64> = view.iter().map(|&d| if d < 0 { c } else { 1 }).collect();
            cx.b.constant(Tensor::from_i64(&dims, &(0..c).collect::<Vec<_>>()))
        }
        None => {
            let c1 = cx.b.shape_part(scores, 1, Some(2));
            let c = cx.b.squeeze(c1, &[0]);
            let zero = cx.b.scalar(DType::I64, 0.0);
            let one = cx.b.scalar(DType::I64, 1.0);
            let ids = cx.b.op(Op::Range, &[zero, c, one], vec![]);
            let vs = cx.b.ints(&view);
            cx.b.reshape(ids, vs)
        }
    };
    let lu = cx.b.unsqueeze(labels, &[1]);
    let eq = cx.b.op(Op::Equal, &[lu, classes], vec![]);
    let dt = cx.b.dtype(scores);
    Ok(cx.b.cast(eq, dt))
}

/// dScores = (softmax − onehot) · factor, plus the LogSoftmax gradient of the log_prob
/// output when it is used.
pub(super) fn softmax_cross_entropy(cx: &mut GradCx) -> GradResult {
    let scores = cx.x(0)?;
    let lp = match cx.node.output(1) {
        Some(lp) => lp,
        None => {
            cx.b.op(Op::LogSoftmax, &[scores], vec![("axis", Attr::Int(1))])
        }
    };
    let mut parts = Vec::new();
    if let Some(dy) = cx.dy(0) {
        let pos = positions(cx, scores, dy)?;
        let p = cx.b.unary(Op::Exp, lp);
        let oh = one_hot(cx, pos.safe, scores)?;
        let d = cx.b.sub(p, oh);
        parts.push(cx.b.mul(d, pos.factor));
    }
    if let Some(dlp) = cx.dy(1) {
        parts.push(log_softmax_grad(cx, lp, dlp, 1));
    }
    Ok(vec![Some(cx.b.add_all(&parts)), None, None])
}

/// dInput = −onehot · factor.
pub(super) fn nll(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let pos = positions(cx, x, dy)?;
    let oh = one_hot(cx, pos.safe, x)?;
    let t = cx.b.mul(oh, pos.factor);
    Ok(vec![Some(cx.b.neg(t)), None, None])
}
