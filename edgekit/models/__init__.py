"""Student models."""

from .msa_cnn import MSACNN, MSACNNConfig, config_for_budget, count_macs, count_parameters, equalize_activations

__all__ = ["MSACNN", "MSACNNConfig", "config_for_budget", "count_macs", "count_parameters", "equalize_activations"]
