//! Finite-difference check of every registered gradient, run through ONNX Runtime (CPU, all
//! graph optimisations on). Each case is a tiny graph around one operator; the loss is
//! L = Σ y·(0.37·y + 0.5) (computed in f64) so every output element gets a different
//! weight. For each differentiated input x and a random direction v, the central difference
//! (L(x + h·v) − L(x − h·v)) / 2h must match ⟨dL/dx, v⟩. Cases use f64 where ONNX Runtime
//! has f64 kernels for the operator and its gradient, f32 otherwise; shapes broadcast, rank 0
//! and 1 appear, some inputs have a symbolic batch; inputs stay away from kinks.
//!
//! Over 600 lines on purpose: one case per registered gradient rule, in one table.

mod grad_support;

use gen_passes::autodiff::{differentiate, registered_ops};
use gen_passes::ir::{Attr, Builder, DType, Graph, Op, Tensor, ValueId};
use gen_passes::onnx::to_bytes;
use grad_support::{dot, float_tensor, input, model, require_ort, run, Rng};
use std::collections::HashSet;

const F32: DType = DType::F32;
const F64: DType = DType::F64;

/// How an input's values are drawn.
#[derive(Clone)]
enum Data {
    /// Uniform in [lo, hi], resampled while |x| < gap (away from kinks at 0).
    Float {
        lo: f64,
        hi: f64,
        gap: f64,
    },
    Ints(Vec<i64>),
}

#[derive(Clone)]
struct In {
    name: &'static str,
    dims: Vec<usize>,
    sym: bool,
    data: Data,
}

impl In {
    /// Dim 0 is the symbolic "batch" in the graph.
    fn sym(mut self) -> In {
        self.sym = true;
        self
    }
}

fn x(name: &'static str, dims: &[usize]) -> In {
    In {
        name,
        dims: dims.to_vec(),
        sym: false,
        data: Data::Float {
            lo: -2.0,
            hi: 2.0,
            gap: 0.0,
        },
    }
}

fn pos(name: &'static str, dims: &[usize]) -> In {
    In {
        data: Data::Float {
            lo: 0.5,
            hi: 2.0,
            gap: 0.0,
        },
        ..x(name, dims)
    }
}

fn away(name: &'static str, dims: &[usize]) -> In {
    In {
        data: Data::Float {
            lo: -2.0,
            hi: 2.0,
            gap: 0.2,
        },
        ..x(name, dims)
    }
}

fn ints(name: &'static str, dims: &[usize], vals: &[i64]) -> In {
    In {
        data: Data::Ints(vals.to_vec()),
        ..x(name, dims)
    }
}

type Build = fn(&mut Builder, &[ValueId]) -> ValueId;

struct Case {
    name: &'static str,
    dtype: DType,
    opset: i64,
    ins: Vec<In>,
    build: Build,
}

fn case(name: &'static str, dtype: DType, ins: Vec<In>, build: Build) -> Case {
    Case {
        name,
        dtype,
        opset: 17,
        ins,
        build,
    }
}

fn at_opset(mut c: Case, opset: i64) -> Case {
    c.opset = opset;
    c
}

// ----- small graph-building helpers -----

fn op(b: &mut Builder, o: Op, ins: &[ValueId], attrs: Vec<(&str, Attr)>) -> ValueId {
    b.op(o, ins, attrs)
}

fn opt(b: &mut Builder, o: Op, ins: &[Option<ValueId>], attrs: Vec<(&str, Attr)>) -> ValueId {
    b.node(o, ins, 1, attrs).1[0]
}

fn ints_attr(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

fn s(v: &str) -> Attr {
    Attr::String(v.as_bytes().to_vec())
}

fn i64s(b: &mut Builder, dims: &[i64], vals: &[i64]) -> ValueId {
    b.constant(Tensor::from_i64(dims, vals))
}

/// Resize of `x` by constant `scales` (no roi) with string attributes.
fn resize(b: &mut Builder, x: ValueId, scales: &[f64], attrs: &[(&'static str, &str)]) -> ValueId {
    let sc = consts(b, x, &[scales.len() as i64], scales);
    let attrs = attrs.iter().map(|&(k, v)| (k, s(v))).collect();
    opt(b, Op::Resize, &[Some(x), None, Some(sc)], attrs)
}

fn einsum(b: &mut Builder, equation: &str, ins: &[ValueId]) -> ValueId {
    b.op(Op::Einsum, ins, vec![("equation", s(equation))])
}

/// `y` times a constant of shape `dims` (trailing axes of y) holding 1, 2, 3, ...
fn ramp(b: &mut Builder, y: ValueId, dims: &[i64]) -> ValueId {
    let n = dims.iter().product::<i64>();
    let vals: Vec<f64> = (1..=n).map(|k| k as f64).collect();
    let c = consts(b, y, dims, &vals);
    b.mul(y, c)
}

/// A constant of `like`'s float type.
fn consts(b: &mut Builder, like: ValueId, dims: &[i64], vals: &[f64]) -> ValueId {
    let t = match b.dtype(like) {
        DType::F64 => Tensor::from_f64(dims, vals),
        _ => Tensor::from_f32(dims, &vals.iter().map(|&v| v as f32).collect::<Vec<_>>()),
    };
    b.constant(t)
}

fn cases() -> Vec<Case> {
    use Op::*;
    vec![
        // ---- elementwise ----
        case(
            "add_broadcast_sym",
            F64,
            vec![x("a", &[2, 3]).sym(), x("b", &[3])],
            |b, v| b.add(v[0], v[1]),
        ),
        case(
            "add_rank0",
            F64,
            vec![x("a", &[]), x("b", &[2, 3])],
            |b, v| b.add(v[0], v[1]),
        ),
        case(
            // u = a[0:batch] and t = w[0:batch] both have an unknown first dim (t's is 1 at
            // run time): t's gradient must be summed over the batch although the static shapes
            // look alike
            "add_unknown_dim_broadcast",
            F64,
            vec![x("a", &[4, 3]).sym(), x("w", &[1, 3])],
            |b, v| {
                let n = b.op(Op::Shape, &[v[0]], vec![("end", Attr::Int(1))]);
                let zero = i64s(b, &[1], &[0]);
                let u = op(b, Slice, &[v[0], zero, n, zero], vec![]);
                let t = op(b, Slice, &[v[1], zero, n, zero], vec![]);
                b.add(u, t)
            },
        ),
        case(
            "sub_both_broadcast",
            F64,
            vec![x("a", &[2, 1, 3]), x("b", &[4, 1])],
            |b, v| b.sub(v[0], v[1]),
        ),
        case(
            "mul_broadcast",
            F64,
            vec![x("a", &[2, 3]), x("b", &[1, 3])],
            |b, v| b.mul(v[0], v[1]),
        ),
        case(
            "mul_rank1_rank0",
            F64,
            vec![x("a", &[3]), x("b", &[])],
            |b, v| b.mul(v[0], v[1]),
        ),
        case("mul_same_value", F64, vec![x("a", &[2, 3])], |b, v| {
            b.mul(v[0], v[0])
        }),
        case(
            "div_sym",
            F64,
            vec![x("a", &[2, 3]).sym(), pos("b", &[3])],
            |b, v| b.div(v[0], v[1]),
        ),
        case("neg", F64, vec![x("a", &[2, 3])], |b, v| b.neg(v[0])),
        case("pow", F64, vec![pos("a", &[2, 3]), x("b", &[3])], |b, v| {
            op(b, Pow, &[v[0], v[1]], vec![])
        }),
        case("pow_const_exponent", F64, vec![x("a", &[2, 3])], |b, v| {
            let e = b.scalar(F64, 3.0);
            op(b, Pow, &[v[0], e], vec![])
        }),
        case("sqrt", F64, vec![pos("a", &[2, 3])], |b, v| {
            b.unary(Sqrt, v[0])
        }),
        case("exp", F64, vec![x("a", &[2, 3])], |b, v| b.unary(Exp, v[0])),
        case("log", F64, vec![pos("a", &[2, 3])], |b, v| {
            b.unary(Log, v[0])
        }),
        case("reciprocal", F64, vec![pos("a", &[2, 3])], |b, v| {
            b.unary(Reciprocal, v[0])
        }),
        case("abs", F64, vec![away("a", &[2, 3])], |b, v| {
            b.unary(Abs, v[0])
        }),
        case("sin", F64, vec![x("a", &[2, 3])], |b, v| b.unary(Sin, v[0])),
        case("cos", F64, vec![x("a", &[2, 3])], |b, v| b.unary(Cos, v[0])),
        case(
            "max_broadcast",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3])],
            |b, v| op(b, Max, &[v[0], v[1]], vec![]),
        ),
        case(
            "min_variadic",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3]), x("c", &[1, 1])],
            |b, v| op(b, Min, &[v[0], v[1], v[2]], vec![]),
        ),
        case(
            "sum_variadic",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3]), x("c", &[])],
            |b, v| op(b, Sum, &[v[0], v[1], v[2]], vec![]),
        ),
        case(
            "mean_variadic",
            F32,
            vec![x("a", &[2, 3]), x("b", &[2, 1])],
            |b, v| op(b, Mean, &[v[0], v[1]], vec![]),
        ),
        case("clip", F64, vec![x("a", &[3, 4])], |b, v| {
            let lo = b.scalar(F64, -0.5);
            let hi = b.scalar(F64, 0.5);
            op(b, Clip, &[v[0], lo, hi], vec![])
        }),
        case("clip_min_only", F64, vec![x("a", &[3, 4])], |b, v| {
            let lo = b.scalar(F64, -0.5);
            opt(b, Clip, &[Some(v[0]), Some(lo)], vec![])
        }),
        case(
            "where_broadcast",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3])],
            |b, v| {
                let c = b.constant(Tensor::from_bool(
                    &[2, 3],
                    &[true, false, true, false, false, true],
                ));
                b.where_(c, v[0], v[1])
            },
        ),
        case("identity", F64, vec![x("a", &[2, 3])], |b, v| {
            b.unary(Identity, v[0])
        }),
        case("cast_f32_to_f64", F32, vec![x("a", &[2, 3])], |b, v| {
            b.cast(v[0], F64)
        }),
        case("castlike_f32_to_f64", F32, vec![x("a", &[2, 3])], |b, v| {
            let like = b.scalar(F64, 0.0);
            op(b, CastLike, &[v[0], like], vec![])
        }),
        case("dropout_inference", F64, vec![x("a", &[2, 3])], |b, v| {
            b.unary(Dropout, v[0])
        }),
        // ---- activations ----
        case("relu", F64, vec![away("a", &[2, 3])], |b, v| {
            b.unary(Relu, v[0])
        }),
        case("leaky_relu", F64, vec![away("a", &[2, 3])], |b, v| {
            op(b, LeakyRelu, &[v[0]], vec![("alpha", Attr::Float(0.1))])
        }),
        case(
            "prelu",
            F64,
            vec![away("a", &[2, 3, 4]), x("slope", &[3, 1])],
            |b, v| op(b, PRelu, &[v[0], v[1]], vec![]),
        ),
        case("elu", F32, vec![away("a", &[2, 3])], |b, v| {
            op(b, Elu, &[v[0]], vec![("alpha", Attr::Float(0.7))])
        }),
        case("selu", F32, vec![away("a", &[2, 3])], |b, v| {
            b.unary(Selu, v[0])
        }),
        case("celu_alpha", F32, vec![away("a", &[2, 3])], |b, v| {
            op(b, Celu, &[v[0]], vec![("alpha", Attr::Float(0.7))])
        }),
        case("softsign", F32, vec![away("a", &[2, 3])], |b, v| {
            b.unary(Softsign, v[0])
        }),
        at_opset(
            case("mish", F32, vec![x("a", &[2, 3])], |b, v| {
                b.unary(Mish, v[0])
            }),
            18,
        ),
        case("sigmoid", F64, vec![x("a", &[2, 3])], |b, v| {
            b.unary(Sigmoid, v[0])
        }),
        case("hard_sigmoid", F32, vec![x("a", &[3, 4])], |b, v| {
            let k = b.scalar(F32, 2.0);
            let y = b.mul(v[0], k);
            op(
                b,
                HardSigmoid,
                &[y],
                vec![("alpha", Attr::Float(0.3)), ("beta", Attr::Float(0.4))],
            )
        }),
        case("hard_swish", F32, vec![x("a", &[3, 4])], |b, v| {
            let k = b.scalar(F32, 2.5);
            let y = b.mul(v[0], k);
            b.unary(HardSwish, y)
        }),
        case("tanh", F64, vec![x("a", &[2, 3])], |b, v| {
            b.unary(Tanh, v[0])
        }),
        case("softplus", F32, vec![x("a", &[2, 3])], |b, v| {
            b.unary(Softplus, v[0])
        }),
        case("erf", F32, vec![x("a", &[2, 3])], |b, v| b.unary(Erf, v[0])),
        at_opset(
            case("gelu", F32, vec![x("a", &[2, 3])], |b, v| {
                b.unary(Gelu, v[0])
            }),
            20,
        ),
        at_opset(
            case("gelu_tanh", F64, vec![x("a", &[2, 3])], |b, v| {
                op(b, Gelu, &[v[0]], vec![("approximate", s("tanh"))])
            }),
            20,
        ),
        case(
            "softmax_last",
            F64,
            vec![x("a", &[2, 3, 4]).sym()],
            |b, v| op(b, Softmax, &[v[0]], vec![("axis", Attr::Int(-1))]),
        ),
        case("softmax_axis1", F64, vec![x("a", &[2, 3, 4])], |b, v| {
            op(b, Softmax, &[v[0]], vec![("axis", Attr::Int(1))])
        }),
        case("log_softmax", F64, vec![x("a", &[2, 5])], |b, v| {
            op(b, LogSoftmax, &[v[0]], vec![("axis", Attr::Int(-1))])
        }),
        // ---- matrix products ----
        case(
            "matmul_2d",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3, 4])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "matmul_batched_weight_sym",
            F64,
            vec![x("a", &[2, 3, 4]).sym(), x("w", &[4, 5])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "matmul_broadcast_batch",
            F64,
            vec![x("a", &[1, 2, 3]), x("b", &[4, 3, 2])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "matmul_vec_left",
            F64,
            vec![x("a", &[3]), x("b", &[2, 3, 4])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "matmul_vec_right",
            F64,
            vec![x("a", &[2, 3, 4]), x("b", &[4])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "matmul_dot",
            F64,
            vec![x("a", &[4]), x("b", &[4])],
            |b, v| b.matmul(v[0], v[1]),
        ),
        case(
            "gemm_nn_bias",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3, 4]), x("c", &[4])],
            |b, v| op(b, Gemm, &[v[0], v[1], v[2]], vec![]),
        ),
        case(
            "gemm_tn_alpha_beta",
            F64,
            vec![x("a", &[3, 2]), x("b", &[3, 4]), x("c", &[1, 4])],
            |b, v| {
                op(
                    b,
                    Gemm,
                    &[v[0], v[1], v[2]],
                    vec![
                        ("transA", Attr::Int(1)),
                        ("alpha", Attr::Float(0.7)),
                        ("beta", Attr::Float(1.3)),
                    ],
                )
            },
        ),
        case(
            "gemm_nt_sym",
            F64,
            vec![x("a", &[2, 3]).sym(), x("b", &[4, 3]), x("c", &[4])],
            |b, v| op(b, Gemm, &[v[0], v[1], v[2]], vec![("transB", Attr::Int(1))]),
        ),
        case(
            "gemm_tt_scalar_c",
            F64,
            vec![x("a", &[3, 2]), x("b", &[4, 3]), x("c", &[])],
            |b, v| {
                op(
                    b,
                    Gemm,
                    &[v[0], v[1], v[2]],
                    vec![("transA", Attr::Int(1)), ("transB", Attr::Int(1))],
                )
            },
        ),
        case(
            "gemm_no_c",
            F64,
            vec![x("a", &[2, 3]), x("b", &[3, 4])],
            |b, v| op(b, Gemm, &[v[0], v[1]], vec![("alpha", Attr::Float(2.0))]),
        ),
        case(
            "einsum_batched_matmul_sym",
            F64,
            vec![x("a", &[2, 3, 4]).sym(), x("b", &[2, 4, 5]).sym()],
            |b, v| einsum(b, "bij,bjk->bik", &[v[0], v[1]]),
        ),
        case(
            "einsum_own_axis_and_broadcast",
            F64,
            // 'k' is summed inside operand 0 alone; operand 1 broadcasts along 'b'
            vec![x("a", &[2, 3, 4]), x("w", &[1, 3, 5])],
            |b, v| einsum(b, "bik,bil->bl", &[v[0], v[1]]),
        ),
        case(
            "einsum_ellipsis_implicit",
            F64,
            vec![x("a", &[2, 3, 4]), x("w", &[5, 4])],
            |b, v| einsum(b, "...k,jk", &[v[0], v[1]]),
        ),
        case(
            "einsum_three_operands",
            F64,
            vec![x("x", &[3, 2]), x("w", &[3, 2, 2, 4]), x("g", &[3, 2])],
            |b, v| einsum(b, "bd,bkde,bk->be", &[v[0], v[1], v[2]]),
        ),
        case(
            "einsum_unpack_heads",
            F32,
            vec![x("x", &[2, 3, 4]), x("w", &[3, 2, 4, 2])],
            |b, v| einsum(b, "bnd,thde->tbhne", &[v[0], v[1]]),
        ),
        // ---- convolution and pooling ----
        case(
            "conv2d_stride_pad_dilation_sym",
            F32,
            vec![
                x("x", &[2, 3, 7, 6]).sym(),
                x("w", &[4, 3, 3, 2]),
                x("b", &[4]),
            ],
            |b, v| {
                op(
                    b,
                    Conv,
                    &[v[0], v[1], v[2]],
                    vec![
                        ("strides", ints_attr(&[2, 1])),
                        ("pads", ints_attr(&[1, 0, 0, 1])),
                        ("dilations", ints_attr(&[1, 2])),
                    ],
                )
            },
        ),
        case(
            "conv2d_groups",
            F32,
            vec![x("x", &[1, 4, 5, 5]), x("w", &[6, 2, 3, 3])],
            |b, v| {
                op(
                    b,
                    Conv,
                    &[v[0], v[1]],
                    vec![("group", Attr::Int(2)), ("pads", ints_attr(&[1, 1, 1, 1]))],
                )
            },
        ),
        case(
            "conv1d_same_upper",
            F32,
            vec![x("x", &[2, 2, 7]), x("w", &[3, 2, 3])],
            |b, v| {
                op(
                    b,
                    Conv,
                    &[v[0], v[1]],
                    vec![("auto_pad", s("SAME_UPPER")), ("strides", ints_attr(&[2]))],
                )
            },
        ),
        case(
            "conv_transpose",
            F32,
            vec![x("x", &[1, 4, 3, 3]), x("w", &[4, 3, 3, 3]), x("b", &[3])],
            |b, v| {
                op(
                    b,
                    ConvTranspose,
                    &[v[0], v[1], v[2]],
                    vec![
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 1, 0, 0])),
                        ("output_padding", ints_attr(&[1, 0])),
                    ],
                )
            },
        ),
        case(
            "conv_transpose_groups",
            F32,
            vec![x("x", &[2, 4, 3, 3]), x("w", &[4, 1, 2, 2])],
            |b, v| {
                op(
                    b,
                    ConvTranspose,
                    &[v[0], v[1]],
                    vec![("group", Attr::Int(2)), ("strides", ints_attr(&[2, 2]))],
                )
            },
        ),
        case(
            "max_pool_overlapping",
            F64,
            vec![x("x", &[2, 2, 6, 5])],
            |b, v| {
                op(
                    b,
                    MaxPool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[3, 3])),
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 1, 1, 1])),
                    ],
                )
            },
        ),
        case(
            "max_pool_1d_sym",
            F64,
            vec![x("x", &[2, 3, 8]).sym()],
            |b, v| {
                op(
                    b,
                    MaxPool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[2])),
                        ("strides", ints_attr(&[2])),
                    ],
                )
            },
        ),
        case(
            "average_pool_exclude_pad",
            F32,
            vec![x("x", &[1, 2, 5, 5])],
            |b, v| {
                op(
                    b,
                    AveragePool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[3, 3])),
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 1, 1, 1])),
                    ],
                )
            },
        ),
        case(
            "average_pool_include_pad",
            F32,
            vec![x("x", &[1, 2, 5, 5])],
            |b, v| {
                op(
                    b,
                    AveragePool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[3, 3])),
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 1, 1, 1])),
                        ("count_include_pad", Attr::Int(1)),
                    ],
                )
            },
        ),
        case(
            "average_pool_ceil_exclude_pad",
            F32,
            vec![x("x", &[1, 2, 6, 5])],
            |b, v| {
                op(
                    b,
                    AveragePool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[3, 2])),
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 0, 1, 0])),
                        ("ceil_mode", Attr::Int(1)),
                    ],
                )
            },
        ),
        case(
            "average_pool_ceil_include_pad_sym",
            F32,
            vec![x("x", &[2, 2, 6, 5]).sym()],
            |b, v| {
                op(
                    b,
                    AveragePool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[3, 3])),
                        ("strides", ints_attr(&[2, 2])),
                        ("pads", ints_attr(&[1, 1, 1, 1])),
                        ("count_include_pad", Attr::Int(1)),
                        ("ceil_mode", Attr::Int(1)),
                    ],
                )
            },
        ),
        case(
            "average_pool_plain_sym",
            F32,
            vec![x("x", &[2, 2, 4, 6]).sym()],
            |b, v| {
                op(
                    b,
                    AveragePool,
                    &[v[0]],
                    vec![
                        ("kernel_shape", ints_attr(&[2, 3])),
                        ("strides", ints_attr(&[2, 3])),
                    ],
                )
            },
        ),
        case(
            "global_average_pool_sym",
            F32,
            vec![x("x", &[2, 3, 4, 5]).sym()],
            |b, v| b.unary(GlobalAveragePool, v[0]),
        ),
        case(
            "global_max_pool",
            F32,
            vec![x("x", &[2, 3, 4, 5])],
            |b, v| b.unary(GlobalMaxPool, v[0]),
        ),
        // ---- normalization ----
        case(
            "layer_norm_last_sym",
            F64,
            vec![x("x", &[2, 3, 5]).sym(), x("scale", &[5]), x("bias", &[5])],
            |b, v| {
                op(
                    b,
                    LayerNormalization,
                    &[v[0], v[1], v[2]],
                    vec![("axis", Attr::Int(-1))],
                )
            },
        ),
        case(
            "layer_norm_axis1_no_bias",
            F64,
            vec![x("x", &[2, 3, 4]), x("scale", &[3, 4])],
            |b, v| {
                op(
                    b,
                    LayerNormalization,
                    &[v[0], v[1]],
                    vec![("axis", Attr::Int(1)), ("epsilon", Attr::Float(1e-3))],
                )
            },
        ),
        case(
            "batch_norm_inference",
            F64,
            vec![x("x", &[2, 3, 4, 4]), x("scale", &[3]), x("bias", &[3])],
            |b, v| {
                let mean = consts(b, v[0], &[3], &[0.1, -0.2, 0.3]);
                let var = consts(b, v[0], &[3], &[0.5, 1.5, 2.0]);
                op(
                    b,
                    BatchNormalization,
                    &[v[0], v[1], v[2], mean, var],
                    vec![],
                )
            },
        ),
        // the test loss of a normalized output hardly depends on the input: the outputs are
        // weighted along the normalized axes (`ramp`) so the input gradient is not tiny
        case(
            "instance_norm",
            F32,
            vec![x("x", &[2, 3, 4, 5]), x("scale", &[3]), x("bias", &[3])],
            |b, v| {
                let y = op(
                    b,
                    InstanceNormalization,
                    &[v[0], v[1], v[2]],
                    vec![("epsilon", Attr::Float(1e-3))],
                );
                ramp(b, y, &[4, 5])
            },
        ),
        case(
            "instance_norm_1d_sym",
            F32,
            vec![x("x", &[2, 3, 6]).sym(), x("scale", &[3]), x("bias", &[3])],
            |b, v| {
                let y = op(b, InstanceNormalization, &[v[0], v[1], v[2]], vec![]);
                ramp(b, y, &[6])
            },
        ),
        at_opset(
            case(
                "group_norm_per_group",
                F64,
                vec![x("x", &[2, 6, 3, 2]), x("scale", &[3]), x("bias", &[3])],
                |b, v| {
                    let y = op(
                        b,
                        GroupNormalization,
                        &[v[0], v[1], v[2]],
                        vec![("num_groups", Attr::Int(3))],
                    );
                    ramp(b, y, &[6, 3, 2])
                },
            ),
            18,
        ),
        at_opset(
            case(
                // stash_type: the statistics in float32 whatever the input type
                "group_norm_per_channel_sym",
                F32,
                vec![x("x", &[2, 4, 5]).sym(), x("scale", &[4]), x("bias", &[4])],
                |b, v| {
                    let y = op(
                        b,
                        GroupNormalization,
                        &[v[0], v[1], v[2]],
                        vec![("num_groups", Attr::Int(2)), ("epsilon", Attr::Float(1e-3))],
                    );
                    ramp(b, y, &[4, 5])
                },
            ),
            21,
        ),
        // ---- reductions ----
        case("reduce_sum_axis1", F64, vec![x("x", &[2, 3, 4])], |b, v| {
            b.reduce_sum(v[0], &[1], false)
        }),
        case(
            "reduce_sum_all_keepdims",
            F64,
            vec![x("x", &[2, 3])],
            |b, v| op(b, ReduceSum, &[v[0]], vec![("keepdims", Attr::Int(1))]),
        ),
        case(
            "reduce_mean_sym",
            F64,
            vec![x("x", &[2, 3, 4]).sym()],
            |b, v| b.reduce_mean(v[0], &[0, 2], false),
        ),
        at_opset(
            case("reduce_sum_square", F64, vec![x("x", &[2, 3])], |b, v| {
                let a = i64s(b, &[1], &[-1]);
                op(b, ReduceSumSquare, &[v[0], a], vec![])
            }),
            18,
        ),
        at_opset(
            case("reduce_l1", F64, vec![away("x", &[2, 3])], |b, v| {
                let a = i64s(b, &[1], &[1]);
                op(b, ReduceL1, &[v[0], a], vec![("keepdims", Attr::Int(0))])
            }),
            18,
        ),
        at_opset(
            case("reduce_l2", F64, vec![x("x", &[2, 3])], |b, v| {
                let a = i64s(b, &[1], &[0]);
                op(b, ReduceL2, &[v[0], a], vec![])
            }),
            18,
        ),
        case("reduce_max", F64, vec![x("x", &[2, 3, 4])], |b, v| {
            b.reduce_max(v[0], &[-1], false)
        }),
        at_opset(
            case("reduce_min", F64, vec![x("x", &[3, 4])], |b, v| {
                let a = i64s(b, &[1], &[0]);
                op(b, ReduceMin, &[v[0], a], vec![])
            }),
            18,
        ),
        at_opset(
            case(
                "reduce_log_sum_exp",
                F64,
                vec![x("x", &[2, 3, 4])],
                |b, v| {
                    let a = i64s(b, &[1], &[1]);
                    op(
                        b,
                        ReduceLogSumExp,
                        &[v[0], a],
                        vec![("keepdims", Attr::Int(0))],
                    )
                },
            ),
            18,
        ),
        // ---- shape and data movement ----
        case(
            "reshape_sym",
            F64,
            vec![x("x", &[2, 3, 4]).sym()],
            |b, v| {
                let sh = i64s(b, &[2], &[0, -1]);
                b.reshape(v[0], sh)
            },
        ),
        case("flatten_axis2", F64, vec![x("x", &[2, 3, 4])], |b, v| {
            op(b, Flatten, &[v[0]], vec![("axis", Attr::Int(2))])
        }),
        case("squeeze", F64, vec![x("x", &[2, 1, 3])], |b, v| {
            b.squeeze(v[0], &[1])
        }),
        case("unsqueeze_rank0", F64, vec![x("x", &[])], |b, v| {
            b.unsqueeze(v[0], &[0, 1])
        }),
        case("transpose", F64, vec![x("x", &[2, 3, 4])], |b, v| {
            b.transpose(v[0], &[2, 0, 1])
        }),
        case("expand", F64, vec![x("x", &[3, 1])], |b, v| {
            let sh = i64s(b, &[3], &[2, 3, 4]);
            b.expand(v[0], sh)
        }),
        case("tile", F64, vec![x("x", &[2, 3])], |b, v| {
            let r = i64s(b, &[2], &[2, 3]);
            op(b, Tile, &[v[0], r], vec![])
        }),
        case("pad_reflect", F64, vec![x("x", &[2, 3, 4])], |b, v| {
            let p = i64s(b, &[6], &[0, 1, 2, 0, 2, 1]);
            op(b, Pad, &[v[0], p], vec![("mode", s("reflect"))])
        }),
        case(
            "pad_edge_sym",
            F64,
            vec![x("x", &[2, 3, 4]).sym()],
            |b, v| {
                let p = i64s(b, &[6], &[0, 2, 1, 0, 0, 3]);
                op(b, Pad, &[v[0], p], vec![("mode", s("edge"))])
            },
        ),
        at_opset(
            case("pad_wrap_axes", F64, vec![x("x", &[3, 4])], |b, v| {
                let p = i64s(b, &[2], &[2, 3]);
                let ax = i64s(b, &[1], &[-1]);
                opt(
                    b,
                    Pad,
                    &[Some(v[0]), Some(p), None, Some(ax)],
                    vec![("mode", s("wrap"))],
                )
            }),
            19,
        ),
        case("pad_constant", F64, vec![x("x", &[2, 3])], |b, v| {
            let p = i64s(b, &[4], &[1, 0, 2, 1]);
            let c = b.scalar(F64, 0.5);
            op(b, Pad, &[v[0], p, c], vec![])
        }),
        at_opset(
            case(
                "pad_axes_negative",
                F64,
                vec![x("x", &[2, 3, 5])],
                |b, v| {
                    let p = i64s(b, &[2], &[2, -1]);
                    let ax = i64s(b, &[1], &[2]);
                    opt(b, Pad, &[Some(v[0]), Some(p), None, Some(ax)], vec![])
                },
            ),
            18,
        ),
        case(
            "concat_sym",
            F64,
            vec![
                x("a", &[2, 3]).sym(),
                x("b", &[2, 1]).sym(),
                x("c", &[2, 2]).sym(),
            ],
            |b, v| op(b, Concat, &[v[0], v[1], v[2]], vec![("axis", Attr::Int(1))]),
        ),
        case("split_unused_output", F64, vec![x("x", &[2, 6])], |b, v| {
            let sp = i64s(b, &[3], &[2, 2, 2]);
            let (_, outs) = b.node(
                Split,
                &[Some(v[0]), Some(sp)],
                3,
                vec![("axis", Attr::Int(1))],
            );
            b.add(outs[0], outs[2])
        }),
        case("slice_unit_steps", F64, vec![x("x", &[4, 5])], |b, v| {
            let st = i64s(b, &[2], &[1, -3]);
            let en = i64s(b, &[2], &[3, 100]);
            let ax = i64s(b, &[2], &[0, 1]);
            op(b, Slice, &[v[0], st, en, ax], vec![])
        }),
        case("slice_step2", F64, vec![x("x", &[4, 7])], |b, v| {
            let st = i64s(b, &[1], &[0]);
            let en = i64s(b, &[1], &[7]);
            let ax = i64s(b, &[1], &[1]);
            let sp = i64s(b, &[1], &[2]);
            op(b, Slice, &[v[0], st, en, ax, sp], vec![])
        }),
        case("slice_negative_step", F64, vec![x("x", &[5, 3])], |b, v| {
            let st = i64s(b, &[1], &[-1]);
            let en = i64s(b, &[1], &[-100]);
            let ax = i64s(b, &[1], &[0]);
            let sp = i64s(b, &[1], &[-2]);
            op(b, Slice, &[v[0], st, en, ax, sp], vec![])
        }),
        case(
            "slice_symbolic_axis",
            F64,
            vec![x("x", &[3, 4]).sym()],
            |b, v| {
                let st = i64s(b, &[1], &[1]);
                let en = i64s(b, &[1], &[3]);
                let ax = i64s(b, &[1], &[0]);
                op(b, Slice, &[v[0], st, en, ax], vec![])
            },
        ),
        case("trilu_upper_k1", F64, vec![x("x", &[3, 4])], |b, v| {
            let k = i64s(b, &[], &[1]);
            op(b, Trilu, &[v[0], k], vec![])
        }),
        case("trilu_lower", F64, vec![x("x", &[2, 3, 3])], |b, v| {
            op(b, Trilu, &[v[0]], vec![("upper", Attr::Int(0))])
        }),
        case("cumsum", F64, vec![x("x", &[2, 4])], |b, v| {
            let a = i64s(b, &[], &[1]);
            op(b, CumSum, &[v[0], a], vec![])
        }),
        case(
            "cumsum_reverse_exclusive",
            F64,
            vec![x("x", &[3, 2])],
            |b, v| {
                let a = i64s(b, &[], &[0]);
                op(
                    b,
                    CumSum,
                    &[v[0], a],
                    vec![("reverse", Attr::Int(1)), ("exclusive", Attr::Int(1))],
                )
            },
        ),
        // ---- resampling ----
        case(
            "resize_nearest_asymmetric_floor",
            F32,
            vec![x("x", &[2, 2, 3, 4]).sym()],
            |b, v| {
                resize(
                    b,
                    v[0],
                    &[1.0, 1.0, 2.0, 2.0],
                    &[
                        ("mode", "nearest"),
                        ("coordinate_transformation_mode", "asymmetric"),
                        ("nearest_mode", "floor"),
                    ],
                )
            },
        ),
        case(
            "resize_linear_half_pixel_fractional",
            F32,
            vec![x("x", &[2, 2, 3, 4])],
            |b, v| resize(b, v[0], &[1.0, 1.0, 2.0, 1.5], &[("mode", "linear")]),
        ),
        case(
            "resize_linear_downscale",
            F32,
            vec![x("x", &[1, 2, 6, 5])],
            |b, v| resize(b, v[0], &[1.0, 1.0, 0.5, 0.6], &[("mode", "linear")]),
        ),
        case(
            "resize_linear_align_corners_sizes",
            F32,
            vec![x("x", &[2, 2, 3, 4])],
            |b, v| {
                let sizes = i64s(b, &[4], &[2, 2, 5, 7]);
                opt(
                    b,
                    Resize,
                    &[Some(v[0]), None, None, Some(sizes)],
                    vec![
                        ("mode", s("linear")),
                        ("coordinate_transformation_mode", s("align_corners")),
                    ],
                )
            },
        ),
        case(
            "resize_cubic_pytorch_half_pixel",
            F32,
            vec![x("x", &[1, 2, 4, 5])],
            |b, v| {
                resize(
                    b,
                    v[0],
                    &[1.0, 1.0, 2.0, 2.0],
                    &[
                        ("mode", "cubic"),
                        ("coordinate_transformation_mode", "pytorch_half_pixel"),
                    ],
                )
            },
        ),
        case(
            "resize_cubic_exclude_outside",
            F32,
            vec![x("x", &[1, 1, 4, 5])],
            |b, v| {
                let mut attrs = vec![("mode", s("cubic")), ("exclude_outside", Attr::Int(1))];
                attrs.push(("cubic_coeff_a", Attr::Float(-0.5)));
                let sc = consts(b, v[0], &[4], &[1.0, 1.0, 1.5, 0.8]);
                opt(b, Resize, &[Some(v[0]), None, Some(sc)], attrs)
            },
        ),
        at_opset(
            case(
                "resize_nearest_axes_sizes_sym",
                F32,
                vec![x("x", &[2, 3, 5]).sym()],
                |b, v| {
                    let sizes = i64s(b, &[1], &[8]);
                    opt(
                        b,
                        Resize,
                        &[Some(v[0]), None, None, Some(sizes)],
                        vec![
                            ("axes", ints_attr(&[-1])),
                            ("nearest_mode", s("round_prefer_ceil")),
                        ],
                    )
                },
            ),
            18,
        ),
        case(
            "depth_to_space_dcr",
            F64,
            vec![x("x", &[2, 8, 2, 3]).sym()],
            |b, v| op(b, DepthToSpace, &[v[0]], vec![("blocksize", Attr::Int(2))]),
        ),
        case(
            "depth_to_space_crd",
            F64,
            vec![x("x", &[1, 8, 3, 2])],
            |b, v| {
                let attrs = vec![("blocksize", Attr::Int(2)), ("mode", s("CRD"))];
                op(b, DepthToSpace, &[v[0]], attrs)
            },
        ),
        case(
            "space_to_depth",
            F64,
            vec![x("x", &[2, 2, 4, 6])],
            |b, v| op(b, SpaceToDepth, &[v[0]], vec![("blocksize", Attr::Int(2))]),
        ),
        // ---- indexing ----
        case(
            "gather_embedding_repeats",
            F64,
            vec![x("w", &[5, 3]), ints("ids", &[3, 2], &[0, 2, 2, 4, 0, 0])],
            |b, v| op(b, Gather, &[v[0], v[1]], vec![]),
        ),
        case(
            "gather_axis1_negative",
            F64,
            vec![x("x", &[2, 4, 3])],
            |b, v| {
                let i = i64s(b, &[2, 2], &[-1, 0, 1, 1]);
                op(b, Gather, &[v[0], i], vec![("axis", Attr::Int(1))])
            },
        ),
        case(
            "gather_scalar_index",
            F64,
            vec![x("x", &[3, 4]).sym()],
            |b, v| {
                let i = i64s(b, &[], &[2]);
                op(b, Gather, &[v[0], i], vec![("axis", Attr::Int(1))])
            },
        ),
        case("gather_elements", F64, vec![x("x", &[3, 4])], |b, v| {
            let i = i64s(b, &[3, 2], &[0, 0, 3, 1, -1, 2]);
            op(b, GatherElements, &[v[0], i], vec![("axis", Attr::Int(1))])
        }),
        case("gather_nd", F64, vec![x("x", &[3, 4, 2])], |b, v| {
            let i = i64s(b, &[3, 2], &[0, 1, 2, 3, 0, 1]);
            op(b, GatherND, &[v[0], i], vec![])
        }),
        case("topk_last_axis", F64, vec![x("x", &[3, 5])], |b, v| {
            let k = i64s(b, &[1], &[2]);
            b.node(Op::TopK, &[Some(v[0]), Some(k)], 2, vec![]).1[0]
        }),
        case(
            "topk_smallest_axis0_sym",
            F64,
            vec![x("x", &[4, 3]).sym()],
            |b, v| {
                let k = i64s(b, &[1], &[3]);
                let attrs = vec![("axis", Attr::Int(0)), ("largest", Attr::Int(0))];
                b.node(Op::TopK, &[Some(v[0]), Some(k)], 2, attrs).1[0]
            },
        ),
        case(
            "scatter_elements_overwrite",
            F64,
            vec![x("data", &[3, 4]), x("upd", &[3, 2])],
            |b, v| {
                let i = i64s(b, &[3, 2], &[0, 3, 1, -1, 2, 0]);
                let axis = vec![("axis", Attr::Int(1))];
                op(b, ScatterElements, &[v[0], i, v[1]], axis)
            },
        ),
        case(
            "scatter_elements_add_repeats",
            F64,
            vec![x("data", &[4, 2]), x("upd", &[3, 2])],
            |b, v| {
                let i = i64s(b, &[3, 2], &[1, 0, 1, 3, 2, 0]);
                op(
                    b,
                    ScatterElements,
                    &[v[0], i, v[1]],
                    vec![("reduction", s("add"))],
                )
            },
        ),
        case(
            "scatter_nd_overwrite_rows",
            F64,
            vec![x("data", &[4, 3]), x("upd", &[2, 3])],
            |b, v| {
                let i = i64s(b, &[2, 1], &[2, 0]);
                op(b, ScatterND, &[v[0], i, v[1]], vec![])
            },
        ),
        case(
            "scatter_nd_add_elements",
            F64,
            vec![x("data", &[3, 2]), x("upd", &[3])],
            |b, v| {
                let i = i64s(b, &[3, 2], &[0, 1, 2, 0, 0, 1]);
                op(
                    b,
                    ScatterND,
                    &[v[0], i, v[1]],
                    vec![("reduction", s("add"))],
                )
            },
        ),
        // ---- losses ----
        case(
            "softmax_cross_entropy_ignore",
            F64,
            vec![x("s", &[4, 5]), ints("y", &[4], &[1, -100, 3, 3])],
            |b, v| {
                op(
                    b,
                    SoftmaxCrossEntropyLoss,
                    &[v[0], v[1]],
                    vec![("ignore_index", Attr::Int(-100))],
                )
            },
        ),
        case(
            "softmax_cross_entropy_weights",
            F64,
            vec![x("s", &[4, 5]), ints("y", &[4], &[1, 0, 3, 4])],
            |b, v| {
                let w = consts(b, v[0], &[5], &[0.5, 1.0, 2.0, 1.5, 0.25]);
                op(b, SoftmaxCrossEntropyLoss, &[v[0], v[1], w], vec![])
            },
        ),
        case(
            "softmax_cross_entropy_sum_3d",
            F64,
            vec![
                x("s", &[2, 4, 3]),
                ints("y", &[2, 3], &[0, 3, -1, 2, -1, 1]),
            ],
            |b, v| {
                op(
                    b,
                    SoftmaxCrossEntropyLoss,
                    &[v[0], v[1]],
                    vec![("reduction", s("sum")), ("ignore_index", Attr::Int(-1))],
                )
            },
        ),
        case(
            "softmax_cross_entropy_none_log_prob",
            F64,
            vec![x("s", &[3, 4]), ints("y", &[3], &[2, 0, 3])],
            |b, v| {
                let (_, outs) = b.node(
                    SoftmaxCrossEntropyLoss,
                    &[Some(v[0]), Some(v[1])],
                    2,
                    vec![("reduction", s("none"))],
                );
                let lp = b.reduce_sum(outs[1], &[1], false);
                b.add(outs[0], lp)
            },
        ),
        case(
            "nll_mean_ignore",
            F64,
            vec![x("p", &[4, 5]), ints("y", &[4], &[1, -100, 3, 3])],
            |b, v| {
                op(
                    b,
                    NegativeLogLikelihoodLoss,
                    &[v[0], v[1]],
                    vec![("ignore_index", Attr::Int(-100))],
                )
            },
        ),
        case(
            "nll_weights_none_3d",
            F64,
            vec![x("p", &[2, 3, 2]), ints("y", &[2, 2], &[0, 2, 1, 1])],
            |b, v| {
                let w = consts(b, v[0], &[3], &[0.5, 2.0, 1.5]);
                op(
                    b,
                    NegativeLogLikelihoodLoss,
                    &[v[0], v[1], w],
                    vec![("reduction", s("none"))],
                )
            },
        ),
    ]
}

/// What one case found.
struct Outcome {
    ops: HashSet<Op>,
    worst: f64,
}

fn check(c: &Case) -> Result<Outcome, String> {
    let mut g = Graph::new(c.name);
    let ins: Vec<ValueId> = c
        .ins
        .iter()
        .map(|i| {
            let dt = match i.data {
                Data::Ints(_) => DType::I64,
                Data::Float { .. } => c.dtype,
            };
            input(&mut g, i.name, dt, &i.dims, i.sym)
        })
        .collect();
    let mut b = Builder::new(&mut g, c.opset, "");
    let y = (c.build)(&mut b, &ins);
    let ops: HashSet<Op> =
        b.g.order()
            .iter()
            .map(|&n| b.g.node(n).op.clone())
            .collect();
    let y64 = if b.dtype(y) == F64 { y } else { b.cast(y, F64) };
    let k = b.scalar(F64, 0.37);
    let half = b.scalar(F64, 0.5);
    let t = b.mul(y64, k);
    let t = b.add(t, half);
    let t = b.mul(y64, t);
    let loss = b.sum_all(t);
    let wrt: Vec<usize> = (0..c.ins.len())
        .filter(|&i| matches!(c.ins[i].data, Data::Float { .. }))
        .collect();
    let wrt_ids: Vec<ValueId> = wrt.iter().map(|&i| ins[i]).collect();
    let grads = differentiate(&mut g, c.opset, loss, &wrt_ids).map_err(|e| e.to_string())?;
    let mut b = Builder::new(&mut g, c.opset, "out/");
    let outs: Vec<ValueId> = std::iter::once(loss)
        .chain(grads.iter().copied())
        .map(|v| b.unary(Op::Identity, v))
        .collect();
    for (k, &o) in outs.iter().enumerate() {
        let name = if k == 0 {
            "loss".to_string()
        } else {
            format!("grad{}", k - 1)
        };
        assert!(g.rename(o, &name), "output name {name} is free");
    }
    g.outputs = outs;
    gen_passes::ir::verify::verify(&g).map_err(|e| format!("invalid graph: {e}"))?;
    let bytes = to_bytes(&model(g, c.opset));

    let mut rng = Rng::new(
        c.name
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let values: Vec<Vec<f64>> = c
        .ins
        .iter()
        .map(|i| match &i.data {
            Data::Float { lo, hi, gap } => (0..i.dims.iter().product::<usize>())
                .map(|_| loop {
                    let v = lo + (hi - lo) * rng.uniform();
                    if v.abs() >= *gap {
                        break v;
                    }
                })
                .collect(),
            Data::Ints(v) => v.iter().map(|&x| x as f64).collect(),
        })
        .collect();
    let feeds = |vals: &[Vec<f64>]| -> Vec<(String, gen_runtime::HostTensor)> {
        c.ins
            .iter()
            .zip(vals)
            .map(|(i, v)| {
                let t = match i.data {
                    Data::Ints(_) => gen_runtime::HostTensor::from_vec(
                        i.dims.clone(),
                        v.iter().map(|&x| x as i64).collect(),
                    )
                    .expect("int tensor"),
                    Data::Float { .. } => float_tensor(c.dtype, &i.dims, v),
                };
                (i.name.to_string(), t)
            })
            .collect()
    };
    let base = run(&bytes, &feeds(&values))?;
    let (h, tol) = match c.dtype {
        DType::F64 => (1e-5, 1e-6),
        _ => (1e-3, 1e-2),
    };
    let loss_at = |vals: &[Vec<f64>]| -> Result<f64, String> {
        run(&bytes, &feeds(vals))?["loss"]
            .scalar_f64()
            .map_err(|e| e.to_string())
    };
    let mut worst = 0.0f64;
    for (k, &i) in wrt.iter().enumerate() {
        let g = base[&format!("grad{k}")].to_f64_vec().expect("gradient");
        if g.len() != values[i].len() {
            return Err(format!(
                "gradient of '{}' has {} elements, input {}",
                c.ins[i].name,
                g.len(),
                values[i].len()
            ));
        }
        let dir: Vec<f64> = (0..g.len()).map(|_| rng.normal()).collect();
        let shifted = |sign: f64| {
            let mut vals = values.clone();
            for (x, d) in vals[i].iter_mut().zip(&dir) {
                *x += sign * h * d;
            }
            vals
        };
        let fd = (loss_at(&shifted(1.0))? - loss_at(&shifted(-1.0))?) / (2.0 * h);
        let an = dot(&g, &dir);
        let err = (fd - an).abs() / fd.abs().max(an.abs()).max(1e-3);
        worst = worst.max(err);
        if err > tol {
            return Err(format!(
                "input '{}': finite difference {fd:.8e}, gradient {an:.8e} (relative error {err:.2e} > {tol:.0e})",
                c.ins[i].name
            ));
        }
    }
    Ok(Outcome { ops, worst })
}

#[test]
fn every_registered_gradient_matches_finite_differences() {
    require_ort();
    let mut failures = Vec::new();
    let mut covered: HashSet<Op> = HashSet::new();
    for c in cases() {
        match check(&c) {
            Ok(o) => {
                println!(
                    "{:<40} {:?} ok (worst relative error {:.1e})",
                    c.name, c.dtype, o.worst
                );
                covered.extend(o.ops);
            }
            Err(e) => {
                println!("{:<40} {:?} FAILED: {e}", c.name, c.dtype);
                failures.push(format!("{}: {e}", c.name));
            }
        }
    }
    let missing: Vec<String> = registered_ops()
        .into_iter()
        .filter(|o| !covered.contains(o))
        .map(|o| o.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        missing.is_empty(),
        "registered gradients without a passing finite-difference case: {missing:?}"
    );
}
