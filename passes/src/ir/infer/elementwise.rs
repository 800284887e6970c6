//! Elementwise operators: unary ones keep their input's type, broadcasting ones take the
//! numpy broadcast of their inputs' shapes, and small integer vectors keep their values.

use super::cx::{broadcast, Cx, Inferred, Outcome};
use crate::ir::{DType, Dim, Op};

/// Unary operators whose output has the input's type and shape.
pub(super) fn same_type(cx: &Cx) -> Outcome {
    Ok(vec![cx.same_as(0)])
}

pub(super) fn identity(cx: &Cx) -> Outcome {
    Ok(vec![cx.same_as(0).with_sym(cx.in_sym(0))])
}

/// Multidirectional broadcasting of every input (arithmetic, variadic Sum/Mean/Min/Max,
/// comparisons with a bool result, Where with the type of its branches).
pub(super) fn broadcasting(cx: &Cx) -> Outcome {
    let op = &cx.node.op;
    let mut shape = Some(Vec::new());
    for i in 0..cx.node.inputs.len() {
        shape = match (shape, cx.in_shape(i)) {
            (Some(a), Some(b)) => Some(broadcast(&a, &b)),
            _ => None,
        };
    }
    let dt = match op {
        _ if op.is_predicate() => DType::Bool,
        Op::Where => cx.in_dtype(1),
        _ => cx.in_dtype(0),
    };
    let sym = match op {
        Op::Where => where_sym(cx),
        _ => elementwise_sym(cx),
    };
    Ok(vec![Inferred::tensor(dt, shape).with_sym(sym)])
}

/// IsNaN, IsInf: a bool of the input's shape.
pub(super) fn predicate(cx: &Cx) -> Outcome {
    Ok(vec![Inferred::tensor(DType::Bool, cx.in_shape(0))])
}

pub(super) fn cast(cx: &Cx) -> Outcome {
    let to = cx
        .node
        .attr_int("to")
        .and_then(|c| i32::try_from(c).ok())
        .and_then(DType::from_onnx)
        .unwrap_or(DType::Undefined);
    let sym = if matches!(to, DType::I64 | DType::I32) {
        cx.in_sym(0)
    } else {
        None
    };
    Ok(vec![Inferred::tensor(to, cx.in_shape(0)).with_sym(sym)])
}

pub(super) fn cast_like(cx: &Cx) -> Outcome {
    Ok(vec![
        Inferred::tensor(cx.in_dtype(1), cx.in_shape(0)).with_sym(cx.in_sym(0))
    ])
}

/// Dropout: the output and its bool mask.
pub(super) fn dropout(cx: &Cx) -> Outcome {
    Ok(vec![
        cx.same_as(0),
        Inferred::tensor(DType::Bool, cx.in_shape(0)),
    ])
}

/// Element values of a small integer elementwise op when both operands are known (a value
/// that would overflow is left unknown: the runtime wraps, we do not guess).
fn elementwise_sym(cx: &Cx) -> Option<Vec<Dim>> {
    let op = &cx.node.op;
    if !matches!(
        op,
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Equal
    ) {
        return None;
    }
    if !vector_inputs(cx) {
        return None;
    }
    let fmod = cx.node.attr_int("fmod").unwrap_or(0) != 0;
    let a = cx.in_sym(0)?;
    let b = cx.in_sym(1)?;
    let n = a.len().max(b.len());
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return None;
    }
    let known = |v: Option<i64>| v.map(Dim::Fixed).unwrap_or(Dim::Unknown);
    (0..n)
        .map(|i| {
            let x = a.get(if a.len() == 1 { 0 } else { i })?;
            let y = b.get(if b.len() == 1 { 0 } else { i })?;
            Some(match (x, y, op) {
                (Dim::Fixed(p), Dim::Fixed(q), Op::Add) => known(p.checked_add(*q)),
                (Dim::Fixed(p), Dim::Fixed(q), Op::Sub) => known(p.checked_sub(*q)),
                (Dim::Fixed(p), Dim::Fixed(q), Op::Mul) => known(p.checked_mul(*q)),
                (Dim::Fixed(p), Dim::Fixed(q), Op::Div) if *q != 0 => known(p.checked_div(*q)),
                // known values are integers, symbols are sizes (never negative)
                (Dim::Fixed(p), Dim::Fixed(q), Op::Equal) => Dim::Fixed((p == q) as i64),
                (Dim::Sym(a), Dim::Sym(b), Op::Equal) if a == b => Dim::Fixed(1),
                (Dim::Sym(_), Dim::Fixed(q), Op::Equal)
                | (Dim::Fixed(q), Dim::Sym(_), Op::Equal)
                    if *q < 0 =>
                {
                    Dim::Fixed(0)
                }
                // integer Mod: the sign of the divisor (fmod=0) or of the dividend (fmod=1)
                (Dim::Fixed(p), Dim::Fixed(q), Op::Mod) if *q != 0 => match p.checked_rem(*q) {
                    Some(r) if !fmod && r != 0 && (r < 0) != (*q < 0) => known(r.checked_add(*q)),
                    r => known(r),
                },
                (d, Dim::Fixed(1), Op::Mul | Op::Div) | (Dim::Fixed(1), d, Op::Mul) => d.clone(),
                (d, Dim::Fixed(0), Op::Add | Op::Sub) | (Dim::Fixed(0), d, Op::Add) => d.clone(),
                _ => Dim::Unknown,
            })
        })
        .collect()
}

/// Whether every input is a scalar or a vector: element values of higher ranks do not
/// broadcast elementwise.
fn vector_inputs(cx: &Cx) -> bool {
    (0..cx.node.inputs.len()).all(|i| cx.in_shape(i).is_some_and(|s| s.len() <= 1))
}

/// Element values of a small Where whose condition values are known.
fn where_sym(cx: &Cx) -> Option<Vec<Dim>> {
    if !vector_inputs(cx) {
        return None;
    }
    let ins: Vec<Vec<Dim>> = (0..3).map(|i| cx.in_sym(i)).collect::<Option<_>>()?;
    let n = ins.iter().map(Vec::len).max()?;
    if ins.iter().any(|v| v.len() != n && v.len() != 1) {
        return None;
    }
    let at = |v: &Vec<Dim>, i: usize| v.get(if v.len() == 1 { 0 } else { i }).cloned();
    (0..n)
        .map(|i| match at(&ins[0], i)? {
            Dim::Fixed(0) => at(&ins[2], i),
            Dim::Fixed(_) => at(&ins[1], i),
            _ => None,
        })
        .collect()
}
