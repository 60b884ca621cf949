"""Student models."""

from .msa_cnn import MSACNN, MSACNNConfig, config_for_budget, count_macs, count_parameters, equalize_activations

# kind (checkpoint.json's model.kind, the manifest's model.architecture) -> (model class, its config class)
STUDENTS = {"msa_cnn": (MSACNN, MSACNNConfig)}


def student_kind(model) -> str:
    """The registry name of a student model."""
    for kind, (cls, _) in STUDENTS.items():
        if isinstance(model, cls):
            return kind
    raise ValueError(f"{type(model).__name__} is not a registered student model")


__all__ = ["MSACNN", "MSACNNConfig", "STUDENTS", "config_for_budget", "count_macs", "count_parameters",
           "equalize_activations", "student_kind"]
