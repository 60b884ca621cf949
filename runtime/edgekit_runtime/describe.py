"""`edgekit info`: what a bundle holds, read without running it."""

from __future__ import annotations

from .engine import backend_for, backend_names, check_model, open_model
from .model_dir import load_bundle


def describe(bundle, trust: list[bytes] | None = None) -> dict:
    b = load_bundle(bundle, trust=trust)
    models = []
    for m in b.models:
        entry = {"file": m.name, "format": m.format, "precision": m.precision, "bytes": m.path.stat().st_size,
                 "verification": m.verification, "quantization": m.quantization}
        backend = backend_for(m.format)
        entry["backend"] = backend.name if backend else backend_names(m.format)
        if backend is not None:
            model = open_model(m)
            check_model(model, len(b.preprocessing.channels), b.preprocessing.window, len(b.classes),
                        f"{b.path}: {m.name}")
            entry.update(model.io())
        models.append(entry)
    return {
        "bundle": str(b.path),
        "models": models,
        "classes": list(b.classes),
        "preprocessing": b.preprocessing.to_json(),
        "model": b.manifest.get("model", {}),
        "eval_windows": (b.manifest.get("eval") or {}).get("windows"),
        "versions": b.manifest.get("versions", {}),
        "signer": b.signer,
    }


def format_description(d: dict) -> str:
    pre = d["preprocessing"]
    rows = []
    for m in d["models"]:
        rows.append(("model", f"{m['file']} ({m['bytes'] / 1024:.1f} KiB, {m['format']} {m['precision']}, "
                              f"runs on {m['backend']})"))
        rows += [("  input", f"{a['name']} {a['shape']} {a['type']}") for a in m.get("inputs", [])]
        rows += [("  output", f"{a['name']} {a['shape']} {a['type']}") for a in m.get("outputs", [])]
        rows += [(f"  verify {k.replace('_', ' ')}", v) for k, v in m["verification"].items()]
        q = m.get("quantization")
        if q:
            why = f" (PTQ refused: {q['ptq_refused']})" if q.get("ptq_refused") else ""
            rows.append(("  quantized by", f"{q['method'].upper()}{why}"))
    steps = []
    if "resample" in pre:
        steps.append(f"resample (max gap {pre['resample']['max_gap_s']:g} s)")
    if "filter" in pre:
        f = pre["filter"]
        steps.append(f"{f['kind'] or 'IIR'} filter {'-'.join(f'{c:g}' for c in f['cutoff_hz'])} Hz, order {f['order']}")
    if pre.get("detrend", "none") != "none":
        steps.append(f"detrend {pre['detrend']}")
    steps.append(f"normalize {pre['normalize']}")
    rows += [
        ("classes", ", ".join(d["classes"])),
        ("channels", ", ".join(pre["channels"])),
        ("window", f"{pre['window']} samples at {pre['sampling_rate']:g} Hz, stride {pre['stride']}"),
        ("preprocessing", ", ".join(steps)),
        *[(k.replace("_", " "), v) for k, v in d["model"].items() if k not in ("file", "bytes")],
    ]
    if d["eval_windows"]:
        rows.append(("eval windows", d["eval_windows"]))
    rows.append(("signed by", d["signer"] or "nobody (unsigned)"))
    width = max(len(k) for k, _ in rows) + 2
    return "\n".join(f"{k:<{width}}{v}" for k, v in rows)
