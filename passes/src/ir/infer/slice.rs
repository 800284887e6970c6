//! Split and Slice: sizes along the cut axes, and the values of a sliced small vector.

use super::cx::{norm_axis, Cx, Inferred, Outcome};
use crate::ir::Dim;

pub(super) fn split(cx: &Cx) -> Outcome {
    let node = cx.node;
    let n_out = node.outputs.len();
    let dt = cx.in_dtype(0);
    let axis = node.attr_int("axis").unwrap_or(0);
    let sizes = cx.ints_attr_or_input("split", 1);
    let Some(s) = cx.in_shape(0) else {
        return Ok(vec![Inferred::tensor(dt, None); n_out]);
    };
    let Some(a) = norm_axis(axis, s.len()) else {
        return Ok(vec![Inferred::tensor(dt, None); n_out]);
    };
    let parts = i128::try_from(n_out).unwrap_or(i128::MAX);
    Ok((0..n_out)
        .map(|k| {
            let mut o = s.clone();
            o[a] = match (&sizes, &s[a]) {
                (Some(sz), _) => sz.get(k).map(|&v| Dim::Fixed(v)).unwrap_or(Dim::Unknown),
                (None, Dim::Fixed(n)) => {
                    // equal chunks, the last one smaller (computed wide: no overflow)
                    let n = i128::from(*n);
                    let chunk = (n + parts - 1) / parts;
                    let size = if k + 1 == n_out {
                        n - chunk * (parts - 1)
                    } else {
                        chunk
                    };
                    i64::try_from(size).map(Dim::Fixed).unwrap_or(Dim::Unknown)
                }
                _ => Dim::Unknown,
            };
            Inferred::tensor(dt, Some(o))
        })
        .collect())
}

pub(super) fn slice(cx: &Cx) -> Outcome {
    let (shape, sym) = slice_shape(cx);
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape).with_sym(sym)])
}

/// The sliced shape, and the values of a sliced 1-D vector whose values are known.
fn slice_shape(cx: &Cx) -> (Option<Vec<Dim>>, Option<Vec<Dim>>) {
    let node = cx.node;
    let Some(s) = cx.in_shape(0) else {
        return (None, None);
    };
    let r = s.len();
    let optional = |i: usize| node.input(i).and_then(|_| cx.in_ints(i));
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        (
            node.attr_ints("starts").map(<[i64]>::to_vec),
            node.attr_ints("ends").map(<[i64]>::to_vec),
            node.attr_ints("axes").map(<[i64]>::to_vec),
            None,
        )
    } else {
        (cx.in_ints(1), cx.in_ints(2), optional(3), optional(4))
    };
    let has_axes_input = node.input(3).is_some() || node.attr_ints("axes").is_some();
    let (Some(starts), Some(ends)) = (starts, ends) else {
        // unknown bounds: the sliced axes lose their size, the others keep theirs
        let sliced: Option<Vec<usize>> = match &axes {
            Some(a) => a.iter().map(|&x| norm_axis(x, r)).collect(),
            None if !has_axes_input => cx.in_len(1).map(|n| (0..n).collect()),
            None => None,
        };
        let out = match sliced {
            Some(ax) => (0..r)
                .map(|i| match ax.contains(&i) {
                    true => Dim::Unknown,
                    false => s[i].clone(),
                })
                .collect(),
            None => vec![Dim::Unknown; r],
        };
        return (Some(out), None);
    };
    if has_axes_input && axes.is_none() {
        return (Some(vec![Dim::Unknown; r]), None);
    }
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let mut out = s.clone();
    let mut sym = None;
    for (k, &ax) in axes.iter().enumerate() {
        let (Some(a), Some(&start), Some(&end)) = (norm_axis(ax, r), starts.get(k), ends.get(k))
        else {
            return (Some(vec![Dim::Unknown; r]), None);
        };
        let step = steps.as_ref().and_then(|v| v.get(k).copied()).unwrap_or(1);
        let range = match &s[a] {
            Dim::Fixed(n) => slice_range(*n, start, end, step),
            _ => None,
        };
        out[a] = match &range {
            Some((lo, hi)) => Dim::Fixed(slice_len(*lo, *hi, step)),
            None => Dim::Unknown,
        };
        if r == 1 && step == 1 {
            if let (Some(v), Some((lo, hi))) = (cx.in_sym(0), range) {
                let (lo, hi) = (lo.max(0) as usize, hi.max(lo) as usize);
                sym = v.get(lo..hi).map(<[Dim]>::to_vec);
            }
        }
    }
    (Some(out), sym)
}

/// ONNX Slice's clamped (start, end) along an axis of size `n`; None for a zero step or a
/// negative size.
pub(crate) fn slice_range(n: i64, start: i64, end: i64, step: i64) -> Option<(i64, i64)> {
    if step == 0 || n < 0 {
        return None;
    }
    let fix = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    if step > 0 {
        Some((fix(start, 0, n), fix(end, 0, n)))
    } else {
        Some((fix(start, -1, n - 1), fix(end, -1, n - 1)))
    }
}

/// The number of elements a clamped range yields (computed wide: no overflow).
fn slice_len(lo: i64, hi: i64, step: i64) -> i64 {
    let (lo, hi, step) = (i128::from(lo), i128::from(hi), i128::from(step));
    let n = if step > 0 {
        (hi - lo + step - 1) / step
    } else {
        (lo - hi - step - 1) / -step
    };
    // a clamped range is at most the axis' size, which is an i64
    i64::try_from(n.max(0)).unwrap_or(i64::MAX)
}
