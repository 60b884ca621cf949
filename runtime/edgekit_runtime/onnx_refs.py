"""The external-data files an ONNX model names, read from its protobuf without the onnx package.

An ONNX tensor may keep its values in another file ("location"), which onnxruntime reads at load time: a
bundle must hash that file too, and a location outside the bundle must be refused whatever onnxruntime
version is installed. Only the messages that can hold tensors are walked (graphs, nodes, attributes,
functions, training info); big fields such as raw weights are skipped by their length.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

# message -> {field number: message type of that field} (onnx.proto)
_CHILDREN = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}
_MAX_NESTING = 64  # subgraphs inside subgraphs


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes, start: int, end: int):
    """(field number, (start, end) of its bytes) for each length-delimited field of a message."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > end:
                raise ValueError("truncated field")
            yield key >> 3, i, i + n
            i += n
        else:
            raise ValueError(f"unexpected wire type {wire}")
    if i != end:
        raise ValueError("truncated message")


def external_data(path: Path) -> list[str]:
    """Every external-data location named by the ONNX model at `path`."""
    buf = path.read_bytes()
    locations = []
    try:
        stack = [("model", 0, len(buf), 0)]
        while stack:
            kind, start, end, depth = stack.pop()
            if depth > _MAX_NESTING:
                raise ValueError("graphs nested too deeply")
            if kind == "entry":
                entry = {field: buf[a:b] for field, a, b in _fields(buf, start, end)}
                if entry.get(1) == b"location":
                    locations.append(entry.get(2, b"").decode("utf-8"))
                continue
            children = _CHILDREN[kind]
            for field, a, b in _fields(buf, start, end):
                if field in children:
                    stack.append((children[field], a, b, depth + 1))
    except (ValueError, IndexError) as e:  # UnicodeDecodeError is a ValueError
        raise UserError(f"{path}: not a valid ONNX model ({e})") from None
    return locations
