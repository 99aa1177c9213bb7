"""Audio of several channels as tokens: every channel is its own set of token streams.

Every tokenizer here is mono — its contract is ``(B, T)`` — and LMs are trained on mono tokens. Stereo
therefore does not need a stereo model: each channel is encoded on its own by the same tokenizer (all
channels of a batch in one forward pass), and the channels' streams travel together in one
:class:`~musictok.tokens.Tokens` whose layout holds the tokenizer's streams once per channel, channel-major,
named ``left.<stream>``, ``right.<stream>`` (``Tokens.channels`` names the layout, see
:data:`~musictok.tokens.CHANNEL_LAYOUTS`). Decoding splits them back into a batch of mono clips, decodes
that batch, and puts the channels back in order.

Two channel layouts of a stereo signal ``(L, R)``:

- ``stereo``: the left and the right channel as they are;
- ``mid-side``: ``M = (L + R) / 2`` and ``S = (L − R) / 2``, decoded back with ``L = M + S``, ``R = M − S``.
  Most of a mix sits in the mid; a near-mono recording has a quiet side. The sums must cancel what each
  channel does not hold, so they need a decoder that returns the waveform, phase included. A phase-free
  decoder (``Tokenizer.phase_free``: both bundled ones) picks the phases of M and S on its own: a source
  panned hard left has the same magnitudes in M and S, so it lands in both channels or in neither
  (``docs/results/stereo.md``). ``stereo`` has no such sums.

Gain: a level-normalising tokenizer (``level_dbfs``) gets one gain per clip, measured over all samples of
the left and right channels, and shared by the clip's channels (as EnCodec's normalised stereo mode and
DuoTok's stems, whose gain is their mix's). So the tokens keep the balance of the channels — a hard-panned
source, a side ten times quieter than the mid — and ``Tokens.scales`` keeps one number per clip.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .tokens import CHANNEL_LAYOUTS, TokenLayout, Tokens


def to_channels(wav: Any, channels: str) -> Any:
    """``(..., C, T)`` left/right audio (numpy or torch) -> ``(..., K, T)``: the channels of ``channels``.

    ``mono`` averages the ``C`` channels (any number) into one; ``stereo`` and ``mid-side`` take two."""
    _check_layout(channels)
    if channels == "mono":
        return wav.mean(-2, keepdims=True) if isinstance(wav, np.ndarray) else wav.mean(-2, keepdim=True)
    if wav.shape[-2] != 2:
        raise ValueError(f"{channels} takes two channels (left, right), got {wav.shape[-2]}")
    if channels == "stereo":
        return wav
    left, right = wav[..., 0, :], wav[..., 1, :]
    return _stack([(left + right) / 2, (left - right) / 2])


def from_channels(x: Any, channels: str) -> Any:
    """The inverse of :func:`to_channels` (for ``mono``: the one channel): ``(..., K, T)`` -> left/right."""
    _check_layout(channels)
    if channels != "mid-side":
        return x
    mid, side = x[..., 0, :], x[..., 1, :]
    return _stack([mid + side, mid - side])


def channel_layout(layout: TokenLayout, channels: str) -> TokenLayout:
    """A tokenizer's layout once per channel of ``channels``, streams named ``<channel>.<stream>``."""
    _check_layout(channels)
    if channels == "mono":
        return layout
    return TokenLayout(tuple(dataclasses.replace(s, name=f"{c}.{s.name}")
                             for c in CHANNEL_LAYOUTS[channels] for s in layout.streams))


def join_channels(batch: Tokens, channels: str) -> Tokens:
    """``B × C`` mono clips, clip-major (row ``b C + c`` is clip ``b``'s channel ``c``) -> ``B`` clips of
    ``C`` channels. The channels of a clip must have the same length and the same scale."""
    _check_layout(channels)
    if batch.channels != "mono":
        raise ValueError(f"join_channels takes mono tokens, got {batch.channels}")
    c = len(CHANNEL_LAYOUTS[channels])
    if batch.batch_size % c:
        raise ValueError(f"{batch.batch_size} clips are not whole groups of {c} channels")
    b = batch.batch_size // c
    lengths = [batch.lengths[i * c] for i in range(b)]
    scales = None if batch.scales is None else [batch.scales[i * c] for i in range(b)]
    for i in range(b):
        group = slice(i * c, (i + 1) * c)
        if len(set(batch.lengths[group])) != 1 or (scales is not None and len(set(batch.scales[group])) != 1):
            raise ValueError(f"the channels of clip {i} differ in length or scale")
    codes = [stream.reshape(b, c, *stream.shape[1:])[:, k] for k in range(c) for stream in batch.codes]
    return Tokens(codes, channel_layout(batch.layout, channels), batch.fingerprint, batch.sample_rate, lengths,
                  dict(batch.extra), scales, channels)


def split_channels(tokens: Tokens) -> Tokens:
    """The inverse of :func:`join_channels`: ``B`` clips of ``C`` channels -> ``B × C`` mono clips in the
    tokenizer's own layout (what ``Tokenizer.decode`` takes); mono tokens are returned as they are."""
    if tokens.channels == "mono":
        return tokens
    c = tokens.num_channels
    per = len(tokens.layout.streams) // c
    prefix = len(tokens.channel_names[0]) + 1
    layout = TokenLayout(tuple(dataclasses.replace(s, name=s.name[prefix:]) for s in tokens.layout.streams[:per]))
    codes = [torch.stack([tokens.codes[k * per + s] for k in range(c)], dim=1).flatten(0, 1) for s in range(per)]
    repeat = lambda xs: [x for x in xs for _ in range(c)]  # noqa: E731
    return Tokens(codes, layout, tokens.fingerprint, tokens.sample_rate, repeat(tokens.lengths), dict(tokens.extra),
                  None if tokens.scales is None else repeat(tokens.scales))


def shared_scale(wav: Tensor, level_dbfs: float) -> float:
    """The gain a level-normalising tokenizer removes from one clip of ``(C, T)`` left/right audio: over all
    of its samples, so one stereo file gets one gain and its channels keep their balance."""
    from .tokenizers.base import level_scale

    return level_scale(wav.reshape(-1), level_dbfs)


@torch.no_grad()
def encode_channels(tokenizer, wav: Any, channels: str = "stereo", *, chunk_units: int | None = None) -> Tokens:
    """Tokenize ``(C, T)`` or ``(B, C, T)`` left/right audio at the tokenizer's rate, each channel of
    ``channels`` as its own streams (``mono`` downmixes any number of channels): ``B`` clips."""
    _check_layout(channels)
    x = torch.as_tensor(np.asarray(wav) if not isinstance(wav, Tensor) else wav).float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"audio must be (C, T) or (B, C, T) channels, got shape {tuple(x.shape)}")
    if getattr(tokenizer, "stem_inputs", 0) and channels != "mono":
        raise ValueError(f"a {tokenizer.name} tokenizer of several tracks encodes mono mixes, not {channels}")
    parts = to_channels(x, channels)  # (B, K, T)
    scales = None
    if tokenizer.level_dbfs is not None and channels != "mono":
        scales = [shared_scale(clip, tokenizer.level_dbfs) for clip in x for _ in range(parts.shape[1])]
    batch = tokenizer.encode(parts.flatten(0, 1), chunk_units=chunk_units, scales=scales)
    return join_channels(batch, channels)


@torch.no_grad()
def decode_channels(tokenizer, tokens: Tokens, *, chunk_units: int | None = None, **options: Any) -> Tensor:
    """Tokens of any channel layout -> ``(B, C, T)`` audio at the tokenizer's rate: left and right in order
    for ``stereo`` and ``mid-side`` (unmixed), one channel for ``mono``."""
    y = tokenizer.decode(split_channels(tokens), chunk_units=chunk_units, **options)
    if y.ndim != 2:
        raise ValueError(f"decode_channels takes a tokenizer of one track, {tokenizer.name} decodes {y.ndim - 1}")
    return from_channels(y.reshape(tokens.batch_size, tokens.num_channels, -1), tokens.channels)


def _check_layout(channels: str) -> None:
    if channels not in CHANNEL_LAYOUTS:
        raise ValueError(f"channels must be one of {', '.join(CHANNEL_LAYOUTS)}, got {channels!r}")


def _stack(parts: list) -> Any:
    """Stack along a new channel axis just before time, for numpy arrays and tensors alike."""
    if isinstance(parts[0], np.ndarray):
        return np.stack(parts, axis=-2)
    return torch.stack(parts, dim=-2)
