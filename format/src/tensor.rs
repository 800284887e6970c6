//! `TensorProto` decoding and encoding (onnx-protobuf's own helpers ignore `raw_data` and panic
//! on several types): `raw_data`, every typed field, and external data (`data_location =
//! EXTERNAL` with `location`, `offset`, `length` relative to the model's folder).
//!
//! Everything read from a file is checked before it is used: dimensions and element counts with
//! checked arithmetic, typed-field counts against the shape, and external `offset` / `length`
//! against the shape and the external file's real size before any buffer is allocated. External
//! files must lie inside the model's folder once symlinks are resolved, unless
//! [`ExternalPolicy::allow_outside_dir`] is set.

use crate::DType;
use onnx_protobuf::{tensor_proto::DataLocation, StringStringEntryProto, TensorProto};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// The payload of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Little-endian packed elements, exactly as ONNX `raw_data` stores them.
    Raw(Vec<u8>),
    /// One byte string per element.
    Strings(Vec<Vec<u8>>),
}

/// A decoded tensor: element type, dimensions (all ≥ 0) and payload of the right size.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub data: TensorData,
}

/// Where external data may be read from.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExternalPolicy<'a> {
    /// The model's folder; `None` when the model was not read from a file (external data is
    /// then an error).
    pub dir: Option<&'a Path>,
    /// Accept external files that symlinks lead outside `dir` (the `location` itself must still
    /// be a relative path without `..`).
    pub allow_outside_dir: bool,
}

impl<'a> ExternalPolicy<'a> {
    /// External data confined to `dir`.
    pub fn within(dir: Option<&'a Path>) -> Self {
        ExternalPolicy {
            dir,
            allow_outside_dir: false,
        }
    }
}

/// Why a tensor could not be decoded. Every variant names the tensor; external-data errors name
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("tensor '{name}': {message}")]
    Invalid { name: String, message: String },
    #[error("tensor '{name}': external data {}: {message}", path.display())]
    External {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "tensor '{name}': external data {} resolves to {}, outside the model's folder {} \
         (gen-compile --allow-external-outside-dir accepts it)",
        path.display(), resolved.display(), dir.display()
    )]
    OutsideDir {
        name: String,
        path: PathBuf,
        resolved: PathBuf,
        dir: PathBuf,
    },
}

impl TensorError {
    /// The tensor the error is about.
    pub fn tensor(&self) -> &str {
        match self {
            TensorError::Invalid { name, .. }
            | TensorError::External { name, .. }
            | TensorError::OutsideDir { name, .. } => name,
        }
    }
}

/// Decodes a `TensorProto`, reading external data as `ext` allows.
pub fn decode(tp: &TensorProto, ext: &ExternalPolicy<'_>) -> Result<Decoded, TensorError> {
    let name = tp.name.as_str();
    let bad = |message: String| TensorError::Invalid {
        name: name.to_string(),
        message,
    };
    let dtype = DType::from_onnx(tp.data_type)
        .filter(|d| *d != DType::Undefined)
        .ok_or_else(|| bad(format!("unknown or undefined data type {}", tp.data_type)))?;
    if tp.dims.iter().any(|&d| d < 0) {
        return Err(bad(format!("negative dimension in {:?}", tp.dims)));
    }
    let too_big = || bad(format!("dimensions {:?} are too large", tp.dims));
    let numel = tp
        .dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
        .ok_or_else(too_big)?;
    let external = tp.data_location.enum_value() == Ok(DataLocation::EXTERNAL);
    if dtype == DType::String {
        if external {
            return Err(bad("external string data is not supported".into()));
        }
        if tp.string_data.len() != numel {
            return Err(bad(format!(
                "{} strings for {numel} elements",
                tp.string_data.len()
            )));
        }
        return Ok(Decoded {
            dtype,
            dims: tp.dims.clone(),
            data: TensorData::Strings(tp.string_data.clone()),
        });
    }
    let want = dtype.packed_len(numel).ok_or_else(too_big)?;
    let raw = if external {
        read_external(tp, ext, want)?
    } else if !tp.raw_data.is_empty() || numel == 0 {
        if tp.raw_data.len() != want {
            return Err(bad(format!(
                "holds {} bytes but {dtype}{:?} needs {want}",
                tp.raw_data.len(),
                tp.dims
            )));
        }
        tp.raw_data.clone()
    } else {
        typed_fields(tp, dtype, numel, want).map_err(bad)?
    };
    Ok(Decoded {
        dtype,
        dims: tp.dims.clone(),
        data: TensorData::Raw(raw),
    })
}

/// Packs the typed repeated fields into little-endian raw bytes; the value count is checked
/// against the shape first.
fn typed_fields(
    tp: &TensorProto,
    dtype: DType,
    numel: usize,
    packed: usize,
) -> Result<Vec<u8>, String> {
    use DType::*;
    let count = |n: usize, want: Option<usize>| match want {
        Some(w) if w == n => Ok(()),
        _ => Err(format!("{n} values for {numel} elements of {dtype}")),
    };
    let one = Some(numel);
    let two = numel.checked_mul(2);
    Ok(match dtype {
        F32 | C64 => {
            count(tp.float_data.len(), if dtype == F32 { one } else { two })?;
            tp.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        F64 | C128 => {
            count(tp.double_data.len(), if dtype == F64 { one } else { two })?;
            tp.double_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        I64 => {
            count(tp.int64_data.len(), one)?;
            tp.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        U64 => {
            count(tp.uint64_data.len(), one)?;
            tp.uint64_data
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        }
        U32 => {
            count(tp.uint64_data.len(), one)?;
            tp.uint64_data
                .iter()
                .flat_map(|&v| (v as u32).to_le_bytes())
                .collect()
        }
        I32 => {
            count(tp.int32_data.len(), one)?;
            tp.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        // int32_data carries every type narrower than 32 bits (f16/bf16 as their bit patterns);
        // the `as` casts keep the low bits, which is the encoding.
        I16 | U16 | F16 | BF16 => {
            count(tp.int32_data.len(), one)?;
            tp.int32_data
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect()
        }
        Bool => {
            count(tp.int32_data.len(), one)?;
            tp.int32_data.iter().map(|&v| u8::from(v != 0)).collect()
        }
        I8 | U8 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => {
            count(tp.int32_data.len(), one)?;
            tp.int32_data.iter().map(|&v| v as u8).collect()
        }
        // int32_data holds the packed bytes, one per int32.
        U4 | I4 | F4E2M1 | U2 | I2 => {
            if tp.int32_data.len() != packed {
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

/// Reads `want` bytes of external data, after checking the location, the declared offset and
/// length, and the real size of the file.
fn read_external(
    tp: &TensorProto,
    ext: &ExternalPolicy<'_>,
    want: usize,
) -> Result<Vec<u8>, TensorError> {
    let name = tp.name.as_str();
    let bad = |message: String| TensorError::Invalid {
        name: name.to_string(),
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
    let dir = ext
        .dir
        .ok_or_else(|| bad("external data, but the model was not loaded from a file".into()))?;
    let path = dir.join(rel);
    let at = |message: String| TensorError::External {
        name: name.to_string(),
        path: path.clone(),
        message,
    };
    let number = |key: &str| -> Result<Option<u64>, TensorError> {
        entry(&tp.external_data, key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| at(format!("'{key}' is not a number: {v:?}")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(want as u64);
    if length != want as u64 {
        return Err(at(format!(
            "declares {length} bytes but {}{:?} needs {want}",
            DType::from_onnx(tp.data_type).unwrap_or(DType::Undefined),
            tp.dims
        )));
    }
    if !ext.allow_outside_dir {
        let canon = |p: &Path| {
            p.canonicalize()
                .map_err(|e| at(format!("cannot resolve {}: {e}", p.display())))
        };
        let (resolved, dir) = (canon(&path)?, canon(dir)?);
        if !resolved.starts_with(&dir) {
            return Err(TensorError::OutsideDir {
                name: name.to_string(),
                path: path.clone(),
                resolved,
                dir,
            });
        }
    }
    let mut f = std::fs::File::open(&path).map_err(|e| at(e.to_string()))?;
    let size = f.metadata().map_err(|e| at(e.to_string()))?.len();
    let end = offset
        .checked_add(length)
        .ok_or_else(|| at(format!("offset {offset} + length {length} overflows")))?;
    if end > size {
        return Err(at(format!(
            "bytes {offset}..{end} are past the end of the file ({size} bytes)"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| at(e.to_string()))?;
    // `want` bytes fit in the file (checked above), so this allocation is bounded by its size.
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf)
        .map_err(|e| at(format!("cannot read {want} bytes at offset {offset}: {e}")))?;
    Ok(buf)
}

/// Encodes a tensor: `raw_data` for numbers, `string_data` for strings.
pub fn encode(name: &str, dtype: DType, dims: Vec<i64>, data: TensorData) -> TensorProto {
    let mut tp = TensorProto::new();
    tp.name = name.to_string();
    tp.dims = dims;
    tp.data_type = dtype.onnx();
    match data {
        TensorData::Raw(b) => tp.raw_data = b,
        TensorData::Strings(s) => tp.string_data = s,
    }
    tp
}

/// Appends tensors to one external data file, each 4 KiB aligned, recording the entries.
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

    /// Moves the `raw_data` of `tp` into the data file.
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
