"""PyramidCodec: a hierarchical, multi-rate RVQ waveform codec (``../shared/papers/004``).

The encoder's latents (finest rate, e.g. 23.4 frames/s) are downsampled into ``N`` levels, each half the
rate of the one below; level 1 is the coarsest. **Pyramid encoding** (Algorithm 1) quantizes level 1 with
its own RVQ, upsamples the quantized result, adds it to level 2's features, quantizes that, and so on down
to the finest level. **Pyramid decoding** (Algorithm 2) rebuilds, for every prefix ``1..k`` of levels, an
embedding at the finest rate — ``P_1 = Q_1``, ``P_{k+1} = Q_{k+1} + U_k(P_k)``, then ``P_k`` upsampled to the
finest rate — and one shared decoder turns any of them into audio.

**Hierarchical training**: the prefix ``1..k`` must reconstruct the audio band-limited to
``1 / 2^(N-k)`` of its bandwidth (the audio resampled down by ``2^(N-k)`` and back up), so decoding with
fewer levels is a valid, coarser reconstruction: level 1 carries the lowest quarter of the spectrum (for
N = 3), levels 1–2 half of it, all levels everything. The up/down-sampling of the latents uses learned
(transposed) convolutions, as in the paper; the band-limited targets use an ideal (FFT) low-pass, the
limit of a good resampler.

One :class:`~musictok.tokens.StreamSpec` per level, each at its own frame rate, coarsest first (what the
``coarse-to-fine`` LM pattern expects). Defaults: 3 levels with 4, 4, 5 codebooks at 5.86, 11.7 and
23.4 frames/s = 187.5 tokens/s, the same budget as ``bandtok-small`` and ``rvq-small``; decoding with 1 or
2 levels needs 23.4 or 70.3 tokens/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..quantize.rvq import ResidualVQ
from ..spectral import band_limit
from ..tokens import StreamSpec, TokenLayout
from .base import register_tokenizer
from .rvq_codec import CodecOutput, RVQCodecConfig, WaveformCodec


@dataclass
class PyramidCodecConfig(RVQCodecConfig):
    level_quantizers: tuple[int, ...] = (4, 4, 5)  # RVQ depth per level, coarsest first; len = number of levels

    def __post_init__(self) -> None:
        super().__post_init__()
        self.level_quantizers = tuple(int(q) for q in self.level_quantizers)
        if not self.level_quantizers or min(self.level_quantizers) < 1:
            raise ValueError(f"level_quantizers needs at least one level of >= 1 codebooks, got {self.level_quantizers}")

    @property
    def num_levels(self) -> int:
        return len(self.level_quantizers)

    def level_rates(self) -> list[float]:
        """Frame rate of every level, coarsest first."""
        n = self.num_levels
        return [self.frame_rate / 2 ** (n - 1 - i) for i in range(n)]

    def to_dict(self) -> dict:
        return super().to_dict() | {"level_quantizers": list(self.level_quantizers)}

    @classmethod
    def tiny(cls, **kw):
        return super().tiny(**({"level_quantizers": (1, 2, 2)} | kw))


def _down(dim: int) -> nn.Module:
    return nn.Conv1d(dim, dim, 4, stride=2, padding=1)  # n -> n / 2 frames


def _up(dim: int) -> nn.Module:
    return nn.ConvTranspose1d(dim, dim, 4, stride=2, padding=1)  # n -> 2 n frames


@register_tokenizer("pyramid_codec")
class PyramidCodec(WaveformCodec):
    """Hierarchical multi-rate RVQ codec; see the module docstring."""

    config_class = PyramidCodecConfig
    config: PyramidCodecConfig

    def __init__(self, config: PyramidCodecConfig | None = None):
        super().__init__(config or PyramidCodecConfig())
        cfg = self.config
        n, d = cfg.num_levels, cfg.latent_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self._build_common()
            self.down = nn.ModuleList(_down(d) for _ in range(n - 1))  # down[j]: level j+2 -> level j+1 (1-based)
            self.encode_up = nn.ModuleList(_up(d) for _ in range(n - 1))  # level j+1 -> j+2, Algorithm 1
            self.decode_up = nn.ModuleList(_up(d) for _ in range(n - 1))  # level j+1 -> j+2, Algorithm 2
            self.quantizers = nn.ModuleList(ResidualVQ(cfg.quantizer_config(q, seed_offset=100 * i))
                                            for i, q in enumerate(cfg.level_quantizers))
        self.hop_samples = cfg.stride * 2 ** (n - 1)  # one frame of the coarsest level
        self.context_units = max(4, 16 // 2 ** (n - 1))

    @property
    def num_decode_levels(self) -> int:
        return self.config.num_levels  # decode(levels=k): the k coarsest levels

    @property
    def layout(self) -> TokenLayout:
        cfg = self.config
        return TokenLayout(tuple(StreamSpec(f"level{i + 1}", rate, (cfg.codebook_size,) * q, slot_axis="codebook")
                                 for i, (rate, q) in enumerate(zip(cfg.level_rates(), cfg.level_quantizers))))

    # ---------------------------------------------------------------- the pyramid
    def _features(self, wav: Tensor) -> list[Tensor]:
        """Multi-scale features ``(B, D, n_i)``, coarsest first (the finest is the encoder's output)."""
        feats = [self._encode_latents(wav).transpose(1, 2)]
        for down in reversed(self.down):
            feats.insert(0, down(feats[0]))
        return feats

    def _pyramid_encode(self, feats: list[Tensor], train: bool):
        """Algorithm 1: per level, RVQ of the level's features + the upsampled quantized coarser level.
        Returns per level the quantizer result (train) or codes ``(B, n_i, q_i)``."""
        out, prev = [], None
        for i, (f, rvq) in enumerate(zip(feats, self.quantizers)):
            x = f if prev is None else f + self.encode_up[i - 1](prev)
            with torch.autocast(x.device.type, enabled=False):
                x = x.float().transpose(1, 2)
                if train:
                    res = rvq(x)
                    z_q = res.z_q
                    out.append(res)
                else:
                    codes = rvq.encode(x)
                    z_q = rvq.decode(codes)
                    out.append(codes)
            prev = z_q.transpose(1, 2)
        return out

    def _pyramid_decode(self, quantized: list[Tensor]) -> list[Tensor]:
        """Algorithm 2: quantized levels ``(B, D, n_i)`` (a prefix, coarsest first) -> one embedding per
        prefix, all at the finest rate ``(B, D, n_N)``."""
        n = self.config.num_levels
        prefixes, p = [], None
        for i, q in enumerate(quantized):
            p = q if p is None else q + self.decode_up[i - 1](p)
            prefixes.append(p)
        out = []
        for k, p in enumerate(prefixes):
            for j in range(k, n - 1):
                p = self.decode_up[j](p)
            out.append(p)
        return out

    # ---------------------------------------------------------------- tokenizer contract
    def _encode_codes(self, wav: Tensor) -> list[Tensor]:
        return self._pyramid_encode(self._features(wav), train=False)

    def _decode_codes(self, codes: list[Tensor], levels: int | None = None) -> Tensor:
        k = levels or self.config.num_levels
        if not 1 <= k <= self.config.num_levels:
            raise ValueError(f"levels must be in 1..{self.config.num_levels}, got {k}")
        quantized = [rvq.decode(c).transpose(1, 2) for rvq, c in zip(self.quantizers, codes[:k])]
        return self.decoder(self._pyramid_decode(quantized)[-1]).float()

    def _embed_codes(self, codes: list[Tensor]) -> list[Tensor]:
        return [torch.stack([layer.decode(c[..., i]) for i, layer in enumerate(rvq.layers)], dim=-2)
                for rvq, c in zip(self.quantizers, codes)]

    def decode_levels(self, tokens, levels: int) -> Tensor:
        """Decode with only the first ``levels`` levels (coarsest first): a band-limited reconstruction."""
        return self.decode(tokens, levels=levels)

    def band_limited_target(self, wav: Tensor, levels: int) -> Tensor:
        """What decoding with ``levels`` levels should give: ``wav`` band-limited by ``2^(N - levels)``."""
        factor = 2 ** (self.config.num_levels - levels)
        return wav if factor == 1 else band_limit(wav, factor)

    def reconstruction_paths(self) -> dict:
        """``tokens`` (all levels), and every shorter prefix scored against its band-limited target (what it
        was trained to reconstruct) and against the full-band original."""
        n = self.config.num_levels

        def prefix(k: int, band_limited: bool):
            def run(x: Tensor):
                y = self.decode(self.encode(x), levels=k)
                return (self.band_limited_target(x, k) if band_limited else x), y
            return run

        paths: dict = {"tokens": None}
        for k in range(1, n):
            paths[f"levels 1-{k} vs band-limited"] = prefix(k, True)
            paths[f"levels 1-{k} vs full band"] = prefix(k, False)
        return paths

    # ---------------------------------------------------------------- training
    def _mmd_quantizer(self) -> ResidualVQ:
        return self.quantizers[-1]  # the finest level: the most codebooks

    def _mmd_latents(self, wav: Tensor) -> Tensor:
        """The finest level's input (Algorithm 1) ``(B, n, D)``; the coarser levels are quantized without
        codebook updates, straight through, as in training."""
        feats = self._features(wav)
        prev = None
        for i, (f, rvq) in enumerate(zip(feats[:-1], self.quantizers)):
            x = f if prev is None else f + self.encode_up[i - 1](prev)
            with torch.autocast(x.device.type, enabled=False):
                x = x.float().transpose(1, 2)
                with torch.no_grad():
                    q = rvq.decode(rvq.encode(x))
                prev = (x + (q - x).detach()).transpose(1, 2)
        last = feats[-1] if prev is None else feats[-1] + self.encode_up[-1](prev)
        return last.transpose(1, 2)

    def forward_train(self, wav: Tensor, mmd_pool: list[Tensor] | None = None) -> CodecOutput:
        """Hierarchical training pass: every prefix of levels against its band-limited target; the MMD term
        on the finest level's streams of ``mmd_pool`` when the trainer passes one."""
        wav = self._pad(wav)
        results = self._pyramid_encode(self._features(wav), train=True)
        quantized = [r.z_q.transpose(1, 2) for r in results]
        embeddings = self._pyramid_decode(quantized)
        b = wav.shape[0]
        outputs = self.decoder(torch.cat(embeddings)).float().split(b)  # one batched decoder pass
        with torch.no_grad():
            targets = [self.band_limited_target(wav, k + 1) for k in range(self.config.num_levels)]
        out = CodecOutput(targets, list(outputs), [r.codes for r in results])
        out.losses = self._mel_losses(out)
        for r in results:
            for k, v in r.losses.items():
                out.losses[f"vq_{k}"] = out.losses.get(f"vq_{k}", 0) + v
        if mmd_pool is not None:
            self._independence_term(mmd_pool, out)
        out.stats |= {"perplexity": torch.stack([r.stats["perplexity"].mean() for r in results]).mean(),
                      "utilization": torch.stack([r.stats["utilization"].mean() for r in results]).mean()}
        return out
