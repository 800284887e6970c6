//! Checkpoints: every state tensor bit for bit, the step count, both batch streams' positions and
//! the epoch, in one file written atomically and sealed with a checksum.
//!
//! Layout of `checkpoint.bin`: the 8 bytes `GENCKPT2`, a little-endian u64 length, that many bytes
//! of JSON ([`CheckpointMeta`], which indexes the tensors), the tensors' little-endian bytes, and
//! last the little-endian u32 CRC-32 (IEEE) of everything before it. A CRC-32 catches every
//! single-bit flip and every burst of up to 32 flipped bits, so a damaged file is refused before
//! any of it is used.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_err, Result, RuntimeError};
use crate::fsutil::write_atomic_with;
use crate::stream::StreamPosition;
use crate::tensor::{DType, HostTensor};

const MAGIC: &[u8; 8] = b"GENCKPT2";
/// The first format, without a checksum.
const MAGIC_V1: &[u8; 8] = b"GENCKPT1";

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
            let mut sealed = Sealed {
                inner: w,
                crc: crc32fast::Hasher::new(),
            };
            sealed.write_all(MAGIC)?;
            sealed.write_all(&(json.len() as u64).to_le_bytes())?;
            sealed.write_all(&json)?;
            for (_, t) in &self.state {
                sealed.write_all(t.bytes().unwrap_or_default())?;
            }
            let crc = sealed.crc.finalize();
            sealed.inner.write_all(&crc.to_le_bytes())
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::save`], verifying its checksum first.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Checkpoint::decode(path, &bytes)
    }

    /// Decodes checkpoint bytes; `path` names the file in errors.
    fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
        if bytes.starts_with(MAGIC_V1) {
            return Err(ckpt_err(
                path,
                "written by an older gen-train in a format without a checksum (GENCKPT1), \
                 which this version does not read: start the run again",
            ));
        }
        let (sealed, stored) = bytes
            .split_last_chunk::<4>()
            .filter(|(sealed, _)| sealed.starts_with(MAGIC))
            .ok_or_else(|| {
                ckpt_err(
                    path,
                    format!(
                        "not a gen-train checkpoint ({} bytes, no GENCKPT2 header)",
                        bytes.len()
                    ),
                )
            })?;
        let stored = u32::from_le_bytes(*stored);
        let computed = crc32fast::hash(sealed);
        if stored != computed {
            return Err(ckpt_err(
                path,
                format!(
                    "corrupt: checksum mismatch (stored {stored:08x}, computed {computed:08x}); \
                     the file was damaged after it was written"
                ),
            ));
        }
        let rest = &sealed[MAGIC.len()..];
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

/// A writer that passes bytes on and keeps their CRC-32.
struct Sealed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Sealed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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
        let old = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(old.contains("without a checksum"), "{old}");
    }

    /// A CRC-32 detects every single-bit error: flipping any one bit of a checkpoint (magic,
    /// header length, JSON, tensor bytes or the checksum itself) makes it unreadable.
    #[test]
    fn every_single_bit_flip_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.bin");
        Checkpoint {
            steps: 3,
            epoch: 1,
            train_stream: StreamPosition::default(),
            probe_stream: StreamPosition::default(),
            contract_fingerprint: fingerprint("{}"),
            state: vec![
                (
                    "w".into(),
                    HostTensor::from_vec(vec![2], vec![0.5f32, -1.0]).unwrap(),
                ),
                ("lr".into(), HostTensor::scalar(0.2f32)),
            ],
        }
        .save(&path)
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(Checkpoint::decode(&path, &bytes).is_ok());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                Checkpoint::decode(&path, &flipped).is_err(),
                "flip of bit {bit} (byte {}) went unnoticed",
                bit / 8
            );
        }
        for cut in [0, 8, 16, bytes.len() - 1] {
            assert!(
                Checkpoint::decode(&path, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
