"""Predictability of a token stream for a language model (DuoTok, Appendix A and B.1.5).

Everything here starts from the LM's per-token cross-entropies under teacher
forcing, in **nats** (what ``torch.nn.functional.cross_entropy`` returns), so
every number comes from one scoring pass. Notation of the paper:

- ``BPT = E[-log2 q(x)]``: mean token-level cross-entropy in bits, averaged
  uniformly over time steps and codebooks (Eq. 9, 13). From nats: mean / ln 2.
- ``cnBPT = BPT / (1/M * sum_m log2 K_m)`` (Eq. 11, 15): bits per token relative
  to a fixed-length index over the codebook(s). 1 = no better than uniform
  guessing; smaller is more predictable; comparable across codebook sizes.
- ``enBPT = BPT / H_emp`` (Eq. 16): relative to the unigram entropy of the
  evaluation codes instead of ``log2 K``, which removes the uniform-usage
  assumption (``enBPT = cnBPT / eta`` with ``eta = H_emp / log2 K``, Eq. 17).
  ``H_emp`` is the NSB estimate (:mod:`musictok.metrics.entropy`), the same
  entropy as codebook health's ``eta``: the plug-in of the observed
  frequencies is biased low when the codebook is large next to the evaluation
  set (32768 codes, ~15k tokens: 13.45 bits for uniform codes instead of 15).
- ``cnBPS = cnBPT * r`` (Eq. 22), ``r`` the token emission rate in tokens/s
  (frame rate times indices per frame, Eq. 18); streams add up (Eq. 23).
  Units: 1/s. It is a modelling burden, not the bitrate of an entropy coder.
- ``Acc@k``: fraction of positions whose true token is in the top-k
  predictions (Appendix B.1.5) -- a diagnostic, not a selection criterion.

Codebook sizes follow the package convention (see ``musictok.metrics.codebook``):
an ``int`` is one codebook shared by all slots, a sequence is one codebook per slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from musictok.metrics.codebook import _check_codes, code_counts
from musictok.metrics.entropy import nsb_entropy_bits

__all__ = [
    "nll_from_logits",
    "bits_per_token",
    "mean_log2_codebook_size",
    "cnbpt",
    "unigram_entropy_bits",
    "stream_entropy_bits",
    "enbpt",
    "cnbps",
    "topk_accuracy",
    "StreamPrediction",
    "StreamPredictability",
    "PredictabilityResult",
    "predictability_metrics",
]

_LN2 = math.log(2.0)
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 50)


# --------------------------------------------------------------------------- per-token quantities
def nll_from_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-token cross-entropy in nats.

    Args:
        logits: ``(..., V)`` unnormalised scores (log-probabilities work too:
            ``log_softmax`` leaves them unchanged).
        targets: ``(...)`` integer token ids in ``[0, V)``.
    Returns:
        ``(...)`` float32/float64 tensor of ``-log q(target)``.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocabulary axis"
        )
    _check_codes(targets, logits.shape[-1], "targets")
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # half-precision log-softmax loses the small probabilities we score
    nll = F.cross_entropy(flat, targets.reshape(-1).long(), reduction="none")
    return nll.reshape(targets.shape)


def _masked_values(values: Tensor, mask: Tensor | None, name: str) -> Tensor:
    if mask is None:
        return values.reshape(-1)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal {name} shape {tuple(values.shape)}")
    return values[mask.bool()]


def bits_per_token(nll_nats: Tensor, mask: Tensor | None = None) -> float:
    """BPT: mean per-token cross-entropy converted from nats to bits (divide by ln 2).

    Args:
        nll_nats: per-token cross-entropies in nats, any shape; the mean is
            uniform over all tokens (time steps and codebooks alike, Eq. 13).
        mask: optional boolean tensor of the same shape; ``False`` marks padding.
    """
    vals = _masked_values(nll_nats, mask, "nll_nats")
    if vals.numel() == 0:
        raise ValueError("no tokens to average (empty nll or all-False mask)")
    return float(vals.double().mean()) / _LN2


def mean_log2_codebook_size(codebook_sizes: int | Sequence[int]) -> float:
    """``1/M * sum_m log2 K_m``: the fixed-length index cost per token in bits (Eq. 14)."""
    sizes = [int(codebook_sizes)] if isinstance(codebook_sizes, int) else [int(k) for k in codebook_sizes]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"codebook sizes must be >= 2 to normalise by log2 K, got {codebook_sizes}")
    return sum(math.log2(k) for k in sizes) / len(sizes)


def cnbpt(bpt: float, codebook_sizes: int | Sequence[int]) -> float:
    """Codebook-normalised BPT: ``BPT / mean_m log2 K_m`` (Eq. 15; ``BPT / log2 K`` for one size).

    >>> round(cnbpt(6.315, 1024), 4)
    0.6315
    """
    return float(bpt) / mean_log2_codebook_size(codebook_sizes)


def unigram_entropy_bits(codes: Tensor, codebook_size: int) -> float:
    """Unigram entropy ``H_emp`` (bits) of codes from one codebook: the NSB estimate from their counts
    (bias-corrected for a codebook large next to the number of codes; see :mod:`musictok.metrics.entropy`).

    Args:
        codes: integer tensor of any shape, values in ``[0, codebook_size)``.
    """
    return nsb_entropy_bits(code_counts(codes, codebook_size), codebook_size)


def stream_entropy_bits(codes: Tensor, codebook_sizes: int | Sequence[int]) -> float:
    """The entropy that enBPT divides by, matching how cnBPT averages ``log2 K_m``.

    A shared codebook (``int``) is one symbol set, so its entropy is pooled over
    all slots. Separate codebooks (sequence) have different symbol sets, so the
    entropy is computed per slot (last axis of ``codes``) and averaged.
    """
    if isinstance(codebook_sizes, int):
        return unigram_entropy_bits(codes, codebook_sizes)
    sizes = [int(k) for k in codebook_sizes]
    if codes.ndim == 0 or codes.shape[-1] != len(sizes):
        raise ValueError(
            f"codes {tuple(codes.shape)} must end with one axis of {len(sizes)} slots, one per codebook size"
        )
    return sum(unigram_entropy_bits(codes[..., m], k) for m, k in enumerate(sizes)) / len(sizes)


def enbpt(bpt: float, entropy_bits: float) -> float:
    """Entropy-normalised BPT: ``BPT / H_emp`` (Eq. 16)."""
    if entropy_bits <= 0:
        raise ValueError(
            f"empirical entropy is {entropy_bits} bits (a single repeated code?); enBPT is undefined"
        )
    return float(bpt) / float(entropy_bits)


def cnbps(cnbpt_value: float | Sequence[float], tokens_per_second: float | Sequence[float]) -> float:
    """Codebook-normalised rate ``cnBPT * r`` in 1/s (Eq. 22), summed over streams (Eq. 23).

    Pass two floats for one stream or two equal-length sequences for several.

    >>> cnbps(0.76, 600)
    456.0
    """
    values = list(cnbpt_value) if isinstance(cnbpt_value, Sequence) else [cnbpt_value]
    rates = list(tokens_per_second) if isinstance(tokens_per_second, Sequence) else [tokens_per_second]
    if len(values) != len(rates):
        raise ValueError(f"got {len(values)} cnBPT values for {len(rates)} token rates; pass one rate per stream")
    if any(r < 0 for r in rates):
        raise ValueError(f"token rates must be non-negative, got {rates}")
    return float(sum(float(v) * float(r) for v, r in zip(values, rates)))


def topk_accuracy(
    logits: Tensor,
    targets: Tensor,
    ks: Iterable[int] = DEFAULT_KS,
    mask: Tensor | None = None,
) -> dict[int, float]:
    """Acc@k: fraction of positions whose target is among the ``k`` highest logits.

    Args:
        logits: ``(..., V)``; targets: ``(...)`` integer ids; mask: optional ``(...)`` boolean.
        ks: requested ``k`` values; each is clipped to ``V`` (so Acc@50 of a
            16-entry codebook is 1.0) but the returned keys are the requested ``k``.
    Returns:
        ``{k: accuracy}`` with accuracies in ``[0, 1]``.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocabulary axis"
        )
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    vocab = logits.shape[-1]
    _check_codes(targets, vocab, "targets")
    k_max = min(max(ks), vocab)
    top = logits.topk(k_max, dim=-1).indices  # (..., k_max), best first
    hits = top == targets.unsqueeze(-1).to(top.dtype)
    # hit within the first k  <=>  cumulative "any" along the ranked axis
    hit_by_rank = hits.cumsum(dim=-1) > 0
    out: dict[int, float] = {}
    for k in ks:
        vals = _masked_values(hit_by_rank[..., min(k, vocab) - 1], mask, "targets")
        if vals.numel() == 0:
            raise ValueError("no positions to score (empty targets or all-False mask)")
        out[k] = float(vals.double().mean())
    return out


# --------------------------------------------------------------------------- streams
@dataclass
class StreamPrediction:
    """What the LM produced for one token stream (a track, a pyramid level, a mix).

    Attributes:
        nll: per-token cross-entropy in nats, e.g. ``(N, frames, slots)``.
        codebook_sizes: ``int`` for one shared codebook, or one size per slot.
        tokens_per_second: the stream's emission rate ``r`` = frame rate x
            indices per frame (all slots of the stream, Eq. 18).
        codes: evaluation-set codes ``(..., slots)`` for the empirical unigram
            entropy; without them enBPT is not reported.
        mask: optional boolean mask shaped like ``nll`` (``False`` = padding).
        topk: precomputed ``{k: Acc@k}``, filled by ``from_logits``.
        name: key of this stream in the result (``"lead"``, ``"level0"``...).
    """

    nll: Tensor
    codebook_sizes: int | Sequence[int]
    tokens_per_second: float
    codes: Tensor | None = None
    mask: Tensor | None = None
    topk: dict[int, float] | None = None
    name: str = "stream"

    @classmethod
    def from_logits(
        cls,
        logits: Tensor,
        targets: Tensor,
        codebook_sizes: int | Sequence[int],
        tokens_per_second: float,
        *,
        name: str = "stream",
        mask: Tensor | None = None,
        ks: Iterable[int] = DEFAULT_KS,
    ) -> StreamPrediction:
        """Score ``(..., V)`` logits against ``(...)`` targets; the targets double as
        the evaluation codes for the unigram entropy."""
        nll = nll_from_logits(logits, targets)
        acc = topk_accuracy(logits, targets, ks, mask)
        return cls(nll, codebook_sizes, tokens_per_second, codes=targets, mask=mask, topk=acc, name=name)


@dataclass
class StreamPredictability:
    """Predictability of one stream; ``entropy_bits``/``enbpt`` are ``None`` without codes."""

    name: str
    num_tokens: int
    bpt: float
    mean_log2_codebook_size: float
    cnbpt: float
    entropy_bits: float | None
    enbpt: float | None
    tokens_per_second: float
    cnbps: float
    topk_accuracy: dict[int, float] | None


@dataclass
class PredictabilityResult:
    """Per-stream predictability and the stream aggregates.

    ``bpt``, ``cnbpt`` and ``enbpt`` are unweighted means over streams (the
    paper's "Avg." over tracks); ``cnbps`` and ``tokens_per_second`` are sums
    (Eq. 23). ``enbpt`` is ``None`` unless every stream has one.
    """

    streams: dict[str, StreamPredictability]
    bpt: float
    cnbpt: float
    enbpt: float | None
    cnbps: float
    tokens_per_second: float

    def to_dict(self) -> dict[str, Any]:
        streams = {}
        for name, s in self.streams.items():
            d = asdict(s)
            if d["topk_accuracy"] is not None:  # JSON object keys must be strings
                d["topk_accuracy"] = {str(k): v for k, v in d["topk_accuracy"].items()}
            streams[name] = d
        return {
            "bpt": self.bpt,
            "cnbpt": self.cnbpt,
            "enbpt": self.enbpt,
            "cnbps": self.cnbps,
            "tokens_per_second": self.tokens_per_second,
            "streams": streams,
        }


def _score_stream(s: StreamPrediction) -> StreamPredictability:
    sizes = s.codebook_sizes
    if not isinstance(sizes, int) and s.nll.ndim > 0 and len(sizes) > 1 and s.nll.shape[-1] != len(sizes):
        raise ValueError(
            f"stream {s.name!r}: nll {tuple(s.nll.shape)} must end with one axis of {len(sizes)} slots"
        )
    bpt = bits_per_token(s.nll, s.mask)
    log2k = mean_log2_codebook_size(sizes)
    cn = bpt / log2k
    h = en = None
    if s.codes is not None:
        h = stream_entropy_bits(s.codes, sizes)
        en = enbpt(bpt, h)
    n = int(s.nll.numel() if s.mask is None else s.mask.bool().sum())
    return StreamPredictability(
        name=s.name,
        num_tokens=n,
        bpt=bpt,
        mean_log2_codebook_size=log2k,
        cnbpt=cn,
        entropy_bits=h,
        enbpt=en,
        tokens_per_second=float(s.tokens_per_second),
        cnbps=cnbps(cn, float(s.tokens_per_second)),
        topk_accuracy=s.topk,
    )


def predictability_metrics(streams: StreamPrediction | Sequence[StreamPrediction]) -> PredictabilityResult:
    """BPT, cnBPT, enBPT, cnBPS and Acc@k for one or several token streams.

    Example (two tracks, 50 frames/s, 8 codebooks of 1024 each)::

        lead = StreamPrediction.from_logits(logits_a, codes_a, [1024] * 8, 400.0, name="lead")
        acc = StreamPrediction.from_logits(logits_b, codes_b, [1024] * 8, 400.0, name="accomp")
        result = predictability_metrics([lead, acc])   # result.cnbps = sum of cnBPT_s * 400
    """
    if isinstance(streams, StreamPrediction):
        streams = [streams]
    if not streams:
        raise ValueError("need at least one StreamPrediction")
    names = [s.name for s in streams]
    if len(set(names)) != len(names):
        raise ValueError(f"stream names must be distinct, got {names}; set StreamPrediction.name")
    scored = {s.name: _score_stream(s) for s in streams}
    vals = list(scored.values())
    enbpts = [v.enbpt for v in vals]
    return PredictabilityResult(
        streams=scored,
        bpt=sum(v.bpt for v in vals) / len(vals),
        cnbpt=sum(v.cnbpt for v in vals) / len(vals),
        enbpt=None if any(e is None for e in enbpts) else sum(enbpts) / len(enbpts),  # type: ignore[arg-type]
        cnbps=cnbps([v.cnbpt for v in vals], [v.tokens_per_second for v in vals]),
        tokens_per_second=sum(v.tokens_per_second for v in vals),
    )
