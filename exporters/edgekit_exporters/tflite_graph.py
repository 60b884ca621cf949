"""Edits of a converted .tflite flatbuffer: compact tensor names, and int8 inputs/outputs on request.

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


def _int8_twin(graph, index: int, scale: float, zero: int) -> int:
    """A new int8 tensor with the shape of tensor `index` and the given quantisation; returns its index."""
    src = graph.tensors[index]
    t = schema.TensorT()
    t.shape, t.shapeSignature = list(src.shape), None if src.shapeSignature is None else list(src.shapeSignature)
    t.type, t.buffer = schema.TensorType.INT8, 0  # buffer 0 is the empty one: computed at run time
    t.quantization = schema.QuantizationParametersT()
    t.quantization.scale, t.quantization.zeroPoint = [float(scale)], [int(zero)]
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _wrap_int8_io(model, input_q: tuple[float, int], output_q: tuple[float, int]) -> None:
    """int8 input and output, each (scale, zero point): a DEQUANTIZE op feeds the float input, a QUANTIZE op
    reads the float output."""
    graph = model.subgraphs[0]
    remap = {}
    (i,), (o,) = graph.inputs, graph.outputs
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs = _opcode(model, schema.BuiltinOperator.DEQUANTIZE), [_int8_twin(graph, i, *input_q)]
    op.outputs = [i]
    graph.operators.insert(0, op)
    graph.inputs[0] = remap[i] = op.inputs[0]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs = _opcode(model, schema.BuiltinOperator.QUANTIZE), [o]
    op.outputs = [_int8_twin(graph, o, *output_q)]
    graph.operators.append(op)
    graph.outputs[0] = remap[o] = op.outputs[0]
    for signature in model.signatureDefs or []:
        for tensor_map in [*(signature.inputs or []), *(signature.outputs or [])]:
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)


def finish_tflite(content: bytes, int8_io: tuple[tuple[float, int], tuple[float, int]] | None = None) -> bytes:
    """The model with compact tensor names ("windows", "logits" for input and output; none elsewhere) and,
    with `int8_io` ((scale, zero point) of the input and of the output), int8 input and output."""
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    if int8_io is not None:
        _wrap_int8_io(model, *int8_io)
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
