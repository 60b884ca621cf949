"""A second member of the distillation target: MiniRocket (Dempster et al. 2021) with a ridge classifier.

The fine-tuned encoder learns what separates the classes from a few hundred labelled windows, and on some data
misses what MiniRocket's thousands of dilated random convolutions find: on PLAID (seed 0, all labels) the encoder
reads 0.838 on the test split and the mean of its class probabilities with MiniRocket's (weight 0.375, chosen on the
validation windows) 0.909; ACSF1 seed 1 0.87 -> 0.90, JapaneseVowels seed 0 0.973 -> 0.978, GunPoint seed 0 0.98 ->
1.0. Where MiniRocket is the weaker member (ACSF1 seed 0 on its validation windows) an equal mix would cost, so its
weight is chosen per data set, by log-loss on the validation windows, and is 0 unless it lowers it by more than one
standard error (it is not used without validation windows).

A ridge classifier gives scores, not probabilities: their softmax scale is the one with the lowest log-loss out of
fold on the training windows. On the training windows MiniRocket answers out of fold too, each fold by a ridge
fitted on the others, so its soft labels say what it makes of windows it has not seen rather than repeat the labels
it memorised. (Its random kernels' dilations and biases are fitted once, on all training windows: that step reads no
labels.)
"""

from __future__ import annotations

import numpy as np

WEIGHTS = (0.0, 0.125, 0.25, 0.375, 0.5)  # MiniRocket's share of the mixed class probabilities
FOLDS = 5
MIN_LENGTH = 9  # MiniRocket's kernels span 9 samples; shorter windows are zero-padded to it
SCALES = np.logspace(-1, 2, 31)  # candidate softmax scales of the ridge scores


def minirocket_probabilities(x: np.ndarray, y: np.ndarray, others: list[np.ndarray], n_classes: int,
                             seed: int) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Class probabilities of MiniRocket + ridge for labelled windows `x` [N, C, T], `y`: out of fold on `x` and
    from a ridge fitted on all of `x` on each of `others`. None when a class has fewer than 2 labelled windows or
    only one class has any."""
    from aeon.transformations.collection.convolution_based import MiniRocket
    from scipy.special import log_softmax
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y, minlength=n_classes)
    present = counts[counts > 0]
    if present.min() < 2 or len(present) < 2:
        return None

    def ready(v):  # padding and missing samples read as 0, as in the model inputs
        v = np.nan_to_num(v.astype(np.float32))
        return np.pad(v, ((0, 0), (0, 0), (0, max(0, MIN_LENGTH - v.shape[2]))))

    rocket = MiniRocket(random_state=seed).fit(ready(x))
    features = rocket.transform(ready(x))
    scaler = StandardScaler(with_mean=False).fit(features)
    features = scaler.transform(features)
    others = [scaler.transform(rocket.transform(ready(z))) for z in others]

    def scores(fit_x, fit_y, sets):
        ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(fit_x, fit_y)
        out = []
        for z in sets:
            d = ridge.decision_function(z)
            if d.ndim == 1:  # two classes: one score, the second class's
                d = np.stack([-d, d], 1) / 2
            full = np.full((len(z), n_classes), -1e3)  # a class without labels is never answered
            full[:, ridge.classes_] = d
            out.append(full)
        return out

    oof = np.zeros((len(x), n_classes))
    for fit_idx, held in StratifiedKFold(min(FOLDS, int(present.min())), shuffle=True,
                                         random_state=seed).split(x, y):
        oof[held] = scores(features[fit_idx], y[fit_idx], [features[held]])[0]
    rows = np.arange(len(y))
    scale = min(SCALES, key=lambda s: -log_softmax(s * oof, 1)[rows, y].mean())
    probabilities = lambda d: np.exp(log_softmax(scale * d, 1))  # noqa: E731
    return probabilities(oof), [probabilities(d) for d in scores(features, y, others)]


def mixed_logits(logits: np.ndarray, member: np.ndarray, weight: float) -> np.ndarray:
    """Logits whose softmax is (1 - weight) · softmax(logits) + weight · member."""
    from scipy.special import softmax

    return np.log((1 - weight) * softmax(logits, 1) + weight * member + 1e-12).astype(np.float32)


def member_weight(logits: np.ndarray, member: np.ndarray, labels: np.ndarray) -> float:
    """The weight in WEIGHTS whose mix has the lowest log-loss on labelled windows, among those that lower the
    teacher's by more than one standard error of the per-window difference; 0 where none does (on a handful of
    validation windows a small gain is as likely chance as MiniRocket's doing)."""
    rows = np.arange(len(labels))
    loss = {w: -mixed_logits(logits, member, w)[rows, labels].astype(np.float64) for w in WEIGHTS}

    def clears(w):
        gain = loss[0.0] - loss[w]
        return len(gain) > 1 and gain.mean() > gain.std(ddof=1) / np.sqrt(len(gain))

    return min((w for w in WEIGHTS if w == 0.0 or clears(w)), key=lambda w: loss[w].mean())
