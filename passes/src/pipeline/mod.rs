//! The passes and the pipelines they form.
//!
//! `manager.rs`: the `Pass` trait and the pass manager (an explicit ordered list of passes; each
//! reports whether it changed the model; the IR is verified after every pass and a failure names
//! the pass; the text form can be printed after any pass: `--print-after NAME`, `--dump-dir
//! DIR`). `context.rs`: what the passes hand to each other. Cleanup passes (constant folding,
//! CSE, dead-code elimination) run to a fixed point; training passes run once, in the order
//! `grad.rs` and `train.rs` give.
//!
//! Layering (ARCHITECTURE.md, checked by `tests/module_layering.rs`): a pass file may import
//! `context`, `manager`, the shared helpers (`build`, `layout`, `optimizer`) and the passes it
//! schedules; nothing below imports this file or the pipeline lists above it.

pub mod build;
pub mod constfold;
pub mod context;
pub mod contract;
pub mod cse;
pub mod dce;
pub mod eval;
pub mod gen;
pub mod grad;
pub mod inline;
pub mod layout;
pub mod loss;
pub mod manager;
pub mod optimizer;
pub mod params;
pub mod sequences;
pub mod train;
pub mod training_mode;

pub use context::Context;
pub use manager::{Debug, Pass, PassManager, PassRecord};

/// The cleanup passes every pipeline starts with.
pub fn cleanup_passes() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(constfold::ConstantFolding),
        Box::new(cse::CommonSubexpressions),
        Box::new(dce::DeadCodeElimination),
    ]
}
