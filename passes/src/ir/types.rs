//! Element types, dimensions, value types and tensors.

use std::fmt;

pub use gen_format::{DType, TensorData};

/// One dimension of a shape: a known size, a named symbol (the batch) or unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(i64),
    Sym(String),
    Unknown,
}

impl Dim {
    pub fn fixed(&self) -> Option<i64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A tensor type: element type plus an optional shape (None = rank unknown).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Option<Vec<Dim>>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Option<Vec<Dim>>) -> Self {
        TensorType { dtype, shape }
    }

    /// A tensor type with a fully known shape.
    pub fn fixed(dtype: DType, dims: &[i64]) -> Self {
        TensorType {
            dtype,
            shape: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()),
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }

    /// The shape as numbers when every dimension is known.
    pub fn fixed_dims(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().map(Dim::fixed).collect()
    }
}

/// The type of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Type {
    /// Not known (yet): inference could not tell, or an opaque operator produced it.
    #[default]
    Unknown,
    Tensor(TensorType),
    /// Any other ONNX type (sequence, map, optional, sparse), kept as a serialized `TypeProto`.
    Opaque(Vec<u8>),
}

impl Type {
    pub fn tensor(&self) -> Option<&TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn dtype(&self) -> Option<DType> {
        self.tensor()
            .map(|t| t.dtype)
            .filter(|d| *d != DType::Undefined)
    }

    pub fn shape(&self) -> Option<&[Dim]> {
        self.tensor()?.shape.as_deref()
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape().map(<[Dim]>::len)
    }
}

/// A constant tensor (initializer, Constant value, attribute).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    /// Size in bytes of the packed payload.
    pub fn nbytes(&self) -> usize {
        match &self.data {
            TensorData::Raw(b) => b.len(),
            TensorData::Strings(s) => s.iter().map(Vec::len).sum(),
        }
    }

    pub fn raw(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::Raw(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    pub fn ty(&self) -> TensorType {
        TensorType::fixed(self.dtype, &self.dims)
    }

    pub fn from_f32(dims: &[i64], values: &[f32]) -> Tensor {
        Tensor {
            dtype: DType::F32,
            dims: dims.to_vec(),
            data: TensorData::Raw(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    pub fn from_f64(dims: &[i64], values: &[f64]) -> Tensor {
        Tensor {
            dtype: DType::F64,
            dims: dims.to_vec(),
            data: TensorData::Raw(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    pub fn from_i64(dims: &[i64], values: &[i64]) -> Tensor {
        Tensor {
            dtype: DType::I64,
            dims: dims.to_vec(),
            data: TensorData::Raw(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    pub fn from_bool(dims: &[i64], values: &[bool]) -> Tensor {
        Tensor {
            dtype: DType::Bool,
            dims: dims.to_vec(),
            data: TensorData::Raw(values.iter().map(|&v| v as u8).collect()),
        }
    }

    /// A tensor of `dtype` (as `Tensor::scalar` converts) holding `values`.
    pub fn from_f64_as(dtype: DType, dims: &[i64], values: &[f64]) -> Tensor {
        let mut raw = Vec::with_capacity(values.len() * dtype.bits().div_ceil(8));
        let mut out_dtype = dtype;
        for &v in values {
            let t = Tensor::scalar(dtype, v);
            out_dtype = t.dtype;
            raw.extend_from_slice(t.raw().unwrap_or_default());
        }
        Tensor {
            dtype: out_dtype,
            dims: dims.to_vec(),
            data: TensorData::Raw(raw),
        }
    }

    /// A scalar of a float type holding `v` (f32, f64, f16 or bf16), or an integer type.
    pub fn scalar(dtype: DType, v: f64) -> Tensor {
        let raw = match dtype {
            DType::F64 => v.to_le_bytes().to_vec(),
            DType::F16 => half::f16::from_f32(v as f32).to_le_bytes().to_vec(),
            DType::BF16 => half::bf16::from_f32(v as f32).to_le_bytes().to_vec(),
            DType::I64 => (v as i64).to_le_bytes().to_vec(),
            DType::I32 => (v as i32).to_le_bytes().to_vec(),
            DType::Bool => vec![(v != 0.0) as u8],
            _ => (v as f32).to_le_bytes().to_vec(),
        };
        let dtype = match dtype {
            DType::F64 | DType::F16 | DType::BF16 | DType::I64 | DType::I32 | DType::Bool => dtype,
            _ => DType::F32,
        };
        Tensor {
            dtype,
            dims: vec![],
            data: TensorData::Raw(raw),
        }
    }

    /// Elements as i64 (integer and bool types), for shape arithmetic.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let raw = self.raw()?;
        Some(match self.dtype {
            DType::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            DType::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
            DType::U8 | DType::Bool => raw.iter().map(|&b| b as i64).collect(),
            DType::I8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            _ => return None,
        })
    }

    /// Elements as f64 (float types, and integers converted).
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        if self.dtype.is_float() {
            return gen_format::le_to_f64(self.dtype, self.raw()?);
        }
        Some(self.to_i64_vec()?.into_iter().map(|v| v as f64).collect())
    }

    /// A short content hash (FNV-1a over dtype, dims and payload) for the text form.
    pub fn hash_hex(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        (self.dtype as i32)
            .to_le_bytes()
            .into_iter()
            .for_each(&mut eat);
        for d in &self.dims {
            d.to_le_bytes().into_iter().for_each(&mut eat);
        }
        match &self.data {
            TensorData::Raw(b) => b.iter().copied().for_each(&mut eat),
            TensorData::Strings(s) => s.iter().flatten().copied().for_each(&mut eat),
        }
        format!("{:08x}", (h >> 32) as u32 ^ h as u32)
    }
}
