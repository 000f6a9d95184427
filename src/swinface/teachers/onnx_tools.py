"""Small ONNX graph surgery shared by the converters: constant folding, input clean-up, batch."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator


def _evaluate_node(node: onnx.NodeProto, values: dict[str, np.ndarray], opset: int) -> list:
    """Run one node on constant inputs with ONNX's reference evaluator."""
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(values[name].dtype), None
        )
        for name in node.input
        if name
    ]
    outputs = [helper.make_tensor_value_info(name, 0, None) for name in node.output]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    run = ReferenceEvaluator(model)
    return run.run(None, {name: values[name] for name in node.input if name})


def fold_constants(model: onnx.ModelProto, ops: set[str]) -> onnx.ModelProto:
    """Replace every node of a type in `ops` whose inputs are all initializers by its result.

    Runs in graph order, so chains (DequantizeLinear, then Reshape) fold
    completely; the folded values are float32 initializers. Returns a new model.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type in ops and all(name in values for name in node.input if name):
            for name, value in zip(node.output, _evaluate_node(node, values, opset), strict=True):
                values[name] = np.asarray(value)
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(
        numpy_helper.from_array(value, name) for name, value in values.items() if name in used
    )
    return model


def drop_unused_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop graph inputs that no node reads, and inputs that only restate an initializer."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    constants = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name in used and i.name not in constants]
    del graph.input[:]
    graph.input.extend(keep)
    return model


def dynamic_batch(model: onnx.ModelProto, name: str = "N") -> onnx.ModelProto:
    """Make the first dimension of every graph input and output symbolic.

    Recorded intermediate shapes (value_info) carry the old fixed batch, so
    they are dropped; ONNX Runtime infers them again.
    """
    del model.graph.value_info[:]
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = name
    return model
