//! Operators that make tensors rather than transform them: Constant, ConstantOfShape, Shape,
//! Size, Range, the random generators, and If (its then-branch's outputs).

use super::cx::{constant_attr_value, Cx, Inferred, Outcome};
use crate::ir::{Attr, DType, Dim, Type};

pub(super) fn constant(cx: &Cx) -> Outcome {
    let Some(tensor) = constant_attr_value(cx.node) else {
        return Ok(vec![]);
    };
    let sym = tensor
        .to_i64_vec()
        .filter(|v| v.len() <= 64 && matches!(tensor.dtype, DType::I64 | DType::I32))
        .map(|v| v.into_iter().map(Dim::Fixed).collect());
    Ok(vec![Inferred {
        ty: Type::Tensor(tensor.ty()),
        sym,
    }])
}

pub(super) fn constant_of_shape(cx: &Cx) -> Outcome {
    let dt = match cx.node.attr("value") {
        Some(Attr::Tensor(v)) => v.dtype,
        _ => DType::F32,
    };
    let shape = cx
        .in_sym(0)
        .or_else(|| cx.in_len(0).map(|n| vec![Dim::Unknown; n]));
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// Shape: the int64 vector of the input's dims from `start` to `end`, values included.
pub(super) fn shape(cx: &Cx) -> Outcome {
    let (shape, sym) = match cx.in_shape(0) {
        Some(s) => {
            let r = s.len() as i64;
            let clamp = |x: i64| (if x < 0 { x.saturating_add(r) } else { x }).clamp(0, r) as usize;
            let a = clamp(cx.node.attr_int("start").unwrap_or(0));
            let b = clamp(cx.node.attr_int("end").unwrap_or(r));
            let part = if a < b { s[a..b].to_vec() } else { vec![] };
            (Some(vec![Dim::Fixed(part.len() as i64)]), Some(part))
        }
        None => (Some(vec![Dim::Unknown]), None),
    };
    Ok(vec![Inferred::tensor(DType::I64, shape).with_sym(sym)])
}

pub(super) fn size(_: &Cx) -> Outcome {
    Ok(vec![Inferred::tensor(DType::I64, Some(vec![]))])
}

pub(super) fn range(cx: &Cx) -> Outcome {
    cx.like_input(Some(vec![Dim::Unknown]))
}

/// The element type a random generator's `dtype` attribute asks for.
fn random_dtype(cx: &Cx) -> Option<DType> {
    let code = cx.node.attr_int("dtype")?;
    DType::from_onnx(i32::try_from(code).ok()?)
}

/// RandomUniformLike, RandomNormalLike, Bernoulli: the input's shape.
pub(super) fn random_like(cx: &Cx) -> Outcome {
    let dt = random_dtype(cx).unwrap_or(cx.in_dtype(0));
    Ok(vec![Inferred::tensor(dt, cx.in_shape(0))])
}

/// RandomUniform, RandomNormal: the `shape` attribute.
pub(super) fn random(cx: &Cx) -> Outcome {
    let dt = random_dtype(cx).unwrap_or(DType::F32);
    let shape = cx
        .node
        .attr_ints("shape")
        .map(|s| s.iter().map(|&d| Dim::Fixed(d)).collect());
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// If: the then-branch's output types.
pub(super) fn if_(cx: &Cx) -> Outcome {
    let Some(Attr::Graph(then)) = cx.node.attr("then_branch") else {
        return Ok(vec![]);
    };
    Ok(then
        .outputs
        .iter()
        .map(|&o| Inferred {
            ty: then.ty(o).clone(),
            sym: None,
        })
        .collect())
}
