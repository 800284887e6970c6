//! What the user asked for on the command line, as the passes see it.

/// Which loss the compiled graph minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// The model's own scalar output if it has exactly one, else cross-entropy on the logits.
    Auto,
    CrossEntropy,
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Momentum,
    Adam,
    AdamW,
}

/// Which batch GeN's probe forwards use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeBatch {
    /// Separate probe inputs (the next batch of an independent stream).
    Next,
    /// The training batch; its own loss serves as L(w).
    Current,
}

/// GeN semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenCompat {
    /// Optimizer state advanced once; probes deterministic.
    Default,
    /// Reproduce gen-optim 0.1.1 (state advanced twice on GeN steps, probes in train mode).
    Reference,
}

/// Which rule turns GeN's probe losses into the lr (docs/CONTRACT.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
