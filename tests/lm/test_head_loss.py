"""The chunked head + cross-entropy equals ``cross_entropy(h @ W.T)`` in value and gradient: over several
chunks, with ignored rows, under bf16 autocast, and for an upstream gradient that is not a plain mean."""

import pytest
import torch
from torch.nn import functional as F

from musictok.lm import head_loss
from musictok.lm.head_loss import linear_cross_entropy
from musictok.lm.patterns import IGNORE_INDEX


def problem(n: int = 37, d: int = 16, v: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (0.3 * torch.randn(v, d, generator=g)).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[::5] = IGNORE_INDEX
    return h, w, t


def reference(h, w, t):
    return F.cross_entropy((h @ w.T).float(), t, ignore_index=IGNORE_INDEX, reduction="none")


def grads(fn, h, w, t, upstream):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    nll = fn(h, w, t)
    (nll * upstream).sum().backward()
    return nll.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
@pytest.mark.parametrize("weighting", ["mean", "per-row"])
def test_equals_cross_entropy_of_the_logits(monkeypatch, chunk_rows, weighting):
    h, w, t = problem()
    monkeypatch.setattr(head_loss, "CHUNK_ELEMENTS", chunk_rows * w.shape[0])
    keep = (t != IGNORE_INDEX).float()
    upstream = keep / keep.sum() if weighting == "mean" else torch.rand(len(t), generator=torch.Generator().manual_seed(1))
    got, want = grads(linear_cross_entropy, h, w, t, upstream), grads(reference, h, w, t, upstream)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert bool((got[0][t == IGNORE_INDEX] == 0).all()) and bool((got[1][t == IGNORE_INDEX] == 0).all())


def test_a_mean_loss_takes_the_stored_gradients(monkeypatch):
    """What TokenLM does — ``nll.sum() / count`` — sends 1/count to every row, ignored ones too: one pass."""
    h, w, t = problem()
    calls = []
    chunked = head_loss._chunked
    monkeypatch.setattr(head_loss, "_chunked", lambda *a, **k: calls.append(1) or chunked(*a, **k))
    nll = linear_cross_entropy(h, w, t)
    (nll.sum() / (t != IGNORE_INDEX).sum()).backward()
    assert len(calls) == 1 and h.grad is not None and w.grad is not None


def test_ignored_rows_take_no_gradient_whatever_arrives_there():
    h, w, t = problem()
    upstream = torch.where(t == IGNORE_INDEX, torch.tensor(float("inf")), torch.tensor(0.5))
    _, gh, gw = grads(linear_cross_entropy, h, w, t, upstream)
    assert bool(torch.isfinite(gh).all()) and bool(torch.isfinite(gw).all())
    assert bool((gh[t == IGNORE_INDEX] == 0).all())


@pytest.mark.parametrize("trainable", ["h", "weight"])
def test_only_what_needs_a_gradient_gets_one(trainable):
    h, w, t = problem()
    h, w = h.detach().requires_grad_(trainable == "h"), w.detach().requires_grad_(trainable == "weight")
    linear_cross_entropy(h, w, t).sum().backward()
    assert (h.grad is None) == (trainable != "h") and (w.grad is None) == (trainable != "weight")
    ref_h, ref_w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    reference(ref_h, ref_w, t).sum().backward()
    got = h.grad if trainable == "h" else w.grad
    torch.testing.assert_close(got, ref_h.grad if trainable == "h" else ref_w.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weighting", ["mean", "per-row"])
def test_under_bf16_autocast_as_a_linear_layer_would_round(weighting):
    h, w, t = problem(n=300, d=64, v=1024)
    upstream = torch.full((300,), 1 / 300) if weighting == "mean" else torch.rand(300, generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = grads(linear_cross_entropy, h, w, t, upstream)
        want = grads(lambda h, w, t: F.cross_entropy(F.linear(h, w).float(), t, ignore_index=IGNORE_INDEX,
                                                     reduction="none"), h, w, t, upstream)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)  # the same rounded logits
    for a, b in zip(got[1:], want[1:]):  # gradients: bf16 matmuls, summed in another order
        assert a.dtype == b.dtype == torch.float32
        assert float((a - b).norm() / b.norm()) < 1e-2


def test_without_gradients_only_the_loss(monkeypatch):
    h, w, t = problem()
    with torch.no_grad():
        nll = linear_cross_entropy(h, w, t)
    torch.testing.assert_close(nll, reference(h, w, t).detach())
    calls = []
    monkeypatch.setattr(head_loss, "_chunked", lambda *a, grads=True: calls.append(grads) or (torch.zeros(len(t)), None, None))
    with torch.no_grad():
        linear_cross_entropy(h, w, t)
    assert calls == [False]  # no gradient work when none is wanted


def test_shapes_are_checked():
    h, w, t = problem()
    with pytest.raises(ValueError, match="expected h"):
        linear_cross_entropy(h, w.T, t)
