//! Resampling: Resize (sizes or scales, per axis) and the older Upsample.

use super::cx::{norm_axis, Cx, Outcome};
use crate::ir::{Dim, Graph, Node};

pub(super) fn resize(cx: &Cx) -> Outcome {
    let shape = resize_axes(cx.g, cx.node, cx.opset)
        .map(|axes| axes.into_iter().map(|a| a.output).collect())
        .or_else(|| cx.in_shape(0).map(|s| vec![Dim::Unknown; s.len()]));
    cx.like_input(shape)
}

/// Upsample: the input's rank, sizes not tracked.
pub(super) fn upsample(cx: &Cx) -> Outcome {
    cx.like_input(cx.in_shape(0).map(|s| vec![Dim::Unknown; s.len()]))
}

/// One axis of a Resize: the scale its coordinate transformation uses (float32, as ONNX
/// Runtime computes it; None where not known) and the output size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResizeAxis {
    pub scale: Option<f32>,
    pub output: Dim,
}

/// Every axis of a Resize node's input: from constant `scales` (output = ⌊input·scale⌋) or
/// `sizes` (scale = output/input), restricted to `axes` (opset 18+; other axes unchanged).
/// None when neither is known, the input's rank is unknown, or keep_aspect_ratio_policy is
/// not "stretch".
pub(crate) fn resize_axes(g: &Graph, node: &Node, opset: i64) -> Option<Vec<ResizeAxis>> {
    let shape = g.ty(node.input(0)?).shape()?.to_vec();
    let r = shape.len();
    if node
        .attr_str("keep_aspect_ratio_policy")
        .is_some_and(|p| p != "stretch")
    {
        return None;
    }
    let axes: Vec<usize> = match node.attr_ints("axes") {
        Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect::<Option<_>>()?,
        None => (0..r).collect(),
    };
    let (scales_at, sizes_at) = if opset < 11 { (1, None) } else { (2, Some(3)) };
    let present = |i: usize| {
        node.input(i)
            .filter(|&v| g.ty(v).shape() != Some(&[Dim::Fixed(0)]))
    };
    let mut out: Vec<ResizeAxis> = shape
        .iter()
        .map(|d| ResizeAxis {
            scale: Some(1.0),
            output: d.clone(),
        })
        .collect();
    if let Some(v) = present(scales_at) {
        let scales = g.constant(v)?.to_f64_vec()?;
        if scales.len() != axes.len() {
            return None;
        }
        for (&a, &s) in axes.iter().zip(&scales) {
            let s = s as f32;
            out[a] = ResizeAxis {
                scale: Some(s),
                output: match &shape[a] {
                    _ if s == 1.0 => shape[a].clone(),
                    Dim::Fixed(n) => Dim::Fixed((*n as f32 * s).floor() as i64),
                    _ => Dim::Unknown,
                },
            };
        }
        return Some(out);
    }
    let v = sizes_at.and_then(present)?;
    let sizes: Vec<Dim> = match g.constant(v) {
        Some(t) => t.to_i64_vec()?.into_iter().map(Dim::Fixed).collect(),
        None => g.value(v).sym.clone()?,
    };
    if sizes.len() != axes.len() {
        return None;
    }
    for (&a, size) in axes.iter().zip(sizes) {
        let scale = match (&shape[a], &size) {
            (Dim::Fixed(n), Dim::Fixed(m)) if *n > 0 => Some(*m as f32 / *n as f32),
            (d, e) if d == e => Some(1.0),
            _ => None,
        };
        out[a] = ResizeAxis {
            scale,
            output: size,
        };
    }
    Some(out)
}
