//! The pass manager: runs an explicit ordered list of passes, verifies the IR after every pass
//! (a failure names the pass), repeats runs of cleanup passes to a fixed point, and prints or
//! dumps the text form after chosen passes.

use super::context::Context;
use crate::error::{Error, Result};
use crate::ir::text::model_to_text;
use crate::ir::verify::verify;
use crate::ir::Model;
use std::path::PathBuf;

/// One compiler pass.
pub trait Pass {
    /// Short kebab-case name, used by `--print-after` and in errors.
    fn name(&self) -> &'static str;
    /// Runs the pass; returns whether it changed the model.
    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool>;
    /// Cleanup passes are repeated until none changes anything.
    fn is_cleanup(&self) -> bool {
        false
    }
}

/// How the manager reports between passes.
#[derive(Debug, Default, Clone)]
pub struct Debug {
    /// Print the IR after passes with these names ("all" for every pass).
    pub print_after: Vec<String>,
    /// Write `NN-pass.txt` with the IR after every pass into this folder.
    pub dump_dir: Option<PathBuf>,
}

/// What one pass did, for `--verbose` and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct PassRecord {
    pub name: &'static str,
    pub changed: bool,
    pub nodes_after: usize,
}

/// Runs passes in order, verifying after each.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    pub debug: Debug,
    pub records: Vec<PassRecord>,
    /// Where printed IR goes (stdout by default; tests capture it).
    pub printed: Vec<(String, String)>,
}

/// Upper bound on cleanup rounds (a pass that keeps reporting changes is a bug; stop anyway).
const MAX_CLEANUP_ROUNDS: usize = 16;

impl PassManager {
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Self {
        PassManager {
            passes,
            debug: Debug::default(),
            records: Vec::new(),
            printed: Vec::new(),
        }
    }

    /// The names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    pub fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<()> {
        let mut i = 0;
        while i < self.passes.len() {
            if self.passes[i].is_cleanup() {
                // a run of consecutive cleanup passes loops to a fixed point
                let end = (i..self.passes.len())
                    .find(|&j| !self.passes[j].is_cleanup())
                    .unwrap_or(self.passes.len());
                for _ in 0..MAX_CLEANUP_ROUNDS {
                    let mut any = false;
                    for j in i..end {
                        any |= self.run_one(j, m, cx)?;
                    }
                    if !any {
                        break;
                    }
                }
                i = end;
            } else {
                self.run_one(i, m, cx)?;
                i += 1;
            }
        }
        Ok(())
    }

    fn run_one(&mut self, i: usize, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let pass = &mut self.passes[i];
        let name = pass.name();
        let changed = pass.run(m, cx)?;
        verify(&m.graph).map_err(|error| Error::Verify {
            after: format!("pass '{name}'"),
            error,
        })?;
        self.records.push(PassRecord {
            name,
            changed,
            nodes_after: m.graph.node_count(),
        });
        let want = self
            .debug
            .print_after
            .iter()
            .any(|p| p == name || p == "all");
        if want || self.debug.dump_dir.is_some() {
            let text = model_to_text(m);
            if let Some(dir) = &self.debug.dump_dir {
                let file = dir.join(format!("{:02}-{name}.txt", self.records.len()));
                std::fs::write(&file, &text)
                    .map_err(|error| Error::DumpDir { path: file, error })?;
            }
            if want {
                self.printed.push((name.to_string(), text));
            }
        }
        Ok(changed)
    }
}
