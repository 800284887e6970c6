#!/usr/bin/env python3
"""Builds the models and data of the convergence benchmark (scripts/convergence.sh) besides the
digits MLP (models/digits): one folder per task with model.onnx, train.npz and val.npz.

    /work/torch-venv/bin/python models/convergence/make_tasks.py

- cnn/: the digits of models/digits as 1x8x8 images; two 3x3 convolutions (the second with
  stride 2), ReLU, a linear classifier over 10 classes. Cross-entropy.
- regression/: scikit-learn's diabetes data (442 patients, 10 features), features and target
  standardised with the training split's statistics; an MLP 10-32-32-1. MSE.
- charlm/: a character-level decoder transformer (2 layers, width 32, 2 heads, causal
  attention, context 32) predicting the next byte of Python source text: the standard library's
  own *.py files (the Python running this script), ASCII bytes, windows at random offsets,
  training windows from the first 90 % of the text and validation windows from the rest.
  Cross-entropy over the 128 byte values at every position.

Models are exported with the TorchScript exporter (opset 17, no constant folding), weights are
PyTorch's default initialisation under a fixed seed, so the files are reproducible for one torch
version. Needs torch, onnx, numpy and scikit-learn.
"""
import glob
import os
import sysconfig

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "digits")


def export(model, example, path, input_names, output_name):
    model.train()
    names = input_names + [output_name]
    torch.onnx.export(
        model, (example,), path, dynamo=False, opset_version=17,
        training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
        input_names=input_names, output_names=[output_name],
        dynamic_axes={n: {0: "batch"} for n in names},
    )


def save(folder, name, **arrays):
    np.savez_compressed(os.path.join(folder, name), **arrays)


def folder(name):
    path = os.path.join(HERE, name)
    os.makedirs(path, exist_ok=True)
    return path


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(x.flatten(1))


def make_cnn():
    out = folder("cnn")
    for split in ("train", "val"):
        d = np.load(os.path.join(DIGITS, f"{split}.npz"))
        save(out, f"{split}.npz", input=d["input"].reshape(-1, 1, 8, 8).astype(np.float32),
             labels=d["labels"].astype(np.int64))
    torch.manual_seed(1)
    export(Cnn(), torch.zeros(2, 1, 8, 8), os.path.join(out, "model.onnx"), ["input"], "logits")


def make_regression():
    from sklearn.datasets import load_diabetes
    out = folder("regression")
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    tr, va = order[:352], order[352:]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    ymu, ysd = y[tr].mean(), y[tr].std()
    for split, idx in (("train", tr), ("val", va)):
        save(out, f"{split}.npz", input=((x[idx] - mu) / sd).astype(np.float32),
             labels=((y[idx] - ymu) / ysd).astype(np.float32).reshape(-1, 1))
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    export(model, torch.zeros(2, 10), os.path.join(out, "model.onnx"), ["input"], "pred")


CONTEXT, VOCAB, WIDTH, HEADS, LAYERS = 32, 128, 32, 2, 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.qkv, self.proj = nn.Linear(WIDTH, 3 * WIDTH), nn.Linear(WIDTH, WIDTH)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.ReLU(), nn.Linear(2 * WIDTH, WIDTH))
        # bool, so gen-compile does not train it
        self.register_buffer("causal", torch.ones(CONTEXT, CONTEXT).tril().bool())

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=2)
        hd = WIDTH // HEADS
        q, k, v = (z.reshape(b, t, HEADS, hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(2, 3)) * (hd ** -0.5)
        att = att.masked_fill(~self.causal, -1e4).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.ff(self.ln2(x))


class CharLm(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(CONTEXT, WIDTH) * 0.02)
        self.blocks = nn.Sequential(*[Block() for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        return self.head(self.ln(self.blocks(self.tok(tokens) + self.pos)))


def stdlib_text(limit=400_000):
    """ASCII bytes of the standard library's top-level *.py files, in name order, up to `limit`."""
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    data = b"".join(open(f, "rb").read() for f in files)[:limit]
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    arr[arr >= VOCAB] = ord("?")
    return arr


def windows(text, count, rng):
    starts = rng.integers(0, len(text) - CONTEXT - 1, size=count)
    seq = np.stack([text[s:s + CONTEXT + 1] for s in starts])
    return seq[:, :-1].copy(), seq[:, 1:].copy()


def make_charlm():
    out = folder("charlm")
    text = stdlib_text()
    cut = int(len(text) * 0.9)
    rng = np.random.default_rng(3)
    for split, part, count in (("train", text[:cut], 1024), ("val", text[cut:], 256)):
        x, y = windows(part, count, rng)
        save(out, f"{split}.npz", tokens=x, labels=y)
    torch.manual_seed(3)
    export(CharLm(), torch.zeros(2, CONTEXT, dtype=torch.int64), os.path.join(out, "model.onnx"),
           ["tokens"], "logits")


if __name__ == "__main__":
    make_cnn()
    make_regression()
    make_charlm()
