//! Shape operators: Reshape, Flatten, Squeeze/Unsqueeze, Transpose, Expand, Tile, Pad,
//! Concat, DepthToSpace/SpaceToDepth. Small integer vectors keep their values through them.

use super::cx::{
    broadcast, checked, dim_mul, dim_product, length, norm_axis, Cx, Inferred, Invalid, Outcome,
};
use crate::ir::{Dim, Op};

pub(super) fn reshape(cx: &Cx) -> Outcome {
    let shape = reshape_shape(cx)?;
    // a reshaped small vector keeps its values (exporters reshape scalars to [1])
    let sym = match &shape {
        Some(s) if s.len() <= 1 => cx.in_sym(0),
        _ => None,
    };
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape).with_sym(sym)])
}

fn reshape_shape(cx: &Cx) -> Result<Option<Vec<Dim>>, Invalid> {
    let allowzero = cx.node.attr_int("allowzero").unwrap_or(0) != 0;
    let Some(target) = cx.in_sym(1) else {
        return Ok(cx.in_len(1).map(|n| vec![Dim::Unknown; n]));
    };
    let input = cx.in_shape(0);
    let mut out: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(0) if !allowzero => input
                .as_ref()
                .and_then(|s| s.get(i).cloned())
                .unwrap_or(Dim::Unknown),
            _ => d.clone(),
        })
        .collect();
    if let Some(pos) = out.iter().position(|d| *d == Dim::Fixed(-1)) {
        out[pos] = match input {
            Some(inp) => infer_minus_one(&inp, &out, pos)?,
            None => Dim::Unknown,
        };
    }
    Ok(Some(out))
}

/// The size hidden behind a `-1` in a reshape target: product of the input's dims divided by
/// the other target dims, symbolic factors cancelling.
fn infer_minus_one(input: &[Dim], target: &[Dim], pos: usize) -> Result<Dim, Invalid> {
    let mut num_fixed = 1i64;
    let mut num_syms: Vec<&Dim> = Vec::new();
    for d in input {
        match d {
            Dim::Fixed(n) => num_fixed = checked(num_fixed.checked_mul(*n))?,
            Dim::Sym(_) => num_syms.push(d),
            Dim::Unknown => return Ok(Dim::Unknown),
        }
    }
    let mut den_fixed = 1i64;
    for (i, d) in target.iter().enumerate() {
        if i == pos {
            continue;
        }
        match d {
            Dim::Fixed(n) => den_fixed = checked(den_fixed.checked_mul(*n))?,
            Dim::Sym(_) => match num_syms.iter().position(|s| *s == d) {
                Some(j) => {
                    num_syms.remove(j);
                }
                None => return Ok(Dim::Unknown),
            },
            Dim::Unknown => return Ok(Dim::Unknown),
        }
    }
    let (Some(q), Some(0)) = (
        num_fixed.checked_div(den_fixed),
        num_fixed.checked_rem(den_fixed),
    ) else {
        return Ok(Dim::Unknown);
    };
    Ok(match (num_syms.len(), q) {
        (0, q) => Dim::Fixed(q),
        (1, 1) => num_syms[0].clone(),
        _ => Dim::Unknown,
    })
}

pub(super) fn flatten(cx: &Cx) -> Outcome {
    let axis = cx.node.attr_int("axis").unwrap_or(1);
    let shape = match cx.in_shape(0) {
        Some(s) => {
            let a = if axis < 0 {
                i64::try_from(s.len())
                    .ok()
                    .and_then(|r| axis.checked_add(r))
            } else {
                Some(axis)
            };
            match a
                .and_then(|a| usize::try_from(a).ok())
                .filter(|&a| a <= s.len())
            {
                Some(a) => Some(vec![dim_product(&s[..a])?, dim_product(&s[a..])?]),
                None => None,
            }
        }
        None => None,
    };
    cx.like_input(shape.or(Some(vec![Dim::Unknown, Dim::Unknown])))
}

pub(super) fn squeeze(cx: &Cx) -> Outcome {
    let axes = cx.ints_attr_or_input("axes", 1);
    let shape = cx.in_shape(0).and_then(|s| {
        let r = s.len();
        match axes {
            Some(ax) => {
                let ax: Vec<usize> = ax.iter().map(|&a| norm_axis(a, r)).collect::<Option<_>>()?;
                Some(
                    s.iter()
                        .enumerate()
                        .filter(|(i, _)| !ax.contains(i))
                        .map(|(_, d)| d.clone())
                        .collect(),
                )
            }
            None if cx.node.input(1).is_none() => {
                if s.iter().all(|d| d.fixed().is_some()) {
                    Some(s.into_iter().filter(|d| *d != Dim::Fixed(1)).collect())
                } else {
                    None
                }
            }
            None => None,
        }
    });
    Ok(vec![
        Inferred::tensor(cx.in_dtype(0), shape).with_sym(cx.in_sym(0))
    ])
}

pub(super) fn unsqueeze(cx: &Cx) -> Outcome {
    let axes = cx.ints_attr_or_input("axes", 1);
    let shape = match (cx.in_shape(0), axes) {
        (Some(s), Some(ax)) => {
            let r = s.len() + ax.len();
            let ax: Option<Vec<usize>> = ax.iter().map(|&a| norm_axis(a, r)).collect();
            ax.map(|ax| {
                let mut it = s.into_iter();
                (0..r)
                    .map(|i| {
                        if ax.contains(&i) {
                            Dim::Fixed(1)
                        } else {
                            it.next().unwrap_or(Dim::Unknown)
                        }
                    })
                    .collect()
            })
        }
        _ => None,
    };
    Ok(vec![
        Inferred::tensor(cx.in_dtype(0), shape).with_sym(cx.in_sym(0))
    ])
}

pub(super) fn transpose(cx: &Cx) -> Outcome {
    let shape = cx.in_shape(0).map(|s| {
        let perm: Vec<Option<usize>> = match cx.node.attr_ints("perm") {
            Some(p) => p.iter().map(|&i| usize::try_from(i).ok()).collect(),
            None => (0..s.len()).rev().map(Some).collect(),
        };
        perm.iter()
            .map(|i| i.and_then(|i| s.get(i).cloned()).unwrap_or(Dim::Unknown))
            .collect()
    });
    cx.like_input(shape)
}

pub(super) fn expand(cx: &Cx) -> Outcome {
    let shape = match (cx.in_shape(0), cx.in_sym(1)) {
        (Some(s), Some(tg)) => Some(broadcast(&s, &tg)),
        (Some(s), None) => cx.in_len(1).map(|n| vec![Dim::Unknown; n.max(s.len())]),
        _ => None,
    };
    let sym = match (cx.in_sym(0), &shape) {
        (Some(v), Some(sh)) if v.len() == 1 && sh.len() == 1 => sh[0]
            .fixed()
            .and_then(length)
            .map(|n| vec![v[0].clone(); n]),
        _ => None,
    };
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape).with_sym(sym)])
}

pub(super) fn tile(cx: &Cx) -> Outcome {
    let shape = match (cx.in_shape(0), cx.in_ints(1)) {
        (Some(s), Some(r)) if r.len() == s.len() => Some(
            s.iter()
                .zip(r)
                .map(|(d, k)| dim_mul(d, &Dim::Fixed(k)))
                .collect::<Result<_, _>>()?,
        ),
        (Some(s), _) => Some(vec![Dim::Unknown; s.len()]),
        _ => None,
    };
    cx.like_input(shape)
}

pub(super) fn pad(cx: &Cx) -> Outcome {
    let pads = cx.ints_attr_or_input("pads", 1);
    let shape = match cx.in_shape(0) {
        Some(s) => {
            let r = s.len();
            let axes: Vec<usize> = cx
                .in_ints(3)
                .map(|a| a.iter().filter_map(|&x| norm_axis(x, r)).collect())
                .unwrap_or_else(|| (0..r).collect());
            let n = axes.len();
            let padded = |i: usize, d: &Dim| -> Result<Dim, Invalid> {
                Ok(match (&pads, axes.iter().position(|&a| a == i)) {
                    (Some(p), Some(k)) if p.len() == 2 * n => match d {
                        Dim::Fixed(m) => Dim::Fixed(checked(
                            m.checked_add(p[k]).and_then(|v| v.checked_add(p[k + n])),
                        )?),
                        _ if p[k] == 0 && p[k + n] == 0 => d.clone(),
                        _ => Dim::Unknown,
                    },
                    (Some(_), None) => d.clone(),
                    _ => Dim::Unknown,
                })
            };
            let out: Result<Vec<Dim>, Invalid> =
                s.iter().enumerate().map(|(i, d)| padded(i, d)).collect();
            Some(out?)
        }
        None => None,
    };
    cx.like_input(shape)
}

pub(super) fn concat(cx: &Cx) -> Outcome {
    let n = cx.node.inputs.len();
    let axis = cx.node.attr_int("axis").unwrap_or(0);
    let shapes: Option<Vec<Vec<Dim>>> = (0..n).map(|i| cx.in_shape(i)).collect();
    let shape = match shapes {
        Some(ss) => concat_shape(&ss, axis)?,
        None => None,
    };
    let sym: Option<Vec<Dim>> = (0..n)
        .map(|i| cx.in_sym(i))
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat());
    Ok(vec![Inferred::tensor(cx.in_dtype(0), shape).with_sym(sym)])
}

fn concat_shape(ss: &[Vec<Dim>], axis: i64) -> Result<Option<Vec<Dim>>, Invalid> {
    let Some(first) = ss.first() else {
        return Ok(None);
    };
    let Some(a) = norm_axis(axis, first.len()) else {
        return Ok(None);
    };
    let mut out = first.clone();
    let mut total = Dim::Fixed(0);
    for s in ss {
        total = match (total, s.get(a)) {
            (Dim::Fixed(x), Some(Dim::Fixed(y))) => Dim::Fixed(checked(x.checked_add(*y))?),
            _ => Dim::Unknown,
        };
    }
    out[a] = total;
    for s in &ss[1..] {
        for (i, d) in s.iter().enumerate() {
            if i != a && matches!(out.get(i), Some(Dim::Unknown)) {
                out[i] = d.clone();
            }
        }
    }
    Ok(Some(out))
}

/// DepthToSpace moves b² channels into b×b blocks; SpaceToDepth the reverse.
pub(super) fn depth_space(cx: &Cx) -> Outcome {
    let b = cx.node.attr_int("blocksize").unwrap_or(1);
    let mul = |d: &Dim, k: i64| match d {
        Dim::Fixed(n) => checked(n.checked_mul(k)).map(Dim::Fixed),
        _ => Ok(Dim::Unknown),
    };
    let div = |d: &Dim, k: i64| match d {
        Dim::Fixed(n) if k > 0 && n % k == 0 => Dim::Fixed(n / k),
        _ => Dim::Unknown,
    };
    let bb = checked(b.checked_mul(b))?;
    let shape = match cx.in_shape(0).filter(|s| s.len() == 4) {
        Some(s) if cx.node.op == Op::DepthToSpace => Some(vec![
            s[0].clone(),
            div(&s[1], bb),
            mul(&s[2], b)?,
            mul(&s[3], b)?,
        ]),
        Some(s) => Some(vec![
            s[0].clone(),
            mul(&s[1], bb)?,
            div(&s[2], b),
            div(&s[3], b),
        ]),
        None => None,
    };
    cx.like_input(shape)
}
