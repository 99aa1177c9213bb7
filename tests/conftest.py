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


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("rvq_seed_study")``: a script of ``benchmarks/`` as a module (they are not a package).
    It is registered in ``sys.modules`` first: its dataclasses resolve their annotations through it."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def dual_tokenizers(tmp_path_factory) -> Path:
    """A folder with a tiny DuoTok (``duo``) and a tiny BandTok (``band``, its codebook k-means-initialised) at
    16 kHz: a two-track tokenizer and a single-stream one for the dual-track tests."""
    import torch

    from musictok.tokenizers.bandtok import BandTok, BandTokConfig
    from musictok.tokenizers.duotok import DuoTok, DuoTokConfig

    root = tmp_path_factory.mktemp("dual-tok")
    torch.manual_seed(0)
    DuoTok(DuoTokConfig.tiny(sample_rate=16000)).save_pretrained(root / "duo")
    band = BandTok(BandTokConfig.tiny(sample_rate=16000))
    band.train()
    band.forward_train(torch.randn(2, 2 * 16000) * 0.1)  # k-means init of its codebook
    band.eval().save_pretrained(root / "band")
    return root
