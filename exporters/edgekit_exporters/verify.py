"""Numerical verification of an exported model against the torch model it came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit_runtime.errors import UserError


class ExportMismatch(UserError):
    """The exported model does not compute what the torch model computes, within tolerance."""


@dataclass(frozen=True)
class Tolerance:
    """What an export must meet on held-out windows. None switches a check off.

    Float exports must reproduce the logits; int8 cannot (quantisation moves logits by a few percent of their
    range), so it is held to argmax agreement and accuracy instead.
    """

    max_abs_diff: float | None = 1e-4  # on logits
    min_agreement: float = 1.0  # share of windows with the same argmax as torch
    max_accuracy_drop: float | None = None  # accuracy points (0..1) the export may lose against torch
    # held-out windows the export may lose whatever max_accuracy_drop says: on a few dozen windows 0.02 is less than
    # one window, and a single near-tie flipped by rounding would refuse the export (the agreement check still holds)
    drop_windows: int = 0

    def merged(self, **overrides) -> "Tolerance":
        """This tolerance with the given fields replaced; None values leave a field as it is. An accuracy drop
        given here is taken literally (no allowance in windows)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "max_accuracy_drop" in given:
            given.setdefault("drop_windows", 0)
        return Tolerance(**{**self.__dict__, **given})

    def allowed_drop(self, windows: int) -> float | None:
        """The accuracy drop allowed on `windows` held-out windows (None: not checked)."""
        if self.max_accuracy_drop is None:
            return None
        return max(self.max_accuracy_drop, self.drop_windows / max(1, windows))

    def failures(self, metrics: dict) -> list[str]:
        """What `metrics` (of verify_logits) break of this tolerance; empty when within it."""
        diff, failures = metrics["max_abs_diff"], []
        if not np.isfinite(diff):
            failures.append("non-finite outputs")
        if self.max_abs_diff is not None and diff > self.max_abs_diff:
            failures.append(f"max abs diff {diff:.3g} > {self.max_abs_diff:g}")
        if metrics["argmax_agreement"] < self.min_agreement:
            failures.append(f"argmax agreement {metrics['argmax_agreement']:.4f} < {self.min_agreement:g}")
        drop = self.drop_failure(-metrics.get("accuracy_delta", 0.0), metrics["windows"])
        if drop:
            failures.append(drop)
        return failures

    def drop_failure(self, drop: float, windows: int) -> str | None:
        """"accuracy drop D > ALLOWED" when losing `drop` accuracy on `windows` held-out windows is beyond this
        tolerance; None when within it."""
        allowed = self.allowed_drop(windows)
        # 1e-9: a drop of exactly the tolerance (0.79 - 0.77 in floating point is 0.0200000...02) is within it
        if allowed is not None and drop > allowed + 1e-9:
            return f"accuracy drop {drop:.4f} > {allowed:.4g}"
        return None


DEFAULT_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-4, min_agreement=1.0),
    # fp16 weights: logits move by ~1e-3; allow one flipped near-tie in a few hundred windows
    "fp16": Tolerance(max_abs_diff=2e-2, min_agreement=0.99, max_accuracy_drop=0.01),
    "int8": Tolerance(max_abs_diff=None, min_agreement=0.95, max_accuracy_drop=0.02, drop_windows=2),
}


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
    failures = tolerance.failures(metrics)
    if failures:
        raise ExportMismatch(f"{what} does not match torch on {len(reference)} held-out windows: "
                             f"{'; '.join(failures)}; nothing written")
    return metrics
