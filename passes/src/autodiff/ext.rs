//! Builder helpers shared by the gradient rules and the training-mode lowering: filled
//! tensors, shape plumbing and sums, each emitting the smallest standard-operator form.

use crate::ir::{Attr, Builder, DType, Op, Tensor, ValueId};

pub(crate) trait BuilderExt {
    /// A tensor of `v`s with the shape and element type of `like`.
    fn fill_like(&mut self, like: ValueId, v: f64) -> ValueId;
    /// A tensor of `v`s of element type `dtype` and the shape held by the int64 vector `shape`.
    fn fill(&mut self, shape: ValueId, dtype: DType, v: f64) -> ValueId;
    /// The sum of one or more same-shaped tensors.
    fn add_all(&mut self, parts: &[ValueId]) -> ValueId;
    /// `x` reshaped to the shape of `like`.
    fn reshape_like(&mut self, x: ValueId, like: ValueId) -> ValueId;
    /// `x` broadcast to the shape of `like`.
    fn expand_like(&mut self, x: ValueId, like: ValueId) -> ValueId;
    /// numel(big) / numel(small) as a scalar of big's element type (a constant when both
    /// shapes are static): the element count behind a mean.
    fn count_ratio(&mut self, big: ValueId, small: ValueId) -> ValueId;
    /// `Shape(x)[start..end]` (whole tail when `end` is None).
    fn shape_part(&mut self, x: ValueId, start: i64, end: Option<i64>) -> ValueId;
    /// `x` converted to the element type of `like` (no node when they agree).
    fn cast_to_like(&mut self, x: ValueId, like: ValueId) -> ValueId;
    /// `x` with its last two axes swapped (rank >= 2).
    fn transpose_last2(&mut self, x: ValueId, rank: usize) -> ValueId;
    /// `Slice(x)` with constant starts, ends and axes (step 1).
    fn slice_const(&mut self, x: ValueId, starts: &[i64], ends: &[i64], axes: &[i64]) -> ValueId;
    /// `Where(cond, a, 0)`: `a` where `cond` holds, zero elsewhere.
    fn keep_where(&mut self, cond: ValueId, a: ValueId) -> ValueId;
    /// A bool tensor `x > 0`.
    fn positive(&mut self, x: ValueId) -> ValueId;
}

impl BuilderExt for Builder<'_> {
    fn fill_like(&mut self, like: ValueId, v: f64) -> ValueId {
        let dt = self.dtype(like);
        let shape = self.shape_of(like);
        self.fill(shape, dt, v)
    }

    fn fill(&mut self, shape: ValueId, dtype: DType, v: f64) -> ValueId {
        let mut t = Tensor::scalar(dtype, v);
        t.dims = vec![1];
        self.op(
            Op::ConstantOfShape,
            &[shape],
            vec![("value", Attr::Tensor(t))],
        )
    }

    fn add_all(&mut self, parts: &[ValueId]) -> ValueId {
        match parts {
            [one] => *one,
            [a, b] => self.add(*a, *b),
            many => self.op(Op::Sum, many, vec![]),
        }
    }

    fn reshape_like(&mut self, x: ValueId, like: ValueId) -> ValueId {
        let s = self.shape_of(like);
        self.reshape(x, s)
    }

    fn expand_like(&mut self, x: ValueId, like: ValueId) -> ValueId {
        let s = self.shape_of(like);
        self.expand(x, s)
    }

    fn count_ratio(&mut self, big: ValueId, small: ValueId) -> ValueId {
        let numel = |b: &Self, v| {
            b.g.ty(v)
                .tensor()
                .and_then(|t| t.fixed_dims())
                .map(|d| d.iter().product::<i64>())
        };
        if let (Some(nb), Some(ns)) = (numel(self, big), numel(self, small)) {
            if ns > 0 {
                return self.scalar_like(big, nb as f64 / ns as f64);
            }
        }
        let dt = self.dtype(big);
        let sb = self.op(Op::Size, &[big], vec![]);
        let ss = self.op(Op::Size, &[small], vec![]);
        let q = self.cast(sb, dt);
        let d = self.cast(ss, dt);
        self.div(q, d)
    }

    fn shape_part(&mut self, x: ValueId, start: i64, end: Option<i64>) -> ValueId {
        let mut attrs = vec![("start", Attr::Int(start))];
        if let Some(e) = end {
            attrs.push(("end", Attr::Int(e)));
        }
        self.op(Op::Shape, &[x], attrs)
    }

    fn cast_to_like(&mut self, x: ValueId, like: ValueId) -> ValueId {
        let to = self.dtype(like);
        if self.g.ty(x).dtype() == Some(to) {
            x
        } else {
            self.cast(x, to)
        }
    }

    fn transpose_last2(&mut self, x: ValueId, rank: usize) -> ValueId {
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(rank - 2, rank - 1);
        self.transpose(x, &perm)
    }

    fn slice_const(&mut self, x: ValueId, starts: &[i64], ends: &[i64], axes: &[i64]) -> ValueId {
        let s = self.ints(starts);
        let e = self.ints(ends);
        let a = self.ints(axes);
        self.op(Op::Slice, &[x, s, e, a], vec![])
    }

    fn keep_where(&mut self, cond: ValueId, a: ValueId) -> ValueId {
        let zero = self.scalar_like(a, 0.0);
        self.where_(cond, a, zero)
    }

    fn positive(&mut self, x: ValueId) -> ValueId {
        let zero = self.scalar_like(x, 0.0);
        self.op(Op::Greater, &[x, zero], vec![])
    }
}
