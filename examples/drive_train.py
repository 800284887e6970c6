#!/usr/bin/env python3
"""Drive a gen-compile train.onnx from Python with stock onnxruntime, using only its contract.

The contract (metadata_props["gen.contract"], docs/CONTRACT.md) says everything needed: the data
inputs, the probe inputs, the carried state (initial values = the initializers of the same
names), the controls and the reported outputs. One `session.run` is one training step; each
state output becomes the next step's state input.

Train on an .npz (arrays named like the contract's data inputs, or renamed with --array):

    .venv/bin/python examples/drive_train.py train.onnx --data train.npz --steps 200 --batch-size 64

Replay the GeN reference run (models/gen_reference: the fixture's batch order, its probe batches,
its scale schedule) and compare the per-step loss, lr and accept/reject decisions with the
log of gen-optim 0.1.1; exits with status 1 when they disagree beyond --tolerance:

    .venv/bin/python examples/drive_train.py train.onnx --reference models/gen_reference \\
        --run gen_adamw_compat_lr1e-3

Needs numpy, onnx (to read the initial state, external data included) and onnxruntime.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


class TrainGraph:
    """A train.onnx and its carried state."""

    def __init__(self, path, providers=("CPUExecutionProvider",)):
        model = onnx.load(path)  # loads external data from beside the file
        meta = {p.key: p.value for p in model.metadata_props}
        if "gen.contract" not in meta:
            raise SystemExit(f"{path}: no gen.contract metadata (not written by gen-compile)")
        self.contract = c = json.loads(meta["gen.contract"])
        if c.get("kind", "train") != "train":
            raise SystemExit(f"{path}: a {c['kind']} graph, not a train graph")
        inits = {t.name: t for t in model.graph.initializer}
        self.state = {s["input"]: numpy_helper.to_array(inits[s["input"]]) for s in c["state"]}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # state inputs with defaults are intended: no warnings
        self.session = ort.InferenceSession(path, options, providers=list(providers))
        self.output_names = [o.name for o in self.session.get_outputs()]
        step_inputs = [s["input"] for s in c["state"] if s["role"] == "step"]
        self.step_input = step_inputs[0] if step_inputs else None
        self.lazy_freq = c["config"].get("lazy_freq") if c["config"].get("gen") else None

    @property
    def step(self):
        return int(self.state[self.step_input]) if self.step_input else 0

    def lr(self):
        """The carried lr before the next step (None without an lr state)."""
        names = [s["input"] for s in self.contract["state"] if s["role"] == "lr"]
        return float(self.state[names[0]]) if names else None

    def next_is_gen_step(self):
        return bool(self.lazy_freq) and (self.step + 1) % self.lazy_freq == 0

    def run_step(self, batch, probe=None, scale=1.0):
        """One training step. `batch` / `probe`: dicts keyed by the contract's data inputs."""
        c = self.contract
        feeds = {name: batch[name] for name in c["data"]}
        for probe_input, mirrored in c["probe_data"].items():
            # read only on GeN steps; any same-typed tensor will do otherwise
            feeds[probe_input] = (probe if probe is not None else batch)[mirrored]
        if "scale" in c["controls"]:
            feeds[c["controls"]["scale"]] = np.asarray(scale, dtype=np.float32)
        feeds.update(self.state)
        values = dict(zip(self.output_names, self.session.run(None, feeds)))
        for s in c["state"]:
            self.state[s["input"]] = values[s["output"]]
        out = c["outputs"]
        report = {"loss": float(values[c["loss"]])}
        if "lr" in out:
            report["lr"] = float(values[out["lr"]])
        if "gen_applied" in out:
            report["gen_applied"] = bool(values[out["gen_applied"]])
        if "probe_losses" in out:
            report["probe_losses"] = [float(v) for v in values[out["probe_losses"]]]
        if "accuracy" in out:
            report["accuracy"] = float(values[out["accuracy"]])
        return report


def decision(lr, probe_losses):
    """GeN's decision from the three probe losses [L(w - Δ), L(w + Δ), L(w)]."""
    lm, lp, l0 = probe_losses
    if not all(math.isfinite(v) for v in probe_losses):
        return "nan"
    a = (lm + lp - 2 * l0) / lr**2
    b = (lm - lp) / (2 * lr)
    return "accept" if a > 0 and b > 0 else "reject"


def renamed(arrays, spec):
    """The arrays of an .npz by name, plus INPUT=ARRAY aliases."""
    out = {name: arrays[name] for name in arrays.files}
    for item in spec:
        name, array = item.split("=", 1)
        out[name] = arrays[array]
    return out


def replay_reference(graph, ref_dir, run, tolerance):
    """Replays the reference run `run` and compares with its log; returns the figures."""
    setup = np.load(os.path.join(ref_dir, "setup.npz"))
    with open(os.path.join(ref_dir, "log.json")) as f:
        log = json.load(f)[run]
    rows = log["rows"]
    x, y = setup["Xtr"], setup["ytr"]
    data_input, label_input = graph.contract["data"][0], graph.contract["data"][-1]
    steps = len(rows)
    k = 0
    worst = {"loss": 0.0, "lr": 0.0, "probe_losses": 0.0}
    mismatches = []
    for t, row in enumerate(rows):
        idx = setup["main_batch_idx"][t]
        batch = {data_input: x[idx], label_input: y[idx]}
        probe = None
        if graph.next_is_gen_step():
            pidx = setup["probe_batch_idx"][k]
            k += 1
            probe = {data_input: x[pidx], label_input: y[pidx]}
        scale = 1.0 - t / steps if log["scale"] == "linear" else 1.0
        lr_before = graph.lr()
        r = graph.run_step(batch, probe, scale)
        rel = lambda a, b: abs(a - b) / max(abs(b), 1e-30)
        worst["loss"] = max(worst["loss"], rel(r["loss"], row["loss"]))
        worst["lr"] = max(worst["lr"], rel(r["lr"], row["lr_used"]))
        if r.get("gen_applied") != ("gen" in row):
            mismatches.append(t)
        if "gen" in row:
            g = row["gen"]
            for a, b in zip(r["probe_losses"], [g["L_m1"], g["L_p1"], g["L_0"]]):
                worst["probe_losses"] = max(worst["probe_losses"], rel(a, b))
            if decision(lr_before, r["probe_losses"]) != g["decision"]:
                mismatches.append(t)
    ok = not mismatches and worst["loss"] < tolerance and worst["lr"] < tolerance
    return {"run": run, "steps": steps, "gen_steps": k, "max_rel_err": worst,
            "decision_mismatches": mismatches, "ok": ok}


def train(graph, data, steps, batch_size, seed):
    """Plain training: shuffled batches, an independent probe stream on GeN steps."""
    n = len(next(iter(data.values())))
    main, probe_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    order, probe_order = main.permutation(n), probe_rng.permutation(n)
    pos = ppos = 0
    for t in range(steps):
        if pos + batch_size > n:
            order, pos = main.permutation(n), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        probe = None
        if graph.next_is_gen_step():
            if ppos + batch_size > n:
                probe_order, ppos = probe_rng.permutation(n), 0
            pidx = probe_order[ppos:ppos + batch_size]
            ppos += batch_size
            probe = {k: v[pidx] for k, v in data.items()}
        lr_before = graph.lr()
        r = graph.run_step({k: v[idx] for k, v in data.items()}, probe, 1.0 - t / steps)
        line = f"step {t:5d}  loss {r['loss']:.5f}"
        if "lr" in r:
            line += f"  lr {r['lr']:.3e}"
        if r.get("gen_applied"):
            line += "  GeN " + decision(lr_before, r["probe_losses"])
        print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="train.onnx written by gen-compile")
    ap.add_argument("--data", help=".npz with arrays named like the contract's data inputs")
    ap.add_argument("--array", action="append", default=[], metavar="INPUT=ARRAY",
                    help="feed array ARRAY of --data to input INPUT")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", metavar="DIR", help="replay a GeN reference fixture folder")
    ap.add_argument("--run", action="append", default=[], help="reference run(s) to replay")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max relative error of loss and lr")
    ap.add_argument("--json", action="store_true", help="print the parity figures as JSON")
    args = ap.parse_args()
    if args.reference:
        results = []
        for run in args.run or ["gen_adamw_compat_lr1e-3"]:
            graph = TrainGraph(args.model)
            results.append(replay_reference(graph, args.reference, run, args.tolerance))
        for r in results:
            if args.json:
                print(json.dumps(r))
            else:
                e = r["max_rel_err"]
                print(f"{r['run']}: {r['steps']} steps, {r['gen_steps']} GeN steps, max rel err "
                      f"loss {e['loss']:.2e} lr {e['lr']:.2e} probe losses {e['probe_losses']:.2e}, "
                      f"decision mismatches {r['decision_mismatches']}: {'OK' if r['ok'] else 'FAIL'}")
        sys.exit(0 if all(r["ok"] for r in results) else 1)
    if not args.data:
        ap.error("--data (or --reference) is required")
    data = renamed(np.load(args.data), args.array)
    graph = TrainGraph(args.model)
    train(graph, data, args.steps, args.batch_size, args.seed)


if __name__ == "__main__":
    main()
