"""DuoTok: a staged dual-track tokenizer — lead and accompaniment as two time-aligned token streams.

After Lin et al., *DuoTok: Source-Aware Dual-Track Tokenization for Multi-Track Music Language Modeling*.
The idea is **staged disentanglement**: learn a source-aware continuous representation first, then freeze
it and discretise each track with its own codebook. The four stages (each trained by
:mod:`musictok.train.duotok`, each starting from the previous stage's export):

1. **Self-supervised encoder (BEST-RQ).** A frozen random projection and a frozen random codebook turn
   stacked log-Mel frames into discrete targets (:class:`BestRQTargets`); the encoder sees the Mel with
   random spans replaced by noise and predicts the targets of the masked frames. Mixes and stems.
2. **Acoustic adaptation with structural regularisation.** Feature-replacement noise
   (:func:`feature_replacement_noise`: a Bernoulli share of time steps of the encoder's hidden features
   replaced by Gaussian noise with the features' statistics) and four heads on the encoder output
   (:meth:`DuoTok.stage2_losses`): the Mel and the chroma of the input; **source-separation masks** of a
   mix (the teacher is the ideal ratio mask of the exact stems, or a trained separator's); and a
   **symbolic head** that predicts each track's piano roll and onsets from the score (``score.mid``),
   where the paper had a lyric ASR head for the vocals only.
3. **Dual-track discretisation with hard routing.** The encoder is frozen; the lead's features go to
   codebook A, the accompaniment's to codebook B (:class:`TrackQuantizer`, SimVQ each), and the Mel, chroma
   and symbolic heads stay on the *quantised* features (:meth:`DuoTok.stage3_losses`). The MSS head is
   off, as in the paper: the inputs are single tracks.
4. **A decoder per track** (:class:`TrackDecoder`, no sharing) from the frozen codewords to the track's
   Mel, trained with L1 + L2 (+ an optional multi-scale PatchGAN in the trainer); a neural vocoder (or
   Griffin-Lim) turns Mel into audio. The paper used latent diffusion to an autoencoder's latents; here
   ``decoder="regression"`` (L1 + L2, GAN optional) is the fast option and ``decoder="flow"`` a few-step
   conditional flow-matching decoder to the Mel (:meth:`DuoTok.stage4_losses`).

**How a mix becomes two tracks.** DuoTok tokenizes *stems*: the paper separates every mix into vocal and
accompaniment pseudo-stems with an off-the-shelf separator, then encodes each stem and routes it to its
codebook. Here the separator is DuoTok's own stage-2 MSS head: on a mix, the encoder predicts a soft
time–frequency mask, the mix's STFT is split by it into lead and accompaniment (which sum to the mix
exactly), and each part is encoded and routed like a stem (:meth:`DuoTok.separate`). Given the stems,
``encode`` takes them as ``(B, 2, T)`` directly; ``decode`` always returns ``(B, 2, T)``.

Layout and bitrate at 24 kHz (``small``): Mel hop 256, 4 Mel frames per token frame → 23.4375 frames/s
per track, one code from 32,768 (15 bits) per frame → 351.6 bit/s per track, **0.703 kbps** for both.
(The paper: 25 Hz × 15 bits = 0.75 kbps. A frame here is four hops of the shared vocoder's Mel, so the
rate is 23.4375 Hz; ``codebook_size=65536`` gives exactly 0.75 kbps.)

The encoder attends within a window of ``attn_window`` frames either side (:class:`LocalSelfAttention`),
so its receptive field is finite and long files encode in chunks to the same tokens as whole.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.score import DUO_TRACKS, NUM_PITCHES
from ..nn.conformer import ConformerBlock
from ..nn.convnext import ConvNeXtBackbone
from ..quantize.base import QuantizedResult, nearest_code
from ..quantize.simvq import SimVQ, SimVQConfig
from ..settings import build_checked
from ..spectral import MelConfig, MelSpectrogram, griffin_lim
from ..tokens import StreamSpec, TokenLayout
from .base import Tokenizer, register_tokenizer

TRACKS = DUO_TRACKS  # ("lead", "accompaniment"): stream order, and the routing: track k -> codebook k
CHROMA = 12


@dataclass
class DuoTokConfig:
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 128  # the Mel of the shared vocoder (vocoder-small): one Mel for encoder input and decoder output
    time_downsample: int = 4  # Mel frames per token frame
    # encoder (Conformer with windowed attention)
    dim: int = 192
    layers: int = 4
    heads: int = 4
    ff_mult: int = 2
    conv_kernel: int = 15
    attn_window: int = 32  # token frames either side each layer attends to
    dropout: float = 0.0
    # stage-2/3 heads
    head_hidden: int = 192
    # stage 3: one SimVQ codebook per track
    codebook_size: int = 32768
    codebook_dim: int = 32
    commitment_weight: float = 0.25
    # stage 4: a decoder per track (ConvNeXt at the token rate, then at the Mel rate)
    decoder_dim: int = 192
    decoder_layers: int = 4
    decoder_post_dim: int = 96
    decoder_post_layers: int = 2
    decoder: str = "regression"  # "regression" (L1 + L2, optional GAN) or "flow" (conditional flow matching)
    flow_layers: int = 4  # flow decoder: ConvNeXt blocks of the velocity network (at the Mel rate)
    flow_steps: int = 8  # flow decoder: Euler steps from noise to Mel at decoding
    mel_mean: float = -5.0  # fixed affine normalisation of the natural-log Mel
    mel_std: float = 2.5
    chroma_fmin: float = 27.5
    chroma_fmax: float = 4200.0
    griffin_lim_iters: int = 32
    vocoder: dict | None = None  # a VocoderConfig as a dict; None decodes with Griffin-Lim
    level_dbfs: float | None = None
    trained_stage: int = 0  # the last stage trained (set by the staged trainer's exports)
    seed: int = 0

    def __post_init__(self) -> None:
        td = self.time_downsample
        if td < 1 or td & (td - 1):
            raise ValueError(f"time_downsample must be a power of two, got {td}")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.attn_window < 1 or self.layers < 1:
            raise ValueError(f"attn_window and layers must be >= 1, got {self.attn_window}, {self.layers}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if not 0 <= self.trained_stage <= 4:
            raise ValueError(f"trained_stage must be 0..4, got {self.trained_stage}")
        if self.decoder not in ("regression", "flow") or self.flow_steps < 1:
            raise ValueError(f"decoder must be 'regression' or 'flow' (flow_steps >= 1), got {self.decoder!r}")

    @property
    def hop_samples(self) -> int:
        return self.hop_length * self.time_downsample

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_samples

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def mel_config(self) -> MelConfig:
        return MelConfig(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                         win_length=self.n_fft, n_mels=self.n_mels)

    def encoder_reach(self) -> int:
        """Token frames either side that one encoder pass reads: window + conv reach per layer, + the stem."""
        return self.layers * (self.attn_window + self.conv_kernel // 2) + 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DuoTokConfig:
        return build_checked(cls, d, "DuoTok config")

    # presets -------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **kw) -> DuoTokConfig:
        """For tests: seconds on a CPU."""
        base = dict(n_mels=32, dim=32, layers=1, heads=2, ff_mult=2, conv_kernel=7, attn_window=8, head_hidden=32,
                    codebook_size=64, codebook_dim=8, decoder_dim=32, decoder_layers=1, decoder_post_dim=16,
                    decoder_post_layers=1)
        return cls(**(base | kw))

    @classmethod
    def small(cls, **kw) -> DuoTokConfig:
        """Trainable on a CPU (about 6 M parameters with its heads and decoders)."""
        return cls(**kw)

    @classmethod
    def base(cls, **kw) -> DuoTokConfig:
        """GPU scale."""
        base = dict(dim=512, layers=12, heads=8, ff_mult=4, head_hidden=512, attn_window=64, decoder_dim=512,
                    decoder_layers=8, decoder_post_dim=256, decoder_post_layers=4)
        return cls(**(base | kw))


# ================================================================================================ features
def chroma_filterbank(sample_rate: int, n_fft: int, fmin: float, fmax: float) -> Tensor:
    """``(12, n_fft // 2 + 1)``: each STFT bin between ``fmin`` and ``fmax`` counts for its nearest pitch class
    (C = 0), so ``filterbank @ power`` is a chroma vector per frame."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    fb = np.zeros((CHROMA, len(freqs)), dtype=np.float32)
    ok = (freqs >= fmin) & (freqs <= min(fmax, sample_rate / 2))
    pitch = np.round(69 + 12 * np.log2(np.maximum(freqs[ok], 1e-6) / 440.0)).astype(int)
    fb[pitch % CHROMA, np.nonzero(ok)[0]] = 1.0
    return torch.from_numpy(fb)


def ideal_ratio_mask(lead_magnitude: Tensor, acc_magnitude: Tensor, eps: float = 1e-4) -> Tensor:
    """The lead's share of each time–frequency bin, ``|S_lead| / (|S_lead| + |S_acc|)``, in ``[0, 1]``.

    The accompaniment's mask is one minus it. Bins where both are silent get 0.5 (``eps`` is split evenly).
    """
    return (lead_magnitude + eps / 2) / (lead_magnitude + acc_magnitude + eps)


# ================================================================================================ stage 1
class BestRQTargets(nn.Module):
    """BEST-RQ's target maker: stacked Mel frames -> ``(B, T', codebooks)`` discrete targets, frozen.

    Each Mel bin is normalised by its own mean and standard deviation (:meth:`fit_normalisation`, on
    training clips; BEST-RQ normalises every input feature, without which the bins' offsets dominate the
    projection and the targets crowd into few codes), each token frame's ``time_downsample`` frames are
    concatenated, projected by a random matrix (Xavier-uniform), L2-normalised and assigned to the nearest
    entry of a random, L2-normalised codebook (Chiu et al., 2022). Projection, codebooks and statistics are
    buffers: never trained, never changed by a step; projection and codebooks are drawn from ``seed``.
    """

    projection: Tensor
    codebooks: Tensor
    feature_mean: Tensor
    feature_std: Tensor

    def __init__(self, in_dim: int, stack: int, dim: int = 16, codebook_size: int = 8192, codebooks: int = 1,
                 seed: int = 0):
        super().__init__()
        self.stack = stack
        g = torch.Generator().manual_seed(seed)
        fan_in, fan_out = in_dim * stack, dim
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.register_buffer("projection", (torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
        self.register_buffer("codebooks", F.normalize(torch.randn(codebooks, codebook_size, dim, generator=g), dim=-1))
        self.register_buffer("feature_mean", torch.zeros(in_dim))  # identity until fit_normalisation
        self.register_buffer("feature_std", torch.ones(in_dim))

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def fit_normalisation(self, mel: Tensor) -> None:
        """Set the per-bin statistics from training frames ``(B, n_mels, F)``."""
        x = mel.float().transpose(1, 2).reshape(-1, mel.shape[1])
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0).clamp_min(1e-3))

    @torch.no_grad()
    def forward(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, F)`` normalised log-Mel, ``F`` a multiple of ``stack`` -> ``(B, F / stack, codebooks)``."""
        B, M, Fr = mel.shape
        mel = (mel.float() - self.feature_mean[:, None]) / self.feature_std[:, None]
        x = mel.reshape(B, M, Fr // self.stack, self.stack).permute(0, 2, 3, 1).reshape(-1, self.stack * M)
        with torch.autocast(mel.device.type, enabled=False):  # the trainer's bf16 would move ~3 % of the targets
            z = F.normalize(x @ self.projection, dim=-1)
            codes = [nearest_code(z, cb) for cb in self.codebooks]  # batch-invariant (blockwise) search
        return torch.stack(codes, dim=-1).reshape(B, Fr // self.stack, -1)


def span_mask(batch: int, frames: int, prob: float, span: int, generator: torch.Generator | None = None) -> Tensor:
    """``(B, frames)`` bool: every frame starts a masked span of ``span`` frames with probability ``prob``."""
    starts = torch.rand(batch, frames, generator=generator) < prob
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for k in range(span):
        mask[:, k:] |= starts[:, : frames - k]
    return mask


# ================================================================================================ encoder
class LocalSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention in which frame ``t`` sees frames ``t - window … t + window``.

    Keys and values are unfolded into the ``2 window + 1`` neighbours of each frame, so every reduction
    has a fixed size (the same result, bit for bit, whatever the clip length: chunked encoding equals
    whole-file encoding) and the cost grows linearly with the length. Positions enter as a learned bias
    per head and relative offset — translation-invariant by construction.
    """

    def __init__(self, dim: int, heads: int, window: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.window, self.dropout = heads, window, dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, 2 * window + 1))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, dim) -> (B, T, dim)``."""
        B, T, C = x.shape
        H, W, d = self.heads, self.window, C // self.heads
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, H, d).unbind(2)  # (B, T, H, d)
        kw = F.pad(k, (0, 0, 0, 0, W, W)).unfold(1, 2 * W + 1, 1)  # (B, T, H, d, 2W+1)
        vw = F.pad(v, (0, 0, 0, 0, W, W)).unfold(1, 2 * W + 1, 1)
        scores = torch.einsum("bthd,bthdw->bthw", q, kw) * d ** -0.5 + self.bias
        pos = torch.arange(T, device=x.device)[:, None] + torch.arange(-W, W + 1, device=x.device)
        scores = scores.masked_fill(((pos < 0) | (pos >= T))[None, :, None, :], float("-inf"))
        attn = F.dropout(scores.softmax(dim=-1), self.dropout, self.training)
        y = torch.einsum("bthw,bthdw->bthd", attn, vw).reshape(B, T, C)
        return self.drop(self.proj(y))


class DuoEncoder(nn.Module):
    """Normalised log-Mel ``(B, n_mels, F)`` -> features ``(B, F / time_downsample, dim)``.

    A stem (a conv over Mel frames, then a patchify conv that turns each token frame's Mel frames into one
    vector) and Conformer blocks (the house :class:`~musictok.nn.conformer.ConformerBlock`, with its
    global attention swapped for :class:`LocalSelfAttention`). Stage 2's feature-replacement noise acts
    between the two (:meth:`forward`'s ``noise``), on the hidden features the blocks then contextualise.
    """

    def __init__(self, cfg: DuoTokConfig):
        super().__init__()
        r = cfg.time_downsample
        self.conv_in = nn.Conv1d(cfg.n_mels, cfg.dim, 3, padding=1)
        self.patchify = nn.Conv1d(cfg.dim, cfg.dim, r, stride=r)
        self.stem_norm = nn.LayerNorm(cfg.dim)
        self.blocks = nn.ModuleList()
        for _ in range(cfg.layers):
            block = ConformerBlock(cfg.dim, cfg.heads, cfg.ff_mult, cfg.conv_kernel, cfg.dropout)
            block.attn = LocalSelfAttention(cfg.dim, cfg.heads, cfg.attn_window, cfg.dropout)
            self.blocks.append(block)

    def stem(self, mel: Tensor) -> Tensor:
        """``(B, n_mels, F)`` -> ``(B, F / r, dim)`` per-frame hidden features, before any context."""
        return self.stem_norm(self.patchify(F.gelu(self.conv_in(mel))).transpose(1, 2))

    def forward(self, mel: Tensor, noise: float = 0.0) -> Tensor:
        h = self.stem(mel)
        if noise > 0:
            h, _ = feature_replacement_noise(h, noise)
        for block in self.blocks:
            h = block(h)
        return h


def feature_replacement_noise(h: Tensor, prob: float,
                              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Stage 2's regulariser (the paper's Eq. 1): ``h~_t = (1 - m_t) h_t + m_t eps_t``, ``m_t ~ Bernoulli(prob)``.

    ``h`` is ``(B, T, D)``; ``eps_t ~ N(mu, sigma^2)`` with ``mu`` and ``sigma`` the per-channel mean and
    standard deviation of ``h`` over the batch and time (detached), so a replaced step looks like a
    feature, not like a hole. Returns the noisy features and the ``(B, T)`` replacement mask.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"the replacement probability must be in [0, 1], got {prob}")
    B, T, D = h.shape
    flat = h.detach().reshape(-1, D)
    mu, sigma = flat.mean(0), flat.std(0, unbiased=False) if flat.shape[0] > 1 else torch.ones(D, device=h.device)
    m = torch.rand(B, T, generator=generator).to(h.device) < prob
    eps = mu + sigma * torch.randn(B, T, D, generator=generator).to(h.device, h.dtype)
    return torch.where(m[..., None], eps, h), m


# ================================================================================================ heads
class FrameHead(nn.Module):
    """``(B, T', dim)`` -> ``(B, T', rate, out)``: an MLP whose output is ``rate`` frames per token frame."""

    def __init__(self, dim: int, hidden: int, out: int, rate: int):
        super().__init__()
        self.rate, self.out = rate, out
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, rate * out))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h).view(*h.shape[:2], self.rate, self.out)


class DuoHeads(nn.Module):
    """The auxiliary heads of stages 2 and 3, shared by both tracks and by continuous / quantised features.

    - ``mel``: the input's normalised log-Mel ``(B, n_mels, F)``;
    - ``chroma``: pitch-class logits per token frame ``(B, T', 12)``;
    - ``mss``: the lead's mask logits over the mix's STFT ``(B, bins, F)`` (the accompaniment's is 1 - it);
    - ``symbolic``: piano-roll and onset logits of both tracks ``(B, 2 tracks, 2, 88, F)``.
    """

    def __init__(self, cfg: DuoTokConfig):
        super().__init__()
        r, d, hid = cfg.time_downsample, cfg.dim, cfg.head_hidden
        self.mel = FrameHead(d, hid, cfg.n_mels, r)
        self.chroma = FrameHead(d, hid, CHROMA, 1)
        self.mss = FrameHead(d, hid, cfg.bins, r)
        self.symbolic = FrameHead(d, hid, len(TRACKS) * 2 * NUM_PITCHES, r)

    @staticmethod
    def _frames(y: Tensor) -> Tensor:
        """``(B, T', r, C)`` -> ``(B, C, T' r)``."""
        B, T, r, C = y.shape
        return y.reshape(B, T * r, C).transpose(1, 2)

    def predict_mel(self, h: Tensor) -> Tensor:
        return self._frames(self.mel(h))

    def predict_chroma(self, h: Tensor) -> Tensor:
        return self.chroma(h)[:, :, 0]

    def predict_mask_logits(self, h: Tensor) -> Tensor:
        return self._frames(self.mss(h))

    def predict_symbolic(self, h: Tensor) -> Tensor:
        y = self._frames(self.symbolic(h))  # (B, 2*2*88, F)
        return y.reshape(y.shape[0], len(TRACKS), 2, NUM_PITCHES, y.shape[-1])


# ================================================================================================ stage 3
class TrackQuantizer(nn.Module):
    """One track's quantizer: ``dim -> codebook_dim`` projection, a SimVQ codebook, and back to ``dim``."""

    def __init__(self, cfg: DuoTokConfig, seed: int):
        super().__init__()
        self.project_in = nn.Linear(cfg.dim, cfg.codebook_dim)
        self.vq = SimVQ(SimVQConfig(dim=cfg.codebook_dim, codebook_size=cfg.codebook_size,
                                    commitment_weight=cfg.commitment_weight, seed=seed))
        self.project_out = nn.Linear(cfg.codebook_dim, cfg.dim)

    def forward(self, h: Tensor) -> tuple[QuantizedResult, Tensor]:
        """``(B, T', dim)`` -> the quantizer's result and the quantised features back in ``dim``."""
        z = self.project_in(h)
        with torch.autocast(z.device.type, enabled=False):  # nearest-code search and VQ losses in fp32
            q = self.vq(z.float())
        return q, self.project_out(q.z_q)

    def encode(self, h: Tensor) -> Tensor:
        with torch.autocast(h.device.type, enabled=False):  # fp32 under the trainer's bf16, as at inference
            return self.vq.encode(self.project_in(h.float()))

    def embed(self, codes: Tensor) -> Tensor:
        """Codes ``(B, T')`` -> codewords ``(B, T', codebook_dim)``, in fp32 (as at inference)."""
        with torch.autocast(codes.device.type, enabled=False):
            return self.vq.decode(codes)


# ================================================================================================ stage 4
class TrackDecoder(nn.Module):
    """Codewords ``(B, T', in_dim)`` -> normalised log-Mel ``(B, n_mels, T' r)``.

    A ConvNeXt at the token rate, an upsampling projection to ``r`` frames per token frame, a ConvNeXt at
    the Mel rate and a 1x1 conv to the Mel bins. Built on codewords alone, so the same recipe decodes any
    tokenizer's ``code_embeddings`` (the matched-decoder comparison).

    ``decoder="flow"``: the same network gives a conditioning sequence, and a velocity network (ConvNeXt at
    the Mel rate on ``[x_t, condition + time embedding]``) is trained by conditional flow matching
    (Lipman et al., 2023): ``x_t = (1 - t) x_0 + t x_1`` from Gaussian noise ``x_0`` to the Mel ``x_1``,
    velocity target ``x_1 - x_0``; decoding integrates it with ``flow_steps`` Euler steps from noise drawn
    from the model's seed (so a decode is reproducible).
    """

    def __init__(self, in_dim: int, cfg: DuoTokConfig):
        super().__init__()
        r, d, p = cfg.time_downsample, cfg.decoder_dim, cfg.decoder_post_dim
        self.rate, self.post_dim, self.n_mels = r, p, cfg.n_mels
        self.backbone = ConvNeXtBackbone(in_dim, d, 3 * d, cfg.decoder_layers)
        self.up = nn.Linear(d, r * p)
        self.post = ConvNeXtBackbone(p, p, 3 * p, cfg.decoder_post_layers)
        self.out = nn.Conv1d(p, cfg.n_mels, 1)
        self.flow = cfg.decoder == "flow"
        self.steps, self.seed = cfg.flow_steps, cfg.seed
        if self.flow:
            self.time = nn.Sequential(nn.Linear(1, p), nn.SiLU(), nn.Linear(p, p))
            self.velocity = ConvNeXtBackbone(cfg.n_mels + p, p, 3 * p, cfg.flow_layers)
            self.velocity_out = nn.Conv1d(p, cfg.n_mels, 1)

    def condition(self, e: Tensor) -> Tensor:
        """``(B, T', in_dim)`` -> ``(B, post_dim, T' r)`` at the Mel rate."""
        B, T, _ = e.shape
        h = self.backbone(e.transpose(1, 2)).transpose(1, 2)  # (B, T', d)
        h = self.up(h).reshape(B, T * self.rate, self.post_dim).transpose(1, 2)
        return self.post(h)

    def velocity_at(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        """Velocity of the flow at ``x (B, n_mels, F)``, times ``t (B,)``, condition ``c``."""
        ct = c + self.time(t[:, None].to(c.dtype))[:, :, None]
        return self.velocity_out(self.velocity(torch.cat([x, ct], dim=1)))

    def flow_loss(self, e: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Flow-matching loss and the one-step estimate of the Mel (for L1 or a discriminator)."""
        c = self.condition(e)
        x0 = torch.randn_like(target)
        t = torch.rand(target.shape[0], device=target.device)
        tt = t[:, None, None]
        v = self.velocity_at((1 - tt) * x0 + tt * target, t, c)
        return F.mse_loss(v, target - x0), (1 - tt) * x0 + tt * target + (1 - tt) * v

    def forward(self, e: Tensor) -> Tensor:
        c = self.condition(e)
        if not self.flow:
            return self.out(c)
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(c.shape[0], self.n_mels, c.shape[-1], generator=g).to(c.device, c.dtype)
        for i in range(self.steps):
            t = torch.full((c.shape[0],), i / self.steps, device=c.device)
            x = x + self.velocity_at(x, t, c) / self.steps
        return x


# ================================================================================================ the tokenizer
@dataclass
class StageOutput:
    """What one training pass of a stage produces: weighted losses, detached statistics, and (stage 4)
    the target and predicted Mels per track for the trainer's discriminator."""

    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    mels: list[Tensor] = field(default_factory=list)  # per track, (B, n_mels, F) targets
    mel_hats: list[Tensor] = field(default_factory=list)


@dataclass
class HeadWeights:
    """Loss weights of the auxiliary heads (0 turns a head off: the paper's ablations).

    ``symbolic_pos_weight`` (``(2 tracks, 2)``: roll, onset) weighs the *positive* targets of the symbolic
    head's binary cross-entropy: notes are sparse (a key sounds in ~1 % of the lead's roll cells, starts in
    ~0.02 % of them), so unweighted the head learns "no note anywhere" first. ``None``: plain BCE.
    """

    mel: float = 1.0
    chroma: float = 0.5
    mss: float = 1.0
    symbolic: float = 1.0
    symbolic_pos_weight: Tensor | None = None


@register_tokenizer("duotok")
class DuoTok(Tokenizer):
    """Dual-track tokenizer; see the module docstring."""

    config_class = DuoTokConfig
    decode_only = ("vocoder",)  # a new vocoder decodes the same tokens: see Tokenizer.decode_only
    stem_inputs = len(TRACKS)

    def __init__(self, config: DuoTokConfig | None = None):
        super().__init__(config or DuoTokConfig())
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(self.config.seed)
            self._build()

    def _build(self) -> None:
        cfg = self.config
        self.features = MelSpectrogram(cfg.mel_config())
        self.register_buffer("chroma_fb", chroma_filterbank(cfg.sample_rate, cfg.n_fft, cfg.chroma_fmin,
                                                            cfg.chroma_fmax), persistent=False)
        self.encoder = DuoEncoder(cfg)
        self.heads = DuoHeads(cfg)
        # hard routing: TRACKS[k] is always quantized by quantizers[k] (codebook A = lead, B = accompaniment)
        self.quantizers = nn.ModuleList(TrackQuantizer(cfg, seed=cfg.seed + 1 + k) for k in range(len(TRACKS)))
        self.decoders = nn.ModuleList(TrackDecoder(cfg.codebook_dim, cfg) for _ in TRACKS)
        self.vocoder = None
        if cfg.vocoder is not None:
            from ..nn.vocoder import Vocoder, VocoderConfig

            self.vocoder = Vocoder(VocoderConfig.from_dict(cfg.vocoder))
        self.hop_samples = cfg.hop_samples
        # a mix is encoded twice (to separate it, then each part), plus the STFT's reach
        self.context_units = 2 * cfg.encoder_reach() + 2

    @property
    def layout(self) -> TokenLayout:
        cfg = self.config
        return TokenLayout(tuple(StreamSpec(t, cfg.frame_rate, (cfg.codebook_size,), slot_axis="track")
                                 for t in TRACKS))

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ---------------------------------------------------------------- signals
    def mel(self, wav: Tensor) -> Tensor:
        """``(..., T)``, ``T % hop_samples == 0`` -> normalised log-Mel ``(..., n_mels, T / hop)``; the last
        centred frame is dropped, so Mel frame ``j`` is centred on sample ``j × hop`` and token frame ``i``
        covers samples ``[i × hop_samples, (i + 1) × hop_samples)``."""
        lead = wav.shape[:-1]
        m = self.features(wav.reshape(-1, wav.shape[-1]))[..., :-1]
        m = (m - self.config.mel_mean) / self.config.mel_std
        return m.reshape(*lead, *m.shape[-2:])

    def denormalize(self, mel: Tensor) -> Tensor:
        return mel * self.config.mel_std + self.config.mel_mean

    def stft(self, wav: Tensor) -> Tensor:
        """``(B, T)`` -> complex ``(B, bins, T / hop + 1)``, the STFT behind :meth:`mel`."""
        c = self.config
        with torch.autocast(wav.device.type, enabled=False):
            return torch.stft(wav.float(), c.n_fft, c.hop_length, c.n_fft, window=self.features.window,
                              center=True, pad_mode="reflect", return_complex=True)

    def istft(self, spec: Tensor, length: int) -> Tensor:
        c = self.config
        return torch.istft(spec, c.n_fft, c.hop_length, c.n_fft, window=self.features.window, center=True,
                           length=length)

    def chroma(self, wav: Tensor) -> Tensor:
        """``(B, T)`` -> chroma targets ``(B, T', 12)`` in ``[0, 1]``: pitch-class energy of each token frame,
        divided by its largest class (0 in near-silence)."""
        power = self.features.magnitude(wav).pow(2)[..., :-1]  # (B, bins, F)
        c = (self.chroma_fb @ power)  # (B, 12, F)
        B, _, Fr = c.shape
        c = c.reshape(B, CHROMA, Fr // self.config.time_downsample, -1).mean(-1).transpose(1, 2)
        peak = c.amax(-1, keepdim=True)
        return torch.where(peak > 1e-6, c / peak.clamp_min(1e-12), torch.zeros_like(c))

    def ideal_masks(self, stems: Tensor) -> Tensor:
        """Exact stems ``(B, 2, T)`` -> the lead's ideal ratio mask ``(B, bins, F)`` (the MSS teacher)."""
        mag = self.features.magnitude(stems.reshape(-1, stems.shape[-1]))[..., :-1]
        mag = mag.reshape(stems.shape[0], 2, *mag.shape[-2:])
        return ideal_ratio_mask(mag[:, 0], mag[:, 1])

    # ---------------------------------------------------------------- separation: a mix -> two tracks
    def separate(self, mix: Tensor) -> Tensor:
        """A mix ``(B, T)`` -> ``(B, 2, T)`` lead and accompaniment that sum to it (up to the STFT's
        rounding): the MSS head's soft mask splits the mix's STFT."""
        h = self.encoder(self.mel(mix))
        mask = torch.sigmoid(self.heads.predict_mask_logits(h)).float()  # (B, bins, F)
        mask = torch.cat([mask, mask[..., -1:]], dim=-1)  # the STFT has the frame mel() drops
        spec = self.stft(mix)
        parts = [self.istft(spec * m, mix.shape[-1]) for m in (mask, 1.0 - mask)]
        return torch.stack(parts, dim=1)

    # ---------------------------------------------------------------- tokenizer contract
    def encode_features(self, stems: Tensor) -> Tensor:
        """``(B, 2, T)`` stems -> encoder features ``(B, 2, T', dim)``."""
        B = stems.shape[0]
        h = self.encoder(self.mel(stems.reshape(2 * B, -1)))
        return h.reshape(B, 2, *h.shape[1:])

    def _encode_codes(self, wav: Tensor) -> list[Tensor]:
        stems = wav if wav.ndim == 3 else self.separate(wav)
        h = self.encode_features(stems)
        return [q.encode(h[:, k]).unsqueeze(-1) for k, q in enumerate(self.quantizers)]  # routing

    def decode_mel(self, codes: list[Tensor], via: str | None = None) -> list[Tensor]:
        """Per-track codes -> per-track normalised log-Mel ``(B, n_mels, F)``.

        ``via="decoder"`` uses the stage-4 decoders, ``via="heads"`` the Mel head on the quantised features
        (what stage 3 trains); the default is the decoders once stage 4 has trained them."""
        via = via or ("decoder" if self.config.trained_stage >= 4 else "heads")
        if via not in ("decoder", "heads"):
            raise TypeError(f"DuoTok.decode: via must be 'decoder' or 'heads', not {via!r}")
        out = []
        for k, q in enumerate(self.quantizers):
            e = q.embed(codes[k][..., 0])
            out.append(self.decoders[k](e) if via == "decoder" else self.heads.predict_mel(q.project_out(e)))
        return out

    def _decode_codes(self, codes: list[Tensor], via: str | None = None) -> Tensor:
        return torch.stack([self.mel_to_wav(self.denormalize(m)) for m in self.decode_mel(codes, via)], dim=1)

    def _embed_codes(self, codes: list[Tensor]) -> list[Tensor]:
        return [q.embed(codes[k][..., 0]).unsqueeze(2) for k, q in enumerate(self.quantizers)]

    def mel_to_wav(self, log_mel: Tensor) -> Tensor:
        """Natural-log Mel ``(B, n_mels, F)`` -> ``(B, F × hop)`` with the vocoder, else Griffin-Lim."""
        if self.vocoder is not None:
            wav = self.vocoder(log_mel)
        else:
            wav = griffin_lim(log_mel, self.config.mel_config(), n_iter=self.config.griffin_lim_iters,
                              seed=self.config.seed)
        n = log_mel.shape[-1] * self.config.hop_length
        return F.pad(wav, (0, max(n - wav.shape[-1], 0)))[..., :n]

    def reconstruction_paths(self) -> dict:
        """``tokens`` decodes both tracks; evaluation compares their sum with the mix."""
        return {"tokens": None}

    # ---------------------------------------------------------------- training passes, one per stage
    def _pad(self, wav: Tensor) -> Tensor:
        return F.pad(wav, (0, -wav.shape[-1] % self.hop_samples))

    def _head_losses(self, h: Tensor, wav: Tensor, roll: Tensor | None, onset: Tensor | None,
                     present: Tensor | None, w: HeadWeights, mel: Tensor) -> dict[str, Tensor]:
        """Mel, chroma and symbolic losses of features ``h`` (B, T', dim) of the clips ``wav`` (B, T)."""
        out = {}
        if w.mel:
            mel_hat = self.heads.predict_mel(h)
            out["mel"] = w.mel * (F.l1_loss(mel_hat, mel) + F.mse_loss(mel_hat, mel))
        if w.chroma:
            out["chroma"] = w.chroma * F.binary_cross_entropy_with_logits(self.heads.predict_chroma(h),
                                                                          self.chroma(wav))
        if w.symbolic and roll is not None and present is not None and bool(present.any()):
            logits = self.heads.predict_symbolic(h)  # (B, 2, 2, P, F)
            target = torch.stack([roll, onset], dim=2).to(logits.dtype)
            pos = None if w.symbolic_pos_weight is None else w.symbolic_pos_weight.to(logits)[..., None, None]
            per = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pos)
            per = per.mean(dim=(2, 3, 4))
            out["symbolic"] = w.symbolic * (per * present).sum() / present.sum()
        return out

    def stage2_losses(self, batch: dict, weights: HeadWeights, noise: float = 0.0) -> StageOutput:
        """Stage 2 on a batch of duo clips: each item's ``view`` (0 mix, 1 lead, 2 accompaniment) is the input.

        ``batch``: ``mix (B, T)``, ``stems (B, 2, T)``, ``view (B,)``, ``roll`` and ``onset`` ``(B, 2, 88, F)``.
        The MSS head is trained on the mix items only; the symbolic head on the tracks present in the input.
        """
        mix, stems, view = self._pad(batch["mix"]), self._pad(batch["stems"]), batch["view"]
        sel = F.one_hot(view, 3).to(mix.dtype)  # (B, 3)
        wav = sel[:, 0:1] * mix + sel[:, 1:2] * stems[:, 0] + sel[:, 2:3] * stems[:, 1]
        mel = self.mel(wav)
        h = self.encoder(mel, noise=noise)
        present = torch.stack([view != 2, view != 1], dim=1).float()  # (B, 2)
        losses = self._head_losses(h, wav, batch.get("roll"), batch.get("onset"), present, weights, mel)
        is_mix = view == 0
        if weights.mss and bool(is_mix.any()):
            logits = self.heads.predict_mask_logits(h[is_mix])
            teacher = batch["teacher_mask"][is_mix] if "teacher_mask" in batch else self.ideal_masks(stems[is_mix])
            losses["mss"] = weights.mss * F.l1_loss(torch.sigmoid(logits), teacher)
        return StageOutput(losses)

    def stage3_losses(self, batch: dict, weights: HeadWeights, freeze_encoder: bool = True,
                      inputs: Tensor | None = None) -> StageOutput:
        """Stage 3: both stems of every clip, each routed to its own codebook, heads on the quantised features.

        ``inputs`` (``(B, 2, T)``, optional) are what the encoder sees instead of the exact stems (e.g. the
        stems separated from the mix); the heads' targets stay those of the exact stems."""
        stems = self._pad(batch["stems"])
        seen = stems if inputs is None else self._pad(inputs)
        B = stems.shape[0]
        if freeze_encoder:
            with torch.no_grad():
                h = self.encode_features(seen)
        else:
            h = self.encode_features(seen)
        mels = self.mel(stems)  # (B, 2, n_mels, F)
        out = StageOutput()
        for k, q in enumerate(self.quantizers):  # hard routing: track k only ever meets codebook k
            res, zq = q(h[:, k])
            present = torch.zeros(B, 2, device=stems.device)
            present[:, k] = 1.0
            heads = self._head_losses(zq, stems[:, k], batch.get("roll"), batch.get("onset"), present, weights,
                                      mels[:, k])
            for name, v in {**heads, **{f"vq_{n}": v for n, v in res.losses.items()}}.items():
                out.losses[name] = out.losses.get(name, 0.0) + v / len(TRACKS)
            out.stats |= {f"{s}/{TRACKS[k]}": float(v) for s, v in res.stats.items()}
        return out

    def stage4_losses(self, batch: dict, l1_weight: float = 1.0, l2_weight: float = 1.0,
                      inputs: Tensor | None = None) -> StageOutput:
        """Stage 4: each track's decoder from the frozen tokenizer's codewords to that track's Mel."""
        stems = self._pad(batch["stems"])
        seen = stems if inputs is None else self._pad(inputs)
        with torch.no_grad():
            h = self.encode_features(seen)
            embeds = [q.embed(q.encode(h[:, k])) for k, q in enumerate(self.quantizers)]
            mels = self.mel(stems)
        out = StageOutput()
        for k, dec in enumerate(self.decoders):
            if dec.flow:  # flow matching; the one-step estimate is what a discriminator sees
                loss, mel_hat = dec.flow_loss(embeds[k], mels[:, k])
                out.losses[f"flow/{TRACKS[k]}"] = loss
                if not torch.is_grad_enabled():  # validation: the sampled Mel, comparable with regression's
                    out.losses[f"mel_l1/{TRACKS[k]}"] = F.l1_loss(dec(embeds[k]), mels[:, k])
            else:
                mel_hat = dec(embeds[k])
                out.losses[f"mel_l1/{TRACKS[k]}"] = l1_weight * F.l1_loss(mel_hat, mels[:, k])
                out.losses[f"mel_l2/{TRACKS[k]}"] = l2_weight * F.mse_loss(mel_hat, mels[:, k])
            out.mels.append(mels[:, k])
            out.mel_hats.append(mel_hat)
        return out

    def training_losses(self, batch: dict) -> dict[str, Tensor]:
        """The losses of the stage after the last trained one (see :mod:`musictok.train.duotok`)."""
        stage = min(self.config.trained_stage + 1, 4)
        if stage <= 2:
            return self.stage2_losses(batch, HeadWeights()).losses
        if stage == 3:
            return self.stage3_losses(batch, HeadWeights(mss=0.0)).losses
        return self.stage4_losses(batch).losses


class BestRQ(nn.Module):
    """Stage 1's training module: the frozen :class:`BestRQTargets` and a trainable prediction head.

    ``loss(encoder, mel)``: mask spans of token frames (each frame starts a span of ``mask_span`` frames
    with probability ``mask_prob``), replace their Mel frames with ``N(0, 0.1^2)`` noise, encode, and score
    the head's prediction of every codebook's target at the masked frames (cross-entropy). Random draws
    come from torch's global generator, which the trainer checkpoints (resume stays exact).
    """

    def __init__(self, cfg: DuoTokConfig, codebook_size: int = 8192, dim: int = 16, codebooks: int = 1,
                 mask_prob: float = 0.04, mask_span: int = 8, seed: int | None = None):
        super().__init__()
        self.mask_prob, self.mask_span = mask_prob, mask_span
        self.targets = BestRQTargets(cfg.n_mels, cfg.time_downsample, dim, codebook_size, codebooks,
                                     seed=cfg.seed + 1000 if seed is None else seed)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, codebooks * codebook_size))
        self.stack, self.codebooks, self.codebook_size = cfg.time_downsample, codebooks, codebook_size

    def loss(self, encoder: DuoEncoder, mel: Tensor) -> tuple[Tensor, dict[str, float]]:
        B, M, Fr = mel.shape
        T = Fr // self.stack
        targets = self.targets(mel)  # (B, T, codebooks), from the clean Mel
        mask = span_mask(B, T, self.mask_prob, self.mask_span).to(mel.device)
        if not bool(mask.any()):  # a short clip drew no span: mask one frame per clip so the loss is defined
            mask[:, T // 2] = True
        frames = mask.repeat_interleave(self.stack, dim=1)[:, None, :]  # (B, 1, F)
        noisy = torch.where(frames, 0.1 * torch.randn_like(mel), mel)
        logits = self.head(encoder(noisy)).view(B, T, self.codebooks, self.codebook_size)
        picked, tgt = logits[mask], targets[mask]  # (N, codebooks, K), (N, codebooks)
        loss = F.cross_entropy(picked.reshape(-1, self.codebook_size), tgt.reshape(-1))
        acc = float((picked.argmax(-1) == tgt).float().mean())
        return loss, {"masked_share": float(mask.float().mean()), "accuracy": acc}
