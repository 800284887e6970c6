//! Tests of the gen-runtime library on the contract_toy fixtures: exact batches through
//! `TrainSession::step`, state round trips, external data, `run_model` over every element type,
//! non-tensor outputs and bad models (errors, never panics).

mod train_support;

use gen_runtime::{
    run_model, DType, Dataset, Device, EvalSession, HostTensor, ModelSource, RunModelOptions,
    RuntimeError, SessionSettings, TrainOptions, TrainSession,
};
use train_support::*;

fn open(name: &str) -> TrainSession {
    require_ort();
    TrainSession::open(&toy(name), &TrainOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn toy_data(session: &TrainSession) -> Dataset {
    let mut d = Dataset::load(&toy("train.npz")).unwrap();
    d.conform(&session.data_specs()).unwrap();
    d
}

fn rows(from: usize) -> Vec<usize> {
    (from..from + 16).collect()
}

/// Reference numbers from onnxruntime's Python API on the same fixture, feeding batch t = rows
/// 16t..16t+16 and probe batch rows 16t+8..16t+24 (see make.py).
#[test]
fn steps_on_exact_batches_match_the_python_reference() {
    let mut s = open("train.onnx");
    let d = toy_data(&s);
    assert_eq!(s.lazy_freq(), Some(4));
    let mut results = Vec::new();
    for t in 0..8 {
        let batch = d.batch(&rows(16 * t)).unwrap();
        let probe = d.batch(&rows(16 * t + 8)).unwrap();
        let gen = s.next_is_gen_step().unwrap();
        assert_eq!(gen, t % 4 == 3);
        results.push(
            s.step(&batch, gen.then_some(probe.as_slice()), 1.0)
                .unwrap(),
        );
    }
    let r3 = &results[3];
    assert_eq!(r3.step, 3);
    assert_eq!(r3.gen_applied, Some(true));
    assert_eq!(r3.loss as f32, 0.342_758_77);
    assert_eq!(r3.lr.map(|v| v as f32), Some(0.2f32 * 1.1));
    let probes = r3.probe_losses.unwrap().map(|v| v as f32);
    assert_eq!(probes, [0.461_048_63, 0.346_362_95, 0.399_220_65]);
    assert_eq!(results[4].probe_losses, Some([0.0; 3]));
    assert_eq!(results[7].lr.map(|v| v as f32), Some(0.2f32 * 1.1 * 1.1));
    assert_eq!(s.step_count(), 8);
    assert!(s.providers().unwrap().nodes_on("CPUExecutionProvider") > 0);
    assert_eq!(
        s.transfer().host_to_device,
        0,
        "no device copies on the CPU"
    );
}

#[test]
fn gen_steps_need_a_probe_batch() {
    let mut s = open("train.onnx");
    let d = toy_data(&s);
    for _ in 0..3 {
        s.step(&d.batch(&rows(0)).unwrap(), None, 1.0).unwrap();
    }
    let err = s.step(&d.batch(&rows(0)).unwrap(), None, 1.0).unwrap_err();
    assert!(err.to_string().contains("needs a probe batch"), "{err}");
    let probe = d.batch(&rows(0)).unwrap();
    let missing = s.step(&[], Some(&probe), 1.0).unwrap_err();
    assert!(
        missing.to_string().contains("has no tensor `input`"),
        "{missing}"
    );
}

#[test]
fn set_state_continues_exactly() {
    let mut a = open("train.onnx");
    let d = toy_data(&a);
    let step = |s: &mut TrainSession, t: usize| {
        let probe = d.batch(&rows(8 * t)).unwrap();
        let gen = s.next_is_gen_step().unwrap();
        s.step(
            &d.batch(&rows(4 * t)).unwrap(),
            gen.then_some(probe.as_slice()),
            0.5,
        )
        .unwrap()
    };
    for t in 0..5 {
        step(&mut a, t);
    }
    let saved = a.state().unwrap();
    let mut b = open("train.onnx");
    b.set_state(&saved).unwrap();
    assert_eq!(b.step_count(), 5);
    for t in 5..10 {
        assert_eq!(step(&mut a, t), step(&mut b, t));
    }
    assert_eq!(a.state().unwrap(), b.state().unwrap());

    let mut wrong = saved.clone();
    wrong[0].1 = HostTensor::from_vec(vec![2], vec![0f32; 2]).unwrap();
    let err = b.set_state(&wrong).unwrap_err().to_string();
    assert!(err.contains("fc.weight") && err.contains("[4, 2]"), "{err}");
}

#[test]
fn external_data_initializers_are_read() {
    let inline = open("train.onnx");
    let external = open("external/train.onnx");
    assert_eq!(inline.state().unwrap(), external.state().unwrap());
}

#[test]
fn eval_session_reads_the_train_state() {
    let s = open("train.onnx");
    let mut eval =
        EvalSession::open(&toy("train.eval.onnx"), &s, &SessionSettings::default()).unwrap();
    let mut val = Dataset::load(&toy("val.npz")).unwrap();
    val.conform(&eval.data_specs()).unwrap();
    let by_batches = eval.evaluate(&s, &val, 7).unwrap();
    let whole = eval.evaluate(&s, &val, 100).unwrap();
    assert_eq!(by_batches.samples, 100);
    assert!((by_batches.loss - whole.loss).abs() < 1e-6);
    assert!((by_batches.accuracy.unwrap() - whole.accuracy.unwrap()).abs() < 1e-6);
    assert!(eval.providers().is_some());
}

#[test]
fn run_model_round_trips_every_element_type() {
    require_ort();
    let n = 3;
    let bytes_of = |dtype: DType| -> HostTensor {
        let size = dtype.size().unwrap();
        // Bit patterns that are valid for every type (bool: 0/1).
        let data: Vec<u8> = (0..n * size)
            .map(|i| {
                if dtype == DType::Bool {
                    (i % 2) as u8
                } else {
                    (i * 37 % 251) as u8
                }
            })
            .collect();
        HostTensor::from_bytes(dtype, vec![n], data).unwrap()
    };
    let types = [
        ("f32", DType::F32),
        ("f64", DType::F64),
        ("f16", DType::F16),
        ("bf16", DType::BF16),
        ("i8", DType::I8),
        ("i16", DType::I16),
        ("i32", DType::I32),
        ("i64", DType::I64),
        ("u8", DType::U8),
        ("u16", DType::U16),
        ("u32", DType::U32),
        ("u64", DType::U64),
        ("bool", DType::Bool),
    ];
    let mut inputs: Vec<(String, HostTensor)> = types
        .iter()
        .map(|(n, d)| (format!("x_{n}"), bytes_of(*d)))
        .collect();
    inputs.push((
        "x_string".into(),
        HostTensor::from_strings(vec![n], vec!["a".into(), "".into(), "ünï".into()]).unwrap(),
    ));
    let run = run_model(
        &toy("values/identity_all_types.onnx"),
        &inputs,
        &RunModelOptions::default(),
    )
    .unwrap();
    assert_eq!(run.outputs.len(), inputs.len());
    for ((name, input), (out_name, output)) in inputs.iter().zip(&run.outputs) {
        assert_eq!(out_name, &name.replace("x_", "y_"));
        assert_eq!(input, output, "{name}");
    }
    assert_eq!(run.providers.providers(), vec!["CPUExecutionProvider"]);

    // Empty tensors too, and models given as bytes.
    let bytes = std::fs::read(toy("values/identity_all_types.onnx")).unwrap();
    let empty: Vec<(String, HostTensor)> = inputs
        .iter()
        .map(|(name, t)| {
            let e = match t.dtype() {
                DType::String => HostTensor::from_strings(vec![0], vec![]),
                d => HostTensor::from_bytes(d, vec![0], vec![]),
            };
            (name.clone(), e.unwrap())
        })
        .collect();
    let run = run_model(
        ModelSource::Bytes(&bytes),
        &empty,
        &RunModelOptions::default(),
    )
    .unwrap();
    assert!(run.outputs.iter().all(|(_, t)| t.shape() == [0]));
}

#[test]
fn run_model_errors_never_panic() {
    require_ort();
    let opts = RunModelOptions::default();
    let none = run_model(&toy("values/optional_none.onnx"), &[], &opts).unwrap_err();
    assert!(
        matches!(
            none,
            RuntimeError::NonTensorOutput { .. } | RuntimeError::Panic { .. }
        ),
        "{none}"
    );
    let seq = run_model(&toy("values/sequence.onnx"), &[], &opts).unwrap_err();
    assert!(
        matches!(seq, RuntimeError::NonTensorOutput { ref kind, .. } if kind.contains("sequence")),
        "{seq}"
    );

    let missing = run_model(&toy("train.eval.onnx"), &[], &opts).unwrap_err();
    assert!(matches!(missing, RuntimeError::Ort { .. }), "{missing}");
    let wrong_type = run_model(
        &toy("train.eval.onnx"),
        &[(
            "input".into(),
            HostTensor::from_vec(vec![1, 4], vec![0i64; 4]).unwrap(),
        )],
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(wrong_type, RuntimeError::Ort { .. }),
        "{wrong_type}"
    );
    let garbage = run_model(ModelSource::Bytes(b"not a model"), &[], &opts).unwrap_err();
    assert!(matches!(garbage, RuntimeError::Ort { .. }), "{garbage}");
}

#[test]
fn opening_bad_models_and_devices_fails_clearly() {
    require_ort();
    let open_err = |path: &str, options: TrainOptions| -> String {
        match TrainSession::open(&toy(path), &options) {
            Ok(_) => panic!("{path} opened"),
            Err(e) => e.to_string(),
        }
    };
    let d = TrainOptions::default;
    assert!(open_err("bad/no_contract.onnx", d()).contains("no `gen.contract`"));
    assert!(open_err("bad/random.onnx", d()).contains("not an ONNX model"));
    assert!(open_err("train.eval.onnx", d()).contains("kind is `eval`"));
    assert!(open_err("absent.onnx", d()).contains("absent.onnx"));
    let nogen_override = TrainOptions {
        lazy_freq: Some(2),
        ..d()
    };
    assert!(open_err("train.nogen.onnx", nogen_override).contains("without GeN"));
    let cuda = TrainOptions {
        session: SessionSettings {
            device: Device::Cuda(0),
            ..SessionSettings::default()
        },
        ..d()
    };
    let err = open_err("train.onnx", cuda);
    assert!(
        err.contains("no CUDA execution provider") && err.contains("onnxruntime-gpu"),
        "{err}"
    );
}
