//! ONNX element types, numbered as `TensorProto.DataType`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// ONNX element types, numbered as `TensorProto.DataType` (`dtype as i32` is the code).
///
/// Serialized (checkpoints, JSON) as the lowercase variant name: `f32`, `bf16`, `string`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Every type, indexed by its ONNX code.
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

    /// The element type with ONNX code `code`, if any.
    pub fn from_onnx(code: i32) -> Option<DType> {
        DType::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The `TensorProto.DataType` code.
    pub fn onnx(self) -> i32 {
        self as i32
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

    /// Bytes per element; `None` for strings, undefined and the packed 2- and 4-bit types.
    pub fn size(self) -> Option<usize> {
        let bits = self.bits();
        (bits > 0 && bits.is_multiple_of(8)).then_some(bits / 8)
    }

    /// Packed byte size of `numel` elements (`None` on overflow).
    pub fn packed_len(self, numel: usize) -> Option<usize> {
        Some(numel.checked_mul(self.bits())?.div_ceil(8))
    }

    /// Floating-point types (the ones that carry gradients).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// Short lowercase name, as in the IR text form and error messages.
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

/// Little-endian elements of `dtype` converted to f64 (f16 and bf16 exactly, through `half`);
/// `None` for types without a real value per element (strings, complex, 8/4/2-bit formats) or a
/// byte count that is not a whole number of elements.
pub fn le_to_f64(dtype: DType, bytes: &[u8]) -> Option<Vec<f64>> {
    use DType::*;
    let size = dtype.size()?;
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    fn each<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect()
    }
    Some(match dtype {
        F32 => each(bytes, |b| f64::from(f32::from_le_bytes(b))),
        F64 => each(bytes, f64::from_le_bytes),
        F16 => each(bytes, |b| half::f16::from_le_bytes(b).to_f64()),
        BF16 => each(bytes, |b| half::bf16::from_le_bytes(b).to_f64()),
        I8 => each(bytes, |b| f64::from(i8::from_le_bytes(b))),
        I16 => each(bytes, |b| f64::from(i16::from_le_bytes(b))),
        I32 => each(bytes, |b| f64::from(i32::from_le_bytes(b))),
        I64 => each(bytes, |b| i64::from_le_bytes(b) as f64),
        U8 | Bool => each(bytes, |[b]: [u8; 1]| f64::from(b)),
        U16 => each(bytes, |b| f64::from(u16::from_le_bytes(b))),
        U32 => each(bytes, |b| f64::from(u32::from_le_bytes(b))),
        U64 => each(bytes, |b| u64::from_le_bytes(b) as f64),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onnx_codes_round_trip() {
        for (code, d) in DType::ALL.iter().enumerate() {
            assert_eq!(d.onnx(), code as i32);
            assert_eq!(DType::from_onnx(d.onnx()), Some(*d));
        }
        assert_eq!(DType::from_onnx(27), None);
        assert_eq!(DType::from_onnx(-1), None);
        assert_eq!(DType::BF16.onnx(), 16);
    }

    #[test]
    fn sizes() {
        assert_eq!(DType::F32.size(), Some(4));
        assert_eq!(DType::C128.size(), Some(16));
        assert_eq!(DType::I4.size(), None);
        assert_eq!(DType::String.size(), None);
        assert_eq!(DType::I4.packed_len(3), Some(2));
        assert_eq!(DType::F64.packed_len(usize::MAX), None);
    }

    #[test]
    fn serde_names_are_the_checkpoint_names() {
        let names = serde_json::to_string(&[DType::F32, DType::BF16, DType::String]).unwrap();
        assert_eq!(names, r#"["f32","bf16","string"]"#);
        let back: Vec<DType> = serde_json::from_str(&names).unwrap();
        assert_eq!(back, [DType::F32, DType::BF16, DType::String]);
    }

    #[test]
    fn half_floats_decode_exactly() {
        // 1.0, -2.5 and the smallest subnormal in f16; 1.0 in bf16.
        let f16: Vec<u8> = [0x3c00u16, 0xc100, 0x0001]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            le_to_f64(DType::F16, &f16),
            Some(vec![1.0, -2.5, 2f64.powi(-24)])
        );
        assert_eq!(
            le_to_f64(DType::BF16, &0x3f80u16.to_le_bytes()),
            Some(vec![1.0])
        );
        assert_eq!(le_to_f64(DType::F32, &[0; 3]), None);
        assert_eq!(le_to_f64(DType::C64, &[0; 8]), None);
    }
}
