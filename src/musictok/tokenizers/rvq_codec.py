"""A residual-VQ waveform codec (SoundStream / EnCodec / DAC family), optionally trained to make its
codebooks independent (the MMD independence-promoting loss).

``WaveEncoder`` (strided convs, total stride 1024 at 24 kHz → 23.4375 frames/s, BandTok's grid) →
``ResidualVQ`` (``K`` levels × 1024 codes, EMA, k-means init, dead-code restart, quantizer dropout so any
prefix of levels decodes) → ``LatentDecoder`` (Vocos-style backbone + iSTFT head, or transposed convs).

Defaults: 8 levels × 23.4375 frames/s = 187.5 tokens/s, 1.875 kbps — the same token rate and bitrate as
``bandtok-small``, so the two families can be compared at a matched budget.

Two recipes share this class. The defaults are the bundled ``rvq-small``'s (SiLU encoder, 64-dim Euclidean
EMA codes). DAC's recipe is a set of options (``configs/rvq-dac-small.yaml``): Snake activations, three
dilated residual units per stage, weight norm and DAC's output conv in the encoder
(``encoder_activation``, ``encoder_res_units``, ``weight_norm``, ``encoder_output``); factorised codes —
each level projects its residual to ``codebook_dim`` = 8 dims, looks up by direction (``lookup: l2norm``)
and passes on the raw codeword projected back — learned by the codebook loss (``use_ema: false``); a
fixed share of the batch on random prefixes of levels (``dropout_mode: share``). Two additions of ours
start the codebooks from data: ``kmeans_vectors`` (k-means on a buffer gathered over many steps) and
``pca_init`` (each level's projections from its residual's principal directions).

Training objective (``training_losses`` + the trainer's optional GAN): the multi-resolution Mel distance
in the evaluation metric's units (DAC's definition, :func:`musictok.metrics.reconstruction.mel_distance`,
over ``mel_windows``; ``mel_weight`` 15 as in DAC), the codebook commitment loss, and, on the batches the
trainer pools (``mmd.pool_batches``), ``mmd.weight ×`` the squared MMD between the joint of the RVQ's
pre-quantisation residual streams and the product of their marginals (:mod:`musictok.quantize.mmd`),
which is computed and logged (``stats["mmd"]``; the weighted term is ``losses["mmd_loss"]``) even when its
weight is 0 so runs with and without it can be compared — from the first pool after the codebooks are
initialised (before, they are random and the term is skipped).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..nn.codec import LatentDecoder, WaveEncoder
from ..nn.vocoder import MultiResolutionMelLoss
from ..quantize.mmd import MMDConfig, independence_mmd
from ..quantize.rvq import ResidualVQ, RVQConfig
from ..quantize.vq import VQConfig
from ..settings import build_checked
from ..spectral import DAC_MEL_RESOLUTIONS
from ..tokens import StreamSpec, TokenLayout, Tokens
from .base import Tokenizer, register_tokenizer


@dataclass
class RVQCodecConfig:
    sample_rate: int = 24000
    encoder_channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256)  # one per stage + the output width
    encoder_strides: tuple[int, ...] = (4, 4, 4, 4, 4)  # product = samples per token frame
    encoder_res_units: int = 1  # residual units before each strided conv (DAC: 3, dilations 1, 3, 9)
    encoder_stem_stages: int = 1  # first stages patchify (kernel = stride): full-rate convs are costly
    encoder_head_blocks: int = 2  # ConvNeXt blocks at the latent rate
    encoder_activation: str = "silu"  # or "snake" (DAC)
    encoder_output: str = "layernorm"  # LayerNorm + 1x1 conv, or "conv": activation + kernel-3 conv (DAC)
    weight_norm: bool = False  # weight-normalised encoder convs and quantizer projections (DAC)
    input_gain: float = 10.0  # fixed gain before the encoder: see WaveformCodec._build_common
    latent_dim: int = 64
    num_quantizers: int = 8
    codebook_size: int = 1024
    codebook_dim: int | None = None  # low-dim codes (look-up in d dims, projected back to latent_dim)
    cosine: bool = False  # L2-normalised codes: loses each residual's magnitude, see _build_common
    lookup: str = "euclidean"  # "l2norm": nearest by direction, the raw codeword passed on (DAC)
    use_ema: bool = True  # EMA codebooks; False: learned by the codebook loss (DAC)
    ema_decay: float = 0.99
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0  # when use_ema is False
    kmeans_init: bool = True
    kmeans_vectors: int = 0  # > 0: k-means on this many latents gathered over the first steps (see quantize/rvq.py)
    pca_init: bool = False  # low-dim codes: projections start as the residuals' principal directions
    dead_after_steps: int = 200
    quantizer_dropout: float = 0.5
    dropout_mode: str = "bernoulli"  # or "share": exactly floor(p · batch) items (DAC)
    decoder: str = "istft"  # or "transposed"
    decoder_dim: int = 192
    decoder_intermediate_dim: int = 576
    decoder_layers: int = 6
    decoder_hop: int = 256
    decoder_n_fft: int = 1024
    mel_weight: float = 15.0  # × the Mel distance in DAC's units (log10, summed over mel_windows), DAC's weight
    mel_windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)  # training Mel loss: DAC's resolutions
    mmd: MMDConfig = field(default_factory=MMDConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        self.encoder_strides = tuple(int(s) for s in self.encoder_strides)
        self.mel_windows = tuple(int(w) for w in self.mel_windows)
        unknown = set(self.mel_windows) - {w for w, _, _ in DAC_MEL_RESOLUTIONS}
        if unknown or not self.mel_windows:
            raise ValueError(f"mel_windows must be among DAC's {[w for w, _, _ in DAC_MEL_RESOLUTIONS]}, got {self.mel_windows}")
        if isinstance(self.mmd, dict):
            self.mmd = build_checked(MMDConfig, self.mmd, "mmd")
        if len(self.encoder_channels) != len(self.encoder_strides) + 1:
            raise ValueError(f"encoder_channels needs {len(self.encoder_strides) + 1} widths, "
                             f"got {len(self.encoder_channels)}")
        if self.stride % self.decoder_hop and self.decoder == "istft":
            raise ValueError(f"the stride {self.stride} must be a multiple of decoder_hop {self.decoder_hop}")
        self.quantizer_config()  # the quantizer's own checks (look-up, dropout mode, ...) fail on load

    @property
    def stride(self) -> int:
        return math.prod(self.encoder_strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.stride

    def quantizer_config(self, levels: int | None = None, seed_offset: int = 0) -> RVQConfig:
        low_dim = self.codebook_dim is not None and self.codebook_dim != self.latent_dim
        return RVQConfig(VQConfig(dim=self.latent_dim, codebook_size=self.codebook_size,
                                  codebook_dim=self.codebook_dim, use_ema=self.use_ema, decay=self.ema_decay,
                                  commitment_weight=self.commitment_weight, codebook_weight=self.codebook_weight,
                                  kmeans_init=self.kmeans_init, dead_after_steps=self.dead_after_steps,
                                  cosine=self.cosine, lookup=self.lookup, weight_norm=self.weight_norm and low_dim,
                                  pca_init=self.pca_init, seed=self.seed + seed_offset),
                         num_quantizers=levels or self.num_quantizers, quantizer_dropout=self.quantizer_dropout,
                         dropout_mode=self.dropout_mode, kmeans_vectors=self.kmeans_vectors,
                         seed=self.seed + seed_offset)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["encoder_channels"], d["encoder_strides"] = list(self.encoder_channels), list(self.encoder_strides)
        d["mel_windows"] = list(self.mel_windows)
        d["mmd"]["bandwidths"] = list(self.mmd.bandwidths)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        return build_checked(cls, d, f"{cls.__name__}")

    # presets ------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw):
        """For tests: stride 256 at 16 kHz, 4 levels × 64 codes; seconds on a CPU."""
        base = dict(sample_rate=16000, encoder_channels=(8, 16, 16, 32), encoder_strides=(4, 8, 8),
                    encoder_head_blocks=1, latent_dim=16, num_quantizers=4, codebook_size=64,
                    dead_after_steps=20, decoder_dim=32, decoder_intermediate_dim=64, decoder_layers=2,
                    decoder_hop=64, decoder_n_fft=256)
        return cls(**(base | kw))

    @classmethod
    def small(cls, **kw):
        """Trained on CPU here and bundled (a few MB). The two shortest Mel windows (32, 64 samples) cost
        half of a CPU training step and are left out of its loss (they stay in the evaluation metric); unused
        codes restart after 50 steps, because k-means on a first batch smaller than the codebook leaves the
        deeper levels a zero residual to start from."""
        return cls(**({"mel_windows": (128, 256, 512, 1024, 2048), "dead_after_steps": 50} | kw))

    @classmethod
    def base(cls, **kw):
        """GPU scale: DAC-like widths and three residual units per stage."""
        base = dict(encoder_channels=(32, 64, 128, 256, 512, 512), encoder_res_units=3, encoder_stem_stages=0,
                    encoder_head_blocks=4, latent_dim=128, decoder_dim=512, decoder_intermediate_dim=1536,
                    decoder_layers=8)
        return cls(**(base | kw))


@dataclass
class CodecOutput:
    """One training pass: ``targets[i]`` is what ``outputs[i]`` should reconstruct (one pair for a flat
    codec, one per level prefix for PyramidCodec; the last pair is the full-band reconstruction)."""

    targets: list[Tensor]
    outputs: list[Tensor]
    codes: list[Tensor]
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)


class WaveformCodec(Tokenizer):
    """What the waveform codecs share: encoder, decoder, Mel loss, frame arithmetic."""

    config: RVQCodecConfig

    def _build_common(self) -> None:
        """Encoder, decoder and Mel loss.

        Two choices keep the codebooks from collapsing at the start of training (measured: with PyTorch's
        default init and the raw waveform, RVQ levels used 1–7 of 1024 codes after 150 steps; with both,
        50–80 after 300 steps): the encoder's conv biases start at zero, and the waveform (corpus RMS ≈ 0.2)
        is multiplied by ``input_gain`` — otherwise the biases dominate the latent and every frame looks alike
        to the quantizer. Codes are never *output* unit-norm: with cosine (unit-norm) EMA codewords a level's
        output has a fixed norm, the residual never shrinks, and the deeper levels re-quantize the same
        direction — a 4,650-step run decoded as well from 1 level as from 8 (Mel distance 2.19 vs 2.19).
        DAC's ``lookup: l2norm`` normalises only to choose the codeword and passes on the raw one, so its
        levels do shrink the residual (``tests/quantize/test_rvq.py``)."""
        cfg = self.config
        self.encoder = WaveEncoder(cfg.encoder_channels, cfg.encoder_strides, cfg.latent_dim,
                                   res_units=cfg.encoder_res_units, stem_stages=cfg.encoder_stem_stages,
                                   head_blocks=cfg.encoder_head_blocks, activation=cfg.encoder_activation,
                                   weight_norm=cfg.weight_norm, output=cfg.encoder_output)
        for m in self.encoder.modules():
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                nn.init.zeros_(m.bias)
        self.decoder = LatentDecoder(cfg.latent_dim, cfg.stride, kind=cfg.decoder, dim=cfg.decoder_dim,
                                     intermediate_dim=cfg.decoder_intermediate_dim, num_layers=cfg.decoder_layers,
                                     hop=cfg.decoder_hop, n_fft=cfg.decoder_n_fft,
                                     channels=cfg.encoder_channels, strides=cfg.encoder_strides)
        self.mel_loss = MultiResolutionMelLoss(cfg.sample_rate, cfg.mel_windows)  # no weights, nothing saved

    def config_dict(self) -> dict:
        return self.config.to_dict()

    def _encode_latents(self, wav: Tensor) -> Tensor:
        """``(B, T)`` -> ``(B, n, D)`` channels-last latents at the finest token rate."""
        return self.encoder(wav * self.config.input_gain).transpose(1, 2)

    def _decode_latents(self, z: Tensor) -> Tensor:
        """``(B, n, D)`` -> ``(B, n · stride)`` float32 waveform."""
        return self.decoder(z.transpose(1, 2)).float()

    def forward(self, wav: Tensor, mmd_pool: list[Tensor] | None = None) -> CodecOutput:
        """The training pass (so that DDP sees it): see ``forward_train``."""
        return self.forward_train(wav, mmd_pool)

    def training_losses(self, batch: dict) -> dict[str, Tensor]:
        return self.forward_train(batch["audio"]).losses

    def _mel_losses(self, out: CodecOutput) -> dict[str, Tensor]:
        """Mel L1 of every (target, output) pair, weighted; named ``mel`` (one pair) or ``mel_1..N``."""
        w = self.config.mel_weight
        if len(out.targets) == 1:
            return {"mel": w * self.mel_loss(out.targets[0], out.outputs[0])}
        return {f"mel_{i + 1}": w * self.mel_loss(t, o) for i, (t, o) in enumerate(zip(out.targets, out.outputs))}

    @abc.abstractmethod
    def _mmd_quantizer(self) -> ResidualVQ:
        """The residual VQ whose levels the MMD term makes independent (abstract)."""

    @abc.abstractmethod
    def _mmd_latents(self, wav: Tensor) -> Tensor:
        """``(B, T)`` whole frames -> ``(B, n, D)``: the input of :meth:`_mmd_quantizer`, with gradient
        (abstract)."""

    def mmd_streams(self, wav: Tensor) -> Tensor:
        """The streams the MMD statistic reads: ``(B, n, L, D)`` pre-quantisation residuals of ``(B, T)``
        clips (:meth:`~musictok.quantize.rvq.ResidualVQ.residual_streams`; ``mmd.streams`` picks AudioCraft's
        remainders instead). Every level, whatever the quantizer dropout; no codebook update."""
        x = self._mmd_latents(self._pad(wav))
        with torch.autocast(x.device.type, enabled=False):
            kind = self.config.mmd.streams
            return self._mmd_quantizer().residual_streams(x.float(), remainders=kind == "remainders",
                                                          lookup=kind == "lookup")

    @property
    def mmd_ready(self) -> bool:
        """Whether the MMD term has anything to measure: two levels at least, and codebooks initialised (until
        then codewords and projections are random and the streams say nothing about the codes)."""
        quantizer = self._mmd_quantizer()
        return quantizer.num_quantizers >= 2 and quantizer.initialised

    def independence_statistic(self, pool: list[Tensor]) -> Tensor:
        """The MMD statistic of a pool of ``(B, T)`` batches, a 0-d tensor: all re-encoded with the current
        weights and pooled into one statistic (clips cropped to the shortest), with gradient to the encoder
        when gradients are enabled — then one checkpointed encoder pass per batch, so only the latents are
        held for the backward pass. Random draws (the halves, the shuffles) come from torch's global RNG."""
        grad = torch.is_grad_enabled()
        streams = [checkpoint(self.mmd_streams, w, use_reentrant=False) if grad else self.mmd_streams(w)
                   for w in pool]
        frames = min(s.shape[1] for s in streams)
        return independence_mmd(torch.cat([s[:, :frames] for s in streams]), self.config.mmd)

    def _independence_term(self, pool: list[Tensor], out: CodecOutput) -> None:
        """The MMD statistic of a pool of training batches (:meth:`independence_statistic`), logged as
        ``stats["mmd"]``; ``mmd.weight ×`` it joins the losses as ``losses["mmd_loss"]`` (gradient is taken
        only when the weight is positive).

        As in AudioCraft's EnCodec-MMD solver, the trainer keeps the last ``mmd.pool_batches`` batches of
        audio and passes them here once per cycle. Nothing is computed, logged or trained while the
        quantizer's codebooks are not initialised yet (``kmeans_vectors``: the buffer still filling): its
        codewords and projections are random then, so the statistic would measure noise and its gradient
        would move the encoder towards independence of meaningless streams."""
        if not pool or not self.mmd_ready:
            return
        weight = self.config.mmd.weight
        with torch.set_grad_enabled(weight > 0 and torch.is_grad_enabled()):
            mmd = self.independence_statistic(pool)
        out.stats["mmd"] = mmd.detach()
        if weight > 0:
            out.losses["mmd_loss"] = weight * mmd

    def _pad(self, wav: Tensor) -> Tensor:
        return F.pad(wav, (0, -wav.shape[-1] % self.hop_samples))


@register_tokenizer("rvq_codec")
class RVQCodec(WaveformCodec):
    """Waveform → ``num_quantizers`` RVQ codebooks per frame; see the module docstring."""

    config_class = RVQCodecConfig

    def __init__(self, config: RVQCodecConfig | None = None):
        super().__init__(config or RVQCodecConfig())
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.config.seed)
            self._build_common()
            self.quantizer = ResidualVQ(self.config.quantizer_config())
        self.hop_samples = self.config.stride
        # frames either side of a chunk: beyond the encoder's reach (and the decoder's, a few frames)
        self.context_units = max(16, math.ceil(self.encoder.reach / self.hop_samples) + 1)

    @property
    def num_decode_levels(self) -> int:
        return self.config.num_quantizers  # decode(levels=k): the first k codebooks

    @property
    def layout(self) -> TokenLayout:
        cfg = self.config
        return TokenLayout((StreamSpec("rvq", cfg.frame_rate, (cfg.codebook_size,) * cfg.num_quantizers,
                                       slot_axis="codebook"),))

    def reconstruction_paths(self) -> dict:
        """``tokens`` (all levels), the first 1, 2, 4 … codebooks (does every level earn its bits?) and the
        unquantised latent decoded (what the quantizer costs: the ceiling any number of levels approaches)."""
        paths: dict = {"tokens": None}
        k = 1
        while k < self.num_decode_levels:
            paths[f"codebooks 1-{k}"] = lambda x, k=k: self.decode(self.encode(x), levels=k)
            k *= 2
        paths["unquantised latent"] = self._decode_unquantised
        return paths

    @torch.no_grad()
    def _decode_unquantised(self, wav: Tensor) -> Tensor:
        was_training = self.training
        self.eval()
        try:
            return self._decode_latents(self._encode_latents(self._pad(wav)))[..., :wav.shape[-1]]
        finally:
            self.train(was_training)

    def _encode_codes(self, wav: Tensor) -> list[Tensor]:
        z = self._encode_latents(wav)
        with torch.autocast(z.device.type, enabled=False):
            return [self.quantizer.encode(z.float())]

    def _decode_codes(self, codes: list[Tensor], levels: int | None = None) -> Tensor:
        c = codes[0] if levels is None else codes[0][..., :levels]
        return self._decode_latents(self.quantizer.decode(c))

    def _embed_codes(self, codes: list[Tensor]) -> list[Tensor]:
        c = codes[0]
        return [torch.stack([layer.decode(c[..., i]) for i, layer in enumerate(self.quantizer.layers)], dim=-2)]

    def dependence_embeddings(self, tokens: Tokens) -> list[Tensor]:
        """Under ``mmd.streams: lookup`` the look-up-space codewords (8-d, L2-normalised for DAC's codes), the
        features the training's MMD term reads; else the code embeddings."""
        if self.config.mmd.streams != "lookup":
            return super().dependence_embeddings(tokens)
        self.check_tokens(tokens)
        c = tokens.codes[0].to(self.device)
        return [torch.stack([layer.lookup_codewords(c[..., i]) for i, layer in enumerate(self.quantizer.layers)],
                            dim=-2)]

    def _mmd_quantizer(self) -> ResidualVQ:
        return self.quantizer

    def _mmd_latents(self, wav: Tensor) -> Tensor:
        return self._encode_latents(wav)

    def forward_train(self, wav: Tensor, mmd_pool: list[Tensor] | None = None) -> CodecOutput:
        """One training pass on ``(B, T)`` clips (zero-padded to whole frames); the MMD term on ``mmd_pool``
        (a list of ``(B', T')`` batches, usually ending with ``wav``) when the trainer passes one."""
        wav = self._pad(wav)
        z = self._encode_latents(wav)
        with torch.autocast(z.device.type, enabled=False):
            q = self.quantizer(z.float())
        out = CodecOutput([wav], [self._decode_latents(q.z_q)], [q.codes])
        out.losses = self._mel_losses(out) | {f"vq_{k}": v for k, v in q.losses.items()}
        if mmd_pool is not None:
            self._independence_term(mmd_pool, out)
        out.stats |= {"perplexity": q.stats["perplexity"].mean(), "utilization": q.stats["utilization"].mean()}
        return out
