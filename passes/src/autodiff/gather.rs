//! Gradients of indexing: Gather (embeddings; any axis, scalar or tensor indices, negative
//! indices), GatherElements, GatherND (batch_dims 0), TopK (the values), ScatterElements and
//! ScatterND (reduction none or add).
//! Opsets 16+: the gradient scatters dY into zeros with ScatterND / ScatterElements and
//! reduction="add", so repeated indices (a token id used twice) accumulate; a scatter's
//! gradient gathers dY at the written positions. Indices are stop-gradient.

use super::cx::{norm_axis, GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::{Attr, DType, Op, ValueId};

fn add_reduction() -> (&'static str, Attr) {
    ("reduction", Attr::String(b"add".to_vec()))
}

/// Indices as int64 with negative entries wrapped by the size of `data` along `axis`, unless
/// they are constants known to be non-negative.
fn wrapped_indices(cx: &mut GradCx, idx: ValueId, data: ValueId, axis: i64) -> ValueId {
    let known_nonneg =
        cx.b.g
            .constant(idx)
            .and_then(|t| t.to_i64_vec())
            .is_some_and(|v| v.iter().all(|&i| i >= 0));
    let i64idx = if cx.b.dtype(idx) == DType::I64 {
        idx
    } else {
        cx.b.cast(idx, DType::I64)
    };
    if known_nonneg {
        return i64idx;
    }
    let size1 = cx.b.shape_part(data, axis, Some(axis + 1));
    let size = cx.b.squeeze(size1, &[0]);
    let zero = cx.b.scalar(DType::I64, 0.0);
    let neg = cx.b.op(Op::Less, &[i64idx, zero], vec![]);
    let shifted = cx.b.add(i64idx, size);
    cx.b.where_(neg, shifted, i64idx)
}

/// Gather along axis a: dY (shaped data[:a] + indices + data[a+1:]) is transposed to put the
/// index axes first and scatter-added into zeros shaped [data[a], data[:a], data[a+1:]], which
/// is transposed back (no transposes when a = 0).
pub(super) fn gather(cx: &mut GradCx) -> GradResult {
    let (data, idx, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(data)?;
    let q = cx.rank(idx)?;
    let a = norm_axis(cx.int("axis", 0), r)?;
    let a64 = a as i64;
    let wrapped = wrapped_indices(cx, idx, data, a64);
    let nd_idx = cx.b.unsqueeze(wrapped, &[-1]);
    let dt = cx.b.dtype(dy);
    if a == 0 {
        let zeros = cx.b.fill_like(data, 0.0);
        let sc =
            cx.b.op(Op::ScatterND, &[zeros, nd_idx, dy], vec![add_reduction()]);
        return Ok(vec![Some(sc), None]);
    }
    let (a, q, r) = (a as i64, q as i64, r as i64);
    // dY axes: [0, a) data-leading, [a, a+q) index, [a+q, ..) data-trailing
    let dy_perm: Vec<i64> = (a..a + q).chain(0..a).chain(a + q..r - 1 + q).collect();
    let data_perm: Vec<i64> = std::iter::once(a).chain(0..a).chain(a + 1..r).collect();
    let dyt = cx.b.transpose(dy, &dy_perm);
    let shape = cx.b.shape_of(data);
    let perm_c = cx.b.ints(&data_perm);
    let tshape =
        cx.b.op(Op::Gather, &[shape, perm_c], vec![("axis", Attr::Int(0))]);
    let zeros = cx.b.fill(tshape, dt, 0.0);
    let sc =
        cx.b.op(Op::ScatterND, &[zeros, nd_idx, dyt], vec![add_reduction()]);
    let mut inv = vec![0i64; r as usize];
    for (i, &p) in data_perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    Ok(vec![Some(cx.b.transpose(sc, &inv)), None])
}

pub(super) fn gather_elements(cx: &mut GradCx) -> GradResult {
    let (data, idx, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(data)?;
    let a = norm_axis(cx.int("axis", 0), r)? as i64;
    let wrapped = wrapped_indices(cx, idx, data, a);
    let zeros = cx.b.fill_like(data, 0.0);
    let sc = cx.b.op(
        Op::ScatterElements,
        &[zeros, wrapped, dy],
        vec![("axis", Attr::Int(a)), add_reduction()],
    );
    Ok(vec![Some(sc), None])
}

pub(super) fn gather_nd(cx: &mut GradCx) -> GradResult {
    if cx.int("batch_dims", 0) != 0 {
        return Err(GradError::Unsupported(
            "GatherND with batch_dims > 0".into(),
        ));
    }
    let (data, idx, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let zeros = cx.b.fill_like(data, 0.0);
    let sc =
        cx.b.op(Op::ScatterND, &[zeros, idx, dy], vec![add_reduction()]);
    Ok(vec![Some(sc), None])
}

/// dX: the values' gradient scattered to the positions TopK took them from (distinct along
/// the axis, so a plain scatter).
pub(super) fn top_k(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let idx = cx.y(1)?;
    let axis = norm_axis(cx.int("axis", -1), cx.rank(x)?)? as i64;
    let zeros = cx.b.fill_like(x, 0.0);
    let g = cx.b.op(
        Op::ScatterElements,
        &[zeros, idx, dy],
        vec![("axis", Attr::Int(axis))],
    );
    Ok(vec![Some(g), None])
}

/// The reduction of a scatter node: "none" (written positions take the updates) or "add".
fn scatter_overwrites(cx: &GradCx) -> Result<bool, GradError> {
    match cx.str_attr("reduction", "none").as_str() {
        "none" => Ok(true),
        "add" => Ok(false),
        other => Err(GradError::Unsupported(format!("reduction '{other}'"))),
    }
}

/// Y = data with updates written (or added) at indices along an axis: dData = dY (zeroed where
/// overwritten), dUpdates = dY gathered at the indices.
pub(super) fn scatter_elements(cx: &mut GradCx) -> GradResult {
    let (idx, upd, dy) = (cx.x(1)?, cx.x(2)?, cx.dy0()?);
    let axis = vec![("axis", Attr::Int(cx.int("axis", 0)))];
    let overwrite = scatter_overwrites(cx)?;
    let mut out = vec![None; 3];
    if cx.needs(0) {
        out[0] = Some(if overwrite {
            let z = cx.b.fill_like(upd, 0.0);
            cx.b.op(Op::ScatterElements, &[dy, idx, z], axis.clone())
        } else {
            dy
        });
    }
    if cx.needs(2) {
        out[2] = Some(cx.b.op(Op::GatherElements, &[dy, idx], axis));
    }
    Ok(out)
}

/// ScatterND: as ScatterElements with GatherND reading the updates' gradient.
pub(super) fn scatter_nd(cx: &mut GradCx) -> GradResult {
    let (idx, upd, dy) = (cx.x(1)?, cx.x(2)?, cx.dy0()?);
    let overwrite = scatter_overwrites(cx)?;
    let mut out = vec![None; 3];
    if cx.needs(0) {
        out[0] = Some(if overwrite {
            let z = cx.b.fill_like(upd, 0.0);
            cx.b.op(Op::ScatterND, &[dy, idx, z], vec![])
        } else {
            dy
        });
    }
    if cx.needs(2) {
        out[2] = Some(cx.b.op(Op::GatherND, &[dy, idx], vec![]));
    }
    Ok(out)
}
