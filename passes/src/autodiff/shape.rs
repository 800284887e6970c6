//! Gradients of shape and data-movement operators: Reshape, Flatten, Squeeze, Unsqueeze
//! (reshape back), Transpose (inverse permutation), Expand (sum back), Tile, Pad (constant
//! mode: crop with negative pads; reflect/edge/wrap: resample.rs), Concat (Split), Split (Concat, zeros for unused outputs),
//! Slice (Pad for unit steps on known sizes, else a scatter of dY to the sliced indices),
//! Trilu (same mask), CumSum (cumulative sum in the other direction), DepthToSpace and
//! SpaceToDepth (the inverse rearrangement).
//! Opsets 13+ (axes, splits, pads, slice parameters as inputs; Shape start/end needs 15).
//! Shape-like inputs are stop-gradient; they may be dynamic except Slice's axes.

use super::cx::{norm_axis, GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use super::resample::pad_indexed;
use crate::ir::{Attr, Op, ValueId};

/// Reshape, Flatten, Squeeze, Unsqueeze: dY reshaped to the input's shape.
pub(super) fn reshape(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    Ok(vec![Some(cx.b.reshape_like(dy, x))])
}

pub(super) fn transpose(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let perm: Vec<usize> = match cx.node.attr_ints("perm") {
        Some(p) => p
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).rev().collect(),
    };
    let mut inv = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i as i64;
    }
    Ok(vec![Some(cx.b.transpose(dy, &inv))])
}

pub(super) fn expand(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    Ok(vec![Some(cx.unbroadcast(dy, 0)?)])
}

/// dY viewed as [r0, d0, r1, d1, ...] (repeat count before each input dim) and summed over
/// the repeat axes.
pub(super) fn tile(cx: &mut GradCx) -> GradResult {
    let (x, reps, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let ru = cx.b.unsqueeze(reps, &[1]);
    let shp = cx.b.shape_of(x);
    let su = cx.b.unsqueeze(shp, &[1]);
    let pairs = cx.b.op(Op::Concat, &[ru, su], vec![("axis", Attr::Int(1))]);
    let flat = cx.b.ints(&[-1]);
    let view = cx.b.reshape(pairs, flat);
    let d = cx.b.reshape(dy, view);
    let axes: Vec<i64> = (0..r as i64).map(|i| 2 * i).collect();
    Ok(vec![Some(cx.b.reduce_sum(d, &axes, false))])
}

/// Constant-mode Pad: dX = Pad(dY, -pads), a crop. The other modes read input elements more
/// than once: resample.rs.
pub(super) fn pad(cx: &mut GradCx) -> GradResult {
    match cx.str_attr("mode", "constant").as_str() {
        "constant" => {}
        mode @ ("reflect" | "edge" | "wrap") => return pad_indexed(cx, mode),
        mode => return Err(GradError::Unsupported(format!("Pad mode '{mode}'"))),
    }
    let (pads, dy) = (cx.x(1)?, cx.dy0()?);
    let neg = cx.b.neg(pads);
    let ins = [Some(dy), Some(neg), None, cx.opt_x(3)];
    let n = if ins[3].is_some() { 4 } else { 2 };
    let (_, outs) = cx.b.node(Op::Pad, &ins[..n], 1, vec![]);
    Ok(vec![Some(outs[0])])
}

/// dY split back into the inputs' extents along the axis.
pub(super) fn concat(cx: &mut GradCx) -> GradResult {
    let (y, dy) = (cx.y(0)?, cx.dy0()?);
    let n = cx.node.inputs.len();
    if n == 1 {
        return Ok(vec![Some(dy)]);
    }
    let a = norm_axis(cx.int("axis", 0), cx.rank(y)?)?;
    let xs: Vec<ValueId> = (0..n).map(|i| cx.x(i)).collect::<Result<_, _>>()?;
    let fixed: Option<Vec<i64>> = xs.iter().map(|&x| cx.dim(x, a).ok()).collect();
    let sizes = match fixed {
        Some(s) => cx.b.ints(&s),
        None => {
            let parts: Vec<ValueId> = xs
                .iter()
                .map(|&x| cx.b.shape_part(x, a as i64, Some(a as i64 + 1)))
                .collect();
            cx.b.op(Op::Concat, &parts, vec![("axis", Attr::Int(0))])
        }
    };
    let (_, outs) = cx.b.node(
        Op::Split,
        &[Some(dy), Some(sizes)],
        n,
        vec![("axis", Attr::Int(a as i64))],
    );
    Ok((0..n).map(|i| cx.needs(i).then(|| outs[i])).collect())
}

/// The output gradients concatenated (zeros for outputs nobody uses).
pub(super) fn split(cx: &mut GradCx) -> GradResult {
    let x = cx.x(0)?;
    let a = norm_axis(cx.int("axis", 0), cx.rank(x)?)?;
    let mut parts = Vec::with_capacity(cx.node.outputs.len());
    for i in 0..cx.node.outputs.len() {
        parts.push(match cx.dy(i) {
            Some(d) => d,
            None => {
                let y = cx.y(i)?;
                cx.b.fill_like(y, 0.0)
            }
        });
    }
    let g =
        cx.b.op(Op::Concat, &parts, vec![("axis", Attr::Int(a as i64))]);
    Ok(vec![Some(g)])
}

/// The constant parameters of a Slice: per sliced axis (axis, start, end, step).
fn slice_params(cx: &GradCx, r: usize) -> Option<Vec<(usize, i64, i64, i64)>> {
    let starts = cx.const_ints(1)?;
    let ends = cx.const_ints(2)?;
    let axes = match cx.opt_x(3) {
        Some(_) => cx.const_ints(3)?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match cx.opt_x(4) {
        Some(_) => cx.const_ints(4)?,
        None => vec![1; starts.len()],
    };
    (0..starts.len())
        .map(|k| {
            let a = norm_axis(*axes.get(k)?, r).ok()?;
            Some((a, starts[k], *ends.get(k)?, *steps.get(k)?))
        })
        .collect()
}

/// Unit-step slices of known extent: dX = Pad(dY) with the cut-off sizes.
fn slice_as_pad(cx: &mut GradCx, x: ValueId, dy: ValueId, r: usize) -> Option<ValueId> {
    let params = slice_params(cx, r)?;
    let mut pads = vec![0i64; 2 * r];
    for (a, start, end, step) in params {
        if step != 1 {
            return None;
        }
        let n = cx.dim(x, a).ok()?;
        let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n);
        let (lo, hi) = (clamp(start), clamp(end));
        let len = (hi - lo).max(0);
        pads[a] = lo;
        pads[a + r] = n - lo - len;
    }
    let p = cx.b.ints(&pads);
    Some(cx.b.op(Op::Pad, &[dy, p], vec![]))
}

/// Element `k` of integer input `i` as a 1-element vector.
fn element(cx: &mut GradCx, i: usize, k: usize) -> Result<ValueId, GradError> {
    let v = cx.x(i)?;
    Ok(cx.b.slice_const(v, &[k as i64], &[k as i64 + 1], &[0]))
}

/// dX: for unit steps on known sizes a Pad; otherwise, axis by axis, the indices the slice
/// took (Slice applied to Range(0, n), so clamping and negative steps agree with the forward
/// node) receive dY through ScatterElements.
pub(super) fn slice(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let r = cx.rank(x)?;
    if let Some(g) = slice_as_pad(cx, x, dy, r) {
        return Ok(vec![Some(g)]);
    }
    let n_axes =
        cx.b.g
            .ty(cx.x(1)?)
            .shape()
            .and_then(|s| s.first()?.fixed())
            .ok_or_else(|| GradError::NeedsStatic("the number of sliced axes".into()))?
            as usize;
    let axes: Vec<usize> = match cx.opt_x(3) {
        Some(_) => cx
            .const_ints(3)
            .ok_or_else(|| GradError::NeedsStatic("Slice axes".into()))?
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        None => (0..n_axes).collect(),
    };
    let dt = cx.b.dtype(dy);
    let mut cur = dy;
    for (k, &a) in axes.iter().enumerate() {
        let a64 = a as i64;
        let start = element(cx, 1, k)?;
        let end = element(cx, 2, k)?;
        let step = match cx.opt_x(4) {
            Some(_) => element(cx, 4, k)?,
            None => cx.b.ints(&[1]),
        };
        let n1 = cx.b.shape_part(x, a64, Some(a64 + 1));
        let n = cx.b.squeeze(n1, &[0]);
        let zero = cx.b.scalar(crate::ir::DType::I64, 0.0);
        let one = cx.b.scalar(crate::ir::DType::I64, 1.0);
        let all = cx.b.op(Op::Range, &[zero, n, one], vec![]);
        let ax0 = cx.b.ints(&[0]);
        let idx = cx.b.op(Op::Slice, &[all, start, end, ax0, step], vec![]);
        let view: Vec<i64> = (0..r).map(|i| if i == a { -1 } else { 1 }).collect();
        let vs = cx.b.ints(&view);
        let iv = cx.b.reshape(idx, vs);
        let ib = cx.b.expand_like(iv, cur);
        let before = cx.b.shape_part(cur, 0, Some(a64));
        let after = cx.b.shape_part(cur, a64 + 1, None);
        let full = cx.b.op(
            Op::Concat,
            &[before, n1, after],
            vec![("axis", Attr::Int(0))],
        );
        let zeros = cx.b.fill(full, dt, 0.0);
        cur = cx.b.op(
            Op::ScatterElements,
            &[zeros, ib, cur],
            vec![("axis", Attr::Int(a64))],
        );
    }
    Ok(vec![Some(cur)])
}

/// Trilu keeps a fixed triangle: the gradient keeps the same one.
pub(super) fn trilu(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let ins = [Some(dy), cx.opt_x(1)];
    let n = if ins[1].is_some() { 2 } else { 1 };
    let upper = vec![("upper", Attr::Int(cx.int("upper", 1)))];
    let (_, outs) = cx.b.node(Op::Trilu, &ins[..n], 1, upper);
    Ok(vec![Some(outs[0])])
}

/// The adjoint of a cumulative sum is the cumulative sum in the opposite direction.
pub(super) fn cumsum(cx: &mut GradCx) -> GradResult {
    let (axis, dy) = (cx.x(1)?, cx.dy0()?);
    let attrs = vec![
        ("exclusive", Attr::Int(cx.int("exclusive", 0))),
        ("reverse", Attr::Int((cx.int("reverse", 0) == 0) as i64)),
    ];
    Ok(vec![Some(cx.b.op(Op::CumSum, &[dy, axis], attrs))])
}

/// DCR mode is undone by SpaceToDepth; CRD through its reshape/transpose form, inverted:
/// x [N, C, H, W] → [N, C/b², b, b, H, W] → perm (0, 1, 4, 2, 5, 3) → [N, C/b², H·b, W·b].
pub(super) fn depth_to_space(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let b = cx
        .node
        .attr_int("blocksize")
        .ok_or_else(|| GradError::Missing("attribute blocksize".into()))?;
    if cx.str_attr("mode", "DCR") == "DCR" {
        let attrs = vec![("blocksize", Attr::Int(b))];
        return Ok(vec![Some(cx.b.op(Op::SpaceToDepth, &[dy], attrs))]);
    }
    let (c, h, w) = (cx.dim(x, 1)?, cx.dim(x, 2)?, cx.dim(x, 3)?);
    let split = cx.b.ints(&[0, c / (b * b), h, b, w, b]);
    let d6 = cx.b.reshape(dy, split);
    let t = cx.b.transpose(d6, &[0, 1, 3, 5, 2, 4]);
    Ok(vec![Some(cx.b.reshape_like(t, x))])
}

/// SpaceToDepth is undone by DepthToSpace in DCR mode.
pub(super) fn space_to_depth(cx: &mut GradCx) -> GradResult {
    let dy = cx.dy0()?;
    let b = cx
        .node
        .attr_int("blocksize")
        .ok_or_else(|| GradError::Missing("attribute blocksize".into()))?;
    let attrs = vec![
        ("blocksize", Attr::Int(b)),
        ("mode", Attr::String(b"DCR".to_vec())),
    ];
    Ok(vec![Some(cx.b.op(Op::DepthToSpace, &[dy], attrs))])
}
