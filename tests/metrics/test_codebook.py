"""Codebook health: the two extremes, a hand-computed middle case and the slot bookkeeping. The entropy is the
NSB estimate (tests/metrics/test_entropy.py); the plug-in stays beside it as ``*_raw``."""

import math

import pytest
import torch

from musictok.metrics.codebook import codebook_health, codebook_usage
from musictok.metrics.entropy import nsb_entropy_bits


def test_uniform_codes_use_the_whole_codebook():
    usage = codebook_usage(torch.arange(64).repeat(10), 64)
    assert usage.utilization == 1.0
    assert usage.normalized_entropy_raw == pytest.approx(1.0) and usage.entropy_bits_raw == pytest.approx(6.0)
    assert usage.entropy_bits == pytest.approx(nsb_entropy_bits(usage.counts, 64))
    assert usage.normalized_entropy == pytest.approx(1.0, abs=0.005)  # NSB: 5.99 bits, never above log2 K
    assert usage.normalized_entropy <= 1.0 and usage.perplexity == pytest.approx(2 ** usage.entropy_bits)
    assert usage.uniform_utilization == pytest.approx(1 - (63 / 64) ** 640)
    assert usage.num_tokens == 640 and usage.used == 64
    assert usage.counts.tolist() == [10] * 64


def test_single_repeated_code_is_collapse():
    usage = codebook_usage(torch.full((5, 7), 3), 1024)
    assert usage.utilization == pytest.approx(1 / 1024)
    assert usage.entropy_bits_raw == 0.0 and usage.normalized_entropy_raw == 0.0
    assert usage.entropy_bits < 0.1 and usage.normalized_entropy < 0.01  # 35 tokens of one code: collapse


def test_half_the_codebook_uniformly():
    usage = codebook_usage(torch.arange(8).repeat(3), 16)
    assert usage.utilization == 0.5
    assert usage.normalized_entropy_raw == pytest.approx(math.log2(8) / math.log2(16))  # 0.75
    # NSB, 24 tokens: the eight unseen codes may be rare rather than unused, so somewhat above 0.75
    assert 0.75 < usage.normalized_entropy < 0.85


def test_codebook_health_per_slot_and_pooled():
    # 8 bands sharing one 16-entry codebook: band s always emits code 2*s and 2*s + 1.
    frames = torch.arange(40) % 2
    codes = torch.stack([frames + 2 * s for s in range(8)], dim=-1).unsqueeze(0)  # (1, 40, 8)
    health = codebook_health(codes, 16, slot_names="band")
    assert list(health.slots) == [f"band{s}" for s in range(8)]
    for u in health.slots.values():
        assert u.utilization == pytest.approx(2 / 16)
        assert u.normalized_entropy_raw == pytest.approx(0.25)
        assert u.normalized_entropy == pytest.approx(0.25, abs=0.02)
    assert health.pooled is not None
    assert health.pooled.utilization == 1.0
    assert health.pooled.normalized_entropy_raw == pytest.approx(1.0)
    assert health.pooled.normalized_entropy == pytest.approx(1.0, abs=0.01)
    assert health.mean_normalized_entropy == pytest.approx(sum(u.normalized_entropy for u in health.slots.values()) / 8)
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
