//! Every model family of models/ compiled to a train graph (GeN on, default and reference
//! compat) and its eval companion, run through ONNX Runtime with all optimisations on the
//! fixture's reference batch: the first step's loss is the exported model's, a GeN step runs
//! with finite probe losses, and the eval graph reproduces the model's inference-mode logits.

mod gen_support;

use gen_passes::options::{GenCompat, LossKind, ProbeBatch};
use gen_passes::CompileOptions;
use gen_runtime::{Dataset, HostTensor};
use gen_support::*;
use serde_json::Value;

struct Fixture {
    meta: Value,
    reference: Vec<(String, HostTensor)>,
}

fn fixture(name: &str) -> Fixture {
    let dir = root().join("models").join(name);
    let meta = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let reference = Dataset::load(&dir.join("reference.npz"))
        .unwrap()
        .arrays()
        .to_vec();
    Fixture { meta, reference }
}

impl Fixture {
    fn get(&self, n: &str) -> Option<&HostTensor> {
        self.reference.iter().find(|(k, _)| k == n).map(|(_, t)| t)
    }
    /// The training batch: model inputs and labels, named as the contract's data inputs.
    fn batch(&self) -> Vec<(String, HostTensor)> {
        let mut b: Vec<(String, HostTensor)> = self.meta["model_inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let n = n.as_str().unwrap();
                (
                    n.to_string(),
                    self.get(&format!("input:{n}")).unwrap().clone(),
                )
            })
            .collect();
        b.push(("labels".into(), self.get("labels").unwrap().clone()));
        b
    }
    fn options(&self, compat: GenCompat, probe: ProbeBatch) -> CompileOptions {
        CompileOptions {
            loss: if self.meta["loss"] == "mse" {
                LossKind::Mse
            } else {
                LossKind::CrossEntropy
            },
            logits: self.meta["logits"].as_str().map(String::from),
            lazy_freq: 2,
            compat,
            probe_batch: probe,
            ..CompileOptions::default()
        }
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-6)
}

fn family(name: &str) {
    require_ort();
    let f = fixture(name);
    let model = root().join("models").join(name).join("model.onnx");
    let want_loss = f.get("loss").and_then(|t| t.scalar_f64().ok());
    let has_dropout = f.meta["op_types"]
        .as_array()
        .is_some_and(|ops| ops.iter().any(|o| o == "Dropout"));
    for (compat, probe) in [
        (GenCompat::Default, ProbeBatch::Next),
        (GenCompat::Reference, ProbeBatch::Next),
        (GenCompat::Default, ProbeBatch::Current),
    ] {
        let dir = scratch(&format!("family-{name}-{compat:?}-{probe:?}"));
        let path = compile_file(&model, &f.options(compat, probe), &dir);
        let size = std::fs::metadata(&path).unwrap().len();
        let m = gen_passes::onnx::load(&path).unwrap();
        eprintln!(
            "{name} {compat:?} {probe:?}: {} main nodes, {} in all, {size} bytes",
            m.graph.node_count(),
            all_nodes(&m.graph).len()
        );
        let mut s = open(&path);
        let batch = f.batch();
        let has_bn = f.meta["batchnorm_nodes"]
            .as_array()
            .is_some_and(|b| !b.is_empty())
            || f.meta["batchnorm_nodes"].as_u64().is_some_and(|n| n > 0);
        for t in 0..2 {
            // the weights the GeN step probes, and the eval graph's loss there (dropout off)
            let eval_loss =
                (t == 1 && !has_bn && compat == GenCompat::Default && probe == ProbeBatch::Next)
                    .then(|| {
                        let eval = dir.join("train.eval.onnx");
                        let contract = gen_passes::pipeline::contract::read(
                            &gen_passes::onnx::load(&eval).unwrap(),
                        )
                        .unwrap();
                        let mut feeds = batch.clone();
                        feeds.extend(
                            s.state()
                                .unwrap()
                                .into_iter()
                                .filter(|(n, _)| contract.state.iter().any(|e| e.input == *n)),
                        );
                        let run =
                            gen_runtime::run_model(eval.as_path(), &feeds, &Default::default())
                                .unwrap();
                        run.outputs
                            .iter()
                            .find(|(n, _)| n == "loss")
                            .unwrap()
                            .1
                            .scalar_f64()
                            .unwrap()
                    });
            let r = s.step(&batch, Some(&batch), 1.0).unwrap();
            if let (Some(e), Some(p)) = (eval_loss, r.probe_losses) {
                // default-mode probes run without dropout: L(w) is the eval loss at w
                assert!(
                    rel(p[2], e) < 1e-5,
                    "{name} {probe:?}: probe L(w) {} vs eval loss {e}",
                    p[2]
                );
            }
            assert!(r.loss.is_finite(), "{name}: loss {}", r.loss);
            if t == 0 && !has_dropout {
                if let Some(want) = want_loss {
                    assert!(
                        rel(r.loss, want) < 1e-4,
                        "{name}: first loss {} vs {want}",
                        r.loss
                    );
                }
            }
            assert_eq!(r.gen_applied, Some(t == 1));
            if t == 1 {
                let p = r.probe_losses.unwrap();
                assert!(
                    p.iter().all(|v| v.is_finite()),
                    "{name}: probe losses {p:?}"
                );
                // deterministic probes on the very batch the step trained on: L(w) is the
                // training loss at w
                if compat == GenCompat::Default && !has_dropout {
                    assert!(
                        rel(p[2], r.loss) < 1e-5,
                        "{name}: L(w) {} vs loss {}",
                        p[2],
                        r.loss
                    );
                }
            }
        }
        // the eval companion at the initial weights reproduces the model's eval logits
        if let Some(want) = f.get("logits_eval") {
            let eval = dir.join("train.eval.onnx");
            let run = gen_runtime::run_model(eval.as_path(), &batch, &Default::default())
                .unwrap_or_else(|e| panic!("{name}: eval graph: {e}"));
            let out = &run
                .outputs
                .iter()
                .find(|(n, _)| n == f.meta["logits"].as_str().unwrap())
                .unwrap()
                .1;
            let (a, b) = (out.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
            let err = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-4, "{name}: eval logits differ by {err}");
        }
    }
}

#[test]
fn mlp() {
    family("mlp");
}
#[test]
fn cnn_bn() {
    family("cnn_bn");
}
#[test]
fn resnet() {
    family("resnet");
}
#[test]
fn vit() {
    family("vit");
}
#[test]
fn vit_dynamo() {
    family("vit_dynamo");
}
#[test]
fn gpt2() {
    family("gpt2");
}
#[test]
fn bert() {
    family("bert");
}
#[test]
fn recsys() {
    family("recsys");
}

/// A model with a real dropout (ratio 0.5, training mode): default-mode probes run without
/// it (L(w) on a probe batch equals the eval graph's loss at w), reference-compat probes with
/// fresh masks (they do not).
#[test]
fn dropout_is_off_in_default_probes_only() {
    use gen_passes::ir::{Builder, DType, Op, Tensor};
    require_ort();
    let mut m = empty_model();
    let x = batch_input(&mut m, "input", DType::F32, &[4]);
    let wv: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.3).collect();
    let w = m
        .graph
        .add_initializer("fc.weight", Tensor::from_f32(&[4, 3], &wv));
    let mut b = Builder::new(&mut m.graph, OPSET, "");
    let h = b.matmul(x, w);
    let ratio = b.constant(Tensor::scalar(DType::F32, 0.5));
    let train = b.constant(Tensor::from_bool(&[], &[true]));
    let (_, outs) = b.node(Op::Dropout, &[Some(h), Some(ratio), Some(train)], 2, vec![]);
    let logits = outs[0];
    m.graph.rename(logits, "logits");
    m.graph.outputs = vec![logits];
    let dir = scratch("family-dropout");
    let model = dir.join("model.onnx");
    save(&m, &model);
    let xs: Vec<f32> = (0..32)
        .map(|i| ((i * 13 % 11) as f32 - 5.0) * 0.2)
        .collect();
    let batch = vec![
        ("input".to_string(), f32_tensor(&[8, 4], &xs)),
        (
            "labels".to_string(),
            HostTensor::from_vec(vec![8], vec![0i64, 1, 2, 0, 1, 2, 0, 1]).unwrap(),
        ),
    ];
    for compat in [GenCompat::Default, GenCompat::Reference] {
        let opts = CompileOptions {
            lazy_freq: 1,
            compat,
            ..CompileOptions::default()
        };
        let out = dir.join(format!("{compat:?}"));
        std::fs::create_dir_all(&out).unwrap();
        let path = compile_file(&model, &opts, &out);
        let eval = out.join("train.eval.onnx");
        let mut feeds = batch.clone();
        feeds.push(("fc.weight".into(), f32_tensor(&[4, 3], &wv)));
        let eval_loss =
            gen_runtime::run_model(eval.as_path(), &feeds, &Default::default()).unwrap();
        let eval_loss = eval_loss
            .outputs
            .iter()
            .find(|(n, _)| n == "loss")
            .unwrap()
            .1
            .scalar_f64()
            .unwrap();
        let mut s = open(&path);
        let r = s.step(&batch, Some(&batch), 1.0).unwrap();
        let p = r.probe_losses.unwrap();
        let same = rel(p[2], eval_loss) < 1e-6;
        eprintln!(
            "{compat:?}: probe L(w) {} eval loss {eval_loss} training loss {}",
            p[2], r.loss
        );
        match compat {
            GenCompat::Default => assert!(same, "default probes must run without dropout"),
            GenCompat::Reference => assert!(!same, "reference probes run in train mode"),
        }
    }
}
