"""The attribute probe: AP and ROC-AUC agree with scikit-learn, a planted attribute is learned, noise is not."""

import numpy as np
import pytest
import torch

from musictok.metrics.probe import average_precision, clip_features, fit_probe, probe_attributes, roc_auc


def test_ap_and_auc_match_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 6, 40).astype(float)  # many ties
        labels = rng.integers(0, 2, 40)
        assert average_precision(scores, labels) == pytest.approx(metrics.average_precision_score(labels, scores))
        assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
    assert roc_auc(np.array([0.1, 0.9, 0.5]), np.array([0, 1, 0])) == 1.0
    assert np.isnan(roc_auc(np.zeros(3), np.ones(3))) and np.isnan(average_precision(np.zeros(3), np.zeros(3)))


def test_clip_features_are_mean_and_std_per_slot():
    e = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).reshape(2, 3, 2, 4)
    f = clip_features([e, e[:, :, :1]])
    assert f.shape == (2, 2 * 8 + 2 * 4)
    assert torch.allclose(f[:, :8], e.flatten(2).mean(1)) and torch.allclose(f[:, 8:16], e.flatten(2).std(1, unbiased=False))


def _clips(n_pieces: int, per_piece: int, dim: int, rng):
    """Clips grouped in pieces; tag 0 is planted in feature 3 (the piece's label shifts it), tag 1 is noise."""
    labels = rng.integers(0, 2, (n_pieces, 2))
    x = rng.standard_normal((n_pieces * per_piece, dim))
    y = np.repeat(labels, per_piece, axis=0)
    x[:, 3] += 1.5 * (2 * y[:, 0] - 1)
    groups = np.repeat([f"p{i}" for i in range(n_pieces)], per_piece)
    return torch.from_numpy(x), torch.from_numpy(y), groups


def test_probe_learns_a_planted_attribute_and_not_noise():
    rng = np.random.default_rng(1)
    tx, ty, _ = _clips(60, 4, 40, rng)
    vx, vy, groups = _clips(30, 4, 40, rng)
    known = torch.ones_like(ty, dtype=torch.bool)
    res = probe_attributes(tx, ty, known, vx, vy, torch.ones_like(vy, dtype=torch.bool), groups, ["planted", "noise"],
                           resamples=300, seed=0)
    planted, noise = res.per_tag["planted"], res.per_tag["noise"]
    assert planted["auc"] > 0.95 and planted["ap"] > 0.9
    assert 0.3 < noise["auc"] < 0.7  # chance, at 30 test pieces
    assert res.macro_auc.low <= res.macro_auc.value <= res.macro_auc.high
    # the shuffled-label control sits near chance, well below the real probe's lower bound
    assert res.shuffled_auc < 0.7 < res.macro_auc.low + 0.1
    only_planted = probe_attributes(tx, ty[:, :1], known[:, :1], vx, vy[:, :1], torch.ones(len(vx), 1, dtype=torch.bool),
                                    groups, ["planted"], resamples=300)
    assert only_planted.macro_auc.low > 0.9 and only_planted.shuffled_auc < 0.75


def test_unknown_labels_leave_the_loss_and_one_class_tags_are_not_scored():
    rng = np.random.default_rng(2)
    tx, ty, _ = _clips(40, 2, 10, rng)
    known = torch.ones_like(ty, dtype=torch.bool)
    known[:40, 0] = False
    poisoned = ty.clone()
    poisoned[:40, 0] = 1 - poisoned[:40, 0]  # wrong, but unknown: must not matter
    a, b = fit_probe(tx, ty, known), fit_probe(tx, poisoned, known)
    assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias)
    vx, vy, groups = _clips(10, 2, 10, rng)
    vy[:, 1] = 1
    res = probe_attributes(tx, ty, known, vx, vy, torch.ones_like(vy, dtype=torch.bool), groups, ["a", "b"], resamples=50)
    assert set(res.per_tag) == {"a"} and "one class" in res.not_scored["b"]
