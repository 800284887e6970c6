//! Constant folding of shape arithmetic. Type inference tracks the element values of small
//! integer tensors, symbolic batch included (`Value::sym`); every integer node whose values
//! are then fully known becomes a `Constant`. This folds the Shape → Gather → Unsqueeze →
//! Concat → Reshape chains exporters emit whenever the shapes involved are static, and leaves
//! the ones that depend on a symbolic dimension in place.
//! Needs: nothing. Guarantees: folded values equal what the runtime would compute.

use super::{Context, Pass};
use crate::error::Result;
use crate::ir::infer::infer_graph;
use crate::ir::{Attr, DType, Dim, Model, Op, Tensor};
use std::collections::BTreeMap;

pub struct ConstantFolding;

/// Folded tensors stay small: shape vectors, not data.
const MAX_FOLDED_ELEMENTS: usize = 64;

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant-folding"
    }
    fn is_cleanup(&self) -> bool {
        true
    }
    fn run(&mut self, m: &mut Model, _cx: &mut Context) -> Result<bool> {
        let opset = m.opset();
        let g = &mut m.graph;
        infer_graph(g, opset);
        let mut changed = false;
        for n in g.order().to_vec() {
            let node = g.node(n);
            if matches!(node.op, Op::Constant) || node.outputs.len() != 1 || node.op.domain() != ""
            {
                continue;
            }
            let Some(out) = node.output(0) else { continue };
            let val = g.value(out);
            let Some(tt) = val.ty.tensor() else { continue };
            let (Some(sym), Some(shape)) = (&val.sym, tt.fixed_dims()) else {
                continue;
            };
            if !matches!(tt.dtype, DType::I64 | DType::I32) || shape.len() > 1 {
                continue;
            }
            let Some(vals) = sym.iter().map(Dim::fixed).collect::<Option<Vec<i64>>>() else {
                continue;
            };
            if vals.len() > MAX_FOLDED_ELEMENTS
                || vals.len() != shape.iter().product::<i64>() as usize
            {
                continue;
            }
            let mut t = Tensor::from_i64(&shape, &vals);
            if tt.dtype == DType::I32 {
                t = Tensor {
                    dtype: DType::I32,
                    dims: shape.clone(),
                    data: crate::ir::TensorData::Raw(
                        vals.iter()
                            .flat_map(|&v| (v as i32).to_le_bytes())
                            .collect(),
                    ),
                };
            }
            let node = g.node_mut(n);
            node.op = Op::Constant;
            node.inputs.clear();
            node.attrs = BTreeMap::from([("value".to_string(), Attr::Tensor(t))]);
            changed = true;
        }
        Ok(changed)
    }
}
