//! IR tensors ⇄ `TensorProto`, through gen-format's codec (which owns the checks on sizes,
//! counts and external data).

use super::error::ImportError;
use crate::ir::Tensor;
use gen_format::tensor::Decoded;
use onnx_protobuf::TensorProto;

pub use gen_format::{ExternalPolicy, ExternalWriter};

/// Decodes a TensorProto, reading external data as `ext` allows.
pub fn decode(tp: &TensorProto, ext: &ExternalPolicy<'_>) -> Result<Tensor, ImportError> {
    let Decoded { dtype, dims, data } = gen_format::decode(tp, ext)?;
    Ok(Tensor { dtype, dims, data })
}

/// Encodes a tensor (raw_data for everything but strings).
pub fn encode(t: &Tensor, name: &str) -> TensorProto {
    gen_format::encode(name, t.dtype, t.dims.clone(), t.data.clone())
}
