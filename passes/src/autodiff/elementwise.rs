//! Gradients of elementwise arithmetic: Add, Sub, Mul, Div, Neg, Pow, Sqrt, Exp, Log,
//! Reciprocal, Abs, Sin, Cos, Min, Max, Sum, Mean, Clip, Where, and the value-preserving
//! Identity, Cast, CastLike and (not lowered) Dropout.
//! Opsets 13+ (multidirectional broadcasting; every broadcast gradient is summed back to
//! its input's shape with `Builder::sum_to_like`). Ties in Min/Max split the gradient evenly
//! (PyTorch's convention); Clip passes the gradient where min <= x <= max; Clip bounds and
//! the Where condition are stop-gradient.

use super::cx::{GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::Op;

pub(super) fn add(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let da = cx.needs(0).then(|| cx.unbroadcast(dy, 0)).transpose()?;
    let db = cx.needs(1).then(|| cx.unbroadcast(dy, 1)).transpose()?;
    Ok(vec![da, db])
}

pub(super) fn sub(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let da = cx.needs(0).then(|| cx.unbroadcast(dy, 0)).transpose()?;
    let db = match cx.needs(1) {
        true => {
            let n = cx.b.neg(dy);
            Some(cx.unbroadcast(n, 1)?)
        }
        false => None,
    };
    Ok(vec![da, db])
}

pub(super) fn mul(cx: &mut GradCx) -> GradResult {
    let (a, b, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let mut out = vec![None, None];
    for (i, other) in [(0, b), (1, a)] {
        if cx.needs(i) {
            let t = cx.b.mul(dy, other);
            out[i] = Some(cx.unbroadcast(t, i)?);
        }
    }
    Ok(out)
}

/// y = a / b: da = dy / b, db = -(dy / b) * y.
pub(super) fn div(cx: &mut GradCx) -> GradResult {
    let (b, y, dy) = (cx.x(1)?, cx.y(0)?, cx.dy0()?);
    let q = cx.b.div(dy, b);
    let da = cx.needs(0).then(|| cx.unbroadcast(q, 0)).transpose()?;
    let db = match cx.needs(1) {
        true => {
            let t = cx.b.mul(q, y);
            let n = cx.b.neg(t);
            Some(cx.unbroadcast(n, 1)?)
        }
        false => None,
    };
    Ok(vec![da, db])
}

pub(super) fn neg(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    Ok(vec![Some(cx.b.neg(dy))])
}

/// y = a ^ b: da = dy * b * a^(b-1), db = dy * y * ln(a).
pub(super) fn pow(cx: &mut GradCx) -> GradResult {
    let (a, b, y, dy) = (cx.x(0)?, cx.x(1)?, cx.y(0)?, cx.dy0()?);
    let mut out = vec![None, None];
    if cx.needs(0) {
        let e = cx.b.cast_to_like(b, a);
        let one = cx.b.scalar_like(a, 1.0);
        let em1 = cx.b.sub(e, one);
        let p = cx.b.op(Op::Pow, &[a, em1], vec![]);
        let t = cx.b.mul(p, e);
        let t = cx.b.mul(dy, t);
        out[0] = Some(cx.unbroadcast(t, 0)?);
    }
    if cx.needs(1) {
        let ln = cx.b.unary(Op::Log, a);
        let t = cx.b.mul(y, ln);
        let t = cx.b.mul(dy, t);
        let t = cx.b.cast_to_like(t, b);
        out[1] = Some(cx.unbroadcast(t, 1)?);
    }
    Ok(out)
}

/// y = sqrt(x): dx = dy * 0.5 / y.
pub(super) fn sqrt(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let q = cx.b.div(dy, y);
    Ok(vec![Some(cx.b.scale(q, 0.5))])
}

pub(super) fn exp(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    Ok(vec![Some(cx.b.mul(dy, y))])
}

pub(super) fn log(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    Ok(vec![Some(cx.b.div(dy, x))])
}

/// y = 1/x: dx = -dy * y * y.
pub(super) fn reciprocal(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let yy = cx.b.mul(y, y);
    let t = cx.b.mul(dy, yy);
    Ok(vec![Some(cx.b.neg(t))])
}

pub(super) fn abs(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let s = cx.b.unary(Op::Sign, x);
    Ok(vec![Some(cx.b.mul(dy, s))])
}

pub(super) fn sin(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let c = cx.b.unary(Op::Cos, x);
    Ok(vec![Some(cx.b.mul(dy, c))])
}

pub(super) fn cos(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let s = cx.b.unary(Op::Sin, x);
    let t = cx.b.mul(dy, s);
    Ok(vec![Some(cx.b.neg(t))])
}

/// Variadic Min/Max: each input receives dy where it equals the result, shared evenly
/// between tied inputs.
pub(super) fn min_max(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let n = cx.node.inputs.len();
    if n == 1 {
        return Ok(vec![Some(dy)]);
    }
    let mut masks = Vec::with_capacity(n);
    for i in 0..n {
        let x = cx.x(i)?;
        let eq = cx.b.op(Op::Equal, &[x, y], vec![]);
        let dt = cx.b.dtype(y);
        masks.push(cx.b.cast(eq, dt));
    }
    let count = cx.b.add_all(&masks);
    let share = cx.b.div(dy, count);
    let mut out = vec![None; n];
    for (i, &m) in masks.iter().enumerate() {
        if cx.needs(i) {
            let t = cx.b.mul(share, m);
            out[i] = Some(cx.unbroadcast(t, i)?);
        }
    }
    Ok(out)
}

pub(super) fn sum(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    spread(cx, dy)
}

pub(super) fn mean(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let share = cx.b.scale(dy, 1.0 / cx.node.inputs.len() as f64);
    spread(cx, share)
}

/// The same gradient to every input, reduced to its shape.
fn spread(cx: &mut GradCx, g: crate::ir::ValueId) -> GradResult {
    (0..cx.node.inputs.len())
        .map(|i| cx.needs(i).then(|| cx.unbroadcast(g, i)).transpose())
        .collect()
}

/// dx = dy where min <= x <= max (absent bounds always hold).
pub(super) fn clip(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let lo = cx
        .opt_x(1)
        .map(|m| cx.b.op(Op::GreaterOrEqual, &[x, m], vec![]));
    let hi = cx
        .opt_x(2)
        .map(|m| cx.b.op(Op::LessOrEqual, &[x, m], vec![]));
    let mask = match (lo, hi) {
        (Some(l), Some(h)) => Some(cx.b.op(Op::And, &[l, h], vec![])),
        (m, None) | (None, m) => m,
    };
    Ok(vec![Some(match mask {
        Some(m) => cx.b.keep_where(m, dy),
        None => dy,
    })])
}

pub(super) fn where_(cx: &mut GradCx) -> GradResult {
    let (c, dy) = (cx.x(0)?, cx.dy0()?);
    let mut out = vec![None; 3];
    if cx.needs(1) {
        let t = cx.b.keep_where(c, dy);
        out[1] = Some(cx.unbroadcast(t, 1)?);
    }
    if cx.needs(2) {
        let zero = cx.b.scalar_like(dy, 0.0);
        let t = cx.b.where_(c, zero, dy);
        out[2] = Some(cx.unbroadcast(t, 2)?);
    }
    Ok(out)
}

pub(super) fn identity(cx: &mut GradCx) -> GradResult {
    Ok(vec![Some(cx.dy0()?)])
}

/// Float-to-float Cast: the gradient converted back to the input's type.
pub(super) fn cast(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    Ok(vec![Some(cx.b.cast_to_like(dy, x))])
}

pub(super) fn cast_like(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let g = cx.b.op(Op::CastLike, &[dy, x], vec![]);
    Ok(vec![Some(g), None])
}

/// Dropout that is an identity (inference mode or ratio 0). Training-mode Dropout is lowered
/// to an explicit mask before autodiff (`pipeline::training_mode`), whose Mul carries the
/// gradient.
pub(super) fn dropout(cx: &mut GradCx) -> GradResult {
    cx.only_first_output()?;
    let training = cx.opt_x(2).is_some_and(|t| {
        cx.b.g
            .constant(t)
            .and_then(|t| t.to_i64_vec())
            .is_none_or(|v| v.first() != Some(&0))
    });
    let ratio_zero = cx.opt_x(1).is_some_and(|r| {
        cx.b.g
            .constant(r)
            .and_then(|t| t.to_f64_vec())
            .is_some_and(|v| v.first() == Some(&0.0))
    });
    if training && !ratio_zero {
        return Err(GradError::Unsupported(
            "training-mode Dropout (lower it to an explicit mask first: pipeline::training_mode)"
                .into(),
        ));
    }
    Ok(vec![Some(cx.dy0()?)])
}
