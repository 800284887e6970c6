//! Checkpoints: every state tensor bit for bit, the step count, both batch streams' positions and
//! the epoch, in one file written atomically.
//!
//! Layout of `checkpoint.bin`: the 8 bytes `GENCKPT1`, a little-endian u64 length, that many bytes
//! of JSON ([`CheckpointMeta`], which indexes the tensors), then the tensors' little-endian bytes.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, RuntimeError};
use crate::fsutil::write_atomic_with;
use crate::stream::StreamPosition;
use crate::tensor::{DType, HostTensor};

const MAGIC: &[u8; 8] = b"GENCKPT1";

/// A training run's resumable position.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Steps done.
    pub steps: u64,
    /// 1-based epoch of the last training batch.
    pub epoch: u64,
    pub train_stream: StreamPosition,
    pub probe_stream: StreamPosition,
    /// Fingerprint of the model's contract, to refuse resuming a different model.
    pub contract_fingerprint: String,
    pub state: Vec<(String, HostTensor)>,
}

#[derive(Serialize, Deserialize)]
struct TensorEntry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
}

/// The JSON header of a checkpoint file.
#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    steps: u64,
    epoch: u64,
    train_stream: StreamPosition,
    probe_stream: StreamPosition,
    contract_fingerprint: String,
    tensors: Vec<TensorEntry>,
}

fn ckpt_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::with_capacity(self.state.len());
        let mut offset = 0;
        for (name, t) in &self.state {
            let bytes = t
                .bytes()
                .ok_or_else(|| ckpt_err(path, format!("state `{name}` is a string tensor")))?;
            tensors.push(TensorEntry {
                name: name.clone(),
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                offset,
                len: bytes.len(),
            });
            offset += bytes.len();
        }
        let meta = CheckpointMeta {
            steps: self.steps,
            epoch: self.epoch,
            train_stream: self.train_stream,
            probe_stream: self.probe_stream,
            contract_fingerprint: self.contract_fingerprint.clone(),
            tensors,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| ckpt_err(path, e.to_string()))?;
        write_atomic_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&(json.len() as u64).to_le_bytes())?;
            w.write_all(&json)?;
            for (_, t) in &self.state {
                w.write_all(t.bytes().unwrap_or_default())?;
            }
            Ok(())
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| ckpt_err(path, "not a gen-train checkpoint"))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| ckpt_err(path, "truncated header"))?;
        let len = usize::try_from(u64::from_le_bytes(*len))
            .map_err(|_| ckpt_err(path, "bad header length"))?;
        let (json, blob) = rest
            .split_at_checked(len)
            .ok_or_else(|| ckpt_err(path, "truncated header"))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(json).map_err(|e| ckpt_err(path, format!("bad header: {e}")))?;
        let state = meta
            .tensors
            .into_iter()
            .map(|e| {
                let data = blob
                    .get(e.offset..e.offset.saturating_add(e.len))
                    .ok_or_else(|| ckpt_err(path, format!("tensor `{}` is truncated", e.name)))?;
                let t = HostTensor::from_bytes(e.dtype, e.shape, data.to_vec())
                    .map_err(|err| ckpt_err(path, format!("tensor `{}`: {err}", e.name)))?;
                Ok((e.name, t))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Checkpoint {
            steps: meta.steps,
            epoch: meta.epoch,
            train_stream: meta.train_stream,
            probe_stream: meta.probe_stream,
            contract_fingerprint: meta.contract_fingerprint,
            state,
        })
    }
}

/// FNV-1a 64-bit of `text`, as hex: a stable fingerprint (not a security hash).
pub(crate) fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.bin");
        let ckpt = Checkpoint {
            steps: 7,
            epoch: 2,
            train_stream: StreamPosition {
                epoch: 1,
                offset: 3,
            },
            probe_stream: StreamPosition {
                epoch: 0,
                offset: 9,
            },
            contract_fingerprint: fingerprint("{}"),
            state: vec![
                (
                    "w".into(),
                    HostTensor::from_vec(vec![2], vec![f32::NAN, -0.0]).unwrap(),
                ),
                ("step".into(), HostTensor::scalar(7i64)),
            ],
        };
        ckpt.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.state[0].1.bytes(), ckpt.state[0].1.bytes());
        assert_eq!(back.steps, 7);
        assert_eq!(back.train_stream, ckpt.train_stream);
        std::fs::write(&path, b"GENCKPT1\x05").unwrap();
        assert!(Checkpoint::load(&path).is_err());
    }
}
