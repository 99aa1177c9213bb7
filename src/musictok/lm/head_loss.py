"""Linear head + cross-entropy in row chunks, without the ``(rows, vocab)`` logits tensor.

Why: with a large codebook the heads are most of a small LM's training step, and most of *that* is not
the matmul but memory traffic around the logits — the float32 copy of every logit, ``log_softmax`` forward
and backward over it, the stacked ``(B, T, K, V)`` tensor and its zero-filled gradient. DuoTok's two
32,768-way heads over 8 × 468 steps make a 490 MB logits tensor each step (profiled: the traffic took about
as long as the head matmuls themselves). Here the logits of a few hundred rows at a time are formed, turned
into the loss *and* into their gradient at once (``softmax - onehot``), and dropped; what autograd keeps is
the gradient of the rows ``(N, d)`` and of the weight ``(V, d)``. The idea is Liger-Kernel's fused linear
cross-entropy, written here in plain PyTorch.

Exactness: the loss per row is the same ``logsumexp - target logit`` of the same (autocast-rounded)
logits. The stored gradients assume what training does — the loss is a mean, so every scored row gets the
same upstream gradient; the rows' gradient is exact for any upstream gradient (it scales row by row), and
if the weight's would not be (a per-row weighting), ``backward`` recomputes it chunk by chunk instead.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .patterns import IGNORE_INDEX

__all__ = ["linear_cross_entropy"]

# logits formed at once: 32 M cells, 1,024 rows of a 32,768-way head (≈ 256 MB alive at the peak: the float32
# logits, the matmul's bf16 result and the bf16 gradient)
CHUNK_ELEMENTS = 1 << 25


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The matmuls' dtype: autocast's when it is on for this device (as ``nn.Linear`` would run), else the input's."""
    kind = device.type
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else dtype
    if kind == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else dtype
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else dtype


def _chunked(h: Tensor, weight: Tensor, targets: Tensor, row_grad: Tensor | None, dtype: torch.dtype,
             grads: bool = True, need: tuple[bool, bool] = (True, True)) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Per-row NLL ``(N,)`` float32, and the gradients of ``sum(row_grad * nll)`` for ``h`` and ``weight``
    (``row_grad=None``: all ones; ``grads=False``: none, for scoring; ``need``: which of the two), a chunk of
    rows at a time."""
    n, v = h.shape[0], weight.shape[0]
    w = weight.to(dtype)
    nll = torch.zeros(n, dtype=torch.float32, device=h.device)
    need_h, need_w = (grads and need[0]), (grads and need[1])
    grad_h = torch.zeros(n, h.shape[1], dtype=torch.float32, device=h.device) if need_h else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device) if need_w else None
    # float16's range cannot hold the small probabilities of a large head unscaled: its gradients in float32
    grad_dtype = torch.float32 if dtype == torch.float16 else dtype
    wg = w if grad_dtype == dtype else weight.float()
    step = max(1, CHUNK_ELEMENTS // v)
    for s in range(0, n, step):
        e = min(s + step, n)
        hc, t = h[s:e].to(dtype), targets[s:e]
        keep = t != IGNORE_INDEX
        safe = torch.where(keep, t, 0)
        logits = (hc @ w.T).float()  # rounded to the compute dtype first, as nn.Linear under autocast is
        rows = torch.arange(e - s, device=h.device)
        target_logit = logits[rows, safe]
        peak = logits.amax(dim=-1)
        g = logits.sub_(peak[:, None]).exp_()  # in place: the logits are not needed again
        total = g.sum(dim=-1)
        nll[s:e] = torch.where(keep, peak + total.log() - target_logit, 0.0)
        if not (need_h or need_w):
            continue
        # d nll / d logits = softmax - onehot, times the row's upstream gradient (0 where ignored)
        scale = keep.float() if row_grad is None else torch.where(keep, row_grad[s:e].float(), 0.0)
        g.mul_((scale / total)[:, None])
        g[rows, safe] -= scale
        g = g.to(grad_dtype)
        if need_h:
            grad_h[s:e] = (g @ wg).float()
        if need_w:
            grad_w += (g.T @ hc.to(grad_dtype)).float()
    return nll, grad_h, grad_w


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
        dtype = _compute_dtype(h.device, h.dtype)
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        with torch.autocast(h.device.type, enabled=False):
            nll, grad_h, grad_w = _chunked(h.detach(), weight.detach(), targets, None, dtype, need=need)
        ctx.dtype, ctx.need = dtype, need
        ctx.input_dtypes = (h.dtype, weight.dtype)
        ctx.save_for_backward(h, weight, targets, grad_h, grad_w)
        return nll

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        h, weight, targets, grad_h, grad_w = ctx.saved_tensors
        keep = targets != IGNORE_INDEX
        g = grad_nll[keep]
        if g.numel() and not bool((g == g[0]).all()):  # a weighting per row: the stored weight gradient is not it
            with torch.autocast(h.device.type, enabled=False):
                _, grad_h, grad_w = _chunked(h.detach(), weight.detach(), targets, grad_nll, ctx.dtype, need=ctx.need)
        else:
            # ignored rows hold no gradient whatever arrives there (inf * 0 would be NaN)
            up = torch.where(keep, grad_nll.float(), 0.0)
            grad_h = None if grad_h is None else grad_h * up[:, None]
            grad_w = None if grad_w is None else grad_w * (g[0].float() if g.numel() else 0.0)
        return (None if grad_h is None else grad_h.to(ctx.input_dtypes[0]),
                None if grad_w is None else grad_w.to(ctx.input_dtypes[1]), None)


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor) -> Tensor:
    """``cross_entropy(h @ weight.T, targets, ignore_index=IGNORE_INDEX, reduction="none")`` as float32
    ``(N,)`` for rows ``h (N, d)``, a head's ``weight (V, d)`` and ``targets (N,)``; 0 where ignored."""
    if h.ndim != 2 or weight.ndim != 2 or h.shape[1] != weight.shape[1] or targets.shape != h.shape[:1]:
        raise ValueError(f"expected h (N, d), weight (V, d), targets (N,); got {tuple(h.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(targets.shape)}")
    if not (torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)):  # scoring: the loss alone
        dtype = _compute_dtype(h.device, h.dtype)
        with torch.autocast(h.device.type, enabled=False):
            return _chunked(h, weight, targets.long(), None, dtype, grads=False)[0]
    return _LinearCrossEntropy.apply(h, weight, targets.long())
