"""`musictok bench --dual`: DuoTok's dual-track LM protocol (Appendix B.1) and its diagnostics (§6).

Every tokenizer gets the same LM (size, steps, optimizer, context in seconds, seed), trained twice on its
tokens of the corpus's duo stem group (lead = the highest voice, accompaniment = the rest):

(a) **parallel** — both tracks modelled jointly, one step per frame, one head per (track, codebook);
(b) **track-to-track** — the accompaniment given the whole lead and its own first ``prefix_seconds``, the
    loss on the rest of the accompaniment only.

The tracks' tokens: a two-track tokenizer (DuoTok) encodes the pair of exact stems into its two streams; a
single-stream tokenizer (BandTok, the RVQ codec) encodes each stem on its own, and its two token streams
become the two tracks (so every row has the same two-track layout shape). Reported per track: BPT, cnBPT,
enBPT, cnBPS, Acc@1/5/10/50 (the paper's Table 10 columns), and codebook health (utilization, normalised entropy;
the entropy, here and in enBPT, is the NSB estimate: :mod:`musictok.metrics.entropy`). With the track-to-track
LM, the relative cost of corrupting the lead (shift, masking, mismatch; :mod:`musictok.metrics.diagnostics`);
with the parallel LM, cnBPT of the last second against the length of its context. Outputs: JSON, a Markdown
table and two plots (corruption, context) in ``--out``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__
from .atomic import write_json, write_text
from .report import dual_markdown_report, dual_plots
from .data.score import DUO_TRACKS
from .metrics.version import METRICS_VERSION
from .tokens import TokenLayout, Tokens

Log = Callable[[str], None]
ACC_KS = (1, 5, 10, 50)  # Acc@k reported per track (DuoTok, Appendix B.1.5 and Table 10)


@dataclass
class DualBenchConfig:
    """The held-constant dual-track protocol; ``quick()`` is the smoke-test scale."""

    tokenizers: list[str]
    corpus: str = "data/chorales"
    out: str = "docs/results"
    work: str = "runs/bench-dual"
    cache_dir: str = "data/token-cache"
    name: str = ""  # file stem; default bench-dual-<date>
    eval_split: str = "test"
    lm_preset: str = "small"
    lm_layers: int = 4
    lm_embd: int = 256
    lm_heads: int = 8
    lm_steps: int = 400
    lm_batch: int = 8
    lm_lr: float = 1e-3
    lm_warmup: int = 50
    context_seconds: float = 10.0  # the paper: 30 s
    prefix_seconds: float = 2.0
    lm_eval_windows: int = 64
    max_pieces: int | None = None
    shifts: list = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])  # frames
    mask_ratios: list = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    context_grid: list = field(default_factory=lambda: [2.0, 4.0, 6.0, 8.0, 10.0])  # seconds (≤ context_seconds)
    scored_seconds: float = 1.0  # context scaling scores the last second of each window
    recon_clips: int = 16  # per-track Mel distance: one clip from the middle of each of the first test pieces
    recon_seconds: float = 10.0
    resamples: int = 1000  # bootstrap resamples of every interval
    seed: int = 0  # the LMs' (and the bootstrap's); each seed trains its own LMs
    # the track-to-track LM and its corruption curves; an ablation judged on parallel cnBPT alone can skip it
    track_to_track: bool = True
    # real recordings without stems (held out, never trained on): each mix through the tokenizer (DuoTok
    # separates it, tokenizes both tracks and their decodes are summed), Mel distance to the mix
    real: str | None = None
    real_clips: int = 16

    @classmethod
    def quick(cls, tokenizers: list[str], **kw) -> DualBenchConfig:
        base = dict(lm_preset="tiny", lm_layers=2, lm_embd=64, lm_heads=2, lm_steps=3, lm_batch=2, lm_warmup=1,
                    context_seconds=2.0, prefix_seconds=0.5, lm_eval_windows=4, max_pieces=3, shifts=[1, 4],
                    mask_ratios=[0.3, 0.9], context_grid=[1.0, 2.0], scored_seconds=0.5, recon_clips=2,
                    recon_seconds=2.0, resamples=50, real_clips=2)
        return cls(tokenizers=tokenizers, **(base | kw))


# ---------------------------------------------------------------------------------------- tokens
def two_track_layout(layout: TokenLayout) -> TokenLayout:
    """A single-stream tokenizer's layout, twice: the lead's stream and the accompaniment's."""
    if len(layout.streams) != 1:
        raise ValueError(f"a tokenizer of {len(layout.streams)} streams at different rates is not in the dual "
                         "protocol (it takes a two-track tokenizer, or one stream run on each stem)")
    s = layout.streams[0]
    return TokenLayout(tuple(dataclasses.replace(s, name=t) for t in DUO_TRACKS))


def duo_stems(corpus: str | Path, piece: dict, sample_rate: int) -> np.ndarray:
    """A whole piece's ``(2, T)`` lead and accompaniment: its part stems summed by ``groups.duo``."""
    from .audio import load
    from .data.datasets import CorpusIndex

    folder = CorpusIndex(corpus).folder(piece)
    parts = [load(folder / p["stem"], sample_rate)[0] for p in piece["parts"]]
    n = max(len(p) for p in parts)
    parts = [np.pad(p, (0, n - len(p))) for p in parts]
    groups = piece["groups"]["duo"]
    return np.stack([sum(parts[i] for i in groups[t]) for t in DUO_TRACKS]).astype(np.float32)


def duo_tokens(tokenizer, corpus: str | Path, split: str, cache_dir: str | Path, max_pieces: int | None = None,
               log: Log | None = None) -> list[Tokens]:
    """Two-track tokens of every piece of ``split`` (the first ``max_pieces``), cached per tokenizer
    fingerprint under ``cache_dir/duo``; ``log`` hears how many pieces are still to encode, and progress."""
    from .data.datasets import CorpusIndex

    index = CorpusIndex(corpus, split)
    fp = tokenizer.fingerprint()
    folder = Path(cache_dir) / "duo" / f"{fp.name}-{fp.config_hash[:8]}-{fp.weights_hash[:8]}"
    pieces = index.pieces[:max_pieces]
    todo = sum(not (folder / f"{p['id']}.mtok").is_file() for p in pieces)
    if todo and log:
        log(f"  encoding the duo stems of {todo} of {len(pieces)} {split} pieces into {folder}")
    out, done, t0 = [], 0, time.time()
    for piece in pieces:
        path = folder / f"{piece['id']}.mtok"
        if not path.is_file():
            done += 1
            if log and done % 50 == 0:
                log(f"    {done} / {todo} pieces, {time.time() - t0:.0f} s")
            stems = torch.from_numpy(duo_stems(corpus, piece, tokenizer.sample_rate))
            if is_two_track(tokenizer):
                tokens = tokenizer.encode(stems[None])
            else:
                layout = two_track_layout(tokenizer.layout)
                codes = [tokenizer.encode(stems[k]).codes[0] for k in range(2)]
                tokens = Tokens(codes, layout, fp, tokenizer.sample_rate, [stems.shape[-1]],
                                {"tracks": "each stem encoded on its own"})
            tokens.save(path)
        out.append(Tokens.load(path))
    if not out:
        raise ValueError(f"{corpus}: the {split} split has no pieces")
    return out


# ---------------------------------------------------------------------------------------- the LM
def _dual_lm_task(run, train_tokens: list[Tokens], valid_tokens: list[Tokens], tokenizer_info: dict):
    """An LMTask whose tokens are the two-track tokens above (not the tokenizer's tokens of the mix)."""
    from .lm.model import TokenLM
    from .train.lm import LMTask, TokenWindows, context_pattern
    from .train.loop import wrap_ddp

    class DualLMTask(LMTask):
        def setup(self, device, dist_info, cfg) -> None:
            self.device, self.cfg = device, cfg
            self.tokenizer_info = tokenizer_info
            self.layout = train_tokens[0].layout
            self.frames = max(1, round(self.lm.context_seconds * self.layout.streams[0].frame_rate))
            self.pattern = context_pattern(self.lm.pattern, self.layout, self.frames, self.lm.pattern_options)
            self.train_tokens = train_tokens
            self.valid = {"": TokenWindows(valid_tokens, self.frames, random=False, max_windows=self.lm.valid_windows)}
            self.model = TokenLM.from_pattern(self.model_config, self.pattern).to(device)
            self.model_ddp = wrap_ddp(self.model, dist_info, device)
            self.opt = torch.optim.AdamW(self.model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)

    return DualLMTask(run)


def _train_lm(short: str, mode: str, tokens: dict, info: dict, fingerprint, cfg: DualBenchConfig, work: Path,
              log: Log) -> Path:
    from .train.config import DataConfig, RunConfig
    from .train.loop import TrainConfig, Trainer

    from .bench import finished_lm_run, lm_run_record, record_lm_run

    run_dir = work / f"lm-{short}-{mode}-s{cfg.seed}"
    expect = lm_run_record(cfg.lm_steps, cfg.seed, fingerprint)
    if (export := finished_lm_run(run_dir, expect)) is not None:
        log(f"  reusing {export}")
        return export
    options = {"mode": mode} | ({"prefix_seconds": cfg.prefix_seconds} if mode == "conditional" else {})
    run = RunConfig(
        kind="lm", model={"preset": cfg.lm_preset, "n_layer": cfg.lm_layers, "n_embd": cfg.lm_embd,
                          "n_head": cfg.lm_heads, "rope": "1d"},
        lm={"tokenizer": info.get("source") or short, "pattern": "dual-track", "pattern_options": options,
            "context_seconds": cfg.context_seconds, "cache_dir": cfg.cache_dir, "valid_windows": 8},
        data=DataConfig(corpus=cfg.corpus, seed=cfg.seed),
        train=TrainConfig(out_dir=str(run_dir), steps=cfg.lm_steps, batch_size=cfg.lm_batch, lr=cfg.lm_lr,
                          betas=(0.9, 0.95), weight_decay=0.1, warmup_steps=cfg.lm_warmup, amp="bf16",
                          log_every=max(cfg.lm_steps // 8, 1), ckpt_every=max(cfg.lm_steps // 4, 1),
                          valid_every=cfg.lm_steps, seed=cfg.seed))
    task = _dual_lm_task(run, tokens["train"], tokens["valid"], info)
    summary = Trainer(task, run.train).run(resume=(run_dir / "checkpoint.pt").is_file())
    return record_lm_run(run_dir, expect, summary)


# ---------------------------------------------------------------------------------------- scoring
def _windows(tokens: list[Tokens], frames: int, n: int) -> tuple[list[torch.Tensor], list[int]]:
    """At most ``n`` non-overlapping windows, round-robin over the pieces, and the piece of each (windows
    of one piece are not independent: intervals resample pieces)."""
    from .train.lm import TokenWindows

    w = TokenWindows(tokens, frames, random=False, max_windows=n)
    return TokenWindows.collate([w[i] for i in range(len(w))]), [piece for piece, _ in w.grid]


def is_two_track(tokenizer) -> bool:
    """A tokenizer of the pair of stems (DuoTok), not of one signal."""
    return getattr(tokenizer, "stem_inputs", 0) == len(DUO_TRACKS)


def middle_clips(corpus: str | Path, split: str, clips: int, seconds: float, sample_rate: int
                 ) -> tuple[list[str], list[torch.Tensor]]:
    """One ``seconds`` clip ``(2, n)`` of both stems from the middle of each of the first ``clips`` pieces of
    ``split``, and the pieces' ids."""
    from .data.datasets import CorpusIndex

    n = round(seconds * sample_rate)
    ids, out = [], []
    for piece in CorpusIndex(corpus, split).pieces[:clips]:
        stems = duo_stems(corpus, piece, sample_rate)
        start = max(0, (stems.shape[1] - n) // 2)
        ids.append(piece["id"])
        out.append(torch.from_numpy(stems[:, start: start + n].copy()))
    if not out:
        raise ValueError(f"{corpus}: the {split} split has no pieces")
    return ids, out


@torch.no_grad()
def own_decode(tokenizer, x: torch.Tensor) -> tuple[Tokens, torch.Tensor]:
    """A clip's stems ``(2, n)`` through the tokenizer and its own decoder: the tokens and ``(2, n)`` audio (a
    two-track tokenizer encodes the pair; a single-stream one the two stems as a batch of two clips)."""
    if is_two_track(tokenizer):
        tokens = tokenizer.encode(x[None])
        return tokens, tokenizer.decode(tokens)[0].cpu()
    tokens = tokenizer.encode(x)
    return tokens, tokenizer.decode(tokens).cpu()


def mean_with_interval(per_clip: list[float], resamples: int, seed: int, level: float = 0.95) -> dict:
    """Mean over clips (each its own piece) and its bootstrap interval (NaN with one clip)."""
    from .metrics.intervals import cluster_bootstrap

    a = np.asarray(per_clip, dtype=np.float64)
    lo, hi = cluster_bootstrap(lambda i: float(a[i].mean()), np.arange(a.size), resamples=resamples, level=level,
                               seed=seed)
    return {"mel_distance": float(a.mean()), "interval": [lo, hi], "clips": int(a.size), "per_clip": a.tolist()}


def track_reconstruction(tokenizer, corpus: str | Path, split: str, clips: int, seconds: float,
                         resamples: int = 1000, seed: int = 0) -> dict:
    """Mel distance of each track's decoded tokens to its stem on :func:`middle_clips`, through the
    tokenizer's own decoder; mean and bootstrap interval per track, and how many clips have that stem
    silent (there any decode of near-silence scores near 0 and pulls the mean down)."""
    from .audio import SILENCE_RMS
    from .metrics.reconstruction import mel_distance

    sr = tokenizer.sample_rate
    _, xs = middle_clips(corpus, split, clips, seconds, sr)
    dist: dict[str, list[float]] = {t: [] for t in DUO_TRACKS}
    silent = dict.fromkeys(DUO_TRACKS, 0)
    for x in xs:
        d = mel_distance(x, own_decode(tokenizer, x)[1], sr, align=True)
        for k, t in enumerate(DUO_TRACKS):
            dist[t].append(float(d[k]))
            silent[t] += int(float(x[k].pow(2).mean().sqrt()) <= SILENCE_RMS)
    return {t: mean_with_interval(v, resamples, seed) | {"silent_clips": silent[t]} for t, v in dist.items()}


@torch.no_grad()
def real_mix_reconstruction(tokenizer, folder: str | Path, clips: int, seconds: float, resamples: int = 1000,
                            seed: int = 0) -> dict:
    """Real recordings have no stems, so only the mix can be judged: each clip through the tokenizer and its
    own decoder (a two-track tokenizer separates the mix, and its two decoded tracks are summed) against the
    clip; Mel distance per clip with a bootstrap interval, and each stream's codebook use on these clips."""
    from .evaluate import load_clips
    from .metrics.reconstruction import mel_distance

    sr = tokenizer.sample_rate
    audio = load_clips(sr, audio_dir=folder, seconds=seconds, max_clips=clips).audio  # (N, T)
    dist, tokens = [], []
    for x in audio:
        t = tokenizer.encode(x[None])
        y = tokenizer.decode(t).cpu()
        if y.ndim == 3:
            y = y.sum(1)
        dist.append(float(mel_distance(x[None], y, sr, align=True)[0]))
        tokens.append(t.to("cpu"))
    return mean_with_interval(dist, resamples, seed) | {"folder": str(folder), "seconds": seconds,
                                                        "codebook": _codebook_health(tokens)}


def _track_metrics(scores, codes: list[torch.Tensor], layout: TokenLayout) -> dict:
    """Per track (the tracks with scored cells): BPT, cnBPT, enBPT, cnBPS, Acc@k; plus their average."""
    from .metrics.predictability import StreamPrediction, predictability_metrics, topk_accuracy

    streams = []
    for s, spec in enumerate(layout.streams):
        keep = scores.scored[s]
        if not bool(keep.any()):
            continue
        sizes = spec.codebook_sizes[0] if spec.shared_codebook else list(spec.codebook_sizes)
        acc = topk_accuracy(scores.logits[s][keep], codes[s][keep], ACC_KS)
        streams.append(StreamPrediction(scores.nll[s], sizes, spec.tokens_per_second, codes=codes[s],
                                        mask=keep, topk=acc, name=spec.name))
    return predictability_metrics(streams).to_dict()


def piece_cnbpt(scores, layout: TokenLayout, pieces: list[int], ids: list[str]) -> dict[str, float]:
    """cnBPT of each test piece over its windows' scored cells, the streams' unweighted mean as in the row's
    cnBPT; keyed by piece id. Two tokenizers scored on the same pieces differ by a paired statistic whose
    interval resamples pieces (``benchmarks/duotok_claims.py``): the row's cnBPT alone has no noise floor."""
    from .metrics.predictability import mean_log2_codebook_size

    pieces_t = torch.as_tensor(pieces)
    out = {}
    for p in sorted(set(pieces)):
        rows = pieces_t == p
        per_stream = []
        for s, spec in enumerate(layout.streams):
            keep = scores.scored[s][rows]
            if not bool(keep.any()):
                continue
            sizes = spec.codebook_sizes[0] if spec.shared_codebook else list(spec.codebook_sizes)
            bits = float(scores.nll[s][rows][keep].double().mean()) / math.log(2)
            per_stream.append(bits / mean_log2_codebook_size(sizes))
        if per_stream:
            out[ids[p]] = sum(per_stream) / len(per_stream)
    return out


def _codebook_health(tokens: list[Tokens]) -> dict:
    from .metrics.codebook import codebook_usage

    out = {}
    layout = tokens[0].layout
    for s, spec in enumerate(layout.streams):
        codes = torch.cat([t.codes[s][0] for t in tokens])  # (frames, slots)
        cols = [codes.reshape(-1)] if spec.shared_codebook else list(codes.T)
        usage = [codebook_usage(c, spec.codebook_sizes[0 if spec.shared_codebook else j]) for j, c in enumerate(cols)]
        out[spec.name] = {"utilization": float(np.mean([u.utilization for u in usage])),
                          "normalized_entropy": float(np.mean([u.normalized_entropy for u in usage])),
                          # what uniformly used codes would show at this many tokens (a 32768-code book
                          # cannot look fully used on a test split of ~15k tokens), and the plug-in
                          "uniform_utilization": float(np.mean([u.uniform_utilization for u in usage])),
                          "normalized_entropy_raw": float(np.mean([u.normalized_entropy_raw for u in usage])),
                          "num_tokens": int(sum(u.num_tokens for u in usage))}
    return out


def evaluate_dual(cfg: DualBenchConfig, short: str, tokenizer, work: Path, log: Log) -> dict:
    """Train both LMs of one tokenizer and score them; corruption and context curves."""
    from .bench import _has_split
    from .data.datasets import CorpusIndex
    from .lm.patterns import make_pattern
    from .lm.scoring import cell_scores, cnbpt_scorer
    from .metrics.diagnostics import context_gain_interval, context_scores, corruption_curves
    from .train.lm import load_lm

    split_valid = "valid" if _has_split(cfg.corpus, "valid") else "train"
    tokens = {"train": duo_tokens(tokenizer, cfg.corpus, "train", cfg.cache_dir, cfg.max_pieces, log),
              "valid": duo_tokens(tokenizer, cfg.corpus, split_valid, cfg.cache_dir, cfg.max_pieces, log),
              "test": duo_tokens(tokenizer, cfg.corpus, cfg.eval_split, cfg.cache_dir, log=log)}
    layout = tokens["test"][0].layout
    info = {"source": tokenizer.source, **dataclasses.asdict(tokenizer.fingerprint())}
    rate = layout.streams[0].frame_rate
    frames = max(1, round(cfg.context_seconds * rate))
    codes, pieces = _windows(tokens["test"], frames, cfg.lm_eval_windows)
    test_ids = [p["id"] for p in CorpusIndex(cfg.corpus, cfg.eval_split).pieces]  # duo_tokens' order
    log(f"[{short}] per-track reconstruction, {cfg.recon_clips} clips of {cfg.recon_seconds:g} s")
    result: dict = {"layout": layout.to_dict(), "kbps": layout.bitrate / 1000,
                    "tokens_per_second": layout.tokens_per_second, "codebook": _codebook_health(tokens["test"]),
                    "windows": int(codes[0].shape[0]), "pieces": len(set(pieces)), "context_frames": frames,
                    "reconstruction": track_reconstruction(tokenizer, cfg.corpus, cfg.eval_split, cfg.recon_clips,
                                                           cfg.recon_seconds, cfg.resamples, cfg.seed)}
    if cfg.real:
        log(f"[{short}] real recordings: {cfg.real_clips} mixes of {cfg.recon_seconds:g} s from {cfg.real}")
        result["real"] = real_mix_reconstruction(tokenizer, cfg.real, cfg.real_clips, cfg.recon_seconds,
                                                 cfg.resamples, cfg.seed)
    for mode in ("parallel", "conditional") if cfg.track_to_track else ("parallel",):
        log(f"[{short}] dual-track LM, {mode}")
        lm = load_lm(_train_lm(short, mode, tokens, info, tokenizer.fingerprint(), cfg, work, log))
        model = lm.model.eval()
        options = {"mode": mode} | ({"prefix_seconds": cfg.prefix_seconds} if mode == "conditional" else {})

        def pattern_for(f: int, options=options):
            return make_pattern("dual-track", layout, f, **options)

        scores = cell_scores(model, lm.pattern, codes)
        result[mode] = _track_metrics(scores, codes, layout)
        # per test piece, so that two tokenizers' cnBPT can be compared paired over the same pieces
        result[mode]["per_piece_cnbpt"] = piece_cnbpt(scores, layout, pieces, test_ids)
        if mode == "conditional":
            scorer = cnbpt_scorer(model, pattern_for, streams=[1], per_window=True)
            curves = corruption_curves(scorer, codes, track=0, shifts=cfg.shifts, mask_ratios=cfg.mask_ratios,
                                       seed=cfg.seed, groups=pieces, resamples=cfg.resamples)
            result["corruption"] = curves.to_dict()
        else:
            scorer = cnbpt_scorer(model, pattern_for, streams=[0, 1], per_window=True)
            grid = sorted({min(max(round(s * rate), 1), frames) for s in cfg.context_grid})
            scored = min(max(round(cfg.scored_seconds * rate), 1), grid[0])
            bits = context_scores(scorer, codes, grid, scored)
            result["context"] = {f"{f / rate:.3f}": v.cnbpt for f, v in bits.items()}
            if len(grid) > 1:  # the gain from the shortest to the longest context, paired over test pieces
                iv = context_gain_interval(bits[grid[0]], bits[grid[-1]], pieces, resamples=cfg.resamples,
                                           seed=cfg.seed)
                # NaN with one test piece: no interval (and no NaN in the JSON)
                result["context_gain_interval"] = list(iv) if all(math.isfinite(x) for x in iv) else None
    return result


# ---------------------------------------------------------------------------------------- the run
def run_dual_bench(cfg: DualBenchConfig, log: Log = print) -> dict:
    from .bench import _short, start_run
    from .tokenizers.base import Tokenizer

    t0 = time.time()
    date, stem, out, work = start_run(cfg, "bench-dual")
    tokenizers = {}
    for name in cfg.tokenizers:
        tok = Tokenizer.from_pretrained(name)  # fail early on a bad name or layout
        if not is_two_track(tok):
            two_track_layout(tok.layout)
        if _short(name) in tokenizers:
            raise ValueError(f"{name}: two tokenizers would share the row name {_short(name)!r}")
        tokenizers[_short(name)] = tok
    rows = {short: evaluate_dual(cfg, short, tok, work, log) for short, tok in tokenizers.items()}
    result = {"config": dataclasses.asdict(cfg), "rows": rows, "wall_seconds": time.time() - t0, "date": date,
              "musictok_version": __version__, "metrics_version": METRICS_VERSION}
    plots = dual_plots(rows, out, stem)
    write_json(out / f"{stem}.json", result)
    write_text(out / f"{stem}.md", dual_markdown_report(result, plots))
    log(f"wrote {out / stem}.md, .json in {(time.time() - t0) / 60:.1f} min")
    return result
