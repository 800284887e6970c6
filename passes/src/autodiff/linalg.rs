//! Gradients of matrix products: MatMul (numpy semantics: 1-D operands, batched and broadcast
//! batch dimensions) and Gemm (transA/transB, alpha, beta, broadcast C).
//! Opsets 13+. A 2-D weight multiplied by a batched activation gets its gradient as one 2-D
//! product over the flattened batch (no [batch, k, n] intermediate).

use super::ext::BuilderExt;
use super::{GradCx, GradResult};
use crate::ir::{Attr, Builder, Op, ValueId};

/// A = [.., m, k] @ B = [.., k, n]: dA = dY Bᵀ, dB = Aᵀ dY, each summed over broadcast batch
/// dimensions. A 1-D A is [1, k] (its m axis dropped from Y), a 1-D B is [k, 1].
pub(super) fn matmul(cx: &mut GradCx) -> GradResult {
    let (a, b, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let (ra, rb) = (cx.rank(a)?, cx.rank(b)?);
    if ra == 1 && rb == 1 {
        let mut out = vec![None, None];
        for (i, other) in [(0, b), (1, a)] {
            if cx.needs(i) {
                out[i] = Some(cx.b.mul(dy, other));
            }
        }
        return Ok(out);
    }
    let a2 = if ra == 1 { cx.b.unsqueeze(a, &[0]) } else { a };
    let b2 = if rb == 1 { cx.b.unsqueeze(b, &[1]) } else { b };
    let dy2 = match (ra, rb) {
        (1, _) => cx.b.unsqueeze(dy, &[-2]),
        (_, 1) => cx.b.unsqueeze(dy, &[-1]),
        _ => dy,
    };
    let (ra2, rb2) = (ra.max(2), rb.max(2));
    let mut out = vec![None, None];
    if cx.needs(0) {
        let bt = cx.b.transpose_last2(b2, rb2);
        let mut g = cx.b.matmul(dy2, bt);
        if ra == 1 {
            g = cx.b.squeeze(g, &[-2]);
        }
        out[0] = Some(cx.unbroadcast(g, 0)?);
    }
    if cx.needs(1) {
        let g = match (ra2, rb) {
            (r, 2) if r > 2 && cx.dims(b).is_some() => flat_weight_grad(cx, a2, dy2, b)?,
            _ => {
                let at = cx.b.transpose_last2(a2, ra2);
                let mut g = cx.b.matmul(at, dy2);
                if rb == 1 {
                    g = cx.b.squeeze(g, &[-1]);
                }
                cx.unbroadcast(g, 1)?
            }
        };
        out[1] = Some(g);
    }
    Ok(out)
}

/// dB for a 2-D B = [k, n] and a batched A: reshape A to [-1, k] and dY to [-1, n], then one
/// Gemm(Aᵀ, dY).
fn flat_weight_grad(
    cx: &mut GradCx,
    a: ValueId,
    dy: ValueId,
    b: ValueId,
) -> Result<ValueId, super::GradError> {
    let (k, n) = (cx.dim(b, 0)?, cx.dim(b, 1)?);
    let sa = cx.b.ints(&[-1, k]);
    let sd = cx.b.ints(&[-1, n]);
    let af = cx.b.reshape(a, sa);
    let df = cx.b.reshape(dy, sd);
    Ok(gemm_node(cx.b, af, df, 1.0, true, false))
}

/// Gemm(x, y) without C.
fn gemm_node(b: &mut Builder, x: ValueId, y: ValueId, alpha: f64, ta: bool, tb: bool) -> ValueId {
    b.op(
        Op::Gemm,
        &[x, y],
        vec![
            ("alpha", Attr::Float(alpha as f32)),
            ("transA", Attr::Int(ta as i64)),
            ("transB", Attr::Int(tb as i64)),
        ],
    )
}

/// Y = alpha op(A) op(B) + beta C. With A' = op(A), B' = op(B):
/// dA' = alpha dY B'ᵀ, dB' = alpha A'ᵀ dY, dC = beta dY summed to C's shape; each written as
/// one Gemm whose trans flags absorb the transposes.
pub(super) fn gemm(cx: &mut GradCx) -> GradResult {
    let (a, b, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let alpha = cx.float("alpha", 1.0) as f64;
    let beta = cx.float("beta", 1.0) as f64;
    let ta = cx.int("transA", 0) != 0;
    let tb = cx.int("transB", 0) != 0;
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        out[0] = Some(match ta {
            false => gemm_node(cx.b, dy, b, alpha, false, !tb),
            true => gemm_node(cx.b, b, dy, alpha, tb, true),
        });
    }
    if cx.needs(1) {
        out[1] = Some(match tb {
            false => gemm_node(cx.b, a, dy, alpha, !ta, false),
            true => gemm_node(cx.b, dy, a, alpha, true, ta),
        });
    }
    if cx.needs(2) {
        let g = if beta == 1.0 {
            dy
        } else {
            cx.b.scale(dy, beta)
        };
        out[2] = Some(cx.unbroadcast(g, 2)?);
    }
    Ok(out)
}
