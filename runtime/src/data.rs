//! Training data: `.npz` archives (a zip of `.npy` files, as `numpy.savez[_compressed]` writes
//! them) and single `.npy` arrays, checked against the model's data inputs.
//!
//! Supported `.npy` arrays: little-endian (or byte-order-free) C-order arrays of f16, f32, f64,
//! i8–i64, u8–u64, bool and fixed-width unicode strings (`<U`). One cast is made, and reported:
//! f64 arrays feeding an f32 input become f32 (numpy's default float is f64).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::engine::InputSpec;
use crate::error::{io_err, Result, RuntimeError};
use crate::tensor::{numel, DType, Element, HostTensor};

/// Named arrays of equal length along axis 0.
#[derive(Clone, Debug)]
pub struct Dataset {
    path: PathBuf,
    arrays: Vec<(String, HostTensor)>,
}

fn data_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Dataset {
    /// Reads an `.npz` (all its arrays) or an `.npy` (one array, named by the file stem).
    pub fn load(path: &Path) -> Result<Dataset> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let arrays = if bytes.starts_with(b"PK") {
            read_npz(path, &bytes)?
        } else if bytes.starts_with(NPY_MAGIC) {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![(name, parse_npy(&bytes).map_err(|m| data_err(path, m))?)]
        } else {
            return Err(data_err(path, "not an .npz or .npy file"));
        };
        Ok(Dataset {
            path: path.to_path_buf(),
            arrays,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The arrays, by name.
    pub fn arrays(&self) -> &[(String, HostTensor)] {
        &self.arrays
    }

    /// Number of samples (rows along axis 0; 0 for an empty dataset).
    pub fn rows(&self) -> usize {
        self.arrays
            .first()
            .and_then(|(_, t)| t.shape().first().copied())
            .unwrap_or(0)
    }

    /// Keeps exactly the arrays the model's data inputs need, in their order, checking names,
    /// dtypes and shapes (axis 0 is the sample axis, the other axes must match fixed dims).
    /// Returns notes about the casts it made.
    pub fn conform(&mut self, specs: &[InputSpec]) -> Result<Vec<String>> {
        let describe_expected = || {
            specs
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let describe_found = || {
            self.arrays
                .iter()
                .map(|(n, t)| format!("`{n}` {} {:?}", t.dtype(), t.shape()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut kept = Vec::with_capacity(specs.len());
        let mut notes = Vec::new();
        for spec in specs {
            let Some((_, array)) = self.arrays.iter().find(|(n, _)| n == &spec.name) else {
                return Err(data_err(
                    &self.path,
                    format!(
                        "no array named `{}`. The model's data inputs are {}; the file has {}",
                        spec.name,
                        describe_expected(),
                        if self.arrays.is_empty() {
                            "no arrays".into()
                        } else {
                            describe_found()
                        }
                    ),
                ));
            };
            let mut array = array.clone();
            if array.dtype() == DType::F64 && spec.dtype == DType::F32 {
                let values: Vec<f32> = array
                    .to_vec::<f64>()?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                array = HostTensor::from_vec(array.shape().to_vec(), values)?;
                notes.push(format!(
                    "{}: array `{}` is f64, cast to f32 for the model",
                    self.path.display(),
                    spec.name
                ));
            }
            if array.dtype() != spec.dtype {
                return Err(data_err(
                    &self.path,
                    format!(
                        "array `{}` is {}, the model expects {spec}",
                        spec.name,
                        array.dtype()
                    ),
                ));
            }
            let shape = array.shape();
            let fits = shape.len() == spec.shape.len()
                && !shape.is_empty()
                && shape[1..]
                    .iter()
                    .zip(&spec.shape[1..])
                    .all(|(have, want)| want.is_none_or(|w| w == *have));
            if !fits {
                return Err(data_err(
                    &self.path,
                    format!(
                        "array `{}` has shape {shape:?}, the model expects {spec} (axis 0 = samples)",
                        spec.name
                    ),
                ));
            }
            if let Some((i, v)) = find_float(&array, |v| !v.is_finite())? {
                return Err(data_err(
                    &self.path,
                    format!(
                        "array `{}` holds {v} at element {i} (sample {}): the loss of any batch \
                         with it is not a number; clean or impute the data",
                        spec.name,
                        i / row_len(&array)
                    ),
                ));
            }
            kept.push((spec.name.clone(), array));
        }
        if let Some(((first, a), (other, b))) = kept.first().and_then(|f| {
            kept.iter()
                .find(|k| k.1.shape()[0] != f.1.shape()[0])
                .map(|k| (f, k))
        }) {
            return Err(data_err(
                &self.path,
                format!(
                    "arrays `{first}` ({} samples) and `{other}` ({} samples) differ in length",
                    a.shape()[0],
                    b.shape()[0]
                ),
            ));
        }
        self.arrays = kept;
        if self.rows() == 0 {
            return Err(data_err(&self.path, "the data set has no samples"));
        }
        Ok(notes)
    }

    /// Checks a classification loss's labels: every value of the array `rule.array` must be a
    /// class index in `0..classes` or the ignore index. With the class count unknown only
    /// negative labels are checked.
    pub fn check_labels(&self, rule: &LabelRule) -> Result<()> {
        let Some((_, labels)) = self.arrays.iter().find(|(n, _)| n == &rule.array) else {
            return Ok(());
        };
        let classes = rule.classes.map_or(i64::MAX, |c| c as i64);
        let values = labels.to_f64_vec()?;
        let Some((i, bad)) = values.iter().enumerate().find(|&(_, &v)| {
            let v = v as i64;
            (v < 0 || v >= classes) && Some(v) != rule.ignore_index
        }) else {
            return Ok(());
        };
        let classes = rule
            .classes
            .map_or("a class index (0 or more)".to_string(), |c| {
                format!("a class index in 0..{c}")
            });
        let ignore = rule
            .ignore_index
            .map_or(String::new(), |i| format!(" nor the ignore index {i}"));
        Err(data_err(
            &self.path,
            format!(
                "array `{}` holds the label {bad} at element {i} (sample {}), which is neither \
                 {classes}{ignore}",
                rule.array,
                i / row_len(labels)
            ),
        ))
    }

    /// The samples `rows`, in that order, as a batch.
    pub fn batch(&self, rows: &[usize]) -> Result<Vec<(String, HostTensor)>> {
        self.arrays
            .iter()
            .map(|(n, t)| Ok((n.clone(), t.select_rows(rows)?)))
            .collect()
    }
}

/// The labels a classification loss accepts (from the contract's `config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRule {
    /// The data array holding the labels.
    pub array: String,
    /// Number of classes (the logits' last dimension), when known.
    pub classes: Option<usize>,
    /// The label that marks positions without a loss (PyTorch's −100), if the loss has one.
    pub ignore_index: Option<i64>,
}

/// Elements per sample (per index of axis 0).
fn row_len(t: &HostTensor) -> usize {
    t.shape().get(1..).map_or(1, numel).max(1)
}

/// The first value of a float tensor for which `pred` holds, with its flat index; `None` for
/// other dtypes. f32 and f64 are scanned in place (data sets and states can be large).
pub(crate) fn find_float(
    t: &HostTensor,
    pred: impl Fn(f64) -> bool,
) -> Result<Option<(usize, f64)>> {
    fn scan<T: Element + Into<f64>>(
        bytes: &[u8],
        pred: impl Fn(f64) -> bool,
    ) -> Option<(usize, f64)> {
        bytes
            .chunks_exact(std::mem::size_of::<T>())
            .map(|c| T::read_le(c).into())
            .enumerate()
            .find(|&(_, v)| pred(v))
    }
    let bytes = t.bytes().unwrap_or_default();
    Ok(match t.dtype() {
        DType::F32 => scan::<f32>(bytes, pred),
        DType::F64 => scan::<f64>(bytes, pred),
        DType::F16 | DType::BF16 => t
            .to_f64_vec()?
            .into_iter()
            .enumerate()
            .find(|&(_, v)| pred(v)),
        _ => None,
    })
}

fn read_npz(path: &Path, bytes: &[u8]) -> Result<Vec<(String, HostTensor)>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| data_err(path, format!("not a readable .npz archive: {e}")))?;
    let mut arrays = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| data_err(path, format!("archive entry {i}: {e}")))?;
        let name = entry
            .name()
            .map_err(|e| data_err(path, format!("archive entry {i}: {e}")))?
            .to_string();
        let Some(array_name) = name.strip_suffix(".npy") else {
            continue;
        };
        let mut content = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .read_to_end(&mut content)
            .map_err(|e| data_err(path, format!("reading `{name}`: {e}")))?;
        let array = parse_npy(&content).map_err(|m| data_err(path, format!("`{name}`: {m}")))?;
        arrays.push((array_name.to_string(), array));
    }
    Ok(arrays)
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Parses one `.npy` file (format versions 1, 2 and 3).
pub(crate) fn parse_npy(bytes: &[u8]) -> std::result::Result<HostTensor, String> {
    let rest = bytes
        .strip_prefix(NPY_MAGIC)
        .ok_or("not an .npy array (bad magic)")?;
    let (&major, rest) = rest.split_first().ok_or("truncated header")?;
    let (_minor, rest) = rest.split_first().ok_or("truncated header")?;
    let (header_len, rest) = match major {
        1 => {
            let (len, rest) = rest.split_at_checked(2).ok_or("truncated header")?;
            (usize::from(u16::from_le_bytes([len[0], len[1]])), rest)
        }
        2 | 3 => {
            let (len, rest) = rest.split_at_checked(4).ok_or("truncated header")?;
            (
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
                rest,
            )
        }
        v => return Err(format!(".npy format version {v} is not supported")),
    };
    let (header, data) = rest
        .split_at_checked(header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = header_value(header, "descr").ok_or("header has no descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if header_value(header, "fortran_order").map(str::trim) == Some("True") {
        return Err(
            "Fortran-order arrays are not supported: save with np.ascontiguousarray".into(),
        );
    }
    let shape = parse_shape(header_value(header, "shape").ok_or("header has no shape")?)?;
    let numel: usize = shape.iter().product();
    let (order, kind) = descr.split_at_checked(1).ok_or("empty descr")?;
    if order == ">" {
        return Err(format!(
            "big-endian dtype {descr} is not supported: use .astype('<{kind}')"
        ));
    }
    if let Some(width) = kind.strip_prefix('U') {
        let width: usize = width.parse().map_err(|_| format!("bad dtype {descr}"))?;
        return parse_unicode(data, numel, width)
            .and_then(|s| HostTensor::from_strings(shape, s).map_err(|e| e.to_string()));
    }
    let dtype = match kind {
        "f2" => DType::F16,
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i1" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "b1" => DType::Bool,
        _ => return Err(format!("dtype {descr} is not supported")),
    };
    let len = numel * dtype.size().unwrap_or(1);
    let payload = data
        .get(..len)
        .ok_or_else(|| format!("{} data bytes for {numel} {dtype} elements", data.len()))?;
    HostTensor::from_bytes(dtype, shape, payload.to_vec()).map_err(|e| e.to_string())
}

/// The text after `'key':` in the header dict, up to the next top-level comma.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header
        .find(&format!("'{key}'"))
        .map(|i| i + key.len() + 2)?;
    let after = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in after.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(after[..i].trim()),
            _ => {}
        }
    }
    Some(after.trim())
}

fn parse_shape(text: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {text}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().map_err(|_| format!("bad shape {text}")))
        .collect()
}

/// Fixed-width UTF-32LE strings, NUL-padded.
fn parse_unicode(
    data: &[u8],
    numel: usize,
    width: usize,
) -> std::result::Result<Vec<String>, String> {
    let item = width * 4;
    let payload = data
        .get(..numel * item)
        .ok_or("string data shorter than its shape")?;
    payload
        .chunks_exact(item.max(1))
        .take(numel)
        .map(|chunk| {
            chunk
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&c| c != 0)
                .map(|c| char::from_u32(c).ok_or("invalid character in string data"))
                .collect::<std::result::Result<String, _>>()
                .map_err(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = NPY_MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn parses_headers_and_types() {
        let t = parse_npy(&npy(
            "<i8",
            "(2,)",
            &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
        ))
        .unwrap();
        assert_eq!(t.to_vec::<i64>().unwrap(), vec![1, 2]);
        let t = parse_npy(&npy("|b1", "(1, 2)", &[1, 0])).unwrap();
        assert_eq!(t.shape(), &[1, 2]);
        assert_eq!(t.to_vec::<bool>().unwrap(), vec![true, false]);
        let t = parse_npy(&npy("<f4", "()", &1.5f32.to_le_bytes())).unwrap();
        assert_eq!(t.scalar_f64().unwrap(), 1.5);
        let t = parse_npy(&npy(
            "<U2",
            "(2,)",
            &[104, 0, 0, 0, 105, 0, 0, 0, 120, 0, 0, 0, 0, 0, 0, 0],
        ))
        .unwrap();
        assert_eq!(t.strings().unwrap(), ["hi", "x"]);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(parse_npy(&npy(">f4", "(1,)", &[0; 4]))
            .unwrap_err()
            .contains("big-endian"));
        assert!(parse_npy(&npy("|O", "(1,)", &[0; 8]))
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_npy(&npy("<f8", "(3,)", &[0; 8]))
            .unwrap_err()
            .contains("data bytes"));
        assert!(parse_npy(b"garbage").is_err());
    }

    fn spec(name: &str, dtype: DType, shape: &[Option<usize>]) -> InputSpec {
        InputSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn conform_checks_names_dtypes_shapes() {
        let x = HostTensor::from_vec(vec![3, 2], vec![0f64; 6]).unwrap();
        let y = HostTensor::from_vec(vec![3], vec![0i64; 3]).unwrap();
        let mut d = Dataset {
            path: "d.npz".into(),
            arrays: vec![
                ("x".into(), x),
                ("y".into(), y),
                ("extra".into(), HostTensor::scalar(1u8)),
            ],
        };
        let specs = [
            spec("x", DType::F32, &[None, Some(2)]),
            spec("y", DType::I64, &[None]),
        ];
        let notes = d.clone().conform(&specs).unwrap();
        assert_eq!(notes.len(), 1);
        let missing = d
            .clone()
            .conform(&[spec("z", DType::F32, &[None])])
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("no array named `z`") && missing.contains("`x` f64 [3, 2]"),
            "{missing}"
        );
        let wrong = d
            .clone()
            .conform(&[spec("y", DType::I32, &[None])])
            .unwrap_err()
            .to_string();
        assert!(wrong.contains("`y` is i64"), "{wrong}");
        let shape = d
            .conform(&[spec("x", DType::F32, &[None, Some(3)])])
            .unwrap_err()
            .to_string();
        assert!(shape.contains("shape [3, 2]"), "{shape}");
    }
}
