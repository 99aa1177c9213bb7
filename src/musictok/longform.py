"""Continuation and long-form generation, scored along the piece (PyramidCodec §4.3).

Protocol (the same for every LM, so rows compare):

1. Held-out pieces (the corpus's test split) are cut into clips of ``prompt + continuation`` seconds and
   split by piece into two disjoint halves: **A** gives the prompts, **B** is the reference.
2. Each LM continues the first ``prompt_seconds`` of every A clip to ``continuation_seconds`` in all, and
   generates ``long_seconds`` from the same prompts (``generate.py``: sliding windows of its context).
3. The generated audio is cut into consecutive ``window_seconds`` windows after the prompt; at each position,
   the windows of all pieces are embedded (Mel statistics; the tagger's embedding when one is given) and their
   Fréchet distance to all of B's windows is measured with a half-sampling interval (``metrics/frechet.py``).
4. The **floor** at a position is the same distance for the *true* continuation of the A clips there (real
   music, same window count): where the pieces still last, the floor is position-matched; past the end of
   the real pieces (long form) it is the floor of their last real window.
5. Structure: the lag profile and recurrence of each long piece's self-similarity (``metrics/structure.py``),
   against the same statistics of the real test pieces.

So a curve that climbs away from its floor along the piece is a model losing the music over time; a
recurrence far above the real pieces' is a loop, far below is drift.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

Log = Callable[[str], None]


@dataclass
class LongFormConfig:
    """Lengths, sampling and sizes of the long-form protocol; ``smoke()`` is seconds, not minutes."""

    corpus: str = "data/chorales"
    split: str = "test"
    prompt_seconds: float = 10.0
    continuation_seconds: float = 30.0  # total length of a continuation, prompt included
    long_seconds: float = 180.0  # total length of the long-form pieces, prompt included
    window_seconds: float = 10.0  # windows along the piece
    embed_window_seconds: float = 1.0  # windows the embeddings see inside each window
    embed_hop_seconds: float = 0.5
    max_pieces: int = 16  # clips of the test split (half prompts, half reference)
    long_pieces: int = 4  # prompts continued to long_seconds
    temperature: float = 0.9
    top_k: int | None = 64
    segment_seconds: float = 0.5  # self-similarity
    max_lag_seconds: float = 20.0
    min_lag_seconds: float = 4.0
    resamples: int = 200
    seed: int = 0
    batch: int = 8  # prompts continued together (generate.py: the same sequences as one at a time, faster)

    @classmethod
    def smoke(cls, **kw) -> LongFormConfig:
        base = dict(prompt_seconds=1.0, continuation_seconds=3.0, long_seconds=5.0, window_seconds=1.0,
                    embed_window_seconds=0.5, embed_hop_seconds=0.25, max_pieces=4, long_pieces=1,
                    segment_seconds=0.25, max_lag_seconds=1.0, min_lag_seconds=0.5, resamples=20)
        return cls(**(base | kw))


def reference_sets(cfg: LongFormConfig, sample_rate: int) -> dict:
    """The held-out clips split into prompts (A) and reference (B), by piece."""
    from .evaluate import corpus_clips
    from .metrics.frechet import split_halves

    audio, pieces, groups = corpus_clips(cfg.corpus, cfg.split, sample_rate, cfg.continuation_seconds, cfg.max_pieces)
    a, b = split_halves(groups, seed=cfg.seed)
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"{cfg.corpus} ({cfg.split}): {len(set(groups))} piece(s) cannot be split into prompts "
                         "and a reference; use a split with at least two pieces")
    return {"a": audio[a], "a_groups": [groups[i] for i in a], "b": audio[b], "b_groups": [groups[i] for i in b],
            "sample_rate": sample_rate}


def _whole_pieces(cfg: LongFormConfig, sample_rate: int) -> list[Tensor]:
    """The split's pieces whole (the first ``max_pieces``): the real structure the long form is read against."""
    from .audio import load
    from .data.datasets import CorpusIndex

    index = CorpusIndex(cfg.corpus, cfg.split)
    return [torch.from_numpy(load(index.folder(p) / p["mix"], sample_rate)[0]) for p in index.pieces[: cfg.max_pieces]]


def _windows_along(pieces: list[Tensor], sample_rate: int, start: float, stop: float, size: float
                   ) -> list[tuple[float, list[Tensor]]]:
    """``(window start, [each piece's audio in that window])`` for consecutive windows in [start, stop)."""
    out, t = [], start
    while t + size <= stop + 1e-9:
        lo, hi = int(round(t * sample_rate)), int(round((t + size) * sample_rate))
        out.append((t, [p[lo:hi] for p in pieces if p.numel() >= hi]))
        t += size
    return out


def frechet_along(pieces: list[Tensor], groups: list[str], sample_rate: int, start: float, stop: float,
                  reference: dict, cfg: LongFormConfig, tagger=None) -> list[dict]:
    """Fréchet distances (per embedding, with intervals) of consecutive windows of the pieces to the reference."""
    from .evaluate import window_embeddings
    from .metrics.frechet import frechet_with_interval

    rows = []
    for t, clips in _windows_along(pieces, sample_rate, start, stop, cfg.window_seconds):
        if not clips:
            continue
        emb = window_embeddings(clips, sample_rate, groups[: len(clips)], tagger=tagger,
                                window_seconds=cfg.embed_window_seconds, hop_seconds=cfg.embed_hop_seconds)
        row = {"start": t, "end": t + cfg.window_seconds}
        for name, (x, gx) in emb.items():
            y, gy = reference[name]
            row[name] = frechet_with_interval(x, y, gx, gy, resamples=cfg.resamples, seed=cfg.seed,
                                              embedding=name).to_dict()
        rows.append(row)
    return rows


def run_long_form(lms: dict[str, str], cfg: LongFormConfig, *, tagger_dir: str | None = None,
                  log: Log = print) -> dict:
    """Continuations, long-form pieces, their Fréchet curves and structure statistics for each LM."""
    from .evaluate import window_embeddings
    from .generate import generate
    from .metrics.structure import structure_stats
    from .train.lm import load_lm
    from .tokenizers.base import Tokenizer
    from .train.tagger import load_tagger

    tagger = load_tagger(tagger_dir) if tagger_dir else None
    result: dict = {"config": dataclasses.asdict(cfg), "tagger": tagger_dir, "lms": {}, "floor": {}}
    refs: dict[int, dict] = {}
    for name, lm_dir in lms.items():
        loaded = load_lm(lm_dir)
        sr = Tokenizer.from_pretrained(loaded.meta["tokenizer"]["source"]).sample_rate
        if sr not in refs:  # the reference, floor and real structure at this sample rate, once
            log(f"reference clips at {sr} Hz")
            sets = reference_sets(cfg, sr)
            emb_b = window_embeddings(list(sets["b"]), sr, sets["b_groups"], tagger=tagger,
                                      window_seconds=cfg.embed_window_seconds, hop_seconds=cfg.embed_hop_seconds)
            floor = frechet_along(list(sets["a"]), sets["a_groups"], sr, cfg.prompt_seconds, cfg.continuation_seconds,
                                  emb_b, cfg, tagger)
            real_structure = []
            for wav in _whole_pieces(cfg, sr):
                if wav.numel() / sr >= 2 * cfg.min_lag_seconds:
                    real_structure.append(structure_stats(wav, sr, segment_seconds=cfg.segment_seconds,
                                                          max_lag_seconds=cfg.max_lag_seconds,
                                                          min_lag_seconds=cfg.min_lag_seconds).to_dict())
            refs[sr] = {"sets": sets, "emb_b": emb_b}
            result["floor"][str(sr)] = {"along": floor, "structure": real_structure}
        sets, emb_b = refs[sr]["sets"], refs[sr]["emb_b"]
        row: dict = {"lm": str(lm_dir), "pattern": loaded.meta["pattern"], "sample_rate": sr}
        for kind, seconds, n in (("continuation", cfg.continuation_seconds, len(sets["a"])),
                                 ("long", cfg.long_seconds, min(cfg.long_pieces, len(sets["a"])))):
            log(f"[{name}] {kind}: {n} × {cfg.prompt_seconds:g} → {seconds:g} s")
            t0 = time.time()
            pieces = [piece for i in range(0, n, cfg.batch)  # prompt i is sampled with seed + i, in any batch
                      for piece in generate(loaded, prompt=sets["a"][i: min(i + cfg.batch, n)],
                                            prompt_seconds=cfg.prompt_seconds, seconds=seconds,
                                            temperature=cfg.temperature, top_k=cfg.top_k, seed=cfg.seed + i).wav.cpu()]
            row[kind] = {"pieces": n, "seconds": seconds, "wall_seconds": time.time() - t0,
                         "along": frechet_along(pieces, sets["a_groups"][:n], sr, cfg.prompt_seconds, seconds,
                                                emb_b, cfg, tagger)}
            if kind == "long":
                row[kind]["structure"] = [structure_stats(p, sr, segment_seconds=cfg.segment_seconds,
                                                          max_lag_seconds=cfg.max_lag_seconds,
                                                          min_lag_seconds=cfg.min_lag_seconds).to_dict()
                                          for p in pieces]
        result["lms"][name] = row
    return result


def markdown_summary(result: dict, plots: dict[str, Path], note: str = "") -> str:
    """A results page: the protocol, the floor, each LM's Fréchet distances along the piece and recurrence."""
    cfg = result["config"]
    lines = ["# Continuation and long-form generation", "", note, "" if note else "",
             f"Prompts: the first {cfg['prompt_seconds']:g} s of held-out clips ({cfg['corpus']}, {cfg['split']} "
             f"split; half of the pieces); reference: the other half. Continuations to {cfg['continuation_seconds']:g} "
             f"s, long form to {cfg['long_seconds']:g} s (temperature {cfg['temperature']}, top-k {cfg['top_k']}). "
             f"Fréchet distances of consecutive {cfg['window_seconds']:g}-s windows (embedded every "
             f"{cfg['embed_hop_seconds']:g} s over {cfg['embed_window_seconds']:g} s) to the reference, 95% "
             "half-sampling intervals; the floor is the true continuation of the same prompts.", ""]
    for sr, fl in result["floor"].items():
        lines += [f"Floor at {sr} Hz (real continuations): " + "; ".join(
            f"{w['start']:g}–{w['end']:g} s " + ", ".join(
                f"{k} {w[k]['value']:.3g} [{w[k]['ci'][0]:.3g}, {w[k]['ci'][1]:.3g}]" for k in ("mel", "tagger") if k in w)
            for w in fl["along"]) + ".", ""]
        rec = [s["recurrence"] for s in fl["structure"] if s["recurrence"] == s["recurrence"]]
        if rec:
            lines += [f"Recurrence of the real pieces ({len(rec)}): median {np.median(rec):.3f}, "
                      f"10–90% {np.quantile(rec, 0.1):.3f}–{np.quantile(rec, 0.9):.3f}.", ""]
    lines += ["| LM | pattern | kind | window | Mel-stat. FD ↓ | 95% interval | tagger FD ↓ | 95% interval |",
              "|---|---|---|---|---|---|---|---|"]
    for name, row in result["lms"].items():
        for kind in ("continuation", "long"):
            for w in row[kind]["along"]:
                tag = w.get("tagger")
                lines.append(f"| {name} | {row['pattern']} | {kind} | {w['start']:g}–{w['end']:g} s | "
                             f"{w['mel']['value']:.3g} | [{w['mel']['ci'][0]:.3g}, {w['mel']['ci'][1]:.3g}] | "
                             + (f"{tag['value']:.3g} | [{tag['ci'][0]:.3g}, {tag['ci'][1]:.3g}] |" if tag else "– | – |"))
    lines += ["", "| LM | long pieces | recurrence (each) | wall time, long (s) |", "|---|---|---|---|"]
    for name, row in result["lms"].items():
        rec = ", ".join(f"{s['recurrence']:.3f}" for s in row["long"]["structure"])
        lines.append(f"| {name} | {row['long']['pieces']} | {rec} | {row['long']['wall_seconds']:.0f} |")
    lines += [""] + [f"![{k}]({p.name})" for k, p in plots.items()] + [""]
    return "\n".join(lines)
