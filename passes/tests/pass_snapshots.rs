//! One snapshot per pass: the text form of a small model just before and just after the pass
//! (its first run that changed anything), so a reviewer sees what each pass does. The models
//! are written in the text form. Refresh with
//! `INSTA_UPDATE=always cargo test -p gen-passes --test pass_snapshots` and review the diff.

use gen_passes::ir::text::{model_to_text, parse_model};
use gen_passes::ir::Model;
use gen_passes::onnx;
use gen_passes::options::OptimizerKind;
use gen_passes::pipeline::{
    cleanup_passes, inline::InlineFunctions, sequences::LowerSequences, Context, Debug, Pass,
    PassManager, PassRecord,
};
use gen_passes::{compile, CompileOptions, Emit};
use std::collections::HashMap;
use std::path::Path;

/// A shape chain to fold, a repeated Relu, a dead Neg.
const CLEANUP: &str = r#"
model ir=8 opsets[ai.onnx=17]
graph "cleanup" {
  in %0 "x": f32[batch,2]
  %1: i64[2] = Shape(%0)
  %2: i64[1] = Constant() {value=i64[1] {1}}
  %3: i64[1] = Gather(%1, %2) {axis=0}
  %4: i64[1] = Constant() {value=i64[1] {-1}}
  %5: i64[2] = Concat(%4, %3) {axis=0}
  %6: f32[batch,2] = Reshape(%0, %5)
  %7: f32[batch,2] = Relu(%6)
  %8: f32[batch,2] = Relu(%6)
  %9: f32[batch,2] = Add(%7, %8)
  %10: f32[batch,2] = Neg(%9)
  return %9 "y"
}
"#;

/// `torch.split` as the dynamo exporter writes it: SplitToSequence + SequenceAt.
const SPLIT: &str = r#"
model ir=8 opsets[ai.onnx=17]
graph "split" {
  in %0 "x": f32[batch,4]
  init %1 "sizes" = i64[2] {1, 3}
  %2: opaque = SplitToSequence(%0, %1) {axis=1}
  %3: i64[] = Constant() {value=i64[] {1}}
  %4: f32[..] = SequenceAt(%2, %3)
  %5: f32[..] = Relu(%4)
  return %5 "y"
}
"#;

/// A linear classifier: logits = x·w + b.
const LINEAR: &str = r#"
model ir=8 opsets[ai.onnx=17]
graph "linear" {
  in %0 "x": f32[batch,3]
  init %1 "b" = f32[2] {0.1, -0.1}
  init %2 "w" = f32[3,2] {0.5, -0.25, 0.125, 1, -1, 0.75}
  %3: f32[batch,2] = MatMul(%0, %2)
  %4: f32[batch,2] = Add(%3, %1)
  return %4 "logits"
}
"#;

/// A classifier exported in training mode: BatchNormalization (3 outputs) and Dropout.
const BN_DROPOUT: &str = r#"
model ir=8 opsets[ai.onnx=17]
graph "bn_dropout" {
  in %0 "x": f32[batch,2]
  init %1 "bn.bias" = f32[2] {0, 0.1}
  init %2 "bn.running_mean" = f32[2] {0, 0}
  init %3 "bn.running_var" = f32[2] {1, 1}
  init %4 "bn.weight" = f32[2] {1, 0.5}
  init %5 "fc.w" = f32[2,2] {1, 0.5, -0.5, 1}
  %6: f32[batch,2] = MatMul(%0, %5)
  %7: f32[batch,2], %8: f32[2], %9: f32[2] = BatchNormalization(%6, %4, %1, %2, %3) {momentum=0.9, training_mode=1}
  %10: f32[] = Constant() {value=f32[] {0.25}}
  %11: bool[] = Constant() {value=bool[] {1}}
  %12: f32[batch,2] = Dropout(%7, %10, %11)
  return %12 "logits"
}
"#;

fn parse(text: &str) -> Model {
    parse_model(text, &HashMap::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// The text before and after the first run of `pass` that changed the model; `printed` is
/// the text after every pass run (aligned with `records`), `start` the text before the first.
fn around(
    pass: &str,
    start: String,
    records: &[PassRecord],
    printed: &[(String, String)],
) -> String {
    let mut before = start;
    for (r, (_, after)) in records.iter().zip(printed) {
        if r.name == pass && r.changed {
            return format!("--- before {pass}\n{before}--- after {pass}\n{after}");
        }
        before = after.clone();
    }
    let ran: Vec<_> = records.iter().map(|r| (r.name, r.changed)).collect();
    panic!("{pass} never changed the model: {ran:?}")
}

fn print_all() -> Debug {
    Debug {
        print_after: vec!["all".into()],
        dump_dir: None,
    }
}

/// Snapshot of `pass` within the `emit` pipeline compiled from `text`.
fn in_pipeline(text: &str, emit: Emit, options: &CompileOptions, pass: &str) -> String {
    let m = parse(text);
    let start = model_to_text(&m);
    let out = compile(m, emit, options, &print_all()).unwrap_or_else(|e| panic!("{e}"));
    around(pass, start, &out.records, &out.printed)
}

/// Snapshot of `pass` when `passes` run alone on `m`.
fn alone(m: Model, passes: Vec<Box<dyn Pass>>, pass: &str) -> String {
    let start = model_to_text(&m);
    let mut m = m;
    let mut pm = PassManager::new(passes);
    pm.debug = print_all();
    pm.run(&mut m, &mut Context::default())
        .unwrap_or_else(|e| panic!("{e}"));
    around(pass, start, &pm.records, &pm.printed)
}

fn sgd_momentum() -> CompileOptions {
    CompileOptions {
        optimizer: OptimizerKind::Momentum,
        ..CompileOptions::default()
    }
}

/// Every pass with its snapshot name; the pipeline ones as (model, emit, pass).
#[test]
fn each_pass_before_and_after() {
    let default = CompileOptions::default();
    let sgd = sgd_momentum();
    let pipeline: [(&str, &str, Emit, &CompileOptions, &str); 11] = [
        (
            "constfold",
            CLEANUP,
            Emit::Forward,
            &default,
            "constant-folding",
        ),
        ("cse", CLEANUP, Emit::Forward, &default, "cse"),
        ("dce", CLEANUP, Emit::Forward, &default, "dce"),
        (
            "training_mode",
            BN_DROPOUT,
            Emit::Grad,
            &sgd,
            "training-mode",
        ),
        ("loss", LINEAR, Emit::Grad, &sgd, "attach-loss"),
        ("params", LINEAR, Emit::Grad, &sgd, "discover-params"),
        ("autodiff", LINEAR, Emit::Grad, &sgd, "autodiff"),
        ("optimizer", LINEAR, Emit::Train, &sgd, "optimizer"),
        ("gen", LINEAR, Emit::Train, &sgd, "gen"),
        ("contract", LINEAR, Emit::Train, &sgd, "train-contract"),
        ("eval", BN_DROPOUT, Emit::Eval, &sgd, "eval-mode"),
    ];
    for (snapshot, model, emit, options, pass) in pipeline {
        insta::assert_snapshot!(snapshot, in_pipeline(model, emit, options, pass));
    }

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/core/local_function.onnx");
    let m = onnx::load(&path).unwrap();
    insta::assert_snapshot!(
        "inline",
        alone(m, vec![Box::new(InlineFunctions)], "inline-functions")
    );
    let mut passes = cleanup_passes();
    passes.push(Box::new(LowerSequences));
    insta::assert_snapshot!("sequences", alone(parse(SPLIT), passes, "lower-sequences"));
}
