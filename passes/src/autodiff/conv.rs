//! Gradients of convolution and pooling: Conv, ConvTranspose (groups, strides, dilations,
//! asymmetric pads, any number of spatial axes), MaxPool, AveragePool, GlobalAveragePool,
//! GlobalMaxPool.
//! Opsets 16+ (ScatterElements with reduction="add" for MaxPool). Constraints: channel and
//! spatial sizes known at compile time where a transposed convolution needs its
//! output_padding (the batch may be symbolic); ConvTranspose with explicit pads only;
//! MaxPool with storage_order 0.
//!
//! Conv's input gradient is a ConvTranspose of dY with the same weights; its weight gradient
//! is a convolution of the input with dY as the kernel (batch and channel axes swapped,
//! strides and dilations exchanged, groups folded into channels), cut to the kernel size.

use super::cx::{GradCx, GradError, GradResult};
use super::ext::BuilderExt;
use crate::ir::infer::infer_and_store;
use crate::ir::Op;
use crate::ir::{Attr, DType, Tensor, Type, ValueDef, ValueId};

/// The sliding-window attributes of a conv/pool node, auto_pad resolved to explicit pads.
struct Window {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    /// [begin..., end...]
    pads: Vec<i64>,
    group: i64,
}

impl Window {
    fn read(cx: &GradCx, x: ValueId, kernel: Vec<i64>) -> Result<Window, GradError> {
        let nsp = kernel.len();
        let list = |name: &str, default: i64| {
            cx.node
                .attr_ints(name)
                .map(<[i64]>::to_vec)
                .unwrap_or(vec![default; nsp])
        };
        let strides = list("strides", 1);
        let dilations = list("dilations", 1);
        let pads = match cx.str_attr("auto_pad", "NOTSET").as_str() {
            "NOTSET" => cx
                .node
                .attr_ints("pads")
                .map(<[i64]>::to_vec)
                .unwrap_or(vec![0; 2 * nsp]),
            "VALID" => vec![0; 2 * nsp],
            mode if cx.node.op != Op::ConvTranspose => {
                let mut pads = vec![0; 2 * nsp];
                for i in 0..nsp {
                    let n = cx.dim(x, i + 2)?;
                    let (s, eff) = (strides[i], dilations[i] * (kernel[i] - 1) + 1);
                    let total = (((n + s - 1) / s - 1) * s + eff - n).max(0);
                    let small = total / 2;
                    let (b, e) = match mode {
                        "SAME_LOWER" => (total - small, small),
                        _ => (small, total - small),
                    };
                    pads[i] = b;
                    pads[i + nsp] = e;
                }
                pads
            }
            mode => return Err(GradError::Unsupported(format!("auto_pad={mode}"))),
        };
        Ok(Window {
            kernel,
            strides,
            dilations,
            pads,
            group: cx.int("group", 1),
        })
    }

    fn nsp(&self) -> usize {
        self.kernel.len()
    }

    /// The attributes of a Conv/ConvTranspose/pool node over this window.
    fn attrs(&self, group: i64) -> Vec<(&'static str, Attr)> {
        vec![
            ("strides", Attr::Ints(self.strides.clone())),
            ("dilations", Attr::Ints(self.dilations.clone())),
            ("pads", Attr::Ints(self.pads.clone())),
            ("group", Attr::Int(group)),
        ]
    }

    /// output_padding making a ConvTranspose of `y` (the window's output) as large as `x`.
    fn output_padding(&self, cx: &GradCx, x: ValueId, y: ValueId) -> Result<Vec<i64>, GradError> {
        let n = self.nsp();
        (0..n)
            .map(|i| {
                let (xi, yi) = (cx.dim(x, i + 2)?, cx.dim(y, i + 2)?);
                let eff = self.dilations[i] * (self.kernel[i] - 1) + 1;
                Ok(xi + self.pads[i] + self.pads[i + n] - ((yi - 1) * self.strides[i] + eff))
            })
            .collect()
    }

    /// The adjoint of the window applied to `dy` with weights `w`: a ConvTranspose sized like `x`.
    fn transpose_to(
        &self,
        cx: &mut GradCx,
        dy: ValueId,
        w: ValueId,
        x: ValueId,
        group: i64,
    ) -> Result<ValueId, GradError> {
        let mut attrs = self.attrs(group);
        attrs.push((
            "output_padding",
            Attr::Ints(self.output_padding(cx, x, dy)?),
        ));
        Ok(cx.b.op(Op::ConvTranspose, &[dy, w], attrs))
    }
}

/// The kernel size from the `kernel_shape` attribute or the weight's spatial dims.
fn kernel_of(cx: &GradCx, w: Option<ValueId>) -> Result<Vec<i64>, GradError> {
    if let Some(k) = cx.node.attr_ints("kernel_shape") {
        return Ok(k.to_vec());
    }
    let w = w.ok_or_else(|| GradError::Missing("attribute kernel_shape".into()))?;
    let dims = cx
        .dims(w)
        .ok_or_else(|| GradError::NeedsStatic("the kernel shape".into()))?;
    Ok(dims[2..].to_vec())
}

/// Sum over the batch and spatial axes (a bias or per-channel parameter gradient).
pub(super) fn bias_grad(cx: &mut GradCx, dy: ValueId) -> Result<ValueId, GradError> {
    let r = cx.rank(dy)?;
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    Ok(cx.b.reduce_sum(dy, &axes, false))
}

/// dW of a convolution over `input` whose output gradient is `out_grad`:
/// dW[co, ci, k] = Σ_{n,o} out_grad[n, co, o] · input[n, ci, o·s + k·d − p], computed as one
/// grouped Conv of input (channels ↔ batch) by out_grad (as the kernel) with strides and
/// dilations exchanged, transposed back and cut to the kernel size.
fn weight_grad(
    cx: &mut GradCx,
    input: ValueId,
    out_grad: ValueId,
    win: &Window,
) -> Result<ValueId, GradError> {
    let nsp = win.nsp();
    let g = win.group;
    let swap: Vec<i64> = [1, 0].into_iter().chain(2..nsp as i64 + 2).collect();
    let (inp, ker) = if g == 1 {
        (
            cx.b.transpose(input, &swap),
            cx.b.transpose(out_grad, &swap),
        )
    } else {
        let (c_in, c_out) = (cx.dim(input, 1)?, cx.dim(out_grad, 1)?);
        let spatial = |cx: &GradCx, v| {
            (2..nsp + 2)
                .map(|i| cx.dim(v, i))
                .collect::<Result<Vec<_>, _>>()
        };
        let sp_in = spatial(cx, input)?;
        let sp_out = spatial(cx, out_grad)?;
        let inp = fold_groups(cx, input, g, c_in / g, &sp_in, &[2, 1, 0], c_in / g);
        let ker = fold_groups(cx, out_grad, g, c_out / g, &sp_out, &[1, 2, 0], c_out);
        (inp, ker)
    };
    let swapped = Window {
        kernel: win.kernel.clone(),
        strides: win.dilations.clone(),
        dilations: win.strides.clone(),
        pads: win.pads.clone(),
        group: g,
    };
    let out = cx.b.op(Op::Conv, &[inp, ker], swapped.attrs(g));
    let dw = cx.b.transpose(out, &swap);
    let exact = cx.dims(dw).is_some_and(|d| d[2..] == win.kernel[..]);
    Ok(if exact {
        dw
    } else {
        let zeros = vec![0; nsp];
        let axes: Vec<i64> = (2..nsp as i64 + 2).collect();
        cx.b.slice_const(dw, &zeros, &win.kernel, &axes)
    })
}

/// [N, g·c, sp] → [N, g, c, sp] → transposed by `perm` (on the first three axes) → merged to
/// [lead, -1, sp].
fn fold_groups(
    cx: &mut GradCx,
    v: ValueId,
    g: i64,
    c: i64,
    sp: &[i64],
    perm: &[i64],
    lead: i64,
) -> ValueId {
    let n = sp.len() as i64;
    let split: Vec<i64> = [0, g, c].into_iter().chain(sp.iter().copied()).collect();
    let s = cx.b.ints(&split);
    let v5 = cx.b.reshape(v, s);
    let full: Vec<i64> = perm.iter().copied().chain(3..n + 3).collect();
    let t = cx.b.transpose(v5, &full);
    let merged: Vec<i64> = [lead, -1].into_iter().chain(sp.iter().copied()).collect();
    let m = cx.b.ints(&merged);
    cx.b.reshape(t, m)
}

pub(super) fn conv(cx: &mut GradCx) -> GradResult {
    let (x, w, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    let win = Window::read(cx, x, kernel_of(cx, Some(w))?)?;
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        out[0] = Some(win.transpose_to(cx, dy, w, x, win.group)?);
    }
    if cx.needs(1) {
        out[1] = Some(weight_grad(cx, x, dy, &win)?);
    }
    if cx.needs(2) {
        out[2] = Some(bias_grad(cx, dy)?);
    }
    Ok(out)
}

/// ConvTranspose is the adjoint of Conv: dX = Conv(dY, W) with the same window; dW is the
/// conv weight gradient with input and output roles exchanged.
pub(super) fn conv_transpose(cx: &mut GradCx) -> GradResult {
    let (x, w, dy) = (cx.x(0)?, cx.x(1)?, cx.dy0()?);
    if cx.node.attr("output_shape").is_some() {
        return Err(GradError::Unsupported(
            "ConvTranspose with output_shape (give explicit pads)".into(),
        ));
    }
    let win = Window::read(cx, x, kernel_of(cx, Some(w))?)?;
    let mut out = vec![None, None, None];
    if cx.needs(0) {
        out[0] = Some(cx.b.op(Op::Conv, &[dy, w], win.attrs(win.group)));
    }
    if cx.needs(1) {
        out[1] = Some(weight_grad(cx, dy, x, &win)?);
    }
    if cx.needs(2) {
        out[2] = Some(bias_grad(cx, dy)?);
    }
    Ok(out)
}

/// dY scattered (added) to the argmax positions given by MaxPool's Indices output, which the
/// forward node is asked to produce when it does not already.
pub(super) fn max_pool(cx: &mut GradCx) -> GradResult {
    let (x, dy) = (cx.x(0)?, cx.dy0()?);
    if cx.int("storage_order", 0) != 0 {
        return Err(GradError::Unsupported(
            "MaxPool with storage_order=1".into(),
        ));
    }
    let indices = match cx.node.output(1) {
        Some(i) => i,
        None => add_indices_output(cx)?,
    };
    let flat = cx.b.ints(&[-1]);
    let zeros = cx.b.fill_like(x, 0.0);
    let zf = cx.b.reshape(zeros, flat);
    let idx = cx.b.reshape(indices, flat);
    let d = cx.b.reshape(dy, flat);
    let sc = cx.b.op(
        Op::ScatterElements,
        &[zf, idx, d],
        vec![
            ("axis", Attr::Int(0)),
            ("reduction", Attr::String(b"add".to_vec())),
        ],
    );
    Ok(vec![Some(cx.b.reshape_like(sc, x))])
}

/// Gives the forward MaxPool node its Indices output (flat indices into the input).
fn add_indices_output(cx: &mut GradCx) -> Result<ValueId, GradError> {
    let (n, y, opset) = (cx.id, cx.y(0)?, cx.b.opset());
    let name = format!("{}_indices", cx.b.g.name(y));
    let g = &mut *cx.b.g;
    let v = g.add_value(&name, Type::Unknown, ValueDef::Node(n, 1));
    let outs = &mut g.node_mut(n).outputs;
    outs.resize(2, None);
    outs[1] = Some(v);
    infer_and_store(g, n, opset)
        .map_err(|e| GradError::Unsupported(format!("MaxPool indices of {}", e)))?;
    cx.node.outputs = g.node(n).outputs.clone();
    Ok(v)
}

/// A tensor of ones of `dtype` and `dims`.
fn ones(dtype: DType, dims: &[i64]) -> Tensor {
    let n = dims.iter().product::<i64>() as usize;
    Tensor::from_f64_as(dtype, dims, &vec![1.0; n])
}

/// dX = ConvTranspose(dY / divisor) with a depthwise kernel of ones. The divisor is the kernel
/// size, or, where windows are cut (count_include_pad=0 and padding, or the partial last
/// window of ceil_mode), the number of elements each window averages: a Conv of a ones image
/// by a ones kernel over the region windows may read (the input, plus the explicit padding
/// with count_include_pad=1). ceil_mode's partial windows become extra end padding.
pub(super) fn average_pool(cx: &mut GradCx) -> GradResult {
    let (x, y, dy) = (cx.x(0)?, cx.y(0)?, cx.dy0()?);
    let mut win = Window::read(cx, x, kernel_of(cx, None)?)?;
    let nsp = win.nsp();
    let c = cx.dim(x, 1)?;
    let sp: Vec<i64> = (2..nsp + 2)
        .map(|i| cx.dim(x, i))
        .collect::<Result<_, _>>()?;
    let mut extra = vec![0i64; nsp];
    if cx.int("ceil_mode", 0) != 0 {
        for i in 0..nsp {
            let eff = win.dilations[i] * (win.kernel[i] - 1) + 1;
            let reach = (cx.dim(y, i + 2)? - 1) * win.strides[i] + eff;
            extra[i] = (reach - (sp[i] + win.pads[i] + win.pads[i + nsp])).max(0);
        }
    }
    let dt = cx.b.dtype(x);
    let include_pad = cx.int("count_include_pad", 0) != 0;
    let padded = win.pads.iter().any(|&p| p != 0);
    let cut = extra.iter().any(|&e| e > 0);
    let scaled = if !cut && (include_pad || !padded) {
        cx.b.scale(dy, 1.0 / win.kernel.iter().product::<i64>() as f64)
    } else {
        // the ones image and the padding its windows see
        let (img_sp, count_pads): (Vec<i64>, Vec<i64>) = if include_pad {
            let grown = (0..nsp).map(|i| sp[i] + win.pads[i] + win.pads[i + nsp]);
            (grown.collect(), [vec![0; nsp], extra.clone()].concat())
        } else {
            let end = (0..nsp).map(|i| win.pads[i + nsp] + extra[i]);
            (
                sp.clone(),
                win.pads[..nsp].iter().copied().chain(end).collect(),
            )
        };
        let img_shape: Vec<i64> = [1, 1].into_iter().chain(img_sp).collect();
        let shape = cx.b.ints(&img_shape);
        let img = cx.b.fill(shape, dt, 1.0);
        let k1: Vec<i64> = [1, 1]
            .into_iter()
            .chain(win.kernel.iter().copied())
            .collect();
        let ker = cx.b.constant(ones(dt, &k1));
        let counting = Window {
            pads: count_pads,
            kernel: win.kernel.clone(),
            strides: win.strides.clone(),
            dilations: win.dilations.clone(),
            group: 1,
        };
        let count = cx.b.op(Op::Conv, &[img, ker], counting.attrs(1));
        cx.b.div(dy, count)
    };
    for (i, e) in extra.iter().enumerate() {
        win.pads[i + nsp] += e;
    }
    let kc: Vec<i64> = [c, 1]
        .into_iter()
        .chain(win.kernel.iter().copied())
        .collect();
    let w = cx.b.constant(ones(dt, &kc));
    Ok(vec![Some(win.transpose_to(cx, scaled, w, x, c)?)])
}

pub(super) fn global_average_pool(cx: &mut GradCx) -> GradResult {
    let (x, y, dy) = (cx.x(0)?, cx.y(0)?, cx.dy0()?);
    let n = cx.b.count_ratio(x, y);
    let e = cx.b.expand_like(dy, x);
    Ok(vec![Some(cx.b.div(e, n))])
}

pub(super) fn global_max_pool(cx: &mut GradCx) -> GradResult {
    let (x, y, dy) = (cx.x(0)?, cx.y(0)?, cx.dy0()?);
    let m = cx.b.op(Op::Equal, &[x, y], vec![]);
    let e = cx.b.expand_like(dy, x);
    Ok(vec![Some(cx.b.keep_where(m, e))])
}
