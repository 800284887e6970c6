//! Our own TensorProto decoding and encoding (the onnx-protobuf crate's helpers ignore
//! `raw_data` and panic on several types). Handles `raw_data`, every typed field, and external
//! data (`data_location = EXTERNAL` with relative `location`, `offset`, `length`).

use super::error::ImportError;
use crate::ir::{DType, Tensor, TensorData};
use onnx_protobuf::{tensor_proto::DataLocation, StringStringEntryProto, TensorProto};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// Packed byte size of `numel` elements of `dtype` (None on overflow).
pub fn packed_len(dtype: DType, numel: usize) -> Option<usize> {
    Some(numel.checked_mul(dtype.bits())?.div_ceil(8))
}

/// Decodes a TensorProto; `base_dir` is the model's folder (for external data).
pub fn decode(tp: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, ImportError> {
    let name = &tp.name;
    let dtype = DType::from_onnx(tp.data_type)
        .filter(|d| *d != DType::Undefined)
        .ok_or_else(|| ImportError::Tensor {
            name: name.clone(),
            message: format!("unknown or undefined data type {}", tp.data_type),
        })?;
    if tp.dims.iter().any(|&d| d < 0) {
        return Err(ImportError::Tensor {
            name: name.clone(),
            message: format!("negative dimension in {:?}", tp.dims),
        });
    }
    let bad = |message: String| ImportError::Tensor {
        name: name.clone(),
        message,
    };
    let too_big = || bad(format!("dimensions {:?} are too large", tp.dims));
    let numel = tp
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .ok_or_else(too_big)?;
    if dtype == DType::String {
        if tp.string_data.len() != numel {
            return Err(bad(format!(
                "{} strings for {numel} elements",
                tp.string_data.len()
            )));
        }
        return Ok(Tensor {
            dtype,
            dims: tp.dims.clone(),
            data: TensorData::Strings(tp.string_data.clone()),
        });
    }
    let want = packed_len(dtype, numel).ok_or_else(too_big)?;
    let raw: Vec<u8> = if tp.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
        read_external(tp, base_dir, want)?
    } else if !tp.raw_data.is_empty() || numel == 0 {
        tp.raw_data.clone()
    } else {
        typed_fields(tp, dtype, numel).map_err(bad)?
    };
    if raw.len() != want {
        return Err(bad(format!(
            "holds {} bytes but {dtype}{:?} needs {want}",
            raw.len(),
            tp.dims
        )));
    }
    Ok(Tensor {
        dtype,
        dims: tp.dims.clone(),
        data: TensorData::Raw(raw),
    })
}

/// Packs the typed repeated fields into little-endian raw bytes.
fn typed_fields(tp: &TensorProto, dtype: DType, numel: usize) -> Result<Vec<u8>, String> {
    use DType::*;
    let count = |n: usize, per: usize| {
        if n == numel * per {
            Ok(())
        } else {
            Err(format!("{n} values for {numel} elements of {dtype}"))
        }
    };
    Ok(match dtype {
        F32 => {
            count(tp.float_data.len(), 1)?;
            tp.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        C64 => {
            count(tp.float_data.len(), 2)?;
            tp.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        F64 => {
            count(tp.double_data.len(), 1)?;
            tp.double_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        C128 => {
            count(tp.double_data.len(), 2)?;
            tp.double_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        I64 => {
            count(tp.int64_data.len(), 1)?;
            tp.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        U64 => {
            count(tp.uint64_data.len(), 1)?;
            tp.uint64_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        U32 => {
            count(tp.uint64_data.len(), 1)?;
            tp.uint64_data
                .iter()
                .flat_map(|&v| (v as u32).to_le_bytes())
                .collect()
        }
        I32 => {
            count(tp.int32_data.len(), 1)?;
            tp.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        I16 | U16 | F16 | BF16 => {
            count(tp.int32_data.len(), 1)?;
            tp.int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        }
        I8 | U8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => {
            count(tp.int32_data.len(), 1)?;
            tp.int32_data.iter().map(|&v| v as u8).collect()
        }
        U4 | I4 | F4E2M1 | U2 | I2 => {
            // int32_data holds the packed bytes, one per int32
            let want = packed_len(dtype, numel).unwrap_or(usize::MAX);
            if tp.int32_data.len() != want {
                return Err(format!(
                    "{} packed values for {numel} elements of {dtype}",
                    tp.int32_data.len()
                ));
            }
            tp.int32_data.iter().map(|&v| v as u8).collect()
        }
        String | Undefined => return Err(format!("no typed field for {dtype}")),
    })
}

fn entry<'a>(entries: &'a [StringStringEntryProto], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

fn read_external(
    tp: &TensorProto,
    base: Option<&Path>,
    want: usize,
) -> Result<Vec<u8>, ImportError> {
    let name = &tp.name;
    let bad = |message: String| ImportError::Tensor {
        name: name.clone(),
        message,
    };
    let location = entry(&tp.external_data, "location")
        .ok_or_else(|| bad("external data without a 'location'".into()))?;
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad(format!(
            "external data location '{location}' must be relative to the model's folder"
        )));
    }
    let base =
        base.ok_or_else(|| bad("external data, but the model was not loaded from a file".into()))?;
    let parse = |key: &str| -> Result<Option<u64>, ImportError> {
        entry(&tp.external_data, key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("external data '{key}' is not a number: {v:?}")))
            })
            .transpose()
    };
    let offset = parse("offset")?.unwrap_or(0);
    let length = parse("length")?.unwrap_or(want as u64) as usize;
    let path = base.join(rel);
    let mut f = std::fs::File::open(&path).map_err(|e| ImportError::Io {
        path: path.clone(),
        message: format!("external data of tensor '{name}': {e}"),
    })?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| ImportError::Io {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let mut buf = vec![0u8; length];
    f.read_exact(&mut buf).map_err(|e| ImportError::Io {
        path: path.clone(),
        message: format!(
            "external data of tensor '{name}': cannot read {length} bytes at offset {offset}: {e}"
        ),
    })?;
    Ok(buf)
}

/// Encodes a tensor (raw_data for everything but strings).
pub fn encode(t: &Tensor, name: &str) -> TensorProto {
    let mut tp = TensorProto::new();
    tp.name = name.to_string();
    tp.dims = t.dims.clone();
    tp.data_type = t.dtype as i32;
    match &t.data {
        TensorData::Raw(b) => tp.raw_data = b.clone(),
        TensorData::Strings(s) => tp.string_data = s.clone(),
    }
    tp
}

/// Appends tensors to an external data file, 4 KiB aligned, recording the entries.
pub struct ExternalWriter {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

const ALIGN: usize = 4096;

impl ExternalWriter {
    pub fn new(file_name: &str) -> Self {
        ExternalWriter {
            file_name: file_name.to_string(),
            bytes: Vec::new(),
        }
    }

    /// Moves the payload of `tp` into the data file.
    pub fn externalize(&mut self, tp: &mut TensorProto) {
        let pad = (ALIGN - self.bytes.len() % ALIGN) % ALIGN;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        let offset = self.bytes.len();
        let data = std::mem::take(&mut tp.raw_data);
        self.bytes.extend_from_slice(&data);
        let kv = |k: &str, v: String| {
            let mut e = StringStringEntryProto::new();
            e.key = k.into();
            e.value = v;
            e
        };
        tp.external_data = vec![
            kv("location", self.file_name.clone()),
            kv("offset", offset.to_string()),
            kv("length", data.len().to_string()),
        ];
        tp.data_location = DataLocation::EXTERNAL.into();
    }
}
