"""Compares ONNX Runtime outputs of the ONNX backend node tests with those of gen-compile's
exports of the same models (written by tests/onnx_backend_roundtrip.rs), for every case,
sequence and optional inputs/outputs included.

    python backend_compare.py CORPUS_DIR EXPORTED_DIR  ->  one JSON summary line on stdout

A case counts when onnxruntime itself passes it (its outputs match the corpus's expected
outputs, rtol 1e-3 / atol 1e-7); it passes the round trip when our export's outputs are
identical to the original's.
"""
import glob
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def load_value(path, type_proto):
    kind = type_proto.WhichOneof("value")
    with open(path, "rb") as f:
        data = f.read()
    if kind == "sequence_type":
        p = onnx.SequenceProto()
        p.ParseFromString(data)
        return numpy_helper.to_list(p)
    if kind == "optional_type":
        p = onnx.OptionalProto()
        p.ParseFromString(data)
        return numpy_helper.to_optional(p)
    p = onnx.TensorProto()
    p.ParseFromString(data)
    return numpy_helper.to_array(p)


def same(a, b, exact):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            same(x, y, exact) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if exact:
        if a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fc":
            return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
        return bool(np.all(a == b))
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        try:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=1e-3, atol=1e-7)
            return True
        except AssertionError:
            return False
    return bool(np.all(a == b))


def run(model_bytes, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    s = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def main(corpus, exported):
    counted = passed = ort_fails = 0
    failures = []
    for case in sorted(os.listdir(corpus)):
        src = os.path.join(corpus, case, "model.onnx")
        ours = os.path.join(exported, case, "model.onnx")
        data = os.path.join(corpus, case, "test_data_set_0")
        if not os.path.isfile(src) or not os.path.isdir(data):
            continue
        try:
            model = onnx.load(src)
            inits = {t.name for t in model.graph.initializer}
            ins = [i for i in model.graph.input if i.name not in inits]
            feeds = {}
            for k, path in enumerate(sorted(glob.glob(os.path.join(data, "input_*.pb")),
                                        key=lambda p: int(p.rsplit("_", 1)[1][:-3]))):
                feeds[ins[k].name] = load_value(path, ins[k].type)
            expected = [load_value(p, model.graph.output[k].type) for k, p in enumerate(
                sorted(glob.glob(os.path.join(data, "output_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1][:-3])))]
            reference = run(model.SerializeToString(), feeds)
            if len(reference) != len(expected) or not all(
                    same(r, e, False) for r, e in zip(reference, expected)):
                raise ValueError("onnxruntime fails the case")
        except Exception:
            ort_fails += 1
            continue
        counted += 1
        if not os.path.isfile(ours):
            failures.append(f"{case}: not exported")
            continue
        try:
            with open(ours, "rb") as f:
                got = run(f.read(), feeds)
        except Exception as e:  # noqa: BLE001 - any rejection is a failure to report
            failures.append(f"{case}: onnxruntime rejects our export: {str(e)[:200]}")
            continue
        if len(got) == len(reference) and all(same(g, r, True) for g, r in zip(got, reference)):
            passed += 1
        else:
            failures.append(f"{case}: outputs differ")
    print(json.dumps({"counted": counted, "passed": passed, "ort_fails": ort_fails,
                      "failures": failures}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
