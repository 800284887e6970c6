//! The gradient registry: one line per operator giving its rule and its stop-gradient inputs
//! (index, shape, mask and label inputs that never carry a gradient). Operators listed in
//! `Op::is_non_differentiable` (comparisons, Shape, Range, random sources, ...) need no line:
//! their outputs never depend differentiably on anything.

use super::cx::{GradCx, GradResult};
use super::{
    activation as act, conv, elementwise as ew, gather, linalg, losses, norm, reduce, resample,
    shape,
};
use crate::ir::Op;

pub(super) type Rule = for<'a, 'b, 'g> fn(&'a mut GradCx<'b, 'g>) -> GradResult;

/// (operator, gradient rule, inputs that never carry a gradient)
static RULES: &[(Op, Rule, &[usize])] = &[
    // elementwise arithmetic (elementwise.rs)
    (Op::Add, ew::add, &[]),
    (Op::Sub, ew::sub, &[]),
    (Op::Mul, ew::mul, &[]),
    (Op::Div, ew::div, &[]),
    (Op::Neg, ew::neg, &[]),
    (Op::Pow, ew::pow, &[]),
    (Op::Sqrt, ew::sqrt, &[]),
    (Op::Exp, ew::exp, &[]),
    (Op::Log, ew::log, &[]),
    (Op::Reciprocal, ew::reciprocal, &[]),
    (Op::Abs, ew::abs, &[]),
    (Op::Sin, ew::sin, &[]),
    (Op::Cos, ew::cos, &[]),
    (Op::Min, ew::min_max, &[]),
    (Op::Max, ew::min_max, &[]),
    (Op::Sum, ew::sum, &[]),
    (Op::Mean, ew::mean, &[]),
    (Op::Clip, ew::clip, &[1, 2]),
    (Op::Where, ew::where_, &[0]),
    (Op::Identity, ew::identity, &[]),
    (Op::Cast, ew::cast, &[]),
    (Op::CastLike, ew::cast_like, &[1]),
    (Op::Dropout, ew::dropout, &[1, 2]),
    // activations (activation.rs)
    (Op::Relu, act::relu, &[]),
    (Op::LeakyRelu, act::leaky_relu, &[]),
    (Op::PRelu, act::prelu, &[]),
    (Op::Elu, act::elu, &[]),
    (Op::Selu, act::selu, &[]),
    (Op::Celu, act::celu, &[]),
    (Op::Softsign, act::softsign, &[]),
    (Op::Mish, act::mish, &[]),
    (Op::Sigmoid, act::sigmoid, &[]),
    (Op::HardSigmoid, act::hard_sigmoid, &[]),
    (Op::HardSwish, act::hard_swish, &[]),
    (Op::Tanh, act::tanh, &[]),
    (Op::Softplus, act::softplus, &[]),
    (Op::Erf, act::erf, &[]),
    (Op::Gelu, act::gelu, &[]),
    (Op::Softmax, act::softmax, &[]),
    (Op::LogSoftmax, act::log_softmax, &[]),
    // matrix products (linalg.rs)
    (Op::MatMul, linalg::matmul, &[]),
    (Op::Gemm, linalg::gemm, &[]),
    (Op::Einsum, linalg::einsum, &[]),
    // convolution and pooling (conv.rs)
    (Op::Conv, conv::conv, &[]),
    (Op::ConvTranspose, conv::conv_transpose, &[]),
    (Op::MaxPool, conv::max_pool, &[]),
    (Op::AveragePool, conv::average_pool, &[]),
    (Op::GlobalAveragePool, conv::global_average_pool, &[]),
    (Op::GlobalMaxPool, conv::global_max_pool, &[]),
    // normalization (norm.rs); running statistics are state, not differentiated
    (Op::LayerNormalization, norm::layer_norm, &[]),
    (Op::BatchNormalization, norm::batch_norm, &[3, 4]),
    (Op::InstanceNormalization, norm::instance_norm, &[]),
    (Op::GroupNormalization, norm::group_norm, &[]),
    // reductions (reduce.rs); the axes input is an index input
    (Op::ReduceSum, reduce::sum, &[1]),
    (Op::ReduceMean, reduce::mean, &[1]),
    (Op::ReduceSumSquare, reduce::sum_square, &[1]),
    (Op::ReduceL1, reduce::l1, &[1]),
    (Op::ReduceL2, reduce::l2, &[1]),
    (Op::ReduceMax, reduce::max_min, &[1]),
    (Op::ReduceMin, reduce::max_min, &[1]),
    (Op::ReduceLogSumExp, reduce::log_sum_exp, &[1]),
    // shape and data movement (shape.rs)
    (Op::Reshape, shape::reshape, &[1]),
    (Op::Flatten, shape::reshape, &[]),
    (Op::Squeeze, shape::reshape, &[1]),
    (Op::Unsqueeze, shape::reshape, &[1]),
    (Op::Transpose, shape::transpose, &[]),
    (Op::Expand, shape::expand, &[1]),
    (Op::Tile, shape::tile, &[1]),
    (Op::Pad, shape::pad, &[1, 2, 3]),
    (Op::Resize, resample::resize, &[1, 2, 3]),
    (Op::Concat, shape::concat, &[]),
    (Op::Split, shape::split, &[1]),
    (Op::Slice, shape::slice, &[1, 2, 3, 4]),
    (Op::Trilu, shape::trilu, &[1]),
    (Op::CumSum, shape::cumsum, &[1]),
    (Op::DepthToSpace, shape::depth_to_space, &[]),
    (Op::SpaceToDepth, shape::space_to_depth, &[]),
    // indexing (gather.rs)
    (Op::Gather, gather::gather, &[1]),
    (Op::GatherElements, gather::gather_elements, &[1]),
    (Op::GatherND, gather::gather_nd, &[1]),
    (Op::TopK, gather::top_k, &[1]),
    (Op::ScatterElements, gather::scatter_elements, &[1]),
    (Op::ScatterND, gather::scatter_nd, &[1]),
    // losses (losses.rs); labels and class weights are data
    (
        Op::SoftmaxCrossEntropyLoss,
        losses::softmax_cross_entropy,
        &[1, 2],
    ),
    (Op::NegativeLogLikelihoodLoss, losses::nll, &[1, 2]),
];

fn entry(op: &Op) -> Option<&'static (Op, Rule, &'static [usize])> {
    RULES.iter().find(|(o, _, _)| o == op)
}

/// The gradient rule of `op`, if it has one.
pub(super) fn rule(op: &Op) -> Option<Rule> {
    entry(op).map(|e| e.1)
}

/// Whether input `i` of `op` is an index/shape/mask input that never carries a gradient.
pub fn is_stop_input(op: &Op, i: usize) -> bool {
    entry(op).is_some_and(|e| e.2.contains(&i))
}

/// Every operator with a gradient rule, in registry order.
pub fn registered_ops() -> Vec<Op> {
    RULES.iter().map(|e| e.0.clone()).collect()
}
