//! Gradients of normalization: LayerNormalization (any axis, optional bias; statistics
//! recomputed in the input's type) and BatchNormalization in inference mode (running
//! statistics as constants, which are stop-gradient).
//! Opsets 17+ for LayerNormalization, 15+ for BatchNormalization. Training-mode
//! BatchNormalization is lowered to explicit batch statistics before autodiff
//! (`pipeline::training_mode`); its decomposition is differentiated op by op.

use super::{norm_axis, GradCx, GradError, GradResult};
use crate::ir::{Op, ValueId};

/// With x̂ = (x − μ)·r, r = 1/√(σ² + ε) over the normalized axes, and g = dY·scale:
/// dX = r·(g − mean(g) − x̂·mean(g·x̂)), dScale = Σ dY·x̂, dB = Σ dY (over the leading axes).
pub(super) fn layer_norm(cx: &mut GradCx) -> GradResult {
    cx.only_first_output()?;
    let (x, scale, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let a = norm_axis(cx.int("axis", -1), r)?;
    let axes: Vec<i64> = (a as i64..r as i64).collect();
    let eps = cx.float("epsilon", 1e-5) as f64;
    let mu = cx.b.reduce_mean(x, &axes, true);
    let xc = cx.b.sub(x, mu);
    let sq = cx.b.mul(xc, xc);
    let var = cx.b.reduce_mean(sq, &axes, true);
    let e = cx.b.scalar_like(x, eps);
    let ve = cx.b.add(var, e);
    let sd = cx.b.unary(Op::Sqrt, ve);
    let rstd = cx.b.unary(Op::Reciprocal, sd);
    let xhat = cx.b.mul(xc, rstd);
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        let g = cx.b.mul(dy, scale);
        let m1 = cx.b.reduce_mean(g, &axes, true);
        let gx = cx.b.mul(g, xhat);
        let m2 = cx.b.reduce_mean(gx, &axes, true);
        let t = cx.b.mul(xhat, m2);
        let c = cx.b.sub(g, m1);
        let c = cx.b.sub(c, t);
        out[0] = Some(cx.b.mul(c, rstd));
    }
    if cx.needs(1) {
        let t = cx.b.mul(dy, xhat);
        out[1] = Some(cx.unbroadcast(t, 1)?);
    }
    if cx.needs(2) {
        out[2] = Some(cx.unbroadcast(dy, 2)?);
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
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    let per_channel = |cx: &mut GradCx, v: ValueId| {
        let ax: Vec<i64> = (1..r as i64 - 1).collect();
        if ax.is_empty() {
            v
        } else {
            cx.b.unsqueeze(v, &ax)
        }
    };
    let mut out = vec![None; 5];
    if cx.needs(0) {
        let sr = cx.b.mul(scale, rstd);
        let k = per_channel(cx, sr);
        out[0] = Some(cx.b.mul(dy, k));
    }
    if cx.needs(1) {
        let m = per_channel(cx, mean);
        let rs = per_channel(cx, rstd);
        let xc = cx.b.sub(x, m);
        let xhat = cx.b.mul(xc, rs);
        let t = cx.b.mul(dy, xhat);
        out[1] = Some(cx.b.reduce_sum(t, &axes, false));
    }
    if cx.needs(2) {
        out[2] = Some(cx.b.reduce_sum(dy, &axes, false));
    }
    Ok(out)
}
