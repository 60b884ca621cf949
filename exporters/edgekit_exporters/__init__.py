"""edgekit-exporters: torch models to deployable files, each verified numerically before it is written."""

import importlib

__version__ = "0.1.0"

# name -> submodule, imported on first use: the command line reads the format registry (formats.FORMATS) at
# start, and importing the package must not pull in torch, onnx or litert for that
_MODULES = {"DEFAULT_TOLERANCES": "verify", "ExportMismatch": "verify", "PRECISIONS": "formats", "Tolerance": "verify",
            "calibration_windows": "calibration", "export_model": "formats", "export_onnx": "onnx_export",
            "model_filename": "formats", "op_histogram": "formats", "verify_logits": "verify"}
__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
