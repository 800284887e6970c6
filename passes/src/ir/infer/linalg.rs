//! Matrix products: MatMul (numpy batch broadcasting), Gemm and Einsum.

use super::cx::{broadcast, Cx, Outcome};
use crate::ir::einsum::Equation;
use crate::ir::Dim;

pub(super) fn matmul(cx: &Cx) -> Outcome {
    cx.like_input(matmul_shape(cx))
}

fn matmul_shape(cx: &Cx) -> Option<Vec<Dim>> {
    let mut a = cx.in_shape(0)?;
    let mut b = cx.in_shape(1)?;
    let (a1, b1) = (a.len() == 1, b.len() == 1);
    if a1 {
        a.insert(0, Dim::Fixed(1));
    }
    if b1 {
        b.push(Dim::Fixed(1));
    }
    let (ra, rb) = (a.len().checked_sub(2)?, b.len().checked_sub(2)?);
    let mut out = broadcast(&a[..ra], &b[..rb]);
    if !a1 {
        out.push(a[ra].clone());
    }
    if !b1 {
        out.push(b[rb + 1].clone());
    }
    Some(out)
}

pub(super) fn gemm(cx: &Cx) -> Outcome {
    let ta = cx.node.attr_int("transA").unwrap_or(0) != 0;
    let tb = cx.node.attr_int("transB").unwrap_or(0) != 0;
    let shape = match (cx.in_shape(0), cx.in_shape(1)) {
        (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => vec![
            a[if ta { 1 } else { 0 }].clone(),
            b[if tb { 0 } else { 1 }].clone(),
        ],
        _ => vec![Dim::Unknown, Dim::Unknown],
    };
    cx.like_input(Some(shape))
}

pub(super) fn einsum(cx: &Cx) -> Outcome {
    let n = cx.node.inputs.len();
    let ranks: Vec<Option<usize>> = (0..n).map(|i| cx.in_shape(i).map(|s| s.len())).collect();
    let shape = cx
        .node
        .attr_str("equation")
        .and_then(|eq| Equation::parse(eq, &ranks).ok())
        .map(|eq| {
            let shapes: Vec<Option<Vec<Dim>>> = (0..n).map(|i| cx.in_shape(i)).collect();
            eq.output_shape(&shapes)
        });
    cx.like_input(shape)
}
