//! Element types, dimensions, value types and tensors.

use std::fmt;

/// ONNX element types, numbered as `TensorProto.DataType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum DType {
    Undefined = 0,
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    String = 8,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    C64 = 14,
    C128 = 15,
    BF16 = 16,
    F8E4M3FN = 17,
    F8E4M3FNUZ = 18,
    F8E5M2 = 19,
    F8E5M2FNUZ = 20,
    U4 = 21,
    I4 = 22,
    F4E2M1 = 23,
    F8E8M0 = 24,
    U2 = 25,
    I2 = 26,
}

impl DType {
    const ALL: [DType; 27] = [
        DType::Undefined,
        DType::F32,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::String,
        DType::Bool,
        DType::F16,
        DType::F64,
        DType::U32,
        DType::U64,
        DType::C64,
        DType::C128,
        DType::BF16,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::U4,
        DType::I4,
        DType::F4E2M1,
        DType::F8E8M0,
        DType::U2,
        DType::I2,
    ];

    /// The element type with ONNX number `code`, if any.
    pub fn from_onnx(code: i32) -> Option<DType> {
        DType::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// Bits per element (0 for strings and undefined).
    pub fn bits(self) -> usize {
        use DType::*;
        match self {
            Undefined | String => 0,
            U2 | I2 => 2,
            U4 | I4 | F4E2M1 => 4,
            U8 | I8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            U16 | I16 | F16 | BF16 => 16,
            F32 | I32 | U32 => 32,
            F64 | I64 | U64 | C64 => 64,
            C128 => 128,
        }
    }

    /// Floating-point types (the ones that carry gradients).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// Short lowercase name used by the text form.
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            Undefined => "?",
            F32 => "f32",
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            String => "str",
            Bool => "bool",
            F16 => "f16",
            F64 => "f64",
            U32 => "u32",
            U64 => "u64",
            C64 => "c64",
            C128 => "c128",
            BF16 => "bf16",
            F8E4M3FN => "f8e4m3fn",
            F8E4M3FNUZ => "f8e4m3fnuz",
            F8E5M2 => "f8e5m2",
            F8E5M2FNUZ => "f8e5m2fnuz",
            U4 => "u4",
            I4 => "i4",
            F4E2M1 => "f4e2m1",
            F8E8M0 => "f8e8m0",
            U2 => "u2",
            I2 => "i2",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

/// The payload of a tensor constant.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Little-endian packed elements, exactly as ONNX `raw_data` stores them.
    Raw(Vec<u8>),
    /// One byte string per element.
    Strings(Vec<Vec<u8>>),
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
            DType::F16 => f32_to_f16(v as f32).to_le_bytes().to_vec(),
            DType::BF16 => ((((v as f32).to_bits()) >> 16) as u16)
                .to_le_bytes()
                .to_vec(),
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
        let raw = self.raw()?;
        Some(match self.dtype {
            DType::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()) as f64)
                .collect(),
            DType::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            DType::F16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
                .collect(),
            DType::BF16 => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
                .collect(),
            _ => self.to_i64_vec()?.into_iter().map(|v| v as f64).collect(),
        })
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

/// IEEE half precision → f32.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// f32 → IEEE half precision (round to nearest even).
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let frac = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if frac != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = frac | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = m >> shift;
        let rem = m & ((1 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (frac >> 13);
    let rem = frac & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}
