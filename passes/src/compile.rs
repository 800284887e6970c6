//! The entry point: which pipeline runs for each `--emit` mode.
//!
//! Order of the training pipelines (each later stage needs the earlier ones):
//! 0. inline model-local functions: every operator must be visible to the stages below;
//! 1. cleanup (constant folding + DCE to a fixed point): static shapes for what follows;
//! 2. grad stages (`pipeline::grad`): loss attachment, training-mode lowering of
//!    BatchNorm/Dropout, parameter discovery, autodiff;
//! 3. train stages (`pipeline::train`): optimizer update, GeN controller, contract.
//!
//! Cleanup runs again at the end of each pipeline to drop what the stages left unused. After
//! the train pipeline the companions step compiles the eval graph from the imported model.
//!
//! This driver sits on top of the pipeline modules: it imports them, none of them imports it.

use crate::error::Result;
use crate::ir::Model;
use crate::options::CompileOptions;
use crate::pipeline::{self, cleanup_passes, Context, PassManager, PassRecord};

/// What `gen-compile` writes (`--emit`; variants documented here, not on each, which clap would
/// list in `--help`):
/// - `Train`: the full training step (SPEC section 3);
/// - `Grad`: loss and one gradient per parameter;
/// - `Eval`: forward + loss (+ accuracy), parameters as inputs, no updates;
/// - `Forward`: the model itself after import, verification and cleanup (the round-trip check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Emit {
    Train,
    Grad,
    Eval,
    Forward,
}

/// The compiled model and the companion files written beside it.
#[derive(Debug)]
pub struct Compiled {
    pub model: Model,
    /// (file-name suffix such as "eval", model): written as `OUT-stem.SUFFIX.onnx`.
    pub companions: Vec<(String, Model)>,
    pub records: Vec<PassRecord>,
    /// IR printed after the passes named in `debug.print_after`.
    pub printed: Vec<(String, String)>,
    /// What the passes want the user to know (e.g. parameters an exporter folded away).
    pub warnings: Vec<String>,
}

/// Runs the pipeline for `emit` on `model`.
pub fn compile(
    mut model: Model,
    emit: Emit,
    options: &CompileOptions,
    debug: &pipeline::Debug,
) -> Result<Compiled> {
    options.validate()?;
    let mut cx = Context {
        options: options.clone(),
        model_inputs: model
            .graph
            .inputs
            .iter()
            .filter(|&&v| model.graph.value(v).init.is_none())
            .map(|&v| model.graph.name(v).to_string())
            .collect(),
        model_outputs: model
            .graph
            .outputs
            .iter()
            .map(|&v| model.graph.name(v).to_string())
            .collect(),
        ..Context::default()
    };
    let mut passes: Vec<Box<dyn pipeline::Pass>> = Vec::new();
    if emit != Emit::Forward {
        passes.push(Box::new(pipeline::inline::InlineFunctions));
    }
    passes.extend(cleanup_passes());
    match emit {
        Emit::Forward => {}
        Emit::Grad => {
            passes.extend(pipeline::grad::passes(&cx)?);
            passes.push(pipeline::grad::grad_outputs_pass());
        }
        Emit::Eval => passes.extend(pipeline::train::eval_passes(&cx)?),
        Emit::Train => {
            passes.extend(pipeline::grad::passes(&cx)?);
            passes.extend(pipeline::train::passes(&cx)?);
        }
    }
    if emit != Emit::Forward {
        passes.extend(cleanup_passes());
    }
    let mut pm = PassManager::new(passes);
    pm.debug = debug.clone();
    let start = model.clone();
    pm.run(&mut model, &mut cx)?;
    let companions = if emit == Emit::Train {
        companions(start, options, debug)?
    } else {
        Vec::new()
    };
    Ok(Compiled {
        model,
        companions,
        records: pm.records,
        printed: pm.printed,
        warnings: cx.warnings,
    })
}

/// Companion files of a train graph (the eval graph), compiled from the imported model.
fn companions(
    start: Model,
    options: &CompileOptions,
    debug: &pipeline::Debug,
) -> Result<Vec<(String, Model)>> {
    let eval = compile(start, Emit::Eval, options, debug)?;
    Ok(vec![("eval".to_string(), eval.model)])
}
