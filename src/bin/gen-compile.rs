//! `gen-compile MODEL.onnx -o OUT.onnx`: turns an exported model into a training-step graph
//! (or, with `--emit`, a gradient graph, an eval graph, or the imported model itself).

use anyhow::{Context as _, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::Parser;
use gen_passes::onnx::{ExportOptions, ExternalData};
use gen_passes::options::{ControllerKind, GenCompat, LossKind, OptimizerKind, ProbeBatch};
use gen_passes::output::{self, InputFiles};
use gen_passes::pipeline::Debug;
use gen_passes::{compile, CompileOptions, Emit};
use std::path::PathBuf;

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
    #[arg(long, value_enum, default_value_t = Emit::Train)]
    emit: Emit,
    /// Loss: the model's own scalar output (auto), cross-entropy over the last axis, or MSE
    #[arg(long, value_enum, default_value_t = LossKind::Auto)]
    loss: LossKind,
    /// Model output used as logits / prediction
    #[arg(long)]
    logits: Option<String>,
    /// Name of the labels input added for the loss
    #[arg(long, default_value = "labels")]
    labels: String,
    #[arg(long, value_enum, default_value_t = OptimizerKind::AdamW)]
    optimizer: OptimizerKind,
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
    #[arg(long, default_value = "on", action = clap::ArgAction::Set,
          value_parser = PossibleValuesParser::new(["on", "off"]).map(|v| v == "on"))]
    gen: bool,
    /// Run GeN every N steps (when (step + 1) % N == 0)
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i64).range(1..))]
    lazy_freq: i64,
    /// Which batch GeN probes: the next batch of a second stream, or the training batch
    #[arg(long, value_enum, default_value_t = ProbeBatch::Next)]
    probe_batch: ProbeBatch,
    /// GeN semantics: ours, or gen-optim 0.1.1's exactly
    #[arg(long, value_enum, default_value_t = GenCompat::Default)]
    gen_compat: GenCompat,
    /// GeN's lr rule: the paper's parabola rule, or the adaptive one (bracket search, then
    /// averaged tracking; docs/CONTRACT.md)
    #[arg(long, value_enum, default_value_t = ControllerKind::Paper)]
    gen_controller: ControllerKind,
    /// Do not train parameters whose names match this regular expression
    #[arg(long)]
    freeze: Option<regex::Regex>,
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
    #[arg(long, value_enum, default_value_t = ExternalData::AUTO)]
    external_data: ExternalData,
    /// Read the input's external data even where symlinks lead outside its folder
    #[arg(long)]
    allow_external_outside_dir: bool,
    /// List the passes and what each changed
    #[arg(short, long)]
    verbose: bool,
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
    Ok((p(a)?, p(b)?))
}

fn options(cli: &Cli) -> CompileOptions {
    CompileOptions {
        loss: cli.loss,
        logits: cli.logits.clone(),
        labels: cli.labels.clone(),
        optimizer: cli.optimizer,
        lr: cli.lr,
        weight_decay: cli.weight_decay,
        momentum: cli.momentum,
        dampening: cli.dampening,
        nesterov: cli.nesterov,
        betas: cli.betas,
        eps: cli.eps,
        gen: cli.gen,
        lazy_freq: cli.lazy_freq,
        probe_batch: cli.probe_batch,
        compat: cli.gen_compat,
        controller: cli.gen_controller,
        freeze: cli.freeze.clone(),
    }
}

fn run(cli: Cli) -> Result<()> {
    let opts = options(&cli);
    opts.validate()?;
    if let Some(dir) = &cli.dump_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--dump-dir {}: cannot create the folder", dir.display()))?;
    }
    output::check_folder(&cli.output)?;
    let load = gen_passes::onnx::LoadOptions {
        allow_external_outside_dir: cli.allow_external_outside_dir,
    };
    let model = gen_passes::onnx::load_with(&cli.model, &load)?;
    let inputs = InputFiles::of(&cli.model, &model)?;
    let mut debug = Debug {
        print_after: cli.print_after.clone(),
        dump_dir: cli.dump_dir.clone(),
    };
    if cli.print_ir {
        debug.print_after.push("dce".into());
    }
    let mut compiled = compile(model, cli.emit, &opts, &debug)
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
        external: cli.external_data,
        ..ExportOptions::default()
    };
    let written = output::write(&mut compiled, &inputs, &cli.output, &export)?;
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
