//! The `gen.contract` metadata of a train / eval / grad graph (docs/CONTRACT.md): gen-format's
//! type, read from a model and checked against the graph's real inputs and outputs.

use crate::error::{Result, RuntimeError};
use crate::model::OnnxModel;

pub use gen_format::contract::{
    Contract, Controls, GraphKind, Outputs, StateEntry, StateRole, CONTRACT_KEY,
};

/// Reads the contract of `model` and checks it against the graph's inputs and outputs.
pub fn from_model(model: &OnnxModel) -> Result<Contract> {
    let err = |message: String| RuntimeError::Contract {
        path: model.path().to_path_buf(),
        message,
    };
    let json = model.metadata(CONTRACT_KEY).ok_or_else(|| {
        err(format!(
            "no `{CONTRACT_KEY}` in the model's metadata_props: not a graph written by gen-compile \
             (make one with `gen-compile MODEL.onnx -o train.onnx`)"
        ))
    })?;
    let contract = Contract::parse(json).map_err(|e| err(e.to_string()))?;
    contract
        .check_names(&model.input_names(), &model.output_names())
        .map_err(|e| err(e.to_string()))?;
    Ok(contract)
}
