"""Second-order-section IIR filtering with state carried across chunks.

Filters are designed on the compile side (scipy) and stored as coefficients, so the board needs no scipy:
`sos` is the scipy layout `[n_sections, 6]` = (b0, b1, b2, a0, a1, a2) with a0 = 1, and `zi` the per-section
steady-state response to a unit step (scipy.signal.sosfilt_zi). A segment starts from `zi * first sample`,
as if the signal had been constant before it, so no start-up transient reaches the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True, eq=False)
class IIRFilter:
    sos: np.ndarray  # [n_sections, 6] float64
    zi: np.ndarray  # [n_sections, 2] float64
    kind: str = ""  # what it was designed as, for display: "highpass", "bandpass", ...
    cutoff_hz: tuple[float, ...] = ()
    order: int = 0

    def __post_init__(self):
        sos, zi = np.asarray(self.sos, np.float64), np.asarray(self.zi, np.float64)
        if sos.ndim != 2 or sos.shape[1] != 6 or len(sos) == 0 or zi.shape != (len(sos), 2):
            raise UserError(f"filter: expected sos [n, 6] and zi [n, 2], got {list(sos.shape)} and {list(zi.shape)}")
        if not (np.isfinite(sos).all() and np.isfinite(zi).all()) or not np.allclose(sos[:, 3], 1.0):
            raise UserError("filter: coefficients must be finite with a0 = 1 in every section")
        object.__setattr__(self, "sos", np.ascontiguousarray(sos))
        object.__setattr__(self, "zi", np.ascontiguousarray(zi))

    def initial_state(self, first: np.ndarray) -> np.ndarray:
        """Filter state `[n_sections, C, 2]` for a signal that was constant at `first` `[C]` before it began."""
        return np.ascontiguousarray(self.zi[:, None, :] * np.asarray(first, np.float64)[None, :, None])

    def apply_windows(self, windows: np.ndarray) -> np.ndarray:
        """Filter each `[C, T]` window on its own, from the steady state of its first sample."""
        from .kernels import sosfilt

        out = np.empty(windows.shape, np.float32)
        for i, w in enumerate(windows):
            x = np.ascontiguousarray(w.T, dtype=np.float64)
            out[i] = sosfilt(x, self.sos, self.initial_state(x[0])).T
        return out

    def to_json(self) -> dict:
        return {"kind": self.kind, "cutoff_hz": list(self.cutoff_hz), "order": self.order,
                "sos": self.sos.tolist(), "zi": self.zi.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "IIRFilter":
        try:
            return cls(np.asarray(d["sos"], np.float64), np.asarray(d["zi"], np.float64), str(d.get("kind", "")),
                       tuple(float(v) for v in d.get("cutoff_hz", ())), int(d.get("order", 0)))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"invalid filter settings: {type(e).__name__}: {e}") from None
