"""Shared fixtures: a tiny rendered corpus, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from musictok.data.build import BuildConfig, build_corpus
from musictok.data.render import embedded_soundfont


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Three chorales rendered at 16 kHz with the embedded SoundFont (a few seconds)."""
    out = tmp_path_factory.mktemp("corpus")
    report = build_corpus(BuildConfig(out=out, corpus="chorales", limit=3, seed=7, sample_rate=16000,
                                      workers=1, soundfont=embedded_soundfont()))
    assert report.rendered == 3 and not report.failed
    return out


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests use small tensors: on a shared 2-core machine extra OpenMP threads only add contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
