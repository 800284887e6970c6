//! Schema drift fails here: the committed example contracts (written by gen-compile for
//! models/digits/mlp.onnx, default options and `--emit grad`) must parse and serialize back to
//! exactly the same bytes. A field renamed, reordered, added or dropped changes those bytes.

use gen_format::{Contract, GraphKind, StateRole};
use std::path::Path;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn train_contract_round_trips_byte_for_byte() {
    let text = example("contract.example.json");
    let c = Contract::parse(&text).unwrap();
    assert_eq!(c.kind, GraphKind::Train);
    assert_eq!(c.version, Contract::VERSION);
    assert_eq!(c.state.last().map(|s| s.role), Some(StateRole::Lr));
    assert_eq!(c.controls.scale.as_deref(), Some("gen.scale"));
    assert_eq!(c.outputs.probe_losses.as_deref(), Some("gen.probe_losses"));
    assert_eq!(c.eval_model.as_deref(), Some("train.eval.onnx"));
    assert_eq!(c.config_lazy_freq(), Some(4));
    assert_eq!(c.to_json(), text);
}

#[test]
fn grad_contract_round_trips_byte_for_byte() {
    let text = example("contract.grad.example.json");
    let c = Contract::parse(&text).unwrap();
    assert_eq!(c.kind, GraphKind::Grad);
    assert!(c.state.iter().all(|s| s.output.is_none()));
    assert_eq!(c.to_json(), text);
}
