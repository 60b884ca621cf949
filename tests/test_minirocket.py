"""MiniRocket mixed into the teacher's soft labels (edgekit.teacher.minirocket)."""

import numpy as np

from edgekit.data import load_dataset
from edgekit.teacher.minirocket import WEIGHTS, member_weight, minirocket_probabilities, mixed_logits


def test_out_of_fold_answers_are_not_the_memorised_labels():
    ds = load_dataset("BasicMotions")
    oof, (fitted,) = minirocket_probabilities(ds.values, ds.labels, [ds.values], 4, seed=0)
    assert np.allclose(oof.sum(1), 1) and np.allclose(fitted.sum(1), 1)
    assert (fitted.argmax(1) == ds.labels).mean() == 1.0 and (oof.argmax(1) == ds.labels).mean() >= 0.9
    shuffled = np.random.default_rng(0).permutation(ds.labels)
    oof, _ = minirocket_probabilities(ds.values, shuffled, [ds.values], 4, seed=0)
    assert (oof.argmax(1) == shuffled).mean() < 0.5  # out of fold, random labels cannot be learnt
    few = np.array([0, 0, 1, 1, 2])  # one window of class 2: no out-of-fold answer for it
    assert minirocket_probabilities(ds.values[:5], few, [ds.values], 4, seed=0) is None


def test_short_windows_are_padded_and_absent_classes_never_answered():
    ds = load_dataset("JapaneseVowels")
    pick = np.random.default_rng(0).choice(len(ds.labels), 120, replace=False)
    x, y = ds.values[pick, :, :5], ds.labels[pick]  # 5 samples: shorter than MiniRocket's kernels
    k = int(ds.labels.max()) + 1
    y = np.where(y == k - 1, 0, y)  # the last class has no labelled window
    oof, (other,) = minirocket_probabilities(x, y, [x[:7]], k, seed=0)
    assert oof.shape == (120, k) and other.shape == (7, k) and np.allclose(other.sum(1), 1)
    assert oof[:, k - 1].max() < 1e-6 and other[:, k - 1].max() < 1e-6
    assert (oof.argmax(1) == y).mean() > 0.5  # five samples of twelve channels still tell the speakers apart
    assert minirocket_probabilities(x, np.zeros_like(y), [x], k, seed=0) is None  # one class: nothing to separate


def test_member_weight_follows_the_validation_log_loss():
    labels = np.arange(40) % 4
    teacher = np.zeros((40, 4), np.float32)  # no idea
    right, uniform = np.eye(4)[labels], np.full((40, 4), 0.25)
    assert member_weight(teacher, right, labels) == max(WEIGHTS)
    assert member_weight(5 * np.eye(4, dtype=np.float32)[labels], uniform, labels) == 0.0
    # six windows: MiniRocket rescues one the teacher gets badly wrong and costs a little on the other five; the
    # mean log-loss falls, but by less than its standard error, so the teacher stays alone
    few, sure = np.zeros(6, int), np.tile(np.float32([2.0, 0.0]), (6, 1))
    sure[0] = [0.0, 6.0]
    member = np.tile([0.3, 0.7], (6, 1))
    member[0] = [1.0, 0.0]
    gain = mixed_logits(sure, member, max(WEIGHTS))[:, 0] - mixed_logits(sure, member, 0)[:, 0]
    assert 0 < gain.mean() < gain.std(ddof=1) / np.sqrt(6)
    assert member_weight(sure, member, few) == 0.0
    p = np.exp(mixed_logits(teacher, right, 0.5))
    assert np.allclose(p, 0.5 * 0.25 + 0.5 * right, atol=1e-6)
