//! Type and shape inference for the operators the compiler differentiates and rewrites.
//! Symbolic dimensions (the batch) stay symbolic; anything not known becomes `Dim::Unknown`
//! or `Type::Unknown`, never a guess. Small integer tensors also get their element values as
//! dimensions (`Value::sym`), so exporters' Shape→Gather→Concat→Reshape chains keep static
//! shapes even with a symbolic batch.

use super::einsum::Equation;
use super::graph::{Attr, Graph, Node, NodeId};
use super::ops::Op;
use super::types::{DType, Dim, Tensor, TensorType, Type};

/// What inference found for one output.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Inferred {
    pub ty: Type,
    pub sym: Option<Vec<Dim>>,
}

impl Inferred {
    fn tensor(dtype: DType, shape: Option<Vec<Dim>>) -> Self {
        Inferred {
            ty: Type::Tensor(TensorType::new(dtype, shape)),
            sym: None,
        }
    }
    fn with_sym(mut self, sym: Option<Vec<Dim>>) -> Self {
        self.sym = sym;
        self
    }
}

/// Runs inference for node `n` and stores the result on its outputs; where inference knows
/// nothing, an already present (declared) type is kept.
pub fn infer_and_store(g: &mut Graph, n: NodeId, opset: i64) {
    let results = infer_node(g, n, opset);
    let outs = g.node(n).outputs.clone();
    for (o, r) in outs.into_iter().zip(results) {
        let Some(o) = o else { continue };
        let v = g.value_mut(o);
        v.ty = merge(&v.ty, r.ty);
        if r.sym.is_some() {
            v.sym = r.sym;
        }
    }
}

/// The more informative of a declared and an inferred type.
fn merge(declared: &Type, inferred: Type) -> Type {
    match (declared, &inferred) {
        (Type::Tensor(d), Type::Tensor(i)) => {
            let dtype = if i.dtype == DType::Undefined {
                d.dtype
            } else {
                i.dtype
            };
            let shape = match (&d.shape, &i.shape) {
                (Some(ds), Some(is)) if ds.len() == is.len() => Some(
                    ds.iter()
                        .zip(is)
                        .map(|(a, b)| match (a, b) {
                            (_, Dim::Fixed(_)) => b.clone(),
                            (Dim::Fixed(_), _) => a.clone(),
                            (_, Dim::Sym(_)) => b.clone(),
                            _ => a.clone(),
                        })
                        .collect(),
                ),
                (Some(ds), None) => Some(ds.clone()),
                (_, is) => is.clone(),
            };
            Type::Tensor(TensorType::new(dtype, shape))
        }
        (d, Type::Unknown) => d.clone(),
        _ => inferred,
    }
}

/// Infers the outputs of node `n` (one entry per output slot, present or not).
pub fn infer_node(g: &Graph, n: NodeId, opset: i64) -> Vec<Inferred> {
    let node = g.node(n);
    let cx = Cx { g, node, opset };
    let mut out = cx.infer().unwrap_or_default();
    out.resize(node.outputs.len(), Inferred::default());
    out
}

struct Cx<'a> {
    g: &'a Graph,
    node: &'a Node,
    opset: i64,
}

/// Numpy broadcasting of two shapes. A symbolic dim facing an unknown one is taken as the
/// result (as ONNX Runtime's symbolic inference merges them): the unknown one is that size or
/// 1, unless the symbol itself is 1 at run time, which the gradients' `sum_to_like` still
/// handles by summing dynamically wherever an unknown dim is involved.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|i| {
            let x = (i + a.len()).checked_sub(r).map(|j| &a[j]);
            let y = (i + b.len()).checked_sub(r).map(|j| &b[j]);
            match (x, y) {
                (Some(x), None) => x.clone(),
                (None, Some(y)) => y.clone(),
                (Some(x), Some(y)) => match (x, y) {
                    (Dim::Fixed(1), _) => y.clone(),
                    (_, Dim::Fixed(1)) => x.clone(),
                    (Dim::Fixed(p), Dim::Fixed(q)) if p == q => x.clone(),
                    (Dim::Fixed(p), Dim::Fixed(_)) => Dim::Fixed(*p),
                    (Dim::Fixed(p), _) | (_, Dim::Fixed(p)) => Dim::Fixed(*p),
                    (Dim::Sym(s), Dim::Sym(t)) if s == t => x.clone(),
                    (Dim::Sym(_), Dim::Unknown) => x.clone(),
                    (Dim::Unknown, Dim::Sym(_)) => y.clone(),
                    _ => Dim::Unknown,
                },
                (None, None) => Dim::Unknown,
            }
        })
        .collect()
}

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn dim_mul(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => Dim::Fixed(x * y),
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        _ => Dim::Unknown,
    }
}

/// Output size of a sliding window (conv/pool) along one axis.
fn window(inp: &Dim, k: i64, stride: i64, dil: i64, pad: i64, ceil: bool) -> Dim {
    match inp {
        Dim::Fixed(i) => {
            let eff = dil * (k - 1) + 1;
            let num = i + pad - eff;
            let o = if ceil {
                let mut o = (num + stride - 1).div_euclid(stride) + 1;
                // the last window must start inside the input or left padding
                if (o - 1) * stride >= i + pad / 2 {
                    o -= 1;
                }
                o
            } else {
                num.div_euclid(stride) + 1
            };
            Dim::Fixed(o)
        }
        _ => Dim::Unknown,
    }
}

impl Cx<'_> {
    fn in_ty(&self, i: usize) -> Option<&TensorType> {
        self.g.ty(self.node.input(i)?).tensor()
    }
    fn in_dtype(&self, i: usize) -> DType {
        self.in_ty(i).map(|t| t.dtype).unwrap_or(DType::Undefined)
    }
    fn in_shape(&self, i: usize) -> Option<Vec<Dim>> {
        self.in_ty(i)?.shape.clone()
    }
    /// Known element values of input `i`: from a constant, or symbolic ones.
    fn in_sym(&self, i: usize) -> Option<Vec<Dim>> {
        let v = self.node.input(i)?;
        if let Some(t) = self.g.constant(v) {
            return Some(t.to_i64_vec()?.into_iter().map(Dim::Fixed).collect());
        }
        self.g.value(v).sym.clone()
    }
    /// Constant integer values of input `i` (all known).
    fn in_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.in_sym(i)?.iter().map(Dim::fixed).collect()
    }
    fn same_as(&self, i: usize) -> Inferred {
        match self.node.input(i) {
            Some(v) => Inferred {
                ty: self.g.ty(v).clone(),
                sym: None,
            },
            None => Inferred::default(),
        }
    }
    fn ints_attr_or_input(&self, attr: &str, input: usize) -> Option<Vec<i64>> {
        match self.node.attr_ints(attr) {
            Some(v) => Some(v.to_vec()),
            None => self.in_ints(input),
        }
    }

    fn infer(&self) -> Option<Vec<Inferred>> {
        let node = self.node;
        let op = &node.op;
        let t = |dt, sh| Inferred::tensor(dt, sh);
        if op.is_unary_same_type() {
            let mut r = self.same_as(0);
            if matches!(op, Op::Identity) {
                r.sym = self.in_sym(0);
            }
            return Some(vec![r]);
        }
        if op.is_broadcasting() || matches!(op, Op::Sum | Op::Mean | Op::Min | Op::Max) {
            let n_in = node.inputs.len();
            let mut shape = Some(Vec::new());
            for i in 0..n_in {
                shape = match (shape, self.in_shape(i)) {
                    (Some(a), Some(b)) => Some(broadcast(&a, &b)),
                    _ => None,
                };
            }
            let dt = match op {
                _ if op.is_predicate() => DType::Bool,
                Op::Where => self.in_dtype(1),
                _ => self.in_dtype(0),
            };
            let sym = match op {
                Op::Where => self.where_sym(),
                _ => self.elementwise_sym(),
            };
            return Some(vec![t(dt, shape).with_sym(sym)]);
        }
        let r = match op {
            Op::Cast => {
                let to = node
                    .attr_int("to")
                    .and_then(|c| DType::from_onnx(c as i32))
                    .unwrap_or(DType::Undefined);
                let sym = if matches!(to, DType::I64 | DType::I32) {
                    self.in_sym(0)
                } else {
                    None
                };
                vec![t(to, self.in_shape(0)).with_sym(sym)]
            }
            Op::CastLike => vec![t(self.in_dtype(1), self.in_shape(0)).with_sym(self.in_sym(0))],
            Op::MatMul => vec![t(self.in_dtype(0), self.matmul_shape())],
            Op::Gemm => {
                let ta = node.attr_int("transA").unwrap_or(0) != 0;
                let tb = node.attr_int("transB").unwrap_or(0) != 0;
                let shape = match (self.in_shape(0), self.in_shape(1)) {
                    (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => Some(vec![
                        a[if ta { 1 } else { 0 }].clone(),
                        b[if tb { 0 } else { 1 }].clone(),
                    ]),
                    _ => Some(vec![Dim::Unknown, Dim::Unknown]),
                };
                vec![t(self.in_dtype(0), shape)]
            }
            Op::Conv | Op::ConvTranspose | Op::MaxPool | Op::AveragePool => self.conv_pool(),
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let shape = self.in_shape(0).map(|s| {
                    s.iter()
                        .enumerate()
                        .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Fixed(1) })
                        .collect()
                });
                vec![t(self.in_dtype(0), shape)]
            }
            Op::BatchNormalization => {
                let x = self.same_as(0);
                let stat = self.same_as(1);
                vec![x, stat.clone(), stat.clone(), stat.clone(), stat]
            }
            Op::LayerNormalization => {
                let x = self.same_as(0);
                let axis = node.attr_int("axis").unwrap_or(-1);
                let stash = node
                    .attr_int("stash_type")
                    .and_then(|c| DType::from_onnx(c as i32))
                    .unwrap_or(DType::F32);
                let stat_shape = self.in_shape(0).and_then(|s| {
                    let a = norm_axis(axis, s.len())?;
                    Some(
                        s.iter()
                            .enumerate()
                            .map(|(i, d)| if i < a { d.clone() } else { Dim::Fixed(1) })
                            .collect(),
                    )
                });
                vec![x, t(stash, stat_shape.clone()), t(stash, stat_shape)]
            }
            Op::InstanceNormalization | Op::GroupNormalization => vec![self.same_as(0)],
            Op::Dropout => vec![self.same_as(0), t(DType::Bool, self.in_shape(0))],
            Op::SoftmaxCrossEntropyLoss | Op::NegativeLogLikelihoodLoss => {
                let red = node.attr_str("reduction").unwrap_or("mean");
                let shape = if red == "none" {
                    self.in_shape(1)
                } else {
                    Some(vec![])
                };
                vec![t(self.in_dtype(0), shape), self.same_as(0)]
            }
            Op::ReduceSum
            | Op::ReduceMean
            | Op::ReduceMax
            | Op::ReduceMin
            | Op::ReduceProd
            | Op::ReduceL1
            | Op::ReduceL2
            | Op::ReduceLogSumExp
            | Op::ReduceSumSquare
            | Op::ReduceLogSum => vec![t(self.in_dtype(0), self.reduce_shape())],
            Op::ArgMax | Op::ArgMin => {
                let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
                let axis = node.attr_int("axis").unwrap_or(0);
                let shape = self.in_shape(0).and_then(|s| {
                    let a = norm_axis(axis, s.len())?;
                    Some(reduce_dims(&s, &[a], keep))
                });
                vec![t(DType::I64, shape)]
            }
            Op::Reshape => {
                let shape = self.reshape_shape();
                // a reshaped small vector keeps its values (exporters reshape scalars to [1])
                let sym = match &shape {
                    Some(s) if s.len() <= 1 => self.in_sym(0),
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Flatten => {
                let axis = node.attr_int("axis").unwrap_or(1);
                let shape = self.in_shape(0).and_then(|s| {
                    let a = if axis < 0 {
                        axis + s.len() as i64
                    } else {
                        axis
                    } as usize;
                    if a > s.len() {
                        return None;
                    }
                    let prod = |ds: &[Dim]| ds.iter().fold(Dim::Fixed(1), |p, d| dim_mul(&p, d));
                    Some(vec![prod(&s[..a]), prod(&s[a..])])
                });
                vec![t(
                    self.in_dtype(0),
                    shape.or(Some(vec![Dim::Unknown, Dim::Unknown])),
                )]
            }
            Op::Squeeze => {
                let axes = self.ints_attr_or_input("axes", 1);
                let shape = self.in_shape(0).and_then(|s| {
                    let r = s.len();
                    match axes {
                        Some(ax) => {
                            let ax: Option<Vec<usize>> =
                                ax.iter().map(|&a| norm_axis(a, r)).collect();
                            let ax = ax?;
                            Some(
                                s.iter()
                                    .enumerate()
                                    .filter(|(i, _)| !ax.contains(i))
                                    .map(|(_, d)| d.clone())
                                    .collect(),
                            )
                        }
                        None if node.input(1).is_none() => {
                            if s.iter().all(|d| d.fixed().is_some()) {
                                Some(s.into_iter().filter(|d| *d != Dim::Fixed(1)).collect())
                            } else {
                                None
                            }
                        }
                        None => None,
                    }
                });
                let sym = self.in_sym(0);
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Unsqueeze => {
                let axes = self.ints_attr_or_input("axes", 1);
                let shape = match (self.in_shape(0), axes) {
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
                let sym = self.in_sym(0);
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Transpose => {
                let shape = self.in_shape(0).map(|s| {
                    let perm: Vec<usize> = match node.attr_ints("perm") {
                        Some(p) => p.iter().map(|&i| i as usize).collect(),
                        None => (0..s.len()).rev().collect(),
                    };
                    perm.iter()
                        .map(|&i| s.get(i).cloned().unwrap_or(Dim::Unknown))
                        .collect()
                });
                vec![t(self.in_dtype(0), shape)]
            }
            Op::Expand => {
                let target = self.in_sym(1);
                let shape = match (self.in_shape(0), target) {
                    (Some(s), Some(tg)) => Some(broadcast(&s, &tg)),
                    (s, None) => {
                        let n = self.in_shape(1).and_then(|x| x.first()?.fixed());
                        match (s, n) {
                            (Some(s), Some(n)) => Some(
                                (0..(n as usize).max(s.len()))
                                    .map(|_| Dim::Unknown)
                                    .collect(),
                            ),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let sym = match (self.in_sym(0), &shape) {
                    (Some(v), Some(sh)) if v.len() == 1 && sh.len() == 1 => {
                        sh[0].fixed().map(|n| vec![v[0].clone(); n as usize])
                    }
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Tile => {
                let shape = match (self.in_shape(0), self.in_ints(1)) {
                    (Some(s), Some(r)) if r.len() == s.len() => Some(
                        s.iter()
                            .zip(r)
                            .map(|(d, k)| dim_mul(d, &Dim::Fixed(k)))
                            .collect(),
                    ),
                    (Some(s), _) => Some(vec![Dim::Unknown; s.len()]),
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape)]
            }
            Op::Pad => {
                let pads = self.ints_attr_or_input("pads", 1);
                let shape = self.in_shape(0).map(|s| {
                    let r = s.len();
                    let axes: Vec<usize> = self
                        .in_ints(3)
                        .map(|a| a.iter().filter_map(|&x| norm_axis(x, r)).collect())
                        .unwrap_or_else(|| (0..r).collect());
                    s.iter()
                        .enumerate()
                        .map(|(i, d)| match (&pads, axes.iter().position(|&a| a == i)) {
                            (Some(p), Some(k)) if p.len() == 2 * axes.len() => match d {
                                Dim::Fixed(n) => Dim::Fixed(n + p[k] + p[k + axes.len()]),
                                _ if p[k] == 0 && p[k + axes.len()] == 0 => d.clone(),
                                _ => Dim::Unknown,
                            },
                            (Some(_), None) => d.clone(),
                            _ => Dim::Unknown,
                        })
                        .collect()
                });
                vec![t(self.in_dtype(0), shape)]
            }
            Op::Concat => {
                let axis = node.attr_int("axis").unwrap_or(0);
                let shapes: Option<Vec<Vec<Dim>>> =
                    (0..node.inputs.len()).map(|i| self.in_shape(i)).collect();
                let shape = shapes.and_then(|ss| {
                    let first = ss.first()?.clone();
                    let a = norm_axis(axis, first.len())?;
                    let mut out = first;
                    out[a] = ss
                        .iter()
                        .fold(Dim::Fixed(0), |acc, s| match (acc, s.get(a)) {
                            (Dim::Fixed(x), Some(Dim::Fixed(y))) => Dim::Fixed(x + y),
                            _ => Dim::Unknown,
                        });
                    for s in &ss[1..] {
                        for (i, d) in s.iter().enumerate() {
                            if i != a && matches!(out.get(i), Some(Dim::Unknown)) {
                                out[i] = d.clone();
                            }
                        }
                    }
                    Some(out)
                });
                let sym: Option<Vec<Dim>> = (0..node.inputs.len())
                    .map(|i| self.in_sym(i))
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.concat());
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Split => self.split(),
            Op::Slice => {
                let (shape, sym) = self.slice();
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::Gather => {
                let axis = node.attr_int("axis").unwrap_or(0);
                let shape = match (self.in_shape(0), self.in_shape(1)) {
                    (Some(d), Some(i)) => norm_axis(axis, d.len()).map(|a| {
                        let mut s = d[..a].to_vec();
                        s.extend(i);
                        s.extend_from_slice(&d[a + 1..]);
                        s
                    }),
                    _ => None,
                };
                let sym = match (self.in_sym(0), self.in_ints(1)) {
                    (Some(v), Some(idx)) if axis == 0 => idx
                        .iter()
                        .map(|&i| {
                            let j = if i < 0 { i + v.len() as i64 } else { i };
                            v.get(j as usize).cloned()
                        })
                        .collect(),
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape).with_sym(sym)]
            }
            Op::GatherElements => vec![t(self.in_dtype(0), self.in_shape(1))],
            Op::GatherND => {
                let b = node.attr_int("batch_dims").unwrap_or(0) as usize;
                let shape = match (self.in_shape(0), self.in_shape(1)) {
                    (Some(d), Some(i)) => i.last().and_then(Dim::fixed).map(|k| {
                        let mut s = i[..i.len() - 1].to_vec();
                        s.extend_from_slice(d.get(b + k as usize..).unwrap_or(&[]));
                        s
                    }),
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape)]
            }
            Op::ScatterElements | Op::ScatterND | Op::Scatter => vec![self.same_as(0)],
            Op::Shape => {
                let start = node.attr_int("start").unwrap_or(0);
                let s = self.in_shape(0);
                let (shape, sym) = match s {
                    Some(s) => {
                        let r = s.len() as i64;
                        let clampi = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                        let (a, b) = (clampi(start), clampi(node.attr_int("end").unwrap_or(r)));
                        let part = if a < b { s[a..b].to_vec() } else { vec![] };
                        (Some(vec![Dim::Fixed(part.len() as i64)]), Some(part))
                    }
                    None => (Some(vec![Dim::Unknown]), None),
                };
                vec![t(DType::I64, shape).with_sym(sym)]
            }
            Op::Size => vec![t(DType::I64, Some(vec![]))],
            Op::IsNaN | Op::IsInf => vec![t(DType::Bool, self.in_shape(0))],
            Op::ConstantOfShape => {
                let dt = match node.attr("value") {
                    Some(Attr::Tensor(v)) => v.dtype,
                    _ => DType::F32,
                };
                let shape = self.in_sym(0).or_else(|| {
                    let n = self.in_shape(0)?.first()?.fixed()?;
                    Some(vec![Dim::Unknown; n as usize])
                });
                vec![t(dt, shape)]
            }
            Op::Constant => {
                let tensor = constant_attr_value(node)?;
                let sym = tensor
                    .to_i64_vec()
                    .filter(|v| v.len() <= 64 && matches!(tensor.dtype, DType::I64 | DType::I32))
                    .map(|v| v.into_iter().map(Dim::Fixed).collect());
                vec![Inferred {
                    ty: Type::Tensor(tensor.ty()),
                    sym,
                }]
            }
            Op::Range => vec![t(self.in_dtype(0), Some(vec![Dim::Unknown]))],
            Op::Einsum => {
                let ranks: Vec<Option<usize>> = (0..node.inputs.len())
                    .map(|i| self.in_shape(i).map(|s| s.len()))
                    .collect();
                let shape = node
                    .attr_str("equation")
                    .and_then(|eq| Equation::parse(eq, &ranks).ok())
                    .map(|eq| {
                        let shapes: Vec<Option<Vec<Dim>>> =
                            (0..node.inputs.len()).map(|i| self.in_shape(i)).collect();
                        eq.output_shape(&shapes)
                    });
                vec![t(self.in_dtype(0), shape)]
            }
            Op::TopK => {
                let axis = node.attr_int("axis").unwrap_or(-1);
                let shape = match (self.in_shape(0), self.in_ints(1)) {
                    (Some(mut s), k) => norm_axis(axis, s.len()).map(|a| {
                        s[a] = k
                            .and_then(|k| k.first().copied())
                            .map(Dim::Fixed)
                            .unwrap_or(Dim::Unknown);
                        s
                    }),
                    _ => None,
                };
                vec![t(self.in_dtype(0), shape.clone()), t(DType::I64, shape)]
            }
            Op::NonZero => vec![t(
                DType::I64,
                Some(vec![
                    self.in_shape(0)
                        .map(|s| Dim::Fixed(s.len() as i64))
                        .unwrap_or(Dim::Unknown),
                    Dim::Unknown,
                ]),
            )],
            Op::RandomUniformLike | Op::RandomNormalLike | Op::Bernoulli => {
                let dt = node
                    .attr_int("dtype")
                    .and_then(|c| DType::from_onnx(c as i32))
                    .unwrap_or(self.in_dtype(0));
                vec![t(dt, self.in_shape(0))]
            }
            Op::RandomUniform | Op::RandomNormal => {
                let dt = node
                    .attr_int("dtype")
                    .and_then(|c| DType::from_onnx(c as i32))
                    .unwrap_or(DType::F32);
                let shape = node
                    .attr_ints("shape")
                    .map(|s| s.iter().map(|&d| Dim::Fixed(d)).collect());
                vec![t(dt, shape)]
            }
            Op::If => {
                let then = match node.attr("then_branch") {
                    Some(Attr::Graph(g)) => g,
                    _ => return None,
                };
                then.outputs
                    .iter()
                    .map(|&o| Inferred {
                        ty: then.ty(o).clone(),
                        sym: None,
                    })
                    .collect()
            }
            Op::Resize => {
                let shape = resize_axes(self.g, node, self.opset)
                    .map(|axes| axes.into_iter().map(|a| a.output).collect())
                    .or_else(|| self.in_shape(0).map(|s| vec![Dim::Unknown; s.len()]));
                vec![t(self.in_dtype(0), shape)]
            }
            Op::DepthToSpace | Op::SpaceToDepth => {
                let b = node.attr_int("blocksize").unwrap_or(1);
                let mul = |d: &Dim, k: i64| match d {
                    Dim::Fixed(n) => Dim::Fixed(n * k),
                    _ => Dim::Unknown,
                };
                let div = |d: &Dim, k: i64| match d {
                    Dim::Fixed(n) if k > 0 && n % k == 0 => Dim::Fixed(n / k),
                    _ => Dim::Unknown,
                };
                // DepthToSpace moves b² channels into b×b blocks; SpaceToDepth the reverse
                let shape = self.in_shape(0).filter(|s| s.len() == 4).map(|s| {
                    if *op == Op::DepthToSpace {
                        vec![
                            s[0].clone(),
                            div(&s[1], b * b),
                            mul(&s[2], b),
                            mul(&s[3], b),
                        ]
                    } else {
                        vec![
                            s[0].clone(),
                            mul(&s[1], b * b),
                            div(&s[2], b),
                            div(&s[3], b),
                        ]
                    }
                });
                vec![t(self.in_dtype(0), shape)]
            }
            Op::Upsample | Op::OneHot => {
                let rank = self.in_shape(0).map(|s| s.len());
                vec![t(
                    if matches!(op, Op::OneHot) {
                        self.in_dtype(2)
                    } else {
                        self.in_dtype(0)
                    },
                    rank.filter(|_| !matches!(op, Op::OneHot))
                        .map(|r| vec![Dim::Unknown; r]),
                )]
            }
            _ => return None,
        };
        Some(r)
    }

    /// Element values of a small integer elementwise op when both operands are known.
    fn elementwise_sym(&self) -> Option<Vec<Dim>> {
        if !matches!(
            self.node.op,
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Equal
        ) {
            return None;
        }
        if !self.vector_inputs() {
            return None;
        }
        let fmod = self.node.attr_int("fmod").unwrap_or(0) != 0;
        let a = self.in_sym(0)?;
        let b = self.in_sym(1)?;
        let n = a.len().max(b.len());
        if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
            return None;
        }
        (0..n)
            .map(|i| {
                let x = &a[if a.len() == 1 { 0 } else { i }];
                let y = &b[if b.len() == 1 { 0 } else { i }];
                Some(match (x, y, &self.node.op) {
                    (Dim::Fixed(p), Dim::Fixed(q), Op::Add) => Dim::Fixed(p + q),
                    (Dim::Fixed(p), Dim::Fixed(q), Op::Sub) => Dim::Fixed(p - q),
                    (Dim::Fixed(p), Dim::Fixed(q), Op::Mul) => Dim::Fixed(p * q),
                    (Dim::Fixed(p), Dim::Fixed(q), Op::Div) if *q != 0 => Dim::Fixed(p / q),
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
                    (Dim::Fixed(p), Dim::Fixed(q), Op::Mod) if *q != 0 => {
                        let r = p % q;
                        Dim::Fixed(if !fmod && r != 0 && (r < 0) != (*q < 0) {
                            r + q
                        } else {
                            r
                        })
                    }
                    (d, Dim::Fixed(1), Op::Mul | Op::Div) | (Dim::Fixed(1), d, Op::Mul) => {
                        d.clone()
                    }
                    (d, Dim::Fixed(0), Op::Add | Op::Sub) | (Dim::Fixed(0), d, Op::Add) => {
                        d.clone()
                    }
                    _ => Dim::Unknown,
                })
            })
            .collect()
    }

    /// Whether every input is a scalar or a vector: element values of higher ranks do not
    /// broadcast elementwise.
    fn vector_inputs(&self) -> bool {
        (0..self.node.inputs.len()).all(|i| self.in_shape(i).is_some_and(|s| s.len() <= 1))
    }

    /// Element values of a small Where whose condition values are known.
    fn where_sym(&self) -> Option<Vec<Dim>> {
        if !self.vector_inputs() {
            return None;
        }
        let ins: Vec<Vec<Dim>> = (0..3).map(|i| self.in_sym(i)).collect::<Option<_>>()?;
        let n = ins.iter().map(Vec::len).max()?;
        if ins.iter().any(|v| v.len() != n && v.len() != 1) {
            return None;
        }
        let at = |v: &Vec<Dim>, i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
        (0..n)
            .map(|i| match at(&ins[0], i) {
                Dim::Fixed(0) => Some(at(&ins[2], i)),
                Dim::Fixed(_) => Some(at(&ins[1], i)),
                _ => None,
            })
            .collect()
    }

    fn matmul_shape(&self) -> Option<Vec<Dim>> {
        let mut a = self.in_shape(0)?;
        let mut b = self.in_shape(1)?;
        let (a1, b1) = (a.len() == 1, b.len() == 1);
        if a1 {
            a.insert(0, Dim::Fixed(1));
        }
        if b1 {
            b.push(Dim::Fixed(1));
        }
        if a.len() < 2 || b.len() < 2 {
            return None;
        }
        let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]);
        let mut out = batch;
        if !a1 {
            out.push(a[a.len() - 2].clone());
        }
        if !b1 {
            out.push(b[b.len() - 1].clone());
        }
        Some(out)
    }

    fn conv_pool(&self) -> Vec<Inferred> {
        let node = self.node;
        let dt = self.in_dtype(0);
        let Some(x) = self.in_shape(0) else {
            return vec![
                Inferred::tensor(dt, None),
                Inferred::tensor(DType::I64, None),
            ];
        };
        let nsp = x.len().saturating_sub(2);
        let w = self.in_shape(1);
        let kernel: Vec<i64> = match node.attr_ints("kernel_shape") {
            Some(k) => k.to_vec(),
            None => match &w {
                Some(w) if matches!(node.op, Op::Conv | Op::ConvTranspose) => {
                    w.iter().skip(2).map(|d| d.fixed().unwrap_or(-1)).collect()
                }
                _ => vec![-1; nsp],
            },
        };
        let strides = node
            .attr_ints("strides")
            .map(<[i64]>::to_vec)
            .unwrap_or(vec![1; nsp]);
        let dil = node
            .attr_ints("dilations")
            .map(<[i64]>::to_vec)
            .unwrap_or(vec![1; nsp]);
        let pads = node
            .attr_ints("pads")
            .map(<[i64]>::to_vec)
            .unwrap_or(vec![0; 2 * nsp]);
        let auto = node.attr_str("auto_pad").unwrap_or("NOTSET");
        let ceil = node.attr_int("ceil_mode").unwrap_or(0) != 0;
        let chan = match node.op {
            Op::Conv => w
                .as_ref()
                .and_then(|w| w.first().cloned())
                .unwrap_or(Dim::Unknown),
            Op::ConvTranspose => {
                let g = node.attr_int("group").unwrap_or(1);
                w.as_ref()
                    .and_then(|w| w.get(1))
                    .map(|d| dim_mul(d, &Dim::Fixed(g)))
                    .unwrap_or(Dim::Unknown)
            }
            _ => x.get(1).cloned().unwrap_or(Dim::Unknown),
        };
        let mut out = vec![x.first().cloned().unwrap_or(Dim::Unknown), chan];
        for i in 0..nsp {
            let k = *kernel.get(i).unwrap_or(&-1);
            let s = *strides.get(i).unwrap_or(&1);
            let d = *dil.get(i).unwrap_or(&1);
            let xi = &x[i + 2];
            let dim = if k < 0 {
                Dim::Unknown
            } else if node.op == Op::ConvTranspose {
                if let Some(os) = node.attr_ints("output_shape") {
                    Dim::Fixed(os[os.len() - nsp + i])
                } else {
                    let op = node.attr_ints("output_padding").map(|p| p[i]).unwrap_or(0);
                    match (xi, auto) {
                        (Dim::Fixed(n), "SAME_UPPER" | "SAME_LOWER") => Dim::Fixed(n * s),
                        (Dim::Fixed(n), _) => Dim::Fixed(
                            s * (n - 1) + op + ((k - 1) * d + 1) - pads[i] - pads[i + nsp],
                        ),
                        _ => Dim::Unknown,
                    }
                }
            } else {
                match auto {
                    "SAME_UPPER" | "SAME_LOWER" => match xi {
                        Dim::Fixed(n) => Dim::Fixed((n + s - 1) / s),
                        _ => Dim::Unknown,
                    },
                    "VALID" => window(xi, k, s, d, 0, ceil),
                    _ => window(xi, k, s, d, pads[i] + pads[i + nsp], ceil),
                }
            };
            out.push(dim);
        }
        vec![
            Inferred::tensor(dt, Some(out.clone())),
            Inferred::tensor(DType::I64, Some(out)),
        ]
    }

    fn reduce_shape(&self) -> Option<Vec<Dim>> {
        let node = self.node;
        let s = self.in_shape(0)?;
        let keep = node.attr_int("keepdims").unwrap_or(1) != 0;
        let noop = node.attr_int("noop_with_empty_axes").unwrap_or(0) != 0;
        let axes = match node.attr_ints("axes") {
            Some(a) => Some(a.to_vec()),
            None if node.input(1).is_some() => Some(self.in_ints(1)?),
            None => None,
        };
        let axes: Vec<usize> = match axes {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|&x| norm_axis(x, s.len()))
                .collect::<Option<_>>()?,
            _ if noop => return Some(s),
            _ => (0..s.len()).collect(),
        };
        Some(reduce_dims(&s, &axes, keep))
    }

    fn reshape_shape(&self) -> Option<Vec<Dim>> {
        let allowzero = self.node.attr_int("allowzero").unwrap_or(0) != 0;
        let Some(target) = self.in_sym(1) else {
            let n = self.in_shape(1)?.first()?.fixed()?;
            return Some(vec![Dim::Unknown; n as usize]);
        };
        let input = self.in_shape(0);
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
            out[pos] = Dim::Unknown;
            if let Some(inp) = input {
                out[pos] = infer_minus_one(&inp, &out, pos);
            }
        }
        Some(out)
    }

    fn split(&self) -> Vec<Inferred> {
        let node = self.node;
        let n_out = node.outputs.len();
        let dt = self.in_dtype(0);
        let axis = node.attr_int("axis").unwrap_or(0);
        let sizes = self.ints_attr_or_input("split", 1);
        let Some(s) = self.in_shape(0) else {
            return vec![Inferred::tensor(dt, None); n_out];
        };
        let Some(a) = norm_axis(axis, s.len()) else {
            return vec![Inferred::tensor(dt, None); n_out];
        };
        (0..n_out)
            .map(|k| {
                let mut o = s.clone();
                o[a] = match (&sizes, &s[a]) {
                    (Some(sz), _) => sz.get(k).map(|&v| Dim::Fixed(v)).unwrap_or(Dim::Unknown),
                    (None, Dim::Fixed(n)) => {
                        let chunk = (n + n_out as i64 - 1) / n_out as i64;
                        Dim::Fixed(if k + 1 == n_out {
                            n - chunk * (n_out as i64 - 1)
                        } else {
                            chunk
                        })
                    }
                    _ => Dim::Unknown,
                };
                Inferred::tensor(dt, Some(o))
            })
            .collect()
    }

    fn slice(&self) -> (Option<Vec<Dim>>, Option<Vec<Dim>>) {
        let node = self.node;
        let Some(s) = self.in_shape(0) else {
            return (None, None);
        };
        let r = s.len();
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                node.attr_ints("starts").map(<[i64]>::to_vec),
                node.attr_ints("ends").map(<[i64]>::to_vec),
                node.attr_ints("axes").map(<[i64]>::to_vec),
                None,
            )
        } else {
            (
                self.in_ints(1),
                self.in_ints(2),
                if node.input(3).is_some() {
                    self.in_ints(3)
                } else {
                    None
                },
                if node.input(4).is_some() {
                    self.in_ints(4)
                } else {
                    None
                },
            )
        };
        let has_axes_input = node.input(3).is_some() || node.attr_ints("axes").is_some();
        let (Some(starts), Some(ends)) = (starts, ends) else {
            // unknown bounds: the sliced axes lose their size, the others keep theirs
            let sliced: Option<Vec<usize>> = match &axes {
                Some(a) => a.iter().map(|&x| norm_axis(x, r)).collect(),
                None if !has_axes_input => self
                    .in_shape(1)
                    .and_then(|sh| sh.first()?.fixed())
                    .map(|n| (0..n.max(0) as usize).collect()),
                None => None,
            };
            let out = match sliced {
                Some(ax) => (0..r)
                    .map(|i| match ax.contains(&i) {
                        true => Dim::Unknown,
                        false => s[i].clone(),
                    })
                    .collect(),
                None => vec![Dim::Unknown; r],
            };
            return (Some(out), None);
        };
        if has_axes_input && axes.is_none() {
            return (Some(vec![Dim::Unknown; r]), None);
        }
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        let mut out = s.clone();
        let mut sym = None;
        for (k, &ax) in axes.iter().enumerate() {
            let Some(a) = norm_axis(ax, r) else {
                return (Some(vec![Dim::Unknown; r]), None);
            };
            let step = steps.get(k).copied().unwrap_or(1);
            let range = match &s[a] {
                Dim::Fixed(n) => slice_range(*n, starts[k], ends[k], step),
                _ => None,
            };
            out[a] = match &range {
                Some((lo, hi)) => Dim::Fixed(slice_len(*lo, *hi, step)),
                None => Dim::Unknown,
            };
            if r == 1 && step == 1 {
                if let (Some(v), Some((lo, hi))) = (self.in_sym(0), range) {
                    sym = v.get(lo as usize..hi.max(lo) as usize).map(<[Dim]>::to_vec);
                }
            }
        }
        (Some(out), sym)
    }
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

/// ONNX Slice's clamped (start, end) along an axis of size `n`; None for a zero step.
pub(crate) fn slice_range(n: i64, start: i64, end: i64, step: i64) -> Option<(i64, i64)> {
    if step == 0 {
        return None;
    }
    let fix = |v: i64, lo: i64, hi: i64| {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    if step > 0 {
        Some((fix(start, 0, n), fix(end, 0, n)))
    } else {
        Some((fix(start, -1, n - 1), fix(end, -1, n - 1)))
    }
}

fn slice_len(lo: i64, hi: i64, step: i64) -> i64 {
    if step > 0 {
        ((hi - lo + step - 1) / step).max(0)
    } else {
        ((lo - hi - step - 1) / -step).max(0)
    }
}

fn reduce_dims(s: &[Dim], axes: &[usize], keep: bool) -> Vec<Dim> {
    s.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            if axes.contains(&i) {
                keep.then_some(Dim::Fixed(1))
            } else {
                Some(d.clone())
            }
        })
        .collect()
}

/// The size hidden behind a `-1` in a reshape target: product of the input's dims divided by
/// the other target dims, symbolic factors cancelling.
fn infer_minus_one(input: &[Dim], target: &[Dim], pos: usize) -> Dim {
    let mut num_fixed = 1i64;
    let mut num_syms: Vec<&Dim> = Vec::new();
    for d in input {
        match d {
            Dim::Fixed(n) => num_fixed *= n,
            Dim::Sym(_) => num_syms.push(d),
            Dim::Unknown => return Dim::Unknown,
        }
    }
    let mut den_fixed = 1i64;
    for (i, d) in target.iter().enumerate() {
        if i == pos {
            continue;
        }
        match d {
            Dim::Fixed(n) => den_fixed *= n,
            Dim::Sym(_) => match num_syms.iter().position(|s| *s == d) {
                Some(j) => {
                    num_syms.remove(j);
                }
                None => return Dim::Unknown,
            },
            Dim::Unknown => return Dim::Unknown,
        }
    }
    if den_fixed == 0 || num_fixed % den_fixed != 0 {
        return Dim::Unknown;
    }
    let q = num_fixed / den_fixed;
    match (num_syms.len(), q) {
        (0, q) => Dim::Fixed(q),
        (1, 1) => num_syms[0].clone(),
        _ => Dim::Unknown,
    }
}

/// The tensor a `Constant` node produces (any of its value_* attributes).
pub fn constant_attr_value(node: &Node) -> Option<Tensor> {
    match node.attrs.iter().next()? {
        (_, Attr::Tensor(t)) => Some(t.clone()),
        (k, Attr::Float(f)) if k == "value_float" => Some(Tensor::from_f32(&[], &[*f])),
        (k, Attr::Floats(f)) if k == "value_floats" => Some(Tensor::from_f32(&[f.len() as i64], f)),
        (k, Attr::Int(i)) if k == "value_int" => Some(Tensor::from_i64(&[], &[*i])),
        (k, Attr::Ints(i)) if k == "value_ints" => Some(Tensor::from_i64(&[i.len() as i64], i)),
        _ => None,
    }
}

/// Runs inference over the whole graph in topological order.
pub fn infer_graph(g: &mut Graph, opset: i64) {
    for n in g.order().to_vec() {
        infer_and_store(g, n, opset);
    }
}
