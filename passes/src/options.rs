//! What the user asked for on the command line, as the passes see it. With the `clap` cargo
//! feature the choice enums are `clap::ValueEnum`s, so `gen-compile` parses straight into them.
//! (Their variants are documented on the enum: clap would turn variant doc comments into a
//! per-value list in `--help`.)

/// Which loss the compiled graph minimises. `Auto`: the model's own scalar output if it has
/// exactly one, else cross-entropy on the logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LossKind {
    Auto,
    CrossEntropy,
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OptimizerKind {
    Sgd,
    Momentum,
    Adam,
    #[cfg_attr(feature = "clap", value(name = "adamw"))]
    AdamW,
}

/// Which batch GeN's probe forwards use. `Next`: separate probe inputs (the next batch of an
/// independent stream). `Current`: the training batch; its own loss serves as L(w).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ProbeBatch {
    Next,
    Current,
}

/// GeN semantics. `Default`: optimizer state advanced once; probes deterministic. `Reference`:
/// reproduce gen-optim 0.1.1 (state advanced twice on GeN steps, probes in train mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum GenCompat {
    Default,
    Reference,
}

/// Which rule turns GeN's probe losses into the lr (docs/CONTRACT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ControllerKind {
    /// The GeN paper's parabola rule (SPEC section 2), every `lazy_freq`-th step.
    Paper,
    /// Bracket search, then damped tracking of averaged parabola coefficients; probes less once
    /// settled.
    Adaptive,
}

impl ControllerKind {
    /// The name the command line and the contract's `config.gen_controller` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerKind::Paper => "paper",
            ControllerKind::Adaptive => "adaptive",
        }
    }
}

/// Every knob of the training-step compiler.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub loss: LossKind,
    /// Output to take as logits (cross-entropy) or prediction (MSE).
    pub logits: Option<String>,
    /// Name of the labels input the loss adds.
    pub labels: String,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// None: the optimizer's default (0.01 for AdamW, else 0).
    pub weight_decay: Option<f64>,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub betas: (f64, f64),
    pub eps: f64,
    pub gen: bool,
    pub lazy_freq: i64,
    pub probe_batch: ProbeBatch,
    pub compat: GenCompat,
    pub controller: ControllerKind,
    /// Parameters whose names match are not trained.
    pub freeze: Option<regex::Regex>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            loss: LossKind::Auto,
            logits: None,
            labels: "labels".into(),
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            weight_decay: None,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
            gen: true,
            lazy_freq: 4,
            probe_batch: ProbeBatch::Next,
            compat: GenCompat::Default,
            controller: ControllerKind::Paper,
            freeze: None,
        }
    }
}

impl CompileOptions {
    /// The weight decay in effect.
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(match self.optimizer {
            OptimizerKind::AdamW => 0.01,
            _ => 0.0,
        })
    }
}

/// A setting outside its valid range, named by its `gen-compile` flag.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OptionsError {
    #[error("{flag} must be a positive number, got {value}")]
    NotPositive { flag: &'static str, value: f64 },
    #[error("{flag} must be a non-negative number, got {value}")]
    Negative { flag: &'static str, value: f64 },
    #[error("{flag} must lie in {range}, got {value}")]
    OutOfRange {
        flag: &'static str,
        range: &'static str,
        value: f64,
    },
    #[error("--betas must lie in [0, 1), got {0},{1}")]
    Betas(f64, f64),
}

impl CompileOptions {
    /// Checks every numeric setting (the optimizer's own rules, such as Nesterov's, are checked
    /// where the optimizer is built).
    pub fn validate(&self) -> Result<(), OptionsError> {
        for (flag, value) in [("--lr", self.lr), ("--eps", self.eps)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(OptionsError::NotPositive { flag, value });
            }
        }
        let wd = self.weight_decay();
        if !(wd.is_finite() && wd >= 0.0) {
            return Err(OptionsError::Negative {
                flag: "--weight-decay",
                value: wd,
            });
        }
        for (flag, value) in [
            ("--momentum", self.momentum),
            ("--dampening", self.dampening),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(OptionsError::OutOfRange {
                    flag,
                    range: "[0, 1]",
                    value,
                });
            }
        }
        let (b1, b2) = self.betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return Err(OptionsError::Betas(b1, b2));
        }
        Ok(())
    }
}
