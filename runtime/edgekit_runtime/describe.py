"""`edgekit info`: what a model directory holds, read without running it."""

from __future__ import annotations

from .engine import OnnxModel
from .model_dir import load_model_dir


def describe(model_dir) -> dict:
    md = load_model_dir(model_dir)
    model = OnnxModel(md.model_file)
    io = lambda args: [{"name": a.name, "shape": a.shape, "type": a.type} for a in args]  # noqa: E731
    return {
        "model_dir": str(md.path),
        "model_file": md.model_file.name,
        "model_bytes": md.model_file.stat().st_size,
        "inputs": io(model.session.get_inputs()),
        "outputs": io(model.session.get_outputs()),
        "classes": list(md.classes),
        "preprocessing": md.preprocessing.to_json(),
        "model": md.manifest.get("model", {}),
        "verification": md.manifest.get("verification", {}),
    }


def format_description(d: dict) -> str:
    pre = d["preprocessing"]
    rows = [
        ("model", f"{d['model_file']} ({d['model_bytes'] / 1024:.1f} KiB)"),
        *[("input", f"{a['name']} {a['shape']} {a['type']}") for a in d["inputs"]],
        *[("output", f"{a['name']} {a['shape']} {a['type']}") for a in d["outputs"]],
        ("classes", ", ".join(d["classes"])),
        ("channels", ", ".join(pre["channels"])),
        ("window", f"{pre['window']} samples at {pre['sampling_rate']:g} Hz, stride {pre['stride']}, "
                   f"normalize {pre['normalize']}"),
        *[(k.replace("_", " "), v) for k, v in d["model"].items() if k not in ("file", "bytes")],
        *[(f"verify {k.replace('_', ' ')}", v) for k, v in d["verification"].items()],
    ]
    return "\n".join(f"{k:<24}{v}" for k, v in rows)
