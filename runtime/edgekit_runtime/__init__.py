"""edgekit-runtime: run edgekit models on the board with numpy, numba and onnxruntime (never torch)."""

__version__ = "0.1.0"
