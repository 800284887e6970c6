//! The `gen.contract` metadata of a train / eval / grad graph (docs/CONTRACT.md), parsed with serde
//! and checked against the graph's real inputs and outputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::model::OnnxModel;

/// The metadata key holding the contract.
pub const CONTRACT_KEY: &str = "gen.contract";

/// What a graph does per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GraphKind {
    Train,
    Eval,
    Grad,
}

impl std::fmt::Display for GraphKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GraphKind::Train => "train",
            GraphKind::Eval => "eval",
            GraphKind::Grad => "grad",
        })
    }
}

/// What a carried state value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateRole {
    Param,
    Buffer,
    Optimizer,
    Step,
    Lr,
    /// A GeN controller's own state (carried like the rest; the adaptive rule's gate reads it).
    Gen,
}

/// One carried value: graph input `input`, next value at graph output `output` (train graphs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateEntry {
    pub input: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub role: StateRole,
}

/// Inputs the runtime feeds every step without carrying them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_freq: Option<String>,
}

/// Named outputs the runtime reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_losses: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<String>,
    /// Outputs added by later contract versions, kept so nothing is lost.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The parsed `gen.contract` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub version: u32,
    #[serde(default = "default_kind")]
    pub kind: GraphKind,
    pub loss: String,
    #[serde(default)]
    pub data: Vec<String>,
    /// Probe input → the data input it mirrors.
    #[serde(default)]
    pub probe_data: BTreeMap<String, String>,
    #[serde(default)]
    pub state: Vec<StateEntry>,
    #[serde(default)]
    pub controls: Controls,
    #[serde(default)]
    pub outputs: Outputs,
    #[serde(default)]
    pub model_inputs: Vec<String>,
    #[serde(default)]
    pub model_outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_model: Option<String>,
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

fn default_kind() -> GraphKind {
    GraphKind::Train
}

impl Contract {
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
        let contract: Contract = serde_json::from_str(json)
            .map_err(|e| err(format!("`{CONTRACT_KEY}` is not a valid contract: {e}")))?;
        if contract.version != 1 {
            return Err(err(format!(
                "contract version {} is not supported (this runtime reads version 1)",
                contract.version
            )));
        }
        contract.check_names(model).map_err(err)?;
        Ok(contract)
    }

    fn check_names(&self, model: &OnnxModel) -> std::result::Result<(), String> {
        let inputs = model.input_names();
        let outputs = model.output_names();
        let mut wanted_inputs: Vec<(&str, &str)> = Vec::new();
        wanted_inputs.extend(self.data.iter().map(|n| ("data", n.as_str())));
        wanted_inputs.extend(self.probe_data.keys().map(|n| ("probe_data", n.as_str())));
        wanted_inputs.extend(self.state.iter().map(|s| ("state", s.input.as_str())));
        wanted_inputs.extend(
            self.controls
                .scale
                .iter()
                .map(|n| ("controls.scale", n.as_str())),
        );
        wanted_inputs.extend(
            self.controls
                .lazy_freq
                .iter()
                .map(|n| ("controls.lazy_freq", n.as_str())),
        );
        let mut wanted_outputs: Vec<(&str, &str)> = vec![("loss", self.loss.as_str())];
        wanted_outputs.extend(self.reported_outputs());
        if self.kind == GraphKind::Train {
            for s in &self.state {
                match &s.output {
                    Some(o) => wanted_outputs.push(("state", o.as_str())),
                    None => {
                        return Err(format!(
                            "state `{}` has no output in a train graph",
                            s.input
                        ))
                    }
                }
            }
        }
        for (what, name) in wanted_inputs {
            if !inputs.contains(&name) {
                return Err(format!(
                    "the contract's {what} names `{name}`, which is not a graph input"
                ));
            }
        }
        for (what, name) in wanted_outputs {
            if !outputs.contains(&name) {
                return Err(format!(
                    "the contract's {what} names `{name}`, which is not a graph output"
                ));
            }
        }
        for (probe, mirrored) in &self.probe_data {
            if !self.data.contains(mirrored) {
                return Err(format!(
                    "probe input `{probe}` mirrors `{mirrored}`, which is not in data"
                ));
            }
        }
        Ok(())
    }

    /// The named outputs the runtime reports: (contract key, output name).
    pub fn reported_outputs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("outputs.lr", &self.outputs.lr),
            ("outputs.gen_applied", &self.outputs.gen_applied),
            ("outputs.probe_losses", &self.outputs.probe_losses),
            ("outputs.accuracy", &self.outputs.accuracy),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|n| (k, n)))
    }

    /// `config.lazy_freq`, if the compiler recorded it.
    pub fn config_lazy_freq(&self) -> Option<u64> {
        self.config.get("lazy_freq").and_then(|v| v.as_u64())
    }

    /// `config.gen_controller`: the GeN lr rule (`paper` when absent).
    pub fn gen_controller(&self) -> &str {
        self.config
            .get("gen_controller")
            .and_then(|v| v.as_str())
            .unwrap_or("paper")
    }

    /// `config.gen_gate`: the state inputs holding the adaptive controller's phase and skip
    /// counter, which decide whether a step probes (docs/CONTRACT.md).
    pub fn gen_gate(&self) -> Option<(&str, &str)> {
        let gate = self.config.get("gen_gate")?;
        Some((gate.get("phase")?.as_str()?, gate.get("skip")?.as_str()?))
    }

    /// The companion eval graph's path, resolved beside `model_path`.
    pub fn eval_model_path(&self, model_path: &Path) -> Option<std::path::PathBuf> {
        self.eval_model
            .as_ref()
            .map(|name| model_path.parent().unwrap_or(Path::new(".")).join(name))
    }
}
