//! Constant folding of shape arithmetic. Type inference tracks the element values of small
//! integer tensors, symbolic batch included (`Value::sym`); every integer node whose values
//! are then fully known becomes a `Constant`. This folds the Shape → Gather → Unsqueeze →
//! Concat → Reshape chains exporters emit whenever the shapes involved are static, and leaves
//! the ones that depend on a symbolic dimension in place. Small integer tensors of any rank
//! that operators only rearrange (Reshape, Transpose, Slice, ConstantOfShape, Cast, ...) are
//! evaluated too: the TorchScript exporter computes every `F.pad` amount that way.
//! Needs: nothing. Guarantees: folded values equal what the runtime would compute.

use super::{Context, Pass};
use crate::error::{Error, Result};
use crate::ir::infer::{constant_attr_value, infer_graph, slice_range};
use crate::ir::{Attr, DType, Dim, Graph, Model, Node, Op, Tensor, TensorData, Value, ValueDef};
use std::collections::BTreeMap;

pub struct ConstantFolding;

/// Folded tensors stay small: shape vectors, not data. This is also the budget of what
/// folding reads or builds: larger constants (or sizes a file claims) are left unfolded.
const MAX_FOLDED_ELEMENTS: usize = 64;

/// The element count of `dims` when it is within the folding budget.
fn small_numel(dims: &[i64]) -> Option<usize> {
    let n = dims
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(usize::try_from(d).ok()?))?;
    (n <= MAX_FOLDED_ELEMENTS).then_some(n)
}

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant-folding"
    }
    fn is_cleanup(&self) -> bool {
        true
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let g = &mut m.graph;
        infer_graph(g, opset).map_err(|e| Error::stage("constant-folding", e))?;
        let mut changed = false;
        for n in g.order().to_vec() {
            let node = g.node(n);
            if matches!(node.op, Op::Constant) {
                // value_float(s) / value_int(s) become a `value` tensor, the one form
                // `Graph::constant` (and so every pass) reads
                if node.attr("value").is_none() {
                    if let Some(t) = constant_attr_value(node) {
                        g.node_mut(n).attrs = BTreeMap::from([("value".into(), Attr::Tensor(t))]);
                        changed = true;
                    }
                }
                continue;
            }
            if node.outputs.len() != 1 || node.op.domain() != "" {
                continue;
            }
            let Some(out) = node.output(0) else { continue };
            let val = g.value(out);
            let Some(tt) = val.ty.tensor() else { continue };
            let Some(shape) = tt.fixed_dims() else {
                continue;
            };
            let t = if matches!(tt.dtype, DType::I64 | DType::I32) {
                let Some(vals) = known_values(val, &shape).or_else(|| evaluate(g, node, &shape))
                else {
                    continue;
                };
                if small_numel(&shape) != Some(vals.len()) {
                    continue;
                }
                int_tensor(tt.dtype, &shape, &vals)
            } else {
                let Some(t) = concat_constants(g, node, &shape) else {
                    continue;
                };
                t
            };
            let node = g.node_mut(n);
            node.op = Op::Constant;
            node.inputs.clear();
            node.attrs = BTreeMap::from([("value".to_string(), Attr::Tensor(t))]);
            changed = true;
        }
        Ok(changed)
    }
}

/// An I64 or I32 tensor holding `vals`.
fn int_tensor(dtype: DType, shape: &[i64], vals: &[i64]) -> Tensor {
    match dtype {
        DType::I32 => Tensor {
            dtype,
            dims: shape.to_vec(),
            data: TensorData::Raw(
                vals.iter()
                    .flat_map(|&v| (v as i32).to_le_bytes())
                    .collect(),
            ),
        },
        _ => Tensor::from_i64(shape, vals),
    }
}

/// A small Concat along axis 0 of `Constant` nodes of any one element type (the TorchScript
/// exporter builds Resize scales that way): their bytes one after the other. Initializers are
/// left alone: float ones are parameters.
fn concat_constants(g: &Graph, node: &Node, shape: &[i64]) -> Option<Tensor> {
    if node.op != Op::Concat || small_numel(shape).is_none() {
        return None;
    }
    let axis = node.attr_int("axis").unwrap_or(0);
    if axis != 0 && axis != -(shape.len() as i64) {
        return None;
    }
    let parts: Vec<&Tensor> = node
        .inputs
        .iter()
        .map(|v| {
            let v = (*v)?;
            let from_node = matches!(g.value(v).def, ValueDef::Node(..));
            g.constant(v).filter(|_| from_node)
        })
        .collect::<Option<_>>()?;
    let dtype = parts.first()?.dtype;
    let mut raw = Vec::new();
    for t in &parts {
        if t.dtype != dtype {
            return None;
        }
        raw.extend_from_slice(t.raw()?);
    }
    Some(Tensor {
        dtype,
        dims: shape.to_vec(),
        data: TensorData::Raw(raw),
    })
}

/// The values inference tracked for a vector or scalar.
fn known_values(val: &Value, shape: &[i64]) -> Option<Vec<i64>> {
    if shape.len() > 1 {
        return None;
    }
    val.sym.as_ref()?.iter().map(Dim::fixed).collect()
}

/// The values of a small integer node of output `shape` whose inputs are constants, for the
/// operators that only copy, reorder or repeat elements.
fn evaluate(g: &Graph, node: &Node, shape: &[i64]) -> Option<Vec<i64>> {
    let numel = small_numel(shape)?;
    // only constants within the budget are read (an input larger than the output it
    // rearranges into is no valid model)
    let input = |i: usize| {
        g.constant(node.input(i)?)
            .filter(|t| small_numel(&t.dims).is_some() && t.nbytes() <= 8 * MAX_FOLDED_ELEMENTS)
    };
    match node.op {
        Op::ConstantOfShape => {
            let v = match node.attr("value") {
                Some(Attr::Tensor(t)) => *t.to_i64_vec()?.first()?,
                None => 0,
                Some(_) => return None,
            };
            Some(vec![v; numel])
        }
        Op::Reshape | Op::Squeeze | Op::Unsqueeze | Op::Flatten | Op::Identity | Op::Cast => {
            input(0)?.to_i64_vec()
        }
        Op::Transpose => {
            let t = input(0)?;
            let r = t.dims.len();
            let perm: Vec<usize> = match node.attr_ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| usize::try_from(a).ok())
                    .collect::<Option<_>>()?,
                None => (0..r).rev().collect(),
            };
            let src = strides(&t.dims);
            let vals = t.to_i64_vec()?;
            let out_dims: Vec<i64> = perm
                .iter()
                .map(|&a| t.dims.get(a).copied())
                .collect::<Option<_>>()?;
            indices(&out_dims)?
                .into_iter()
                .map(|ix| {
                    let flat: i64 = ix
                        .iter()
                        .zip(&perm)
                        .map(|(&i, &a)| Some(i * src.get(a)?))
                        .sum::<Option<i64>>()?;
                    vals.get(usize::try_from(flat).ok()?).copied()
                })
                .collect()
        }
        Op::Slice => {
            let t = input(0)?;
            let r = t.dims.len() as i64;
            let ints = |i: usize| input(i).and_then(Tensor::to_i64_vec);
            let (starts, ends) = (ints(1)?, ints(2)?);
            let axes = match node.input(3) {
                Some(_) => ints(3)?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match node.input(4) {
                Some(_) => ints(4)?,
                None => vec![1; starts.len()],
            };
            // per axis: first index and step (full range where not sliced)
            let mut first = vec![0i64; r as usize];
            let mut step = vec![1i64; r as usize];
            for (k, &start) in starts.iter().enumerate() {
                let a = axes.get(k).map(|&a| if a < 0 { a + r } else { a })?;
                let a = usize::try_from(a).ok().filter(|&a| a < r as usize)?;
                let s = *steps.get(k)?;
                first[a] = slice_range(t.dims[a], start, *ends.get(k)?, s)?.0;
                step[a] = s;
            }
            let src = strides(&t.dims);
            let vals = t.to_i64_vec()?;
            indices(shape)?
                .into_iter()
                .map(|ix| {
                    let flat: i64 = (0..r as usize)
                        .map(|a| {
                            let at = ix.get(a)?.checked_mul(step[a])?.checked_add(first[a])?;
                            at.checked_mul(src[a])
                        })
                        .sum::<Option<i64>>()?;
                    vals.get(usize::try_from(flat).ok()?).copied()
                })
                .collect()
        }
        _ => None,
    }
}

/// Row-major strides of `dims` (saturating: only used for tensors within the budget).
fn strides(dims: &[i64]) -> Vec<i64> {
    let mut s = vec![1i64; dims.len()];
    for a in (0..dims.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1].saturating_mul(dims[a + 1]);
    }
    s
}

/// Every multi-index of `dims`, in row-major order (None beyond the folding budget).
fn indices(dims: &[i64]) -> Option<Vec<Vec<i64>>> {
    let n = small_numel(dims)?;
    let src = strides(dims);
    let ix = (0..n as i64)
        .map(|flat| {
            src.iter()
                .zip(dims)
                .map(|(&s, &d)| (flat / s) % d)
                .collect()
        })
        .collect();
    Some(ix)
}
