"""Attribute probe on frozen code embeddings (DuoTok App. B.2 in spirit): what do a tokenizer's tokens keep?

Each clip becomes one feature vector — per stream, the mean and the standard deviation over time of the
tokenizer's post-quantization vectors (``Tokenizer.code_embeddings``: ``(B, frames, slots, D)``), slots kept
apart — and one multi-label logistic regression (a linear layer, no hidden layer: it reads what is linearly
there, it does not learn a new representation) is fitted on training-split clips and scored on test-split
clips: average precision (AP) and ROC-AUC per tag, and their macro means over the tags that have both
classes among the test clips.

Why these controls: AP's chance level is the tag's prevalence and ROC-AUC's is 0.5, but a probe with more
features than training pieces can also find structure in noise. The same probe fitted on **shuffled labels**
measures that floor at this sample size; a tokenizer is said to keep an attribute only where its AUC stands
clear of both 0.5 and the shuffled probe's. Clips of one piece share their labels and much of their sound,
so intervals resample **pieces** (a cluster bootstrap), never clips.

Everything here is a plain function on tensors; tags come from ``data/tags.py`` and features from a
tokenizer through ``evaluate.py: evaluate_probe``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .intervals import cluster_resamples


def clip_features(embeddings: Sequence[Tensor]) -> Tensor:
    """Per-stream code embeddings ``(B, frames, slots, D)`` -> ``(B, F)``: mean and std over frames, every slot
    and stream side by side (a band's or a level's vector stays its own)."""
    feats = []
    for e in embeddings:
        e = e.float().flatten(2)  # (B, frames, slots * D)
        feats += [e.mean(1), e.std(1, unbiased=False)]
    return torch.cat(feats, dim=-1)


# --------------------------------------------------------------------------- ranking scores
def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = Σ_n (R_n − R_{n−1}) P_n over distinct score thresholds (scikit-learn's definition: tied scores
    enter together); NaN when there is no positive."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    pos = labels.sum()
    if pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # the last index of each distinct threshold
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties counting one half
    (the Mann–Whitney statistic with average ranks); NaN unless both classes are present."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(s.size)
    start = 0
    for stop in np.r_[np.flatnonzero(np.diff(s) != 0) + 1, s.size]:  # average ranks over ties
        ranks[start:stop] = (start + stop + 1) / 2.0
        start = stop
    r = np.empty(s.size)
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# --------------------------------------------------------------------------- the probe
@dataclass
class LinearProbe:
    """Standardisation (training-clip mean and std) followed by one logistic regression per tag."""

    mean: Tensor
    std: Tensor
    weight: Tensor  # (F, tags)
    bias: Tensor  # (tags,)

    def scores(self, x: Tensor) -> Tensor:
        """``(N, F)`` -> ``(N, tags)`` logits."""
        return ((x.double() - self.mean) / self.std) @ self.weight + self.bias


def fit_probe(x: Tensor, y: Tensor, known: Tensor, *, l2: float = 1e-2, max_iter: int = 200) -> LinearProbe:
    """Fit the multi-label logistic probe: ``x (N, F)``, labels ``y (N, tags)`` in {0, 1}, ``known (N, tags)``
    the labels that count (unknown ones leave the loss). Full-batch L-BFGS in float64 on standardised
    features with an L2 penalty ``l2 · |W|²`` — a convex problem, so the result does not depend on a seed."""
    x = x.double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    y, w_known = y.double(), known.double()
    n_known = w_known.sum(0).clamp_min(1.0)
    weight = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        logits = z @ weight + bias
        per = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * w_known
        loss = (per.sum(0) / n_known).sum() + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())


@dataclass
class Interval:
    """A value with its ``confidence`` interval (percentile cluster bootstrap)."""

    value: float
    low: float
    high: float

    def to_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass
class ProbeResult:
    """AP / ROC-AUC per tag and their macro means on the test clips, with intervals and the controls."""

    per_tag: dict[str, dict[str, float]]  # tag -> ap, auc, prevalence, positives, clips, pieces
    macro_ap: Interval
    macro_auc: Interval
    macro_prevalence: float  # the macro AP of a probe that knows nothing
    shuffled_ap: float  # the same probe fitted on shuffled training labels
    shuffled_auc: float
    not_scored: dict[str, str] = field(default_factory=dict)  # tags without both classes in the test clips
    train_clips: int = 0
    test_clips: int = 0
    features: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"per_tag": self.per_tag, "macro_ap": self.macro_ap.value, "macro_ap_ci": self.macro_ap.to_list(),
                "macro_auc": self.macro_auc.value, "macro_auc_ci": self.macro_auc.to_list(),
                "macro_prevalence": self.macro_prevalence, "shuffled_ap": self.shuffled_ap,
                "shuffled_auc": self.shuffled_auc, "not_scored": self.not_scored, "train_clips": self.train_clips,
                "test_clips": self.test_clips, "features": self.features}


def _macro(scores: np.ndarray, y: np.ndarray, known: np.ndarray, tags: Sequence[int]) -> tuple[float, float]:
    aps, aucs = [], []
    for t in tags:
        k = known[:, t]
        auc = roc_auc(scores[k, t], y[k, t])
        if not np.isnan(auc):  # both classes present
            aucs.append(auc)
            aps.append(average_precision(scores[k, t], y[k, t]))
    return (float(np.mean(aps)) if aps else float("nan"), float(np.mean(aucs)) if aucs else float("nan"))


def probe_attributes(train_x: Tensor, train_y: Tensor, train_known: Tensor, test_x: Tensor, test_y: Tensor,
                     test_known: Tensor, test_groups: Sequence[str], tags: Sequence[str], *, l2: float = 1e-2,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> ProbeResult:
    """Fit on the training clips, score the test clips; intervals from resampling test pieces
    (``test_groups``: each clip's piece) with replacement; the shuffled-label control from one permutation of
    the training clips' label rows (drawn from ``seed``)."""
    if train_x.shape[0] < 2 or test_x.shape[0] < 2:
        raise ValueError(f"the probe needs clips on both sides (train {train_x.shape[0]}, test {test_x.shape[0]})")
    probe = fit_probe(train_x, train_y, train_known, l2=l2)
    s = probe.scores(test_x).numpy()
    y, known = test_y.numpy().astype(np.float64), test_known.numpy().astype(bool)
    per_tag, scored, not_scored = {}, [], {}
    groups = np.asarray(test_groups)
    for t, name in enumerate(tags):
        k = known[:, t]
        pos, n = int(y[k, t].sum()), int(k.sum())
        if pos == 0 or pos == n:
            not_scored[name] = f"{pos} positive of {n} test clips: one class only"
            continue
        scored.append(t)
        per_tag[name] = {"ap": average_precision(s[k, t], y[k, t]), "auc": roc_auc(s[k, t], y[k, t]),
                         "prevalence": pos / n, "positives": pos, "clips": n,
                         "pieces": int(len(set(groups[k]))), "positive_pieces": int(len(set(groups[k & (y[:, t] > 0)])))}
    ap, auc = _macro(s, y, known, scored)
    boot_ap, boot_auc = [], []
    for idx in cluster_resamples(groups, resamples, seed):
        a, u = _macro(s[idx], y[idx], known[idx], scored)
        boot_ap.append(a)
        boot_auc.append(u)
    alpha = (1 - confidence) / 2

    def interval(value: float, boot: list[float]) -> Interval:
        b = np.asarray(boot)
        b = b[~np.isnan(b)]
        if not b.size:
            return Interval(value, float("nan"), float("nan"))
        lo, hi = np.quantile(b, [alpha, 1 - alpha])
        return Interval(value, float(lo), float(hi))

    perm = torch.from_numpy(np.random.default_rng(seed).permutation(train_x.shape[0]))
    control = fit_probe(train_x, train_y[perm], train_known[perm], l2=l2)
    sh_ap, sh_auc = _macro(control.scores(test_x).numpy(), y, known, scored)
    return ProbeResult(per_tag, interval(ap, boot_ap), interval(auc, boot_auc),
                       float(np.mean([per_tag[tags[t]]["prevalence"] for t in scored])) if scored else float("nan"),
                       sh_ap, sh_auc, not_scored, int(train_x.shape[0]), int(test_x.shape[0]), int(train_x.shape[1]))
