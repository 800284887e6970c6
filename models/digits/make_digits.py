"""Splits the digits data of the GeN reference fixture (scikit-learn digits, pixels / 16) into
the files gen-train reads: arrays named after the model's inputs (`input`) and the labels
input gen-compile adds (`labels`).

    .venv/bin/python models/digits/make_digits.py ../shared/fixtures/gen_reference/setup.npz
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
src = np.load(sys.argv[1])
np.savez(os.path.join(HERE, "train.npz"), input=src["Xtr"].astype(np.float32), labels=src["ytr"].astype(np.int64))
np.savez(os.path.join(HERE, "val.npz"), input=src["Xte"].astype(np.float32), labels=src["yte"].astype(np.int64))
