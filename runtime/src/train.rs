//! A whole training run, as `gen-train` performs it: data and probe streams, the horizon scale,
//! evaluation, metrics, plots, checkpoints, exact resume and the exported inference model, all in
//! one run directory.
//!
//! Run directory contents: `run.json` (what was run), `checkpoint.bin`, `metrics.jsonl`,
//! `metrics.csv`, `loss.png`, `lr.png`, `accuracy.png`, `model.onnx` (trained inference model).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::TrainOptions;
use crate::backend::{Backend, OrtBackend};
use crate::checkpoint::{fingerprint, Checkpoint};
use crate::data::Dataset;
use crate::error::{io_err, Result, RuntimeError};
use crate::eval::{EvalResult, EvalSession};
use crate::export::export_inference;
use crate::fsutil::write_atomic;
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::profile::ProviderReport;
use crate::session::{StepResult, TrainSession, Transfer};
use crate::stream::{BatchStream, PROBE_STREAM, TRAIN_STREAM};

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Steps(u64),
}

/// The horizon-aware factor fed to `controls.scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Always 1.
    #[default]
    None,
    /// 1 − t/T for step t (0-based) of T.
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

impl FromStr for Scale {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Scale> {
        match s {
            "none" => Ok(Scale::None),
            "linear" => Ok(Scale::Linear),
            _ => Err(RuntimeError::Config(format!(
                "unknown scale `{s}`: expected none or linear"
            ))),
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
    notes: Vec<String>,
}

impl<B: Backend> Driver<B> {
    /// Checks `data` against the session's data inputs and sets up both streams.
    pub fn new(
        session: TrainSession<B>,
        mut data: Dataset,
        batch_size: usize,
        seed: u64,
    ) -> Result<Driver<B>> {
        let specs = session.data_specs();
        let notes = data.conform(&specs)?;
        let rows = data.rows();
        if batch_size == 0 {
            return Err(RuntimeError::Config(
                "--batch-size must be at least 1".into(),
            ));
        }
        if batch_size > rows {
            return Err(RuntimeError::Config(format!(
                "batch size {batch_size} is larger than the data: {} has {rows} samples",
                data.path().display()
            )));
        }
        let fixed = specs
            .iter()
            .find_map(|s| s.shape.first().copied().flatten());
        if let Some(b) = fixed.filter(|b| *b != batch_size) {
            return Err(RuntimeError::Config(format!(
                "the model's batch dimension is fixed at {b}: use --batch-size {b}"
            )));
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
            notes,
        })
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
    /// 1-based epoch of the training batch and the step's result.
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
        Ok((epoch + 1, result))
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
    run_dir: PathBuf,
    driver: Driver<B>,
    eval: Option<(EvalSession<B>, Dataset)>,
    metrics: MetricsLog,
    total_steps: u64,
    epoch: u64,
    notes: Vec<String>,
}

fn run_dir_err(path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::RunDir {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl Trainer {
    /// A training run on ONNX Runtime: see [`Trainer::with_backend`].
    pub fn new(config: TrainConfig) -> Result<Trainer> {
        Trainer::with_backend(config)
    }
}

impl<B: Backend> Trainer<B> {
    /// Validates everything (run directory, model, device, data, eval graph, checkpoint) before
    /// any training, and prepares the run directory; the graphs run on backend `B`.
    pub fn with_backend(config: TrainConfig) -> Result<Trainer<B>> {
        for (flag, v) in [
            ("--eval-every", config.eval_every),
            ("--checkpoint-every", config.checkpoint_every),
            ("--stop-after", config.stop_after),
        ] {
            if v == Some(0) {
                return Err(RuntimeError::Config(format!("{flag} must be at least 1")));
            }
        }
        if matches!(config.length, Length::Epochs(0) | Length::Steps(0)) {
            return Err(RuntimeError::Config(
                "--epochs / --steps must be at least 1".into(),
            ));
        }
        let run_dir = choose_run_dir(&config)?;
        let resume = config.resume.is_some();

        let session = TrainSession::open_with_backend(&config.model, &config.options)?;
        let data = Dataset::load(&config.data)?;
        let mut driver = Driver::new(session, data, config.batch_size, config.seed)?;
        let mut notes = driver.notes().to_vec();

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
        let start = if resume {
            let ckpt = Checkpoint::load(&run_dir.join("checkpoint.bin"))?;
            check_resume(&run_dir, &info, &ckpt, driver.session())?;
            driver.restore(&ckpt)?;
            epoch = ckpt.epoch;
            ckpt.steps
        } else {
            std::fs::create_dir_all(&run_dir)
                .map_err(|e| run_dir_err(&run_dir, format!("cannot create it: {e}")))?;
            check_writable(&run_dir)?;
            0
        };
        if start >= total_steps {
            return Err(RuntimeError::Config(format!(
                "nothing to do: the run has done {start} of {total_steps} steps (raise --steps / --epochs to continue)"
            )));
        }
        let info_json =
            serde_json::to_vec_pretty(&info).map_err(|e| run_dir_err(&run_dir, e.to_string()))?;
        write_atomic(&run_dir.join("run.json"), &info_json)?;
        let metrics = MetricsLog::open(&run_dir, start)?;
        Ok(Trainer {
            config,
            run_dir,
            driver,
            eval,
            metrics,
            total_steps,
            epoch,
            notes,
        })
    }

    /// Trains until the total (or `stop_after`) is reached or `stop` is set, then checkpoints,
    /// plots and exports. Errors during training still leave the last periodic checkpoint intact.
    pub fn run(&mut self, observer: &mut dyn Observer, stop: &AtomicBool) -> Result<Summary> {
        let start_step = self.driver.session().step_count();
        let stop_step = self
            .config
            .stop_after
            .map_or(self.total_steps, |s| s.min(self.total_steps))
            .max(start_step);
        observer.started(&RunStart {
            run_dir: self.run_dir.clone(),
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
            let (epoch, result) = self.driver.step(scale)?;
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
            if self
                .config
                .checkpoint_every
                .is_some_and(|k| done.is_multiple_of(k))
            {
                self.save_checkpoint()?;
            }
        }
        self.finish(began.elapsed(), start_step, last_eval, interrupted)
    }

    fn evaluate(&mut self) -> Result<EvalResult> {
        let (session, data) = self
            .eval
            .as_mut()
            .ok_or_else(|| RuntimeError::Config("no eval data".into()))?;
        session.evaluate(self.driver.session(), data, self.config.batch_size)
    }

    fn save_checkpoint(&self) -> Result<()> {
        self.driver
            .checkpoint(self.epoch)?
            .save(&self.run_dir.join("checkpoint.bin"))
    }

    fn finish(
        &mut self,
        elapsed: Duration,
        start_step: u64,
        eval: Option<EvalResult>,
        interrupted: bool,
    ) -> Result<Summary> {
        self.save_checkpoint()?;
        let plots = self.metrics.plot(&self.run_dir)?;
        let session = self.driver.session();
        let contract = session.contract();
        let mut notes = Vec::new();
        let exported = match contract
            .eval_model_path(&self.config.model)
            .filter(|p| p.is_file())
        {
            Some(eval_path) => {
                let out = self.run_dir.join("model.onnx");
                export_inference(
                    &eval_path,
                    &contract.model_inputs,
                    &contract.model_outputs,
                    &session.state()?,
                    &out,
                )?;
                Some(out)
            }
            None => {
                notes.push("no companion eval graph: model.onnx was not exported".to_string());
                None
            }
        };
        let steps = session.step_count();
        Ok(Summary {
            run_dir: self.run_dir.clone(),
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
        if !dir.join("checkpoint.bin").is_file() {
            return Err(run_dir_err(dir, "has no checkpoint.bin to resume from"));
        }
        check_writable(dir)?;
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
        let mut entries = std::fs::read_dir(&dir).map_err(io_err(&dir))?;
        if entries.next().is_some() {
            return Err(run_dir_err(
                &dir,
                "is not empty: pass --resume to continue the run in it, or choose a new --out",
            ));
        }
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

/// Creates and removes a probe file: permissions, read-only mounts and full disks show up here,
/// before any training.
fn check_writable(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".gen-train-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| run_dir_err(dir, format!("is not writable: {e}")))
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
        assert!("cosine".parse::<Scale>().is_err());
    }
}
