"""The statistics forest mixed into the teacher's soft labels (edgekit.teacher.forest)."""

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.teacher.forest import BANDS, WEIGHTS, forest_probabilities, forest_weight, mixed_logits, window_statistics


def test_statistics_read_only_the_observed_samples():
    ds = load_dataset("GunPoint").subset(np.arange(12))
    padded = np.concatenate([ds.values, np.full((12, 1, 40), 1e6, np.float32)], axis=2)
    mask = np.zeros((12, padded.shape[2]), bool)
    mask[:, :ds.length] = True
    assert np.allclose(window_statistics(padded, mask), window_statistics(ds.values, None))
    assert (window_statistics(padded, mask)[:, -1] == ds.length).all()  # the observed length


def test_spectral_bands_hold_the_energy_of_a_tone():
    t = np.arange(256)
    tone = np.sin(2 * np.pi * 100 / 256 * t)[None, None].astype(np.float32)  # bin 100 of 129: band 6 of 8
    shares = window_statistics(tone, None)[0, 11:11 + BANDS]
    assert shares.argmax() == 100 * BANDS // 129 and shares.max() > 0.99 and shares.sum() == pytest.approx(1)


def test_out_of_fold_answers_are_not_the_memorised_labels():
    ds = load_dataset("BasicMotions")
    x = window_statistics(ds.values, ds.mask)
    oof, (fitted,) = forest_probabilities(x, ds.labels, [x], 4, seed=0)
    assert np.allclose(oof.sum(1), 1) and (fitted.argmax(1) == ds.labels).mean() == 1.0
    assert (oof.argmax(1) == ds.labels).mean() >= 0.9  # real labels: the statistics separate the classes
    shuffled = np.random.default_rng(0).permutation(ds.labels)
    oof, (fitted,) = forest_probabilities(x, shuffled, [x], 4, seed=0)
    assert (fitted.argmax(1) == shuffled).mean() == 1.0  # in sample a forest fits even random labels...
    assert (oof.argmax(1) == shuffled).mean() < 0.5  # ...out of fold it cannot
    assert forest_probabilities(x[:5], np.array([0, 0, 1, 1, 2]), [x], 4, seed=0) is None  # one window of class 2


def test_forest_weight_follows_the_validation_log_loss():
    labels = np.arange(40) % 4
    teacher = np.zeros((40, 4), np.float32)  # no idea
    right, uniform = np.eye(4)[labels], np.full((40, 4), 0.25)
    assert forest_weight(teacher, right, labels) == max(WEIGHTS)
    assert forest_weight(5 * np.eye(4, dtype=np.float32)[labels], uniform, labels) == 0.0
    # six windows: the forest rescues one the teacher gets badly wrong and costs a little on the other five; the
    # mean log-loss falls, but by less than its standard error, so the teacher stays alone
    few, sure = np.zeros(6, int), np.tile(np.float32([2.0, 0.0]), (6, 1))
    sure[0] = [0.0, 6.0]
    forest = np.tile([0.3, 0.7], (6, 1))
    forest[0] = [1.0, 0.0]
    gain = mixed_logits(sure, forest, max(WEIGHTS))[:, 0] - mixed_logits(sure, forest, 0)[:, 0]
    assert 0 < gain.mean() < gain.std(ddof=1) / np.sqrt(6)
    assert forest_weight(sure, forest, few) == 0.0
    p = np.exp(mixed_logits(teacher, right, 0.5))
    assert np.allclose(p, 0.5 * 0.25 + 0.5 * right, atol=1e-6)
