//! Parameter discovery (SPEC 4): the trainable parameters are the float initializers the loss
//! depends on through differentiable edges, except
//! - BatchNorm running statistics (`Context::buffers`: state, not parameters);
//! - initializers whose names the exporters generate (`onnx::…`, `/…`, `val_…`, FX node names
//!   such as `t_3` or `embedding_1`): values the exporter computed from parameters and folded
//!   (the dynamo exporter's default `optimize=True`), kept constant with a warning when they
//!   look like parameters;
//! - names matching `--freeze REGEX` (a search anywhere in the name).
//!
//! A tied weight (one initializer used twice) is one parameter; autodiff sums its uses.
//! Each parameter becomes a graph input whose initializer is kept as its default, so no
//! runtime constant-folds it.
//!
//! Needs: the loss (`Context::loss`), training-mode lowering done. Guarantees:
//! `Context::params` in initializer order, each a graph input with a default.

use super::training_mode::make_state;
use super::{Context, Pass};
use crate::autodiff::loss_dependencies;
use crate::error::{Error, Result};
use crate::ir::text::tensor_text;
use crate::ir::{Model, Op, Tensor, ValueId};
use std::collections::HashSet;

pub struct DiscoverParams;

/// A folded constant with at least this many elements looks like a parameter.
const PARAMETER_LIKE_ELEMENTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ParamError {
    #[error("parameter discovery needs the loss, but no loss was attached")]
    NoLoss,
    #[error(
        "no trainable parameters: no floating-point initializer reaches the loss '{loss}'{why}"
    )]
    NoneFound { loss: String, why: String },
}

impl Pass for DiscoverParams {
    fn name(&self) -> &'static str {
        "discover-params"
    }

    fn run(&mut self, m: &mut Model, cx: &mut Context) -> Result<bool> {
        let err = |e| Error::stage("parameters", e);
        let loss = cx.loss.ok_or_else(|| err(ParamError::NoLoss))?;
        let g = &mut m.graph;
        let deps = loss_dependencies(g, loss);
        let buffers: HashSet<ValueId> = cx.buffers.iter().map(|&(i, _)| i).collect();
        let mut params = Vec::new();
        let mut frozen = 0usize;
        for v in g.value_ids().collect::<Vec<_>>() {
            let val = g.value(v);
            let Some(t) = &val.init else { continue };
            if !t.dtype.is_float() || !deps.contains(&v) || buffers.contains(&v) {
                continue;
            }
            if exporter_generated(&val.name) {
                if let Some(w) = folded_warning(&val.name, t) {
                    cx.warnings.push(w);
                }
                continue;
            }
            if cx
                .options
                .freeze
                .as_ref()
                .is_some_and(|re| re.is_match(&val.name))
            {
                frozen += 1;
                continue;
            }
            params.push(v);
        }
        warn_folded_constants(m, &deps, cx);
        let g = &mut m.graph;
        if let Some(re) = &cx.options.freeze {
            if frozen == 0 {
                cx.warnings
                    .push(format!("--freeze '{re}' matched no trainable parameter"));
            }
        }
        if params.is_empty() {
            let why = match frozen {
                0 => String::new(),
                n => format!(" ({n} frozen by --freeze)"),
            };
            return Err(err(ParamError::NoneFound {
                loss: g.name(loss).to_string(),
                why,
            }));
        }
        for &p in &params {
            make_state(g, p);
        }
        cx.params = params;
        Ok(true)
    }
}

/// `Constant` nodes on the loss path that hold parameter-sized float tensors under generated
/// names: what the dynamo exporter leaves when it folds parameters with `optimize=True`.
fn warn_folded_constants(m: &Model, deps: &HashSet<ValueId>, cx: &mut Context) {
    let g = &m.graph;
    for &n in g.order() {
        let node = g.node(n);
        let Some(out) = node.output(0) else { continue };
        if node.op != Op::Constant || !deps.contains(&out) {
            continue;
        }
        if let Some(t) = g.constant(out) {
            if let Some(w) = folded_warning(g.name(out), t) {
                cx.warnings.push(w);
            }
        }
    }
}

fn folded_warning(name: &str, t: &Tensor) -> Option<String> {
    (t.dtype.is_float() && t.numel() >= PARAMETER_LIKE_ELEMENTS).then(|| {
        format!(
            "constant '{name}' ({}) looks like a parameter the exporter folded (torch.onnx.export \
             with dynamo=True and optimize=True?); it is not trained. Re-export with \
             optimize=False to train every parameter under its own name",
            tensor_text(t)
        )
    })
}

/// Names exporters give to values they create (not to the model's parameters).
pub fn exporter_generated(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "onnx::",
        "/",
        "val_",
        "_val_",
        "_tensor_constant",
        "lifted_tensor",
        "c_lifted_tensor",
        "const_fold_opt",
        "ortshared_",
    ];
    if PREFIXES.iter().any(|p| name.starts_with(p)) {
        return true;
    }
    // FX node names: an aten operator name with an optional _N suffix (`t`, `permute_3`)
    const FX_OPS: &[&str] = &[
        "t",
        "mm",
        "bmm",
        "addmm",
        "matmul",
        "linear",
        "permute",
        "transpose",
        "view",
        "reshape",
        "_unsafe_view",
        "expand",
        "clone",
        "contiguous",
        "unsqueeze",
        "squeeze",
        "slice",
        "select",
        "index",
        "embedding",
        "cat",
        "stack",
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "pow",
        "sqrt",
        "rsqrt",
        "exp",
        "tanh",
        "masked_fill",
        "where",
        "full",
        "ones",
        "zeros",
        "arange",
        "repeat",
        "flatten",
        "split",
        "getitem",
        "to",
        "_to_copy",
        "convert_element_type",
        "lift_fresh_copy",
        "detach",
        "alias",
    ];
    let base = match name.rsplit_once('_') {
        Some((b, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    };
    FX_OPS.contains(&base) || FX_OPS.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::exporter_generated;

    #[test]
    fn generated_names() {
        for n in [
            "onnx::MatMul_12",
            "/fc/Constant_output_0",
            "val_3",
            "t_7",
            "t",
            "embedding_1",
        ] {
            assert!(exporter_generated(n), "{n}");
        }
        for n in [
            "fc.weight",
            "cls_token",
            "pos_embed",
            "lm_head.weight",
            "0.bias",
            "w",
        ] {
            assert!(!exporter_generated(n), "{n}");
        }
    }
}
