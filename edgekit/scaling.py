"""Scaling laws for the student: L(X) = E + A·X^(-alpha) fitted to test error, with intervals from the seeds.

X is the parameter count N (or the number of training windows D). The fit is least squares on the per-size
mean error over seeds; its interval comes from a bootstrap that redraws the seeds of every size with
replacement and refits, so it reflects how much the measured errors move from seed to seed.
"""

from __future__ import annotations

import warnings

import numpy as np

BOOTSTRAP = 400
LEVEL = 0.9  # two-sided interval level


def power_law(x, e, a, alpha):
    return e + a * np.power(x, -alpha)


def _fit_means(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    """(E, A, alpha) for mean errors `y` at sizes `x`, or None when the fit does not converge."""
    from scipy.optimize import OptimizeWarning, curve_fit

    x0 = x / x.min()  # scale so A stays near the error's range whatever the sizes are
    spread = max(float(y.max() - y.min()), 1e-3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (e, a, alpha), _ = curve_fit(power_law, x0, y, p0=(max(float(y.min()) - 0.01, 0.0), spread, 0.5),
                                         bounds=([0.0, 0.0, 0.0], [1.0, 10.0, 4.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return float(e), float(a) * float(x.min()) ** float(alpha), float(alpha)  # back to unscaled x


def fit(points: list[tuple[float, float, int]], predict_at=(), seed: int = 0) -> dict | None:
    """Fit to `points` = [(size, error, seed), ...] (several seeds per size). Returns the point estimate of
    E, A, alpha with bootstrap intervals, and predictions (with intervals) at `predict_at`; None with fewer
    than three distinct sizes (three parameters)."""
    sizes = np.array(sorted({p[0] for p in points}), dtype=float)
    if len(sizes) < 3:
        return None
    by_size = [np.array([p[1] for p in points if p[0] == s], dtype=float) for s in sizes]
    means = np.array([b.mean() for b in by_size])
    best = _fit_means(sizes, means)
    if best is None:
        return None
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        y = np.array([rng.choice(b, size=len(b)).mean() for b in by_size])
        f = _fit_means(sizes, y)
        if f is not None:
            draws.append(f)
    draws = np.array(draws)
    lo, hi = (1 - LEVEL) / 2 * 100, (1 + LEVEL) / 2 * 100

    def interval(values):
        return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]

    grid = np.geomspace(sizes[0], sizes[-1] * 4, 40)  # the curve's interval, for plots
    curves = power_law(grid[:, None], draws[:, 0], draws[:, 1], draws[:, 2])
    band = [[float(x), float(np.percentile(c, lo)), float(np.percentile(c, hi))] for x, c in zip(grid, curves)]
    at = np.asarray(list(predict_at), dtype=float)
    predictions = []
    for x in at:
        curve = power_law(x, draws[:, 0], draws[:, 1], draws[:, 2])
        predictions.append({"size": float(x), "error": float(power_law(x, *best)), "interval": interval(curve)})
    return {
        "E": best[0], "A": best[1], "alpha": best[2],
        "E_interval": interval(draws[:, 0]), "alpha_interval": interval(draws[:, 2]), "level": LEVEL,
        "bootstrap_fits": int(len(draws)),
        "measured": [{"size": float(s), "error": float(m), "seeds": len(b), "std": float(b.std())}
                     for s, m, b in zip(sizes, means, by_size)],
        "predictions": predictions,
        "band": band,  # [size, low, high] of the fitted curve's interval
    }


def predict(f: dict, x: float) -> float:
    return float(power_law(x, f["E"], f["A"], f["alpha"]))


def pareto_front(rows: list[dict], minimise=("parameters", "latency_ms"), maximise=("accuracy",)) -> list[bool]:
    """For each row: True when no other row is at least as good in every objective and better in one."""
    def key(r):
        return [r[k] for k in minimise] + [-r[k] for k in maximise]

    keys = [key(r) for r in rows]
    out = []
    for i, a in enumerate(keys):
        dominated = any(all(b[j] <= a[j] for j in range(len(a))) and any(b[j] < a[j] for j in range(len(a)))
                        for k, b in enumerate(keys) if k != i)
        out.append(not dominated)
    return out
