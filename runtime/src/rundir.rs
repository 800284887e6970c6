//! What keeps a run directory usable whatever happens to the process: an exclusive advisory lock
//! held for the whole run (a second gen-train on the same directory fails at once), removal of the
//! temporary files an interrupted run left, the writability probe, and the two newest checkpoints
//! (`checkpoint.bin` and `checkpoint.prev.bin`), the older one used when the newer is damaged.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::Checkpoint;
use crate::error::{io_err, Result, RuntimeError};
use crate::fsutil::{temp_owner, temp_path};

/// The lock file: locked (flock) by the gen-train using the directory, holding its process id.
pub(crate) const LOCK_FILE: &str = ".gen-train.lock";
/// The newest checkpoint.
pub(crate) const CHECKPOINT: &str = "checkpoint.bin";
/// The checkpoint before it.
pub(crate) const PREVIOUS_CHECKPOINT: &str = "checkpoint.prev.bin";
/// Prefix of the writability probe, followed by the process id.
const WRITE_TEST: &str = ".gen-train-write-test-";

pub(crate) fn run_dir_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::RunDir {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A run directory locked by this process; the lock goes when this is dropped or the process
/// ends, however it ends.
pub(crate) struct RunDir {
    path: PathBuf,
    _lock: File,
    /// The newest checkpoint could not be read and the run continues from the previous one: the
    /// next save replaces the damaged file instead of rotating it over the good one.
    newest_is_bad: bool,
}

impl RunDir {
    /// Locks the existing directory `dir`, or fails at once naming the process that holds it.
    pub(crate) fn lock(dir: &Path) -> Result<RunDir> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| run_dir_err(dir, format!("cannot open its lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                // The holder's pid is informative only; a read failure just leaves it out.
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "another gen-train".to_string(),
                    pid => format!("another gen-train (pid {pid})"),
                };
                return Err(run_dir_err(
                    dir,
                    format!(
                        "is in use by {holder}; two runs in one directory would mix their files: \
                         wait for it to end, or choose another --out"
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(run_dir_err(dir, format!("cannot lock {LOCK_FILE}: {e}")))
            }
        }
        file.set_len(0)
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(io_err(&path))?;
        Ok(RunDir {
            path: dir.to_path_buf(),
            _lock: file,
            newest_is_bad: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the temporary files an interrupted gen-train left here (`.NAME.tmp-PID` of atomic
    /// writes, `.gen-train-write-test-PID` probes): with the lock held no other gen-train writes
    /// here, so every such file not of this process is stale. Returns a note naming them.
    pub(crate) fn remove_stale_files(&self) -> Result<Option<String>> {
        let me = std::process::id();
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(io_err(&self.path))? {
            let entry = entry.map_err(io_err(&self.path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = temp_owner(&name).or_else(|| name.strip_prefix(WRITE_TEST)?.parse().ok());
            if owner.is_some_and(|pid| pid != me) && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok((!removed.is_empty()).then(|| {
            format!(
                "removed temporary files an interrupted run left in {}: {}",
                self.path.display(),
                removed.join(", ")
            )
        }))
    }

    /// Writes `ckpt` as the newest checkpoint, keeping the one it replaces as the previous. The
    /// previous becomes a second name (hard link) of the newest before the newest is replaced
    /// atomically, so both names exist at every moment; where hard links are not supported the
    /// newest is renamed instead (a crash before the new one is written then leaves only the
    /// previous, which a resume falls back to).
    pub(crate) fn save_checkpoint(&mut self, ckpt: &Checkpoint) -> Result<()> {
        let newest = self.path.join(CHECKPOINT);
        if !self.newest_is_bad && newest.is_file() {
            let previous = self.path.join(PREVIOUS_CHECKPOINT);
            let link = temp_path(&previous);
            // A leftover of this process id from an earlier run; absent is the normal case.
            let _ = std::fs::remove_file(&link);
            match std::fs::hard_link(&newest, &link) {
                Ok(()) => std::fs::rename(&link, &previous).map_err(io_err(&previous))?,
                Err(_) => std::fs::rename(&newest, &previous).map_err(io_err(&newest))?,
            }
        }
        ckpt.save(&newest)?;
        self.newest_is_bad = false;
        Ok(())
    }

    /// The newest readable checkpoint: `checkpoint.bin`, or `checkpoint.prev.bin` with a note
    /// saying why when the newest is damaged or missing.
    pub(crate) fn load_checkpoint(&mut self) -> Result<(Checkpoint, Option<String>)> {
        let newest = match Checkpoint::load(&self.path.join(CHECKPOINT)) {
            Ok(ckpt) => return Ok((ckpt, None)),
            Err(e) => e,
        };
        let previous = self.path.join(PREVIOUS_CHECKPOINT);
        if !previous.is_file() {
            return Err(newest);
        }
        match Checkpoint::load(&previous) {
            Ok(ckpt) => {
                self.newest_is_bad = true;
                let note = format!(
                    "{newest}; resuming from the previous checkpoint, {PREVIOUS_CHECKPOINT} (step {})",
                    ckpt.steps
                );
                Ok((ckpt, Some(note)))
            }
            Err(older) => Err(run_dir_err(
                &self.path,
                format!("no usable checkpoint: {newest}; {older}"),
            )),
        }
    }
}

/// Whether `dir` holds a checkpoint to resume from.
pub(crate) fn has_checkpoint(dir: &Path) -> bool {
    [CHECKPOINT, PREVIOUS_CHECKPOINT]
        .iter()
        .any(|name| dir.join(name).is_file())
}

/// Creates and removes a probe file: permissions, read-only mounts and full disks show up here,
/// before any training. The probe is removed even when writing it failed half-way.
pub(crate) fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!("{WRITE_TEST}{}", std::process::id()));
    let written = std::fs::write(&probe, b"ok");
    let removed = std::fs::remove_file(&probe);
    written
        .and(removed)
        .map_err(|e| run_dir_err(dir, format!("is not writable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunDir::lock(dir.path()).unwrap();
        let err = RunDir::lock(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains(&format!(
                "in use by another gen-train (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(held);
        assert!(RunDir::lock(dir.path()).is_ok());
    }

    #[test]
    fn stale_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::lock(dir.path()).unwrap();
        let me = std::process::id();
        let stale = [".checkpoint.bin.tmp-1", ".gen-train-write-test-2"];
        let kept = [
            "metrics.jsonl",
            ".notes.tmp-x",
            &format!(".loss.png.tmp-{me}"),
        ];
        for name in stale.iter().chain(&kept) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let note = run.remove_stale_files().unwrap().unwrap();
        assert!(
            note.contains(".checkpoint.bin.tmp-1, .gen-train-write-test-2"),
            "{note}"
        );
        for name in stale {
            assert!(!dir.path().join(name).exists(), "{name}");
        }
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name}");
        }
        assert_eq!(run.remove_stale_files().unwrap(), None);
    }
}
