//! `gen-train TRAIN.onnx --data TRAIN.npz --batch-size N (--epochs N | --steps N)`: runs a
//! gen-compile training-step graph through ONNX Runtime (CPU or CUDA) or, with `--backend tract`
//! (cargo feature `tract`), through tract on the CPU, with a progress bar,
//! metrics, plots, checkpoints and the trained inference model in the run directory.
//! `gen-train bench A.onnx B.onnx ...` times two train graphs side by side. See docs/RUNTIME.md.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use gen_runtime::{
    bench_worker, run_bench, AnyTrainer, BackendKind, BenchConfig, Device, Length, MetricsRecord,
    Observer, RunStart, Scale, SessionSettings, Summary, TrainConfig, TrainOptions,
};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    name = "gen-train",
    version,
    about = "Train a gen-compile train.onnx with ONNX Runtime (CPU or CUDA)",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "ONNX Runtime is loaded from --ort-lib, ORT_DYLIB_PATH, or the project's .venv \
                  (scripts/setup.sh). Ctrl-C stops after the current step with a checkpoint; \
                  continue with --resume RUN_DIR."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Time two train graphs (e.g. with and without GeN) alternately and compare time and memory
    Bench(BenchArgs),
    /// Internal: one side of `bench`, driven through stdin/stdout
    #[command(hide = true)]
    BenchWorker(WorkerArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("length").required(true).args(["epochs", "steps"])))]
struct TrainArgs {
    /// The training-step graph written by gen-compile
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// Training data: .npz with one array per data input (or a single .npy)
    #[arg(long, required = true)]
    data: Option<PathBuf>,
    /// Held-out data evaluated with the companion eval graph
    #[arg(long)]
    eval_data: Option<PathBuf>,
    #[arg(long, required = true)]
    batch_size: Option<usize>,
    /// Passes over the training data
    #[arg(long)]
    epochs: Option<u64>,
    /// Training steps
    #[arg(long)]
    steps: Option<u64>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Seed of the data and probe shuffles
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Horizon factor fed to GeN: none (1) or linear (1 - t/T)
    #[arg(long, value_enum, default_value_t = Scale::None, hide_possible_values = true)]
    scale: Scale,
    /// Run directory (default .runs/<model>-<time>); must be new or empty
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its checkpoint (same data, batch size, seed, scale)
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Evaluate on --eval-data every N steps (and always at the end)
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// Write a checkpoint every N steps (and always at the end)
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<u64>,
    /// Stop once N steps are done (with a checkpoint), keeping the schedule of --steps/--epochs
    #[arg(long, value_name = "N")]
    stop_after: Option<u64>,
    /// Override the graph's GeN period
    #[arg(long, value_name = "N")]
    lazy_freq: Option<u64>,
    /// Library that runs the graphs: ort (ONNX Runtime) or tract (pure Rust, CPU only; needs a
    /// gen-train built with the `tract` cargo feature)
    #[arg(long, value_enum, default_value_t = BackendKind::Ort)]
    backend: BackendKind,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct RuntimeArgs {
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// ONNX Runtime shared library (libonnxruntime.so)
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// CUDA: fail instead of running any node on the CPU provider
    #[arg(long)]
    no_cpu_fallback: bool,
    /// Intra-op threads (ONNX Runtime's default otherwise)
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

impl RuntimeArgs {
    fn options(&self, lazy_freq: Option<u64>) -> TrainOptions {
        TrainOptions {
            session: SessionSettings {
                device: self.device,
                no_cpu_fallback: self.no_cpu_fallback,
                intra_threads: self.threads,
            },
            ort_lib: self.ort_lib.clone(),
            lazy_freq,
        }
    }
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// First train graph (A), e.g. compiled with --gen on
    first: PathBuf,
    /// Second train graph (B), e.g. compiled with --gen off
    second: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    batch_size: usize,
    /// Timed steps per graph
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Alternations between the two graphs
    #[arg(long, default_value_t = 6)]
    rounds: u64,
    /// Untimed steps per graph first
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args, Debug)]
struct WorkerArgs {
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    batch_size: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn main() -> ExitCode {
    gen_compile::quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench(args)) => bench(args),
        Some(Command::BenchWorker(args)) => worker(args),
        None => train(cli.train),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    // clap enforces these without a subcommand; the Options only exist for `bench`.
    let (Some(model), Some(data), Some(batch_size)) = (args.model, args.data, args.batch_size)
    else {
        anyhow::bail!("TRAIN.onnx, --data and --batch-size are required");
    };
    let length = match (args.epochs, args.steps) {
        (Some(e), None) => Length::Epochs(e),
        (None, Some(s)) => Length::Steps(s),
        _ => anyhow::bail!("give exactly one of --epochs and --steps"),
    };
    let config = TrainConfig {
        model,
        data,
        eval_data: args.eval_data,
        batch_size,
        length,
        seed: args.seed,
        scale: args.scale,
        out: args.out,
        resume: args.resume,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
        stop_after: args.stop_after,
        options: args.runtime.options(args.lazy_freq),
    };
    train_on(args.backend, config, args.quiet)
}

/// Trains with `config` on `backend`, with progress, Ctrl-C handling and the summary.
fn train_on(backend: BackendKind, config: TrainConfig, quiet: bool) -> Result<ExitCode> {
    let model = config.model.clone();
    let device = config.options.session.device;
    let mut trainer = AnyTrainer::new(backend, config)
        .with_context(|| format!("cannot train {}", model.display()))?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // First Ctrl-C: finish the step, checkpoint, exit 130. A second one exits at once (the last
    // checkpoint on disk stays valid: checkpoints are written atomically).
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit at once)");
    })
    .context("installing the Ctrl-C handler")?;

    let mut progress = Progress::new(quiet);
    let summary = trainer
        .run(&mut progress, &stop)
        .with_context(|| format!("training {} stopped", model.display()))?;
    progress.finish();
    print_summary(&summary, device);
    Ok(if summary.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The progress bar: steps, loss, lr and speed.
struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress { bar, quiet }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for Progress {
    fn started(&mut self, start: &RunStart) {
        self.bar.set_length(start.stop_step);
        self.bar.set_position(start.start_step);
        if !self.quiet {
            for note in &start.notes {
                self.bar.suspend(|| eprintln!("note: {note}"));
            }
            let resumed = if start.start_step > 0 {
                format!(", resuming after step {}", start.start_step)
            } else {
                String::new()
            };
            let gen = start
                .lazy_freq
                .map_or("GeN off".to_string(), |k| format!("GeN every {k} steps"));
            self.bar.suspend(|| {
                eprintln!(
                    "training {} steps ({} per epoch, {gen}){resumed} into {}",
                    start.total_steps,
                    start.batches_per_epoch,
                    start.run_dir.display()
                )
            });
        }
    }

    fn step(&mut self, r: &MetricsRecord) {
        self.bar.set_position(r.step);
        let lr = r.lr.map_or(String::new(), |lr| format!(" lr {lr:.4e}"));
        let eval = r
            .eval_loss
            .map_or(String::new(), |l| format!(" eval {l:.4}"));
        self.bar.set_message(format!(
            "loss {:.4}{lr}{eval} {:.1} steps/s",
            r.loss, r.steps_per_sec
        ));
    }
}

fn print_summary(s: &Summary, device: Device) {
    let state = if s.interrupted {
        "interrupted after"
    } else {
        "trained"
    };
    println!(
        "{state} {}/{} steps in {:.1} s ({:.1} steps/s) on {device}",
        s.steps,
        s.total_steps,
        s.elapsed.as_secs_f64(),
        s.steps_per_sec
    );
    println!(
        "execution provider that ran the train graph: {}",
        s.providers
    );
    if let Some(p) = &s.eval_providers {
        println!("execution provider that ran the eval graph: {p}");
    }
    if device.is_cuda() {
        println!(
            "host<->device per step: {} B to the device, {} B back (state stays on the GPU)",
            s.transfer.host_to_device, s.transfer.device_to_host
        );
        let cpu_nodes = s.providers.nodes_on("CPUExecutionProvider");
        if cpu_nodes > 0 {
            println!(
                "note: {cpu_nodes} nodes ran on the CPU provider (--no-cpu-fallback forbids that)"
            );
        }
    }
    if let Some(r) = &s.last {
        let lr = r.lr.map_or(String::new(), |lr| format!(", lr {lr:.6e}"));
        println!("last step: loss {:.6}{lr}", r.loss);
    }
    if let Some(e) = &s.eval {
        let acc = e
            .accuracy
            .map_or(String::new(), |a| format!(", accuracy {:.4}", a));
        println!("eval ({} samples): loss {:.6}{acc}", e.samples, e.loss);
    }
    for note in &s.notes {
        println!("note: {note}");
    }
    println!("run directory: {}", s.run_dir.display());
    if let Some(m) = &s.exported {
        println!("  trained model: {}", m.display());
    }
    if s.interrupted {
        println!(
            "  checkpoint written; continue with --resume {}",
            s.run_dir.display()
        );
    }
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the gen-train executable")?;
    let config = BenchConfig {
        models: [args.first, args.second],
        data: args.data,
        batch_size: args.batch_size,
        steps: args.steps,
        rounds: args.rounds,
        warmup: args.warmup,
        seed: args.seed,
        session: args.runtime.options(None).session,
        ort_lib: args.runtime.ort_lib,
    };
    let report = run_bench(&exe, &config)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn worker(args: WorkerArgs) -> Result<ExitCode> {
    let options = args.runtime.options(None);
    let stdin = std::io::stdin().lock();
    bench_worker(
        &args.model,
        &args.data,
        args.batch_size,
        args.seed,
        &options,
        stdin,
        std::io::stdout().lock(),
    )?;
    Ok(ExitCode::SUCCESS)
}
