//! Gradients of activations: Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Sigmoid, HardSigmoid,
//! HardSwish, Tanh, Softplus, Softsign, Mish, Erf, Gelu (exact and tanh approximation), Softmax
//! and LogSoftmax.
//! Opsets 13+ (Softmax/LogSoftmax over one axis). At kinks the gradient follows PyTorch:
//! Relu passes nothing at 0, LeakyRelu/PRelu/Elu use the negative branch at 0.

use super::cx::{GradCx, GradResult};
use super::ext::BuilderExt;
use crate::ir::{Op, ValueId};

pub(super) fn relu(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let m = cx.b.positive(y);
    Ok(vec![Some(cx.b.keep_where(m, dy))])
}

pub(super) fn leaky_relu(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let alpha = cx.float("alpha", 0.01) as f64;
    let m = cx.b.positive(x);
    let neg = cx.b.scale(dy, alpha);
    Ok(vec![Some(cx.b.where_(m, dy, neg))])
}

/// y = x > 0 ? x : slope * x.
pub(super) fn prelu(cx: &mut GradCx) -> GradResult {
    let (x, slope, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let m = cx.b.positive(x);
    let mut out = vec![None, None];
    if cx.needs(0) {
        let neg = cx.b.mul(dy, slope);
        let t = cx.b.where_(m, dy, neg);
        out[0] = Some(cx.unbroadcast(t, 0)?);
    }
    if cx.needs(1) {
        let dx = cx.b.mul(dy, x);
        let zero = cx.b.scalar_like(dy, 0.0);
        let t = cx.b.where_(m, zero, dx);
        out[1] = Some(cx.unbroadcast(t, 1)?);
    }
    Ok(out)
}

/// y = x > 0 ? x : alpha (e^x - 1); for x <= 0, dy/dx = y + alpha.
pub(super) fn elu(cx: &mut GradCx) -> GradResult {
    let (x, y, dy) = (cx.x(0)?, cx.y(0)?, cx.dy0()?);
    let alpha = cx.float("alpha", 1.0) as f64;
    let m = cx.b.positive(x);
    let a = cx.b.scalar_like(y, alpha);
    let d = cx.b.add(y, a);
    let neg = cx.b.mul(dy, d);
    Ok(vec![Some(cx.b.where_(m, dy, neg))])
}

/// y = γ·(x > 0 ? x : α(eˣ − 1)); for x <= 0, dy/dx = y + γα.
pub(super) fn selu(cx: &mut GradCx) -> GradResult {
    let (x, y, dy) = (cx.x(0)?, cx.y(0)?, cx.dy0()?);
    let alpha = cx.float("alpha", 1.673_263_2) as f64;
    let gamma = cx.float("gamma", 1.050_701) as f64;
    let m = cx.b.positive(x);
    let pos = cx.b.scale(dy, gamma);
    let ga = cx.b.scalar_like(y, gamma * alpha);
    let d = cx.b.add(y, ga);
    let neg = cx.b.mul(dy, d);
    Ok(vec![Some(cx.b.where_(m, pos, neg))])
}

/// y = max(0, x) + min(0, α(e^(x/α) − 1)): dy/dx = 1 for x > 0, e^(x/α) otherwise.
pub(super) fn celu(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let alpha = cx.float("alpha", 1.0) as f64;
    let m = cx.b.positive(x);
    let xa = cx.b.scale(x, 1.0 / alpha);
    let e = cx.b.unary(Op::Exp, xa);
    let neg = cx.b.mul(dy, e);
    Ok(vec![Some(cx.b.where_(m, dy, neg))])
}

/// y = x / (1 + |x|): dy/dx = 1 / (1 + |x|)².
pub(super) fn softsign(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let a = cx.b.unary(Op::Abs, x);
    let one = cx.b.scalar_like(x, 1.0);
    let d = cx.b.add(one, a);
    let dd = cx.b.mul(d, d);
    Ok(vec![Some(cx.b.div(dy, dd))])
}

/// y = x·tanh(softplus(x)): dy/dx = t + x·(1 − t²)·sigmoid(x) with t = tanh(softplus(x)).
pub(super) fn mish(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let sp = cx.b.unary(Op::Softplus, x);
    let t = cx.b.unary(Op::Tanh, sp);
    let s = cx.b.unary(Op::Sigmoid, x);
    let one = cx.b.scalar_like(x, 1.0);
    let tt = cx.b.mul(t, t);
    let sech2 = cx.b.sub(one, tt);
    let xs = cx.b.mul(x, s);
    let r = cx.b.mul(xs, sech2);
    let d = cx.b.add(t, r);
    Ok(vec![Some(cx.b.mul(dy, d))])
}

pub(super) fn sigmoid(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let one = cx.b.scalar_like(y, 1.0);
    let c = cx.b.sub(one, y);
    let d = cx.b.mul(y, c);
    Ok(vec![Some(cx.b.mul(dy, d))])
}

/// y = max(0, min(1, alpha x + beta)): dx = alpha dy inside (0, 1).
pub(super) fn hard_sigmoid(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let alpha = cx.float("alpha", 0.2) as f64;
    let beta = cx.float("beta", 0.5) as f64;
    let g = inside(cx, x, alpha, beta);
    let t = cx.b.scale(dy, alpha);
    Ok(vec![Some(cx.b.keep_where(g, t))])
}

/// y = x * hardsigmoid(x) with alpha 1/6, beta 1/2: dx = dy * (x/3 + 1/2) for -3 < x < 3,
/// dy for x >= 3.
pub(super) fn hard_swish(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let g = inside(cx, x, 1.0 / 6.0, 0.5);
    let third = cx.b.scale(x, 1.0 / 3.0);
    let half = cx.b.scalar_like(x, 0.5);
    let slope = cx.b.add(third, half);
    let three = cx.b.scalar_like(x, 3.0);
    let above = cx.b.op(Op::GreaterOrEqual, &[x, three], vec![]);
    let one = cx.b.scalar_like(x, 1.0);
    let zero = cx.b.scalar_like(x, 0.0);
    let outer = cx.b.where_(above, one, zero);
    let d = cx.b.where_(g, slope, outer);
    Ok(vec![Some(cx.b.mul(dy, d))])
}

/// `0 < alpha x + beta < 1` as a bool tensor.
fn inside(cx: &mut GradCx, x: ValueId, alpha: f64, beta: f64) -> ValueId {
    let ax = cx.b.scale(x, alpha);
    let bb = cx.b.scalar_like(x, beta);
    let z = cx.b.add(ax, bb);
    let zero = cx.b.scalar_like(x, 0.0);
    let one = cx.b.scalar_like(x, 1.0);
    let lo = cx.b.op(Op::Greater, &[z, zero], vec![]);
    let hi = cx.b.op(Op::Less, &[z, one], vec![]);
    cx.b.op(Op::And, &[lo, hi], vec![])
}

pub(super) fn tanh(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let one = cx.b.scalar_like(y, 1.0);
    let yy = cx.b.mul(y, y);
    let d = cx.b.sub(one, yy);
    Ok(vec![Some(cx.b.mul(dy, d))])
}

pub(super) fn softplus(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let s = cx.b.unary(Op::Sigmoid, x);
    Ok(vec![Some(cx.b.mul(dy, s))])
}

/// d erf(x)/dx = 2/sqrt(pi) e^(-x^2).
pub(super) fn erf(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let d = gaussian(cx, x, std::f64::consts::FRAC_2_SQRT_PI, 1.0);
    Ok(vec![Some(cx.b.mul(dy, d))])
}

/// c * e^(-k x^2).
fn gaussian(cx: &mut GradCx, x: ValueId, c: f64, k: f64) -> ValueId {
    let xx = cx.b.mul(x, x);
    let e = cx.b.scale(xx, -k);
    let ex = cx.b.unary(Op::Exp, e);
    cx.b.scale(ex, c)
}

/// Exact: dy (Phi(x) + x phi(x)). Tanh approximation (u = sqrt(2/pi) (x + 0.044715 x^3),
/// t = tanh u): dy (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)).
pub(super) fn gelu(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let d = match cx.str_attr("approximate", "none").as_str() {
        "tanh" => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let xx = cx.b.mul(x, x);
            let c3 = cx.b.scale(xx, 0.044715);
            let one = cx.b.scalar_like(x, 1.0);
            let inner = cx.b.add(one, c3);
            let u0 = cx.b.mul(x, inner);
            let u = cx.b.scale(u0, k);
            let t = cx.b.unary(Op::Tanh, u);
            let one_t = cx.b.add(one, t);
            let left = cx.b.scale(one_t, 0.5);
            let tt = cx.b.mul(t, t);
            let sech2 = cx.b.sub(one, tt);
            let c9 = cx.b.scale(xx, 3.0 * 0.044715);
            let du0 = cx.b.add(one, c9);
            let du = cx.b.scale(du0, 0.5 * k);
            let r0 = cx.b.mul(x, sech2);
            let right = cx.b.mul(r0, du);
            cx.b.add(left, right)
        }
        _ => {
            let xs = cx.b.scale(x, std::f64::consts::FRAC_1_SQRT_2);
            let e = cx.b.unary(Op::Erf, xs);
            let one = cx.b.scalar_like(x, 1.0);
            let e1 = cx.b.add(one, e);
            let cdf = cx.b.scale(e1, 0.5);
            let pdf = gaussian(cx, x, 1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.5);
            let xp = cx.b.mul(x, pdf);
            cx.b.add(cdf, xp)
        }
    };
    Ok(vec![Some(cx.b.mul(dy, d))])
}

/// dx = y (dy - sum(dy y, axis)).
pub(super) fn softmax(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let axis = cx.int("axis", -1);
    let p = cx.b.mul(dy, y);
    let s = cx.b.reduce_sum(p, &[axis], true);
    let d = cx.b.sub(dy, s);
    Ok(vec![Some(cx.b.mul(y, d))])
}

pub(super) fn log_softmax(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let axis = cx.int("axis", -1);
    Ok(vec![Some(log_softmax_grad(cx, y, dy, axis))])
}

/// Gradient of log-probabilities `lp` (LogSoftmax over `axis`): dlp - exp(lp) sum(dlp, axis).
pub(super) fn log_softmax_grad(cx: &mut GradCx, lp: ValueId, dlp: ValueId, axis: i64) -> ValueId {
    let p = cx.b.unary(Op::Exp, lp);
    let s = cx.b.reduce_sum(dlp, &[axis], true);
    let t = cx.b.mul(p, s);
    cx.b.sub(dlp, t)
}
