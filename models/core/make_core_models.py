"""Builds the small hand-written models the compiler-core tests use (import/export round
trips, external data, subgraphs, unknown domains, shape-chain folding).

Run with the project venv:  .venv/bin/python models/core/make_core_models.py
Outputs sit beside this script and are committed; tests never regenerate them.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def save(model, name, **kw):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name), **kw)


def shape_chain():
    """x[batch, 4, 6] -> Reshape(x, Concat(Shape(x)[0], [24])) -> MatMul(W) -> relu.
    The batch is symbolic, so the chain's batch entry stays dynamic while the rest folds; a
    second chain on a static tensor folds completely."""
    W = numpy_helper.from_array(rng.standard_normal((24, 3)).astype(np.float32), "W")
    c = numpy_helper.from_array(np.zeros((2, 3), np.float32), "c")
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["sx", "i0"], ["b"], axis=0),
        helper.make_node("Constant", [], ["ax0"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Constant", [], ["n24"], value=numpy_helper.from_array(np.array([24], np.int64))),
        helper.make_node("Concat", ["b1", "n24"], ["shp"], axis=0),
        helper.make_node("Reshape", ["x", "shp"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Relu", ["mm"], ["y"]),
        # static chain: Shape(c) -> Slice -> ConstantOfShape: folds to a constant shape
        helper.make_node("Shape", ["c"], ["sc"]),
        helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Constant", [], ["s1"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("Slice", ["sc", "s0", "s1"], ["last"]),
        helper.make_node("ConstantOfShape", ["last"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("Add", ["y", "ones"], ["out"]),
    ]
    g = helper.make_graph(
        nodes,
        "shape_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
        [W, c],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "shape_chain.onnx")


def external_weights():
    """A two-layer MLP whose weights live in external data (external.onnx.data)."""
    W1 = numpy_helper.from_array(rng.standard_normal((16, 32)).astype(np.float32), "fc1.weight")
    b1 = numpy_helper.from_array(rng.standard_normal((32,)).astype(np.float32), "fc1.bias")
    W2 = numpy_helper.from_array(rng.standard_normal((32, 5)).astype(np.float32), "fc2.weight")
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.weight"], ["h"]),
        helper.make_node("Add", ["h", "fc1.bias"], ["hb"]),
        helper.make_node("Tanh", ["hb"], ["a"]),
        helper.make_node("MatMul", ["a", "fc2.weight"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes,
        "external_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        [W1, b1, W2],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    data = os.path.join(HERE, "external.onnx.data")
    if os.path.exists(data):
        os.remove(data)
    save(m, "external.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
         location="external.onnx.data", size_threshold=0)


def control_flow():
    """An If whose branches capture outer values, and an op of an unknown domain that is
    not on any path to the output (fine for --emit forward)."""
    then_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t_out"])],
        "then_branch", [], [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["e_out"])],
        "else_branch", [], [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)],
    )
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0.0, np.float32))),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(
        nodes,
        "control_flow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [two],
    )
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "control_flow.onnx")


def unknown_domain():
    """A node of domain com.example that ONNX Runtime does not know: import and --emit forward
    keep it (the model itself does not run on ORT)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Frobnicate", ["r"], ["y"], domain="com.example", strength=3),
    ]
    g = helper.make_graph(
        nodes,
        "unknown_domain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(m, os.path.join(HERE, "unknown_domain.onnx"))


def undefined_input():
    """Invalid on purpose: node 'uses_ghost' reads 'ghost', which nothing produces."""
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="uses_ghost")]
    g = helper.make_graph(
        nodes,
        "undefined_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(HERE, "bad_undefined_input.onnx"))


def cycle():
    """Invalid on purpose: 'loop_a' and 'loop_b' feed each other."""
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="loop_a"),
        helper.make_node("Relu", ["a"], ["b"], name="loop_b"),
    ]
    g = helper.make_graph(
        nodes,
        "cycle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(HERE, "bad_cycle.onnx"))


def local_function():
    """A model calling a model-local function (as torch's dynamo exporter can emit), with an
    attribute reference and a default: y = ScaledTanh(x @ W, alpha=2) with
    ScaledTanh(a; alpha, beta=0.5) = alpha * tanh(a) + beta."""
    fn = helper.make_function(
        "custom.fn",
        "ScaledTanh",
        ["a"],
        ["out"],
        [
            helper.make_node("Tanh", ["a"], ["t"]),
            helper.make_node("Constant", [], ["alpha_c"], value_float=0.0),
            helper.make_node("Constant", [], ["beta_c"], value_float=0.0),
            helper.make_node("Mul", ["t", "alpha_v"], ["scaled"]),
            helper.make_node("Add", ["scaled", "beta_v"], ["out"]),
        ],
        [helper.make_opsetid("", 18)],
        attributes=[],
    )
    # attribute references: Constant(value_float = @alpha), Constant(value_float = @beta)
    alpha = onnx.AttributeProto()
    alpha.name, alpha.ref_attr_name, alpha.type = "value_float", "alpha", onnx.AttributeProto.FLOAT
    beta = onnx.AttributeProto()
    beta.name, beta.ref_attr_name, beta.type = "value_float", "beta", onnx.AttributeProto.FLOAT
    del fn.node[1].attribute[:]
    fn.node[1].attribute.append(alpha)
    fn.node[1].output[0] = "alpha_v"
    del fn.node[2].attribute[:]
    fn.node[2].attribute.append(beta)
    fn.node[2].output[0] = "beta_v"
    fn.attribute.append("alpha")
    fn.attribute_proto.append(helper.make_attribute("beta", 0.5))
    W = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("ScaledTanh", ["h"], ["y"], domain="custom.fn", alpha=2.0, name="act"),
    ]
    g = helper.make_graph(
        nodes,
        "local_function",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [W],
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("custom.fn", 1)],
        functions=[fn],
    )
    save(m, "local_function.onnx")


if __name__ == "__main__":
    shape_chain()
    external_weights()
    control_flow()
    unknown_domain()
    undefined_input()
    local_function()
    cycle()
