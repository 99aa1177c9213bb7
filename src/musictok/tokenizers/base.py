"""The contract every tokenizer keeps, and what they all get for free.

A subclass supplies three model functions on padded, equal-length batches — ``_encode_codes``,
``_decode_codes`` and ``_embed_codes`` — plus its ``layout``. The base class turns them into the public
API: ``encode`` (any length, any batch of mixed lengths, long files in overlapping chunks with bounded
memory), ``decode`` (refuses tokens made by another tokenizer), ``code_embeddings``, fingerprints, and
``save_pretrained`` / ``from_pretrained`` (safetensors + JSON; user files are never unpickled).
"""

from __future__ import annotations

import abc
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .. import pretrained
from ..audio import SILENCE_RMS
from ..errors import MusictokError
from ..tokens import Fingerprint, TokenLayout, Tokens, config_hash, weights_hash

TOKENIZERS: dict[str, type["Tokenizer"]] = {}  # name -> class, filled by @register_tokenizer
ENCODE_PRECISIONS = ("fp32", "bf16")  # see Tokenizer.set_encode_precision


class TokenizerError(MusictokError):
    """A tokenizer that cannot be found or loaded, or tokens it must refuse."""


def register_tokenizer(name: str):
    """Class decorator: make a tokenizer findable by name in saved configs."""

    def wrap(cls: type[Tokenizer]) -> type[Tokenizer]:
        cls.name = name
        TOKENIZERS[name] = cls
        return cls

    return wrap


def _load_builtin_tokenizers() -> None:
    from . import bandtok, duotok, pyramid, rvq_codec  # noqa: F401  (each registers itself)


def _as_clips(wav: Any, stems: int = 0) -> list[Tensor]:
    """``(T,)``, ``(B, T)`` or a list of ``(T_i,)`` (tensors or arrays) -> list of 1-D float tensors.

    A tokenizer that also takes stems (``stems = S > 0``, e.g. DuoTok's lead and accompaniment) accepts
    ``(B, S, T)`` or a list of ``(S, T_i)`` as well: those clips stay ``(S, T)``."""
    if isinstance(wav, (list, tuple)):
        clips = [torch.as_tensor(np.asarray(w) if not isinstance(w, Tensor) else w) for w in wav]
    else:
        w = torch.as_tensor(np.asarray(wav) if not isinstance(wav, Tensor) else wav)
        if w.ndim == 1:
            clips = [w]
        elif w.ndim == 2:
            clips = list(w)
        elif w.ndim == 3 and w.shape[1] == 1:
            clips = list(w[:, 0])
        elif w.ndim == 3 and stems > 1 and w.shape[1] == stems:
            clips = list(w)
        else:
            also = f" or (B, {stems}, T) stems" if stems > 1 else ""
            raise ValueError(f"audio must be (T,), (B, T) or (B, 1, T) mono{also}, got shape {tuple(w.shape)}")
    for c in clips:
        stem_clip = stems > 1 and c.ndim == 2 and c.shape[0] == stems
        if (c.ndim != 1 and not stem_clip) or c.numel() == 0:
            what = f"1-D waveform (or ({stems}, T) stems)" if stems > 1 else "1-D waveform"
            raise ValueError(f"every clip must be a non-empty {what}, got shape {tuple(c.shape)}")
        if not bool(torch.isfinite(c).all()):
            raise ValueError("audio contains NaN or Inf samples")
    return [c.float() for c in clips]


class Tokenizer(nn.Module, abc.ABC):
    """Audio ↔ tokens. Subclasses set ``config_class`` and implement the abstract methods.

    Attributes a subclass sets in ``__init__``: ``config`` (a dataclass with ``sample_rate``),
    ``hop_samples`` (samples per frame of the slowest stream: the unit of chunking), and
    ``context_units`` (how many such frames of context make chunked encoding equal to whole-file
    encoding away from the seams: at least the encoder's receptive field).
    """

    name: ClassVar[str] = "tokenizer"
    config_class: ClassVar[type]
    hop_samples: int
    context_units: int
    chunk_units: int = 512  # frames of the slowest stream per chunk for long inputs
    max_batch: int = 16  # clips per forward pass when encoding many equal-length clips
    # Decoders trained on spectra alone (Mel / STFT losses, no waveform loss) pick their own phase, so
    # SI-SDR, SDR and waveform L1 against the input say little about them; a codec trained to match
    # the waveform sets this False.
    phase_free: ClassVar[bool] = True
    # Config fields, and the sub-modules of the same names, that only turn a decoded Mel into audio (a Mel
    # tokenizer's vocoder). They stay out of the fingerprint: another vocoder decodes the same tokens, so
    # LMs trained on them and token caches still fit; the whole state is hashed apart (``state_hash``).
    decode_only: ClassVar[tuple[str, ...]] = ()
    # A tokenizer of several tracks (DuoTok) also encodes stems given as ``(B, stems, T)``; its
    # ``_encode_codes`` then receives ``(B, stems, T)`` as well as ``(B, T)`` mixes, and its decoder returns
    # ``(B, stems, T)``. 0: mono input only.
    stem_inputs: ClassVar[int] = 0

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self._fingerprint: tuple[int, Fingerprint] | None = None
        self.source: str | None = None  # the name or folder it was loaded from, recorded in its tokens
        self.encode_precision = "fp32"  # set_encode_precision

    def set_encode_precision(self, precision: str) -> "Tokenizer":
        """Encode with the networks in ``bf16`` autocast (or ``fp32``, the default); returns ``self``.

        Why: on a GPU, or a CPU with bf16 matrix units, the encoder runs about twice as fast. Features
        (STFT, Mel) and the nearest-code search stay in fp32, so only codes at near-ties differ from fp32
        encoding (a percent or two: ``benchmarks/encode_throughput.py`` measures the share). Tokens so made
        record it (``extra["encode_precision"]``)."""
        if precision not in ENCODE_PRECISIONS:
            raise ValueError(f"encode precision must be one of {', '.join(ENCODE_PRECISIONS)}, got {precision!r}")
        self.encode_precision = precision
        return self

    def encoding_autocast(self):
        """The autocast context every encoding path runs ``_encode_codes`` in (per thread: autocast is
        thread-local)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.encode_precision == "bf16")

    def token_extra(self) -> dict:
        """What tokens made by this tokenizer record besides its fingerprint: where it was loaded from and a
        precision other than fp32."""
        extra: dict = {"tokenizer_source": self.source} if self.source else {}
        if self.encode_precision != "fp32":
            extra["encode_precision"] = self.encode_precision
        return extra

    # ---------------------------------------------------------------- what subclasses provide
    @property
    @abc.abstractmethod
    def layout(self) -> TokenLayout:
        """The streams this tokenizer emits (abstract)."""

    @abc.abstractmethod
    def _encode_codes(self, wav: Tensor) -> list[Tensor]:
        """``(B, T)`` with ``T % hop_samples == 0`` -> per stream ``(B, frames, slots)`` long (abstract)."""

    @abc.abstractmethod
    def _decode_codes(self, codes: list[Tensor], **options: Any) -> Tensor:
        """Per stream codes -> ``(B, units * hop_samples)`` waveform (abstract). ``options`` are what a
        tokenizer's ``decode`` accepts beyond the tokens (e.g. PyramidCodec's ``levels``)."""

    @abc.abstractmethod
    def _embed_codes(self, codes: list[Tensor]) -> list[Tensor]:
        """Per stream codes -> ``(B, frames, slots, D)`` post-quantization vectors (abstract)."""

    @abc.abstractmethod
    def training_losses(self, batch: dict) -> dict[str, Tensor]:
        """Reconstruction-side losses of one batch for this tokenizer's trainer (abstract)."""

    # ---------------------------------------------------------------- derived facts
    @property
    def level_dbfs(self) -> float | None:
        """RMS level (dBFS) every clip is scaled to before encoding, or ``None`` (the level is kept in
        the tokens). With a level set, tokens do not change with the input's gain, and the removed scale
        travels in ``Tokens.scales`` so decoding restores the original level."""
        return getattr(self.config, "level_dbfs", None)

    @property
    def sample_rate(self) -> int:
        return int(self.config.sample_rate)

    @property
    def num_decode_levels(self) -> int | None:
        """How many levels ``decode(levels=k)`` accepts (RVQ codebooks, pyramid levels); ``None``: none."""
        return None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _frames_per_unit(self) -> list[int]:
        out = []
        for s in self.layout.streams:
            f = s.frame_rate * self.hop_samples / self.sample_rate
            assert abs(f - round(f)) < 1e-6, "every stream's frame must divide the chunk unit"
            out.append(int(round(f)))
        return out

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def _version_key(self) -> int:
        """In-place updates bump a tensor's version counter, so the sum grows whenever weights change."""
        return sum(t._version for t in list(self.parameters()) + list(self.buffers()))

    def token_space(self, state: dict[str, Tensor] | None = None) -> tuple[dict, dict[str, Tensor]]:
        """The config and the weights (of ``state``, default this model's) that decide what a token means:
        everything but the :attr:`decode_only` parts."""
        state = self.state_dict() if state is None else state
        cfg = {k: v for k, v in self.config_dict().items() if k not in self.decode_only}
        return cfg, {k: v for k, v in state.items() if k.split(".", 1)[0] not in self.decode_only}

    def fingerprint(self) -> Fingerprint:
        """Name + config hash + weights hash of the :meth:`token_space`; cached until any parameter or
        buffer changes in place."""
        key = self._version_key()
        if self._fingerprint is None or self._fingerprint[0] != key:
            cfg, state = self.token_space()
            fp = Fingerprint(self.name, config_hash(cfg), weights_hash(state))
            self._fingerprint = (key, fp)
        return self._fingerprint[1]

    # ---------------------------------------------------------------- public API
    @torch.no_grad()
    def encode(self, wav: Any, *, chunk_units: int | None = None, scales: Sequence[float] | None = None
               ) -> Tokens:
        """Tokenize mono audio at ``self.sample_rate``: ``(T,)``, ``(B, T)`` or a list of clips of any
        lengths. Clips of equal length are batched (at most ``max_batch`` at a time); clips longer than
        ``chunk_units + 2 × context_units`` frames are encoded in overlapping chunks, so memory is bounded
        by the chunk size whatever the input length.

        ``scales`` (one per clip) replaces the gains a level-normalising tokenizer measures on each clip:
        clips that are parts of one signal, such as the channels of a stereo file (``musictok.channels``),
        share the gain of the whole so that their balance stays in the tokens."""
        clips = _as_clips(wav, self.stem_inputs)
        if scales is not None:
            if self.level_dbfs is None:
                raise ValueError(f"scales: a {self.name} tokenizer without level_dbfs keeps the level in its "
                                 "tokens; it takes no scales")
            scales = [float(g) for g in scales]
            if len(scales) != len(clips) or not all(np.isfinite(g) and g > 0 for g in scales):
                raise ValueError(f"scales: one finite positive gain per clip ({len(clips)}), got {scales}")
        elif self.level_dbfs is not None:  # stems are scaled together, by the level of their mix
            scales = [level_scale(c if c.ndim == 1 else c.sum(0), self.level_dbfs) for c in clips]
        if scales is not None:
            clips = [c / g for c, g in zip(clips, scales)]
        was_training = self.training
        self.eval()  # encoding must never move EMA codebooks or other training state
        try:
            per_clip: list[list[Tensor] | None] = [None] * len(clips)
            by_length: dict[tuple[int, ...], list[int]] = {}
            for i, c in enumerate(clips):
                by_length.setdefault(tuple(c.shape), []).append(i)
            for n, same in by_length.items():
                for k in range(0, len(same), self.max_batch):
                    idx = same[k: k + self.max_batch]
                    batch = torch.stack([clips[i] for i in idx]).to(self.device)
                    with self.encoding_autocast():
                        codes = self._encode_long(batch, chunk_units or self.chunk_units)
                    for j, i in enumerate(idx):
                        per_clip[i] = [c[j: j + 1] for c in codes]
        finally:
            self.train(was_training)
        codes = [_pad_cat([pc[s] for pc in per_clip]) for s in range(len(self.layout.streams))]
        return Tokens(codes, self.layout, self.fingerprint(), self.sample_rate, [c.shape[-1] for c in clips],
                      self.token_extra(), scales)

    def _encode_long(self, wav: Tensor, chunk_units: int) -> list[Tensor]:
        hop = self.hop_samples
        units = -(-wav.shape[-1] // hop)
        wav = nn.functional.pad(wav, (0, units * hop - wav.shape[-1]))
        if units <= chunk_units + 2 * self.context_units:
            return self._encode_codes(wav)
        fpu = self._frames_per_unit()
        pieces: list[list[Tensor]] = [[] for _ in fpu]
        for start in range(0, units, chunk_units):
            stop = min(start + chunk_units, units)
            lo, hi = max(start - self.context_units, 0), min(stop + self.context_units, units)
            codes = self._encode_codes(wav[..., lo * hop: hi * hop])
            for s, f in enumerate(fpu):
                pieces[s].append(codes[s][:, (start - lo) * f: (stop - lo) * f])
        return [torch.cat(p, dim=1) for p in pieces]

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, chunk_units: int | None = None, **options: Any) -> Tensor:
        """Tokens -> ``(B, max length)`` waveform (each clip trimmed to its original length, zero after);
        ``(B, stems, max length)`` for a tokenizer of several tracks.

        Refuses tokens whose fingerprint is not this tokenizer's. ``options`` go to the model's decoder
        (e.g. ``levels=1`` for a PyramidCodec prefix)."""
        self.check_tokens(tokens)
        was_training = self.training
        self.eval()
        try:
            codes = [c.to(self.device) for c in tokens.codes]
            wav = self._decode_long(codes, chunk_units or self.chunk_units, options)
        finally:
            self.train(was_training)
        out = torch.zeros(tokens.batch_size, *wav.shape[1:-1], max(tokens.lengths), device=wav.device)
        for i, n in enumerate(tokens.lengths):
            m = min(n, wav.shape[-1])
            out[i, ..., :m] = wav[i, ..., :m] * (1.0 if tokens.scales is None else tokens.scales[i])
        return out

    def _decode_long(self, codes: list[Tensor], chunk_units: int, options: dict | None = None) -> Tensor:
        fpu = self._frames_per_unit()
        options = options or {}
        units = -(-codes[0].shape[1] // fpu[0])
        if units <= chunk_units + 2 * self.context_units:
            return self._decode_codes(codes, **options)
        hop = self.hop_samples
        out = []
        for start in range(0, units, chunk_units):
            stop = min(start + chunk_units, units)
            lo, hi = max(start - self.context_units, 0), min(stop + self.context_units, units)
            wav = self._decode_codes([c[:, lo * f: hi * f] for c, f in zip(codes, fpu)], **options)
            out.append(wav[..., (start - lo) * hop: (stop - lo) * hop])
        return torch.cat(out, dim=-1)

    def reconstruction_paths(self) -> dict[str, Callable[[Tensor], Tensor] | None]:
        """Named ways to reconstruct ``(B, T)`` audio for evaluation. ``"tokens"`` (encode then decode) is
        always there; Mel tokenizers add paths that skip the quantizer or swap the vocoder."""
        return {"tokens": None}

    def check_tokens(self, tokens: Tokens) -> None:
        if tokens.channels != "mono":
            raise TokenizerError(f"these tokens hold {tokens.num_channels} channels ({tokens.channels}); a "
                                 "tokenizer decodes one: use musictok.channels.decode_channels")
        mine = self.fingerprint()
        if tokens.fingerprint != mine:
            raise TokenizerError(f"these tokens were made by {tokens.fingerprint.short()}, "
                                 f"not by this tokenizer {mine.short()}; decode them with the tokenizer that made them")
        if tokens.sample_rate != self.sample_rate:
            raise TokenizerError(f"tokens are at {tokens.sample_rate} Hz, tokenizer at {self.sample_rate} Hz")

    @torch.no_grad()
    def code_embeddings(self, tokens: Tokens) -> list[Tensor]:
        """Per stream ``(B, frames, slots, D)`` quantized vectors, for probes and the MMD statistic."""
        self.check_tokens(tokens)
        return self._embed_codes([c.to(self.device) for c in tokens.codes])

    def dependence_embeddings(self, tokens: Tokens) -> list[Tensor]:
        """Per stream ``(B, frames, slots, d)`` vectors the MMD between slots is measured on: the code
        embeddings, unless a tokenizer's codes are a function of other numbers (factorised look-ups)."""
        return self.code_embeddings(tokens)

    # ---------------------------------------------------------------- persistence
    def derived_keys(self) -> list[str]:
        """State the constructor rebuilds from the config alone (a module's ``derived_buffers``, e.g. SimVQ's
        seeded random basis): saving leaves it out of the file, loading takes the constructor's."""
        return [f"{name}.{b}" if name else b for name, m in self.named_modules()
                for b in getattr(m, "derived_buffers", ())]

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None, *,
                        storage_dtype: torch.dtype | None = None, vocoder_ref: str | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` into ``directory`` (replaced atomically).

        ``storage_dtype=torch.float16`` halves the file (bundled checkpoints stay a few MB); floating
        weights are rounded to it, and the saved fingerprint is that of the rounded weights — the model a
        user loads — so tokens made before saving with unrounded weights will not decode with it.
        State the constructor rebuilds (:meth:`derived_keys`) is not written. ``vocoder_ref`` (a bundled
        vocoder's name) leaves the vocoder out of the file too: it is named, with its fingerprint, and
        loaded from its own folder — it must be that vocoder. Neither changes a fingerprint: the loaded
        model's state is the same, and ``state_hash`` checks it on every load."""
        weights = pretrained.for_storage(self.state_dict(), storage_dtype)
        fp = self.fingerprint()
        if storage_dtype is not None:
            fp = Fingerprint(fp.name, fp.config_hash, weights_hash(self.token_space(weights.loaded)[1]))
        left_out = self.derived_keys()
        meta = {"tokenizer": self.name, "config": self.config_dict(), "fingerprint": dataclasses.asdict(fp),
                "state_hash": weights_hash(weights.loaded), "storage_dtype": weights.dtype,
                "derived_state": left_out} | (extra or {})
        if vocoder_ref is not None:
            meta["vocoder_ref"] = _vocoder_reference(weights.loaded, vocoder_ref)
            left_out = left_out + [k for k in weights.stored if k.startswith(VOCODER_PREFIX)]
        return pretrained.write(directory, {k: v for k, v in weights.stored.items() if k not in left_out}, meta)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> Tokenizer:
        """Load a saved tokenizer by folder or by bundled name (e.g. ``"bandtok-small"``)."""
        try:
            d, meta, state = pretrained.read(name_or_dir, map_location)
        except pretrained.PretrainedError as e:
            raise TokenizerError(str(e)) from None
        kind = meta.get("tokenizer")
        _load_builtin_tokenizers()
        if meta.get("model") == "token-lm":
            made_by = kind.get("source", "?") if isinstance(kind, dict) else "?"
            raise TokenizerError(f"{d}: is a token LM, not a tokenizer (its tokens come from {made_by}); "
                                 "use it with `musictok generate --lm`")
        if not isinstance(kind, str) or kind not in TOKENIZERS:
            raise TokenizerError(f"{d}: not a tokenizer folder, or unknown kind {kind!r} "
                                 f"(known: {', '.join(sorted(TOKENIZERS))})")
        klass = TOKENIZERS[kind]
        if cls is not Tokenizer and not issubclass(klass, cls):
            raise TokenizerError(f"{d}: holds a {kind} tokenizer, not a {cls.name}")
        if meta.get("vocoder_ref"):
            state = state | _referenced_vocoder(d, meta["vocoder_ref"], map_location)
        try:
            model = klass(klass.config_class.from_dict(meta["config"]))
            missing, unexpected = model.load_state_dict(state, strict=False)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise TokenizerError(f"{d}: config and weights do not make a {kind} tokenizer "
                                 f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
        derived = set(meta.get("derived_state") or ()) & set(model.derived_keys())
        missing = [k for k in missing if k not in derived]
        if derived and meta.get("storage_dtype", "as trained") != "as trained":  # as the saved ones were rounded
            dtype = getattr(torch, meta["storage_dtype"].removeprefix("torch."))
            with torch.no_grad():
                for k in derived:
                    buf = model.get_buffer(k)
                    buf.copy_(buf.to(dtype).to(buf.dtype))
        if missing or unexpected:
            raise TokenizerError(f"{d}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        model = model.to(map_location).eval()
        stored = meta.get("fingerprint")
        if stored:
            # Tokens name the tokenizer by the fingerprint it was saved with; checking the weights hash
            # catches damaged weights, and reusing the stored config hash keeps old token files decodable
            # when a later version adds config fields with defaults. Folders saved before the fingerprint left
            # out the vocoder (no ``state_hash``) hashed the whole state; they keep that fingerprint.
            fp = Fingerprint(**stored)
            whole = weights_hash(model.state_dict())
            if "state_hash" in meta:
                ok = meta["state_hash"] == whole and weights_hash(model.token_space()[1]) == fp.weights_hash
            else:
                ok = whole == fp.weights_hash
            if not ok:
                raise TokenizerError(f"{d / pretrained.WEIGHTS_FILE}: weights do not match the fingerprint "
                                     "in config.json: the folder is damaged")
            model._fingerprint = (model._version_key(), fp)
        # a folder is recorded as an absolute path, so tokens stay decodable from any working directory
        p = Path(name_or_dir)
        model.source = str(d.resolve()) if p.exists() else str(name_or_dir)
        return model


VOCODER_PREFIX = "vocoder."  # the attached vocoder's keys in a tokenizer's state


def _vocoder_reference(state: dict[str, Tensor], name: str) -> dict:
    """``{"name", "fingerprint"}`` of the bundled vocoder ``name``, which must be the one in ``state``."""
    from ..nn.vocoder import load_vocoder, vocoder_fingerprint

    mine = {k[len(VOCODER_PREFIX):]: v for k, v in state.items() if k.startswith(VOCODER_PREFIX)}
    if not mine:
        raise TokenizerError(f"vocoder_ref {name!r}: this tokenizer has no vocoder attached")
    try:
        theirs = load_vocoder(name)
    except pretrained.PretrainedError as e:
        raise TokenizerError(f"vocoder_ref: {e}") from None
    fp = vocoder_fingerprint(theirs)
    if vocoder_fingerprint(theirs, mine) != fp:
        raise TokenizerError(f"vocoder_ref {name!r}: its weights ({fp.short()}) are not this tokenizer's vocoder "
                             f"({vocoder_fingerprint(theirs, mine).short()}); keep the vocoder in the file")
    return {"name": name, "fingerprint": dataclasses.asdict(fp)}


def _referenced_vocoder(folder: Path, ref: dict, map_location) -> dict[str, Tensor]:
    """The state of the vocoder a folder names instead of storing, under the tokenizer's keys."""
    from ..nn.vocoder import load_vocoder, vocoder_fingerprint

    try:
        vocoder = load_vocoder(ref["name"], map_location)
    except pretrained.PretrainedError as e:
        raise TokenizerError(f"{folder}: its vocoder {ref['name']!r} cannot be loaded ({e})") from None
    if vocoder_fingerprint(vocoder) != Fingerprint(**ref["fingerprint"]):
        raise TokenizerError(f"{folder}: names the vocoder {ref['name']!r} {Fingerprint(**ref['fingerprint']).short()}, "
                             f"but that folder holds {vocoder_fingerprint(vocoder).short()}")
    return {VOCODER_PREFIX + k: v for k, v in vocoder.state_dict().items()}


def level_scale(wav: Tensor, level_dbfs: float) -> float:
    """The factor ``g`` with ``RMS(wav / g) = level_dbfs`` (1.0 for digital silence), over the whole clip,
    so scaling the input by any gain scales ``g`` by the same gain and leaves ``wav / g`` unchanged."""
    rms = float(torch.sqrt(torch.mean(wav.double() ** 2)))
    return rms / 10 ** (level_dbfs / 20) if rms > SILENCE_RMS else 1.0


def _pad_cat(codes: Sequence[Tensor]) -> Tensor:
    """Concatenate ``(1, F_i, S)`` along the batch, zero-padding frames to the longest."""
    n = max(c.shape[1] for c in codes)
    return torch.cat([nn.functional.pad(c, (0, 0, 0, n - c.shape[1])) for c in codes], dim=0)
