"""Deterministic splits. `random` stratifies by class; `group` holds out whole groups (recordings, subjects,
files, or a library's own test split) for out-of-distribution evaluation."""

from __future__ import annotations

import numpy as np

from edgekit_runtime.errors import UserError

from .windows import WindowSet

SPLIT_METHODS = ("random", "group")


def _stratified(labels: np.ndarray | None, n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices (into 0..n-1) of a `fraction` sample, drawn per class so class balance is kept."""
    if fraction <= 0 or n == 0:
        return np.empty(0, np.int64)
    strata = [np.arange(n)] if labels is None else [np.flatnonzero(labels == k) for k in np.unique(labels)]
    picked = []
    for idx in strata:
        k = int(round(fraction * len(idx)))
        if len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)  # every class seen on both sides when it has two or more windows
        picked.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picked))


def split_dataset(ds: WindowSet, method: str = "random", seed: int = 0, val: float = 0.2, test: float = 0.2,
                  test_groups: list[str] | None = None) -> tuple[WindowSet, WindowSet, WindowSet]:
    """(train, val, test), the same for the same seed.

    random: stratified `test` then `val` fractions of all windows.
    group:  test is every window of `test_groups` (or, when not given, of a seeded draw of whole groups
            covering about `test` of the windows); val is a stratified `val` fraction of the rest.
    """
    if method not in SPLIT_METHODS:
        raise UserError(f"unknown split method {method!r}; allowed: {', '.join(SPLIT_METHODS)}")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise UserError(f"split fractions must be in [0, 1) with val + test < 1, got val={val}, test={test}")
    rng = np.random.default_rng(seed)
    n = len(ds)
    if method == "random":
        test_idx = _stratified(ds.labels, n, test, rng)
    else:
        if ds.groups is None:
            raise UserError(f"{ds.name}: no groups recorded, so a grouped split is not possible")
        names = sorted(set(ds.groups.tolist()))
        if test_groups is None:
            if len(names) < 2:
                raise UserError(f"{ds.name}: a grouped split needs at least two groups, found {names}")
            order = rng.permutation(names)
            sizes = np.array([np.sum(ds.groups == g) for g in order])
            k = max(1, min(len(names) - 1, int(np.searchsorted(np.cumsum(sizes), test * n) + 1)))
            test_groups = sorted(order[:k].tolist())
        unknown = sorted(set(test_groups) - set(names))
        if unknown:
            raise UserError(f"{ds.name}: unknown group(s) {unknown}; groups are {names}")
        if set(test_groups) >= set(names):
            raise UserError(f"{ds.name}: all {len(names)} groups are test groups; leave at least one for "
                            "training")
        test_idx = np.flatnonzero(np.isin(ds.groups, test_groups))
    rest = np.setdiff1d(np.arange(n), test_idx)
    rest_labels = None if ds.labels is None else ds.labels[rest]
    val_idx = rest[_stratified(rest_labels, len(rest), val / (1 - test) if method == "random" else val, rng)]
    train_idx = np.setdiff1d(rest, val_idx)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise UserError(f"{ds.name}: split leaves an empty train or test set ({len(ds)} windows)")
    return ds.subset(train_idx), ds.subset(val_idx), ds.subset(test_idx)
