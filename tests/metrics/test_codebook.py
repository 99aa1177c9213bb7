"""Codebook health: the two extremes, a hand-computed middle case and the slot bookkeeping."""

import math

import pytest
import torch

from musictok.metrics.codebook import codebook_health, codebook_usage


def test_uniform_codes_use_the_whole_codebook():
    usage = codebook_usage(torch.arange(64).repeat(10), 64)
    assert usage.utilization == 1.0
    assert usage.normalized_entropy == pytest.approx(1.0)
    assert usage.entropy_bits == pytest.approx(6.0)
    assert usage.perplexity == pytest.approx(64.0)
    assert usage.num_tokens == 640 and usage.used == 64
    assert usage.counts.tolist() == [10] * 64


def test_single_repeated_code_is_collapse():
    usage = codebook_usage(torch.full((5, 7), 3), 1024)
    assert usage.utilization == pytest.approx(1 / 1024)
    assert usage.entropy_bits == 0.0
    assert usage.normalized_entropy == 0.0
    assert usage.perplexity == 1.0


def test_half_the_codebook_uniformly():
    usage = codebook_usage(torch.arange(8).repeat(3), 16)
    assert usage.utilization == 0.5
    assert usage.normalized_entropy == pytest.approx(math.log2(8) / math.log2(16))  # 0.75


def test_codebook_health_per_slot_and_pooled():
    # 8 bands sharing one 16-entry codebook: band s always emits code 2*s and 2*s + 1.
    frames = torch.arange(40) % 2
    codes = torch.stack([frames + 2 * s for s in range(8)], dim=-1).unsqueeze(0)  # (1, 40, 8)
    health = codebook_health(codes, 16, slot_names="band")
    assert list(health.slots) == [f"band{s}" for s in range(8)]
    for u in health.slots.values():
        assert u.utilization == pytest.approx(2 / 16)
        assert u.normalized_entropy == pytest.approx(0.25)
    assert health.pooled is not None
    assert health.pooled.utilization == 1.0
    assert health.pooled.normalized_entropy == pytest.approx(1.0)
    assert health.mean_utilization == pytest.approx(2 / 16)

    # Separate codebooks per slot: no pooled view.
    separate = codebook_health(codes[..., :2], [16, 4], slot_names=["coarse", "fine"])
    assert separate.pooled is None
    assert separate.slots["fine"].utilization == pytest.approx(2 / 4)
    assert "counts" not in separate.to_dict()["slots"]["fine"]
    assert len(separate.to_dict(include_counts=True)["slots"]["fine"]["counts"]) == 4


def test_codebook_errors_are_actionable():
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        codebook_usage(torch.tensor([0, 8]), 8)
    with pytest.raises(ValueError, match="unsqueeze"):
        codebook_health(torch.zeros(4, 10, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="one size per slot"):
        codebook_health(torch.zeros(1, 4, 3, dtype=torch.long), [8, 8])
    with pytest.raises(ValueError, match="integer"):
        codebook_usage(torch.zeros(4), 8)
