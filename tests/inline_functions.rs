//! Model-local functions are inlined before the training stages: the inlined graph has no
//! call left and computes what the original computes on ONNX Runtime.

use gen_passes::ir::text::model_to_text;
use gen_passes::onnx;
use gen_passes::pipeline::{inline::InlineFunctions, Context, PassManager};
use gen_runtime::{run_model, HostTensor, RunModelOptions};
use std::path::Path;

#[test]
fn local_function_calls_are_inlined_with_attribute_references_resolved() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/core/local_function.onnx");
    let mut m = onnx::load(&path).unwrap();
    let mut pm = PassManager::new(vec![Box::new(InlineFunctions)]);
    pm.run(&mut m, &mut Context::default()).unwrap();
    assert!(pm.records[0].changed);
    let text = model_to_text(&m);
    assert!(!text.contains("ScaledTanh"), "{text}");
    assert!(
        text.contains("Tanh(") && text.contains("value_float=2.0"),
        "{text}"
    );
    assert!(
        text.contains("value_float=0.5"),
        "default used for beta: {text}"
    );

    let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.5).collect();
    let feeds = vec![(
        "x".to_string(),
        HostTensor::from_vec(vec![3, 4], x).unwrap(),
    )];
    let opts = RunModelOptions::default();
    let want = run_model(path.as_path(), &feeds, &opts).unwrap().outputs;
    let bytes = onnx::to_bytes(&m);
    let got = run_model(bytes.as_slice(), &feeds, &opts).unwrap().outputs;
    let (a, b) = (
        want[0].1.to_f64_vec().unwrap(),
        got[0].1.to_f64_vec().unwrap(),
    );
    assert_eq!(a.len(), 9);
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-6, "{a:?} vs {b:?}");
    }
}
