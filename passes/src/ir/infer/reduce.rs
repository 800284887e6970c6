//! Reductions (ReduceX, ArgMax/ArgMin, TopK) and the loss operators.

use super::cx::{norm_axis, Cx, Inferred, Outcome};
use crate::ir::{DType, Dim};

/// ReduceSum, ReduceMean, ...: `axes` from the attribute (older opsets) or input 1.
pub(super) fn reduce(cx: &Cx) -> Outcome {
    cx.like_input(reduce_shape(cx))
}

fn reduce_shape(cx: &Cx) -> Option<Vec<Dim>> {
    let node = cx.node;
    let s = cx.in_shape(0)?;
    let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
    let noop = node.attr_int("noop_with_empty_axes").unwrap_or(0) != 0;
    let axes = match node.attr_ints("axes") {
        Some(a) => Some(a.to_vec()),
        None if node.input(1).is_some() => Some(cx.in_ints(1)?),
        None => None,
    };
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&x| norm_axis(x, s.len()))
            .collect::<Option<_>>()?,
        _ if noop => return Some(s),
        _ => (0..s.len()).collect(),
    };
    Some(reduce_dims(&s, &axes, keep))
}

/// ArgMax, ArgMin: int64 indices along one axis.
pub(super) fn arg_max_min(cx: &Cx) -> Outcome {
    let keep = cx.node.attr_int("keepdims").unwrap_or(1) != 0;
    let axis = cx.node.attr_int("axis").unwrap_or(0);
    let shape = cx.in_shape(0).and_then(|s| {
        let a = norm_axis(axis, s.len())?;
        Some(reduce_dims(&s, &[a], keep))
    });
    Ok(vec![Inferred::tensor(DType::I64, shape)])
}

/// TopK: values and int64 indices, `k` along `axis`.
pub(super) fn top_k(cx: &Cx) -> Outcome {
    let axis = cx.node.attr_int("axis").unwrap_or(-1);
    let k = cx.in_ints(1);
    let shape = cx.in_shape(0).and_then(|mut s| {
        let a = norm_axis(axis, s.len())?;
        s[a] = k
            .and_then(|k| k.first().copied())
            .map(Dim::Fixed)
            .unwrap_or(Dim::Unknown);
        Some(s)
    });
    Ok(vec![
        Inferred::tensor(cx.in_dtype(0), shape.clone()),
        Inferred::tensor(DType::I64, shape),
    ])
}

/// SoftmaxCrossEntropyLoss, NegativeLogLikelihoodLoss: the loss (a scalar unless
/// `reduction="none"`), then the log-probabilities.
pub(super) fn loss(cx: &Cx) -> Outcome {
    let shape = match cx.node.attr_str("reduction").unwrap_or("mean") {
        "none" => cx.in_shape(1),
        _ => Some(vec![]),
    };
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape), cx.same_as(0)])
}

fn reduce_dims(s: &[Dim], axes: &[usize], keep: bool) -> Vec<Dim> {
    s.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            if axes.contains(&i) {
                keep.then_some(Dim::Fixed(1))
            } else {
                Some(d.clone())
            }
        })
        .collect()
}
