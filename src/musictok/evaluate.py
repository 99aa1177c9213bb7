"""`musictok eval recon` and `musictok eval tokens`: judge a tokenizer on a fixed set of clips.

Clips come from a folder of any audio (``--audio``) or from a rendered corpus split (``--corpus --split``),
cut into a deterministic grid of ``seconds``-long clips. Every result records the tokenizer fingerprint,
the data it ran on and the musictok version, so a JSON file can be traced back to what made it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from . import __version__
from .metrics.codebook import codebook_health
from .metrics.dependence import dependence_metrics
from .metrics.reconstruction import reconstruction_metrics
from .metrics.version import METRICS_VERSION


@dataclass
class EvalClips:
    """Audio clips ``(N, T)`` at one sample rate, and where they came from."""

    audio: Tensor
    sample_rate: int
    source: dict
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str, bool]] = field(default_factory=list)  # files left out, why, unreadable?


def load_clips(sample_rate: int, *, audio_dir: str | Path | None = None, corpus: str | Path | None = None,
               split: str = "test", seconds: float = 10.0, max_clips: int | None = None,
               on_skip: Callable[[Path, str, bool], None] | None = None) -> EvalClips:
    """The fixed evaluation grid: non-overlapping ``seconds``-long clips, round-robin over files (a file
    shorter than a clip gives one zero-padded clip).

    With ``on_skip(path, reason, unreadable)``, files of an audio folder that are unreadable, or shorter
    than half a clip, are reported there and left out (as `encode` skips bad files); without it an
    unreadable file raises."""
    from .data.datasets import AudioFolderClips, MixClips

    if (audio_dir is None) == (corpus is None):
        raise ValueError("give exactly one of --audio DIR or --corpus DIR")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"--seconds: must be a clip length > 0, got {seconds}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"--max-clips: must be >= 1, got {max_clips}")
    if audio_dir is not None:
        ds = AudioFolderClips(audio_dir, seconds, sample_rate, random=False, max_clips=max_clips, on_bad=on_skip)
        source = {"audio": str(audio_dir), "files": len(ds.files)}
    else:
        ds = MixClips(corpus, split, seconds, sample_rate, random=False, max_clips=max_clips)
        source = {"corpus": str(corpus), "split": split, "pieces": len(ds.index)}
    items = [ds[i] for i in range(len(ds))]
    source |= {"clips": len(items), "seconds_per_clip": seconds}
    return EvalClips(torch.stack([it["audio"] for it in items]), sample_rate, source,
                     [f"{Path(it['piece']).name}@{it['start']:.0f}s" for it in items])


def _provenance(tokenizer, clips: EvalClips) -> dict:
    return {"tokenizer": dataclasses.asdict(tokenizer.fingerprint()) | {"source": tokenizer.source},
            "data": clips.source, "musictok_version": __version__,
            "metrics_version": METRICS_VERSION}


def evaluate_reconstruction(tokenizer, clips: EvalClips, *, on_clip: Callable[[], None] | None = None,
                            paths: Sequence[str] | None = None) -> dict:
    """Mel / STFT distance, waveform L1, SI-SDR and SDR for every reconstruction path of the tokenizer
    (``tokens`` = decode(encode(x)); Mel tokenizers add Mel → vocoder and Griffin-Lim paths, codecs prefixes
    of their levels), averaged over clips; plus encode / decode real-time factors of the ``tokens`` path.
    ``paths`` keeps only the named ones (the bench needs ``tokens`` alone)."""
    import time

    paths = {k: v for k, v in tokenizer.reconstruction_paths().items() if paths is None or k in paths}
    sums: dict[str, dict[str, float]] = {name: {} for name in paths}
    counts: dict[str, dict[str, int]] = {name: {} for name in paths}  # clips where each metric is defined
    timing = {"encode_seconds": 0.0, "decode_seconds": 0.0}
    for wav in clips.audio:
        x = wav[None].to(tokenizer.device)
        for name, fn in paths.items():
            if name == "tokens":
                t0 = time.perf_counter()
                tokens = tokenizer.encode(x)
                t1 = time.perf_counter()
                y = tokenizer.decode(tokens)
                timing["encode_seconds"] += t1 - t0
                timing["decode_seconds"] += time.perf_counter() - t1
            else:
                with torch.no_grad():
                    y = fn(x)
            ref = x
            if isinstance(y, tuple):  # a path with its own reference (e.g. a band-limited target)
                ref, y = y
            if y.ndim == 3:  # a tokenizer of several tracks (DuoTok) decodes (B, tracks, T): score their mix
                y = y.sum(1)
            res = reconstruction_metrics(ref.cpu(), y.cpu(), clips.sample_rate).to_dict()
            res["level_error_db"] = _level_error_db(ref.cpu(), y.cpu())
            for k, v in res.items():
                sums[name].setdefault(k, 0.0)
                counts[name].setdefault(k, 0)
                if not math.isnan(v):  # e.g. SI-SDR of a silent clip: undefined, not a number to average
                    sums[name][k] += v
                    counts[name][k] += 1
        if on_clip:
            on_clip()
    n = len(clips.audio)
    audio_seconds = n * clips.audio.shape[-1] / clips.sample_rate
    return {
        "reconstruction": {name: {k: v / counts[name][k] if counts[name][k] else None for k, v in d.items()}
                           for name, d in sums.items()},
        # decoders trained on spectra alone choose their own phase: SI-SDR, SDR and waveform L1 then say little
        "phase_free": bool(getattr(tokenizer, "phase_free", False)),
        "speed": {"encode_realtime_factor": audio_seconds / max(timing["encode_seconds"], 1e-9),
                  "decode_realtime_factor": audio_seconds / max(timing["decode_seconds"], 1e-9)},
        "layout": {"tokens_per_second": tokenizer.layout.tokens_per_second,
                   "kbps": tokenizer.layout.bitrate / 1000},
        **_provenance(tokenizer, clips),
    }


def _level_error_db(ref: torch.Tensor, est: torch.Tensor) -> float:
    """|RMS level of ``est`` − RMS level of ``ref``| in dB: does decoding give the input's level back?"""
    n = min(ref.shape[-1], est.shape[-1])
    r = ref[..., :n].double().pow(2).mean().clamp_min(1e-20)
    e = est[..., :n].double().pow(2).mean().clamp_min(1e-20)
    return float((10 * torch.log10(e / r)).abs())


def token_stability(tokenizer, clips: EvalClips, *, snr_db: float = 40.0, gain_db: float = -6.0,
                    shift_samples: int = 4, seed: int = 0) -> dict[str, float]:
    """Fraction of tokens unchanged under white noise at ``snr_db``, a ``gain_db`` gain change, and a
    shift of ``shift_samples`` (frames compared index by index over the overlap)."""
    g = torch.Generator().manual_seed(seed)
    keys = {"noise": f"white_noise_{snr_db:g}db", "gain": f"gain_{gain_db:+g}db".replace("+", "plus_").replace("-", "minus_"),
            "shift": f"shift_{shift_samples}_samples"}
    same = {k: [0, 0] for k in keys.values()}
    for wav in clips.audio:
        base = tokenizer.encode(wav).codes
        power = wav.pow(2).mean().clamp_min(1e-12)
        noise = torch.randn(wav.shape, generator=g) * (power / 10 ** (snr_db / 10)).sqrt()
        variants = {keys["noise"]: wav + noise, keys["gain"]: wav * 10 ** (gain_db / 20),
                    keys["shift"]: wav[shift_samples:]}
        for key, v in variants.items():
            other = tokenizer.encode(v).codes
            for a, b in zip(base, other):
                f = min(a.shape[1], b.shape[1]) - (1 if key == keys["shift"] else 0)  # last frame differs in length
                same[key][0] += int((a[:, :f] == b[:, :f]).sum())
                same[key][1] += a[:, :f].numel()
    return {k: s / max(t, 1) for k, (s, t) in same.items()}


def evaluate_tokens(tokenizer, clips: EvalClips, *, stability: bool = True,
                    on_clip: Callable[[], None] | None = None) -> dict:
    """Codebook health, dependence (mutual information, MMD) and stability of the tokens, per stream."""
    per_stream: list[list[Tensor]] = [[] for _ in tokenizer.layout.streams]
    embeds: list[list[Tensor]] = [[] for _ in tokenizer.layout.streams]
    for wav in clips.audio:
        tokens = tokenizer.encode(wav)
        for s, (c, e) in enumerate(zip(tokens.codes, tokenizer.dependence_embeddings(tokens))):
            per_stream[s].append(c.cpu())
            embeds[s].append(e.float().cpu())  # (1, frames, slots, D): clips stay apart for the MMD
        if on_clip:
            on_clip()
    streams = {}
    for spec, codes, emb in zip(tokenizer.layout.streams, per_stream, embeds):
        codes_t = torch.cat(codes)
        sizes = spec.codebook_sizes[0] if spec.shared_codebook else list(spec.codebook_sizes)
        health = codebook_health(codes_t, sizes, slot_names=spec.slot_axis)
        # the MMD between slots needs two slots at least (a one-codebook stream has no partner); the MI
        # columns are shuffle-corrected with intervals (metrics/dependence.py: shuffle_corrected_mi)
        frames = min(e.shape[1] for e in emb)
        emb_t = torch.cat([e[:, :frames] for e in emb]) if spec.num_slots > 1 else None
        dep = dependence_metrics(codes_t, sizes, embeddings=emb_t)
        streams[spec.name] = {"codebook": health.to_dict(), "dependence": dep.to_dict(),
                              "frame_rate": spec.frame_rate, "tokens_per_second": spec.tokens_per_second}
    out = {"streams": streams, **_provenance(tokenizer, clips)}
    if stability:
        out["stability"] = token_stability(tokenizer, clips)
    return out


def tokens_summary(res: dict) -> dict:
    """The headline of :func:`evaluate_tokens`, averaged over streams: utilization, inter-codebook MI minus
    its shuffled value with the mean of the streams' 95 % intervals (and the raw plug-in value), the MMD
    between codebooks; per stream the same, with the utilization of every slot (codebook / level / band)."""
    util, mi, ci, raw, mmd = [], [], [], [], []
    for st in res["streams"].values():
        cb, dep = st["codebook"], st["dependence"]
        util.append(cb["pooled"]["utilization"] if cb["pooled"] else cb["mean_utilization"])
        if dep.get("mutual_information") is not None:
            mi.append(dep["mutual_information"])
            ci.append(dep["mutual_information_ci"])
            raw.append(dep["mutual_information_raw"])
        if dep.get("mmd_joint_vs_product") is not None:
            mmd.append(dep["mmd_joint_vs_product"])

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    return {"utilization": mean(util), "inter_codebook_mi_bits": mean(mi), "mmd_joint_vs_product": mean(mmd),
            "inter_codebook_mi_ci": [mean([c[0] for c in ci]), mean([c[1] for c in ci])] if ci else None,
            "inter_codebook_mi_raw_bits": mean(raw),
            "per_stream": {k: {"utilization": (v["codebook"]["pooled"] or {}).get("utilization",
                                                                                  v["codebook"]["mean_utilization"]),
                               "utilization_per_slot": {slot: u["utilization"]
                                                        for slot, u in v["codebook"]["slots"].items()},
                               "mi_bits": v["dependence"].get("mutual_information"),
                               "mi_ci": v["dependence"].get("mutual_information_ci"),
                               "nmi": v["dependence"].get("normalized_mutual_information")}
                           for k, v in res["streams"].items()}}


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def evaluate_lm(lm_dir: str | Path, corpus: str | Path, split: str = "test", *, max_windows: int | None = 64,
                cache_dir: str | Path = "data/token-cache", batch_size: int = 8,
                on_batch: Callable[[], None] | None = None, train_pieces: int | None = None,
                on_start: Callable[[int], None] | None = None) -> dict:
    """Teacher-forced predictability of a token LM on a corpus split: BPT, cnBPT, enBPT, cnBPS, Acc@k,
    against a unigram baseline fitted on the training split, plus the loss at every context position."""
    from .train.lm import load_lm, token_cache

    loaded = load_lm(lm_dir)
    tokenizer = _lm_tokenizer(loaded, lm_dir)
    tokens = token_cache(tokenizer, corpus, split, cache_dir)
    train_tokens = token_cache(tokenizer, corpus, "train", cache_dir, max_pieces=train_pieces)
    res = score_lm(loaded, tokens, train_tokens, max_windows=max_windows, batch_size=batch_size,
                   on_batch=on_batch, on_start=on_start)
    return res | {"lm_source": str(lm_dir), "tokenizer": loaded.meta["tokenizer"],
                  "data": {"corpus": str(corpus), "split": split}, "musictok_version": __version__,
                  "metrics_version": METRICS_VERSION}


def _trained_on(meta: dict) -> dict:
    """The fingerprint, as a dict, of the tokens an LM was trained on (from its saved meta)."""
    return {k: meta["tokenizer"][k] for k in ("name", "config_hash", "weights_hash")}


def _lm_tokenizer(loaded, lm_dir: str | Path):
    """The tokenizer whose tokens a loaded LM was trained on, refused if it is another version of it."""
    from .tokenizers.base import Tokenizer

    source = loaded.meta["tokenizer"]["source"]
    tokenizer = Tokenizer.from_pretrained(source)
    if dataclasses.asdict(tokenizer.fingerprint()) != _trained_on(loaded.meta):
        raise ValueError(f"{lm_dir}: trained on tokens of another version of {source}")
    return tokenizer


def score_lm(loaded, tokens: list, train_tokens: list | None = None, *, max_windows: int | None = 64,
             batch_size: int = 8, on_batch: Callable[[], None] | None = None,
             on_start: Callable[[int], None] | None = None) -> dict:
    """Teacher-forced predictability of a loaded LM on ``tokens`` (:class:`~musictok.tokens.Tokens` of its
    tokenizer, cut into non-overlapping windows of its context, round-robin, at most ``max_windows``) — the one
    scoring of :func:`evaluate_lm`, for tokens from anywhere (a bench's real-music clips). With ``train_tokens``,
    the unigram baseline fitted on them too (``None`` in the result otherwise)."""
    from .metrics.predictability import StreamPrediction, predictability_metrics
    from .train.lm import TokenWindows

    model, pattern, meta = loaded.model, loaded.pattern, loaded.meta
    if any(dataclasses.asdict(t.fingerprint) != _trained_on(meta) for t in tokens):
        raise ValueError(f"tokens of another tokenizer than the LM's ({meta['tokenizer']['source']})")
    layout = tokens[0].layout
    windows = TokenWindows(tokens, meta["context_frames"], random=False, max_windows=max_windows)
    if on_start:
        on_start(-(-len(windows) // batch_size))  # the number of on_batch calls to come
    stream_of, _, slot_of = pattern.cell_table()  # (steps, K): stream and slot of each target
    nll, masks, logits_all, targets_all, codes_all = [], [], [], [], []
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            codes = TokenWindows.collate([windows[j] for j in range(i, min(i + batch_size, len(windows)))])
            b = pattern.build(codes)
            out = model(b.inputs, b.positions, b.targets)
            nll.append(out.per_token_nll)
            keep = b.targets != -100
            masks.append(keep)
            logits_all.append(out.logits[keep])
            targets_all.append(b.targets[keep])
            codes_all.append(codes)
            if on_batch:
                on_batch()
    nll_t = torch.cat(nll)  # (N, steps, K)
    mask = torch.cat(masks)
    logits, targets = torch.cat(logits_all), torch.cat(targets_all)
    target_streams = stream_of.expand(mask.shape)[mask]
    target_slots = slot_of.expand(mask.shape)[mask]
    lm_streams, uni_streams = [], []
    for s, spec in enumerate(layout.streams):
        sizes = spec.codebook_sizes[0] if spec.shared_codebook else list(spec.codebook_sizes)
        codes_s = torch.cat([c[s] for c in codes_all])
        sel = target_streams == s
        # (n, slots): every cell is predicted once, so each slot has the same number of targets
        nll_s = torch.stack([nll_t[mask][sel & (target_slots == j)] for j in range(spec.num_slots)], dim=-1)
        lm_streams.append(StreamPrediction(nll_s, sizes, spec.tokens_per_second, codes=codes_s,
                                           name=spec.name, topk=_topk(logits[sel], targets[sel])))
        if train_tokens is not None:
            uni_streams.append(_unigram(torch.cat([t.codes[s][0] for t in train_tokens]), codes_s, spec, sizes))
    by_position = (nll_t * mask).sum(0).sum(-1) / mask.sum(0).sum(-1).clamp_min(1) / math.log(2)
    return {"lm": predictability_metrics(lm_streams).to_dict(),
            "unigram_baseline": predictability_metrics(uni_streams).to_dict() if uni_streams else None,
            "loss_by_position_bits": by_position.tolist(), "windows": len(windows),
            "context_frames": meta["context_frames"], "pattern": meta["pattern"], "rope": meta["config"]["rope"]}


def _unigram(train_codes: Tensor, codes: Tensor, spec, sizes):
    """The unigram baseline of one stream: code frequencies of the training split per slot (one pooled
    table for a shared codebook), add-one smoothed, scored on the same tokens as the LM."""
    from .metrics.predictability import StreamPrediction

    slots = codes.shape[-1]
    nll, logits_rows, target_rows = [], [], []
    for j in range(slots):
        train_j = train_codes.reshape(-1) if spec.shared_codebook else train_codes[..., j].reshape(-1)
        k = spec.codebook_sizes[j]
        p = (torch.bincount(train_j, minlength=k).double() + 1) / (train_j.numel() + k)
        target_j = codes[..., j].reshape(-1)
        nll.append(-p.log()[target_j].float())
        n = min(len(target_j), 4096 // slots + 1)
        logits_rows.append(p.log().float().expand(n, k))
        target_rows.append(target_j[:n])
    k = max(spec.codebook_sizes)
    logits = torch.cat([torch.nn.functional.pad(r, (0, k - r.shape[1]), value=float("-inf")) for r in logits_rows])
    return StreamPrediction(torch.stack(nll, dim=-1), sizes, spec.tokens_per_second, codes=codes, name=spec.name,
                            topk=_topk(logits, torch.cat(target_rows)))


def _topk(logits: Tensor, targets: Tensor, ks=(1, 5, 10, 50)) -> dict[int, float]:
    from .metrics.predictability import topk_accuracy

    return topk_accuracy(logits.float(), targets, ks)


# ---------------------------------------------------------------------------------------- attribute probe
def corpus_clips(corpus: str | Path, split: str, sample_rate: int, seconds: float, max_clips: int | None
                 ) -> tuple[Tensor, list[str], list[str]]:
    """The clip grid of a corpus split: audio ``(N, T)``, each clip's piece id and its group — the source file
    of an imported recording (its 30-s segments are one recording), else the piece — for cluster intervals."""
    from .data.datasets import CorpusIndex, MixClips

    folder_of = {p["id"]: p.get("folder", p["id"]) for p in CorpusIndex(corpus).pieces}
    ds = MixClips(corpus, split, seconds, sample_rate, random=False, max_clips=max_clips)
    items = [ds[i] for i in range(len(ds))]
    return (torch.stack([it["audio"] for it in items]), [it["piece"] for it in items],
            [folder_of[it["piece"]] for it in items])


def code_features(tokenizer, audio: Tensor, batch: int = 16) -> Tensor:
    """``(N, T)`` clips -> ``(N, F)`` probe features: statistics over time of the tokenizer's code embeddings."""
    from .metrics.probe import clip_features

    feats = []
    for i in range(0, len(audio), batch):
        tokens = tokenizer.encode(audio[i: i + batch])
        feats.append(clip_features([e.cpu() for e in tokenizer.code_embeddings(tokens)]))
    return torch.cat(feats)


def evaluate_probe(tokenizer, corpus: str | Path, *, seconds: float = 5.0, train_clips: int = 600,
                   test_clips: int = 240, min_positives: int = 5, resamples: int = 1000, seed: int = 0,
                   test_split: str = "test") -> dict:
    """The attribute probe (``metrics/probe.py``) of one tokenizer on one corpus: tags from its metadata
    (``data/tags.py``), features from the training and ``test_split`` clip grids, AP / ROC-AUC with
    piece-level intervals and the shuffled-label control. (``test_split="train"`` scores the probe on clips it
    was fitted on: for smoke tests of the pipeline only.)"""
    from .data.datasets import CorpusIndex
    from .data.tags import corpus_tags
    from .metrics.probe import probe_attributes

    table = corpus_tags(CorpusIndex(corpus).pieces, min_positives=min_positives)
    if not table.tags:
        raise ValueError(f"{corpus}: no attribute varies enough to probe (every tag has fewer than {min_positives} "
                         "pieces of one class)")
    sets = []
    for split, n in (("train", train_clips), (test_split, test_clips)):
        audio, pieces, groups = corpus_clips(corpus, split, tokenizer.sample_rate, seconds, n)
        y, known = table.matrix(pieces)
        sets.append((code_features(tokenizer, audio), torch.tensor(y), torch.tensor(known), groups))
    (tx, ty, tk, _), (vx, vy, vk, groups) = sets
    res = probe_attributes(tx, ty, tk, vx, vy, vk, groups, table.tags, resamples=resamples, seed=seed)
    data = {"corpus": str(corpus), "split": test_split, "seconds_per_clip": seconds, "train_clips": len(tx),
            "test_clips": len(vx)}
    return res.to_dict() | {"tags": table.tags, "excluded_tags": table.excluded,
                            **_provenance(tokenizer, EvalClips(vx, tokenizer.sample_rate, data))}


# ---------------------------------------------------------------------------------------- Fréchet embeddings
def window_embeddings(clips: list[Tensor], sample_rate: int, groups: list[str], *, tagger=None,
                      window_seconds: float = 1.0, hop_seconds: float = 0.5) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per embedding name, ``(windows, D)`` embeddings of every clip's windows and each window's group:
    ``mel`` (Mel statistics, ``metrics/frechet.py``) and, given a tagger (``nn/tagger.py``), ``tagger`` (its
    penultimate layer, audio resampled to the tagger's rate)."""
    from .audio import resample
    from .metrics.frechet import mel_statistics

    out: dict[str, tuple[list, list]] = {"mel": ([], [])} | ({"tagger": ([], [])} if tagger is not None else {})
    for wav, group in zip(clips, groups):
        wav = wav.reshape(-1).float().cpu()
        m = mel_statistics(wav, sample_rate, window_seconds=window_seconds, hop_seconds=hop_seconds)
        out["mel"][0].append(m.numpy())
        out["mel"][1].extend([group] * len(m))
        if tagger is not None:
            sr = tagger.config.sample_rate
            x = wav if sr == sample_rate else torch.from_numpy(resample(wav.numpy(), sample_rate, sr))
            size, step = int(round(window_seconds * sr)), int(round(hop_seconds * sr))
            starts = range(0, max(len(x) - size, 0) + 1, step)
            windows = torch.stack([torch.nn.functional.pad(x[s: s + size], (0, max(size - len(x[s: s + size]), 0)))
                                   for s in starts])
            out["tagger"][0].append(tagger.embed(windows).numpy())
            out["tagger"][1].extend([group] * len(windows))
    return {k: (np.concatenate(v[0]), v[1]) for k, v in out.items()}
