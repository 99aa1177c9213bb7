"""BandTok: music as a time × band token grid from one shared codebook.

The log-Mel spectrogram is treated as an image (frequency × time). A 2D convolutional encoder shrinks it to
a grid of ``T' = frames / time_downsample`` frames × ``bands`` Mel bands; **every cell of the grid is
quantized by the same codebook** (EMA updates, k-means init, dead-code restart), so a code means the same
local spectro-temporal pattern wherever it appears. A mirrored decoder, told which band each row is by a
learned band embedding, returns the Mel; a neural vocoder (or Griffin-Lim, training-free) returns audio.

Defaults at 24 kHz: hop 256 → 93.75 Mel frames/s, time ÷ 4 → 23.4375 token frames/s, 128 Mel bins ÷ 16 →
8 bands: 187.5 tokens/s, 1024 codes → 1.875 kbps.

Training objective (``training_losses`` + the trainer's discriminator): Mel L1 + L2 on the normalised
log-Mel, the codebook commitment loss, and a multi-scale PatchGAN on the Mel image with feature matching.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.convnext import ChannelNorm2d, Downsample2d, ResBlock2d, Upsample2d
from ..quantize.vq import VectorQuantizer, VQConfig
from ..settings import build_checked
from ..spectral import MelConfig, MelSpectrogram, griffin_lim
from ..tokens import StreamSpec, TokenLayout
from .base import Tokenizer, register_tokenizer


@dataclass
class BandTokConfig:
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    bands: int = 8  # token rows per frame; n_mels / bands must be a power of two
    time_downsample: int = 4  # Mel frames per token frame; a power of two
    channels: tuple[int, ...] = (32, 64, 96, 128, 128)  # conv width before each stage, then the bottleneck
    blocks_per_stage: int = 1
    stem_stages: int = 2  # first stages patchify (kernel = stride, no residual blocks): full resolution is costly
    bottleneck_blocks: int = 1
    latent_dim: int = 64
    codebook_size: int = 1024
    codebook_dim: int | None = None
    ema_decay: float = 0.99
    commitment_weight: float = 0.25
    kmeans_init: bool = True
    dead_after_steps: int = 200
    mel_mean: float = -4.0  # fixed affine normalisation of the natural-log Mel (chorales: mean -4.07, std 2.48)
    mel_std: float = 2.5
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    griffin_lim_iters: int = 32
    vocoder: dict | None = None  # a VocoderConfig as a dict; None decodes with Griffin-Lim
    seed: int = 0
    level_dbfs: float | None = None  # encode at this RMS level (gain-invariant tokens); None keeps the level

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        ff = self.n_mels // self.bands
        if self.n_mels % self.bands or ff & (ff - 1):
            raise ValueError(f"n_mels / bands must be a power of two, got {self.n_mels} / {self.bands}")
        if self.time_downsample & (self.time_downsample - 1):
            raise ValueError(f"time_downsample must be a power of two, got {self.time_downsample}")
        if len(self.channels) != self.num_stages + 1:
            raise ValueError(f"channels needs {self.num_stages + 1} widths (one per stage + bottleneck), "
                             f"got {len(self.channels)}")

    @property
    def num_stages(self) -> int:
        return max(int(math.log2(self.n_mels // self.bands)), int(math.log2(self.time_downsample)))

    def stage_strides(self) -> list[tuple[int, int]]:
        """(frequency, time) stride of each downsampling stage."""
        nf, nt = int(math.log2(self.n_mels // self.bands)), int(math.log2(self.time_downsample))
        return [(2 if i < nf else 1, 2 if i < nt else 1) for i in range(self.num_stages)]

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / (self.hop_length * self.time_downsample)

    def mel_config(self) -> MelConfig:
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                         win_length=self.n_fft, n_mels=self.n_mels)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BandTokConfig:
        return build_checked(cls, d, "BandTok config")

    # presets -------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw) -> BandTokConfig:
        """For tests: seconds on a CPU."""
        base = dict(n_mels=32, bands=4, channels=(8, 8, 16, 16), latent_dim=16, codebook_size=64,
                    stem_stages=1, dead_after_steps=20)
        return cls(**(base | kw))

    @classmethod
    def small(cls, **kw) -> BandTokConfig:
        """Trained on CPU here and bundled (a few MB)."""
        return cls(**kw)

    @classmethod
    def base(cls, **kw) -> BandTokConfig:
        """GPU scale."""
        base = dict(channels=(64, 128, 256, 384, 512), blocks_per_stage=2, stem_stages=1, bottleneck_blocks=4,
                    latent_dim=128)
        return cls(**(base | kw))


class BandEncoder(nn.Module):
    """``(B, 1, n_mels, F)`` normalised log-Mel image -> ``(B, latent, bands, F / time_downsample)``."""

    def __init__(self, cfg: BandTokConfig):
        super().__init__()
        ch = cfg.channels
        self.conv_in = nn.Conv2d(1, ch[0], 3, padding=1)
        stages = []
        for i, (sf, st) in enumerate(cfg.stage_strides()):
            if i < cfg.stem_stages:  # patchify: non-overlapping kernel = stride, cheap at full resolution
                stages.append(nn.Conv2d(ch[i], ch[i + 1], kernel_size=(sf, st), stride=(sf, st)))
                continue
            blocks = [ResBlock2d(ch[i]) for _ in range(cfg.blocks_per_stage)]
            stages.append(nn.Sequential(*blocks, Downsample2d(ch[i], ch[i + 1], factor=(sf, st))))
        self.stages = nn.Sequential(*stages)
        self.bottleneck = nn.Sequential(*[ResBlock2d(ch[-1]) for _ in range(cfg.bottleneck_blocks)])
        self.norm = ChannelNorm2d(ch[-1])
        self.proj = nn.Conv2d(ch[-1], cfg.latent_dim, 1)
        self.stem_convs = 1 + min(cfg.stem_stages, cfg.num_stages)  # conv_in and the patchify stages

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            h = self.stages(self.conv_in(x))
        else:  # inference: the linear stem as one conv (same function, ≈ 1/15 of its FLOPs and memory traffic)
            weight, bias, stride = self.folded_stem()
            h = self.stages[self.stem_convs - 1:](F.conv2d(x, weight, bias, stride, self.conv_in.padding))
        return self.proj(F.silu(self.norm(self.bottleneck(h))))

    def folded_stem(self) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """``conv_in`` and the patchify stages composed into one strided conv ``(weight, bias, stride)``.

        Nothing nonlinear sits between them, and only ``conv_in`` pads, so the composition is exact: it
        costs a few small matmuls and saves the full-resolution 32-channel image the stem otherwise writes
        and reads (a fifth of bandtok-small's encoder time on CPU)."""
        convs = [self.conv_in, *self.stages[: self.stem_convs - 1]]
        weight, bias, stride = convs[0].weight, convs[0].bias, tuple(convs[0].stride)
        for conv in convs[1:]:
            w2, (kh, kw) = conv.weight, weight.shape[2:]
            size = (kh + (w2.shape[2] - 1) * stride[0], kw + (w2.shape[3] - 1) * stride[1])
            composed = weight.new_zeros(w2.shape[0], weight.shape[1], *size)
            for a in range(w2.shape[2]):  # output tap (a, b) of the next conv reads the previous at a·stride
                for b in range(w2.shape[3]):
                    i, j = a * stride[0], b * stride[1]
                    composed[:, :, i: i + kh, j: j + kw] += torch.einsum("om,miuv->oiuv", w2[:, :, a, b], weight)
            bias = conv.bias + w2.sum(dim=(2, 3)) @ bias
            weight, stride = composed, (stride[0] * conv.stride[0], stride[1] * conv.stride[1])
        return weight, bias, stride


class BandDecoder(nn.Module):
    """``(B, latent, bands, T')`` quantized grid -> ``(B, 1, n_mels, T' * time_downsample)``.

    A learned embedding per band row tells the decoder where in the spectrum a (shared) code sits.
    """

    def __init__(self, cfg: BandTokConfig):
        super().__init__()
        ch = cfg.channels
        self.proj = nn.Conv2d(cfg.latent_dim, ch[-1], 1)
        self.band_embedding = nn.Parameter(torch.zeros(1, ch[-1], cfg.bands, 1))
        self.bottleneck = nn.Sequential(*[ResBlock2d(ch[-1]) for _ in range(cfg.bottleneck_blocks)])
        stages = []
        for i, (sf, st) in reversed(list(enumerate(cfg.stage_strides()))):
            if i < cfg.stem_stages:  # un-patchify, the mirror of the encoder's stem
                stages.append(nn.ConvTranspose2d(ch[i + 1], ch[i], kernel_size=(sf, st), stride=(sf, st)))
                continue
            stages.append(nn.Sequential(Upsample2d(ch[i + 1], ch[i], factor=(sf, st)),
                                        *[ResBlock2d(ch[i]) for _ in range(cfg.blocks_per_stage)]))
        self.stages = nn.Sequential(*stages)
        self.norm = ChannelNorm2d(ch[0])
        self.conv_out = nn.Conv2d(ch[0], 1, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.bottleneck(self.proj(z) + self.band_embedding)
        return self.conv_out(F.silu(self.norm(self.stages(h))))


@dataclass
class BandTokOutput:
    """What one training forward pass produces (normalised log-Mels are ``(B, 1, n_mels, F)``)."""

    mel: Tensor
    mel_hat: Tensor
    codes: Tensor  # (B, T', bands)
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)


@register_tokenizer("bandtok")
class BandTok(Tokenizer):
    """2D Mel-band tokenizer; see the module docstring."""

    config_class = BandTokConfig
    decode_only = ("vocoder",)  # a new vocoder decodes the same tokens: see Tokenizer.decode_only

    def __init__(self, config: BandTokConfig | None = None):
        super().__init__(config or BandTokConfig())
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.config.seed)
            self._build()

    def _build(self) -> None:
        cfg = self.config
        self.features = MelSpectrogram(cfg.mel_config())
        self.encoder = BandEncoder(cfg)
        self.quantizer = VectorQuantizer(VQConfig(
            dim=cfg.latent_dim, codebook_size=cfg.codebook_size, codebook_dim=cfg.codebook_dim,
            decay=cfg.ema_decay, commitment_weight=cfg.commitment_weight, kmeans_init=cfg.kmeans_init,
            dead_after_steps=cfg.dead_after_steps, seed=cfg.seed))
        self.decoder = BandDecoder(cfg)
        self.vocoder = None
        if cfg.vocoder is not None:
            from ..nn.vocoder import Vocoder, VocoderConfig

            self.vocoder = Vocoder(VocoderConfig.from_dict(cfg.vocoder))
        self.hop_samples = cfg.hop_length * cfg.time_downsample
        self.context_units = 24  # token frames either side of a chunk: more than the encoder's reach
        for part in (self.encoder, self.decoder):
            part.to(memory_format=torch.channels_last)

    @property
    def layout(self) -> TokenLayout:
        cfg = self.config
        return TokenLayout((StreamSpec("bands", cfg.frame_rate, (cfg.codebook_size,) * cfg.bands,
                                       slot_axis="band", shared_codebook=True),))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---------------------------------------------------------------- Mel in and out
    def mel(self, wav: Tensor) -> Tensor:
        """``(B, T)`` with ``T % hop_samples == 0`` -> normalised log-Mel image ``(B, 1, n_mels, T / hop)``.

        The last centred STFT frame is dropped so Mel frames tile the samples exactly, which keeps token
        frames aligned to multiples of ``hop_samples`` (what chunked encoding relies on)."""
        m = self.features(wav)[..., :-1]
        x = ((m - self.config.mel_mean) / self.config.mel_std).unsqueeze(1)
        return x.contiguous(memory_format=torch.channels_last)  # ≈ 1.5× faster 2D convs on CPU

    def denormalize(self, mel: Tensor) -> Tensor:
        """Normalised ``(B, 1, n_mels, F)`` -> natural-log Mel ``(B, n_mels, F)``."""
        return mel.squeeze(1) * self.config.mel_std + self.config.mel_mean

    def mel_to_wav(self, log_mel: Tensor) -> Tensor:
        """Natural-log Mel ``(B, n_mels, F)`` -> ``(B, F * hop)`` with the vocoder, else Griffin-Lim."""
        return self._fit_frames(self.vocoder(log_mel) if self.vocoder is not None else self._griffin_lim(log_mel),
                                log_mel.shape[-1])

    def _griffin_lim(self, log_mel: Tensor) -> Tensor:
        wav = griffin_lim(log_mel, self.config.mel_config(), n_iter=self.config.griffin_lim_iters,
                          seed=self.config.seed)
        return self._fit_frames(wav, log_mel.shape[-1])

    def _fit_frames(self, wav: Tensor, frames: int) -> Tensor:
        """Pad / trim to ``frames × hop`` samples (the inverse of the Mel's dropped last frame)."""
        n = frames * self.config.hop_length
        return F.pad(wav, (0, max(n - wav.shape[-1], 0)))[..., :n]

    # ---------------------------------------------------------------- tokenizer contract
    def _quantize(self, z: Tensor):
        # (B, D, bands, T') -> (B, T', bands, D); nearest-code search and EMA statistics stay in fp32
        with torch.autocast(z.device.type, enabled=False):
            return self.quantizer(z.float().permute(0, 3, 2, 1))

    def _encode_codes(self, wav: Tensor) -> list[Tensor]:
        z = self.encoder(self.mel(wav))
        with torch.autocast(z.device.type, enabled=False):  # nearest-code search in fp32 (see _quantize)
            return [self.quantizer.encode(z.float().permute(0, 3, 2, 1))]

    def _decode_mel(self, codes: Tensor) -> Tensor:
        z_q = self.quantizer.decode(codes)  # (B, T', bands, D)
        return self.decoder(z_q.permute(0, 3, 2, 1))

    def _decode_codes(self, codes: list[Tensor], **options) -> Tensor:
        if options:
            raise TypeError(f"BandTok.decode takes no options, got {sorted(options)}")
        return self.mel_to_wav(self.denormalize(self._decode_mel(codes[0])))

    def _embed_codes(self, codes: list[Tensor]) -> list[Tensor]:
        return [self.quantizer.decode(codes[0])]

    def reconstruction_paths(self) -> dict:
        """``tokens`` (through the vocoder when there is one), plus Mel → vocoder / Griffin-Lim without
        the quantizer, and tokens → Griffin-Lim: separating tokenizer loss from vocoder loss."""
        def padded(x: Tensor) -> Tensor:
            return F.pad(x, (0, -x.shape[-1] % self.hop_samples))

        def mel_gl(x: Tensor) -> Tensor:
            return self._griffin_lim(self.denormalize(self.mel(padded(x))))[..., : x.shape[-1]]

        def tokens_gl(x: Tensor) -> Tensor:
            mel_hat = self._decode_mel(self._encode_codes(padded(x))[0])
            return self._griffin_lim(self.denormalize(mel_hat))[..., : x.shape[-1]]

        paths: dict = {"tokens": None}
        if self.vocoder is not None:
            paths["mel→vocoder"] = lambda x: self.mel_to_wav(self.denormalize(self.mel(padded(x))))[..., : x.shape[-1]]
            paths["tokens→griffin-lim"] = tokens_gl
        paths["mel→griffin-lim"] = mel_gl
        return paths

    def decode_mel(self, tokens) -> Tensor:
        """Tokens -> natural-log Mel ``(B, n_mels, frames)`` (before the vocoder)."""
        self.check_tokens(tokens)
        with torch.no_grad():
            return self.denormalize(self._decode_mel(tokens.codes[0].to(self.device)))

    # ---------------------------------------------------------------- training
    def forward(self, wav: Tensor) -> BandTokOutput:
        """The training pass (so that DDP sees it): see :meth:`forward_train`."""
        return self.forward_train(wav)

    def forward_train(self, wav: Tensor) -> BandTokOutput:
        """One training pass on ``(B, T)`` clips (zero-padded to whole token frames)."""
        wav = F.pad(wav, (0, -wav.shape[-1] % self.hop_samples))
        mel = self.mel(wav)
        q = self._quantize(self.encoder(mel))
        mel_hat = self.decoder(q.z_q.permute(0, 3, 2, 1))
        cfg = self.config
        losses = {
            "mel_l1": cfg.l1_weight * F.l1_loss(mel_hat, mel),
            "mel_l2": cfg.l2_weight * F.mse_loss(mel_hat, mel),
            **{f"vq_{k}": v for k, v in q.losses.items()},
        }
        return BandTokOutput(mel, mel_hat, q.codes, losses, dict(q.stats))

    def training_losses(self, batch: dict) -> dict[str, Tensor]:
        return self.forward_train(batch["audio"]).losses
