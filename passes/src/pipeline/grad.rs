//! The gradient stages: loss attachment, training-mode lowering, parameter discovery,
//! autodiff. (Arrives with the autodiff issue.)

use super::{Context, Pass};
use crate::error::{Error, Result};

/// The passes of `--emit grad`, after cleanup.
pub fn passes(_cx: &Context) -> Result<Vec<Box<dyn Pass>>> {
    Err(Error::stage(
        "--emit grad",
        super::NotYet("gradients (autodiff)"),
    ))
}
