"""A small audio tagger whose penultimate layer is the embedding of the "tagger Fréchet distance".

Fréchet distances need an embedding in which nearby means "sounds alike". The published ones (VGGish for
FAD, CLAP, PANNs) come as downloaded weights, which this project cannot fetch, so it trains its own: a
three-layer 1D convolution over log10-Mel frames, mean and std pooling over time, one hidden layer — the
**embedding** — and a linear head predicting the corpora's attribute tags (instrument families, mode, meter,
tempo class, source package, rendered vs recorded; ``data/tags.py``). It is small (≈ 0.1 M parameters) and
trained in minutes on a CPU (``train/tagger.py``), so it knows far less than VGGish; its distances are
reported under its own name and always beside their real-vs-real floor.

Shapes: audio ``(B, T)`` -> log-Mel ``(B, n_mels, frames)`` -> embedding ``(B, embed_dim)`` -> logits
``(B, tags)``. Any window length of at least a few frames works (the pooling is global).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..metrics.reconstruction import log_mel_magnitude


@dataclass
class TaggerConfig:
    """Input spectrum, width and the tags it was trained on (their order is the head's)."""

    sample_rate: int = 24000
    n_mels: int = 64
    stft_window: int = 1024  # hop = a quarter (the Mel distance's convention)
    width: int = 96
    embed_dim: int = 64
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class AudioTagger(nn.Module):
    """Log-Mel -> conv stack -> pooled statistics -> embedding -> tag logits."""

    def __init__(self, config: TaggerConfig):
        super().__init__()
        self.config = c = config
        # per-band standardisation of the log-Mel, set from the training clips (buffers: saved with the weights)
        self.register_buffer("band_mean", torch.zeros(c.n_mels, 1))
        self.register_buffer("band_std", torch.ones(c.n_mels, 1))
        self.convs = nn.Sequential(
            nn.Conv1d(c.n_mels, c.width, 5, padding=2), nn.GELU(),
            nn.Conv1d(c.width, c.width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(c.width, c.width, 3, stride=2, padding=1), nn.GELU(),
        )
        self.embed_layer = nn.Sequential(nn.Linear(2 * c.width, c.embed_dim), nn.GELU())
        self.head = nn.Linear(c.embed_dim, max(len(c.tags), 1))

    def log_mel(self, wav: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, n_mels, frames)`` log10 Mel magnitude."""
        return log_mel_magnitude(wav.float(), self.config.sample_rate, self.config.stft_window, self.config.n_mels)

    def embed_mel(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, frames)`` -> ``(B, embed_dim)``: the penultimate layer."""
        h = self.convs((mel - self.band_mean) / self.band_std)
        return self.embed_layer(torch.cat([h.mean(-1), h.std(-1, unbiased=False)], dim=-1))

    def forward(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, frames)`` -> ``(B, tags)`` logits."""
        return self.head(self.embed_mel(mel))

    @torch.no_grad()
    def embed(self, wav: Tensor) -> Tensor:
        """``(B, T)`` audio -> ``(B, embed_dim)`` embeddings (eval mode)."""
        self.eval()
        return self.embed_mel(self.log_mel(wav))
