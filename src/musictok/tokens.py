"""The vocabulary that tokenizers, language models and metrics share.

- :class:`StreamSpec` / :class:`TokenLayout` — what a tokenizer emits: one or more streams, each with a
  frame rate, a number of slots per frame, each slot's codebook size, and what the slot axis means.
  Token rate, bitrate and the normaliser of cnBPT all derive from the layout.
- :class:`Tokens` — the codes themselves plus everything needed to decode them safely: the layout, the
  fingerprint of the tokenizer that made them, the sample rate and the original lengths; for audio of
  several channels, the channel layout (each channel is its own set of streams) and the input's own
  sample rate, so decoding can give both back.
- ``.mtok`` files — a safetensors file holding one tensor per stream (smallest unsigned type that fits)
  and a JSON header; a checksum over the codes makes a damaged file fail loudly instead of decoding noise.

Neither tokenizers nor LMs import each other; both import this module.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .atomic import atomic_path
from .errors import MusictokError

MTOK_FORMAT = "musictok.tokens"
MTOK_VERSION = 2  # 2: channel layouts (stereo, mid-side); the newest format this code reads and writes
SLOT_AXES = ("band", "residual", "level", "track", "codebook")
# Channel layouts of a token file, each with its channels' names in stream order. Every tokenizer is mono:
# a file of C channels holds the tokenizer's streams C times, channel-major, named "<channel>.<stream>".
CHANNEL_LAYOUTS: dict[str, tuple[str, ...]] = {"mono": ("mono",), "stereo": ("left", "right"),
                                               "mid-side": ("mid", "side")}


class TokenFileError(MusictokError):
    """A ``.mtok`` file that cannot be used (missing or damaged)."""


@dataclass(frozen=True)
class StreamSpec:
    """One stream of a layout: codes shaped ``(batch, frames, num_slots)``.

    ``codebook_sizes`` has one entry per slot; ``shared_codebook`` says the slots index one codebook
    (BandTok's bands) rather than a codebook each (RVQ levels) — metrics pool their statistics then.
    """

    name: str
    frame_rate: float  # frames per second
    codebook_sizes: tuple[int, ...]
    slot_axis: str = "codebook"
    shared_codebook: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(k) for k in self.codebook_sizes))
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"stream {self.name!r}: every slot needs a codebook size >= 1")
        if self.frame_rate <= 0:
            raise ValueError(f"stream {self.name!r}: frame rate must be positive")
        if self.slot_axis not in SLOT_AXES:
            raise ValueError(f"stream {self.name!r}: slot axis must be one of {SLOT_AXES}")
        if self.shared_codebook and len(set(self.codebook_sizes)) != 1:
            raise ValueError(f"stream {self.name!r}: a shared codebook has one size for all slots")

    @property
    def num_slots(self) -> int:
        return len(self.codebook_sizes)

    @property
    def tokens_per_second(self) -> float:
        return self.frame_rate * self.num_slots

    @property
    def bitrate(self) -> float:
        """Bits per second: frame rate × Σ log2 K over the slots."""
        return self.frame_rate * sum(math.log2(k) for k in self.codebook_sizes)

    @property
    def mean_log2_codebook_size(self) -> float:
        return sum(math.log2(k) for k in self.codebook_sizes) / self.num_slots


@dataclass(frozen=True)
class TokenLayout:
    """All streams a tokenizer emits, in order."""

    streams: tuple[StreamSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))
        if not self.streams:
            raise ValueError("a layout needs at least one stream")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique, got {names}")

    @property
    def tokens_per_second(self) -> float:
        return sum(s.tokens_per_second for s in self.streams)

    @property
    def bitrate(self) -> float:
        return sum(s.bitrate for s in self.streams)

    def to_dict(self) -> dict:
        return {"streams": [asdict(s) | {"codebook_sizes": list(s.codebook_sizes)} for s in self.streams]}

    @classmethod
    def from_dict(cls, d: dict) -> TokenLayout:
        return cls(tuple(StreamSpec(**s) for s in d["streams"]))


@dataclass(frozen=True)
class Fingerprint:
    """Which tokenizer made a set of tokens: its name, a hash of its config and one of its weights."""

    name: str
    config_hash: str
    weights_hash: str

    def short(self) -> str:
        return f"{self.name} (config {self.config_hash[:8]}, weights {self.weights_hash[:8]})"


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def weights_hash(state: dict[str, Tensor]) -> str:
    """A hash over every tensor's name, dtype, shape and bytes, in sorted key order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _smallest_uint(max_code: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if max_code <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


@dataclass(frozen=True)
class SourceAudio:
    """The audio file the tokens were encoded from, in its own terms: its sample rate, its channel count
    and each clip's length in its own samples — what decoding needs to give back the input's rate at its
    exact length (a length at the tokenizer's rate maps back to several lengths at a higher rate)."""

    sample_rate: int
    channels: int
    lengths: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", tuple(int(n) for n in self.lengths))
        if self.sample_rate <= 0 or self.channels < 1 or min(self.lengths, default=0) < 1:
            raise ValueError(f"source audio needs a positive rate, channels and lengths, got {self}")

    def to_dict(self) -> dict:
        return {"sample_rate": self.sample_rate, "channels": self.channels, "lengths": list(self.lengths)}


@dataclass
class Tokens:
    """Codes of one or more clips, per stream ``(batch, frames, slots)`` long, with their provenance.

    ``lengths`` are the original lengths in samples of each clip; clips shorter than the longest are
    padded in ``codes`` and ``frames(i)`` says how many frames are real. ``channels`` names a
    :data:`CHANNEL_LAYOUTS` entry: beyond ``"mono"`` the layout holds the tokenizer's streams once per
    channel (``musictok.channels`` makes and decodes such tokens). ``source`` describes the input file.
    """

    codes: list[Tensor]
    layout: TokenLayout
    fingerprint: Fingerprint
    sample_rate: int
    lengths: list[int]
    extra: dict = field(default_factory=dict)  # tokenizer-specific facts (e.g. chunking), JSON-ready
    # Per clip, the gain that decoding multiplies back in: tokenizers that normalise the level before
    # encoding (gain-invariant tokens) store the removed scale here, as EnCodec's normalised mode does.
    # ``None``: no level was removed.
    scales: list[float] | None = None
    channels: str = "mono"
    source: SourceAudio | None = None

    def __post_init__(self) -> None:
        if self.channels not in CHANNEL_LAYOUTS:
            raise ValueError(f"channels must be one of {', '.join(CHANNEL_LAYOUTS)}, got {self.channels!r}")
        names, streams = CHANNEL_LAYOUTS[self.channels], self.layout.streams
        if self.channels != "mono":
            per = len(streams) // len(names)
            if len(streams) % len(names) or any(not s.name.startswith(f"{names[i // per]}.")
                                                for i, s in enumerate(streams)):
                raise ValueError(f"a {self.channels} layout holds each stream once per channel, named "
                                 f"{names[0]}.<stream> …; got streams {[s.name for s in streams]}")
        if self.source is not None and len(self.source.lengths) != len(self.lengths):
            raise ValueError(f"{len(self.source.lengths)} source lengths for {len(self.lengths)} clips")
        if len(self.codes) != len(self.layout.streams):
            raise ValueError(f"{len(self.codes)} code tensors for {len(self.layout.streams)} streams")
        for c, s in zip(self.codes, self.layout.streams):
            if c.ndim != 3 or c.shape[-1] != s.num_slots:
                raise ValueError(f"stream {s.name!r}: codes must be (batch, frames, {s.num_slots}), "
                                 f"got {tuple(c.shape)}")
            if c.shape[0] != len(self.lengths):
                raise ValueError(f"{c.shape[0]} clips of codes but {len(self.lengths)} lengths")
        if self.scales is not None:
            self.scales = [float(x) for x in self.scales]
            if len(self.scales) != len(self.lengths) or not all(math.isfinite(x) and x > 0 for x in self.scales):
                raise ValueError(f"scales must be one finite positive number per clip, got {self.scales}")

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return CHANNEL_LAYOUTS[self.channels]

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def frames(self, index: int, stream: int = 0) -> int:
        """Real (unpadded) frames of clip ``index`` in ``stream``."""
        rate = self.layout.streams[stream].frame_rate
        return min(int(math.ceil(self.lengths[index] * rate / self.sample_rate - 1e-9)),
                   self.codes[stream].shape[1])

    def item(self, index: int) -> Tokens:
        """One clip, padding removed."""
        codes = [c[index: index + 1, : self.frames(index, s)] for s, c in enumerate(self.codes)]
        source = None if self.source is None else SourceAudio(
            self.source.sample_rate, self.source.channels, (self.source.lengths[index],))
        return Tokens(codes, self.layout, self.fingerprint, self.sample_rate, [self.lengths[index]],
                      dict(self.extra), None if self.scales is None else [self.scales[index]], self.channels,
                      source)

    def to(self, device: torch.device | str) -> Tokens:
        return Tokens([c.to(device) for c in self.codes], self.layout, self.fingerprint, self.sample_rate,
                      list(self.lengths), dict(self.extra), None if self.scales is None else list(self.scales),
                      self.channels, self.source)

    @property
    def duration(self) -> float:
        return max(self.lengths) / self.sample_rate

    # ---------------------------------------------------------------- .mtok files
    def header(self) -> dict:
        """The JSON header. Its ``format_version`` is the oldest format that holds the file: mono tokens stay
        format 1 (an older musictok reads them, ignoring the ``channels`` and ``source`` it does not know),
        channels need format 2, which an older musictok refuses instead of decoding two channels as one."""
        channels = {"layout": self.channels, "count": self.num_channels, "names": list(self.channel_names)}
        return {
            "format": MTOK_FORMAT,
            "format_version": 1 if self.channels == "mono" else 2,
            "musictok_version": __version__,
            "layout": self.layout.to_dict(),
            "tokenizer": asdict(self.fingerprint),
            "sample_rate": self.sample_rate,
            "lengths": list(self.lengths),
            "extra": self.extra,
            "channels": channels,
        } | ({} if self.scales is None else {"scales": list(self.scales)}) | (
            {} if self.source is None else {"source": self.source.to_dict()})

    def save(self, path: str | os.PathLike) -> Path:
        """Write a ``.mtok`` file atomically (temp file, then rename)."""
        from safetensors.numpy import save_file

        p = Path(path)
        arrays = {}
        for i, (c, s) in enumerate(zip(self.codes, self.layout.streams)):
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= max(s.codebook_sizes)):
                raise ValueError(f"stream {s.name!r} has codes outside [0, {max(s.codebook_sizes)}); "
                                 "they cannot be stored")
            arrays[f"stream{i}"] = c.detach().cpu().numpy().astype(_smallest_uint(max(s.codebook_sizes) - 1))
        header = self.header()
        header["checksum"] = _checksum(arrays, header)
        with atomic_path(p) as tmp:
            save_file(arrays, str(tmp), metadata={"musictok": json.dumps(header)})
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokens:
        """Read a ``.mtok`` file; any damage raises :class:`TokenFileError` naming the file."""
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise TokenFileError(p, "file not found")
        try:
            with safe_open(str(p), framework="numpy") as f:
                meta = f.metadata() or {}
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise TokenFileError(p, _unreadable(p, e)) from None
        try:
            header = json.loads(meta["musictok"])
            if header.get("format") != MTOK_FORMAT:
                raise KeyError("format")
        except (KeyError, ValueError):
            raise TokenFileError(p, "not a musictok token file (no musictok header)") from None
        if header.get("format_version", 0) > MTOK_VERSION:
            raise TokenFileError(p, f"written by a newer musictok (format {header['format_version']}); upgrade")
        checksum = header.pop("checksum", None)
        if _checksum(arrays, header) != checksum:
            raise TokenFileError(p, "codes or header do not match their checksum: the file is damaged")
        try:
            layout = TokenLayout.from_dict(header["layout"])
            codes = [torch.from_numpy(arrays[f"stream{i}"].astype(np.int64)) for i in range(len(layout.streams))]
            for c, s in zip(codes, layout.streams):
                if c.numel() and int(c.max()) >= max(s.codebook_sizes):
                    raise TokenFileError(p, f"stream {s.name!r} holds codes beyond its codebook size")
            channels = header.get("channels", {"layout": "mono"})
            if "names" in channels and tuple(channels["names"]) != CHANNEL_LAYOUTS.get(channels["layout"]):
                raise ValueError(f"channel names {channels['names']} do not match layout {channels['layout']!r}")
            source = header.get("source")
            return cls(codes, layout, Fingerprint(**header["tokenizer"]), int(header["sample_rate"]),
                       [int(n) for n in header["lengths"]], header.get("extra", {}), header.get("scales"),
                       channels["layout"], None if source is None else SourceAudio(**source))
        except (KeyError, TypeError, ValueError) as e:
            raise TokenFileError(p, f"inconsistent token file ({type(e).__name__}: {e})") from None


def _unreadable(p: Path, e: Exception) -> str:
    """Why safetensors could not open a file, in terms of the file: cut short, or not a token file.

    A safetensors file starts with the length of its JSON header (8 bytes, little-endian), then the header,
    which gives every tensor's byte range."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        text = f.read(n) if 0 < n <= min(size - 8, 100_000_000) else b""
    if n < 0:
        return f"not a token file: {size} bytes is too short to hold even a header"
    if not text.startswith(b"{"):
        if 0 < n < 100_000_000 and n > size - 8:
            return f"truncated or damaged: its header should be {n} bytes long, but the file ends at byte {size}"
        return "not a token file (no safetensors header at the start), or its first bytes are damaged"
    try:
        tensors = json.loads(text)
        end = max((t["data_offsets"][1] for k, t in tensors.items() if k != "__metadata__"), default=0)
    except (ValueError, KeyError, TypeError, IndexError):
        return "damaged: its header is not valid JSON"
    if 8 + n + end > size:
        return f"truncated: the codes end at byte {8 + n + end}, the file at byte {size}"
    reason = str(e).splitlines()[0].strip() if str(e).strip() else type(e).__name__
    return f"damaged: the codes do not match their header ({reason})"


def _checksum(arrays: dict[str, np.ndarray], header: dict) -> str:
    """Over the codes and the header (lengths, layout, fingerprint …), so damage anywhere is caught."""
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]
