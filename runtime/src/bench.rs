//! Side-by-side benchmark of two train graphs (typically the same model with and without GeN).
//!
//! Each graph runs in its own worker process (so each has its own peak memory), and the parent
//! alternates them: the same number of steps per round, the order flipped every round (A B, B A,
//! ...) so that drifts in machine speed hit both alike. Workers speak one JSON line per command on
//! stdout: `run N` trains N steps and answers the seconds they took, `report` answers the peak
//! resident memory and the providers that ran, `quit` ends the worker.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::TrainOptions;
use crate::data::Dataset;
use crate::device::Device;
use crate::engine::SessionSettings;
use crate::error::{BenchError, Result, RuntimeError};
use crate::session::TrainSession;
use crate::train::Driver;

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub models: [PathBuf; 2],
    pub data: PathBuf,
    pub batch_size: usize,
    /// Timed steps per model.
    pub steps: u64,
    /// Alternations (the timed steps are split evenly over them).
    pub rounds: u64,
    /// Untimed steps per model before the first round.
    pub warmup: u64,
    pub seed: u64,
    /// Device, threads and fallback policy of both workers.
    pub session: SessionSettings,
    pub ort_lib: Option<PathBuf>,
}

/// One model's measurements.
#[derive(Clone, Debug)]
pub struct BenchSide {
    pub model: PathBuf,
    pub steps: u64,
    pub seconds: f64,
    pub final_loss: f64,
    pub peak_rss_bytes: Option<u64>,
    /// GPU memory held by the worker at the end (from nvidia-smi), CUDA only.
    pub device_memory_bytes: Option<u64>,
    pub providers: String,
}

impl BenchSide {
    pub fn steps_per_sec(&self) -> f64 {
        self.steps as f64 / self.seconds.max(1e-12)
    }
}

/// Both sides and their ratios (first / second).
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub device: Device,
    pub sides: [BenchSide; 2],
}

impl BenchReport {
    /// Wall time per step, first model over second.
    pub fn time_ratio(&self) -> f64 {
        let per_step = |s: &BenchSide| s.seconds / s.steps.max(1) as f64;
        per_step(&self.sides[0]) / per_step(&self.sides[1])
    }

    /// Peak resident memory, first over second.
    pub fn memory_ratio(&self) -> Option<f64> {
        Some(self.sides[0].peak_rss_bytes? as f64 / self.sides[1].peak_rss_bytes? as f64)
    }

    /// GPU memory, first over second (CUDA with nvidia-smi only).
    pub fn device_memory_ratio(&self) -> Option<f64> {
        Some(self.sides[0].device_memory_bytes? as f64 / self.sides[1].device_memory_bytes? as f64)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = &self.sides;
        let name = |s: &BenchSide| s.model.display().to_string();
        let mib = |v: Option<u64>| {
            v.map_or("n/a".to_string(), |v| {
                format!("{:.1}", v as f64 / 1048576.0)
            })
        };
        let ratio = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        let w = name(a).len().max(name(b).len()).max(12);
        writeln!(f, "device: {}", self.device)?;
        writeln!(f, "{:<26} {:>w$}   {:>w$}   {:>9}", "", "A", "B", "A / B")?;
        writeln!(f, "{:<26} {:>w$}   {:>w$}", "model", name(a), name(b))?;
        writeln!(f, "{:<26} {:>w$}   {:>w$}", "timed steps", a.steps, b.steps)?;
        writeln!(
            f,
            "{:<26} {:>w$.3}   {:>w$.3}   {:>9.3}",
            "wall time (s)",
            a.seconds,
            b.seconds,
            self.time_ratio()
        )?;
        writeln!(
            f,
            "{:<26} {:>w$.1}   {:>w$.1}",
            "steps/s",
            a.steps_per_sec(),
            b.steps_per_sec()
        )?;
        writeln!(
            f,
            "{:<26} {:>w$}   {:>w$}   {:>9}",
            "peak host memory (MiB)",
            mib(a.peak_rss_bytes),
            mib(b.peak_rss_bytes),
            ratio(self.memory_ratio())
        )?;
        writeln!(
            f,
            "{:<26} {:>w$}   {:>w$}   {:>9}",
            "GPU memory (MiB)",
            mib(a.device_memory_bytes),
            mib(b.device_memory_bytes),
            ratio(self.device_memory_ratio())
        )?;
        writeln!(
            f,
            "{:<26} {:>w$.5}   {:>w$.5}",
            "final loss", a.final_loss, b.final_loss
        )?;
        writeln!(f, "providers A: {}", a.providers)?;
        writeln!(f, "providers B: {}", b.providers)?;
        write!(
            f,
            "wall-time ratio A/B: {:.3}   peak-memory ratio A/B: {}",
            self.time_ratio(),
            ratio(self.device_memory_ratio().or(self.memory_ratio()))
        )
    }
}

/// One line a worker writes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Ready,
    Ran {
        seconds: f64,
        loss: f64,
    },
    Report {
        peak_rss_bytes: Option<u64>,
        providers: String,
    },
    Error {
        message: String,
    },
}

struct Worker {
    model: PathBuf,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Worker {
    fn spawn(exe: &Path, model: &Path, config: &BenchConfig) -> Result<Worker> {
        let mut cmd = Command::new(exe);
        cmd.arg("bench-worker")
            .arg(model)
            .arg("--data")
            .arg(&config.data)
            .args(["--batch-size", &config.batch_size.to_string()])
            .args(["--seed", &config.seed.to_string()])
            .args(["--device", &config.session.device.to_string()]);
        if let Some(lib) = &config.ort_lib {
            cmd.arg("--ort-lib").arg(lib);
        }
        if let Some(n) = config.session.intra_threads {
            cmd.args(["--threads", &n.to_string()]);
        }
        if config.session.no_cpu_fallback {
            cmd.arg("--no-cpu-fallback");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| BenchError::Start {
                exe: exe.to_path_buf(),
                error,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(BenchError::NoPipes.into());
        };
        let mut worker = Worker {
            model: model.to_path_buf(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        match worker.read()? {
            Reply::Ready => Ok(worker),
            other => Err(worker.unexpected(other)),
        }
    }

    fn send(&mut self, command: &str) -> Result<Reply> {
        writeln!(self.stdin, "{command}")
            .and_then(|_| self.stdin.flush())
            .map_err(|error| self.pipe_err(error))?;
        self.read()
    }

    fn read(&mut self) -> Result<Reply> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|error| self.pipe_err(error))?;
        let model = self.model.clone();
        if n == 0 {
            return Err(BenchError::ExitedEarly { model }.into());
        }
        match serde_json::from_str(&line) {
            Ok(Reply::Error { message }) => Err(BenchError::Worker { model, message }.into()),
            Ok(reply) => Ok(reply),
            Err(error) => Err(BenchError::Garbled { model, line, error }.into()),
        }
    }

    fn run(&mut self, steps: u64) -> Result<(f64, f64)> {
        match self.send(&format!("run {steps}"))? {
            Reply::Ran { seconds, loss } => Ok((seconds, loss)),
            other => Err(self.unexpected(other)),
        }
    }

    fn unexpected(&self, reply: Reply) -> RuntimeError {
        BenchError::Unexpected {
            model: self.model.clone(),
            reply: format!("{reply:?}"),
        }
        .into()
    }

    fn pipe_err(&self, error: std::io::Error) -> BenchError {
        BenchError::Pipe {
            model: self.model.clone(),
            error,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Ends a worker that is still running after an error; a finished one has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the benchmark, with `exe` the `gen-train` binary (it provides the `bench-worker` command).
pub fn run_bench(exe: &Path, config: &BenchConfig) -> Result<BenchReport> {
    if config.steps == 0 || config.rounds == 0 {
        return Err(BenchError::Zero.into());
    }
    let mut workers = [
        Worker::spawn(exe, &config.models[0], config)?,
        Worker::spawn(exe, &config.models[1], config)?,
    ];
    let mut seconds = [0.0; 2];
    let mut steps = [0u64; 2];
    let mut loss = [f64::NAN; 2];
    if config.warmup > 0 {
        for w in &mut workers {
            w.run(config.warmup)?;
        }
    }
    for round in 0..config.rounds {
        let share = config.steps / config.rounds + u64::from(round < config.steps % config.rounds);
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (s, l) = workers[i].run(share)?;
            seconds[i] += s;
            steps[i] += share;
            loss[i] = l;
        }
    }
    let mut sides = Vec::with_capacity(2);
    for (i, w) in workers.iter_mut().enumerate() {
        let device_memory_bytes = match config.session.device {
            Device::Cuda(_) => gpu_memory_of(w.child.id()),
            Device::Cpu => None,
        };
        let (peak_rss_bytes, providers) = match w.send("report")? {
            Reply::Report {
                peak_rss_bytes,
                providers,
            } => (peak_rss_bytes, providers),
            other => return Err(w.unexpected(other)),
        };
        let _ = writeln!(w.stdin, "quit");
        let _ = w.child.wait();
        sides.push(BenchSide {
            model: w.model.clone(),
            steps: steps[i],
            seconds: seconds[i],
            final_loss: loss[i],
            peak_rss_bytes,
            device_memory_bytes,
            providers,
        });
    }
    let [a, b]: [BenchSide; 2] = sides.try_into().map_err(|_| BenchError::Sides)?;
    Ok(BenchReport {
        device: config.session.device,
        sides: [a, b],
    })
}

/// The worker side: opens `model`, then answers commands read from `input` on `output`.
pub fn bench_worker(
    model: &Path,
    data: &Path,
    batch_size: usize,
    seed: u64,
    options: &TrainOptions,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<()> {
    let say = |reply: &Reply, output: &mut dyn Write| -> Result<()> {
        let line = serde_json::to_string(reply).map_err(BenchError::Encode)?;
        writeln!(output, "{line}")
            .and_then(|_| output.flush())
            .map_err(|e| BenchError::WorkerIo(e).into())
    };
    let setup = TrainSession::open(model, options)
        .and_then(|session| Driver::new(session, Dataset::load(data)?, batch_size, seed));
    let mut driver = match setup {
        Ok(d) => d,
        Err(e) => {
            say(
                &Reply::Error {
                    message: e.to_string(),
                },
                &mut output,
            )?;
            return Err(e);
        }
    };
    say(&Reply::Ready, &mut output)?;
    for line in input.lines() {
        let line = line.map_err(BenchError::WorkerIo)?;
        let reply = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["run", n] => match n
                .parse::<u64>()
                .map_err(|_| BenchError::BadCommand(line.clone()).into())
                .and_then(|n| timed_steps(&mut driver, n))
            {
                Ok((seconds, loss)) => Reply::Ran { seconds, loss },
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            },
            ["report"] => Reply::Report {
                peak_rss_bytes: peak_rss_bytes(),
                providers: driver
                    .session()
                    .providers()
                    .map_or("not run".to_string(), |p| p.to_string()),
            },
            ["quit"] => break,
            _ => Reply::Error {
                message: BenchError::BadCommand(line.clone()).to_string(),
            },
        };
        say(&reply, &mut output)?;
    }
    Ok(())
}

/// Trains `n` steps; returns the seconds they took and the last loss.
fn timed_steps(driver: &mut Driver, n: u64) -> Result<(f64, f64)> {
    let began = Instant::now();
    let mut loss = f64::NAN;
    for _ in 0..n {
        loss = driver.step(1.0)?.1.loss;
    }
    Ok((began.elapsed().as_secs_f64(), loss))
}

/// Peak resident set size of this process (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// GPU memory used by process `pid`, from nvidia-smi (None when unavailable).
fn gpu_memory_of(pid: u32) -> Option<u64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let mut parts = l.split(',').map(str::trim);
        let p: u32 = parts.next()?.parse().ok()?;
        let mib: u64 = parts.next()?.parse().ok()?;
        (p == pid).then_some(mib * 1024 * 1024)
    })
}
