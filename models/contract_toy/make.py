#!/usr/bin/env python3
"""Builds the contract_toy fixtures by hand: small train.onnx graphs that follow docs/CONTRACT.md.

The runtime's tests use them while (and after) the compiler is built: they exercise every part of
the contract that gen-train reads without depending on gen-compile.

Model: softmax regression on 4 features and 2 classes, `logits = (input - norm.mean) @ fc.weight +
fc.bias`, cross-entropy loss, plain SGD written as graph nodes. `norm.mean` is a buffer (a running
mean of the inputs, updated every step like BatchNorm's running statistics). A fake GeN controller
sits in an `If` node: on GeN steps ((step + 1) % lazy_freq == 0) it evaluates the loss of the probe
batch at w + lr*g, w - lr*g and w (the contract's [L(w - delta), L(w + delta), L(w)] for SGD) and
multiplies lr by (1 + 0.1 * scale), capped at LR_MAX; on other steps it outputs zeros and leaves lr alone. The update
then uses the new lr, as GeN does.

Files written beside this script (run it with the project's venv: `.venv/bin/python make.py`):
  train.onnx, train.eval.onnx          GeN on, probe batch from the runtime's probe stream
  train.nogen.onnx                     the same model without GeN (no probe inputs), for the bench
  external/train.onnx (+ .data), external/train.eval.onnx (+ .data)
                                       the GeN model with every initializer in external data files
  train.npz, val.npz                   synthetic data: input f32 [N, 4], labels i64 [N]
  expected.json                        a few numbers the tests check (initial loss on the full set)
  bad/                                 inputs gen-train must reject with a clear error:
    missing_labels.npz, labels_int32.npz, three_features.npz, empty.npz (data that does not fit),
    no_contract.onnx (a valid model without gen.contract), random.onnx (random bytes)
  values/                              models for run_model's value handling:
    identity_all_types.onnx (x_<type> -> y_<type> for every ONNX Runtime element type),
    optional_none.onnx (outputs an empty optional), sequence.onnx (outputs a sequence)
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17
FEATURES = 4
CLASSES = 2
LR = 0.2
LR_MAX = 1.0
LAZY_FREQ = 4


def make_data():
    rng = np.random.RandomState(20250101)

    def draw(n):
        labels = rng.randint(0, CLASSES, size=n).astype(np.int64)
        centers = np.array([[-1.0, -1.0, 0.5, 0.0], [1.0, 1.0, -0.5, 0.0]])
        x = centers[labels] + rng.normal(scale=1.0, size=(n, FEATURES)) + 3.0
        return x.astype(np.float32), labels

    train_x, train_y = draw(200)
    val_x, val_y = draw(100)
    np.savez(os.path.join(HERE, "train.npz"), input=train_x, labels=train_y)
    np.savez(os.path.join(HERE, "val.npz"), input=val_x, labels=val_y)
    return train_x, train_y


def initial_weights():
    rng = np.random.RandomState(7)
    return {
        "fc.weight": (rng.normal(scale=0.1, size=(FEATURES, CLASSES))).astype(np.float32),
        "fc.bias": np.zeros(CLASSES, dtype=np.float32),
        "norm.mean": np.full(FEATURES, 3.0, dtype=np.float32),
    }


class Nodes:
    """A tiny builder: unique value names, one call per node."""

    def __init__(self, prefix=""):
        self.nodes = []
        self.prefix = prefix
        self.count = 0

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [f"{self.prefix}{op_type.lower()}_{self.count}_{i}" for i in range(n_out)]
        self.count += 1
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, name, value):
        arr = np.asarray(value)
        full = f"{self.prefix}{name}"
        self.nodes.append(
            helper.make_node("Constant", [], [full], value=numpy_helper.from_array(arr, full))
        )
        return full


def forward_loss(b, x, labels, mean, w, bias):
    """logits and mean cross-entropy of a batch; returns (logits, log_probs, loss)."""
    centered = b.op("Sub", [x, mean])
    logits = b.op("Add", [b.op("MatMul", [centered, w]), bias])
    logp = b.op("LogSoftmax", [logits], axis=1)
    loss = b.op("NegativeLogLikelihoodLoss", [logp, labels], reduction="mean")
    return centered, logits, logp, loss


def accuracy(b, logits, labels):
    pred = b.op("ArgMax", [logits], axis=1, keepdims=0)
    return b.op("ReduceMean", [b.op("Cast", [b.op("Equal", [pred, labels])], to=TensorProto.FLOAT)], keepdims=0)


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def contract_json(gen, state, eval_state=False):
    c = {
        "version": 1,
        "kind": "eval" if eval_state else "train",
        "loss": "loss",
        "data": ["input", "labels"],
        "model_inputs": ["input"],
        "model_outputs": ["logits"],
        "config": {
            "optimizer": "sgd",
            "lr": LR,
            "lazy_freq": LAZY_FREQ,
            "gen": gen,
            "compat": "default",
            "probe_batch": "next",
            "loss": "cross-entropy",
            "logits": "logits",
            "labels": "labels",
            "note": "hand-written fixture (models/contract_toy/make.py)",
        },
    }
    if eval_state:
        c["state"] = [{"input": s["input"], "role": s["role"]} for s in state if s["role"] in ("param", "buffer")]
        c["outputs"] = {"accuracy": "accuracy"}
        c["probe_data"] = {}
        c["controls"] = {}
    else:
        c["state"] = state
        c["probe_data"] = {"probe.input": "input", "probe.labels": "labels"} if gen else {}
        c["controls"] = {"scale": "gen.scale", "lazy_freq": "gen.lazy_freq"} if gen else {"scale": "gen.scale"}
        c["outputs"] = {"lr": "gen.lr.next", "accuracy": "accuracy"}
        if gen:
            c["outputs"].update({"gen_applied": "gen.applied", "probe_losses": "gen.probe_losses"})
        c["eval_model"] = "train.eval.onnx"
    return json.dumps(c, indent=1)


STATE = [
    {"input": "fc.weight", "output": "fc.weight.next", "role": "param"},
    {"input": "fc.bias", "output": "fc.bias.next", "role": "param"},
    {"input": "norm.mean", "output": "norm.mean.next", "role": "buffer"},
    {"input": "gen.step", "output": "gen.step.next", "role": "step"},
    {"input": "gen.lr", "output": "gen.lr.next", "role": "lr"},
]


def probe_branch():
    """then-branch of the GeN `If`: three probe losses and the new lr (outer-scope values)."""
    b = Nodes("probe.")
    step = b.op("Mul", ["gen.lr", "g.fc.weight"])
    step_b = b.op("Mul", ["gen.lr", "g.fc.bias"])
    losses = []
    # [L(w - delta), L(w + delta), L(w)] with delta = -lr * g (SGD): w - delta = w + lr g.
    for wv, bv in (
        (b.op("Add", ["fc.weight", step]), b.op("Add", ["fc.bias", step_b])),
        (b.op("Sub", ["fc.weight", step]), b.op("Sub", ["fc.bias", step_b])),
        ("fc.weight", "fc.bias"),
    ):
        _, _, _, loss = forward_loss(b, "probe.input", "probe.labels", "norm.mean", wv, bv)
        losses.append(b.op("Unsqueeze", [loss, b.const(f"axes{len(losses)}", np.array([0], np.int64))]))
    probe = b.op("Concat", losses, axis=0)
    factor = b.op("Add", [b.const("one", np.float32(1.0)), b.op("Mul", [b.const("tenth", np.float32(0.1)), "gen.scale"])])
    lr_new = b.op("Min", [b.op("Mul", ["gen.lr", factor]), b.const("lr_max", np.float32(LR_MAX))])
    b.nodes.append(helper.make_node("Identity", [probe], ["probe.losses_out"]))
    b.nodes.append(helper.make_node("Identity", [lr_new], ["probe.lr_out"]))
    return helper.make_graph(
        b.nodes,
        "gen_probe",
        [],
        [vi("probe.losses_out", TensorProto.FLOAT, [3]), vi("probe.lr_out", TensorProto.FLOAT, [])],
    )


def skip_branch():
    b = Nodes("skip.")
    zeros = b.const("zeros", np.zeros(3, np.float32))
    b.nodes.append(helper.make_node("Identity", [zeros], ["skip.losses_out"]))
    b.nodes.append(helper.make_node("Identity", ["gen.lr"], ["skip.lr_out"]))
    return helper.make_graph(
        b.nodes,
        "gen_skip",
        [],
        [vi("skip.losses_out", TensorProto.FLOAT, [3]), vi("skip.lr_out", TensorProto.FLOAT, [])],
    )


def train_model(gen):
    w0 = initial_weights()
    b = Nodes()
    centered, logits, logp, loss = forward_loss(b, "input", "labels", "norm.mean", "fc.weight", "fc.bias")
    b.nodes.append(helper.make_node("Identity", [loss], ["loss"]))
    b.nodes.append(helper.make_node("Identity", [accuracy(b, logits, "labels")], ["accuracy"]))

    # Gradients of the mean cross-entropy: dlogits = (softmax - onehot) / batch.
    onehot = b.op(
        "OneHot",
        ["labels", b.const("depth", np.int64(CLASSES)), b.const("onoff", np.array([0.0, 1.0], np.float32))],
        axis=-1,
    )
    batch = b.op("Cast", [b.op("Gather", [b.op("Shape", ["input"]), b.const("zero", np.int64(0))], axis=0)], to=TensorProto.FLOAT)
    dlogits = b.op("Div", [b.op("Sub", [b.op("Exp", [logp]), onehot]), batch])
    b.nodes.append(helper.make_node("MatMul", [b.op("Transpose", [centered], perm=[1, 0]), dlogits], ["g.fc.weight"]))
    b.nodes.append(
        helper.make_node("ReduceSum", [dlogits, b.const("axes_batch", np.array([0], np.int64))], ["g.fc.bias"], keepdims=0)
    )

    if gen:
        plus_one = b.op("Add", ["gen.step", b.const("one_i", np.int64(1))])
        # lazy_freq <= 0 turns GeN off (docs/CONTRACT.md); Max keeps Mod away from zero.
        period = b.op("Max", ["gen.lazy_freq", b.const("one_p", np.int64(1))])
        due = b.op("Equal", [b.op("Mod", [plus_one, period]), b.const("zero_i", np.int64(0))])
        applied = b.op("And", [due, b.op("Greater", ["gen.lazy_freq", b.const("zero_p", np.int64(0))])])
        b.nodes.append(helper.make_node("Identity", [applied], ["gen.applied"]))
        b.nodes.append(
            helper.make_node(
                "If",
                ["gen.applied"],
                ["gen.probe_losses", "lr_applied"],
                then_branch=probe_branch(),
                else_branch=skip_branch(),
            )
        )
        # The fixture multiplies lr by (1 + 0.1 * scale) on GeN steps only; scale is unused elsewhere.
    else:
        # Without GeN the lr stays constant; scale is still a control input (multiplied by 0 here).
        zero_scale = b.op("Mul", ["gen.scale", b.const("zero_f", np.float32(0.0))])
        b.nodes.append(helper.make_node("Add", ["gen.lr", zero_scale], ["lr_applied"]))
    b.nodes.append(helper.make_node("Identity", ["lr_applied"], ["gen.lr.next"]))

    b.nodes.append(helper.make_node("Sub", ["fc.weight", b.op("Mul", ["lr_applied", "g.fc.weight"])], ["fc.weight.next"]))
    b.nodes.append(helper.make_node("Sub", ["fc.bias", b.op("Mul", ["lr_applied", "g.fc.bias"])], ["fc.bias.next"]))
    batch_mean = b.op("ReduceMean", ["input"], axes=[0], keepdims=0)
    b.nodes.append(
        helper.make_node(
            "Add",
            [b.op("Mul", ["norm.mean", b.const("decay", np.float32(0.9))]), b.op("Mul", [batch_mean, b.const("rate", np.float32(0.1))])],
            ["norm.mean.next"],
        )
    )
    b.nodes.append(helper.make_node("Add", ["gen.step", b.const("one_step", np.int64(1))], ["gen.step.next"]))

    inputs = [
        vi("input", TensorProto.FLOAT, ["batch", FEATURES]),
        vi("labels", TensorProto.INT64, ["batch"]),
    ]
    if gen:
        inputs += [
            vi("probe.input", TensorProto.FLOAT, ["probe_batch", FEATURES]),
            vi("probe.labels", TensorProto.INT64, ["probe_batch"]),
        ]
    inputs += [
        vi("fc.weight", TensorProto.FLOAT, [FEATURES, CLASSES]),
        vi("fc.bias", TensorProto.FLOAT, [CLASSES]),
        vi("norm.mean", TensorProto.FLOAT, [FEATURES]),
        vi("gen.step", TensorProto.INT64, []),
        vi("gen.lr", TensorProto.FLOAT, []),
        vi("gen.scale", TensorProto.FLOAT, []),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w0.items()]
    inits += [
        numpy_helper.from_array(np.int64(0), "gen.step"),
        numpy_helper.from_array(np.float32(LR), "gen.lr"),
    ]
    if gen:
        inputs.append(vi("gen.lazy_freq", TensorProto.INT64, []))
        inits.append(numpy_helper.from_array(np.int64(LAZY_FREQ), "gen.lazy_freq"))
    outputs = [
        vi("loss", TensorProto.FLOAT, []),
        vi("accuracy", TensorProto.FLOAT, []),
        vi("fc.weight.next", TensorProto.FLOAT, [FEATURES, CLASSES]),
        vi("fc.bias.next", TensorProto.FLOAT, [CLASSES]),
        vi("norm.mean.next", TensorProto.FLOAT, [FEATURES]),
        vi("gen.step.next", TensorProto.INT64, []),
        vi("gen.lr.next", TensorProto.FLOAT, []),
    ]
    if gen:
        outputs += [vi("gen.applied", TensorProto.BOOL, []), vi("gen.probe_losses", TensorProto.FLOAT, [3])]
    graph = helper.make_graph(b.nodes, "contract_toy_train", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="contract_toy/make.py")
    model.ir_version = 8
    helper.set_model_props(model, {"gen.contract": contract_json(gen, STATE)})
    onnx.checker.check_model(model, full_check=True)
    return model


def eval_model():
    w0 = initial_weights()
    b = Nodes()
    _, logits, _, loss = forward_loss(b, "input", "labels", "norm.mean", "fc.weight", "fc.bias")
    b.nodes.append(helper.make_node("Identity", [loss], ["loss"]))
    b.nodes.append(helper.make_node("Identity", [accuracy(b, logits, "labels")], ["accuracy"]))
    b.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    inputs = [
        vi("input", TensorProto.FLOAT, ["batch", FEATURES]),
        vi("labels", TensorProto.INT64, ["batch"]),
        vi("fc.weight", TensorProto.FLOAT, [FEATURES, CLASSES]),
        vi("fc.bias", TensorProto.FLOAT, [CLASSES]),
        vi("norm.mean", TensorProto.FLOAT, [FEATURES]),
    ]
    outputs = [
        vi("loss", TensorProto.FLOAT, []),
        vi("accuracy", TensorProto.FLOAT, []),
        vi("logits", TensorProto.FLOAT, ["batch", CLASSES]),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w0.items()]
    graph = helper.make_graph(b.nodes, "contract_toy_eval", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="contract_toy/make.py")
    model.ir_version = 8
    helper.set_model_props(model, {"gen.contract": contract_json(True, STATE, eval_state=True)})
    onnx.checker.check_model(model, full_check=True)
    return model


def save_external(model, path):
    data = path + ".data"
    if os.path.exists(data):
        os.remove(data)  # onnx appends to an existing data file
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=os.path.basename(path) + ".data",
        size_threshold=0,
    )


def initial_loss(x, y):
    w = initial_weights()
    logits = (x - w["norm.mean"]) @ w["fc.weight"] + w["fc.bias"]
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def write_bad_inputs(x, y):
    bad = os.path.join(HERE, "bad")
    os.makedirs(bad, exist_ok=True)
    np.savez(os.path.join(bad, "missing_labels.npz"), input=x)
    np.savez(os.path.join(bad, "labels_int32.npz"), input=x, labels=y.astype(np.int32))
    np.savez(os.path.join(bad, "three_features.npz"), input=x[:, :3], labels=y)
    np.savez(os.path.join(bad, "empty.npz"))
    plain = eval_model()
    del plain.metadata_props[:]
    onnx.save_model(plain, os.path.join(bad, "no_contract.onnx"))
    with open(os.path.join(bad, "random.onnx"), "wb") as f:
        f.write(np.random.RandomState(3).bytes(512))


ALL_TYPES = {
    "f32": TensorProto.FLOAT, "f64": TensorProto.DOUBLE, "f16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16, "i8": TensorProto.INT8, "i16": TensorProto.INT16,
    "i32": TensorProto.INT32, "i64": TensorProto.INT64, "u8": TensorProto.UINT8,
    "u16": TensorProto.UINT16, "u32": TensorProto.UINT32, "u64": TensorProto.UINT64,
    "bool": TensorProto.BOOL, "string": TensorProto.STRING,
}


def write_value_models():
    out = os.path.join(HERE, "values")
    os.makedirs(out, exist_ok=True)
    nodes = [helper.make_node("Identity", [f"x_{n}"], [f"y_{n}"]) for n in ALL_TYPES]
    graph = helper.make_graph(
        nodes,
        "identity_all_types",
        [vi(f"x_{n}", t, ["n"]) for n, t in ALL_TYPES.items()],
        [vi(f"y_{n}", t, ["n"]) for n, t in ALL_TYPES.items()],
    )
    save_small(graph, os.path.join(out, "identity_all_types.onnx"), 17)
    float_tensor = helper.make_tensor_type_proto(TensorProto.FLOAT, ["n"])
    graph = helper.make_graph(
        [helper.make_node("Optional", [], ["none"], type=float_tensor)],
        "optional_none",
        [],
        [helper.make_value_info("none", helper.make_optional_type_proto(float_tensor))],
    )
    save_small(graph, os.path.join(out, "optional_none.onnx"), 18)
    graph = helper.make_graph(
        [helper.make_node("SequenceEmpty", [], ["seq"], dtype=TensorProto.FLOAT)],
        "sequence",
        [],
        [helper.make_value_info("seq", helper.make_sequence_type_proto(float_tensor))],
    )
    save_small(graph, os.path.join(out, "sequence.onnx"), 17)


def save_small(graph, path, opset):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="contract_toy/make.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, path)


def main():
    x, y = make_data()
    write_bad_inputs(x, y)
    write_value_models()
    train, train_eval = train_model(gen=True), eval_model()
    onnx.save_model(train, os.path.join(HERE, "train.onnx"))
    onnx.save_model(train_eval, os.path.join(HERE, "train.eval.onnx"))
    onnx.save_model(train_model(gen=False), os.path.join(HERE, "train.nogen.onnx"))
    os.makedirs(os.path.join(HERE, "external"), exist_ok=True)
    save_external(train, os.path.join(HERE, "external", "train.onnx"))
    save_external(train_eval, os.path.join(HERE, "external", "train.eval.onnx"))
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump({"initial_train_loss_full_set": initial_loss(x, y), "lr": LR, "lazy_freq": LAZY_FREQ}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
