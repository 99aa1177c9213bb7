"""Deterministic test signals shared by the tokenizer tests."""

import numpy as np
import torch


def music(seconds: float, sample_rate: int = 16000, seed: int = 0, peak: float = 0.1) -> torch.Tensor:
    """Chords of decaying partials: spectral structure like music, deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wav = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.25):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        env = np.where(t >= start, np.exp(-(t - start) * 4), 0)
        wav += sum(env * np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    return torch.from_numpy(peak * wav / np.abs(wav).max()).float()
