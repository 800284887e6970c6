//! Parameter discovery (SPEC 4): the trainable parameters are the float initializers the loss
//! depends on through differentiable edges, except
//! - BatchNorm running statistics (`Context::buffers`: state, not parameters);
//! - initializers whose names the exporters generate (`onnx::…`, `/…`, `val_…`, FX node names
//!   such as `t_3` or `embedding_1`): values the exporter computed from parameters and folded
//!   (the dynamo exporter's default `optimize=True`; the TorchScript exporter's default
//!   `do_constant_folding=True`), kept constant with one warning listing those that look like
//!   parameters — except the weight operand of a MatMul/Gemm/Conv/ConvTranspose: that is a
//!   folded weight (TorchScript turns the transposed weight of a Linear on 3-D inputs into
//!   `onnx::MatMul_N`), trained like the original would be (elementwise optimizers commute with
//!   the transpose), with a warning that it trains under the exporter's name;
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
        let weights = weight_operands(g);
        let mut params = Vec::new();
        let mut folded = Vec::new();
        let mut renamed = Vec::new();
        let mut frozen = 0usize;
        for v in g.value_ids().collect::<Vec<_>>() {
            let val = g.value(v);
            let Some(t) = &val.init else { continue };
            if !t.dtype.is_float() || !deps.contains(&v) || buffers.contains(&v) {
                continue;
            }
            let generated = exporter_generated(&val.name);
            if generated && !weights.contains(&v) {
                if let Some(f) = parameter_like(&val.name, t) {
                    folded.push(f);
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
            if generated {
                renamed.push(format!("'{}'", val.name));
            }
            params.push(v);
        }
        if !renamed.is_empty() {
            let (first, rest) = renamed.split_at(renamed.len().min(LISTED_FOLDED));
            cx.warnings.push(format!(
                "{} weight(s) the exporter folded under generated names are trained as \
                 parameters: {}{}. They hold values such as a transposed Linear weight; training \
                 them is equivalent, but their names in train.onnx are the exporter's and a tie \
                 with another parameter is lost. Re-export with do_constant_folding=False \
                 (TorchScript) or optimize=False (dynamo) to keep every parameter under its own name",
                renamed.len(),
                first.join(", "),
                match rest.len() {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                }
            ));
        }
        folded.extend(folded_constants(m, &deps));
        if let Some(w) = folded_warning(&folded) {
            cx.warnings.push(w);
        }
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

/// Values used as the weight operand of a linear layer: MatMul/Gemm input B, Conv/ConvTranspose
/// input W.
fn weight_operands(g: &crate::ir::Graph) -> HashSet<ValueId> {
    g.order()
        .iter()
        .filter_map(|&n| {
            let node = g.node(n);
            matches!(
                node.op,
                Op::MatMul | Op::Gemm | Op::Conv | Op::ConvTranspose
            )
            .then(|| node.input(1))
            .flatten()
        })
        .collect()
}

/// `Constant` nodes on the loss path that hold parameter-sized float tensors under generated
/// names: what the dynamo exporter leaves when it folds parameters with `optimize=True`.
fn folded_constants(m: &Model, deps: &HashSet<ValueId>) -> Vec<String> {
    let g = &m.graph;
    g.order()
        .iter()
        .filter_map(|&n| {
            let node = g.node(n);
            let out = node.output(0)?;
            if node.op != Op::Constant || !deps.contains(&out) {
                return None;
            }
            parameter_like(g.name(out), g.constant(out)?)
        })
        .collect()
}

/// "'name' (type)" for a float tensor the size of a parameter.
fn parameter_like(name: &str, t: &Tensor) -> Option<String> {
    (t.dtype.is_float() && t.numel() >= PARAMETER_LIKE_ELEMENTS)
        .then(|| format!("'{name}' ({})", tensor_text(t)))
}

/// Constants shown by name in the folded-parameters warning; the rest are counted.
const LISTED_FOLDED: usize = 6;

/// One warning for every parameter-like constant the exporter folded.
fn folded_warning(folded: &[String]) -> Option<String> {
    let (first, rest) = folded.split_at(folded.len().min(LISTED_FOLDED));
    let more = match rest.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    (!folded.is_empty()).then(|| {
        format!(
            "{} constant(s) look like parameters the exporter folded, and are not trained: {}{more}. \
             torch.onnx.export folds computations on parameters with the TorchScript exporter's \
             default do_constant_folding=True, and with dynamo=True and optimize=True: re-export \
             with do_constant_folding=False (TorchScript) or optimize=False (dynamo) to train \
             every parameter under its own name",
            folded.len(),
            first.join(", ")
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
