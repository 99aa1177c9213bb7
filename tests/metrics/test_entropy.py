"""Entropy from counts: the plug-in's known values, and the NSB estimate where the plug-in is biased — a
codebook of 32768 codes read from ~15,000 tokens (the dual bench's test split)."""

import math

import pytest
import torch

from musictok.metrics.entropy import entropy_bits_from_counts, nsb_entropy_bits


def _uniform_counts(k: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bincount(torch.randint(0, k, (n,), generator=g), minlength=k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nsb_reads_uniform_32768_codes_from_15k_tokens(seed):
    counts = _uniform_counts(32768, 15000, seed)
    plugin = entropy_bits_from_counts(counts)
    mm = entropy_bits_from_counts(counts, miller_madow=True)
    nsb = nsb_entropy_bits(counts, 32768)
    assert plugin < 13.5 and mm < 14.1  # 1.5 and 0.9 bits short of log2 K = 15
    assert nsb == pytest.approx(15.0, abs=0.05)


def test_nsb_at_4096_codes_and_on_skewed_codes():
    assert nsb_entropy_bits(_uniform_counts(4096, 15000), 4096) == pytest.approx(12.0, abs=0.02)
    # a Zipf law over 32768 codes (true entropy 10.552 bits): NSB 10.47, the plug-in 9.73
    k = 32768
    p = 1.0 / torch.arange(1, k + 1, dtype=torch.float64)
    p /= p.sum()
    true = float(-(p * p.log2()).sum())
    counts = torch.bincount(torch.multinomial(p, 15000, replacement=True, generator=torch.Generator().manual_seed(0)),
                            minlength=k)
    nsb, plugin = nsb_entropy_bits(counts, k), entropy_bits_from_counts(counts)
    assert abs(nsb - true) < 0.15 < abs(plugin - true)


def test_nsb_reference_values_and_limits():
    # reference values: the same integral by scipy's adaptive quadrature over log β (3.9785598, 0.8129156)
    assert nsb_entropy_bits(torch.full((16,), 4), 16) == pytest.approx(3.9785598, abs=1e-5)
    assert nsb_entropy_bits(torch.tensor([3, 1]), 2) == pytest.approx(0.8129156, abs=1e-5)
    assert nsb_entropy_bits(torch.tensor([7]), 1) == 0.0
    one_code = torch.zeros(32768, dtype=torch.long)
    one_code[3] = 15000
    assert nsb_entropy_bits(one_code, 32768) < 1e-3  # collapse reads as collapse
    # with many tokens per code NSB and the plug-in agree
    many = torch.tensor([400_000, 300_000, 200_000, 100_000])
    assert nsb_entropy_bits(many, 4) == pytest.approx(entropy_bits_from_counts(many), abs=1e-4)


def test_nsb_takes_sparse_counts_and_stays_below_log2_k():
    dense = _uniform_counts(1024, 3000)
    sparse = dense[dense > 0]
    assert nsb_entropy_bits(sparse, 1024) == nsb_entropy_bits(dense, 1024)
    for n in (1, 5, 100, 100_000):
        assert 0.0 <= nsb_entropy_bits(_uniform_counts(64, n), 64) <= 6.0


def test_entropy_errors_are_actionable():
    with pytest.raises(ValueError, match="empty"):
        nsb_entropy_bits(torch.zeros(8, dtype=torch.long), 8)
    with pytest.raises(ValueError, match="alphabet of 2"):
        nsb_entropy_bits(torch.tensor([1, 1, 1]), 2)
    with pytest.raises(ValueError, match="non-negative"):
        entropy_bits_from_counts(torch.tensor([1, -1]))


def test_plugin_reference_values():
    assert entropy_bits_from_counts(torch.tensor([5, 5, 5, 5])) == pytest.approx(2.0)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert entropy_bits_from_counts(torch.tensor([3, 1])) == pytest.approx(h)
    assert entropy_bits_from_counts(torch.tensor([3, 1]), miller_madow=True) == pytest.approx(h + 1 / (8 * math.log(2)))
