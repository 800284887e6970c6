#!/usr/bin/env python3
"""Check the fixtures under models/ without PyTorch: numpy + onnx + onnxruntime only.

    .venv/bin/python models/verify_fixtures.py            # every fixture folder with a meta.json
    .venv/bin/python models/verify_fixtures.py mlp gpt2   # a subset (optim is always by name)

For each fixture: the ONNX file passes the checker; every grad:<name> key is an initializer of
the same shape; every float initializer is a parameter (with a gradient) or a listed buffer;
ONNX Runtime's forward on the reference batch matches PyTorch's output (the train-mode `logits`,
or `logits_eval` where the file's BatchNormalization is in inference mode) within 1e-4; the
loss recomputed in numpy from those outputs matches `loss`; BatchNorm `buffer_after:` values
follow PyTorch's update rule from the batch statistics ORT computes; central finite
differences through ORT along each gradient tensor agree with the stored gradient. For optim: the stored
gradients match a numpy backward of the MLP and every stored step matches the torch.optim
update formulas applied to the previous stored state.
Exits non-zero on the first failure.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ATOL = 1e-4


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def np_cross_entropy(logits, labels, ignore_index=-100):
    z = logits.astype(np.float64).reshape(-1, logits.shape[-1])
    y = labels.reshape(-1)
    keep = y != ignore_index
    z, y = z[keep], y[keep]
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def np_loss(kind, out, labels, ignore_index):
    if kind == "cross-entropy":
        return np_cross_entropy(out, labels, ignore_index)
    return float(np.mean((out.astype(np.float64) - labels.astype(np.float64)) ** 2))


def session(model, extra_outputs=()):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for name in extra_outputs:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bn_to_training(model):
    """Copy of `model` with every BatchNormalization in training mode (3 outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            attrs = [a for a in n.attribute if a.name != "training_mode"]
            del n.attribute[:]
            n.attribute.extend(attrs + [onnx.helper.make_attribute("training_mode", 1)])
            while len(n.output) < 3:
                n.output.append(f"{n.name}__stat{len(n.output)}")
    return m


def params_as_inputs(model, params):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    for p in params:
        m.graph.input.append(onnx.helper.make_tensor_value_info(
            p, inits[p].data_type, list(inits[p].dims)))
    return m


def check_directional_derivatives(name, model, meta, ref, inits, feeds,
                                  steps=(1e-2, 3e-3, 1e-3, 3e-4)):
    """Central differences through ORT along each gradient tensor's own direction:
    d/dt L(w + t * g_p / |g_p|) at t = 0 must equal |g_p|. Several step sizes are tried
    (BatchNorm on a small batch, ReLU kinks and max-pool switches make some directions strongly
    curved, float32 noise limits small steps); the best one must agree within 3 %. A gradient
    stored under the wrong name or for the wrong graph would be off by far more."""
    grads = {k[5:]: v for k, v in ref.items() if k.startswith("grad:")}
    sess = session(params_as_inputs(model, list(grads)))

    def loss_at(p, w):
        (y,) = sess.run([meta["logits"]], {**feeds, p: w})
        return np_loss(meta["loss"], y, ref["labels"], meta["ignore_index"])

    worst = 0.0
    for p, g in grads.items():
        gn = float(np.linalg.norm(g.astype(np.float64)))
        if gn == 0.0:
            continue
        u = (g / gn).astype(np.float32)
        w = inits[p]
        err, fd = float("inf"), None
        for eps in steps:
            f = (loss_at(p, w + eps * u) - loss_at(p, w - eps * u)) / (2 * eps)
            if abs(f - gn) < err:
                err, fd = abs(f - gn), f
            if err <= 1e-3 * gn:
                break
        worst = max(worst, err / max(gn, 1e-3))
        if err > 3e-2 * gn + 1e-4:
            fail(f"{name}: directional derivative of {p}: finite difference {fd:.6g} vs |grad| "
                 f"{gn:.6g}")
    return worst


def verify_fixture(name):
    d = os.path.join(HERE, name)
    meta = json.load(open(os.path.join(d, "meta.json")))
    ref = dict(np.load(os.path.join(d, "reference.npz")))
    path = os.path.join(d, "model.onnx")
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    # gradients keyed by initializer names
    grads = {k[5:]: v for k, v in ref.items() if k.startswith("grad:")}
    if set(grads) != set(meta["parameters"]):
        fail(f"{name}: grad keys != meta parameters")
    for p, g in grads.items():
        if p not in inits:
            fail(f"{name}: grad:{p} is not an initializer")
        if inits[p].shape != g.shape or g.dtype != np.float32:
            fail(f"{name}: grad:{p} shape {g.shape} vs {inits[p].shape}")
        if not np.all(np.isfinite(g)):
            fail(f"{name}: grad:{p} not finite")
    buffers = set(meta["buffers"].values())
    for k, v in inits.items():
        if v.dtype.kind == "f" and k not in grads and k not in buffers \
                and k not in meta["other_initializers"]:
            fail(f"{name}: float initializer {k} is neither parameter nor buffer")
    for t in meta["tied_parameters"]:
        users = [n.name for n in model.graph.node if t["initializer"] in n.input]
        if len(users) < 2:
            fail(f"{name}: tied initializer {t['initializer']} has {len(users)} consumers")

    # forward through ONNX Runtime
    bn_nodes = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    train_bn = [n for n in bn_nodes if any(a.name == "training_mode" and a.i == 1
                                           for a in n.attribute)]
    infer_bn = len(bn_nodes) > len(train_bn)
    extra = [n.input[0] for n in train_bn]
    sess = session(model, extra)
    feeds = {k[6:]: v for k, v in ref.items() if k.startswith("input:")}
    outs = sess.run(None, feeds)
    got = dict(zip([o.name for o in sess.get_outputs()], outs))
    y = got[meta["logits"]]
    want_key = "logits_eval" if infer_bn else "logits"
    err = float(np.max(np.abs(y - ref[want_key])))
    if err > ATOL:
        fail(f"{name}: ORT output vs {want_key}: max abs err {err:.3g}")
    loss = float(ref["loss"])
    l_np = np_loss(meta["loss"], ref["logits"], ref["labels"], meta["ignore_index"])
    if abs(l_np - loss) > 1e-5 * max(1.0, abs(loss)):
        fail(f"{name}: numpy loss from stored logits {l_np} vs {loss}")
    msg = f"ORT vs {want_key} max err {err:.2e}"
    if not infer_bn:
        l_ort = np_loss(meta["loss"], y, ref["labels"], meta["ignore_index"])
        if abs(l_ort - loss) > 1e-4 * max(1.0, abs(loss)):
            fail(f"{name}: numpy loss from ORT output {l_ort} vs {loss}")
        msg += f"; loss ORT {l_ort:.6f} torch {loss:.6f}"

    # A BatchNormalization written in inference mode is checked after rewriting it to training
    # mode (what the compiler does): the output must then be the train-mode `logits`.
    if infer_bn:
        model = bn_to_training(model)
        train_bn = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
        sess = session(model, [n.input[0] for n in train_bn])
        outs = sess.run(None, feeds)
        got = dict(zip([o.name for o in sess.get_outputs()], outs))
        y = got[meta["logits"]]
        err = float(np.max(np.abs(y - ref["logits"])))
        if err > ATOL:
            fail(f"{name}: ORT (BatchNorm rewritten to training mode) vs logits: {err:.3g}")
        l_ort = np_loss(meta["loss"], y, ref["labels"], meta["ignore_index"])
        if abs(l_ort - loss) > 1e-4 * max(1.0, abs(loss)):
            fail(f"{name}: numpy loss from rewritten ORT output {l_ort} vs {loss}")
        msg += f"; BN->training rewrite vs logits max err {err:.2e}, loss {l_ort:.6f}"

    # BatchNorm running statistics: PyTorch rule, momentum 0.1, unbiased batch variance
    for n in train_bn:
        x = got[n.input[0]].astype(np.float64)
        axes = (0,) + tuple(range(2, x.ndim))
        cnt = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var_unb = x.var(axis=axes) * cnt / (cnt - 1)
        rm, rv = n.input[3], n.input[4]
        exp_m = 0.9 * inits[rm] + 0.1 * mean
        exp_v = 0.9 * inits[rv] + 0.1 * var_unb
        em = np.max(np.abs(exp_m - ref[f"buffer_after:{rm}"]))
        ev = np.max(np.abs(exp_v - ref[f"buffer_after:{rv}"]))
        if em > 1e-5 or ev > 1e-5:
            fail(f"{name}: buffer_after for {n.name}: mean err {em:.3g} var err {ev:.3g}")
    if train_bn:
        msg += f"; {len(train_bn)} BN running-stat updates ok"
    worst = check_directional_derivatives(name, model, meta, ref, inits, feeds)
    msg += f"; finite differences ok (worst rel {worst:.1e})"
    print(f"ok  {name}: {len(grads)} grads; {msg}")


def verify_optim():
    d = os.path.join(HERE, "optim")
    desc = json.load(open(os.path.join(d, "optim.json")))
    data = dict(np.load(os.path.join(d, "optim.npz")))
    model = onnx.load(os.path.join(d, "model.onnx"))
    names = desc["parameters"]
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in names:
        if not np.array_equal(inits[n], data[f"init:{n}"]):
            fail(f"optim: init:{n} differs from model.onnx")
    sess = session(model)

    def fwd_bwd(p, x, y):
        w0, b0, w1, b1 = (p[n].astype(np.float64) for n in names)
        h = x @ w0.T + b0
        a = np.maximum(h, 0)
        z = a @ w1.T + b1
        zm = z - z.max(1, keepdims=True)
        prob = np.exp(zm) / np.exp(zm).sum(1, keepdims=True)
        loss = np.mean(-np.log(prob[np.arange(len(y)), y]))
        dz = prob.copy()
        dz[np.arange(len(y)), y] -= 1
        dz /= len(y)
        da = dz @ w1
        dh = da * (h > 0)
        g = {names[0]: dh.T @ x, names[1]: dh.sum(0), names[2]: dz.T @ a, names[3]: dz.sum(0)}
        return loss, g

    worst = 0.0
    for cname, cfg in desc["configs"].items():
        prev = {n: data[f"init:{n}"].astype(np.float64) for n in names}
        state = {}
        for k in range(desc["steps"]):
            x = data[f"batch{k}:input"].astype(np.float64)
            y = data[f"batch{k}:labels"]
            loss, g_np = fwd_bwd(prev, x, y)
            if abs(loss - float(data[f"{cname}:step{k}:loss"])) > 1e-5:
                fail(f"optim {cname} step {k}: loss {loss} vs {data[f'{cname}:step{k}:loss']}")
            if k == 0:
                (z,) = sess.run(None, {"input": data["batch0:input"]})
                l_ort = np_cross_entropy(z, y)
                if abs(l_ort - loss) > 1e-5:
                    fail(f"optim {cname}: ORT loss {l_ort} vs {loss}")
            for n in names:
                g = data[f"{cname}:step{k}:grad:{n}"].astype(np.float64)
                if np.max(np.abs(g - g_np[n])) > 1e-5:
                    fail(f"optim {cname} step {k}: grad {n} differs from numpy backward")
                p = prev[n]
                lr, wd = cfg["lr"], cfg["weight_decay"]
                if cfg["optimizer"] == "SGD":
                    g = g + wd * p
                    if cfg["momentum"] != 0:
                        if k == 0:
                            buf = g.copy()
                        else:
                            buf = cfg["momentum"] * state[n] + (1 - cfg["dampening"]) * g
                        state[n] = buf
                        g = g + cfg["momentum"] * buf if cfg["nesterov"] else buf
                    new = p - lr * g
                else:
                    b1, b2 = cfg["betas"]
                    if cfg["optimizer"] == "AdamW":
                        p = p * (1 - lr * wd)
                    else:
                        g = g + wd * p
                    m, v = state.get(n, (np.zeros_like(p), np.zeros_like(p)))
                    m = b1 * m + (1 - b1) * g
                    v = b2 * v + (1 - b2) * g * g
                    state[n] = (m, v)
                    t = k + 1
                    denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + cfg["eps"]
                    new = p - (lr / (1 - b1 ** t)) * m / denom
                stored = data[f"{cname}:step{k}:{n}"].astype(np.float64)
                err = float(np.max(np.abs(new - stored)))
                worst = max(worst, err)
                if err > 1e-6:
                    fail(f"optim {cname} step {k} {n}: formula vs torch err {err:.3g}")
                # continue from torch's stored values (float32) so errors do not accumulate
                prev[n] = stored
                if n in state:
                    if isinstance(state[n], tuple):
                        state[n] = (data[f"{cname}:step{k}:exp_avg:{n}"].astype(np.float64),
                                    data[f"{cname}:step{k}:exp_avg_sq:{n}"].astype(np.float64))
                    else:
                        state[n] = data[f"{cname}:step{k}:momentum_buffer:{n}"].astype(
                            np.float64)
    print(f"ok  optim: {len(desc['configs'])} configs x {desc['steps']} steps match the update "
          f"formulas (max err {worst:.2e})")


def main(argv):
    names = argv or sorted(
        n for n in os.listdir(HERE)
        if os.path.isfile(os.path.join(HERE, n, "meta.json"))) + ["optim"]
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}")
    for n in names:
        if n == "optim":
            verify_optim()
        else:
            verify_fixture(n)


if __name__ == "__main__":
    main(sys.argv[1:])
