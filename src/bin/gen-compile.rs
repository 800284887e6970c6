//! `gen-compile MODEL.onnx -o OUT.onnx`: turns an exported model into a training-step graph
//! (or, with `--emit`, a gradient graph, an eval graph, or the imported model itself).

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};
use gen_passes::onnx::{ExportOptions, ExternalData};
use gen_passes::options::{ControllerKind, GenCompat, LossKind, OptimizerKind, ProbeBatch};
use gen_passes::pipeline::contract::set_eval_model;
use gen_passes::pipeline::Debug;
use gen_passes::{compile, CompileOptions, Emit};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "gen-compile",
    version,
    allow_negative_numbers = true,
    about = "Compile an ONNX model into a learning-rate-free (GeN) training-step graph",
    after_help = "Export PyTorch models with torch.onnx.export(..., training=TrainingMode.TRAINING, \
                  do_constant_folding=False) (TorchScript) or dynamo=True with optimize=False: \
                  constant folding turns computations on parameters into constants under \
                  generated names."
)]
struct Cli {
    /// The model to compile (.onnx; external data is read from beside it)
    model: PathBuf,
    /// Where to write the result
    #[arg(short, long)]
    output: PathBuf,
    /// What to write
    #[arg(long, value_enum, default_value_t = EmitArg::Train)]
    emit: EmitArg,
    /// Loss: the model's own scalar output (auto), cross-entropy over the last axis, or MSE
    #[arg(long, value_enum, default_value_t = LossArg::Auto)]
    loss: LossArg,
    /// Model output used as logits / prediction
    #[arg(long)]
    logits: Option<String>,
    /// Name of the labels input added for the loss
    #[arg(long, default_value = "labels")]
    labels: String,
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    optimizer: OptimizerArg,
    /// Initial learning rate (GeN adapts it)
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight decay (default: 0.01 for AdamW, 0 otherwise)
    #[arg(long)]
    weight_decay: Option<f64>,
    /// SGD momentum (with --optimizer momentum)
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// SGD dampening
    #[arg(long, default_value_t = 0.0)]
    dampening: f64,
    /// Nesterov momentum
    #[arg(long)]
    nesterov: bool,
    /// Adam betas, as B1,B2
    #[arg(long, default_value = "0.9,0.999", value_parser = parse_betas)]
    betas: (f64, f64),
    /// Adam epsilon
    #[arg(long, default_value_t = 1e-8)]
    eps: f64,
    /// The GeN learning-rate controller
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    gen: OnOff,
    /// Run GeN every N steps (when (step + 1) % N == 0)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..))]
    lazy_freq: i64,
    /// Which batch GeN probes: the next batch of a second stream, or the training batch
    #[arg(long, value_enum, default_value_t = ProbeArg::Next)]
    probe_batch: ProbeArg,
    /// GeN semantics: ours, or gen-optim 0.1.1's exactly
    #[arg(long, value_enum, default_value_t = CompatArg::Default)]
    gen_compat: CompatArg,
    /// GeN's lr rule: the paper's parabola rule, or the adaptive one (bracket search, then
    /// averaged tracking; docs/CONTRACT.md)
    #[arg(long, value_enum, default_value_t = ControllerArg::Paper)]
    gen_controller: ControllerArg,
    /// Do not train parameters whose names match this regular expression
    #[arg(long)]
    freeze: Option<String>,
    /// Print the IR after import and cleanup
    #[arg(long)]
    print_ir: bool,
    /// Print the IR after the named pass ("all" for every pass); repeatable
    #[arg(long, value_name = "PASS")]
    print_after: Vec<String>,
    /// Write the IR after every pass into this folder
    #[arg(long)]
    dump_dir: Option<PathBuf>,
    /// Tensors in OUT.onnx.data: auto (if the input had external data or the model is big)
    #[arg(long, value_enum, default_value_t = ExternalArg::Auto)]
    external_data: ExternalArg,
    /// List the passes and what each changed
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EmitArg {
    Train,
    Grad,
    Eval,
    Forward,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LossArg {
    Auto,
    CrossEntropy,
    Mse,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Momentum,
    Adam,
    Adamw,
}
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum OnOff {
    On,
    Off,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProbeArg {
    Next,
    Current,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum CompatArg {
    Default,
    Reference,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ControllerArg {
    Paper,
    Adaptive,
}
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExternalArg {
    Auto,
    Always,
    Never,
}

fn parse_betas(s: &str) -> Result<(f64, f64), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [a, b] = parts.as_slice() else {
        return Err(format!("expected two numbers B1,B2, got {s:?}"));
    };
    let p = |x: &str| {
        x.trim()
            .parse::<f64>()
            .map_err(|_| format!("{x:?} is not a number"))
    };
    let (a, b) = (p(a)?, p(b)?);
    if !(0.0..1.0).contains(&a) || !(0.0..1.0).contains(&b) {
        return Err(format!("betas must lie in [0, 1), got {a},{b}"));
    }
    Ok((a, b))
}

fn options(cli: &Cli) -> Result<CompileOptions> {
    let finite_pos = |name: &str, v: f64| -> Result<()> {
        if !(v.is_finite() && v > 0.0) {
            bail!("--{name} must be a positive number, got {v}");
        }
        Ok(())
    };
    finite_pos("lr", cli.lr)?;
    finite_pos("eps", cli.eps)?;
    if let Some(wd) = cli.weight_decay {
        if !(wd.is_finite() && wd >= 0.0) {
            bail!("--weight-decay must be a non-negative number, got {wd}");
        }
    }
    if !(0.0..1.0).contains(&cli.momentum) && cli.momentum != 1.0 {
        bail!("--momentum must lie in [0, 1], got {}", cli.momentum);
    }
    if !(0.0..=1.0).contains(&cli.dampening) {
        bail!("--dampening must lie in [0, 1], got {}", cli.dampening);
    }
    let freeze = cli
        .freeze
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--freeze is not a valid regular expression")?;
    Ok(CompileOptions {
        loss: match cli.loss {
            LossArg::Auto => LossKind::Auto,
            LossArg::CrossEntropy => LossKind::CrossEntropy,
            LossArg::Mse => LossKind::Mse,
        },
        logits: cli.logits.clone(),
        labels: cli.labels.clone(),
        optimizer: match cli.optimizer {
            OptimizerArg::Sgd => OptimizerKind::Sgd,
            OptimizerArg::Momentum => OptimizerKind::Momentum,
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        },
        lr: cli.lr,
        weight_decay: cli.weight_decay,
        momentum: cli.momentum,
        dampening: cli.dampening,
        nesterov: cli.nesterov,
        betas: cli.betas,
        eps: cli.eps,
        gen: cli.gen == OnOff::On,
        lazy_freq: cli.lazy_freq,
        probe_batch: match cli.probe_batch {
            ProbeArg::Next => ProbeBatch::Next,
            ProbeArg::Current => ProbeBatch::Current,
        },
        compat: match cli.gen_compat {
            CompatArg::Default => GenCompat::Default,
            CompatArg::Reference => GenCompat::Reference,
        },
        controller: match cli.gen_controller {
            ControllerArg::Paper => ControllerKind::Paper,
            ControllerArg::Adaptive => ControllerKind::Adaptive,
        },
        freeze,
    })
}

/// `dir/stem.SUFFIX.onnx` for `dir/stem.onnx`.
fn companion_path(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{stem}.{suffix}.onnx"))
}

fn run(cli: Cli) -> Result<()> {
    let opts = options(&cli)?;
    let emit = match cli.emit {
        EmitArg::Train => Emit::Train,
        EmitArg::Grad => Emit::Grad,
        EmitArg::Eval => Emit::Eval,
        EmitArg::Forward => Emit::Forward,
    };
    if let Some(dir) = &cli.dump_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--dump-dir {}: cannot create the folder", dir.display()))?;
    }
    if let Some(parent) = cli.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!(
                "-o {}: the folder {} does not exist",
                cli.output.display(),
                parent.display()
            );
        }
    }
    let model = gen_passes::onnx::load(&cli.model)?;
    let mut debug = Debug {
        print_after: cli.print_after.clone(),
        dump_dir: cli.dump_dir.clone(),
    };
    if cli.print_ir {
        debug.print_after.push("dce".into());
    }
    let mut compiled = compile(model, emit, &opts, &debug)
        .with_context(|| format!("compiling {}", cli.model.display()))?;
    for w in &compiled.warnings {
        eprintln!("gen-compile: warning: {w}");
    }
    let mut printed_once = std::collections::HashSet::new();
    for (pass, text) in &compiled.printed {
        // cleanup passes repeat until a fixed point: show the last IR of each printed pass
        if cli.print_ir && pass == "dce" && !printed_once.insert(pass.clone()) {
            continue;
        }
        println!("// IR after {pass}\n{text}");
    }
    if cli.verbose {
        for r in &compiled.records {
            eprintln!(
                "pass {:<20} changed={:<5} nodes={}",
                r.name, r.changed, r.nodes_after
            );
        }
    }
    let export = ExportOptions {
        external: match cli.external_data {
            ExternalArg::Auto => ExportOptions::default().external,
            ExternalArg::Always => ExternalData::Always,
            ExternalArg::Never => ExternalData::Never,
        },
        ..ExportOptions::default()
    };
    let mut written = Vec::new();
    for (suffix, m) in &compiled.companions {
        let path = companion_path(&cli.output, suffix);
        gen_passes::onnx::save(m, &path, &export)?;
        if suffix == "eval" {
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
            set_eval_model(&mut compiled.model, &file.unwrap_or_default());
        }
        written.push(path);
    }
    if let Err(e) = gen_passes::onnx::save(&compiled.model, &cli.output, &export) {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
        return Err(e.into());
    }
    let size = std::fs::metadata(&cli.output).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "gen-compile: wrote {} ({} nodes, {:.1} KiB){}",
        cli.output.display(),
        compiled.model.graph.node_count(),
        size as f64 / 1024.0,
        written
            .iter()
            .map(|p| format!(" + {}", p.display()))
            .collect::<String>()
    );
    Ok(())
}

fn main() {
    gen_compile::quiet_on_closed_pipe();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("gen-compile: error: {e:#}");
        std::process::exit(1);
    }
}
