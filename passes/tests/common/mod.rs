//! Graph-building helpers shared by the pass tests.

use gen_passes::ir::{DType, Dim, Graph, Tensor, TensorType, Type, ValueId};

pub fn input(g: &mut Graph, name: &str, dtype: DType, dims: &[Dim]) -> ValueId {
    g.add_input(
        name,
        Type::Tensor(TensorType::new(dtype, Some(dims.to_vec()))),
    )
}

/// The symbolic batch dimension.
pub fn batch() -> Dim {
    Dim::Sym("batch".into())
}

/// An f32 initializer of shape `dims` whose element `i` is `value(i)`.
pub fn weight_of(g: &mut Graph, name: &str, dims: &[i64], value: fn(usize) -> f32) -> ValueId {
    let n = dims.iter().product::<i64>() as usize;
    let vals: Vec<f32> = (0..n).map(value).collect();
    g.add_initializer(name, Tensor::from_f32(dims, &vals))
}
