"""Tiny separators shared by the separation tests: a tiny BandTok at 16 kHz and both separators trained for
three steps on the tiny corpus through the bundled -tiny run configs (the real code path, seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from musictok.tokenizers.bandtok import BandTok, BandTokConfig

from sep_helpers import SR, train_tiny


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)  # moves the EMA codebook off its init
    d = tmp_path_factory.mktemp("sep-tok") / "tok"
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_separators(tiny_corpus, tiny_tokenizer, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("separators")
    return {"lm": train_tiny("sep-lm-tiny.yaml", tiny_corpus, root / "lm", tokenizer=str(tiny_tokenizer)),
            "mask": train_tiny("sep-mask-tiny.yaml", tiny_corpus, root / "mask", sample_rate=SR)}
