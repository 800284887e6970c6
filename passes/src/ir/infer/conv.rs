//! Convolution and pooling: sliding-window output sizes along each spatial axis.

use super::cx::{checked, dim_mul, Cx, Inferred, Invalid, Outcome};
use crate::ir::{DType, Dim, Op};

/// Output size of a sliding window (conv/pool) along one axis.
fn window(inp: &Dim, k: i64, stride: i64, dil: i64, pad: i64, ceil: bool) -> Result<Dim, Invalid> {
    let Dim::Fixed(i) = inp else {
        return Ok(Dim::Unknown);
    };
    if stride <= 0 {
        return Err(Invalid(format!("stride {stride} is not positive")));
    }
    let eff = checked(dil.checked_mul(k - 1).and_then(|e| e.checked_add(1)))?;
    let num = checked(i.checked_add(pad).and_then(|n| n.checked_sub(eff)))?;
    let o = if ceil {
        let up = checked(num.checked_add(stride - 1))?.div_euclid(stride);
        let mut o = checked(up.checked_add(1))?;
        // the last window must start inside the input or left padding
        if checked((o - 1).checked_mul(stride))? >= checked(i.checked_add(pad / 2))? {
            o -= 1;
        }
        o
    } else {
        checked(num.div_euclid(stride).checked_add(1))?
    };
    Ok(Dim::Fixed(o))
}

/// Conv, ConvTranspose, MaxPool and AveragePool (MaxPool's second output: the indices).
pub(super) fn conv_pool(cx: &Cx) -> Outcome {
    let node = cx.node;
    let dt = cx.in_dtype(0);
    let Some(x) = cx.in_shape(0) else {
        return Ok(vec![
            Inferred::tensor(dt, None),
            Inferred::tensor(DType::I64, None),
        ]);
    };
    let nsp = x.len().saturating_sub(2);
    let w = cx.in_shape(1);
    let kernel: Vec<i64> = match node.attr_ints("kernel_shape") {
        Some(k) => k.to_vec(),
        None => match &w {
            Some(w) if matches!(node.op, Op::Conv | Op::ConvTranspose) => {
                w.iter().skip(2).map(|d| d.fixed().unwrap_or(-1)).collect()
            }
            _ => vec![-1; nsp],
        },
    };
    let ints = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, Invalid> {
        match node.attr_ints(name) {
            Some(v) if v.len() == len => Ok(v.to_vec()),
            Some(v) => Err(Invalid(format!(
                "'{name}' has {} entries; an input of {nsp} spatial axes needs {len}",
                v.len()
            ))),
            None => Ok(vec![default; len]),
        }
    };
    let strides = node
        .attr_ints("strides")
        .map(<[i64]>::to_vec)
        .unwrap_or(vec![1; nsp]);
    let dil = node
        .attr_ints("dilations")
        .map(<[i64]>::to_vec)
        .unwrap_or(vec![1; nsp]);
    let pads = ints("pads", 0, 2 * nsp)?;
    let auto = node.attr_str("auto_pad").unwrap_or("NOTSET");
    let ceil = node.attr_int("ceil_mode").unwrap_or(0) != 0;
    let chan = match node.op {
        Op::Conv => w
            .as_ref()
            .and_then(|w| w.first().cloned())
            .unwrap_or(Dim::Unknown),
        Op::ConvTranspose => {
            let g = node.attr_int("group").unwrap_or(1);
            match w.as_ref().and_then(|w| w.get(1)) {
                Some(d) => dim_mul(d, &Dim::Fixed(g))?,
                None => Dim::Unknown,
            }
        }
        _ => x.get(1).cloned().unwrap_or(Dim::Unknown),
    };
    let mut out = vec![x.first().cloned().unwrap_or(Dim::Unknown), chan];
    for (i, xi) in x.iter().skip(2).enumerate() {
        let k = *kernel.get(i).unwrap_or(&-1);
        let s = *strides.get(i).unwrap_or(&1);
        let d = *dil.get(i).unwrap_or(&1);
        let (p0, p1) = (pads[i], pads[i + nsp]);
        let dim = if k < 0 {
            Dim::Unknown
        } else if node.op == Op::ConvTranspose {
            conv_transpose_dim(cx, xi, i, nsp, k, s, d, (p0, p1), auto)?
        } else {
            match auto {
                "SAME_UPPER" | "SAME_LOWER" => match xi {
                    Dim::Fixed(n) if s > 0 => Dim::Fixed(checked(n.checked_add(s - 1))? / s),
                    Dim::Fixed(_) => return Err(Invalid(format!("stride {s} is not positive"))),
                    _ => Dim::Unknown,
                },
                "VALID" => window(xi, k, s, d, 0, ceil)?,
                _ => window(xi, k, s, d, checked(p0.checked_add(p1))?, ceil)?,
            }
        };
        out.push(dim);
    }
    Ok(vec![
        Inferred::tensor(dt, Some(out.clone())),
        Inferred::tensor(DType::I64, Some(out)),
    ])
}

/// One spatial output size of a ConvTranspose: `output_shape` when given, else
/// `stride·(n-1) + output_padding + (k-1)·dilation + 1 - pads`.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_dim(
    cx: &Cx,
    xi: &Dim,
    i: usize,
    nsp: usize,
    k: i64,
    s: i64,
    d: i64,
    (p0, p1): (i64, i64),
    auto: &str,
) -> Result<Dim, Invalid> {
    if let Some(os) = cx.node.attr_ints("output_shape") {
        let at = (os.len() + i).checked_sub(nsp).and_then(|j| os.get(j));
        return Ok(at.map(|&v| Dim::Fixed(v)).unwrap_or(Dim::Unknown));
    }
    let op = cx
        .node
        .attr_ints("output_padding")
        .and_then(|p| p.get(i).copied())
        .unwrap_or(0);
    Ok(match (xi, auto) {
        (Dim::Fixed(n), "SAME_UPPER" | "SAME_LOWER") => Dim::Fixed(checked(n.checked_mul(s))?),
        (Dim::Fixed(n), _) => {
            let grow = n
                .checked_sub(1)
                .and_then(|m| s.checked_mul(m))
                .and_then(|v| v.checked_add(op));
            let kernel = (k - 1).checked_mul(d).and_then(|v| v.checked_add(1));
            let sum = grow.zip(kernel).and_then(|(a, b)| a.checked_add(b));
            Dim::Fixed(checked(
                sum.and_then(|v| v.checked_sub(p0)?.checked_sub(p1)),
            )?)
        }
        _ => Dim::Unknown,
    })
}

/// GlobalAveragePool, GlobalMaxPool: every spatial axis becomes 1.
pub(super) fn global_pool(cx: &Cx) -> Outcome {
    let shape = cx.in_shape(0).map(|s| {
        s.iter()
            .enumerate()
            .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Fixed(1) })
            .collect()
    });
    cx.like_input(shape)
}
