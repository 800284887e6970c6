//! Gradients of matrix products: MatMul (numpy semantics: 1-D operands, batched and broadcast
//! batch dimensions), Gemm (transA/transB, alpha, beta, broadcast C) and Einsum (any number of
//! operands, explicit or implicit output, ellipsis; no index repeated within one operand).
//! Opsets 13+. A 2-D weight multiplied by a batched activation gets its gradient as one 2-D
//! product over the flattened batch (no [batch, k, n] intermediate).

use super::cx::{GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::einsum::Equation;
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

/// The gradient of operand i is the einsum of dY with the other operands whose output term is
/// operand i's letters, except letters only operand i has (axes it sums on its own): those are
/// restored by broadcasting. Size-1 axes that broadcast are summed back.
pub(super) fn einsum(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let n = cx.node.inputs.len();
    let xs: Vec<ValueId> = (0..n).map(|i| cx.x(i)).collect::<Result<_, _>>()?;
    let text = cx
        .node
        .attr_str("equation")
        .ok_or_else(|| GradError::Missing("attribute equation".into()))?
        .to_string();
    let ranks: Vec<Option<usize>> = xs.iter().map(|&x| cx.b.rank(x)).collect();
    let eq = Equation::parse(&text, &ranks).map_err(|e| GradError::Unsupported(format!("{e}")))?;
    let repeated = |t: &[char]| t.iter().enumerate().any(|(k, c)| t[..k].contains(c));
    if eq.inputs.iter().any(|t| repeated(t)) {
        return Err(GradError::Unsupported(format!(
            "einsum '{text}' with an index repeated within one operand (a diagonal)"
        )));
    }
    let out_term: String = eq.output.iter().collect();
    let mut grads = vec![None; n];
    let wanted: Vec<usize> = (0..n).filter(|&i| cx.needs(i)).collect();
    for i in wanted {
        let others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
        let known =
            |c: &char| eq.output.contains(c) || others.iter().any(|&j| eq.inputs[j].contains(c));
        let target: Vec<char> = eq.inputs[i].iter().copied().filter(known).collect();
        let terms: Vec<String> = std::iter::once(out_term.clone())
            .chain(others.iter().map(|&j| eq.inputs[j].iter().collect()))
            .collect();
        let equation = format!("{}->{}", terms.join(","), target.iter().collect::<String>());
        let operands: Vec<ValueId> = std::iter::once(dy)
            .chain(others.iter().map(|&j| xs[j]))
            .collect();
        let mut g = cx.b.op(
            Op::Einsum,
            &operands,
            vec![("equation", Attr::String(equation.into_bytes()))],
        );
        if target.len() < eq.inputs[i].len() {
            let own: Vec<i64> = (0..eq.inputs[i].len())
                .filter(|&k| !known(&eq.inputs[i][k]))
                .map(|k| k as i64)
                .collect();
            let u = cx.b.unsqueeze(g, &own);
            g = cx.b.expand_like(u, xs[i]);
        }
        grads[i] = Some(cx.unbroadcast(g, i)?);
    }
    Ok(grads)
}
