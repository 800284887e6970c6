//! Reading and writing ONNX `ModelProto`s: metadata, graph inputs/outputs and initializers,
//! including initializers stored in external data files beside the model.
//!
//! Tensors are decoded here (not with onnx-protobuf's helpers) from `raw_data`, the typed
//! `*_data` fields, or `data_location = EXTERNAL` files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto, StringStringEntryProto, TensorProto};
use protobuf::EnumOrUnknown;

use crate::error::{io_err, Result, RuntimeError};
use crate::tensor::{DType, Element, HostTensor};

/// A parsed ONNX model and the folder its external data is relative to.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    path: PathBuf,
    pub(crate) proto: ModelProto,
}

impl OnnxModel {
    /// Reads and parses `path`; a file that is not an ONNX model is a clear error.
    pub fn read(path: &Path) -> Result<OnnxModel> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        OnnxModel::parse(path, &bytes)
    }

    /// Parses model bytes; `path` names the model in errors and locates external data.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<OnnxModel> {
        let not_onnx = |message: String| RuntimeError::Model {
            path: path.to_path_buf(),
            message,
        };
        let proto = ModelProto::parse_from_bytes(bytes)
            .map_err(|e| not_onnx(format!("not an ONNX model (protobuf: {e})")))?;
        // Protobuf accepts many random byte strings as a message of unknown fields: require what
        // every ONNX file has.
        if proto.ir_version <= 0 || proto.graph.is_none() || proto.opset_import.is_empty() {
            return Err(not_onnx(
                "not an ONNX model (no graph, IR version or opset import)".into(),
            ));
        }
        Ok(OnnxModel {
            path: path.to_path_buf(),
            proto,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folder that external data locations are relative to.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A `metadata_props` value.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    pub fn input_names(&self) -> Vec<&str> {
        self.proto
            .graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .collect()
    }

    pub fn output_names(&self) -> Vec<&str> {
        self.proto
            .graph
            .output
            .iter()
            .map(|o| o.name.as_str())
            .collect()
    }

    /// The declared dimensions of graph output `name` (`None` for a symbolic one); `None` when
    /// there is no such output or its shape is not declared.
    pub(crate) fn output_dims(&self, name: &str) -> Option<Vec<Option<usize>>> {
        let output = self.proto.graph.output.iter().find(|o| o.name == name)?;
        let shape = output.type_.tensor_type().shape.as_ref()?;
        Some(
            shape
                .dim
                .iter()
                .map(|d| {
                    d.has_dim_value()
                        .then(|| usize::try_from(d.dim_value()).ok())
                        .flatten()
                })
                .collect(),
        )
    }

    /// The decoded initializer `name`, `None` if the graph has none of that name.
    pub fn initializer(&self, name: &str) -> Option<Result<HostTensor>> {
        self.proto
            .graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .map(|t| decode_tensor(t, self.dir()))
    }

    /// Serialises and writes the model to `path` (no external data).
    pub(crate) fn write(proto: &ModelProto, path: &Path) -> Result<()> {
        let bytes = proto.write_to_bytes().map_err(|e| RuntimeError::Model {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        })?;
        crate::fsutil::write_atomic(path, &bytes)
    }
}

fn model_err(name: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Tensor {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Decodes a `TensorProto`, reading external data relative to `dir`.
pub(crate) fn decode_tensor(t: &TensorProto, dir: &Path) -> Result<HostTensor> {
    let name = t.name.as_str();
    let dtype = DType::from_onnx(t.data_type)
        .ok_or_else(|| model_err(name, format!("unsupported ONNX data type {}", t.data_type)))?;
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| model_err(name, format!("negative dimension in {:?}", t.dims)))?;
    let numel: usize = shape.iter().product();
    let located_outside = t.data_location == EnumOrUnknown::new(DataLocation::EXTERNAL);
    let with_name = |e: RuntimeError| match e {
        RuntimeError::Tensor { message, .. } => model_err(name, message),
        other => other,
    };
    if dtype == DType::String {
        if located_outside {
            return Err(model_err(name, "external string data is not supported"));
        }
        let strings = t
            .string_data
            .iter()
            .map(|s| String::from_utf8(s.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| model_err(name, "string data is not UTF-8"))?;
        return HostTensor::from_strings(shape, strings).map_err(with_name);
    }
    let bytes = if located_outside {
        read_external(t, dir, numel * dtype.size().unwrap_or(1))?
    } else if !t.raw_data.is_empty() {
        t.raw_data.clone()
    } else {
        typed_field_bytes(t, dtype)
    };
    HostTensor::from_bytes(dtype, shape, bytes).map_err(with_name)
}

/// Little-endian bytes from the typed repeated fields (`float_data`, `int32_data`, ...).
fn typed_field_bytes(t: &TensorProto, dtype: DType) -> Vec<u8> {
    fn le<T: Element>(values: impl Iterator<Item = T>) -> Vec<u8> {
        let mut out = Vec::new();
        values.for_each(|v| v.write_le(&mut out));
        out
    }
    // int32_data carries every type narrower than 32 bits (f16/bf16 as their bit patterns); the
    // `as` casts keep the low bits, which is the encoding.
    let narrow = t.int32_data.iter();
    match dtype {
        DType::F32 => le(t.float_data.iter().copied()),
        DType::F64 => le(t.double_data.iter().copied()),
        DType::I64 => le(t.int64_data.iter().copied()),
        DType::U64 => le(t.uint64_data.iter().copied()),
        DType::U32 => le(t.uint64_data.iter().map(|&v| v as u32)),
        DType::I32 => le(narrow.copied()),
        DType::I16 => le(narrow.map(|&v| v as i16)),
        DType::U16 | DType::F16 | DType::BF16 => le(narrow.map(|&v| v as u16)),
        DType::I8 => le(narrow.map(|&v| v as i8)),
        DType::U8 => le(narrow.map(|&v| v as u8)),
        DType::Bool => le(narrow.map(|&v| v != 0)),
        DType::String => Vec::new(),
    }
}

fn read_external(t: &TensorProto, dir: &Path, expected_len: usize) -> Result<Vec<u8>> {
    let name = t.name.as_str();
    let entries: HashMap<&str, &str> = t
        .external_data
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let location = entries
        .get("location")
        .ok_or_else(|| model_err(name, "external data without a location"))?;
    let number = |key: &str| -> Result<Option<usize>> {
        entries
            .get(key)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    model_err(name, format!("external data {key} `{v}` is not a number"))
                })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(expected_len);
    let relative = Path::new(location);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(model_err(
            name,
            format!("external data location `{location}` must stay beside the model"),
        ));
    }
    let path = dir.join(relative);
    let data = std::fs::read(&path).map_err(io_err(&path))?;
    data.get(offset..offset.saturating_add(length))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            model_err(
                name,
                format!(
                    "external data {}: bytes {offset}..{} past its end ({} bytes)",
                    path.display(),
                    offset + length,
                    data.len()
                ),
            )
        })
}

/// Encodes a `HostTensor` as a `TensorProto` (raw_data for numbers, string_data for strings).
pub(crate) fn encode_tensor(name: &str, t: &HostTensor) -> TensorProto {
    let mut proto = TensorProto::new();
    proto.name = name.to_string();
    proto.data_type = t.dtype().onnx();
    proto.dims = t.shape().iter().map(|&d| d as i64).collect();
    match (t.bytes(), t.strings()) {
        (Some(bytes), _) => proto.raw_data = bytes.to_vec(),
        (None, Some(strings)) => {
            proto.string_data = strings.iter().map(|s| s.as_bytes().to_vec()).collect()
        }
        (None, None) => {}
    }
    proto
}

/// Moves every initializer of at least `threshold` bytes into one external data file `location`
/// beside `model_path`, as ONNX external data.
pub(crate) fn externalize(
    proto: &mut ModelProto,
    model_path: &Path,
    location: &str,
    threshold: usize,
) -> Result<()> {
    let mut blob = Vec::new();
    for t in proto.graph.mut_or_insert_default().initializer.iter_mut() {
        if t.raw_data.len() < threshold {
            continue;
        }
        let entry = |key: &str, value: String| {
            let mut e = StringStringEntryProto::new();
            e.key = key.to_string();
            e.value = value;
            e
        };
        t.external_data = vec![
            entry("location", location.to_string()),
            entry("offset", blob.len().to_string()),
            entry("length", t.raw_data.len().to_string()),
        ];
        t.data_location = EnumOrUnknown::new(DataLocation::EXTERNAL);
        blob.append(&mut t.raw_data);
    }
    let dir = model_path.parent().unwrap_or(Path::new("."));
    crate::fsutil::write_atomic(&dir.join(location), &blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_decode() {
        let mut t = TensorProto::new();
        t.name = "x".into();
        t.data_type = DType::I16.onnx();
        t.dims = vec![3];
        t.int32_data = vec![-1, 2, 300];
        let h = decode_tensor(&t, Path::new(".")).unwrap();
        assert_eq!(h.to_vec::<i16>().unwrap(), vec![-1, 2, 300]);

        t.data_type = DType::F32.onnx();
        t.int32_data.clear();
        t.float_data = vec![1.5, 2.5];
        let err = decode_tensor(&t, Path::new(".")).unwrap_err().to_string();
        assert!(err.contains("tensor x"), "{err}");

        let back = encode_tensor(
            "y",
            &HostTensor::from_vec(vec![2], vec![1.5f32, 2.5]).unwrap(),
        );
        assert_eq!(
            decode_tensor(&back, Path::new("."))
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![1.5, 2.5]
        );
    }

    #[test]
    fn random_bytes_are_not_a_model() {
        let err = OnnxModel::parse(Path::new("x.onnx"), b"\x01\x02hello").unwrap_err();
        assert!(err.to_string().contains("not an ONNX model"), "{err}");
    }
}
