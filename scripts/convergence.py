#!/usr/bin/env python3
"""The GeN convergence benchmark (issue 11): is the final validation loss of a GeN run, started
from some learning rate, close to that of the best run of a fixed-lr grid with the same steps?

Driven by scripts/convergence.sh; uses only numpy and the gen-compile / gen-train binaries
(matplotlib, when importable, for the optional plot). See BENCHMARKS.md, "Convergence".

For every task, optimizer, learning rate and seed one graph is compiled (`--gen off` for the
fixed-lr grid; GeN per controller for the starts) and trained for the long budget with an
evaluation at the end of every epoch. The short budget's result is the evaluation after its last
step in the same run: nothing in a step depends on the total number of steps (`--scale none`),
so this is exactly the run that stops there.
"""
import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def grid(lo, hi):
    """Half-decade steps from 10**lo to 10**hi: 1e-4, 3e-4, 1e-3, ..."""
    out = []
    for e in range(lo, hi + 1):
        out.append(10.0 ** e)
        if e < hi:
            out.append(3.0 * 10.0 ** e)
    return out


# Fixed-lr grids and GeN starts per optimizer (the same for every task).
GRIDS = {"sgd": grid(-3, 1), "momentum": grid(-4, 0), "adamw": grid(-4, -1)}
STARTS = {"sgd": [1e-3, 1e-2, 1e-1], "momentum": [1e-3, 1e-2, 1e-1],
          "adamw": [1e-4, 1e-3, 1e-2, 1e-1]}


class Task:
    def __init__(self, name, folder, model, batch, loss=None, logits=None, short=5, long=20):
        self.name, self.batch, self.loss, self.logits = name, batch, loss, logits
        self.model = os.path.join(ROOT, folder, model)
        self.train = os.path.join(ROOT, folder, "train.npz")
        self.val = os.path.join(ROOT, folder, "val.npz")
        self.short, self.long = short, long  # epochs

    def compile_flags(self):
        flags = []
        if self.loss:
            flags += ["--loss", self.loss]
        if self.logits:
            flags += ["--logits", self.logits]
        return flags


TASKS = [
    Task("digits_mlp", "models/digits", "mlp.onnx", 32),
    Task("digits_cnn", "models/convergence/cnn", "model.onnx", 32),
    Task("diabetes_mse", "models/convergence/regression", "model.onnx", 16, "mse", "pred"),
    Task("charlm_transformer", "models/convergence/charlm", "model.onnx", 32),
]
OPTIMIZERS = ["sgd", "momentum", "adamw"]
GOAL = {"sgd": 1.5, "momentum": 1.2, "adamw": 1.2}


def lr_tag(lr):
    return f"{lr:.0e}"


def n_samples(path):
    import numpy as np
    with np.load(path) as d:
        return len(d[d.files[0]])


class Bench:
    def __init__(self, args):
        self.args, self.out = args, args.out
        self.compile_bin = os.path.join(args.bin_dir, "gen-compile")
        self.train_bin = os.path.join(args.bin_dir, "gen-train")
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)
        print(f"convergence: warning: {msg}", file=sys.stderr, flush=True)

    # ---- controllers --------------------------------------------------------------------------
    def controller_flags(self, wanted):
        """{controller: extra gen-compile flags}. A compiler without --gen-controller is today's
        GeN: it counts as "paper" (no flag) and every other controller is skipped."""
        probe = os.path.join(self.out, "probe.onnx")
        usable = {}
        for name in wanted:
            r = subprocess.run([self.compile_bin, TASKS[0].model, "-o", probe, "--gen-controller", name],
                               capture_output=True, text=True)
            if r.returncode == 0:
                usable[name] = ["--gen-controller", name]
            elif "--gen-controller" in r.stderr and "unexpected argument" in r.stderr:
                if name == "paper":
                    usable[name] = []
                else:
                    self.warn(f"gen-compile has no --gen-controller flag: controller {name!r} skipped")
            else:
                self.warn(f"gen-compile rejects --gen-controller {name}: skipped ({r.stderr.strip()})")
        return usable

    # ---- one run ------------------------------------------------------------------------------
    def compile(self, task, opt, lr, controller, cflags):
        mode = "off" if controller is None else controller
        d = os.path.join(self.out, "compiled", task.name, f"{opt}-{mode}-{lr_tag(lr)}")
        path = os.path.join(d, "train.onnx")
        if not os.path.exists(path):
            os.makedirs(d, exist_ok=True)
            cmd = [self.compile_bin, task.model, "-o", path, "--optimizer", opt, "--lr", repr(lr),
                   "--lazy-freq", "4"] + task.compile_flags()
            cmd += ["--gen", "off"] if controller is None else cflags
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        return path

    def run(self, job):
        task, opt, lr, controller, cflags, seed = job
        graph = self.compile(task, opt, lr, controller, cflags)
        mode = "fixed" if controller is None else controller
        rundir = os.path.join(self.out, "runs", task.name, f"{opt}-{mode}-{lr_tag(lr)}-s{seed}")
        spe = math.ceil(n_samples(task.train) / task.batch)
        metrics = os.path.join(rundir, "metrics.jsonl")
        if not os.path.exists(os.path.join(rundir, "done")):
            if os.path.isdir(rundir):
                for f in os.listdir(rundir):
                    os.remove(os.path.join(rundir, f))
            cmd = [self.train_bin, graph, "--data", task.train, "--eval-data", task.val,
                   "--batch-size", str(task.batch), "--epochs", str(task.long), "--seed", str(seed),
                   "--eval-every", str(spe), "--threads", "1", "--quiet", "--out", rundir]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                return self.failed(job, f"gen-train exit {r.returncode}: {r.stderr.strip()[-400:]}")
            with open(os.path.join(rundir, "done"), "w") as f:
                f.write(f"{wall}\n")
        with open(os.path.join(rundir, "done")) as f:
            wall = float(f.read())
        rows = [json.loads(line) for line in open(metrics)]
        # an evaluation ends every epoch (--eval-every = steps per epoch); a NaN loss reads null
        out = []
        for budget, epochs in (("short", task.short), ("long", task.long)):
            steps = min(epochs * spe, len(rows))
            upto = rows[:steps]
            loss, acc = num(upto[-1].get("eval_loss")), num(upto[-1].get("eval_accuracy"))
            diverged = not math.isfinite(loss) or any(not math.isfinite(num(r["loss"])) for r in upto)
            out.append({
                "task": task.name, "optimizer": opt, "budget": budget, "epochs": epochs, "steps": steps,
                "mode": mode, "lr0": lr, "seed": seed, "val_loss": loss, "val_accuracy": acc,
                "first_train_loss": num(rows[0]["loss"]), "final_lr": num(upto[-1].get("lr")),
                "diverged": int(diverged), "failed": 0, "run_wall_s": round(wall, 3),
                "steps_per_sec": num(rows[-1].get("steps_per_sec")), "error": "",
            })
        return out, curves(rows)

    def failed(self, job, err):
        task, opt, lr, controller, _, seed = job
        mode = "fixed" if controller is None else controller
        self.warn(f"{task.name} {opt} {mode} lr {lr:g} seed {seed}: {err}")
        return [{"task": task.name, "optimizer": opt, "budget": b, "epochs": e, "steps": 0,
                 "mode": mode, "lr0": lr, "seed": seed, "val_loss": math.nan, "val_accuracy": math.nan,
                 "first_train_loss": math.nan, "final_lr": math.nan, "diverged": 1, "failed": 1,
                 "run_wall_s": math.nan, "steps_per_sec": math.nan, "error": err}
                for b, e in (("short", task.short), ("long", task.long))], None


def num(v):
    return math.nan if v is None else float(v)


def curves(rows):
    """lr at every step and the evaluations, for the plot."""
    return {"step": [r["step"] for r in rows], "lr": [num(r.get("lr")) for r in rows],
            "eval": [(r["step"], num(r.get("eval_loss"))) for r in rows
                     if r.get("eval_loss") is not None]}


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else math.nan


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return math.nan if n == 0 else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)


def summarize(rows, grids, starts, controllers):
    """Per task / optimizer / budget: the best fixed lr (mean over seeds) and each GeN start's
    ratio (mean over seeds) to it. A mean with a diverged seed is inf."""
    def seed_mean(sel):
        vals = [r["val_loss"] for r in sel]
        return mean(vals) if vals and all(math.isfinite(v) for v in vals) else math.inf

    out = []
    keys = sorted({(r["task"], r["optimizer"], r["budget"]) for r in rows},
                  key=lambda k: ([t.name for t in TASKS].index(k[0]), OPTIMIZERS.index(k[1]), k[2] != "short"))
    for task, opt, budget in keys:
        sel = [r for r in rows if (r["task"], r["optimizer"], r["budget"]) == (task, opt, budget)]
        fixed = {lr: seed_mean([r for r in sel if r["mode"] == "fixed" and r["lr0"] == lr]) for lr in grids[opt]}
        best_lr = min(fixed, key=lambda lr: fixed[lr])
        best = fixed[best_lr]
        edge = best_lr in (min(grids[opt]), max(grids[opt]))
        gen = {}
        for c in controllers:
            for lr in starts[opt]:
                g = seed_mean([r for r in sel if r["mode"] == c and r["lr0"] == lr])
                gen[(c, lr)] = (g, g / best if math.isfinite(best) and best > 0 else math.nan)
        out.append({"task": task, "optimizer": opt, "budget": budget, "fixed": fixed,
                    "best_lr": best_lr, "best": best, "edge": edge, "gen": gen,
                    "steps": sel[0]["steps"]})
    return out


def overhead(rows, controllers):
    """Median over (lr, seed) pairs of GeN's time per step / --gen off's, per task / optimizer."""
    res = {}
    longs = [r for r in rows if r["budget"] == "long" and not r["failed"]]
    fixed = {(r["task"], r["optimizer"], r["lr0"], r["seed"]): r["steps_per_sec"] for r in longs if r["mode"] == "fixed"}
    for c in controllers:
        for r in longs:
            if r["mode"] != c:
                continue
            f = fixed.get((r["task"], r["optimizer"], r["lr0"], r["seed"]))
            if f and r["steps_per_sec"] > 0:
                res.setdefault((c, r["task"], r["optimizer"]), []).append(f / r["steps_per_sec"])
    return {k: (median(v), len(v)) for k, v in res.items()}


def fmt(x, digits=3):
    if isinstance(x, float) and not math.isfinite(x):
        return "**inf (diverged)**" if x > 0 else "nan"
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def markdown(summary, controllers, starts, ovh, cfg):
    all_starts = sorted({lr for s in starts.values() for lr in s})
    lines = [f"Seeds: {cfg['seeds']}; lazy_freq 4; probes on the next batch; ratios are mean final "
             "validation loss of the GeN start / of the best fixed lr (mean over seeds), same steps.", ""]
    for c in controllers:
        lines += [f"#### Controller `{c}`", "",
                  "| task | optimizer | budget (steps) | best fixed lr | its val loss | "
                  + " | ".join(f"GeN lr0={lr:g}" for lr in all_starts) + " |",
                  "| --- | --- | --- | --- | --- |" + " --- |" * len(all_starts)]
        for s in summary:
            cells = []
            for lr in all_starts:
                if (c, lr) not in s["gen"]:
                    cells.append("")
                    continue
                g, ratio = s["gen"][(c, lr)]
                mark = "" if math.isfinite(ratio) and ratio <= GOAL[s["optimizer"]] else " ✗"
                cells.append(("**diverged**" if not math.isfinite(g) else f"{ratio:.2f}") + mark)
            edge = " (edge)" if s["edge"] else ""
            lines.append(f"| {s['task']} | {s['optimizer']} | {s['budget']} ({s['steps']}) | "
                         f"{s['best_lr']:g}{edge} | {fmt(s['best'], 4)} | " + " | ".join(cells) + " |")
        n = sum(1 for s in summary for (cc, _), (g, r) in s["gen"].items() if cc == c)
        ok = sum(1 for s in summary for (cc, _), (g, r) in s["gen"].items()
                 if cc == c and math.isfinite(r) and r <= GOAL[s["optimizer"]])
        lines += ["", f"Within the goal (≤ 1.2× AdamW and momentum, ≤ 1.5× SGD; ✗ marks a miss): "
                  f"{ok} of {n}.", ""]
    lines += ["#### Wall time per step, GeN / `--gen off` (same lr0 and seed, median over pairs)", "",
              "| controller | task | " + " | ".join(OPTIMIZERS) + " |",
              "| --- | --- |" + " --- |" * len(OPTIMIZERS)]
    for c in controllers:
        for t in TASKS:
            cells = [f"{ovh[(c, t.name, o)][0]:.3f}" if (c, t.name, o) in ovh else "" for o in OPTIMIZERS]
            if any(cells):
                lines.append(f"| {c} | {t.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(out_dir):
    """convergence.png: per task and optimizer, lr and validation loss against steps for the GeN
    starts (first seed) and the best fixed lr of the long budget. Needs matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    data = json.load(open(os.path.join(out_dir, "curves.json")))
    tasks = list(data["tasks"])
    opts = [o for o in OPTIMIZERS if any(o in data["tasks"][t] for t in tasks)]
    fig, axes = plt.subplots(2 * len(tasks), len(opts), figsize=(5 * len(opts), 3.2 * 2 * len(tasks)),
                             squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ti, task in enumerate(tasks):
        for oi, opt in enumerate(opts):
            ax_lr, ax_loss = axes[2 * ti][oi], axes[2 * ti + 1][oi]
            entry = data["tasks"][task].get(opt)
            if not entry:
                ax_lr.set_visible(False)
                ax_loss.set_visible(False)
                continue
            for label, cur in entry.items():
                fixed = label.startswith("fixed")
                ci = 0 if fixed else data["controllers"].index(label.split(" ")[0])
                kw = {"color": "black", "linewidth": 2} if fixed else {"linestyle": styles[ci % 4]}
                ax_lr.plot(cur["step"], cur["lr"], label=label, **kw)
                ax_loss.plot([s for s, _ in cur["eval"]], [v for _, v in cur["eval"]], label=label, **kw)
            ax_lr.set_yscale("log")
            ax_loss.set_yscale("log")
            ax_lr.set_title(f"{task} / {opt}: lr")
            ax_loss.set_title(f"{task} / {opt}: validation loss")
            ax_loss.set_xlabel("step")
            ax_lr.legend(fontsize=6)
    fig.tight_layout()
    path = os.path.join(out_dir, "convergence.png")
    fig.savefig(path, dpi=80)
    return path


def main():
    global TASKS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a small subset with assertions (CI)")
    p.add_argument("--out", default=None, help="output folder (default target/convergence[-quick])")
    p.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    p.add_argument("--controllers", default="paper,adaptive")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="gen-train processes at once (1 thread each)")
    p.add_argument("--tasks", default=None, help="comma-separated subset of " + ",".join(t.name for t in TASKS))
    p.add_argument("--plot-only", action="store_true", help="only draw convergence.png from --out")
    p.add_argument("--resume", action="store_true",
                   help="keep the graphs and finished runs already in --out (default: start afresh)")
    args = p.parse_args()
    args.out = os.path.abspath(args.out or os.path.join(ROOT, "target", "convergence-quick" if args.quick else "convergence"))
    if args.plot_only:
        print(plot(args.out))
        return 0
    if not args.resume:
        for sub in ("compiled", "runs"):
            shutil.rmtree(os.path.join(args.out, sub), ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    bench = Bench(args)

    grids, starts, seeds = dict(GRIDS), dict(STARTS), list(range(args.seeds))
    opts = OPTIMIZERS
    if args.quick:
        # digits MLP and the regression, 1 and 3 epochs, two fixed lrs and two starts each
        TASKS = [t for t in TASKS if t.name in ("digits_mlp", "diabetes_mse")]
        for t in TASKS:
            t.short, t.long = 1, 3
        opts = ["sgd", "adamw"]
        grids = {"sgd": [1e-2, 1e-1], "adamw": [1e-3, 1e-2]}
        starts = {"sgd": [1e-2, 1e-1], "adamw": [1e-3, 1e-2]}
        seeds = [0]
    if args.tasks:
        want = args.tasks.split(",")
        TASKS = [t for t in TASKS if t.name in want]
    controllers = bench.controller_flags([c for c in args.controllers.split(",") if c])
    if not controllers:
        print("convergence: no usable GeN controller", file=sys.stderr)
        return 1

    jobs = []
    for t in TASKS:
        for o in opts:
            for s in seeds:
                for lr in grids[o]:
                    jobs.append((t, o, lr, None, None, s))
                for c, flags in controllers.items():
                    for lr in starts[o]:
                        jobs.append((t, o, lr, c, flags, s))
    print(f"convergence: {len(jobs)} runs, controllers {list(controllers)}, out {args.out}", flush=True)
    t0 = time.perf_counter()
    rows, curve_of = [], {}
    done = 0

    def one(job):
        try:
            return job, bench.run(job)
        except Exception as e:  # a compile error: recorded as a failed run
            return job, bench.failed(job, str(e))

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for job, (rs, cur) in pool.map(one, jobs):
            rows += rs
            done += 1
            t, o, lr, c, _, s = job
            if cur is not None:
                curve_of[(t.name, o, c or "fixed", lr, s)] = cur
            if done % 20 == 0 or done == len(jobs):
                print(f"convergence: {done}/{len(jobs)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0

    fields = list(rows[0].keys())
    with open(os.path.join(args.out, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    cnames = list(controllers)
    summary = summarize(rows, grids, starts, cnames)
    ovh = overhead(rows, cnames)
    cfg = {"seeds": len(seeds)}
    md = markdown(summary, cnames, starts, ovh, cfg)
    md += f"\nRuns: {len(jobs)}; wall time {wall:.0f} s ({args.jobs} at once).\n"
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(md)

    # curves of the first seed: every GeN start and the best fixed lr of the long budget
    plot_data = {"controllers": cnames, "tasks": {}}
    for s in summary:
        if s["budget"] != "long":
            continue
        entry = {}
        best = curve_of.get((s["task"], s["optimizer"], "fixed", s["best_lr"], seeds[0]))
        if best:
            entry[f"fixed lr {s['best_lr']:g}"] = best
        for c in cnames:
            for lr in starts[s["optimizer"]]:
                cur = curve_of.get((s["task"], s["optimizer"], c, lr, seeds[0]))
                if cur:
                    entry[f"{c} lr0 {lr:g}"] = cur
        plot_data["tasks"].setdefault(s["task"], {})[s["optimizer"]] = entry
    with open(os.path.join(args.out, "curves.json"), "w") as f:
        json.dump(plot_data, f)
    try:
        png = plot(args.out)
        print(f"convergence: wrote {png}")
    except ImportError:
        print("convergence: matplotlib is not importable here: no convergence.png (draw it with "
              "`PYTHON_WITH_MATPLOTLIB scripts/convergence.py --plot-only --out DIR`); each run's "
              "own lr.png / loss.png are in runs/", file=sys.stderr)
    print(md)
    print(f"convergence: wrote {args.out}/runs.csv, summary.md, curves.json; wall time {wall:.0f} s")

    diverged = [r for r in rows if r["diverged"]]
    for r in diverged:
        print(f"convergence: DIVERGED {r['task']} {r['optimizer']} {r['mode']} lr0 {r['lr0']:g} "
              f"seed {r['seed']} {r['budget']}" + (f": {r['error']}" if r["error"] else ""), file=sys.stderr)
    for s in summary:
        if s["edge"] and not args.quick:
            print(f"convergence: note: best fixed lr of {s['task']} {s['optimizer']} {s['budget']} "
                  f"is at the edge of the grid ({s['best_lr']:g})", file=sys.stderr)
    if args.quick:
        bad = [r for r in rows if r["failed"] or r["diverged"] or not r["val_loss"] < r["first_train_loss"]]
        for r in bad:
            print(f"convergence: FAIL {r['task']} {r['optimizer']} {r['mode']} lr0 {r['lr0']:g} {r['budget']}: "
                  f"val loss {r['val_loss']} vs first train loss {r['first_train_loss']} {r['error']}",
                  file=sys.stderr)
        if bad:
            return 1
        print("convergence: quick check passed (every run completed, none diverged, every loss fell)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
