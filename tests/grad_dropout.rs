//! Training-mode Dropout on ONNX Runtime: the lowered random mask survives all graph
//! optimisations (a Dropout node would be deleted), keeps about 1 − p of the elements, scales
//! them by 1/(1 − p), and the backward pass reuses the very mask of the forward pass.

mod grad_support;

use gen_passes::ir::{Builder, DType, Dim, Graph, Op, Tensor, TensorType, Type};
use gen_passes::pipeline::{cleanup_passes, grad, Context, PassManager};
use grad_support::{model, require_ort, run, Rng};

#[test]
fn lowered_dropout_mask_is_shared_by_forward_and_backward() {
    require_ort();
    let (rows, cols, p) = (64usize, 8usize, 0.5f64);
    let mut g = Graph::new("dropout");
    let x = g.add_input(
        "x",
        Type::Tensor(TensorType::new(
            DType::F32,
            Some(vec![Dim::Sym("batch".into()), Dim::Fixed(cols as i64)]),
        )),
    );
    let w0: Vec<f32> = (0..cols).map(|j| 0.5 + j as f32 * 0.1).collect();
    let w = g.add_initializer("w", Tensor::from_f32(&[cols as i64], &w0));
    let mut b = Builder::new(&mut g, 17, "");
    let h = b.mul(x, w);
    let ratio = b.scalar(DType::F32, p);
    let training = b.constant(Tensor::from_bool(&[], &[true]));
    let d = b.op(Op::Dropout, &[h, ratio, training], vec![]);
    let loss = b.sum_all(d);
    assert!(g.rename(loss, "loss"));
    g.outputs = vec![loss];

    let mut m = model(g, 17);
    let mut cx = Context::default();
    let mut passes = cleanup_passes();
    passes.extend(grad::passes(&cx).expect("stages"));
    passes.push(grad::grad_outputs_pass());
    PassManager::new(passes)
        .run(&mut m, &mut cx)
        .expect("grad pipeline");
    assert_eq!(cx.dropouts.len(), 1);
    let mask = cx.dropouts[0].mask;
    assert!(m.graph.rename(mask, "mask"));
    m.graph.outputs.push(mask);
    PassManager::new(cleanup_passes())
        .run(&mut m, &mut cx)
        .expect("cleanup");
    let bytes = gen_passes::onnx::to_bytes(&m);

    let mut rng = Rng::new(3);
    let xs: Vec<f32> = (0..rows * cols)
        .map(|_| rng.uniform() as f32 + 0.5)
        .collect();
    let feeds = vec![(
        "x".to_string(),
        gen_runtime::HostTensor::from_vec(vec![rows, cols], xs.clone()).expect("tensor"),
    )];
    let out = run(&bytes, &feeds).expect("runs on ONNX Runtime");
    let keep: Vec<bool> = out["mask"].to_vec::<bool>().expect("bool mask");
    let kept = keep.iter().filter(|&&k| k).count() as f64 / keep.len() as f64;
    assert!((0.35..0.65).contains(&kept), "kept fraction {kept}");

    let scale = 1.0 / (1.0 - p);
    let mut want_loss = 0.0;
    let mut want_grad = vec![0.0; cols];
    for i in 0..rows {
        for j in 0..cols {
            if keep[i * cols + j] {
                let xv = xs[i * cols + j] as f64;
                want_loss += xv * w0[j] as f64 * scale;
                want_grad[j] += xv * scale;
            }
        }
    }
    let loss = out["loss"].scalar_f64().expect("loss");
    assert!(
        (loss - want_loss).abs() <= 1e-4 * want_loss.abs(),
        "loss {loss} vs {want_loss}"
    );
    let grad = out["w.grad"].to_f64_vec().expect("gradient");
    for (g, want) in grad.iter().zip(&want_grad) {
        assert!(
            (g - want).abs() <= 1e-4 * want.abs().max(1.0),
            "gradient {grad:?} vs {want_grad:?}"
        );
    }
}
