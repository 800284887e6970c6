//! Indexing: Gather (with the values of a gathered small vector), GatherElements, GatherND,
//! NonZero and OneHot. Scatters keep their data input's type (`elementwise::same_type`).

use super::cx::{norm_axis, Cx, Inferred, Outcome};
use crate::ir::{DType, Dim};

pub(super) fn gather(cx: &Cx) -> Outcome {
    let axis = cx.node.attr_int("axis").unwrap_or(0);
    let shape = match (cx.in_shape(0), cx.in_shape(1)) {
        (Some(d), Some(i)) => norm_axis(axis, d.len()).map(|a| {
            let mut s = d[..a].to_vec();
            s.extend(i);
            s.extend_from_slice(&d[a + 1..]);
            s
        }),
        _ => None,
    };
    let sym = match (cx.in_sym(0), cx.in_ints(1)) {
        (Some(v), Some(idx)) if axis == 0 => idx
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + v.len() as i64 } else { i };
                v.get(usize::try_from(j).ok()?).cloned()
            })
            .collect(),
        _ => None,
    };
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape).with_sym(sym)])
}

/// GatherElements: the data's type in the indices' shape.
pub(super) fn gather_elements(cx: &Cx) -> Outcome {
    cx.like_input(cx.in_shape(1))
}

pub(super) fn gather_nd(cx: &Cx) -> Outcome {
    let b = cx.node.attr_int("batch_dims").unwrap_or(0);
    let shape = match (cx.in_shape(0), cx.in_shape(1)) {
        (Some(d), Some(i)) => i.last().and_then(Dim::fixed).and_then(|k| {
            let from = usize::try_from(b.checked_add(k)?).ok()?;
            let mut s = i[..i.len() - 1].to_vec();
            s.extend_from_slice(d.get(from..).unwrap_or(&[]));
            Some(s)
        }),
        _ => None,
    };
    cx.like_input(shape)
}

/// NonZero: int64 indices [rank, count].
pub(super) fn non_zero(cx: &Cx) -> Outcome {
    let rank = cx
        .in_shape(0)
        .map(|s| Dim::Fixed(s.len() as i64))
        .unwrap_or(Dim::Unknown);
    Ok(vec![Inferred::tensor(
        DType::I64,
        Some(vec![rank, Dim::Unknown]),
    )])
}

/// OneHot: the values' type (shape not tracked).
pub(super) fn one_hot(cx: &Cx) -> Outcome {
    Ok(vec![Inferred::tensor(cx.in_dtype(2), None)])
}
