//! Gradients of normalization: LayerNormalization (any axis, optional bias),
//! InstanceNormalization, GroupNormalization (opset 18: scale and bias per group; 21+: per
//! channel), statistics recomputed in the input's type, and BatchNormalization in inference
//! mode (running statistics as constants, which are stop-gradient).
//! Opsets 17+ for LayerNormalization, 15+ for BatchNormalization. Training-mode
//! BatchNormalization is lowered to explicit batch statistics before autodiff
//! (`pipeline::training_mode`); its decomposition is differentiated op by op.

use super::conv::bias_grad;
use super::cx::{norm_axis, GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::{Op, ValueId};

/// x̂ = (x − μ)·r with r = 1/√(σ² + ε), the statistics over `axes` (kept as size-1 axes).
struct Normalized {
    xhat: ValueId,
    rstd: ValueId,
}

fn normalize(cx: &mut GradCx, x: ValueId, axes: &[i64], eps: f64) -> Normalized {
    let mu = cx.b.reduce_mean(x, axes, true);
    let xc = cx.b.sub(x, mu);
    let sq = cx.b.mul(xc, xc);
    let var = cx.b.reduce_mean(sq, axes, true);
    let e = cx.b.scalar_like(x, eps);
    let ve = cx.b.add(var, e);
    let sd = cx.b.unary(Op::Sqrt, ve);
    let rstd = cx.b.unary(Op::Reciprocal, sd);
    let xhat = cx.b.mul(xc, rstd);
    Normalized { xhat, rstd }
}

/// dX from g = dL/dx̂: r·(g − mean(g) − x̂·mean(g·x̂)), the means over `axes`.
fn normalized_input_grad(cx: &mut GradCx, n: &Normalized, g: ValueId, axes: &[i64]) -> ValueId {
    let m1 = cx.b.reduce_mean(g, axes, true);
    let gx = cx.b.mul(g, n.xhat);
    let m2 = cx.b.reduce_mean(gx, axes, true);
    let t = cx.b.mul(n.xhat, m2);
    let c = cx.b.sub(g, m1);
    let c = cx.b.sub(c, t);
    cx.b.mul(c, n.rstd)
}

/// With x̂ normalized over the axes from `axis` on and g = dY·scale: dX from g,
/// dScale = Σ dY·x̂, dB = Σ dY (over the leading axes).
pub(super) fn layer_norm(cx: &mut GradCx) -> GradResult {
    cx.only_first_output()?;
    let (x, scale, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let a = norm_axis(cx.int("axis", -1), r)?;
    let axes: Vec<i64> = (a as i64..r as i64).collect();
    let n = normalize(cx, x, &axes, cx.float("epsilon", 1e-5) as f64);
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        let g = cx.b.mul(dy, scale);
        out[0] = Some(normalized_input_grad(cx, &n, g, &axes));
    }
    if cx.needs(1) {
        let t = cx.b.mul(dy, n.xhat);
        out[1] = Some(cx.unbroadcast(t, 1)?);
    }
    if cx.needs(2) {
        out[2] = Some(cx.unbroadcast(dy, 2)?);
    }
    Ok(out)
}

/// `v` [C] laid along axis 1 of a rank-`r` tensor.
fn per_channel(cx: &mut GradCx, v: ValueId, r: usize) -> ValueId {
    let ax: Vec<i64> = (1..r as i64 - 1).collect();
    if ax.is_empty() {
        v
    } else {
        cx.b.unsqueeze(v, &ax)
    }
}

/// y = x̂·scale[c] + B[c], x̂ normalized per sample and channel over the spatial axes.
pub(super) fn instance_norm(cx: &mut GradCx) -> GradResult {
    let (x, scale, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(x)?;
    if r < 3 {
        return Err(GradError::Unsupported(format!(
            "InstanceNormalization of a rank-{r} input"
        )));
    }
    let axes: Vec<i64> = (2..r as i64).collect();
    let n = normalize(cx, x, &axes, cx.float("epsilon", 1e-5) as f64);
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        let s = per_channel(cx, scale, r);
        let g = cx.b.mul(dy, s);
        out[0] = Some(normalized_input_grad(cx, &n, g, &axes));
    }
    if cx.needs(1) {
        let t = cx.b.mul(dy, n.xhat);
        out[1] = Some(bias_grad(cx, t)?);
    }
    if cx.needs(2) {
        out[2] = Some(bias_grad(cx, dy)?);
    }
    Ok(out)
}

/// x [N, C, ...] viewed as [N, G, C/G·spatial] and normalized over the last axis; y = x̂·scale
/// + B with scale and B per channel (opset 21+) or per group (opset 18).
pub(super) fn group_norm(cx: &mut GradCx) -> GradResult {
    let (x, scale, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let groups = cx
        .node
        .attr_int("num_groups")
        .ok_or_else(|| GradError::Missing("attribute num_groups".into()))?;
    let grouped = cx.b.ints(&[0, groups, -1]);
    let xg = cx.b.reshape(x, grouped);
    let dyg = cx.b.reshape(dy, grouped);
    let n = normalize(cx, xg, &[2], cx.float("epsilon", 1e-5) as f64);
    let per_group = cx.b.opset() < 21;
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        let g = if per_group {
            let s = cx.b.unsqueeze(scale, &[1]);
            cx.b.mul(dyg, s)
        } else {
            let s = per_channel(cx, scale, r);
            let g = cx.b.mul(dy, s);
            cx.b.reshape(g, grouped)
        };
        let dxg = normalized_input_grad(cx, &n, g, &[2]);
        out[0] = Some(cx.b.reshape_like(dxg, x));
    }
    let param_grad = |cx: &mut GradCx, t: ValueId| {
        if per_group {
            cx.b.reduce_sum(t, &[0, 2], false)
        } else {
            let full = cx.b.reshape_like(t, x);
            let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
            cx.b.reduce_sum(full, &axes, false)
        }
    };
    if cx.needs(1) {
        let t = cx.b.mul(dyg, n.xhat);
        out[1] = Some(param_grad(cx, t));
    }
    if cx.needs(2) {
        out[2] = Some(param_grad(cx, dyg));
    }
    Ok(out)
}

/// Inference mode: y = (x − mean)·r·scale + B with r = 1/√(var + ε) per channel (axis 1).
/// dX = dY·scale·r, dScale = Σ dY·(x − mean)·r, dB = Σ dY (over batch and spatial axes).
pub(super) fn batch_norm(cx: &mut GradCx) -> GradResult {
    cx.only_first_output()?;
    if cx.int("training_mode", 0) != 0 || cx.node.outputs.len() > 1 {
        return Err(GradError::Unsupported(
            "training-mode BatchNormalization (lower it to batch statistics first: \
             pipeline::training_mode)"
                .into(),
        ));
    }
    let (x, scale, mean, var, dy) = (cx.x(0)?, cx.x(1)?, cx.x(3)?, cx.x(4)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let eps = cx.float("epsilon", 1e-5) as f64;
    let e = cx.b.scalar_like(var, eps);
    let ve = cx.b.add(var, e);
    let sd = cx.b.unary(Op::Sqrt, ve);
    let rstd = cx.b.unary(Op::Reciprocal, sd);
    let mut out = vec![None; 5];
    if cx.needs(0) {
        let sr = cx.b.mul(scale, rstd);
        let k = per_channel(cx, sr, r);
        out[0] = Some(cx.b.mul(dy, k));
    }
    if cx.needs(1) {
        let m = per_channel(cx, mean, r);
        let rs = per_channel(cx, rstd, r);
        let xc = cx.b.sub(x, m);
        let xhat = cx.b.mul(xc, rs);
        let t = cx.b.mul(dy, xhat);
        out[1] = Some(bias_grad(cx, t)?);
    }
    if cx.needs(2) {
        out[2] = Some(bias_grad(cx, dy)?);
    }
    Ok(out)
}
