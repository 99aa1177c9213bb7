"""Predictability metrics: the paper's reference values and hand-checked examples."""

import math

import pytest
import torch

from musictok.metrics.entropy import nsb_entropy_bits

from musictok.metrics.predictability import (
    StreamPrediction,
    bits_per_token,
    cnbps,
    cnbpt,
    enbpt,
    mean_log2_codebook_size,
    nll_from_logits,
    predictability_metrics,
    stream_entropy_bits,
    topk_accuracy,
    unigram_entropy_bits,
)


def test_bits_per_token_converts_nats_and_respects_mask():
    nll = torch.full((2, 5, 3), 6.315 * math.log(2))
    assert bits_per_token(nll) == pytest.approx(6.315, abs=1e-6)
    nll_padded = nll.clone()
    nll_padded[:, -1] = 100.0  # padding that must not count
    mask = torch.ones_like(nll, dtype=torch.bool)
    mask[:, -1] = False
    assert bits_per_token(nll_padded, mask) == pytest.approx(6.315, abs=1e-6)


def test_cnbpt_reference_values_from_duotok_table():
    assert cnbpt(6.315, 1024) == pytest.approx(0.6315, abs=1e-12)  # X-Codec (YuE), vocal
    assert cnbpt(6.911, 32768) == pytest.approx(0.4607, abs=1e-4)  # DuoTok, vocal (0.461)
    assert round(cnbpt(6.911, 32768), 3) == 0.461
    # Mixed sizes normalise by the mean index length: (10 + 12) / 2 = 11 bits.
    assert mean_log2_codebook_size([1024, 4096]) == pytest.approx(11.0)
    assert cnbpt(5.5, [1024, 4096]) == pytest.approx(0.5)
    # Uniform prediction scores exactly 1.
    assert cnbpt(math.log2(1024), [1024] * 8) == pytest.approx(1.0)


def test_cnbps_reference_values_and_stream_additivity():
    assert cnbps(0.76, 600) == pytest.approx(456.0)  # DAC row
    assert cnbps(0.61, 40) == pytest.approx(24.4)  # WavTokenizer row
    # Two tracks of 400 tokens/s each at cnBPT 0.63 -> 504 (X-Codec YuE row).
    assert cnbps([0.63, 0.63], [400, 400]) == pytest.approx(504.0)
    assert cnbps([0.5, 0.7], [100, 300]) == pytest.approx(cnbps(0.5, 100) + cnbps(0.7, 300))
    with pytest.raises(ValueError, match="one rate per stream"):
        cnbps([0.5, 0.7], [100])


def test_unigram_entropy_and_enbpt():
    # the NSB estimate from the codes' counts: close to the plug-in's 2 bits when 4 of 16 codes are used
    # 25 times each, and bounded by log2 K
    codes = torch.tensor([0, 1, 2, 3] * 25)
    assert unigram_entropy_bits(codes, 16) == pytest.approx(nsb_entropy_bits(torch.tensor([25] * 4), 16))
    assert unigram_entropy_bits(codes, 16) == pytest.approx(2.0, abs=0.1)
    many = torch.tensor([0] * 3000 + [1] * 1000)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert unigram_entropy_bits(many, 2) == pytest.approx(h, abs=1e-3)
    # the plug-in misses a third of a uniform 4096-code distribution's spread at 2,000 tokens; NSB does not
    few = torch.randint(0, 4096, (2000,), generator=torch.Generator().manual_seed(0))
    assert unigram_entropy_bits(few, 4096) == pytest.approx(12.0, abs=0.1)
    assert enbpt(1.0, 2.0) == pytest.approx(0.5)
    # Eq. 17: enBPT = cnBPT / eta with eta = H / log2 K.
    eta = 2.0 / math.log2(16)
    assert enbpt(1.0, 2.0) == pytest.approx(cnbpt(1.0, 16) / eta)
    with pytest.raises(ValueError, match="undefined"):
        enbpt(1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        unigram_entropy_bits(torch.tensor([0, 16]), 16)


def test_stream_entropy_pools_shared_and_averages_separate_codebooks():
    # slot 0 uses codes {0, 1}, slot 1 uses {2, 3}: 1 bit each, 2 bits pooled (enough tokens for NSB to agree
    # with the plug-in within 0.01 bit).
    codes = torch.tensor([[0, 2], [1, 3]] * 2000).reshape(1, 4000, 2)
    assert stream_entropy_bits(codes, 4) == pytest.approx(2.0, abs=0.01)
    assert stream_entropy_bits(codes, [4, 4]) == pytest.approx(1.0, abs=0.01)
    assert stream_entropy_bits(codes, [4, 4]) == pytest.approx(unigram_entropy_bits(codes[..., 0], 4))


def test_topk_accuracy_hand_built():
    logits = torch.tensor(
        [
            [5.0, 4.0, 3.0, 2.0, 1.0],  # target 0: rank 1
            [1.0, 5.0, 4.0, 3.0, 2.0],  # target 2: rank 2
            [1.0, 2.0, 3.0, 4.0, 5.0],  # target 0: rank 5
            [0.0, 0.0, 9.0, 1.0, 2.0],  # target 4: rank 2
        ]
    )
    targets = torch.tensor([0, 2, 0, 4])
    acc = topk_accuracy(logits, targets, ks=(1, 2, 4, 50))
    assert acc == {1: 0.25, 2: 0.75, 4: 0.75, 50: 1.0}  # k=50 clipped to the 5-entry vocabulary
    masked = topk_accuracy(logits, targets, ks=(1,), mask=torch.tensor([True, False, False, False]))
    assert masked == {1: 1.0}


def test_nll_from_logits_matches_log_softmax():
    logits = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[0, 6, 3], [2, 2, 1]])
    expected = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(nll_from_logits(logits, targets), expected)
    # uniform logits cost log K nats -> BPT = log2 K -> cnBPT = 1
    uniform = nll_from_logits(torch.zeros(4, 1024), torch.arange(4))
    assert cnbpt(bits_per_token(uniform), 1024) == pytest.approx(1.0, abs=1e-6)


def test_predictability_metrics_two_streams():
    # Lead: 8 separate 1024-codebooks at 50 Hz; constant loss of 6.911 bits.
    nll_lead = torch.full((2, 10, 8), 6.911 * math.log(2))
    lead = StreamPrediction(nll_lead, [1024] * 8, tokens_per_second=400.0, name="lead")
    # Accompaniment: one 32768 codebook at 25 Hz, uniform logits -> cnBPT 1.
    targets = torch.arange(20).reshape(1, 20, 1)
    logits = torch.zeros(1, 20, 1, 32768)
    acc = StreamPrediction.from_logits(logits, targets, 32768, 25.0, name="accomp", ks=(1, 10))
    result = predictability_metrics([lead, acc])

    s_lead, s_acc = result.streams["lead"], result.streams["accomp"]
    assert s_lead.bpt == pytest.approx(6.911)
    assert s_lead.cnbpt == pytest.approx(0.6911)
    assert s_lead.enbpt is None and s_lead.topk_accuracy is None
    assert s_acc.cnbpt == pytest.approx(1.0, abs=1e-6)
    # 20 distinct targets, once each: the plug-in would say log2 20 = 4.3 bits; NSB reads 20 singletons out of
    # 32768 codes as evidence of a wide distribution, and enBPT divides by that same estimate
    h = nsb_entropy_bits(torch.ones(20), 32768)
    assert 10 < h < 15 and s_acc.entropy_bits == pytest.approx(h)
    assert s_acc.enbpt == pytest.approx(15 / h, rel=1e-6)
    assert set(s_acc.topk_accuracy) == {1, 10}
    assert result.cnbpt == pytest.approx((0.6911 + 1.0) / 2, abs=1e-6)
    assert result.cnbps == pytest.approx(0.6911 * 400 + 1.0 * 25, abs=1e-3)
    assert result.tokens_per_second == 425.0
    assert result.enbpt is None  # not every stream has codes
    d = result.to_dict()
    assert d["streams"]["accomp"]["topk_accuracy"].keys() == {"1", "10"}

    with pytest.raises(ValueError, match="distinct"):
        predictability_metrics([lead, lead])
