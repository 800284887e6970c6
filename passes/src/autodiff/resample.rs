//! Gradients of resampling: Resize (modes nearest, linear and cubic; coordinate
//! transformations half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners,
//! asymmetric and tf_half_pixel_for_nn; `scales` or `sizes`, `axes`) and Pad in reflect, edge
//! and wrap modes (constant mode: shape.rs).
//! Both are linear in X and act on each axis separately: Y = X ×ₐ Mₐ with Mₐ the [out, in]
//! matrix of axis a, built at compile time from the static sizes the way ONNX Runtime computes
//! the forward (coordinates in float32). The gradient applies the transposes,
//! dX = dY ×ₐ Mₐᵀ: one MatMul by a constant per changed axis (the batch may be symbolic).
//! Opsets 16+ (Pad `axes` from 18). Constraints: changed axes of known size, constant scales
//! or sizes and pads; no antialias when downscaling, no tf_crop_and_resize, and
//! keep_aspect_ratio_policy "stretch" only.

use super::cx::{norm_axis, GradCx, GradError, GradResult};
use crate::ir::infer::resize_axes;
use crate::ir::{Tensor, ValueId};

/// The [out, in] matrix of one axis, row-major.
struct AxisMap {
    axis: usize,
    out: usize,
    inp: usize,
    m: Vec<f64>,
}

impl AxisMap {
    fn new(axis: usize, out: usize, inp: usize) -> AxisMap {
        AxisMap {
            axis,
            out,
            inp,
            m: vec![0.0; out * inp],
        }
    }

    /// Adds weight `w` of input index `i` (clamped to the axis, edge padding) to output `o`.
    fn add(&mut self, o: usize, i: i64, w: f64) {
        let i = i.clamp(0, self.inp as i64 - 1) as usize;
        self.m[o * self.inp + i] += w;
    }
}

/// dX = dY contracted with each map's matrix along its axis: a MatMul by the [out, in] matrix
/// on the last axis, by its transpose on the second to last, through transposes elsewhere.
fn apply_transposed(cx: &mut GradCx, dy: ValueId, maps: &[AxisMap]) -> Result<ValueId, GradError> {
    let r = cx.rank(dy)?;
    let dt = cx.b.dtype(dy);
    let mut g = dy;
    for map in maps {
        let (o, i) = (map.out as i64, map.inp as i64);
        if map.axis + 1 == r {
            let m = cx.b.constant(Tensor::from_f64_as(dt, &[o, i], &map.m));
            g = cx.b.matmul(g, m);
            continue;
        }
        let mt: Vec<f64> = (0..map.inp)
            .flat_map(|c| (0..map.out).map(move |row| (row, c)))
            .map(|(row, c)| map.m[row * map.inp + c])
            .collect();
        let mt = cx.b.constant(Tensor::from_f64_as(dt, &[i, o], &mt));
        if map.axis + 2 == r {
            g = cx.b.matmul(mt, g);
        } else {
            let mut perm: Vec<i64> = (0..r as i64).collect();
            perm.swap(map.axis, r - 2);
            let t = cx.b.transpose(g, &perm);
            let p = cx.b.matmul(mt, t);
            g = cx.b.transpose(p, &perm);
        }
    }
    Ok(g)
}

/// A known, positive axis size.
fn size(cx: &GradCx, v: ValueId, axis: usize) -> Result<usize, GradError> {
    usize::try_from(cx.dim(v, axis)?)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| GradError::Unsupported(format!("an empty axis {axis}")))
}

/// The source coordinate of output index `o` (float32 arithmetic, as ONNX Runtime).
fn source_coordinate(mode: &str, o: usize, scale: f32, out: usize, inp: usize) -> Option<f32> {
    let (x, s, m, n) = (o as f32, scale, out as f32, inp as f32);
    Some(match mode {
        "half_pixel" => (x + 0.5) / s - 0.5,
        "pytorch_half_pixel" if out > 1 => (x + 0.5) / s - 0.5,
        "pytorch_half_pixel" => 0.0,
        "half_pixel_symmetric" => {
            let adjustment = m / (s * n);
            let offset = n / 2.0 * (1.0 - adjustment);
            offset + (x + 0.5) / s - 0.5
        }
        "align_corners" if out > 1 => x * (n - 1.0) / (m - 1.0),
        "align_corners" => 0.0,
        "asymmetric" => x / s,
        "tf_half_pixel_for_nn" => (x + 0.5) / s,
        _ => return None,
    })
}

/// The 4 cubic convolution weights of offsets −1, 0, 1, 2 from ⌊x⌋ for fraction `t`.
fn cubic_weights(t: f32, a: f32) -> [f32; 4] {
    let outer = |d: f32| ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
    let inner = |d: f32| ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    [outer(t + 1.0), inner(t), inner(1.0 - t), outer(2.0 - t)]
}

/// The interpolation matrix of one resized axis.
fn resize_map(
    cx: &GradCx,
    axis: usize,
    scale: f32,
    out: usize,
    inp: usize,
) -> Result<AxisMap, GradError> {
    let coord = cx.str_attr("coordinate_transformation_mode", "half_pixel");
    let mode = cx.str_attr("mode", "nearest");
    let nearest = cx.str_attr("nearest_mode", "round_prefer_floor");
    let a = cx.float("cubic_coeff_a", -0.75);
    let exclude_outside = cx.int("exclude_outside", 0) != 0;
    let mut map = AxisMap::new(axis, out, inp);
    for o in 0..out {
        let x = source_coordinate(&coord, o, scale, out, inp).ok_or_else(|| {
            GradError::Unsupported(format!("Resize coordinate_transformation_mode '{coord}'"))
        })?;
        match mode.as_str() {
            "nearest" => {
                let f = x.floor();
                let i = match nearest.as_str() {
                    "round_prefer_floor" if x - f == 0.5 => f,
                    "round_prefer_ceil" if x - f == 0.5 => f + 1.0,
                    "round_prefer_floor" | "round_prefer_ceil" => x.round(),
                    "floor" => f,
                    "ceil" => x.ceil(),
                    other => {
                        return Err(GradError::Unsupported(format!(
                            "Resize nearest_mode '{other}'"
                        )))
                    }
                };
                map.add(o, i as i64, 1.0);
            }
            "linear" => {
                let x = x.clamp(0.0, inp as f32 - 1.0);
                let f = x.floor();
                let t = (x - f) as f64;
                map.add(o, f as i64, 1.0 - t);
                map.add(o, f as i64 + 1, t);
            }
            "cubic" => {
                let f = x.floor();
                let w = cubic_weights(x - f, a);
                let idx = |k: usize| f as i64 - 1 + k as i64;
                let inside = |k: usize| (0..inp as i64).contains(&idx(k));
                let total: f32 = (0..4)
                    .filter(|&k| !exclude_outside || inside(k))
                    .map(|k| w[k])
                    .sum();
                for (k, &wk) in w.iter().enumerate() {
                    if exclude_outside && !inside(k) {
                        continue;
                    }
                    let wk = if exclude_outside { wk / total } else { wk };
                    map.add(o, idx(k), wk as f64);
                }
            }
            other => return Err(GradError::Unsupported(format!("Resize mode '{other}'"))),
        }
    }
    Ok(map)
}

pub(super) fn resize(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let axes = resize_axes(cx.b.g, &cx.node, cx.b.opset())
        .ok_or_else(|| GradError::NeedsStatic("Resize's scales or sizes".into()))?;
    let mut maps = Vec::new();
    for (a, ax) in axes.iter().enumerate() {
        let unchanged = cx.b.g.ty(x).shape().and_then(|s| s.get(a)) == Some(&ax.output);
        if ax.scale == Some(1.0) && unchanged {
            continue;
        }
        let scale = ax
            .scale
            .ok_or_else(|| GradError::NeedsStatic(format!("the scale of axis {a}")))?;
        if scale < 1.0 && cx.int("antialias", 0) != 0 {
            return Err(GradError::Unsupported(
                "Resize with antialias when downscaling".into(),
            ));
        }
        let (out, inp) = (size(cx, dy, a)?, size(cx, x, a)?);
        maps.push(resize_map(cx, a, scale, out, inp)?);
    }
    Ok(vec![Some(apply_transposed(cx, dy, &maps)?)])
}

/// Pad in reflect, edge or wrap mode: every output index reads one input index.
pub(super) fn pad_indexed(cx: &mut GradCx, mode: &str) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    let r = cx.rank(x)?;
    let pads = cx
        .const_ints(1)
        .ok_or_else(|| GradError::NeedsStatic("the pads of a reflect/edge/wrap Pad".into()))?;
    let axes: Vec<usize> = match cx.opt_x(3) {
        Some(_) => cx
            .const_ints(3)
            .ok_or_else(|| GradError::NeedsStatic("Pad axes".into()))?
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(GradError::Unsupported(format!(
            "{} pads for {k} axes",
            pads.len()
        )));
    }
    let mut maps = Vec::new();
    for (j, &a) in axes.iter().enumerate() {
        let (begin, end) = (pads[j], pads[j + k]);
        if begin == 0 && end == 0 {
            continue;
        }
        let (out, inp) = (size(cx, dy, a)?, size(cx, x, a)?);
        let n = inp as i64;
        let mut map = AxisMap::new(a, out, inp);
        for o in 0..out {
            let src = o as i64 - begin;
            let i = match mode {
                "edge" => src,
                "wrap" => src.rem_euclid(n),
                _ if n == 1 => 0,
                _ => {
                    let p = src.rem_euclid(2 * (n - 1));
                    if p >= n {
                        2 * (n - 1) - p
                    } else {
                        p
                    }
                }
            };
            map.add(o, i, 1.0);
        }
        maps.push(map);
    }
    Ok(vec![Some(apply_transposed(cx, dy, &maps)?)])
}
