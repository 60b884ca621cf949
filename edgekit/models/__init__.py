"""Student models."""

from .msa_cnn import MSACNN, MSACNNConfig, count_parameters

__all__ = ["MSACNN", "MSACNNConfig", "count_parameters"]
