//! Evaluation with the companion eval graph (`contract.eval_model`, kind "eval"): the current
//! parameters and buffers of a `TrainSession` are bound as its state inputs (in device memory on
//! CUDA, no copies), and loss / accuracy are averaged over a whole data set. The eval graph runs
//! on the train session's backend.

use std::path::Path;

use crate::backend::{Backend, OrtBackend};
use crate::contract::{Contract, GraphKind};
use crate::data::Dataset;
use crate::engine::{InputSpec, Placement, SessionSettings};
use crate::error::{Result, RuntimeError};
use crate::model::OnnxModel;
use crate::profile::ProviderReport;
use crate::session::{specs_for, TrainSession};

/// Mean loss (and accuracy) over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    pub loss: f64,
    pub accuracy: Option<f64>,
    pub samples: usize,
}

/// An eval graph opened beside a train session.
pub struct EvalSession<B: Backend = OrtBackend> {
    contract: Contract,
    backend: B,
}

impl<B: Backend> EvalSession<B> {
    /// Opens the eval graph `path` on the train session's device, checking that every state input
    /// it reads is carried by `train`.
    pub fn open(
        path: &Path,
        train: &TrainSession<B>,
        settings: &SessionSettings,
    ) -> Result<EvalSession<B>> {
        let model = OnnxModel::read(path)?;
        let contract = crate::contract::from_model(&model)?;
        let err = |message: String| RuntimeError::Contract {
            path: path.to_path_buf(),
            message,
        };
        if contract.kind != GraphKind::Eval {
            return Err(err(format!(
                "expected an eval graph, found a {} graph",
                contract.kind
            )));
        }
        if let Some(s) = contract
            .state
            .iter()
            .find(|s| train.state_value(&s.input).is_none())
        {
            return Err(err(format!(
                "eval state input `{}` is not carried by the train graph {}",
                s.input,
                train.path().display()
            )));
        }
        let fed: Vec<&str> = contract
            .data
            .iter()
            .chain(contract.state.iter().map(|s| &s.input))
            .map(String::as_str)
            .collect();
        let backend = train.backend().open_beside(path, settings, &fed)?;
        Ok(EvalSession { contract, backend })
    }

    /// Dtypes and shapes of the data inputs.
    pub fn data_specs(&self) -> Vec<InputSpec> {
        specs_for(&self.backend.input_specs(), &self.contract.data)
    }

    /// The providers that executed the first batch (`None` before it).
    pub fn providers(&self) -> Option<&ProviderReport> {
        self.backend.providers()
    }

    /// Mean loss and accuracy of `train`'s current state over all of `data`, in batches of
    /// `batch_size` (the last one partial), weighted by batch size.
    pub fn evaluate(
        &mut self,
        train: &TrainSession<B>,
        data: &Dataset,
        batch_size: usize,
    ) -> Result<EvalResult> {
        let mut outputs = vec![(self.contract.loss.as_str(), Placement::Host)];
        if let Some(acc) = &self.contract.outputs.accuracy {
            outputs.push((acc.as_str(), Placement::Host));
        }
        let state: Vec<(&str, &B::Value)> = self
            .contract
            .state
            .iter()
            .filter_map(|s| train.state_value(&s.input).map(|v| (s.input.as_str(), v)))
            .collect();
        let rows = data.rows();
        let (mut loss_sum, mut acc_sum) = (0.0, 0.0);
        for start in (0..rows).step_by(batch_size.max(1)) {
            let indices: Vec<usize> = (start..(start + batch_size).min(rows)).collect();
            let batch = data.batch(&indices)?;
            let values = batch
                .iter()
                .map(|(n, t)| Ok((n.as_str(), self.backend.upload(t)?)))
                .collect::<Result<Vec<_>>>()?;
            let mut inputs: Vec<(&str, &B::Value)> = values.iter().map(|(n, v)| (*n, v)).collect();
            inputs.extend(state.iter().copied());
            let produced = self.backend.run(&inputs, &outputs)?;
            let weight = indices.len() as f64;
            let loss = self.backend.to_host(outputs[0].0, &produced[0])?;
            loss_sum += weight * loss.scalar_f64()?;
            if let (Some((name, _)), Some(value)) = (outputs.get(1), produced.get(1)) {
                acc_sum += weight * self.backend.to_host(name, value)?.scalar_f64()?;
            }
        }
        let n = rows.max(1) as f64;
        Ok(EvalResult {
            loss: loss_sum / n,
            accuracy: self.contract.outputs.accuracy.as_ref().map(|_| acc_sum / n),
            samples: rows,
        })
    }
}
