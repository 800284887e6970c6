//! Writing a compiled model and its companions (`OUT.eval.onnx`, external data `OUT.onnx.data`)
//! without ever replacing the files they were compiled from.
//!
//! Every file [`write`] would create is compared with the input model and the external-data files
//! the input reads, by file identity (so `./m.onnx`, `dir/../m.onnx`, a symlink or a hard link to
//! the input all count as the input). A clash is an error before anything is written.

use crate::compile::Compiled;
use crate::ir::Model;
use crate::onnx::{data_path, save, ExportError, ExportOptions, ImportError};
use crate::pipeline::contract::set_eval_model;
use onnx_protobuf::{GraphProto, Message, ModelProto, TensorProto};
use std::path::{Path, PathBuf};

/// Why the compiled model was not written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder `-o` names does not exist.
    #[error("-o {}: the folder {} does not exist", output.display(), folder.display())]
    NoFolder { output: PathBuf, folder: PathBuf },
    /// A file that would be written is the input model or one of its external-data files.
    #[error(
        "-o {}: writing {} ({what}) would overwrite {}{}; choose another -o",
        output.display(),
        written.display(),
        input.display(),
        if *external { ", external data of the input model" } else { ", the input model" }
    )]
    Overwrite {
        output: PathBuf,
        /// What `written` is: "the compiled model", "its external data", "the eval companion", ...
        what: String,
        written: PathBuf,
        /// The input file (the model, or its external-data file when `external`).
        input: PathBuf,
        external: bool,
    },
    /// The input's external-data list could not be read again to protect those files.
    #[error(transparent)]
    Input(#[from] ImportError),
    #[error(transparent)]
    Export(#[from] ExportError),
}

/// Fails unless `output`'s folder exists (checked before compiling, so a typo fails fast).
pub fn check_folder(output: &Path) -> Result<(), OutputError> {
    match output.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(folder) if !folder.is_dir() => Err(OutputError::NoFolder {
            output: output.to_path_buf(),
            folder: folder.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// `dir/stem.SUFFIX.onnx` for `dir/stem.onnx`: where the companion `suffix` of `output` goes.
pub fn companion_path(output: &Path, suffix: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    output.with_file_name(format!("{stem}.{suffix}.onnx"))
}

/// The files a compilation must not write over: the input model file and the external-data
/// files it reads.
#[derive(Clone, Debug)]
pub struct InputFiles {
    /// (path, is an external-data file)
    files: Vec<(PathBuf, bool)>,
}

impl InputFiles {
    /// The files of `model`, just loaded from `path`. Only when `model` read external data is
    /// `path` decoded again (then it is small) to list the external-data files.
    pub fn of(path: &Path, model: &Model) -> Result<InputFiles, OutputError> {
        let mut files = vec![(path.to_path_buf(), false)];
        let external = model
            .graph
            .initializers()
            .any(|(v, _)| model.graph.value(v).external);
        if external {
            files.extend(external_files(path)?.into_iter().map(|p| (p, true)));
        }
        Ok(InputFiles { files })
    }

    /// Fails if a `planned` file (path, what it is) is one of these files.
    fn check(&self, output: &Path, planned: &[(PathBuf, String)]) -> Result<(), OutputError> {
        for (written, what) in planned {
            for (kept, external) in &self.files {
                // Only an existing file can be an input; identity covers links and other spellings.
                if same_file::is_same_file(written, kept).unwrap_or(false) {
                    return Err(OutputError::Overwrite {
                        output: output.to_path_buf(),
                        what: what.clone(),
                        written: written.clone(),
                        input: kept.clone(),
                        external: *external,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Writes `compiled` to `output` and its companions beside it (the train graph's contract then
/// names its eval companion), after checking that none of these files, external data included,
/// is one of `inputs`. Returns the companion models written. On failure nothing is left behind.
pub fn write(
    compiled: &mut Compiled,
    inputs: &InputFiles,
    output: &Path,
    export: &ExportOptions,
) -> Result<Vec<PathBuf>, OutputError> {
    let companions: Vec<PathBuf> = compiled
        .companions
        .iter()
        .map(|(suffix, _)| companion_path(output, suffix))
        .collect();
    let mut planned = vec![(output.to_path_buf(), "the compiled model".to_string())];
    planned.extend(
        data_path(&compiled.model, output, export).map(|d| (d, "its external data".to_string())),
    );
    for ((suffix, m), path) in compiled.companions.iter().zip(&companions) {
        planned.push((path.clone(), format!("the {suffix} companion")));
        planned.extend(
            data_path(m, path, export)
                .map(|d| (d, format!("the {suffix} companion's external data"))),
        );
    }
    inputs.check(output, &planned)?;

    let mut written = Vec::new();
    let mut result = Ok(());
    for ((suffix, m), path) in compiled.companions.iter().zip(&companions) {
        result = save(m, path, export);
        if result.is_err() {
            break;
        }
        written.push(path.clone());
        written.extend(data_path(m, path, export));
        if suffix == "eval" {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            set_eval_model(&mut compiled.model, &file.unwrap_or_default());
        }
    }
    if let Err(e) = result.and_then(|()| save(&compiled.model, output, export)) {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e.into());
    }
    Ok(companions)
}

/// The external-data files the model file `path` refers to (tensors of every graph, subgraph
/// and function), as paths beside it.
fn external_files(path: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let io = |e: std::io::Error| ImportError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let mp = ModelProto::parse_from_bytes(&bytes).map_err(|error| ImportError::Decode {
        path: path.to_path_buf(),
        error,
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    let mut add = |tp: &TensorProto| {
        let location = tp.external_data.iter().find(|e| e.key == "location");
        if let Some(e) = location {
            let file = base.join(&e.value);
            if !files.contains(&file) {
                files.push(file);
            }
        }
    };
    fn walk(g: &GraphProto, add: &mut dyn FnMut(&TensorProto)) {
        g.initializer.iter().for_each(&mut *add);
        for n in &g.node {
            walk_attributes(n, add);
        }
    }
    fn walk_attributes(n: &onnx_protobuf::NodeProto, add: &mut dyn FnMut(&TensorProto)) {
        for a in &n.attribute {
            a.t.as_ref()
                .into_iter()
                .chain(&a.tensors)
                .for_each(&mut *add);
            for g in a.g.as_ref().into_iter().chain(&a.graphs) {
                walk(g, add);
            }
        }
    }
    if let Some(g) = mp.graph.as_ref() {
        walk(g, &mut add);
    }
    for f in &mp.functions {
        for n in &f.node {
            walk_attributes(n, &mut add);
        }
    }
    Ok(files)
}
