//! Reading and writing ONNX `ModelProto`s: metadata, graph inputs/outputs and initializers,
//! including initializers stored in external data files beside the model.
//!
//! Tensors go through gen-format's codec (`raw_data`, the typed `*_data` fields, or
//! `data_location = EXTERNAL` files inside the model's folder, every size checked first).

use std::path::{Path, PathBuf};

use gen_format::tensor::{Decoded, ExternalPolicy, ExternalWriter, TensorData};
use onnx_protobuf::{Message, ModelProto, TensorProto};

use crate::error::{io_err, Result, RuntimeError};
use crate::tensor::HostTensor;

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

/// Decodes a `TensorProto` (gen-format's codec), reading external data from inside `dir`.
pub(crate) fn decode_tensor(t: &TensorProto, dir: &Path) -> Result<HostTensor> {
    let name = t.name.as_str();
    let Decoded { dtype, dims, data } = gen_format::decode(t, &ExternalPolicy::within(Some(dir)))?;
    let with_name = |e: RuntimeError| match e {
        RuntimeError::Tensor { message, .. } => RuntimeError::Tensor {
            name: name.to_string(),
            message,
        },
        other => other,
    };
    // Dimensions were checked (non-negative, product fits) by the codec.
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    match data {
        TensorData::Raw(bytes) => HostTensor::from_bytes(dtype, shape, bytes).map_err(with_name),
        TensorData::Strings(strings) => {
            let strings = strings
                .into_iter()
                .map(String::from_utf8)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| {
                    with_name(RuntimeError::Tensor {
                        name: String::new(),
                        message: "string data is not UTF-8".into(),
                    })
                })?;
            HostTensor::from_strings(shape, strings).map_err(with_name)
        }
    }
}

/// Encodes a `HostTensor` as a `TensorProto` (raw_data for numbers, string_data for strings).
pub(crate) fn encode_tensor(name: &str, t: &HostTensor) -> TensorProto {
    let data = match (t.bytes(), t.strings()) {
        (Some(bytes), _) => TensorData::Raw(bytes.to_vec()),
        (None, strings) => TensorData::Strings(
            strings
                .unwrap_or_default()
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
    };
    let dims = t.shape().iter().map(|&d| d as i64).collect();
    gen_format::encode(name, t.dtype(), dims, data)
}

/// Moves every initializer of at least `threshold` bytes into one external data file `location`
/// beside `model_path`, as ONNX external data.
pub(crate) fn externalize(
    proto: &mut ModelProto,
    model_path: &Path,
    location: &str,
    threshold: usize,
) -> Result<()> {
    let mut writer = ExternalWriter::new(location);
    for t in proto.graph.mut_or_insert_default().initializer.iter_mut() {
        if t.raw_data.len() >= threshold {
            writer.externalize(t);
        }
    }
    let dir = model_path.parent().unwrap_or(Path::new("."));
    crate::fsutil::write_atomic(&dir.join(location), &writer.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tensor::DType;

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
        assert!(err.contains("tensor 'x'"), "{err}");

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
