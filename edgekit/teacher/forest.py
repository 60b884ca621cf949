"""A second member of the distillation target: a random forest on summary statistics of each window.

The fine-tuned encoder learns what separates the classes from a few hundred labelled windows, and on some data misses
what simple statistics show: on PLAID (seed 0, all labels) a forest on per-channel amplitude statistics and spectral
band shares reads 0.872 on the test split where the encoder reads 0.836, and the mean of their class probabilities
0.892. Elsewhere the forest is the weaker member (GunPoint 0.85-0.89, JapaneseVowels 0.95, ACSF1 0.80 against
0.97-0.98 and 0.89) and an equal mix costs up to 5 points (ACSF1). So the forest's weight in the mix is chosen per
data set, by log-loss on the validation windows, and is 0 unless it lowers it by more than one standard error (it is
not used without validation windows). On the training windows the forest answers out of fold, each fold by a forest
fitted on the others, so its soft labels say what it makes of windows it has not seen rather than repeat the labels
it memorised.
"""

from __future__ import annotations

import numpy as np

WEIGHTS = (0.0, 0.125, 0.25, 0.375, 0.5)  # the forest's share of the mixed class probabilities
TREES = 300
BANDS = 8
FOLDS = 5


def window_statistics(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """[N, C, T] windows (observed where `mask` [N, T]) -> [N, C·(11 + BANDS) + 1]: per channel the mean, standard
    deviation, minimum, maximum, 5 quantiles, mean and spread of the first difference, and the share of the spectrum's
    energy in BANDS equal bands; then the observed length."""
    observed = np.full(len(values), values.shape[2]) if mask is None else mask.sum(1)
    out = np.zeros((len(values), values.shape[1] * (11 + BANDS) + 1))
    for n in np.unique(observed):  # windows with as many observed samples are summarised together
        group = np.flatnonzero(observed == n)
        v = values[group].astype(np.float64)
        if mask is not None:  # the observed samples of each window, in order
            v = np.take_along_axis(v, np.nonzero(mask[group])[1].reshape(len(group), 1, n), axis=2)
        out[group, :-1] = _statistics(v if n > 1 else np.repeat(v, 2, axis=2)).reshape(len(group), -1)
        out[group, -1] = n
    return np.nan_to_num(out)


def _statistics(v: np.ndarray) -> np.ndarray:
    """[G, C, n] (n ≥ 2) -> [G, C, 11 + BANDS], the statistics window_statistics lists."""
    d = np.diff(v, axis=2)
    power = np.abs(np.fft.rfft(v - v.mean(2, keepdims=True), axis=2)) ** 2
    bands = np.stack([b.sum(2) for b in np.array_split(power, BANDS, axis=2)], 2)
    bands /= bands.sum(2, keepdims=True) + 1e-12
    q = np.moveaxis(np.quantile(v, [0.05, 0.25, 0.5, 0.75, 0.95], axis=2), 0, 2)
    first = np.stack([v.mean(2), v.std(2), v.min(2), v.max(2)], 2)
    return np.concatenate([first, q, np.stack([np.abs(d).mean(2), d.std(2)], 2), bands], 2)


def forest_probabilities(x: np.ndarray, y: np.ndarray, others: list[np.ndarray], n_classes: int,
                         seed: int) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Class probabilities of a forest on the statistics of labelled windows `x`, `y`: out of fold on `x` and from
    a forest fitted on all of `x` on each of `others`. None when a class has fewer than 2 labelled windows."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if present.min() < 2:
        return None
    forest = lambda: RandomForestClassifier(TREES, random_state=seed, n_jobs=1)  # noqa: E731

    def predict(model, z):
        p = np.zeros((len(z), n_classes))
        p[:, model.classes_] = model.predict_proba(z)
        return p

    oof = np.zeros((len(x), n_classes))
    for fit_idx, held in StratifiedKFold(min(FOLDS, int(present.min())), shuffle=True,
                                         random_state=seed).split(x, y):
        oof[held] = predict(forest().fit(x[fit_idx], y[fit_idx]), x[held])
    model = forest().fit(x, y)
    return oof, [predict(model, z) for z in others]


def mixed_logits(logits: np.ndarray, forest: np.ndarray, weight: float) -> np.ndarray:
    """Logits whose softmax is (1 - weight) · softmax(logits) + weight · forest."""
    from scipy.special import softmax

    return np.log((1 - weight) * softmax(logits, 1) + weight * forest + 1e-12).astype(np.float32)


def forest_weight(logits: np.ndarray, forest: np.ndarray, labels: np.ndarray) -> float:
    """The weight in WEIGHTS whose mix has the lowest log-loss on labelled windows, among those that lower the
    teacher's by more than one standard error of the per-window difference; 0 where none does (on a handful of
    validation windows a small gain is as likely chance as the forest's doing)."""
    rows = np.arange(len(labels))
    loss = {w: -mixed_logits(logits, forest, w)[rows, labels].astype(np.float64) for w in WEIGHTS}

    def clears(w):
        gain = loss[0.0] - loss[w]
        return len(gain) > 1 and gain.mean() > gain.std(ddof=1) / np.sqrt(len(gain))

    return min((w for w in WEIGHTS if w == 0.0 or clears(w)), key=lambda w: loss[w].mean())
