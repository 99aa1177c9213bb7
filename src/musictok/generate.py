"""`musictok generate`: continue a prompt (or start from nothing) with a token LM, and decode to audio.

Generation runs in windows of the LM's context: each new window keeps the last three quarters of the
context as its prompt and samples the rest, so any length can be generated (a sliding window). Any pattern
works: the cells a window already knows are fixed wherever the pattern puts them (for frame-major patterns
they are a prefix; for coarse-to-fine the known coarse and fine cells are far apart) and the rest is sampled.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .errors import MusictokError
from .lm.patterns import IGNORE_INDEX
from .tokens import Tokens
from .train.lm import LoadedLM, context_pattern, load_lm, window_frames

MAX_SECONDS = 24 * 3600.0  # longer asks are typos (or would fill the memory with codes)


class GenerateError(MusictokError):
    """A generation setting out of range; ``path`` is the setting's name (``seconds``, ``top_p`` …)."""


@dataclass
class Generation:
    tokenizer: object  # the tokenizer that decoded it (for pictures and further decoding)
    tokens: Tokens
    wav: Tensor  # (T,) for one sequence from a 1-D prompt (or none), else (B, T)
    prompt_seconds: float
    generated_tokens: int  # of all sequences together
    tokens_per_second_generated: float  # generation speed (tokens sampled per wall-clock second, all sequences)


def check_settings(*, seconds: float, prompt_seconds: float = 0.0, has_prompt: bool = False,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> None:
    """Refuse settings that would fail late or give an empty result, naming the setting: checked before
    any model is loaded."""
    def bad(name: str, value, should: str) -> GenerateError:
        return GenerateError(name, f"must be {should}, got {value!r}")

    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise bad("seconds", seconds, f"a number of seconds in (0, {MAX_SECONDS:g}]")
    if has_prompt:
        if not (math.isfinite(prompt_seconds) and prompt_seconds > 0):
            raise bad("prompt_seconds", prompt_seconds, "a number of seconds > 0")
        if prompt_seconds >= seconds:
            raise GenerateError("prompt_seconds", f"{prompt_seconds:g} s of prompt leave nothing to generate in a "
                                                  f"total of {seconds:g} s; keep less prompt or ask for more seconds")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise bad("temperature", temperature, "a number >= 0 (0 is greedy)")
    if top_k is not None and top_k < 1:
        raise bad("top_k", top_k, ">= 1")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise bad("top_p", top_p, "in (0, 1]")


def generate(lm: str | Path | LoadedLM, *, prompt: Tensor | None = None, prompt_sample_rate: int | None = None,
             prompt_seconds: float = 0.0, seconds: float = 10.0, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0, batch: int = 1,
             use_cache: bool = True, on_frames: Callable[[int, int], None] | None = None) -> Generation:
    """Sample ``seconds`` of tokens (the first ``prompt_seconds`` taken from ``prompt``, a mono waveform at
    ``prompt_sample_rate``, default the tokenizer's) and decode them. ``temperature=0`` is greedy.

    Several sequences are generated together, in lockstep — what evaluation wants: a batch of prompts
    ``(B, T)``, or ``batch`` continuations of one prompt (or ``batch`` pieces from nothing). Sequence ``b``
    draws from its own generator seeded ``seed + b``, so it is the sequence a call with ``seed + b`` alone
    gives (up to the float rounding of batched matrix products), while each step reads the weights once
    for all (at batch 1 a CPU spends most of a step streaming them)."""
    from .audio import resample
    from .tokenizers.base import Tokenizer

    check_settings(seconds=seconds, prompt_seconds=prompt_seconds, has_prompt=prompt is not None and prompt_seconds > 0,
                   temperature=temperature, top_k=top_k, top_p=top_p)
    if batch < 1 or (prompt is not None and prompt.ndim == 2 and batch not in (1, prompt.shape[0])):
        raise GenerateError("batch", f"must be >= 1 (and with a batch of prompts, their number), got {batch}")
    single = batch == 1 and (prompt is None or prompt.ndim == 1)
    if prompt is not None and prompt.ndim == 1:
        prompt = prompt[None].expand(batch, -1)
    n_seq = prompt.shape[0] if prompt is not None else batch
    loaded = lm if isinstance(lm, LoadedLM) else load_lm(lm)
    model, meta = loaded.model, loaded.meta
    tokenizer = Tokenizer.from_pretrained(meta["tokenizer"]["source"])
    if prompt is not None and prompt_sample_rate and prompt_sample_rate != tokenizer.sample_rate:
        prompt = torch.from_numpy(resample(prompt.numpy(), prompt_sample_rate, tokenizer.sample_rate))
    layout = tokenizer.layout
    rate = layout.streams[0].frame_rate  # windows and prompts are counted in frames of stream 0
    ratios = window_frames(layout, 1)
    total = max(1, math.ceil(seconds * rate))
    context = meta["context_frames"]
    codes = [torch.zeros(n_seq, total * r, st.num_slots, dtype=torch.long) for r, st in zip(ratios, layout.streams)]
    known = 0
    if prompt is not None and prompt_seconds > 0:
        n = int(prompt_seconds * tokenizer.sample_rate)
        prompt_codes = tokenizer.encode(prompt[:, :n].contiguous()).codes
        known = min(prompt_codes[0].shape[1], total)
        for c, p, r in zip(codes, prompt_codes, ratios):
            c[:, : known * r] = p[:, : known * r]
    prompt_frames = known
    generators = [torch.Generator().manual_seed(seed + b) for b in range(n_seq)]
    keep = max(context * 3 // 4, 1)
    options = meta.get("pattern_options", {})
    sampled, t0 = 0, time.perf_counter()
    while known < total:
        start = max(0, known - keep) if known >= context else 0
        length = min(context, total - start)
        pattern = context_pattern(meta["pattern"], layout, length, options)
        window = [c[:, start * r: (start + length) * r] for c, r in zip(codes, ratios)]
        targets = pattern.build(window).targets
        stream, frame, _ = pattern.cell_table()
        limit = torch.tensor(ratios)[stream.clamp_min(0)] * (known - start)  # known frames of each cell's stream
        fixed = (stream >= 0) & (frame < limit)
        forced = torch.where(fixed, targets, torch.full_like(targets, IGNORE_INDEX))
        ids = model.generate(pattern, n_seq, forced=forced, temperature=temperature,
                             top_k=top_k, top_p=top_p, generator=generators, use_cache=use_cache)
        new = pattern.revert(ids)
        sampled += n_seq * int(((stream >= 0) & ~fixed).sum())
        for c, w, r in zip(codes, new, ratios):
            c[:, known * r: (start + length) * r] = w[:, (known - start) * r:]
        known = start + length
        if on_frames:
            on_frames(known, total)
    elapsed = time.perf_counter() - t0
    tokens = Tokens(codes, layout, tokenizer.fingerprint(), tokenizer.sample_rate,
                    [int(round(total / rate * tokenizer.sample_rate))] * n_seq,
                    {"tokenizer_source": tokenizer.source, "generated_by": meta.get("source", ""),
                     "prompt_frames": prompt_frames})
    wav = tokenizer.decode(tokens)
    return Generation(tokenizer, tokens, wav[0] if single else wav, prompt_frames / rate, sampled,
                      sampled / max(elapsed, 1e-9))
