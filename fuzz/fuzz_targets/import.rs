//! Arbitrary bytes through ONNX import (decoding, validation, shape inference) and constant
//! folding: any input must give a model or a typed error, never a panic, an abort or an
//! allocation beyond libFuzzer's limits.
#![no_main]

use gen_passes::onnx::from_bytes;
use gen_passes::pipeline::constfold::ConstantFolding;
use gen_passes::pipeline::{Context, Pass};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // no base folder: external data is refused, the fuzzer reads no files
    let Ok(mut model) = from_bytes(data, None) else {
        return;
    };
    let _ = ConstantFolding.run(&mut model, &mut Context::default());
});
