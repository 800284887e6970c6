//! Normalization layers: the output has the input's type; BatchNorm's and LayerNorm's extra
//! outputs are statistics.

use super::cx::{norm_axis, Cx, Inferred, Outcome};
use crate::ir::{DType, Dim};

/// BatchNormalization: y, then running/saved statistics of the scale's type.
pub(super) fn batch_norm(cx: &Cx) -> Outcome {
    let stat = cx.same_as(1);
    Ok(vec![
        cx.same_as(0),
        stat.clone(),
        stat.clone(),
        stat.clone(),
        stat,
    ])
}

/// LayerNormalization: y, then mean and inverse std dev (`stash_type`), reduced from `axis`.
pub(super) fn layer_norm(cx: &Cx) -> Outcome {
    let axis = cx.node.attr_int("axis").unwrap_or(-1);
    let stash = cx
        .node
        .attr_int("stash_type")
        .and_then(|c| i32::try_from(c).ok())
        .and_then(DType::from_onnx)
        .unwrap_or(DType::F32);
    let stat_shape = cx.in_shape(0).and_then(|s| {
        let a = norm_axis(axis, s.len())?;
        Some(
            s.iter()
                .enumerate()
                .map(|(i, d)| if i < a { d.clone() } else { Dim::Fixed(1) })
                .collect(),
        )
    });
    Ok(vec![
        cx.same_as(0),
        Inferred::tensor(stash, stat_shape.clone()),
        Inferred::tensor(stash, stat_shape),
    ])
}
