"""edgekit-exporters: torch models to deployable files, each verified numerically before it is written."""

from .onnx_export import export_onnx
from .verify import ExportMismatch, Tolerance, verify_logits

__version__ = "0.1.0"
__all__ = ["ExportMismatch", "Tolerance", "export_onnx", "verify_logits"]
