//! Atomic file writes: a temporary file in the same folder, fsync, rename over the target, fsync
//! the folder. A crash leaves either the old file or the new one, never a torn one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file that could not be written; names the target file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |error| WriteError {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically with `fill` producing the content.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    if path.file_name().is_none() {
        return Err(at(path)(std::io::Error::other("not a file path")));
    }
    let tmp = temp_path(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(at(path))?;
        let mut w = BufWriter::new(file);
        fill(&mut w).map_err(at(path))?;
        let file = w.into_inner().map_err(|e| at(path)(e.into_error()))?;
        file.sync_all().map_err(at(path))?;
        std::fs::rename(&tmp, path).map_err(at(path))?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name `.NAME.tmp-PID` beside `path` that this process writes before renaming.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The process id in the name of a temporary file [`write_atomic`] makes (`.NAME.tmp-PID`).
pub fn temp_owner(file_name: &str) -> Option<u32> {
    let (stem, pid) = file_name.rsplit_once(".tmp-")?;
    stem.strip_prefix('.')
        .filter(|name| !name.is_empty())
        .and(pid.parse().ok())
}

/// fsyncs the folder holding `path`, so a rename into it is durable.
fn sync_dir(path: &Path) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let tmp = temp_path(&path);
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(std::process::id()));
        assert_eq!(temp_owner("a.txt.tmp-12"), None);
        assert_eq!(temp_owner(".a.txt.tmp-x"), None);
    }

    #[test]
    fn failure_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("a.txt");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let err = write_atomic(Path::new("/"), b"x").unwrap_err();
        assert!(err.to_string().contains("not a file path"), "{err}");
        let path = dir.path().join("b.txt");
        let err =
            write_atomic_with(&path, |_| Err(std::io::Error::other("fill failed"))).unwrap_err();
        assert!(err.to_string().contains("fill failed"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
