//! The training stages: optimizer update, GeN controller and the train.onnx contract; and the
//! eval graph. (Arrives with the optimizer/GeN issue.)

use super::{Context, Debug, Pass};
use crate::error::{Error, Result};
use crate::ir::Model;
use crate::options::CompileOptions;

/// The passes of `--emit train` that follow the gradient stages.
pub fn passes(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Err(Error::stage(
        "--emit train",
        super::NotYet("optimizer and GeN stages"),
    ))
}

/// The passes of `--emit eval`, after cleanup.
pub fn eval_passes(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Err(Error::stage("--emit eval", super::NotYet("the eval graph")))
}

/// Companion files of a train graph (the eval graph), compiled from the imported model.
pub fn companions(
    _start: Model,
    _options: &CompileOptions,
    _debug: &Debug,
) -> Result<Vec<(String, Model)>> {
    Ok(Vec::new())
}
