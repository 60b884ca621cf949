"""Numerical verification of an exported model against the torch model it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit_runtime.errors import UserError


class ExportMismatch(UserError):
    """The exported model does not compute what the torch model computes, within tolerance."""


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float = 1e-4  # on logits
    min_agreement: float = 1.0  # share of windows with the same argmax


def verify_logits(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray | None = None,
                  tolerance: Tolerance = Tolerance(), what: str = "export") -> dict:
    """Compare logits `[N, K]`; return the metrics, or raise ExportMismatch when outside `tolerance`."""
    if reference.shape != exported.shape:
        raise ExportMismatch(f"{what}: output shape {list(exported.shape)} differs from torch {list(reference.shape)}")
    diff = float(np.abs(reference.astype(np.float64) - exported).max()) if reference.size else 0.0
    ref_pred, exp_pred = reference.argmax(1), exported.argmax(1)
    metrics = {"windows": int(len(reference)), "max_abs_diff": diff,
               "argmax_agreement": float((ref_pred == exp_pred).mean()) if len(reference) else 1.0}
    if labels is not None and len(labels):
        metrics["accuracy_torch"] = float((ref_pred == labels).mean())
        metrics["accuracy_exported"] = float((exp_pred == labels).mean())
        metrics["accuracy_delta"] = metrics["accuracy_exported"] - metrics["accuracy_torch"]
    if not np.isfinite(diff) or diff > tolerance.max_abs_diff or metrics["argmax_agreement"] < tolerance.min_agreement:
        raise ExportMismatch(
            f"{what} does not match torch: max abs diff {diff:.3g} (tolerance {tolerance.max_abs_diff:g}), "
            f"argmax agreement {metrics['argmax_agreement']:.4f} (needs {tolerance.min_agreement:g}); nothing written")
    return metrics
