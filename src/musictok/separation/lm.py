"""LM source separation: generate each stem's tokens with a decoder-only LM conditioned on the mixture.

After "Discrete Token Modeling for Multi-Stem Music Source Separation with Language Models" (Liu et al.,
2026; ``shared/papers/001``): a Conformer encodes the mixture, a decoder-only LM reads that encoding as a
prefix and generates the codec tokens of the stems in turn — by default vocals → drums → bass → other, each
conditioned on the mixture and on the stems already generated — and the tokenizer decodes each stem to
audio. Here the tokenizer is a parameter (any one-stream tokenizer: BandTok, the RVQ codec), frozen; its
weights travel inside the separator's folder, so a saved separator is self-contained.

**The sequence.** For a window of ``F`` token frames and stems ``s_1 … s_S``::

    [ mixture prefix: F steps ] [ s_1: pattern steps + 1 ] [ s_2: … ] … [ s_S: … ]

- prefix step ``f`` has the ``pad`` id as its token input and the encoder's frame ``f`` added to its
  embedding (``TokenLM.forward(embeds=…)``); it predicts nothing;
- each stem's tokens are laid out by a :class:`~musictok.lm.patterns.SequencePattern` — ``delay``
  (default: MusicGen's interleaving, one step per frame, slot ``k`` of a frame after slots ``< k``),
  ``parallel`` (one step per frame, all slots at once) or ``band-grid`` (BandTok's cells one by one, 2-D
  RoPE) — with the pattern's own teacher forcing (BOS first); a closing step feeds the stem's last cells in
  (so the next stem sees all of them) and predicts nothing;
- a learned **stem embedding** (index 0 = the mixture) is added to every step of a segment, so the model
  knows which stem it is writing;
- positions are the pattern's time positions, and the prefix's frame ``f`` sits at time ``f``: under RoPE a
  stem's frame ``f`` sees mixture frame ``f`` and earlier stems' frame ``f`` at relative offset 0.

Conditioning by prefix (as the paper's decoder-only LM does), not cross-attention: the LM stays the
project's one :class:`~musictok.lm.model.TokenLM`, KV cache included.

**Switches** (the issue's ablations): ``mode`` — ``sequential`` (each stem sees the earlier ones) or
``independent`` (each stem sees only the mixture: the stems are separate sequences of one batch);
``encoder_input`` — the mixture's log-Mel (``mel``, folded to the token rate by a strided convolution) or
the frozen tokenizer's own code embeddings of the mixture's tokens (``tokens``); ``freeze_encoder`` — the
Conformer layers keep their initial weights, while the input layer (``front``) and the projection into the
LM (``cond_proj``) still learn: a learnable adapter on frozen features, the paper's "learnable Conformer
encoder" against the codec's frozen features. With ``encoder_input: tokens, encoder_layers: 0`` that is "a
frozen pretrained encoder": the tokenizer's code embeddings, read through a learned 1×1 convolution (a
frozen random one would throw half of them away); ``fit_gains`` — after decoding, each stem is scaled by
least squares to the mixture (off by default: a decoder that makes up its own phase, such as BandTok's
vocoder, leaves almost nothing for a waveform fit to find, and the fitted gains collapse towards 0);
decoding — greedy (``temperature 0``) or sampled, and ``samples > 1`` draws several candidates and keeps,
per clip, the one whose stems add up best to the mixture (:meth:`LMSeparator.consistency`: in waveforms
for a phase-aware decoder; for one that makes up its phase, ``Tokenizer.phase_free``, in Mel magnitudes,
since there waveform consistency prefers quiet candidates — silence scores 1, the true tokens more).

Targets are computed on the fly: the true stems of each training clip are encoded by the frozen tokenizer.

**Levels.** A tokenizer that normalises its input (``level_dbfs``, as bandtok-small does) would make each
stem's tokens blind to its loudness if each stem were normalised by its own level. So every stem of a clip is
scaled by the level of the clip's *mix* (``Tokenizer.encode(scales=…)``): the tokens keep each stem's level
within the mix, the mix's overall gain drops out, and decoding multiplies the mix's scale back in — known at
inference, since the mix is the input. The Mel encoder sees the mix at that same normalised level, so
``separate(g · mix) = g · separate(mix)``; the tokenizer ceiling takes exactly this path with the true tokens.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..lm.model import TokenLM, TokenLMConfig
from ..lm.patterns import IGNORE_INDEX, SequencePattern, make_pattern
from ..lm.sampling import sample
from ..metrics.separation import least_squares_gains, mixture_consistency, spectral_consistency
from ..nn.conformer import Conformer
from ..settings import build_checked
from ..spectral import MelConfig, MelSpectrogram
from ..tokenizers.base import level_scale
from ..tokens import Tokens
from .base import Separator, SeparatorError, register_separator

__all__ = ["LMSeparator", "LMSeparatorConfig"]

PATTERNS = ("delay", "parallel", "band-grid")  # patterns whose positions follow time
MODES = ("sequential", "independent")
ENCODER_INPUTS = ("mel", "tokens")
DECODING = ("temperature", "top_k", "top_p", "samples", "seed")


@dataclass
class LMSeparatorConfig:
    sample_rate: int = 24000
    stems: tuple[str, ...] = ("vocals", "drums", "bass", "other")  # generation order = output order
    tokenizer: str = "bandtok-small"  # where the tokenizer came from (its weights are saved with the separator)
    tokenizer_kind: str | None = None  # filled in from the tokenizer the separator is built with
    tokenizer_config: dict | None = None
    mode: str = "sequential"  # or "independent"
    pattern: str = "delay"  # delay | parallel | band-grid
    pattern_options: dict = field(default_factory=dict)
    encoder_input: str = "mel"  # mel | tokens
    encoder_layers: int = 4
    encoder_dim: int = 256
    encoder_heads: int = 4
    encoder_kernel: int = 15
    freeze_encoder: bool = False  # the Conformer layers stay at init; the input layer and cond_proj still learn
    n_mels: int = 80
    mels_per_frame: int = 4  # Mel frames folded into one token frame (Mel hop = token hop / this)
    mel_mean: float = -4.0  # fixed affine normalisation of the natural-log Mel
    mel_std: float = 2.5
    lm: dict = field(default_factory=lambda: {"preset": "small"})  # TokenLMConfig: preset + overrides
    window_seconds: float = 4.0  # longest window separated at once (training clips must not be longer)
    context_seconds: float = 0.5  # real audio kept either side of a chunk when a long input is windowed
    temperature: float = 0.0  # decoding defaults: 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    samples: int = 1  # > 1: best of N candidates by consistency with the mixture (needs temperature > 0)
    fit_gains: bool = False  # scale each decoded stem by least squares to the mixture (useless with a decoder
    # that makes up its phase; a level-normalising tokenizer's stems are scaled by their mix's level instead)

    def __post_init__(self) -> None:
        self.stems = tuple(str(s) for s in self.stems)
        if not self.stems or len(set(self.stems)) != len(self.stems):
            raise ValueError(f"stems must be distinct names, got {list(self.stems)}")
        for key, allowed in (("mode", MODES), ("pattern", PATTERNS), ("encoder_input", ENCODER_INPUTS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {getattr(self, key)!r}")
        for key in ("encoder_dim", "encoder_heads", "n_mels", "mels_per_frame", "samples"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.encoder_layers < 0:
            raise ValueError(f"encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.window_seconds <= 0 or self.context_seconds < 0:
            raise ValueError("window_seconds must be > 0 and context_seconds >= 0")
        check_decoding(self.temperature, self.top_k, self.top_p, self.samples)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stems"] = list(self.stems)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LMSeparatorConfig:
        return build_checked(cls, d, "LM separator config")

    @classmethod
    def tiny(cls, **kw) -> LMSeparatorConfig:
        """For tests: seconds on a CPU."""
        return cls(**({"encoder_layers": 1, "encoder_dim": 32, "encoder_heads": 2, "encoder_kernel": 7,
                       "n_mels": 16, "lm": {"preset": "tiny"}, "window_seconds": 1.0, "context_seconds": 0.25} | kw))

    @classmethod
    def small(cls, **kw) -> LMSeparatorConfig:
        """Trained on CPU here."""
        return cls(**kw)

    @classmethod
    def base(cls, **kw) -> LMSeparatorConfig:
        """GPU scale."""
        return cls(**({"encoder_layers": 8, "encoder_dim": 512, "encoder_heads": 8, "n_mels": 128,
                       "lm": {"preset": "base"}, "window_seconds": 8.0, "context_seconds": 1.0} | kw))


def check_decoding(temperature: float, top_k: int | None, top_p: float | None, samples: int) -> None:
    """Refuse decoding settings that cannot work, naming the setting."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if samples > 1 and temperature == 0:
        raise ValueError(f"samples={samples} candidates need sampling: greedy decoding (temperature 0) gives "
                         "the same one every time; set a temperature > 0")


@register_separator("lm")
class LMSeparator(Separator):
    """Mixture encoder + TokenLM over the stems' tokens (see the module docstring)."""

    config_class = LMSeparatorConfig

    def __init__(self, config: LMSeparatorConfig | None = None, tokenizer=None):
        from ..tokenizers.base import TOKENIZERS, _load_builtin_tokenizers

        config = config or LMSeparatorConfig()
        if tokenizer is None:
            _load_builtin_tokenizers()
            if config.tokenizer_kind not in TOKENIZERS or config.tokenizer_config is None:
                raise SeparatorError(f"the config names no known tokenizer kind ({config.tokenizer_kind!r}); "
                                     "build the separator with a tokenizer")
            klass = TOKENIZERS[config.tokenizer_kind]
            tokenizer = klass(klass.config_class.from_dict(config.tokenizer_config))
        else:
            config = dataclasses.replace(config, tokenizer_kind=tokenizer.name,
                                         tokenizer_config=_plain(tokenizer.config_dict()))
        super().__init__(config)
        c = self.config
        layout = tokenizer.layout
        if len(layout.streams) != 1:
            raise SeparatorError(f"{c.tokenizer}: LM separation takes a one-stream tokenizer (BandTok, the RVQ codec), "
                                 f"this one has {len(layout.streams)} streams")
        self.fit_gains = c.fit_gains
        if tokenizer.sample_rate != c.sample_rate:
            raise SeparatorError(f"{c.tokenizer}: runs at {tokenizer.sample_rate} Hz, the separator at {c.sample_rate} Hz")
        if tokenizer._frames_per_unit() != [1]:
            raise SeparatorError(f"{c.tokenizer}: one token frame per hop is needed")
        self.tokenizer = tokenizer.eval().requires_grad_(False)  # frozen: its weights are saved, never trained
        self.layout = layout
        self.frame_rate = layout.streams[0].frame_rate
        self.hop_samples = tokenizer.hop_samples
        self.window_frames = max(1, round(c.window_seconds * self.frame_rate))
        self.context_units = round(c.context_seconds * self.frame_rate)
        self.chunk_units = self.window_frames - 2 * self.context_units
        if self.chunk_units < 1:
            raise SeparatorError(f"context_seconds {c.context_seconds} leaves nothing of a {c.window_seconds} s window "
                                 "(it is taken on both sides)")
        self._patterns: dict[int, SequencePattern] = {}
        probe = self.pattern(self.window_frames)
        lm_fields = dict(c.lm)
        preset = lm_fields.pop("preset", "small")
        lm_fields.setdefault("rope", "2d" if probe.position_dims == 2 else "1d")
        lm_config = TokenLMConfig.preset(preset, **lm_fields)
        need = self.sequence_steps(self.window_frames)
        if need > lm_config.max_steps:
            raise SeparatorError(f"a {c.window_seconds:g} s window is {need} LM steps ({len(c.stems)} stems, pattern "
                                 f"{c.pattern}), more than lm.max_steps={lm_config.max_steps}; raise it or shorten the window")
        self.lm = TokenLM.from_pattern(lm_config, probe)
        d = lm_config.n_embd
        # ---- the mixture encoder
        if c.encoder_input == "mel":
            if self.hop_samples % c.mels_per_frame:
                raise SeparatorError(f"mels_per_frame {c.mels_per_frame} must divide the token hop {self.hop_samples}")
            mel_hop = self.hop_samples // c.mels_per_frame
            self.mel = MelSpectrogram(MelConfig(sample_rate=c.sample_rate, n_fft=4 * mel_hop, hop_length=mel_hop,
                                                win_length=4 * mel_hop, n_mels=c.n_mels))
            self.front = nn.Conv1d(c.n_mels, c.encoder_dim, c.mels_per_frame, stride=c.mels_per_frame)
        else:
            width = layout.streams[0].num_slots * self._code_dim()
            self.front = nn.Conv1d(width, c.encoder_dim, 1)
        self.conformer = Conformer(c.encoder_dim, c.encoder_layers, c.encoder_heads, kernel=c.encoder_kernel)
        self.cond_proj = nn.Linear(c.encoder_dim, d)
        if c.freeze_encoder:  # front and cond_proj stay learnable: an adapter on the frozen features
            self.conformer.requires_grad_(False)
        self.stem_embedding = nn.Embedding(len(c.stems) + 1, d)  # 0: the mixture prefix
        nn.init.normal_(self.stem_embedding.weight, std=0.02)

    @classmethod
    def from_config(cls, config: LMSeparatorConfig) -> LMSeparator:
        return cls(config)

    def train(self, mode: bool = True) -> LMSeparator:
        super().train(mode)
        self.tokenizer.eval()  # its EMA codebooks must never move
        return self

    def _code_dim(self) -> int:
        k = self.layout.streams[0].num_slots
        return self.tokenizer._embed_codes([torch.zeros(1, 1, k, dtype=torch.long)])[0].shape[-1]

    # ---------------------------------------------------------------- the sequence
    def pattern(self, frames: int) -> SequencePattern:
        if frames not in self._patterns:
            self._patterns[frames] = make_pattern(self.config.pattern, self.layout, frames,
                                                  **self.config.pattern_options)
        return self._patterns[frames]

    def sequence_steps(self, frames: int) -> int:
        """LM steps of one sequence for a window of ``frames`` token frames."""
        per_stem = self.pattern(frames).num_steps + 1
        return frames + per_stem * (len(self.config.stems) if self.config.mode == "sequential" else 1)

    def _prefix_positions(self, frames: int, dims: int) -> Tensor:
        t = torch.arange(frames, dtype=torch.float32)[:, None]
        return t if dims == 1 else torch.cat([t, torch.full_like(t, -1.0)], dim=1)

    @staticmethod
    def _closing_positions(positions: Tensor) -> Tensor:
        return torch.cat([positions, positions[-1:]], dim=0)

    def mix_scales(self, mix: Tensor) -> Tensor | None:
        """``(B,)`` the gain a level-normalising tokenizer removes from each mix ``(B, T)`` (``None`` for a
        tokenizer that keeps levels in its tokens); the stems of a clip are all scaled by their mix's."""
        level = self.tokenizer.level_dbfs
        if level is None:
            return None
        return torch.tensor([level_scale(m, level) for m in mix], dtype=torch.float32, device=mix.device)

    def encode_mixture(self, mix: Tensor) -> Tensor:
        """``(B, T)`` with ``T = F · hop`` -> the condition ``(B, F, n_embd)``."""
        c = self.config
        frames = mix.shape[-1] // self.hop_samples
        if c.encoder_input == "mel":
            scales = self.mix_scales(mix)
            if scales is not None:  # the level the tokens are at (the tokens path normalises by itself)
                mix = mix / scales[:, None].to(mix.dtype)
            x = (self.mel(mix)[..., : frames * c.mels_per_frame] - c.mel_mean) / c.mel_std  # (B, n_mels, 4F)
        else:
            with _full_precision(mix):
                tokens = self.tokenizer.encode(mix)
                emb = self.tokenizer.code_embeddings(tokens)[0]  # (B, F, K, D)
            x = emb.reshape(emb.shape[0], emb.shape[1], -1).transpose(1, 2)
        h = self.front(x.to(self.cond_proj.weight.dtype)).transpose(1, 2)  # (B, F, encoder_dim)
        return self.cond_proj(self.conformer(h))

    def stem_codes(self, stems: Tensor) -> Tensor:
        """True stems ``(B, S, T)`` -> their tokens ``(B, S, F, K)`` (the frozen tokenizer's), each clip's
        stems at the level of their mix ``Σ_s stems`` (see "Levels" in the module docstring)."""
        B, S, T = stems.shape
        with _full_precision(stems):  # under bf16 autocast the quantizer could pick other codes than at inference
            scales = self.mix_scales(stems.float().sum(1))
            scales = None if scales is None else scales.repeat_interleave(S).tolist()
            codes = self.tokenizer.encode(stems.reshape(B * S, T).float(), scales=scales).codes[0].to(stems.device)
        return codes.reshape(B, S, *codes.shape[1:])

    def teacher_forcing(self, cond: Tensor, codes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The training sequence: ``inputs, targets (N, L, K)``, ``positions (L, P)``, ``embeds (N, L, d)``;
        ``N = B`` (sequential) or ``S · B`` (independent, stem-major)."""
        B, S, F, K = codes.shape
        p = self.pattern(F)
        dev = cond.device
        e = self.stem_embedding.weight
        pre_in = torch.full((B, F, p.num_columns), p.pad_id, dtype=torch.long, device=dev)
        pre_tg = torch.full_like(pre_in, IGNORE_INDEX)
        pre_pos = self._prefix_positions(F, p.position_dims).to(dev)
        pre_emb = cond + e[0]
        segments = []
        for s in range(S):
            b = p.build([codes[:, s]])
            last = torch.where(b.targets[:, -1:] == IGNORE_INDEX, p.pad_id, b.targets[:, -1:])
            inputs = torch.cat([b.inputs, last], dim=1)
            targets = torch.cat([b.targets, torch.full_like(last, IGNORE_INDEX)], dim=1)
            emb = e[s + 1].expand(B, inputs.shape[1], -1)
            segments.append((inputs, targets, self._closing_positions(b.positions), emb))
        if self.config.mode == "sequential":
            inputs = torch.cat([pre_in] + [g[0] for g in segments], dim=1)
            targets = torch.cat([pre_tg] + [g[1] for g in segments], dim=1)
            positions = torch.cat([pre_pos] + [g[2] for g in segments], dim=0)
            embeds = torch.cat([pre_emb] + [g[3] for g in segments], dim=1)
            return inputs, targets, positions, embeds
        inputs = torch.cat([torch.cat([pre_in, g[0]], dim=1) for g in segments], dim=0)
        targets = torch.cat([torch.cat([pre_tg, g[1]], dim=1) for g in segments], dim=0)
        embeds = torch.cat([torch.cat([pre_emb, g[3]], dim=1) for g in segments], dim=0)
        return inputs, targets, torch.cat([pre_pos, segments[0][2]], dim=0), embeds

    # ---------------------------------------------------------------- training
    def forward(self, mix: Tensor, stems: Tensor) -> dict[str, Tensor]:
        if stems.shape[1] != len(self.config.stems):
            raise ValueError(f"stems must be (B, {len(self.config.stems)}, T) in the order {self.stem_names}, "
                             f"got {tuple(stems.shape)}")
        frames = mix.shape[-1] // self.hop_samples
        if frames > self.window_frames:
            raise ValueError(f"clips of {frames} frames are longer than the {self.window_frames}-frame window")
        mix, stems = mix[..., : frames * self.hop_samples], stems[..., : frames * self.hop_samples]
        with torch.no_grad():
            codes = self.stem_codes(stems)
        cond = self.encode_mixture(mix)
        inputs, targets, positions, embeds = self.teacher_forcing(cond, codes)
        out = self.lm(inputs, positions, targets, embeds=embeds, keep_logits=False)  # the mixture prefix: no heads
        logs = {"loss": out.loss, "bits_per_token": out.loss.detach() / math.log(2)}
        nll, mask = out.per_token_nll.detach(), targets != IGNORE_INDEX
        for s, name in enumerate(self.config.stems):  # bits per token of each stem's segment
            sel = self._stem_rows(s, nll.shape[0], frames)
            m = mask[sel]
            logs[f"bits/{name}"] = nll[sel][m].sum() / m.sum().clamp_min(1) / math.log(2)
        return logs

    def _stem_rows(self, s: int, rows: int, frames: int):
        """Index of stem ``s``'s segment in a batch of teacher-forced sequences."""
        per = self.pattern(frames).num_steps + 1
        if self.config.mode == "sequential":
            a = frames + s * per
            return (slice(None), slice(a, a + per))
        n = rows // len(self.config.stems)
        return (slice(s * n, (s + 1) * n), slice(frames, frames + per))

    # ---------------------------------------------------------------- generation
    def check_options(self, **options: Any) -> None:
        unknown = set(options) - set(DECODING)
        if unknown:
            raise SeparatorError(f"unknown decoding options {sorted(unknown)}; the LM separator takes {', '.join(DECODING)}")
        o = self._options(options)
        try:
            check_decoding(o["temperature"], o["top_k"], o["top_p"], o["samples"])
        except ValueError as e:
            raise SeparatorError(str(e)) from None

    def _options(self, options: dict) -> dict:
        c = self.config
        o = {"temperature": c.temperature, "top_k": c.top_k, "top_p": c.top_p, "samples": c.samples, "seed": 0}
        o.update({k: v for k, v in options.items() if v is not None})
        return o

    @torch.no_grad()
    def generate_codes(self, cond: Tensor, *, temperature: float = 0.0, top_k: int | None = None,
                       top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Sample the stems' tokens ``(B, S, F, K)`` for the condition ``(B, F, d)`` with the KV cache."""
        B, F, _ = cond.shape
        S = len(self.config.stems)
        p = self.pattern(F)
        dev = cond.device
        ranges = p.target_ranges.to(dev)
        valid = p.cells.to(dev) >= 0
        vocab = torch.arange(max(p.vocab_sizes), device=dev)
        positions = self._closing_positions(p.positions).to(dev)
        e = self.stem_embedding.weight
        independent = self.config.mode == "independent"
        rows = S * B if independent else B
        cache = self.lm.new_cache(self.sequence_steps(F))
        prefix = cond.repeat(S, 1, 1) if independent else cond
        pad = torch.full((rows, F, p.num_columns), p.pad_id, dtype=torch.long, device=dev)
        self.lm(pad, self._prefix_positions(F, p.position_dims).to(dev), cache=cache, embeds=prefix + e[0])
        out = []
        for s in range(1 if independent else S):
            stem = (torch.arange(S, device=dev).repeat_interleave(B) + 1) if independent else torch.full((B,), s + 1, device=dev)
            emb = e[stem][:, None]  # (rows, 1, d)
            ids_all = torch.full((rows, p.num_steps, p.num_columns), IGNORE_INDEX, dtype=torch.long, device=dev)
            step_in = torch.full((rows, 1, p.num_columns), p.bos_id, dtype=torch.long, device=dev)
            for t in range(p.num_steps):
                logits = self.lm(step_in, positions[t: t + 1], cache=cache, embeds=emb).logits[:, -1]
                logits = logits.masked_fill((vocab < ranges[t, :, 0:1]) | (vocab >= ranges[t, :, 1:2]), float("-inf"))
                ids = sample(logits, temperature, top_k, top_p, generator)
                ids_all[:, t] = torch.where(valid[t], ids, IGNORE_INDEX)
                step_in = torch.where(valid[t], ids, p.pad_id)[:, None]
            if not independent and s + 1 < S:  # the closing step: the stem's last cells enter the cache
                self.lm(step_in, positions[-1:], cache=cache, embeds=emb)
            out.append(p.revert(ids_all)[0])  # (rows, F, K)
        codes = out[0].reshape(S, B, F, -1).transpose(0, 1) if independent else torch.stack(out, dim=1)
        return codes

    def decode_codes(self, codes: Tensor, length: int, scales: Tensor | None = None) -> Tensor:
        """Stem tokens ``(B, S, F, K)`` -> waveforms ``(B, S, length)`` through the frozen tokenizer, each
        clip multiplied by its mix's scale ``(B,)`` (:meth:`mix_scales`) when the tokenizer normalises levels."""
        B, S, F, K = codes.shape
        tok = self.tokenizer
        per_clip = None if scales is None else scales.double().cpu().repeat_interleave(S).tolist()
        tokens = Tokens([codes.reshape(B * S, F, K).cpu()], self.layout, tok.fingerprint(), tok.sample_rate,
                        [length] * (B * S), scales=per_clip)
        return tok.decode(tokens).reshape(B, S, -1)[..., :length].to(codes.device)

    def _separate_window(self, mix: Tensor, **options: Any) -> Tensor:
        o = self._options(options)
        B, T = mix.shape
        n = o["samples"]
        cond = self.encode_mixture(mix)
        if n > 1:
            cond = cond.repeat_interleave(n, dim=0)
        g = torch.Generator(device=mix.device).manual_seed(int(o["seed"]))
        codes = self.generate_codes(cond, temperature=o["temperature"], top_k=o["top_k"], top_p=o["top_p"],
                                    generator=g)
        scales = self.mix_scales(mix)
        est = self.decode_codes(codes, T, None if scales is None else scales.repeat_interleave(n))  # (B n, S, T)
        if self.fit_gains:
            est = est * fitted_gains(est, mix.repeat_interleave(n, dim=0))[..., None]
        if n == 1:
            return est
        best = self.consistency(mix.repeat_interleave(n, dim=0), est).reshape(B, n).argmin(dim=1)
        return est.reshape(B, n, *est.shape[1:])[torch.arange(B, device=mix.device), best]

    def consistency(self, mix: Tensor, est: Tensor) -> Tensor:
        """How far the stems ``(B, S, T)`` are from adding up to ``mix (B, T)``, ``(B,)``; the best-of-N pick.

        Waveforms (:func:`mixture_consistency`) for a decoder that keeps phase; Mel magnitudes
        (:func:`spectral_consistency`) for one that makes its phase up, whose true tokens do not add up in
        waveforms either and where the waveform score would prefer the quietest candidate."""
        if not self.tokenizer.phase_free:
            return mixture_consistency(mix, est)
        return spectral_consistency(mix, est, self.sample_rate)

    @torch.no_grad()
    def tokenizer_ceiling(self, stems: Tensor) -> Tensor:
        """The true stems ``(B, S, T)`` encoded and decoded by this separator's tokenizer, through the very
        path a separation takes (levels included): the best its tokens can carry, which an LM separator is
        judged against."""
        T = stems.shape[-1]
        return self.decode_codes(self.stem_codes(stems), T, self.mix_scales(stems.float().sum(1)))


def _full_precision(x: Tensor):
    """The frozen tokenizer always runs in float32, whatever autocast the caller is under."""
    return torch.autocast(x.device.type, enabled=False)


def fitted_gains(est: Tensor, mix: Tensor) -> Tensor:
    """Non-negative gains ``(B, S)`` that bring ``Σ_s g_s est_s`` closest to ``mix`` (least squares, then
    clipped at 0): the consistency step for stems decoded at a normalised level."""
    return least_squares_gains(est, mix[:, None])[:, 0].clamp_min(0).to(est.dtype)


def _plain(d: dict) -> dict:
    """A config dict as JSON would give it back (tuples as lists), so saving and loading compare equal."""
    import json

    return json.loads(json.dumps(d))
