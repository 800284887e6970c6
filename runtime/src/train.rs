//! A whole training run, as `gen-train` performs it: data and probe streams, the horizon scale,
//! evaluation, metrics, plots, checkpoints, exact resume and the exported inference model, all in
//! one run directory.
//!
//! Run directory contents: `run.json` (what was run), `checkpoint.bin` and `checkpoint.prev.bin`,
//! `metrics.jsonl`, `metrics.csv`, `loss.png`, `lr.png`, `accuracy.png`, `model.onnx` (trained
//! inference model) and `.gen-train.lock`.
//!
//! Numerical safety: a step whose loss is not finite stops the run with
//! [`RuntimeError::Diverged`]; so does a checkpoint or export whose state holds NaN or infinite
//! parameters. Neither is written: the last good checkpoint stays, and no NaN model is exported.
//! Crash safety: model.onnx is written before the final checkpoint, so a run killed between them
//! redoes its last steps on resume; a finished run whose model.onnx is missing re-exports it.
//!
//! Over 600 lines: the run loop and the run-directory checks it must apply in order (resume,
//! lock, divergence, finish) are kept together; splitting the run-directory choice into
//! `rundir.rs` is the next step when this file grows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::TrainOptions;
use crate::backend::{Backend, OrtBackend};
use crate::checkpoint::{fingerprint, Checkpoint};
use crate::contract::{Contract, StateRole};
use crate::data::{find_float, Dataset, LabelRule};
use crate::error::{io_err, Result, RuntimeError};
use crate::eval::{EvalResult, EvalSession};
use crate::export::export_inference;
use crate::fsutil::write_atomic;
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::model::OnnxModel;
use crate::profile::ProviderReport;
use crate::rundir::{check_writable, has_checkpoint, run_dir_err, RunDir, LOCK_FILE};
use crate::session::{StepResult, Tensors, TrainSession, Transfer};
use crate::stream::{BatchStream, PROBE_STREAM, TRAIN_STREAM};

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Steps(u64),
}

/// The horizon-aware factor fed to `controls.scale`: `None` always 1, `Linear` 1 − t/T for
/// step t (0-based) of T. (Documented here, not per variant, which clap would list in `--help`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    None,
    Linear,
}

impl Scale {
    /// The factor for step `t` (0-based) of `total`.
    pub fn factor(self, t: u64, total: u64) -> f32 {
        match self {
            Scale::None => 1.0,
            Scale::Linear => (1.0 - t as f64 / total.max(1) as f64) as f32,
        }
    }
}

/// Everything `gen-train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub model: PathBuf,
    pub data: PathBuf,
    pub eval_data: Option<PathBuf>,
    pub batch_size: usize,
    pub length: Length,
    pub seed: u64,
    pub scale: Scale,
    /// Run directory for a new run (default `.runs/<model>-<unix time>`).
    pub out: Option<PathBuf>,
    /// Run directory of a run to continue.
    pub resume: Option<PathBuf>,
    pub eval_every: Option<u64>,
    pub checkpoint_every: Option<u64>,
    /// Stop (with a checkpoint) once this many steps are done, keeping the schedule of `length`.
    pub stop_after: Option<u64>,
    pub options: TrainOptions,
}

/// Training steps over a data set: the training stream, the GeN probe stream and the session.
pub struct Driver<B: Backend = OrtBackend> {
    session: TrainSession<B>,
    data: Dataset,
    train: BatchStream,
    probe: Option<BatchStream>,
    labels: Option<LabelRule>,
    notes: Vec<String>,
}

impl<B: Backend> Driver<B> {
    /// Checks `data` against the session's data inputs (label values included) and
    /// sets up both streams.
    pub fn new(
        session: TrainSession<B>,
        mut data: Dataset,
        batch_size: usize,
        seed: u64,
    ) -> Result<Driver<B>> {
        let specs = session.data_specs();
        let notes = data.conform(&specs)?;
        let labels = label_rule(session.contract(), session.path())?;
        if let Some(rule) = &labels {
            data.check_labels(rule)?;
        }
        let rows = data.rows();
        if batch_size == 0 {
            return Err(RuntimeError::Zero {
                flag: "--batch-size",
            });
        }
        if batch_size > rows {
            return Err(RuntimeError::BatchTooLarge {
                batch_size,
                data: data.path().to_path_buf(),
                rows,
            });
        }
        let fixed = specs
            .iter()
            .find_map(|s| s.shape.first().copied().flatten());
        if let Some(b) = fixed.filter(|b| *b != batch_size) {
            return Err(RuntimeError::FixedBatch { fixed: b });
        }
        // A fixed batch dimension cannot take the last partial batch.
        let drop_last = fixed.is_some();
        let probe = session
            .needs_probe_batches()
            .then(|| BatchStream::new(rows, batch_size, drop_last, seed, PROBE_STREAM));
        Ok(Driver {
            train: BatchStream::new(rows, batch_size, drop_last, seed, TRAIN_STREAM),
            probe,
            session,
            data,
            labels,
            notes,
        })
    }

    /// The labels the loss accepts, when the contract names them.
    pub fn label_rule(&self) -> Option<&LabelRule> {
        self.labels.as_ref()
    }

    pub fn session(&self) -> &TrainSession<B> {
        &self.session
    }

    /// Batches per epoch of the training stream.
    pub fn batches_per_epoch(&self) -> usize {
        self.train.batches_per_epoch()
    }

    /// Notes about data conversions made when loading.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// One step: the next training batch, a probe batch when GeN runs, and `scale`. Returns the
    /// 1-based epoch of the training batch and the step's result; a loss that is not finite is
    /// [`RuntimeError::Diverged`].
    pub fn step(&mut self, scale: f32) -> Result<(u64, StepResult)> {
        let (epoch, rows) = self.train.next_batch();
        let batch = self.data.batch(&rows)?;
        let probe = match &mut self.probe {
            Some(stream) if self.session.next_is_gen_step()? => {
                Some(self.data.batch(&stream.next_batch().1)?)
            }
            _ => None,
        };
        let result = self.session.step(&batch, probe.as_deref(), scale)?;
        if !result.loss.is_finite() {
            return Err(RuntimeError::Diverged {
                step: result.step + 1,
                cause: self.non_finite_loss_cause(result.loss, &batch),
                checkpoint: None,
            });
        }
        Ok((epoch + 1, result))
    }

    /// Why a batch's loss is not finite: its labels all ignored (a mean over no positions), else
    /// the parameters (the data's values were checked when it was loaded).
    fn non_finite_loss_cause(&self, loss: f64, batch: &Tensors) -> String {
        let ignored = self.labels.as_ref().and_then(|rule| {
            let ignore = rule.ignore_index?;
            let (_, labels) = batch.iter().find(|(n, _)| n == &rule.array)?;
            let values = labels.to_f64_vec().ok()?;
            values
                .iter()
                .all(|&v| v as i64 == ignore)
                .then(|| (rule.array.clone(), ignore))
        });
        match ignored {
            Some((array, ignore)) => format!(
                "the loss is {loss}: every label of the batch (`{array}`) is the ignore index \
                 {ignore}, and a mean over no labelled positions is 0/0"
            ),
            None => format!(
                "the loss is {loss}: the parameters have left the finite range (typically a \
                 learning rate too large for the model)"
            ),
        }
    }

    fn checkpoint(&self, epoch: u64) -> Result<Checkpoint> {
        Ok(Checkpoint {
            steps: self.session.step_count(),
            epoch,
            train_stream: self.train.position(),
            probe_stream: self
                .probe
                .as_ref()
                .map(|p| p.position())
                .unwrap_or_default(),
            contract_fingerprint: contract_fingerprint(&self.session),
            state: self.session.state()?,
        })
    }

    fn restore(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.session.set_state(&ckpt.state)?;
        self.train.seek(ckpt.train_stream);
        if let Some(p) = &mut self.probe {
            p.seek(ckpt.probe_stream);
        }
        Ok(())
    }
}

fn contract_fingerprint<B: Backend>(session: &TrainSession<B>) -> String {
    fingerprint(&serde_json::to_string(session.contract()).unwrap_or_default())
}

/// The labels of a cross-entropy loss, from the contract's `config` (`loss`, `labels`,
/// `ignore_index`); the class count is the last dimension of the `config.logits` output of the
/// companion eval graph, when it is there and fixed. `None` for other losses, or when the contract
/// does not name the labels.
fn label_rule(contract: &Contract, model: &Path) -> Result<Option<LabelRule>> {
    let text = |key: &str| contract.config.get(key).and_then(|v| v.as_str());
    let (Some("cross-entropy"), Some(array)) = (text("loss"), text("labels")) else {
        return Ok(None);
    };
    let eval = contract.eval_model_path(model).filter(|p| p.is_file());
    let classes = match (text("logits"), eval) {
        (Some(logits), Some(eval)) => OnnxModel::read(&eval)?
            .output_dims(logits)
            .and_then(|dims| dims.last().copied().flatten()),
        _ => None,
    };
    Ok(Some(LabelRule {
        array: array.to_string(),
        classes,
        ignore_index: contract.config.get("ignore_index").and_then(|v| v.as_i64()),
    }))
}

/// Refuses a state that holds NaN or an infinity in a parameter, optimizer slot or the lr, or NaN
/// in a buffer (a buffer may hold an infinite mask value): such a state is never checkpointed or
/// exported.
fn check_finite_state(contract: &Contract, ckpt: &Checkpoint) -> Result<()> {
    for (entry, (name, t)) in contract.state.iter().zip(&ckpt.state) {
        let bad = |v: f64| match entry.role {
            StateRole::Buffer => v.is_nan(),
            _ => !v.is_finite(),
        };
        if let Some((i, v)) = find_float(t, bad)? {
            let what = match entry.role {
                StateRole::Param => "parameter",
                StateRole::Buffer => "buffer",
                StateRole::Optimizer => "optimizer state",
                StateRole::Step => "step counter",
                StateRole::Lr => "learning rate",
                StateRole::Gen => "GeN controller state",
            };
            return Err(RuntimeError::Diverged {
                step: ckpt.steps,
                cause: format!(
                    "after it the {what} `{name}` holds {v} (element {i}), out of the finite \
                     range (typically a learning rate too large for the model)"
                ),
                checkpoint: None,
            });
        }
    }
    Ok(())
}

/// What `run.json` records, to check that a resume continues the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunInfo {
    model: PathBuf,
    data: PathBuf,
    eval_data: Option<PathBuf>,
    batch_size: usize,
    seed: u64,
    scale: Scale,
    lazy_freq: Option<u64>,
    device: String,
    total_steps: u64,
    /// The graph's GeN controller (`config.gen_controller`; runs recorded before it existed
    /// used the paper rule).
    #[serde(default = "paper_controller")]
    gen_controller: String,
}

fn paper_controller() -> String {
    "paper".into()
}

/// Facts about a run, given to the observer before the first step.
#[derive(Clone, Debug)]
pub struct RunStart {
    pub run_dir: PathBuf,
    pub total_steps: u64,
    /// Steps already done (a resumed run).
    pub start_step: u64,
    /// Step at which this invocation stops.
    pub stop_step: u64,
    pub batches_per_epoch: usize,
    pub lazy_freq: Option<u64>,
    pub notes: Vec<String>,
}

/// Progress callbacks (the command line draws its progress bar with them).
pub trait Observer {
    fn started(&mut self, _start: &RunStart) {}
    fn step(&mut self, _record: &MetricsRecord) {}
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub total_steps: u64,
    pub interrupted: bool,
    pub last: Option<MetricsRecord>,
    pub eval: Option<EvalResult>,
    pub providers: ProviderReport,
    pub eval_providers: Option<ProviderReport>,
    pub transfer: Transfer,
    pub elapsed: Duration,
    pub steps_per_sec: f64,
    pub exported: Option<PathBuf>,
    pub plots: Vec<PathBuf>,
    pub notes: Vec<String>,
}

/// A configured training run, validated and ready to start, on ONNX Runtime unless another
/// backend is named (`Trainer::<TractBackend>::with_backend`, cargo feature `tract`).
pub struct Trainer<B: Backend = OrtBackend> {
    config: TrainConfig,
    dir: RunDir,
    driver: Driver<B>,
    eval: Option<(EvalSession<B>, Dataset)>,
    metrics: MetricsLog,
    total_steps: u64,
    epoch: u64,
    /// Steps done by the last checkpoint on disk.
    checkpointed: Option<u64>,
    notes: Vec<String>,
}

impl Trainer {
    /// A training run on ONNX Runtime: see [`Trainer::with_backend`].
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        Trainer::with_backend(config)
    }
}

impl<B: Backend> Trainer<B> {
    /// Validates everything (run directory, model, device, data, eval graph, checkpoint) before
    /// any training, and prepares the run directory; the graphs run on backend `B`. The run
    /// directory is locked for the trainer's lifetime (a resumed one before anything else).
    pub fn with_backend(config: TrainConfig) -> Result<Trainer<B>> {
        for (flag, v) in [
            ("--eval-every", config.eval_every),
            ("--checkpoint-every", config.checkpoint_every),
            ("--stop-after", config.stop_after),
        ] {
            if v == Some(0) {
                return Err(RuntimeError::Zero { flag });
            }
        }
        if matches!(config.length, Length::Epochs(0) | Length::Steps(0)) {
            return Err(RuntimeError::Zero {
                flag: "--epochs / --steps",
            });
        }
        let run_dir = choose_run_dir(&config)?;
        let mut notes = Vec::new();
        let resumed = match config.resume {
            Some(_) => Some(prepare(RunDir::lock(&run_dir)?, &mut notes)?),
            None => None,
        };

        let session = TrainSession::open_with_backend(&config.model, &config.options)?;
        let data = Dataset::load(&config.data)?;
        let mut driver = Driver::new(session, data, config.batch_size, config.seed)?;
        notes.extend_from_slice(driver.notes());

        let eval = match &config.eval_data {
            None => None,
            Some(path) => {
                let contract = driver.session().contract();
                let eval_path = contract
                    .eval_model_path(&config.model)
                    .filter(|p| p.is_file())
                    .ok_or_else(|| RuntimeError::Contract {
                        path: config.model.clone(),
                        message:
                            "--eval-data needs the companion eval graph (contract.eval_model), \
                                  which this model does not name or which is missing beside it"
                                .into(),
                    })?;
                let eval =
                    EvalSession::open(&eval_path, driver.session(), &config.options.session)?;
                let mut data = Dataset::load(path)?;
                notes.extend(data.conform(&eval.data_specs())?);
                if let Some(rule) = driver.label_rule() {
                    data.check_labels(rule)?;
                }
                Some((eval, data))
            }
        };

        let total_steps = match config.length {
            Length::Steps(n) => n,
            Length::Epochs(n) => n * driver.batches_per_epoch() as u64,
        };
        let info = RunInfo {
            model: absolute(&config.model),
            data: absolute(&config.data),
            eval_data: config.eval_data.as_deref().map(absolute),
            batch_size: config.batch_size,
            seed: config.seed,
            scale: config.scale,
            lazy_freq: config.options.lazy_freq,
            device: config.options.session.device.to_string(),
            total_steps,
            gen_controller: driver.session().contract().gen_controller().to_string(),
        };
        let mut epoch = 1;
        let (dir, start) = match resumed {
            Some(mut dir) => {
                let (ckpt, note) = dir.load_checkpoint()?;
                notes.extend(note);
                check_resume(&run_dir, &info, &ckpt, driver.session())?;
                driver.restore(&ckpt)?;
                epoch = ckpt.epoch;
                (dir, ckpt.steps)
            }
            None => {
                std::fs::create_dir_all(&run_dir)
                    .map_err(|e| run_dir_err(&run_dir, format!("cannot create it: {e}")))?;
                let dir = RunDir::lock(&run_dir)?;
                // Another gen-train may have used the directory since it was chosen.
                check_empty(&run_dir)?;
                (prepare(dir, &mut notes)?, 0)
            }
        };
        if start >= total_steps {
            let exportable = driver
                .session()
                .contract()
                .eval_model_path(&config.model)
                .is_some_and(|p| p.is_file());
            if !exportable || dir.path().join(MODEL_FILE).exists() {
                return Err(RuntimeError::NothingToDo {
                    done: start,
                    total: total_steps,
                });
            }
            notes.push(format!(
                "the run had done its {start} steps but {MODEL_FILE} is missing: exporting it again"
            ));
        }
        let info_json =
            serde_json::to_vec_pretty(&info).map_err(|e| run_dir_err(&run_dir, e.to_string()))?;
        write_atomic(&run_dir.join("run.json"), &info_json)?;
        let metrics = MetricsLog::open(&run_dir, start)?;
        Ok(Trainer {
            config,
            dir,
            driver,
            eval,
            metrics,
            total_steps,
            epoch,
            checkpointed: (start > 0).then_some(start),
            notes,
        })
    }

    /// Trains until the total (or `stop_after`) is reached or `stop` is set, then exports,
    /// plots and checkpoints. Errors during training leave the last checkpoint intact.
    pub fn run(&mut self, observer: &mut dyn Observer, stop: &AtomicBool) -> Result<Summary> {
        let start_step = self.driver.session().step_count();
        let stop_step = self
            .config
            .stop_after
            .map_or(self.total_steps, |s| s.min(self.total_steps))
            .max(start_step);
        observer.started(&RunStart {
            run_dir: self.dir.path().to_path_buf(),
            total_steps: self.total_steps,
            start_step,
            stop_step,
            batches_per_epoch: self.driver.batches_per_epoch(),
            lazy_freq: self.driver.session().lazy_freq(),
            notes: self.notes.clone(),
        });
        let began = Instant::now();
        let mut last_eval = None;
        let mut interrupted = false;
        while self.driver.session().step_count() < stop_step {
            if stop.load(Ordering::SeqCst) {
                interrupted = true;
                break;
            }
            let t = self.driver.session().step_count();
            let scale = self.config.scale.factor(t, self.total_steps);
            let (epoch, result) = self.driver.step(scale).map_err(|e| self.kept(e))?;
            self.epoch = epoch;
            let done = t + 1;
            let eval_now = self.eval.is_some()
                && (done == self.total_steps
                    || self
                        .config
                        .eval_every
                        .is_some_and(|k| done.is_multiple_of(k)));
            let eval = if eval_now {
                Some(self.evaluate()?)
            } else {
                None
            };
            last_eval = eval.or(last_eval);
            let record = record(&result, epoch, eval, done - start_step, began.elapsed());
            observer.step(&record);
            self.metrics.append(record)?;
            // The last step's checkpoint is the final one, written after the export.
            if done < stop_step
                && self
                    .config
                    .checkpoint_every
                    .is_some_and(|k| done.is_multiple_of(k))
            {
                let ckpt = self.checkpoint()?;
                self.save_checkpoint(&ckpt)?;
            }
        }
        self.finish(began.elapsed(), start_step, last_eval, interrupted)
    }

    fn evaluate(&mut self) -> Result<EvalResult> {
        let (session, data) = self.eval.as_mut().ok_or(RuntimeError::NoEvalData)?;
        session.evaluate(self.driver.session(), data, self.config.batch_size)
    }

    /// The current state as a checkpoint, refused when it is not finite.
    fn checkpoint(&self) -> Result<Checkpoint> {
        let ckpt = self.driver.checkpoint(self.epoch)?;
        check_finite_state(self.driver.session().contract(), &ckpt).map_err(|e| self.kept(e))?;
        Ok(ckpt)
    }

    fn save_checkpoint(&mut self, ckpt: &Checkpoint) -> Result<()> {
        self.dir.save_checkpoint(ckpt)?;
        self.checkpointed = Some(ckpt.steps);
        Ok(())
    }

    /// Adds the last checkpoint's step to a divergence error.
    fn kept(&self, e: RuntimeError) -> RuntimeError {
        match e {
            RuntimeError::Diverged { step, cause, .. } => RuntimeError::Diverged {
                step,
                cause,
                checkpoint: self.checkpointed,
            },
            e => e,
        }
    }

    /// The end of a run: model.onnx first, then the plots, then the final checkpoint, so that a
    /// run killed in between resumes before its end and exports again.
    fn finish(
        &mut self,
        elapsed: Duration,
        start_step: u64,
        eval: Option<EvalResult>,
        interrupted: bool,
    ) -> Result<Summary> {
        let ckpt = self.checkpoint()?;
        let session = self.driver.session();
        let contract = session.contract();
        let mut notes = Vec::new();
        let exported = match contract
            .eval_model_path(&self.config.model)
            .filter(|p| p.is_file())
        {
            Some(eval_path) => {
                let out = self.dir.path().join(MODEL_FILE);
                export_inference(
                    &eval_path,
                    &contract.model_inputs,
                    &contract.model_outputs,
                    &ckpt.state,
                    &out,
                )?;
                Some(out)
            }
            None => {
                notes.push("no companion eval graph: model.onnx was not exported".to_string());
                None
            }
        };
        let plots = self.metrics.plot(self.dir.path())?;
        self.save_checkpoint(&ckpt)?;
        let session = self.driver.session();
        let steps = session.step_count();
        Ok(Summary {
            run_dir: self.dir.path().to_path_buf(),
            steps,
            total_steps: self.total_steps,
            interrupted,
            last: self.metrics.records().last().cloned(),
            eval,
            providers: session.providers().cloned().unwrap_or_default(),
            eval_providers: self.eval.as_ref().and_then(|(e, _)| e.providers().cloned()),
            transfer: session.transfer(),
            elapsed,
            steps_per_sec: rate(steps - start_step, elapsed),
            exported,
            plots,
            notes,
        })
    }
}

/// The trained inference model's file in the run directory.
const MODEL_FILE: &str = "model.onnx";

/// A freshly locked run directory made ready: stale temporary files removed (noted), then
/// checked writable.
fn prepare(dir: RunDir, notes: &mut Vec<String>) -> Result<RunDir> {
    notes.extend(dir.remove_stale_files()?);
    check_writable(dir.path())?;
    Ok(dir)
}

fn rate(steps: u64, elapsed: Duration) -> f64 {
    steps as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn record(
    r: &StepResult,
    epoch: u64,
    eval: Option<EvalResult>,
    steps_here: u64,
    elapsed: Duration,
) -> MetricsRecord {
    let probe = r.probe_losses.filter(|_| r.gen_applied.unwrap_or(false));
    MetricsRecord {
        step: r.step + 1,
        epoch,
        loss: r.loss,
        lr: r.lr,
        gen_applied: r.gen_applied,
        probe_loss_minus: probe.map(|p| p[0]),
        probe_loss_plus: probe.map(|p| p[1]),
        probe_loss_zero: probe.map(|p| p[2]),
        train_accuracy: r.accuracy,
        eval_loss: eval.map(|e| e.loss),
        eval_accuracy: eval.and_then(|e| e.accuracy),
        steps_per_sec: rate(steps_here, elapsed),
    }
}

fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// The run directory: `--resume DIR` (must hold a checkpoint), else `--out DIR` (must be absent or
/// empty), else a fresh `.runs/<model>-<unix time>`.
fn choose_run_dir(config: &TrainConfig) -> Result<PathBuf> {
    if let Some(dir) = &config.resume {
        if let Some(out) = &config.out {
            if absolute(out) != absolute(dir) {
                return Err(run_dir_err(out, "--out and --resume name different directories; a resumed run continues in its own"));
            }
        }
        fail_if_in_use(dir)?;
        if !has_checkpoint(dir) {
            return Err(run_dir_err(dir, "has no checkpoint.bin to resume from"));
        }
        return Ok(dir.clone());
    }
    let dir = match &config.out {
        Some(d) => d.clone(),
        None => {
            let stem = config
                .model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let base = PathBuf::from(".runs").join(format!("{stem}-{secs}"));
            let mut dir = base.clone();
            let mut n = 1;
            while dir.exists() {
                dir = PathBuf::from(format!("{}-{n}", base.display()));
                n += 1;
            }
            dir
        }
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err(run_dir_err(&dir, "exists and is not a directory"));
        }
        fail_if_in_use(&dir)?;
        check_empty(&dir)?;
        check_writable(&dir)?;
    } else if let Some(parent) = dir
        .ancestors()
        .skip(1)
        .find(|a| a.exists() && !a.as_os_str().is_empty())
    {
        check_writable(parent)?;
    }
    Ok(dir)
}

/// The "in use" error when another gen-train holds the directory's lock (taken and released at
/// once otherwise), before any other complaint about the directory.
fn fail_if_in_use(dir: &Path) -> Result<()> {
    if dir.join(LOCK_FILE).is_file() {
        RunDir::lock(dir)?;
    }
    Ok(())
}

/// A new run's directory must hold nothing but (possibly) its lock file.
fn check_empty(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        if entry.map_err(io_err(dir))?.file_name() != LOCK_FILE {
            return Err(run_dir_err(
                dir,
                "is not empty: pass --resume to continue the run in it, or choose a new --out",
            ));
        }
    }
    Ok(())
}

fn check_resume<B: Backend>(
    dir: &Path,
    now: &RunInfo,
    ckpt: &Checkpoint,
    session: &TrainSession<B>,
) -> Result<()> {
    let path = dir.join("run.json");
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    let before: RunInfo =
        serde_json::from_slice(&text).map_err(|e| run_dir_err(dir, format!("run.json: {e}")))?;
    if before.gen_controller != now.gen_controller {
        return Err(run_dir_err(
            dir,
            format!(
                "its checkpoint was written with the {} GeN controller, but {} uses the {} controller",
                before.gen_controller,
                now.model.display(),
                now.gen_controller
            ),
        ));
    }
    if ckpt.contract_fingerprint != contract_fingerprint(session) {
        return Err(run_dir_err(
            dir,
            format!(
                "its checkpoint belongs to a different model than {}",
                now.model.display()
            ),
        ));
    }
    let mut diffs = Vec::new();
    if before.data != now.data {
        diffs.push(format!(
            "--data {} (was {})",
            now.data.display(),
            before.data.display()
        ));
    }
    if before.batch_size != now.batch_size {
        diffs.push(format!(
            "--batch-size {} (was {})",
            now.batch_size, before.batch_size
        ));
    }
    if before.seed != now.seed {
        diffs.push(format!("--seed {} (was {})", now.seed, before.seed));
    }
    if before.scale != now.scale {
        diffs.push(format!("--scale {:?} (was {:?})", now.scale, before.scale));
    }
    if before.lazy_freq != now.lazy_freq {
        diffs.push(format!(
            "--lazy-freq {:?} (was {:?})",
            now.lazy_freq, before.lazy_freq
        ));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(run_dir_err(
            dir,
            format!(
                "resuming needs the run's settings; these differ: {}",
                diffs.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_scale_decays_to_one_over_t() {
        assert_eq!(Scale::None.factor(5, 10), 1.0);
        assert_eq!(Scale::Linear.factor(0, 4), 1.0);
        assert_eq!(Scale::Linear.factor(3, 4), 0.25);
    }
}
