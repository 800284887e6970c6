//! `TrainSession`: one train.onnx, its carried state, and one `step` per call.
//!
//! The state's initial values are the model's initializers of the same names (external data
//! included). Between steps each state value is the backend's value the previous step produced,
//! fed as the next step's input: with ONNX Runtime on CUDA it stays in device memory, and only the
//! reported outputs (loss, lr, gen_applied, probe losses, accuracy) are copied to the host.

use std::path::{Path, PathBuf};

use crate::backend::{Backend, OrtBackend, TrainOptions};
use crate::contract::{Contract, GraphKind, StateRole};
use crate::engine::{InputSpec, Placement};
use crate::error::{Result, RuntimeError};
use crate::model::OnnxModel;
use crate::profile::ProviderReport;
use crate::tensor::HostTensor;

/// What one training step reported.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// The step counter before this step (0 for the first step).
    pub step: u64,
    pub loss: f64,
    pub lr: Option<f64>,
    pub gen_applied: Option<bool>,
    /// [L(w − Δ), L(w + Δ), L(w)] on GeN steps, zeros otherwise.
    pub probe_losses: Option<[f64; 3]>,
    /// Training-batch accuracy, when the graph reports it.
    pub accuracy: Option<f64>,
}

/// Host↔device traffic of the last step, in bytes (zero on the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub host_to_device: usize,
    pub device_to_host: usize,
}

/// Named host tensors: a batch, or a state snapshot.
pub type Tensors = [(String, HostTensor)];

/// A train graph opened on a device with a backend (ONNX Runtime unless named), with its state.
pub struct TrainSession<B: Backend = OrtBackend> {
    backend: B,
    path: PathBuf,
    contract: Contract,
    /// Aligned with `contract.state`.
    state: Vec<B::Value>,
    step: u64,
    lazy_freq: Option<u64>,
    lazy_freq_feed: Option<B::Value>,
    /// The adaptive controller's gate (`config.gen_gate`): whether a step probes depends on
    /// its carried phase and skip counter.
    gate: Option<Gate>,
    /// Outputs fetched each step; reported ones to the host, the rest stay on the device.
    outputs: Vec<(String, Placement)>,
    transfer: Transfer,
}

/// Where the adaptive controller's phase and skip counter sit in the state.
struct Gate {
    phase: usize,
    skip: usize,
    /// The phase was seen to be 1 (TRACK), which it never leaves: no need to read it again.
    tracking: std::cell::Cell<bool>,
}

fn contract_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Contract {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Finds `name` in named tensors.
pub(crate) fn lookup<'a>(
    tensors: &'a Tensors,
    name: &str,
    set: &'static str,
) -> Result<&'a HostTensor> {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| RuntimeError::MissingTensor {
            set,
            name: name.to_string(),
        })
}

impl TrainSession {
    /// Opens `path` (a train graph with a contract) on ONNX Runtime, on the configured device.
    pub fn open(path: &Path, options: &TrainOptions) -> Result<TrainSession> {
        TrainSession::open_with_backend(path, options)
    }
}

impl<B: Backend> TrainSession<B> {
    /// Opens `path` (a train graph with a contract) on backend `B`, on the configured device.
    pub fn open_with_backend(path: &Path, options: &TrainOptions) -> Result<TrainSession<B>> {
        let model = OnnxModel::read(path)?;
        let contract = crate::contract::from_model(&model)?;
        if contract.kind != GraphKind::Train {
            return Err(contract_err(
                path,
                format!(
                    "the graph's kind is `{}`; gen-train needs a train graph (gen-compile --emit train)",
                    contract.kind
                ),
            ));
        }
        let mut outputs_seen = std::collections::HashSet::new();
        for s in &contract.state {
            if let Some(o) = &s.output {
                if !outputs_seen.insert(o.as_str()) {
                    return Err(contract_err(
                        path,
                        format!("two state entries share output `{o}`"),
                    ));
                }
            }
        }
        let state_host = initial_state(&model, &contract)?;
        let step = match state_host
            .iter()
            .zip(&contract.state)
            .find(|(_, s)| s.role == StateRole::Step)
        {
            Some(((name, t), _)) => counter_value(name, t)?,
            None => 0,
        };
        let (lazy_freq, lazy_freq_feed) = resolve_lazy_freq(&model, &contract, options.lazy_freq)?;
        let gate = match contract.gen_gate() {
            None => None,
            Some((phase, skip)) => {
                let at = |name: &str| {
                    contract
                        .state
                        .iter()
                        .position(|s| s.input == name)
                        .ok_or_else(|| {
                            contract_err(
                                path,
                                format!(
                                    "config.gen_gate names `{name}`, which is not a state input"
                                ),
                            )
                        })
                };
                Some(Gate {
                    phase: at(phase)?,
                    skip: at(skip)?,
                    tracking: std::cell::Cell::new(false),
                })
            }
        };
        let backend = B::open(
            path,
            options,
            &fed_inputs(&contract, lazy_freq_feed.is_some()),
        )?;
        let state = state_host
            .iter()
            .map(|(_, t)| backend.upload(t))
            .collect::<Result<Vec<_>>>()?;
        let lazy_freq_feed = lazy_freq_feed.map(|t| backend.upload(&t)).transpose()?;
        let outputs = output_plan(&contract);
        Ok(TrainSession {
            backend,
            path: path.to_path_buf(),
            contract,
            state,
            step,
            lazy_freq,
            lazy_freq_feed,
            gate,
            outputs,
            transfer: Transfer::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// The carried step counter: steps done so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// GeN's period, `None` when the graph has no GeN.
    pub fn lazy_freq(&self) -> Option<u64> {
        self.lazy_freq
    }

    /// Whether the next step runs GeN: `(step + 1) % lazy_freq == 0`; with the adaptive
    /// controller `phase == 0 or ((step + 1) % lazy_freq == 0 and skip <= 0)`, read from the
    /// carried state (docs/CONTRACT.md).
    pub fn next_is_gen_step(&self) -> Result<bool> {
        let Some(k) = self.lazy_freq else {
            return Ok(false);
        };
        let lazy = (self.step + 1).is_multiple_of(k);
        let Some(gate) = &self.gate else {
            return Ok(lazy);
        };
        let read = |i: usize| {
            self.backend
                .to_host(&self.contract.state[i].input, &self.state[i])?
                .scalar_f64()
        };
        if !gate.tracking.get() {
            if read(gate.phase)? == 0.0 {
                return Ok(true);
            }
            gate.tracking.set(true);
        }
        Ok(lazy && read(gate.skip)? <= 0.0)
    }

    /// Whether steps need probe batches (the graph has probe inputs and GeN).
    pub fn needs_probe_batches(&self) -> bool {
        self.lazy_freq.is_some() && !self.contract.probe_data.is_empty()
    }

    /// Dtypes and shapes of the data inputs, in the contract's order.
    pub fn data_specs(&self) -> Vec<InputSpec> {
        specs_for(&self.backend.input_specs(), &self.contract.data)
    }

    /// What executed the first step (`None` before it): ONNX Runtime's execution providers, or
    /// tract.
    pub fn providers(&self) -> Option<&ProviderReport> {
        self.backend.providers()
    }

    /// Host↔device bytes moved by the last step.
    pub fn transfer(&self) -> Transfer {
        self.transfer
    }

    /// Runs one training step on `batch` (tensors named as the contract's data inputs).
    ///
    /// `probe` is the probe batch (named like `batch`); it is required on GeN steps when the graph
    /// has probe inputs, and ignored otherwise (the training batch is fed in its place, which the
    /// contract allows). `scale` is fed to `controls.scale`.
    pub fn step(
        &mut self,
        batch: &Tensors,
        probe: Option<&Tensors>,
        scale: f32,
    ) -> Result<StepResult> {
        let gen_step = self.next_is_gen_step()?;
        if gen_step && probe.is_none() && self.needs_probe_batches() {
            return Err(RuntimeError::NeedsProbe { step: self.step });
        }
        let probe = probe.filter(|_| gen_step);
        let mut owned: Vec<(&str, B::Value)> = Vec::new();
        for name in &self.contract.data {
            let tensor = lookup(batch, name, "the batch")?;
            owned.push((name, self.backend.upload(tensor)?));
        }
        if let Some(p) = probe {
            for (probe_input, mirrored) in &self.contract.probe_data {
                let tensor = lookup(p, mirrored, "the probe batch")?;
                owned.push((probe_input, self.backend.upload(tensor)?));
            }
        }
        if let Some(name) = &self.contract.controls.scale {
            owned.push((name, self.backend.upload(&HostTensor::scalar(scale))?));
        }
        let mut inputs: Vec<(&str, &B::Value)> = owned.iter().map(|(n, v)| (*n, v)).collect();
        if probe.is_none() {
            // Not read by the graph on this step: feed the training batch's values again.
            for (probe_input, mirrored) in &self.contract.probe_data {
                if let Some((_, v)) = owned.iter().find(|(n, _)| n == mirrored) {
                    inputs.push((probe_input, v));
                }
            }
        }
        if let (Some(name), Some(value)) = (&self.contract.controls.lazy_freq, &self.lazy_freq_feed)
        {
            inputs.push((name, value));
        }
        inputs.extend(
            self.contract
                .state
                .iter()
                .zip(&self.state)
                .map(|(s, v)| (s.input.as_str(), v)),
        );
        let h2d = inputs
            .iter()
            .map(|(_, v)| self.backend.transferred_bytes(v))
            .sum();

        let plan: Vec<(&str, Placement)> =
            self.outputs.iter().map(|(n, p)| (n.as_str(), *p)).collect();
        let produced = self.backend.run(&inputs, &plan)?;
        drop(inputs);
        let mut produced: Vec<Option<B::Value>> = produced.into_iter().map(Some).collect();

        let read = |name: &str| -> Result<HostTensor> {
            let i = self.output_index(name)?;
            let value = produced[i].as_ref().ok_or_else(|| missing(name))?;
            self.backend.to_host(name, value)
        };
        let outputs = &self.contract.outputs;
        let loss = read(&self.contract.loss)?.scalar_f64()?;
        let lr = outputs
            .lr
            .as_deref()
            .map(|n| read(n)?.scalar_f64())
            .transpose()?;
        let gen_applied = outputs
            .gen_applied
            .as_deref()
            .map(|n| Ok::<_, RuntimeError>(read(n)?.scalar_f64()? != 0.0))
            .transpose()?;
        let probe_losses = outputs
            .probe_losses
            .as_deref()
            .map(|n| {
                let v = read(n)?.to_f64_vec()?;
                <[f64; 3]>::try_from(v.as_slice()).map_err(|_| RuntimeError::Tensor {
                    name: n.to_string(),
                    message: format!("expected 3 probe losses, got {}", v.len()),
                })
            })
            .transpose()?;
        let accuracy = outputs
            .accuracy
            .as_deref()
            .map(|n| read(n)?.scalar_f64())
            .transpose()?;
        if let Some(ran) = gen_applied.filter(|ran| *ran != gen_step) {
            let period = self
                .lazy_freq
                .map_or("GeN off".to_string(), |k| format!("lazy_freq {k}"));
            return Err(contract_err(
                &self.path,
                format!(
                    "at step {} the graph says GeN ran = {ran}, but with {period} the runtime expected {gen_step}",
                    self.step
                ),
            ));
        }
        let d2h = self
            .outputs
            .iter()
            .zip(&produced)
            .filter(|((_, p), _)| *p == Placement::Host)
            .filter_map(|(_, v)| v.as_ref().map(|v| self.backend.transferred_bytes(v)))
            .sum();

        let mut next = Vec::with_capacity(self.state.len());
        for s in &self.contract.state {
            let name = s.output.as_deref().unwrap_or(&s.input);
            let i = self.output_index(name)?;
            next.push(produced[i].take().ok_or_else(|| missing(name))?);
        }
        self.state = next;
        self.transfer = Transfer {
            host_to_device: h2d,
            device_to_host: d2h,
        };
        let result = StepResult {
            step: self.step,
            loss,
            lr,
            gen_applied,
            probe_losses,
            accuracy,
        };
        self.step += 1;
        Ok(result)
    }

    fn output_index(&self, name: &str) -> Result<usize> {
        self.outputs
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| missing(name))
    }

    /// The current value of state input `name` (device or host memory).
    pub(crate) fn state_value(&self, name: &str) -> Option<&B::Value> {
        self.contract
            .state
            .iter()
            .position(|s| s.input == name)
            .map(|i| &self.state[i])
    }

    /// A host copy of the whole state, named by state input, in contract order.
    pub fn state(&self) -> Result<Vec<(String, HostTensor)>> {
        self.contract
            .state
            .iter()
            .zip(&self.state)
            .map(|(s, v)| Ok((s.input.clone(), self.backend.to_host(&s.input, v)?)))
            .collect()
    }

    /// Replaces the whole state (a checkpoint); every state input must be given with its dtype
    /// and shape. The step counter follows the `step` state's value.
    pub fn set_state(&mut self, state: &Tensors) -> Result<()> {
        let mut values = Vec::with_capacity(self.state.len());
        let mut step = self.step;
        for (entry, current) in self.contract.state.iter().zip(&self.state) {
            let t = lookup(state, &entry.input, "the new state")?;
            let (dtype, shape) = self.backend.signature(&entry.input, current)?;
            if t.dtype() != dtype || t.shape() != shape.as_slice() {
                return Err(RuntimeError::Tensor {
                    name: entry.input.clone(),
                    message: format!(
                        "new state is {} {:?}, the model's is {dtype} {shape:?}",
                        t.dtype(),
                        t.shape()
                    ),
                });
            }
            if entry.role == StateRole::Step {
                step = counter_value(&entry.input, t)?;
            }
            values.push(self.backend.upload(t)?);
        }
        if let Some((extra, _)) = state
            .iter()
            .find(|(n, _)| !self.contract.state.iter().any(|s| &s.input == n))
        {
            return Err(RuntimeError::NotState(extra.clone()));
        }
        self.state = values;
        self.step = step;
        if let Some(gate) = &self.gate {
            gate.tracking.set(false);
        }
        Ok(())
    }
}

fn missing(name: &str) -> RuntimeError {
    RuntimeError::Ort {
        context: "running the model".into(),
        message: format!("output `{name}` was not produced"),
    }
}

/// Specs of `names` among a graph's input specs `all`, in that order.
pub(crate) fn specs_for(all: &[InputSpec], names: &[String]) -> Vec<InputSpec> {
    names
        .iter()
        .filter_map(|n| all.iter().find(|s| &s.name == n).cloned())
        .collect()
}

/// The graph inputs every step feeds: data, probe data, controls and state (`lazy_freq` only when
/// overridden).
fn fed_inputs(contract: &Contract, lazy_freq_fed: bool) -> Vec<&str> {
    let mut fed: Vec<&str> = contract.data.iter().map(String::as_str).collect();
    fed.extend(contract.probe_data.keys().map(String::as_str));
    fed.extend(contract.controls.scale.as_deref());
    fed.extend(
        contract
            .controls
            .lazy_freq
            .as_deref()
            .filter(|_| lazy_freq_fed),
    );
    fed.extend(contract.state.iter().map(|s| s.input.as_str()));
    fed
}

/// Outputs to fetch: the loss and reported outputs to the host, then the state outputs.
fn output_plan(contract: &Contract) -> Vec<(String, Placement)> {
    let mut plan: Vec<(String, Placement)> = vec![(contract.loss.clone(), Placement::Host)];
    for (_, name) in contract.reported_outputs() {
        if !plan.iter().any(|(n, _)| n == name) {
            plan.push((name.to_string(), Placement::Host));
        }
    }
    for s in &contract.state {
        if let Some(o) = &s.output {
            if !plan.iter().any(|(n, _)| n == o) {
                plan.push((o.clone(), Placement::Device));
            }
        }
    }
    plan
}

/// Initial state values: the initializers named like the state inputs.
fn initial_state(model: &OnnxModel, contract: &Contract) -> Result<Vec<(String, HostTensor)>> {
    contract
        .state
        .iter()
        .map(|s| {
            let t = model.initializer(&s.input).ok_or_else(|| {
                contract_err(
                    model.path(),
                    format!(
                        "state input `{}` has no initializer holding its initial value",
                        s.input
                    ),
                )
            })??;
            Ok((s.input.clone(), t))
        })
        .collect()
}

fn counter_value(name: &str, t: &HostTensor) -> Result<u64> {
    let v = t.scalar_f64()?;
    if v < 0.0 || v.fract() != 0.0 {
        return Err(RuntimeError::Tensor {
            name: name.to_string(),
            message: format!("step counter {v} is not a non-negative integer"),
        });
    }
    Ok(v as u64)
}

/// GeN's period: `--lazy-freq` (fed to `controls.lazy_freq`), else the control's initializer,
/// else `config.lazy_freq`. `None` when the graph has no GeN or the period is ≤ 0 (which the
/// contract defines as GeN off).
fn resolve_lazy_freq(
    model: &OnnxModel,
    contract: &Contract,
    requested: Option<u64>,
) -> Result<(Option<u64>, Option<HostTensor>)> {
    let Some(control) = &contract.controls.lazy_freq else {
        if requested.is_some() {
            return Err(contract_err(
                model.path(),
                "--lazy-freq given, but this graph has no lazy_freq control (compiled without GeN)",
            ));
        }
        if contract.outputs.gen_applied.is_some() {
            return Err(contract_err(
                model.path(),
                "the graph reports gen_applied but has no controls.lazy_freq to tell when GeN runs",
            ));
        }
        return Ok((None, None));
    };
    if let Some(k) = requested {
        let k = i64::try_from(k).map_err(|_| RuntimeError::TooLarge {
            flag: "--lazy-freq",
            value: k,
        })?;
        return Ok((
            u64::try_from(k).ok().filter(|k| *k > 0),
            Some(HostTensor::scalar(k)),
        ));
    }
    let period = match model.initializer(control).transpose()? {
        Some(t) => t.scalar_f64()? as i64,
        None => contract
            .config_lazy_freq()
            .and_then(|k| i64::try_from(k).ok())
            .ok_or_else(|| {
                contract_err(
                    model.path(),
                    format!(
                        "controls.lazy_freq `{control}` has no initializer and config.lazy_freq is absent: \
                         cannot tell when GeN runs (pass --lazy-freq)"
                    ),
                )
            })?,
    };
    Ok((u64::try_from(period).ok().filter(|k| *k > 0), None))
}
