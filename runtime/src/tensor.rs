//! `HostTensor`: a tensor in host memory, of any ONNX element type, independent of ONNX Runtime.
//!
//! Numeric data is kept as little-endian bytes (the layout of ONNX `raw_data`, `.npy` files and the
//! machines we run on), strings as `Vec<String>`. Typed access goes through [`Element`] (f32, f64,
//! the integer types and bool); f16/bf16 values are reachable through [`HostTensor::to_f64_vec`].

use ndarray::{ArrayD, IxDyn};
use ort::memory::Allocator;
use ort::value::{DynTensor, DynTensorValueType, DynValue, Tensor, TensorElementType, ValueType};

use crate::env::Ort;
use crate::error::{ort_err, Result, RuntimeError};

pub use gen_format::DType;

/// The element types the runtime carries (every type ONNX Runtime accepts for model inputs and
/// outputs) and their ONNX Runtime names.
const ORT_TYPES: [(DType, TensorElementType); 14] = [
    (DType::F32, TensorElementType::Float32),
    (DType::F64, TensorElementType::Float64),
    (DType::F16, TensorElementType::Float16),
    (DType::BF16, TensorElementType::Bfloat16),
    (DType::I8, TensorElementType::Int8),
    (DType::I16, TensorElementType::Int16),
    (DType::I32, TensorElementType::Int32),
    (DType::I64, TensorElementType::Int64),
    (DType::U8, TensorElementType::Uint8),
    (DType::U16, TensorElementType::Uint16),
    (DType::U32, TensorElementType::Uint32),
    (DType::U64, TensorElementType::Uint64),
    (DType::Bool, TensorElementType::Bool),
    (DType::String, TensorElementType::String),
];

/// ONNX Runtime's element type for `dtype`; `None` for types the runtime does not carry
/// (complex, 8/4/2-bit floats and integers).
pub(crate) fn to_ort(dtype: DType) -> Option<TensorElementType> {
    ORT_TYPES.iter().find(|(d, _)| *d == dtype).map(|&(_, t)| t)
}

/// The runtime's element type for an ONNX Runtime one.
pub(crate) fn from_ort(ty: TensorElementType) -> Option<DType> {
    ORT_TYPES.iter().find(|(_, t)| *t == ty).map(|&(d, _)| d)
}

/// A Rust element type with a fixed little-endian encoding.
pub trait Element: Copy + 'static {
    const DTYPE: DType;
    fn write_le(self, out: &mut Vec<u8>);
    /// Decodes one element from exactly `size` bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                raw.copy_from_slice(bytes);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
element!(f32 => F32, f64 => F64, i8 => I8, i16 => I16, i32 => I32, i64 => I64,
         u8 => U8, u16 => U16, u32 => U32, u64 => U64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Data {
    Bytes(Vec<u8>),
    Strings(Vec<String>),
}

/// A tensor in host memory: dtype, shape and data (little-endian bytes, or strings).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
}

fn tensor_err(name: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Tensor {
        name: name.to_string(),
        message: message.into(),
    }
}

impl HostTensor {
    /// A numeric tensor from little-endian bytes; the byte count must match dtype and shape.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<HostTensor> {
        if to_ort(dtype).is_none() {
            return Err(tensor_err(
                "",
                format!("element type {dtype} is not supported by the runtime"),
            ));
        }
        let Some(size) = dtype.size() else {
            return Err(tensor_err("", "string tensors are built with from_strings"));
        };
        let expected = numel(&shape) * size;
        if bytes.len() != expected {
            return Err(tensor_err(
                "",
                format!(
                    "{} bytes for a {dtype} tensor of shape {shape:?} (expected {expected})",
                    bytes.len()
                ),
            ));
        }
        Ok(HostTensor {
            dtype,
            shape,
            data: Data::Bytes(bytes),
        })
    }

    /// A string tensor.
    pub fn from_strings(shape: Vec<usize>, strings: Vec<String>) -> Result<HostTensor> {
        if strings.len() != numel(&shape) {
            return Err(tensor_err(
                "",
                format!("{} strings for shape {shape:?}", strings.len()),
            ));
        }
        Ok(HostTensor {
            dtype: DType::String,
            shape,
            data: Data::Strings(strings),
        })
    }

    /// A tensor from typed values in row-major order.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<HostTensor> {
        let mut bytes = Vec::with_capacity(values.len() * T::DTYPE.size().unwrap_or(0));
        for v in values {
            v.write_le(&mut bytes);
        }
        HostTensor::from_bytes(T::DTYPE, shape, bytes)
    }

    /// A rank-0 tensor.
    pub fn scalar<T: Element>(value: T) -> HostTensor {
        let mut bytes = Vec::new();
        value.write_le(&mut bytes);
        HostTensor {
            dtype: T::DTYPE,
            shape: Vec::new(),
            data: Data::Bytes(bytes),
        }
    }

    /// A tensor from an ndarray (any layout; copied in logical row-major order).
    pub fn from_array<T: Element>(array: &ArrayD<T>) -> HostTensor {
        let mut bytes = Vec::with_capacity(array.len() * T::DTYPE.size().unwrap_or(0));
        for v in array.iter() {
            v.write_le(&mut bytes);
        }
        HostTensor {
            dtype: T::DTYPE,
            shape: array.shape().to_vec(),
            data: Data::Bytes(bytes),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The little-endian bytes of a numeric tensor (`None` for strings).
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            Data::Bytes(b) => Some(b),
            Data::Strings(_) => None,
        }
    }

    /// The strings of a string tensor (`None` for numeric tensors).
    pub fn strings(&self) -> Option<&[String]> {
        match &self.data {
            Data::Strings(s) => Some(s),
            Data::Bytes(_) => None,
        }
    }

    /// The values as `T`; the dtype must be exactly `T`'s.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let bytes = self.typed_bytes(T::DTYPE)?;
        let size = T::DTYPE.size().unwrap_or(1);
        Ok(bytes.chunks_exact(size).map(T::read_le).collect())
    }

    /// The values as an ndarray of `T`; the dtype must be exactly `T`'s.
    pub fn to_array<T: Element>(&self) -> Result<ArrayD<T>> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.to_vec()?)
            .map_err(|e| tensor_err("", e.to_string()))
    }

    /// Every element converted to f64 (numeric and bool tensors; f16/bf16 decoded exactly).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let Data::Bytes(bytes) = &self.data else {
            return Err(tensor_err("", "a string tensor has no numeric values"));
        };
        gen_format::le_to_f64(self.dtype, bytes)
            .ok_or_else(|| tensor_err("", format!("{} has no numeric values", self.dtype)))
    }

    /// The single value of a one-element tensor, as f64.
    pub fn scalar_f64(&self) -> Result<f64> {
        match self.to_f64_vec()?.as_slice() {
            [v] => Ok(*v),
            _ => Err(tensor_err(
                "",
                format!("expected one element, found shape {:?}", self.shape),
            )),
        }
    }

    /// Rows `indices` along axis 0, in that order (the batching primitive).
    pub fn select_rows(&self, indices: &[usize]) -> Result<HostTensor> {
        let Some(&rows) = self.shape.first() else {
            return Err(tensor_err("", "a scalar has no rows to select"));
        };
        if let Some(&bad) = indices.iter().find(|&&i| i >= rows) {
            return Err(tensor_err("", format!("row {bad} out of range 0..{rows}")));
        }
        let row_len = numel(&self.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        let data = match &self.data {
            Data::Bytes(b) => {
                let stride = row_len * self.dtype.size().unwrap_or(1);
                let mut out = Vec::with_capacity(stride * indices.len());
                for &i in indices {
                    out.extend_from_slice(&b[i * stride..(i + 1) * stride]);
                }
                Data::Bytes(out)
            }
            Data::Strings(s) => Data::Strings(
                indices
                    .iter()
                    .flat_map(|&i| s[i * row_len..(i + 1) * row_len].iter().cloned())
                    .collect(),
            ),
        };
        Ok(HostTensor {
            dtype: self.dtype,
            shape,
            data,
        })
    }

    /// Copies the tensor into an ONNX Runtime value in CPU memory.
    pub fn to_ort(&self, _ort: &Ort) -> Result<DynValue> {
        let shape: Vec<i64> = self.shape.iter().map(|&d| d as i64).collect();
        match &self.data {
            Data::Strings(s) => Tensor::from_string_array((shape, s.as_slice()))
                .map(|t| t.into_dyn())
                .map_err(ort_err("creating a string tensor")),
            Data::Bytes(bytes) => {
                let ty = to_ort(self.dtype).ok_or_else(|| {
                    tensor_err("", format!("element type {} is not supported", self.dtype))
                })?;
                let mut tensor = DynTensor::new(&Allocator::default(), ty, shape)
                    .map_err(ort_err("allocating a tensor"))?;
                if !bytes.is_empty() {
                    let dst = tensor.data_ptr_mut().cast::<u8>();
                    // SAFETY: `tensor` was just allocated in CPU memory by the default allocator for
                    // `dtype` and `shape`, so it holds exactly numel * size = bytes.len() bytes (checked
                    // when `self` was built); the regions cannot overlap.
                    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
                }
                Ok(tensor.into_dyn())
            }
        }
    }

    /// Copies a tensor value in CPU-accessible memory into a `HostTensor`.
    ///
    /// `name` only labels errors. Values in device memory must be copied to the host first.
    pub fn from_ort(name: &str, value: &DynValue) -> Result<HostTensor> {
        let (ty, shape) = match value.dtype() {
            ValueType::Tensor { ty, shape, .. } => (*ty, shape),
            other => {
                return Err(RuntimeError::NonTensorOutput {
                    name: name.to_string(),
                    kind: describe_value_type(other),
                })
            }
        };
        let dtype = from_ort(ty).ok_or_else(|| {
            tensor_err(
                name,
                format!("element type {ty} is not supported by the runtime"),
            )
        })?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if dtype == DType::String {
            let (_, strings) = value
                .try_extract_strings()
                .map_err(ort_err(format!("reading string tensor {name}")))?;
            return HostTensor::from_strings(shape, strings);
        }
        let tensor = value
            .view()
            .downcast::<DynTensorValueType>()
            .map_err(ort_err(format!("reading tensor {name}")))?;
        if !tensor.memory_info().is_cpu_accessible() {
            return Err(tensor_err(
                name,
                "the value lives in device memory; copy it to the host first",
            ));
        }
        let len = numel(&shape) * dtype.size().unwrap_or(1);
        let bytes = if len == 0 {
            Vec::new()
        } else {
            let src = tensor.data_ptr().cast::<u8>();
            // SAFETY: the value is a CPU-accessible tensor of `dtype` and `shape`, so its buffer holds
            // `len` initialised bytes, and `value` (borrowed for this call) keeps it alive.
            unsafe { std::slice::from_raw_parts(src, len) }.to_vec()
        };
        HostTensor::from_bytes(dtype, shape, bytes).map_err(|e| match e {
            RuntimeError::Tensor { message, .. } => tensor_err(name, message),
            other => other,
        })
    }

    fn typed_bytes(&self, want: DType) -> Result<&[u8]> {
        match &self.data {
            Data::Bytes(b) if self.dtype == want => Ok(b),
            _ => Err(tensor_err("", format!("holds {}, not {want}", self.dtype))),
        }
    }
}

/// Human-readable kind of a non-tensor ONNX value ("a sequence", "an empty optional", ...).
pub(crate) fn describe_value_type(ty: &ValueType) -> String {
    match ty {
        ValueType::Tensor { ty, .. } => format!("a {ty} tensor"),
        ValueType::Sequence(inner) => format!("a sequence of {}", describe_value_type(inner)),
        ValueType::Map { key, value } => format!("a map {key} -> {value}"),
        ValueType::Optional(inner) => format!("an optional of {}", describe_value_type(inner)),
    }
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trip_and_rows() {
        let t = HostTensor::from_vec(vec![3, 2], vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(t.to_vec::<i64>().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert!(t.to_vec::<f32>().is_err());
        let rows = t.select_rows(&[2, 0]).unwrap();
        assert_eq!(rows.shape(), &[2, 2]);
        assert_eq!(rows.to_vec::<i64>().unwrap(), vec![5, 6, 1, 2]);
        assert!(t.select_rows(&[3]).is_err());
        let s = HostTensor::from_strings(vec![2], vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(s.select_rows(&[1]).unwrap().strings().unwrap(), ["b"]);
    }

    #[test]
    fn ndarray_round_trip() {
        let a =
            ndarray::ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.5f32, -2.0, 0.0, 4.0]).unwrap();
        let t = HostTensor::from_array(&a);
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.to_array::<f32>().unwrap(), a);
        let transposed = HostTensor::from_array(&a.t().to_owned());
        assert_eq!(
            transposed.to_vec::<f32>().unwrap(),
            vec![1.5, 0.0, -2.0, 4.0]
        );
        let labels = HostTensor::from_array(&ndarray::arr1(&[3i64, 1]).into_dyn());
        assert_eq!(
            labels.to_array::<i64>().unwrap().as_slice().unwrap(),
            &[3, 1]
        );
    }

    #[test]
    fn byte_length_is_checked() {
        assert!(HostTensor::from_bytes(DType::F32, vec![2], vec![0; 7]).is_err());
        assert!(HostTensor::from_bytes(DType::String, vec![], vec![]).is_err());
    }

    #[test]
    fn half_floats_decode() {
        let f16 = HostTensor::from_bytes(DType::F16, vec![], 0x3c00u16.to_le_bytes().to_vec());
        assert_eq!(f16.unwrap().scalar_f64().unwrap(), 1.0);
        let bf16 =
            HostTensor::from_bytes(DType::BF16, vec![], 0x3f80u16.to_le_bytes().to_vec()).unwrap();
        assert_eq!(bf16.scalar_f64().unwrap(), 1.0);
    }

    #[test]
    fn ort_types_round_trip() {
        for (d, t) in ORT_TYPES {
            assert_eq!(to_ort(d), Some(t));
            assert_eq!(from_ort(t), Some(d));
        }
        assert_eq!(to_ort(DType::C64), None);
        let err = HostTensor::from_bytes(DType::C64, vec![1], vec![0; 8]).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
