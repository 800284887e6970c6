//! Atomic file writes (gen-format's), with errors as [`RuntimeError::Io`](crate::RuntimeError).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::error::Result;

pub(crate) use gen_format::fsutil::{temp_owner, temp_path};

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(gen_format::write_atomic(path, bytes)?)
}

/// Writes `path` atomically with `fill` producing the content.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    Ok(gen_format::write_atomic_with(path, fill)?)
}
