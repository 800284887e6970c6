//! tract (pure-Rust ONNX inference) as a second backend, behind the cargo feature `tract`:
//! one-shot runs ([`run_model_tract`]) and training through the contract ([`TractBackend`] under
//! `TrainSession<TractBackend>` / `Trainer<TractBackend>`, i.e. `gen-train --backend tract`).
//!
//! tract runs on the CPU; values are host tensors, and the state a step produces is fed back as
//! the next step's input host-side. tract turns a graph input that has an initializer into a
//! constant, so the initializers of the inputs a run feeds (parameters, state, controls) are
//! dropped before loading; the others keep their defaults. The loss ops tract lacks are expanded
//! into standard ops first (`expand.rs`). tract types and optimizes a graph only with concrete
//! input shapes where gradient graphs compute shapes and axes at run time or use run-time tensors
//! as convolution kernels, so a graph is typed and optimized once per distinct set of input
//! shapes, on first use (a training run sees two: the full and the last partial batch).

mod expand;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::backend::TrainOptions;
use crate::backend::{sealed::Run, Backend};
use crate::engine::{InputSpec, ModelSource, Placement, SessionSettings};
use crate::error::{panic_message, Result, RuntimeError};
use crate::profile::ProviderReport;
use crate::tensor::{DType, HostTensor};

/// Runs `model` once on tract with `inputs` (by graph input name; inputs with initializers may be
/// left out) and returns every graph output, in graph order. The counterpart of
/// [`crate::run_model`] on ONNX Runtime; external data is found beside a model given by path.
pub fn run_model_tract<'a>(
    model: impl Into<ModelSource<'a>>,
    inputs: &[(String, HostTensor)],
) -> Result<Vec<(String, HostTensor)>> {
    let fed: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    let mut backend = TractBackend::load(model.into(), &fed)?;
    let values = inputs
        .iter()
        .map(|(n, t)| Ok((n.as_str(), backend.upload(t)?)))
        .collect::<Result<Vec<_>>>()?;
    let feeds: Vec<(&str, &TValue)> = values.iter().map(|(n, v)| (*n, v)).collect();
    let names = backend.outputs.clone();
    let plan: Vec<(&str, Placement)> = names
        .iter()
        .map(|n| (n.as_str(), Placement::Host))
        .collect();
    let produced = backend.run(&feeds, &plan)?;
    names
        .into_iter()
        .zip(&produced)
        .map(|(name, value)| {
            let tensor = backend.to_host(&name, value)?;
            Ok((name, tensor))
        })
        .collect()
}

/// A graph loaded into tract, ready to run.
pub struct TractBackend {
    /// Parsed, not yet typed: typing needs the input shapes (see `plan_for`).
    model: InferenceModel,
    /// Plans by input shapes (a training run sees two: full and last partial batches).
    plans: Vec<(Vec<Vec<usize>>, Arc<TypedRunnableModel>)>,
    /// Graph input names, in the order the plan takes them.
    inputs: Vec<String>,
    /// Graph output names, in the order the plan returns them.
    outputs: Vec<String>,
    specs: Vec<InputSpec>,
    /// `tract` and the nodes of the plan, after the first run.
    report: Option<ProviderReport>,
}

fn tract_err(context: impl Into<String>) -> impl FnOnce(TractError) -> RuntimeError {
    let context = context.into();
    move |e| RuntimeError::Tract {
        context,
        message: format!("{e:#}"),
    }
}

/// tract runs where the process runs: the settings that choose ONNX Runtime devices and
/// libraries do not apply.
fn check_settings(settings: &SessionSettings) -> Result<()> {
    if settings.device.is_cuda() {
        return Err(RuntimeError::Device {
            device: settings.device.to_string(),
            message: "the tract backend runs on the CPU only (use --backend ort for CUDA)".into(),
        });
    }
    let ort_only = [
        ("--no-cpu-fallback", settings.no_cpu_fallback),
        ("--threads", settings.intra_threads.is_some()),
    ];
    match ort_only.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(RuntimeError::OrtOnly { flag }),
        None => Ok(()),
    }
}

impl TractBackend {
    /// Loads `model` with the initializers of the `fed` inputs dropped and the loss ops expanded,
    /// and checks that tract has every op it uses.
    fn load(model: ModelSource<'_>, fed: &[&str]) -> Result<TractBackend> {
        let context = format!("loading {model}");
        let onnx = tract_onnx::onnx();
        let (mut proto, dir) = match model {
            ModelSource::Path(p) => (
                onnx.proto_model_for_path(p)
                    .map_err(tract_err(context.clone()))?,
                p.parent().and_then(Path::to_str),
            ),
            ModelSource::Bytes(mut b) => (
                onnx.proto_model_for_read(&mut b)
                    .map_err(tract_err(context.clone()))?,
                None,
            ),
        };
        let opset = proto
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(0, |o| o.version);
        let graph = proto.graph.as_mut().ok_or_else(|| RuntimeError::Tract {
            context: context.clone(),
            message: "the model has no graph".into(),
        })?;
        graph
            .initializer
            .retain(|t| !fed.contains(&t.name.as_str()));
        expand::expand_loss_ops(graph, opset);
        if let Some(node) =
            expand::find_node(graph, &|n| !onnx.op_register.0.contains_key(&n.op_type))
        {
            return Err(RuntimeError::Tract {
                context,
                message: format!(
                    "tract has no operator {} (node `{}`)",
                    node.op_type, node.name
                ),
            });
        }
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(tract_err(context.clone()))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(RuntimeError::Tract {
                context,
                message: format!("undefined values: {}", parsed.unresolved_inputs.join(", ")),
            });
        }
        let model = parsed.model;
        let mut inputs = Vec::new();
        let mut specs = Vec::new();
        for (i, outlet) in model.inputs.iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let fact = model.input_fact(i).map_err(tract_err(context.clone()))?;
            let dtype = fact.datum_type.concretize().and_then(dtype_of);
            if let (Some(dtype), false) = (dtype, fact.shape.is_open()) {
                specs.push(InputSpec {
                    name: name.clone(),
                    dtype,
                    shape: fact
                        .shape
                        .dims()
                        .map(|d| d.concretize().and_then(|d| d.as_i64()))
                        .map(|d| d.and_then(|v| usize::try_from(v).ok()))
                        .collect(),
                });
            }
            inputs.push(name);
        }
        let outputs = model
            .outputs
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map_or_else(|| model.node(o.node).name.clone(), str::to_string)
            })
            .collect();
        Ok(TractBackend {
            model,
            inputs,
            outputs,
            specs,
            plans: Vec::new(),
            report: None,
        })
    }

    /// The plan for inputs of these shapes: the model typed and optimized with every input's
    /// shape made concrete, built on first use and kept.
    fn plan_for(&mut self, feeds: &[TValue]) -> Result<Arc<TypedRunnableModel>> {
        let shapes: Vec<Vec<usize>> = feeds.iter().map(|v| v.shape().to_vec()).collect();
        if let Some((_, plan)) = self.plans.iter().find(|(s, _)| *s == shapes) {
            return Ok(Arc::clone(plan));
        }
        let context = format!("preparing the model for input shapes {shapes:?}");
        let mut model = self.model.clone();
        for (i, value) in feeds.iter().enumerate() {
            model
                .set_input_fact(i, InferenceFact::dt_shape_from_tensor(value))
                .map_err(tract_err(context.clone()))?;
        }
        let plan = model
            .into_typed()
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(tract_err(context))?;
        self.plans.push((shapes, Arc::clone(&plan)));
        Ok(plan)
    }

    /// Checks a fed value against the graph input's declared dtype and fixed dimensions.
    fn check_feed(&self, name: &str, value: &TValue) -> Result<()> {
        let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
            return Ok(());
        };
        let fits = dtype_of(value.datum_type()) == Some(spec.dtype)
            && value.rank() == spec.shape.len()
            && spec
                .shape
                .iter()
                .zip(value.shape())
                .all(|(want, got)| want.is_none_or(|w| w == *got));
        if fits {
            return Ok(());
        }
        Err(RuntimeError::Tensor {
            name: name.to_string(),
            message: format!(
                "fed {:?} {:?}, the graph input is {spec}",
                value.datum_type(),
                value.shape()
            ),
        })
    }
}

impl Backend for TractBackend {}

impl Run for TractBackend {
    type Value = TValue;

    fn open(path: &Path, options: &TrainOptions, fed: &[&str]) -> Result<Self> {
        check_settings(&options.session)?;
        if options.ort_lib.is_some() {
            return Err(RuntimeError::OrtOnly { flag: "--ort-lib" });
        }
        TractBackend::load(path.into(), fed)
    }

    fn open_beside(&self, path: &Path, settings: &SessionSettings, fed: &[&str]) -> Result<Self> {
        check_settings(settings)?;
        TractBackend::load(path.into(), fed)
    }

    fn upload(&self, tensor: &HostTensor) -> Result<TValue> {
        let err = |message: String| RuntimeError::Tensor {
            name: String::new(),
            message,
        };
        if let Some(strings) = tensor.strings() {
            let array = tract_ndarray::ArrayD::from_shape_vec(tensor.shape(), strings.to_vec())
                .map_err(|e| err(e.to_string()))?;
            return Ok(Tensor::from(array).into_tvalue());
        }
        let dt = datum_type(tensor.dtype())
            .ok_or_else(|| err(format!("tract has no {} tensors", tensor.dtype())))?;
        let mut t = Tensor::zero_dt(dt, tensor.shape()).map_err(|e| err(format!("{e:#}")))?;
        let bytes = tensor.bytes().unwrap_or_default();
        t.try_as_plain_ram_mut()
            .map_err(|e| err(format!("{e:#}")))?
            .as_bytes_mut()
            .copy_from_slice(bytes);
        Ok(t.into_tvalue())
    }

    fn to_host(&self, name: &str, value: &TValue) -> Result<HostTensor> {
        let err = |message: String| RuntimeError::Tensor {
            name: name.to_string(),
            message,
        };
        let shape = value.shape().to_vec();
        // Shape computations may leave symbolic-dimension tensors: their values are integers.
        let value: Cow<'_, Tensor> = if value.datum_type() == DatumType::TDim {
            value.cast_to::<i64>().map_err(|e| err(format!("{e:#}")))?
        } else {
            Cow::Borrowed(value)
        };
        let view = value
            .try_as_plain_ram()
            .map_err(|e| err(format!("{e:#}")))?;
        let dtype = dtype_of(value.datum_type()).ok_or_else(|| {
            err(format!(
                "tract's {:?} is not an ONNX type",
                value.datum_type()
            ))
        })?;
        if dtype == DType::String {
            let strings = view
                .as_slice::<String>()
                .map_err(|e| err(format!("{e:#}")))?;
            return HostTensor::from_strings(shape, strings.to_vec());
        }
        HostTensor::from_bytes(dtype, shape, view.as_bytes().to_vec()).map_err(|e| match e {
            RuntimeError::Tensor { message, .. } => err(message),
            other => other,
        })
    }

    fn signature(&self, name: &str, value: &TValue) -> Result<(DType, Vec<usize>)> {
        let dtype = dtype_of(value.datum_type()).ok_or_else(|| RuntimeError::Tensor {
            name: name.to_string(),
            message: format!("tract's {:?} is not an ONNX type", value.datum_type()),
        })?;
        Ok((dtype, value.shape().to_vec()))
    }

    fn run(
        &mut self,
        inputs: &[(&str, &TValue)],
        outputs: &[(&str, Placement)],
    ) -> Result<Vec<TValue>> {
        if let Some((extra, _)) = inputs
            .iter()
            .find(|(n, _)| !self.inputs.iter().any(|i| i == n))
        {
            return Err(RuntimeError::NotAnInput {
                name: extra.to_string(),
                backend: "tract",
                inputs: self.inputs.clone(),
            });
        }
        let feeds = self
            .inputs
            .iter()
            .map(|name| {
                let value = inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| (*v).clone())
                    .ok_or_else(|| RuntimeError::NotFed(name.clone()))?;
                self.check_feed(name, &value)?;
                Ok(value)
            })
            .collect::<Result<TVec<TValue>>>()?;
        let plan = self.plan_for(&feeds)?;
        // tract `expect`s on a few internal conditions; a model that reaches one is an error.
        let produced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan.run(feeds)))
            .map_err(|payload| RuntimeError::Tract {
                context: "running the model".into(),
                message: format!("tract panicked: {}", panic_message(payload.as_ref())),
            })?
            .map_err(tract_err("running the model"))?;
        let picked = outputs
            .iter()
            .map(|(name, _)| {
                self.outputs
                    .iter()
                    .position(|o| o == name)
                    .and_then(|i| produced.get(i).cloned())
                    .ok_or_else(|| RuntimeError::Tract {
                        context: "running the model".into(),
                        message: format!("output `{name}` was not produced"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        if self.report.is_none() {
            let nodes = plan.order_without_consts().len();
            self.report = Some(ProviderReport {
                nodes: BTreeMap::from([("tract".to_string(), nodes)]),
            });
        }
        Ok(picked)
    }

    fn input_specs(&self) -> Vec<InputSpec> {
        self.specs.clone()
    }

    fn providers(&self) -> Option<&ProviderReport> {
        self.report.as_ref()
    }

    fn transferred_bytes(&self, _value: &TValue) -> usize {
        0
    }
}

const TYPES: [(DType, DatumType); 13] = [
    (DType::F32, DatumType::F32),
    (DType::F64, DatumType::F64),
    (DType::F16, DatumType::F16),
    (DType::I8, DatumType::I8),
    (DType::I16, DatumType::I16),
    (DType::I32, DatumType::I32),
    (DType::I64, DatumType::I64),
    (DType::U8, DatumType::U8),
    (DType::U16, DatumType::U16),
    (DType::U32, DatumType::U32),
    (DType::U64, DatumType::U64),
    (DType::Bool, DatumType::Bool),
    (DType::String, DatumType::String),
];

/// tract's element type of an ONNX dtype (`None`: bfloat16, which tract lacks).
fn datum_type(dtype: DType) -> Option<DatumType> {
    TYPES.iter().find(|(d, _)| *d == dtype).map(|(_, t)| *t)
}

fn dtype_of(dt: DatumType) -> Option<DType> {
    TYPES.iter().find(|(_, t)| *t == dt).map(|(d, _)| *d)
}
