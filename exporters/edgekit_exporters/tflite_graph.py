"""Edits of a converted .tflite flatbuffer: compact tensor names, and float inputs/outputs around an int8 graph.

litert-torch names every tensor after the full module path of the op that made it: for a 10k-parameter student
that is ~18 KiB of strings, more than its int8 weights. The interpreter needs none of them; the input and
output are named "windows" and "logits" as in the ONNX export.
"""

from __future__ import annotations

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

INPUT_NAME, OUTPUT_NAME = "windows", "logits"


def _opcode(model, builtin: int) -> int:
    """Index of `builtin` in the model's operator codes, added when absent."""
    for i, code in enumerate(model.operatorCodes):
        if flatbuffer_utils.get_builtin_code_from_operator_code(code) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 2  # int8 <-> float32
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(graph, index: int) -> int:
    """A new float32 tensor with the shape of tensor `index`; returns its index."""
    src = graph.tensors[index]
    t = schema.TensorT()
    t.shape, t.shapeSignature = list(src.shape), None if src.shapeSignature is None else list(src.shapeSignature)
    t.type, t.buffer = schema.TensorType.FLOAT32, 0  # buffer 0 is the empty one: computed at run time
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _wrap_float_io(model) -> None:
    """Float32 input and output: a QUANTIZE op feeds the int8 input, a DEQUANTIZE op reads the int8 output."""
    graph = model.subgraphs[0]
    int8 = (schema.TensorType.INT8, schema.TensorType.UINT8)
    remap = {}
    for position, index in enumerate(graph.inputs):
        if graph.tensors[index].type in int8:
            new = _float_twin(graph, index)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = _opcode(model, schema.BuiltinOperator.QUANTIZE), [new], [index]
            graph.operators.insert(0, op)
            graph.inputs[position] = remap[index] = new
    for position, index in enumerate(graph.outputs):
        if graph.tensors[index].type in int8:
            new = _float_twin(graph, index)
            op = schema.OperatorT()
            op.opcodeIndex, op.inputs, op.outputs = _opcode(model, schema.BuiltinOperator.DEQUANTIZE), [index], [new]
            graph.operators.append(op)
            graph.outputs[position] = remap[index] = new
    for signature in model.signatureDefs or []:
        for tensor_map in [*(signature.inputs or []), *(signature.outputs or [])]:
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)


def finish_tflite(content: bytes, float_io: bool = False) -> bytes:
    """The model with compact tensor names ("windows", "logits" for input and output; none elsewhere) and,
    with `float_io`, float32 input/output around an int8 graph."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if float_io:
        _wrap_float_io(model)
    graph = model.subgraphs[0]
    for tensor in graph.tensors:
        tensor.name = None
    for indices, name in ((graph.inputs, INPUT_NAME), (graph.outputs, OUTPUT_NAME)):
        for i, index in enumerate(indices):
            graph.tensors[index].name = name if len(indices) == 1 else f"{name}_{i}"
    for signature in model.signatureDefs or []:
        for maps, name in ((signature.inputs or [], INPUT_NAME), (signature.outputs or [], OUTPUT_NAME)):
            for i, tensor_map in enumerate(maps):
                tensor_map.name = name if len(maps) == 1 else f"{name}_{i}"
    model.description, graph.name = None, None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
