//! Gradients of reductions: ReduceSum, ReduceMean, ReduceSumSquare, ReduceL1, ReduceL2,
//! ReduceMax, ReduceMin, ReduceLogSumExp.
//! Opsets 13+ (axes as an attribute before 13 for ReduceSum and before 18 for the others, as
//! an input after). Constraints: the axes must be constants. Max/Min split the gradient
//! evenly between tied elements (PyTorch's amax/amin convention).

use super::cx::{norm_axis, GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::{Op, ValueId};

/// The reduction's axes (normalized, sorted) and keepdims. None: the node is an identity
/// (empty axes with noop_with_empty_axes).
fn reduced_axes(cx: &GradCx) -> Result<Option<(Vec<i64>, bool)>, GradError> {
    let x = cx.x(0)?;
    let r = cx.rank(x)?;
    let keep = cx.int("keepdims", 1) != 0;
    let axes = cx.ints_attr_or_input("axes", 1)?.unwrap_or_default();
    if axes.is_empty() {
        if cx.int("noop_with_empty_axes", 0) != 0 {
            return Ok(None);
        }
        return Ok(Some(((0..r as i64).collect(), keep)));
    }
    let mut norm: Vec<i64> = axes
        .iter()
        .map(|&a| norm_axis(a, r).map(|a| a as i64))
        .collect::<Result<_, _>>()?;
    norm.sort_unstable();
    norm.dedup();
    Ok(Some((norm, keep)))
}

/// A reduced-shape tensor (dY or Y) with the reduced axes restored as size 1, so it
/// broadcasts against x.
fn restore(cx: &mut GradCx, v: ValueId, axes: &[i64], keep: bool) -> ValueId {
    if keep || axes.is_empty() {
        v
    } else {
        cx.b.unsqueeze(v, axes)
    }
}

/// Shared shape of the rules: dX = expand(dY') · f(x) where f is the derivative of the reduced
/// function with respect to each element (None: 1); `f` may read y' (y with the reduced axes
/// restored) through `restored_y`.
fn reduce_grad(
    cx: &mut GradCx,
    local: impl FnOnce(&mut GradCx, ValueId, &Reduced) -> Result<Option<ValueId>, GradError>,
) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let Some((axes, keep)) = reduced_axes(cx)? else {
        return Ok(vec![Some(dy)]);
    };
    let red = Reduced { axes, keep };
    let d = restore(cx, dy, &red.axes, red.keep);
    let e = cx.b.expand_like(d, x);
    Ok(vec![Some(match local(cx, x, &red)? {
        Some(f) => cx.b.mul(e, f),
        None => e,
    })])
}

/// The reduced axes and keepdims of a node that is not an identity.
struct Reduced {
    axes: Vec<i64>,
    keep: bool,
}

/// Y with the reduced axes restored.
fn restored_y(cx: &mut GradCx, red: &Reduced) -> Result<ValueId, GradError> {
    let y = cx.y(0)?;
    Ok(restore(cx, y, &red.axes, red.keep))
}

pub(super) fn sum(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |_, _, _| Ok(None))
}

pub(super) fn mean(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, _| {
        let y = cx.y(0)?;
        let n = cx.b.count_ratio(x, y);
        let one = cx.b.scalar_like(x, 1.0);
        Ok(Some(cx.b.div(one, n)))
    })
}

pub(super) fn sum_square(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, _| Ok(Some(cx.b.scale(x, 2.0))))
}

pub(super) fn l1(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, _| Ok(Some(cx.b.unary(Op::Sign, x))))
}

/// y = √Σx²: ∂y/∂x = x / y.
pub(super) fn l2(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, red| {
        let y = restored_y(cx, red)?;
        Ok(Some(cx.b.div(x, y)))
    })
}

/// ∂y/∂x = [x = y] / (number of elements equal to y).
pub(super) fn max_min(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, red| {
        let y = restored_y(cx, red)?;
        let eq = cx.b.op(Op::Equal, &[x, y], vec![]);
        let dt = cx.b.dtype(x);
        let m = cx.b.cast(eq, dt);
        let count = cx.b.reduce_sum(m, &red.axes, true);
        Ok(Some(cx.b.div(m, count)))
    })
}

/// y = log Σ eˣ: ∂y/∂x = e^(x − y).
pub(super) fn log_sum_exp(cx: &mut GradCx) -> GradResult {
    reduce_grad(cx, |cx, x, red| {
        let y = restored_y(cx, red)?;
        let d = cx.b.sub(x, y);
        Ok(Some(cx.b.unary(Op::Exp, d)))
    })
}
