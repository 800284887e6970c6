//! The `gen.contract` metadata of a train / eval / grad graph (docs/CONTRACT.md): written by the
//! compiler (gen-passes), read and checked against the graph by the runtime (gen-runtime).
//!
//! The JSON is part of every compiled file, so its bytes are fixed: fields in declaration order
//! below, train and eval contracts pretty-printed, grad contracts compact with sorted keys and
//! without `controls` / `outputs`. `tests/contract_example.rs` holds the examples to that.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Inputs the runtime feeds every step without carrying them (keys in alphabetical order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_freq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
}

/// Named outputs the runtime reports (keys in alphabetical order).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_applied: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_losses: Option<String>,
    /// Outputs added by later contract versions, kept so nothing is lost.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The `gen.contract` object. Readers accept missing optional fields (defaults below).
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
    /// The companion eval graph, a file name beside the train graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_model: Option<String>,
    #[serde(default)]
    pub config: Map<String, Value>,
}

fn default_kind() -> GraphKind {
    GraphKind::Train
}

/// Why a contract cannot be used. Messages name the contract field and graph value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("`{key}` is not a valid contract: {0}", key = CONTRACT_KEY)]
    Json(#[from] serde_json::Error),
    #[error(
        "contract version {found} is not supported (this runtime reads version {expected})",
        expected = Contract::VERSION
    )]
    Version { found: u32 },
    #[error("the contract's {what} names `{name}`, which is not a graph input")]
    NotAnInput { what: &'static str, name: String },
    #[error("the contract's {what} names `{name}`, which is not a graph output")]
    NotAnOutput { what: &'static str, name: String },
    #[error("state `{input}` has no output in a train graph")]
    NoStateOutput { input: String },
    #[error("probe input `{probe}` mirrors `{mirrored}`, which is not in data")]
    ProbeNotInData { probe: String, mirrored: String },
}

impl Contract {
    /// The contract version this code writes and reads.
    pub const VERSION: u32 = 1;

    /// An empty contract of `kind` with loss output `loss`, for writers to fill in.
    pub fn new(kind: GraphKind, loss: String) -> Contract {
        Contract {
            version: Contract::VERSION,
            kind,
            loss,
            data: Vec::new(),
            probe_data: BTreeMap::new(),
            state: Vec::new(),
            controls: Controls::default(),
            outputs: Outputs::default(),
            model_inputs: Vec::new(),
            model_outputs: Vec::new(),
            eval_model: None,
            config: Map::new(),
        }
    }

    /// Parses contract JSON and checks its version.
    pub fn parse(json: &str) -> Result<Contract, ContractError> {
        let contract: Contract = serde_json::from_str(json)?;
        if contract.version != Contract::VERSION {
            return Err(ContractError::Version {
                found: contract.version,
            });
        }
        Ok(contract)
    }

    /// The JSON stored under [`CONTRACT_KEY`]: pretty-printed for train and eval graphs; compact
    /// with sorted keys and no `controls` / `outputs` for grad graphs (their format since v1).
    pub fn to_json(&self) -> String {
        if self.kind != GraphKind::Grad {
            return serde_json::to_string_pretty(self).unwrap_or_default();
        }
        // serde_json's `Value` keeps object keys sorted.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = value.as_object_mut() {
            for key in ["controls", "outputs"] {
                if obj
                    .get(key)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
                {
                    obj.remove(key);
                }
            }
        }
        value.to_string()
    }

    /// Checks that every name the contract gives is a graph input or output as it should be.
    pub fn check_names(&self, inputs: &[&str], outputs: &[&str]) -> Result<(), ContractError> {
        let mut wanted_inputs: Vec<(&'static str, &str)> = Vec::new();
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
        let mut wanted_outputs: Vec<(&'static str, &str)> = vec![("loss", self.loss.as_str())];
        wanted_outputs.extend(self.reported_outputs());
        if self.kind == GraphKind::Train {
            for s in &self.state {
                let o = s
                    .output
                    .as_deref()
                    .ok_or_else(|| ContractError::NoStateOutput {
                        input: s.input.clone(),
                    })?;
                wanted_outputs.push(("state", o));
            }
        }
        if let Some((what, name)) = wanted_inputs.into_iter().find(|(_, n)| !inputs.contains(n)) {
            return Err(ContractError::NotAnInput {
                what,
                name: name.to_string(),
            });
        }
        if let Some((what, name)) = wanted_outputs
            .into_iter()
            .find(|(_, n)| !outputs.contains(n))
        {
            return Err(ContractError::NotAnOutput {
                what,
                name: name.to_string(),
            });
        }
        if let Some((probe, mirrored)) =
            self.probe_data.iter().find(|(_, m)| !self.data.contains(m))
        {
            return Err(ContractError::ProbeNotInData {
                probe: probe.clone(),
                mirrored: mirrored.clone(),
            });
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
        self.config.get("lazy_freq").and_then(Value::as_u64)
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
    pub fn eval_model_path(&self, model_path: &Path) -> Option<PathBuf> {
        self.eval_model
            .as_ref()
            .map(|name| model_path.parent().unwrap_or(Path::new(".")).join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Contract {
        let mut c = Contract::new(GraphKind::Train, "loss".into());
        c.data = vec!["x".into(), "y".into()];
        c.probe_data.insert("probe.x".into(), "x".into());
        c.state.push(StateEntry {
            input: "w".into(),
            output: Some("w.next".into()),
            role: StateRole::Param,
        });
        c.controls.scale = Some("gen.scale".into());
        c.outputs.lr = Some("gen.lr.next".into());
        c
    }

    #[test]
    fn names_are_checked() {
        let c = toy();
        let ins = ["x", "y", "probe.x", "w", "gen.scale"];
        let outs = ["loss", "w.next", "gen.lr.next"];
        c.check_names(&ins, &outs).unwrap();
        let err = c.check_names(&ins[..4], &outs).unwrap_err().to_string();
        assert!(err.contains("controls.scale names `gen.scale`"), "{err}");
        let err = c.check_names(&ins, &outs[..2]).unwrap_err().to_string();
        assert!(err.contains("outputs.lr names `gen.lr.next`"), "{err}");
        let mut c2 = c.clone();
        c2.state[0].output = None;
        let err = c2.check_names(&ins, &outs).unwrap_err().to_string();
        assert!(err.contains("state `w` has no output"), "{err}");
        let mut c3 = c;
        c3.probe_data.insert("probe.x".into(), "z".into());
        let err = c3.check_names(&ins, &outs).unwrap_err().to_string();
        assert!(err.contains("mirrors `z`"), "{err}");
    }

    #[test]
    fn version_and_lenient_reading() {
        let err = Contract::parse(r#"{"version": 2, "loss": "l"}"#).unwrap_err();
        assert!(
            err.to_string().contains("version 2 is not supported"),
            "{err}"
        );
        let c = Contract::parse(r#"{"version": 1, "loss": "l", "outputs": {"new": "n"}}"#).unwrap();
        assert_eq!(c.kind, GraphKind::Train);
        assert_eq!(c.outputs.other.get("new"), Some(&Value::from("n")));
        assert!(Contract::parse("{").is_err());
    }
}
