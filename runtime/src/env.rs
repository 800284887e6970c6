//! Finding and loading the ONNX Runtime shared library, once per process.
//!
//! The library comes from the PyPI wheel (`onnxruntime`, or `onnxruntime-gpu` for CUDA) installed in
//! the project's `.venv` by `scripts/setup.sh`. Search order: an explicit path (`--ort-lib`), the
//! `ORT_DYLIB_PATH` environment variable, then `.venv/lib/python3*/site-packages/onnxruntime/capi/
//! libonnxruntime.so*` in the current directory, the executable's directory and all their parents.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;

use crate::error::{Result, RuntimeError};

/// Proof that ONNX Runtime is loaded, and where from. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ort {
    env: Environment,
    library: PathBuf,
}

static LOADED: Mutex<Option<Ort>> = Mutex::new(None);

impl Ort {
    /// Loads ONNX Runtime (first call) or returns the already loaded one.
    ///
    /// An explicit `library` that differs from the one already loaded is an error: a process can
    /// hold only one ONNX Runtime.
    pub fn load(library: Option<&Path>) -> Result<Ort> {
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ort) = loaded.as_ref() {
            return match library {
                Some(wanted) if !same_file(wanted, &ort.library) => {
                    Err(RuntimeError::OrtAlreadyLoaded {
                        wanted: wanted.to_path_buf(),
                        loaded: ort.library.clone(),
                    })
                }
                _ => Ok(ort.clone()),
            };
        }
        let path = find_library(library)?;
        let load_err = |message: String| RuntimeError::OrtLoad {
            path: path.clone(),
            message,
        };
        let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
        let env = builder
            .with_name("gen-runtime")
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        // Errors reach the caller as `RuntimeError`s; ONNX Runtime's own log would repeat them on
        // stderr. ORT_LOG=warning (or info, verbose) brings the log back for debugging.
        if std::env::var_os("ORT_LOG").is_none() {
            env.set_log_level(ort::logging::LogLevel::Fatal);
        }
        let ort = Ort { env, library: path };
        *loaded = Some(ort.clone());
        Ok(ort)
    }

    /// The loaded shared library.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The Python `site-packages` folder the library was installed into, if it came from a wheel.
    pub(crate) fn site_packages(&self) -> Option<&Path> {
        let capi = self.library.parent()?;
        let package = capi.parent()?;
        (capi.file_name()? == "capi" && package.file_name()? == "onnxruntime")
            .then(|| package.parent())
            .flatten()
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.env
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Resolves which ONNX Runtime library to load (see the module docs for the order).
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return existing(path, "--ort-lib");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&path), "ORT_DYLIB_PATH");
    }
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    for start in &starts {
        for dir in start.ancestors() {
            if let Some(found) = venv_library(dir) {
                return Ok(found);
            }
        }
    }
    Err(RuntimeError::OrtNotFound {
        searched: starts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" or "),
    })
}

fn existing(path: &Path, given_by: &'static str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(RuntimeError::OrtNotAFile {
            given_by,
            path: path.to_path_buf(),
        })
    }
}

/// `DIR/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`, the versioned file
/// preferred (the wheel ships `libonnxruntime.so.1.31.1`).
fn venv_library(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons.into_iter().rev().find_map(|python| {
        let capi = python.join("site-packages/onnxruntime/capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        // Longest name first: libonnxruntime.so.1.31.1 before libonnxruntime.so.
        libs.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        libs.into_iter().next()
    })
}
