"""edgekit-exporters: torch models to deployable files, each verified numerically before it is written."""

from .calibration import calibration_windows
from .formats import PRECISIONS, export_model, model_filename, op_histogram
from .onnx_export import export_onnx
from .verify import DEFAULT_TOLERANCES, ExportMismatch, Tolerance, verify_logits

__version__ = "0.1.0"
__all__ = ["DEFAULT_TOLERANCES", "ExportMismatch", "PRECISIONS", "Tolerance", "calibration_windows", "export_model",
           "export_onnx", "model_filename", "op_histogram", "verify_logits"]
