//! The one way passes create nodes: every node added through the builder gets its output
//! types inferred at once, and the sugar methods emit the opset-appropriate form of each
//! operator (attribute or input axes), so gradient, optimizer and GeN code reads like the math.

use super::graph::{Attr, Graph, NodeId, ValueId};
use super::infer::infer_and_store;
use super::ops::Op;
use super::types::{DType, Tensor, Type};
use std::collections::BTreeMap;

pub struct Builder<'g> {
    pub g: &'g mut Graph,
    opset: i64,
    prefix: String,
}

impl<'g> Builder<'g> {
    /// A builder adding nodes to `g` for default-domain opset `opset`; names start with `prefix`.
    pub fn new(g: &'g mut Graph, opset: i64, prefix: &str) -> Self {
        Builder {
            g,
            opset,
            prefix: prefix.to_string(),
        }
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    pub fn set_prefix(&mut self, prefix: &str) {
        self.prefix = prefix.to_string();
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        self.g.ty(v)
    }

    pub fn dtype(&self, v: ValueId) -> DType {
        self.g.ty(v).dtype().unwrap_or(DType::F32)
    }

    pub fn rank(&self, v: ValueId) -> Option<usize> {
        self.g.ty(v).rank()
    }

    /// Adds a node with `n_outputs` outputs and infers their types.
    pub fn node(
        &mut self,
        op: Op,
        inputs: &[Option<ValueId>],
        n_outputs: usize,
        attrs: Vec<(&str, Attr)>,
    ) -> (NodeId, Vec<ValueId>) {
        let base = format!("{}{}", self.prefix, op.op_type());
        let out_names: Vec<String> = (0..n_outputs).map(|i| format!("{base}_o{i}")).collect();
        let out_refs: Vec<&str> = out_names.iter().map(String::as_str).collect();
        let attrs: BTreeMap<String, Attr> =
            attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let n = self
            .g
            .add_node(op, &base, inputs.to_vec(), &out_refs, attrs);
        // nodes built from an imported (inference-checked) graph; should one still be
        // invalid, its outputs stay untyped and verification reports the node
        if infer_and_store(self.g, n, self.opset).is_err() {
            return (
                n,
                self.g.node(n).outputs.iter().flatten().copied().collect(),
            );
        }
        let outs: Vec<ValueId> = self.g.node(n).outputs.iter().flatten().copied().collect();
        (n, outs)
    }

    /// Adds a single-output node.
    pub fn op(&mut self, op: Op, inputs: &[ValueId], attrs: Vec<(&str, Attr)>) -> ValueId {
        let ins: Vec<Option<ValueId>> = inputs.iter().copied().map(Some).collect();
        self.node(op, &ins, 1, attrs).1[0]
    }

    // ----- constants -----

    /// A `Constant` node holding `t`.
    pub fn constant(&mut self, t: Tensor) -> ValueId {
        self.op(Op::Constant, &[], vec![("value", Attr::Tensor(t))])
    }

    /// A scalar constant of type `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> ValueId {
        self.constant(Tensor::scalar(dtype, v))
    }

    /// A scalar constant with the element type of `like`.
    pub fn scalar_like(&mut self, like: ValueId, v: f64) -> ValueId {
        let dt = self.dtype(like);
        self.scalar(dt, v)
    }

    /// A 1-D int64 constant.
    pub fn ints(&mut self, vals: &[i64]) -> ValueId {
        self.constant(Tensor::from_i64(&[vals.len() as i64], vals))
    }

    // ----- elementwise -----

    pub fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Add, &[a, b], vec![])
    }
    pub fn sub(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Sub, &[a, b], vec![])
    }
    pub fn mul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Mul, &[a, b], vec![])
    }
    pub fn div(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Div, &[a, b], vec![])
    }
    pub fn neg(&mut self, a: ValueId) -> ValueId {
        self.op(Op::Neg, &[a], vec![])
    }
    pub fn unary(&mut self, op: Op, a: ValueId) -> ValueId {
        self.op(op, &[a], vec![])
    }
    pub fn where_(&mut self, c: ValueId, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::Where, &[c, a, b], vec![])
    }
    pub fn cast(&mut self, x: ValueId, to: DType) -> ValueId {
        self.op(Op::Cast, &[x], vec![("to", Attr::Int(to as i64))])
    }
    pub fn matmul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.op(Op::MatMul, &[a, b], vec![])
    }

    /// `a * s` where `s` is a scalar of `a`'s element type.
    pub fn scale(&mut self, a: ValueId, s: f64) -> ValueId {
        let c = self.scalar_like(a, s);
        self.mul(a, c)
    }

    // ----- shape -----

    pub fn shape_of(&mut self, x: ValueId) -> ValueId {
        self.op(Op::Shape, &[x], vec![])
    }

    pub fn reshape(&mut self, x: ValueId, shape: ValueId) -> ValueId {
        self.op(Op::Reshape, &[x, shape], vec![])
    }

    pub fn expand(&mut self, x: ValueId, shape: ValueId) -> ValueId {
        self.op(Op::Expand, &[x, shape], vec![])
    }

    pub fn transpose(&mut self, x: ValueId, perm: &[i64]) -> ValueId {
        self.op(
            Op::Transpose,
            &[x],
            vec![("perm", Attr::Ints(perm.to_vec()))],
        )
    }

    /// Axes as an attribute before `input_since`, as an int64 input from then on.
    fn axes_op(
        &mut self,
        op: Op,
        x: ValueId,
        axes: &[i64],
        input_since: i64,
        mut attrs: Vec<(&str, Attr)>,
    ) -> ValueId {
        if self.opset >= input_since {
            let a = self.ints(axes);
            self.op(op, &[x, a], attrs)
        } else {
            attrs.push(("axes", Attr::Ints(axes.to_vec())));
            self.op(op, &[x], attrs)
        }
    }

    pub fn unsqueeze(&mut self, x: ValueId, axes: &[i64]) -> ValueId {
        self.axes_op(Op::Unsqueeze, x, axes, 13, vec![])
    }

    pub fn squeeze(&mut self, x: ValueId, axes: &[i64]) -> ValueId {
        self.axes_op(Op::Squeeze, x, axes, 13, vec![])
    }

    pub fn reduce_sum(&mut self, x: ValueId, axes: &[i64], keepdims: bool) -> ValueId {
        let k = vec![("keepdims", Attr::Int(keepdims as i64))];
        self.axes_op(Op::ReduceSum, x, axes, 13, k)
    }

    pub fn reduce_mean(&mut self, x: ValueId, axes: &[i64], keepdims: bool) -> ValueId {
        let k = vec![("keepdims", Attr::Int(keepdims as i64))];
        self.axes_op(Op::ReduceMean, x, axes, 18, k)
    }

    pub fn reduce_max(&mut self, x: ValueId, axes: &[i64], keepdims: bool) -> ValueId {
        let k = vec![("keepdims", Attr::Int(keepdims as i64))];
        self.axes_op(Op::ReduceMax, x, axes, 18, k)
    }

    /// Sum of all elements, as a scalar.
    pub fn sum_all(&mut self, x: ValueId) -> ValueId {
        match self.rank(x) {
            Some(0) => x,
            Some(r) => {
                let axes: Vec<i64> = (0..r as i64).collect();
                self.reduce_sum(x, &axes, false)
            }
            None => {
                // rank unknown: flatten to 1-D first
                let m1 = self.ints(&[-1]);
                let flat = self.reshape(x, m1);
                self.reduce_sum(flat, &[0], false)
            }
        }
    }

    /// Sums `grad` (the gradient of a broadcast result) back to the shape of `like`:
    /// leading extra axes are summed away, axes where `like` has size 1 are summed with
    /// keepdims. Uses static ranks; when an axis of `like` might be 1 where `grad`'s is not
    /// (an unknown dim, or a symbolic one facing anything but the same symbol or 1), the
    /// gradient is summed dynamically to `Shape(like)`.
    pub fn sum_to_like(&mut self, grad: ValueId, like: ValueId) -> ValueId {
        use super::Dim::{Fixed, Sym};
        let (Some(gs), Some(ls)) = (
            self.g.ty(grad).shape().map(<[_]>::to_vec),
            self.g.ty(like).shape().map(<[_]>::to_vec),
        ) else {
            return self.sum_to_shape_dynamic(grad, like);
        };
        if gs.len() < ls.len() {
            return self.sum_to_shape_dynamic(grad, like);
        }
        let lead = gs.len() - ls.len();
        let mut keep_axes = Vec::new();
        for (i, (l, g)) in ls.iter().zip(&gs[lead..]).enumerate() {
            match (l, g) {
                (Fixed(1), Fixed(1)) | (Sym(_), Fixed(1)) => {}
                (Fixed(1), _) => keep_axes.push(i as i64),
                (Fixed(_), _) => {}
                (Sym(a), Sym(b)) if a == b => {}
                _ => return self.sum_to_shape_dynamic(grad, like),
            }
        }
        let mut out = grad;
        if lead > 0 {
            let axes: Vec<i64> = (0..lead as i64).collect();
            out = self.reduce_sum(out, &axes, false);
        }
        if !keep_axes.is_empty() {
            out = self.reduce_sum(out, &keep_axes, true);
        }
        out
    }

    /// Dynamic broadcast reduction: grad summed to `Shape(like)` at run time. Works for any
    /// shapes with rank(grad) >= rank(like): pad like's shape with leading ones, find the axes
    /// where it is 1 and grad's is not, sum them (keepdims), then reshape.
    fn sum_to_shape_dynamic(&mut self, grad: ValueId, like: ValueId) -> ValueId {
        let gshape = self.shape_of(grad);
        let lshape = self.shape_of(like);
        let grank = self.shape_of(gshape);
        let lrank = self.shape_of(lshape);
        let pad_n = self.sub(grank, lrank);
        let one = self.ints(&[1]);
        let ones = self.op(Op::Expand, &[one, pad_n], vec![]);
        let padded = self.op(Op::Concat, &[ones, lshape], vec![("axis", Attr::Int(0))]);
        let is_one = self.op(Op::Equal, &[padded, one], vec![]);
        let differs = self.op(Op::Equal, &[padded, gshape], vec![]);
        let not_same = self.op(Op::Not, &[differs], vec![]);
        let reduce = self.op(Op::And, &[is_one, not_same], vec![]);
        let nz = self.op(Op::NonZero, &[reduce], vec![]);
        let m1 = self.ints(&[-1]);
        let axes = self.reshape(nz, m1);
        let summed = self.op(
            Op::ReduceSum,
            &[grad, axes],
            vec![
                ("keepdims", Attr::Int(1)),
                ("noop_with_empty_axes", Attr::Int(1)),
            ],
        );
        self.reshape(summed, lshape)
    }
}
