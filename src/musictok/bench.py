"""`musictok bench`: every tokenizer under one held-constant protocol, in one table and one report.

For each tokenizer the same test clips are reconstructed and tokenized, and **the same LM** (size, steps,
optimizer, context in seconds, seed) is trained on its training-split tokens under each of its natural
sequence patterns — BandTok: band-grid with 2D RoPE; a multi-codebook codec: flatten, parallel and delay;
a multi-rate codec (PyramidCodec): coarse-to-fine — and scored by the same metric code, on the test split
and, with ``real``, on the tokens of the held-out recordings' clips (the ``real:`` columns, cnBPT among
them). Each row states the tokenizer's own training budget (steps, wall minutes) when its checkpoint records
it. Speed is measured side by side in the same run, for musictok's tokenizers and, when their PyPI packages
import here, for EnCodec and DAC built with random weights (speed does not depend on the weights).

Outputs (``--out``, default ``docs/results``): ``bench-<date>.json`` (everything), ``bench-<date>.md``
(the paper-style table), three PNG plots and ``bench-<date>.html`` — one self-contained file that opens
offline, with the table, the plots and audio players for reconstructions and continuations of the same
clips. Work files (token caches, LM runs) go to ``--work``; a rerun resumes finished parts from there.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .atomic import write_json, write_text
from .errors import MusictokError
from .report import audio_data_uri, bench_plots, html_report, machine, markdown_report
from .metrics.version import METRICS_VERSION

Log = Callable[[str], None]


@dataclass
class BenchConfig:
    """The held-constant protocol. ``quick()`` is the smoke-test scale (minutes on 2 cores)."""

    tokenizers: list[str]
    corpus: str = "data/chorales"
    real: str | None = None  # a folder of real recordings (held out) for the real-music columns
    out: str = "docs/results"
    work: str = "runs/bench"
    cache_dir: str = "data/token-cache"  # corpus tokens per tokenizer fingerprint, shared with `train lm`
    name: str = ""  # file stem; default bench-<date>
    eval_split: str = "test"
    eval_clips: int = 24  # test clips for reconstruction and token statistics
    eval_seconds: float = 10.0
    stability: bool = True
    lm_preset: str = "small"
    lm_layers: int = 4
    lm_embd: int = 256
    lm_heads: int = 8
    lm_steps: int = 400
    lm_batch: int = 8
    lm_lr: float = 1e-3
    lm_warmup: int = 50
    context_seconds: float = 4.0
    lm_eval_windows: int = 64
    max_pieces: int | None = None  # LM training pieces (None: the whole training split)
    speed_seconds: float = 60.0
    speed_repeats: int = 2
    baseline_repeats: int = 1  # EnCodec / DAC run far slower than real time on a CPU
    report_clips: int = 2  # clips with audio players in the HTML report
    prompt_seconds: float = 4.0
    continuation_seconds: float = 4.0
    temperature: float = 0.9
    top_k: int | None = 64
    baselines: bool = True  # EnCodec / DAC speed rows when their packages import
    # the attribute probe on frozen code embeddings (metrics/probe.py), off by default: it encodes hundreds of clips
    probe: bool = False
    probe_real: str | None = None  # a corpus of imported recordings (data/real): the source-package probe
    probe_seconds: float = 5.0
    probe_train_clips: int = 600
    probe_test_clips: int = 240
    probe_min_positives: int = 5
    probe_resamples: int = 1000
    # Fréchet distances of continuations to held-out clips (metrics/frechet.py), off by default: it generates
    frechet: bool = False
    frechet_clips: int = 16  # held-out clips of prompt + continuation seconds: half prompts, half reference
    frechet_tagger: str | None = None  # a trained tagger folder; None: train one into <work>/tagger
    frechet_resamples: int = 200
    frechet_window_seconds: float = 1.0  # each clip is embedded in windows this long, every hop
    frechet_hop_seconds: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls, tokenizers: list[str], **kw) -> BenchConfig:
        base = dict(eval_clips=2, eval_seconds=2.0, stability=False, lm_preset="tiny", lm_layers=2, lm_embd=64,
                    lm_heads=2, lm_steps=3, lm_batch=2, lm_warmup=1, context_seconds=1.0, lm_eval_windows=4,
                    max_pieces=3, speed_seconds=4.0, speed_repeats=1, report_clips=1, prompt_seconds=1.0,
                    continuation_seconds=1.0, probe_seconds=2.0, probe_train_clips=12, probe_test_clips=6,
                    probe_min_positives=1, probe_resamples=50, frechet_clips=4, frechet_resamples=20,
                    frechet_window_seconds=0.25, frechet_hop_seconds=0.125)
        return cls(tokenizers=tokenizers, **(base | kw))


@dataclass
class BenchRow:
    """One (tokenizer, pattern) line of the table."""

    tokenizer: str
    pattern: str
    values: dict[str, Any] = field(default_factory=dict)


def natural_patterns(layout) -> list[tuple[str, dict, str]]:
    """``(pattern, pattern_options, rope)`` a tokenizer is compared under, from its layout."""
    streams = layout.streams
    if len(streams) > 1:
        return [("coarse-to-fine", {}, "1d")]
    if streams[0].slot_axis == "band":
        return [("band-grid", {"positions": "2d"}, "2d")]
    if streams[0].num_slots == 1:
        return [("flatten", {}, "1d")]
    return [("flatten", {}, "1d"), ("parallel", {}, "1d"), ("delay", {}, "1d")]


def _short(name: str) -> str:
    """A row's name: the bundled name, or the folder's (its run's, for a training run's ``export``)."""
    if "/" not in name:
        return name
    path = Path(name).resolve()
    return path.parent.name if path.name == "export" else path.name


def start_run(cfg, prefix: str) -> tuple[str, str, Path, Path]:
    """``(date, file stem, out dir, work dir)`` of a bench run, folders made and torch seeded."""
    date = time.strftime("%Y-%m-%d")
    out, work = Path(cfg.out), Path(cfg.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    return date, cfg.name or f"{prefix}-{date}", out, work


def run_bench(cfg: BenchConfig, log: Log = print) -> dict:
    """Run the whole protocol; returns the JSON-ready result (also written to ``cfg.out``)."""
    from .tokenizers.base import Tokenizer

    t_start = time.time()
    date, stem, out, work = start_run(cfg, "bench")
    tokenizers = {}
    for name in cfg.tokenizers:
        tokenizers[_short(name)] = Tokenizer.from_pretrained(name)  # fail early on a bad name
        if tokenizers[_short(name)].stem_inputs > 1:
            raise ValueError(f"{name}: a two-track tokenizer (lead, accompaniment); compare it under the "
                             "dual-track protocol: `musictok bench --dual`")
    rows: list[BenchRow] = []
    extras: dict[str, dict] = {}
    media: dict[str, dict] = {"clips": {}, "recon": {}, "continuation": {}}
    frechet = FrechetSetup(cfg, work, log) if cfg.frechet else None
    for short, tok in tokenizers.items():
        log(f"[{short}] reconstruction and token statistics")
        real = _real_clips(tok, cfg)
        per_tok = _tokenizer_metrics(tok, cfg) | _real_music_metrics(tok, real, cfg) | training_budget(tok.source)
        real_tokens = [tok.encode(w) for w in real.audio] if real is not None else None
        extras[short] = {"usage": per_tok.pop("usage"), "fingerprint": tok.fingerprint().short()}
        if cfg.probe:
            log(f"[{short}] attribute probe")
            probes = _probe_metrics(tok, cfg)
            extras[short]["probe"] = probes.pop("details")
            per_tok |= probes
        if frechet:
            log(f"[{short}] Fréchet distance of its reconstructions")
            per_tok |= frechet.reconstructions(tok)
        media["recon"][short] = _report_reconstructions(tok, cfg, media["clips"])
        for pattern, options, rope in natural_patterns(tok.layout):
            log(f"[{short}] LM with the {pattern} pattern")
            lm_dir = _train_lm(tok, short, pattern, options, rope, cfg, work, log)
            lm_res = _lm_metrics(lm_dir, cfg, real_tokens, log)
            gen = _continuations(lm_dir, tok, cfg, media["clips"])
            media["continuation"][f"{short} / {pattern}"] = gen.pop("audio")
            if frechet:
                log(f"[{short}] Fréchet distance of the {pattern} LM's continuations")
                gen |= frechet.continuations(lm_dir, tok)
            row = BenchRow(short, pattern, per_tok | lm_res["row"] | gen)
            extras[f"{short} / {pattern}"] = {"loss_by_position_bits": lm_res["loss_by_position_bits"],
                                              "context_seconds": cfg.context_seconds, "lm": str(lm_dir)}
            rows.append(row)
    log("speed, side by side")
    speed = speed_table(tokenizers, cfg, log)
    wall = time.time() - t_start
    result = {"config": dataclasses.asdict(cfg), "rows": [dataclasses.asdict(r) for r in rows], "speed": speed,
              "extras": extras, "wall_seconds": wall, "date": date, "musictok_version": __version__,
              "metrics_version": METRICS_VERSION, "machine": machine()}
    if cfg.probe:
        result["probe"] = _probe_summary(cfg, extras)
    if frechet:
        result["frechet_floor"] = frechet.floor_summary()
    plots = bench_plots(result, out, stem)
    write_json(out / f"{stem}.json", result)
    write_text(out / f"{stem}.md", markdown_report(result, plots))
    write_text(out / f"{stem}.html", html_report(result, plots, media))
    log(f"wrote {out / stem}.md, .json, .html in {wall / 60:.1f} min")
    return result


# ---------------------------------------------------------------------------------------- measurements
def _eval_clips(sample_rate: int, cfg: BenchConfig, n: int, seconds: float):
    from .evaluate import load_clips

    return load_clips(sample_rate, corpus=cfg.corpus, split=cfg.eval_split, seconds=seconds, max_clips=n)


def _tokenizer_metrics(tok, cfg: BenchConfig) -> dict:
    from .evaluate import evaluate_reconstruction, evaluate_tokens

    clips = _eval_clips(tok.sample_rate, cfg, cfg.eval_clips, cfg.eval_seconds)
    rec = evaluate_reconstruction(tok, clips, paths=("tokens",))["reconstruction"]["tokens"]
    tokres = evaluate_tokens(tok, clips, stability=cfg.stability)
    layout = tok.layout
    util, nent, usage = [], [], {}
    # the MI columns: plug-in estimate minus the same estimate on shuffled pairs (its bias at this n), with a
    # half-sampling interval; the raw and shuffled means are kept beside them (metrics/dependence.py)
    dep_keys = {"inter_codebook_mi": "mutual_information", "neighbour_nmi": "neighbour_normalized_mutual_information_time"}
    dep_values: dict[str, list] = {f"{col}{sfx}": [] for col in dep_keys for sfx in ("", "_ci", "_raw", "_shuffled")}
    for name, st in tokres["streams"].items():
        cb, dep = st["codebook"], st["dependence"]
        pooled = cb["pooled"]
        util.append(pooled["utilization"] if pooled else cb["mean_utilization"])
        nent.append(pooled["normalized_entropy"] if pooled else cb["mean_normalized_entropy"])
        for col, key in dep_keys.items():
            if dep.get(key) is not None:
                for sfx in ("", "_ci", "_raw", "_shuffled"):
                    dep_values[col + sfx].append(dep[key + sfx])
    codes = [tok.encode(w).codes for w in clips.audio]
    for s, spec in enumerate(layout.streams):
        c = torch.cat([cc[s].reshape(-1, spec.num_slots) for cc in codes])
        cols = [c.reshape(-1)] if spec.shared_codebook else list(c.T)
        usage[spec.name] = [torch.bincount(col, minlength=spec.codebook_sizes[0]).tolist() for col in cols]
    stab = tokres.get("stability", {})
    pick = {k.split("_")[0]: v for k, v in stab.items()}  # white_noise_40db -> white, gain_..., shift_...
    return {
        "frame_rate": max(s.frame_rate for s in layout.streams), "tokens_per_second": layout.tokens_per_second,
        "kbps": layout.bitrate / 1000, "mel_distance": rec["mel_distance"], "stft_distance": rec["stft_distance"],
        "si_sdr": rec["si_sdr"], "utilization": float(np.mean(util)), "normalized_entropy": float(np.mean(nent)),
        # several streams (PyramidCodec's levels): the mean of the values and of the interval bounds
        **{k: (np.mean(v, axis=0).tolist() if v else None) for k, v in dep_values.items()},
        "stability_noise": pick.get("white"), "stability_gain": pick.get("gain"), "stability_shift": pick.get("shift"),
        "usage": usage,
    }


def _real_clips(tok, cfg: BenchConfig):
    """The real recordings' clips (``cfg.real``: held out, never trained on) at the tokenizer's rate, or None."""
    if not cfg.real:
        return None
    from .evaluate import load_clips

    return load_clips(tok.sample_rate, audio_dir=cfg.real, seconds=cfg.eval_seconds, max_clips=cfg.eval_clips)


def _real_music_metrics(tok, clips, cfg: BenchConfig) -> dict:
    """The same reconstruction and token statistics on the real recordings' ``clips`` (nothing without them),
    so a tokenizer that only holds on renders shows it in the table."""
    if clips is None:
        return {}
    from .evaluate import evaluate_reconstruction, evaluate_tokens

    rec = evaluate_reconstruction(tok, clips, paths=("tokens",))["reconstruction"]["tokens"]
    tokres = evaluate_tokens(tok, clips, stability=cfg.stability)
    util, nent = [], []
    for st in tokres["streams"].values():
        pooled = st["codebook"]["pooled"]
        util.append(pooled["utilization"] if pooled else st["codebook"]["mean_utilization"])
        nent.append(pooled["normalized_entropy"] if pooled else st["codebook"]["mean_normalized_entropy"])
    gain = {k.split("_")[0]: v for k, v in tokres.get("stability", {}).items()}.get("gain")
    return {"real_mel_distance": rec["mel_distance"], "real_utilization": float(np.mean(util)),
            "real_normalized_entropy": float(np.mean(nent)), "real_stability_gain": gain}


def _train_lm(tok, short: str, pattern: str, options: dict, rope: str, cfg: BenchConfig, work: Path, log: Log) -> Path:
    """The held-constant LM: same preset, size, steps, optimizer, seed and context seconds for every row."""
    from .train.config import DataConfig, RunConfig
    from .train.lm import LMTask
    from .train.loop import TrainConfig, Trainer

    run_dir = work / (f"lm-{short}-{pattern}" + (f"-s{cfg.seed}" if cfg.seed else ""))
    expect = lm_run_record(cfg.lm_steps, cfg.seed, tok.fingerprint())
    if (export := finished_lm_run(run_dir, expect)) is not None:
        log(f"  reusing {export}")
        return export
    source = tok.source or short
    run = RunConfig(
        kind="lm",
        model={"preset": cfg.lm_preset, "n_layer": cfg.lm_layers, "n_embd": cfg.lm_embd, "n_head": cfg.lm_heads,
               "rope": rope},
        lm={"tokenizer": source, "pattern": pattern, "pattern_options": options, "context_seconds": cfg.context_seconds,
            "cache_dir": cfg.cache_dir, "valid_windows": 8, "max_pieces": cfg.max_pieces},
        data=DataConfig(corpus=cfg.corpus, valid_split="valid" if _has_split(cfg.corpus, "valid") else "train",
                        seed=cfg.seed),
        train=TrainConfig(out_dir=str(run_dir), steps=cfg.lm_steps, batch_size=cfg.lm_batch, lr=cfg.lm_lr,
                          betas=(0.9, 0.95), weight_decay=0.1, warmup_steps=cfg.lm_warmup, amp="bf16",
                          log_every=max(cfg.lm_steps // 8, 1), ckpt_every=max(cfg.lm_steps // 4, 1),
                          valid_every=cfg.lm_steps, seed=cfg.seed))
    resume = (run_dir / "checkpoint.pt").is_file()
    summary = Trainer(LMTask(run), run.train).run(resume=resume)
    return record_lm_run(run_dir, expect, summary)


def lm_run_record(steps: int, seed: int, fingerprint) -> dict:
    """What a held-constant LM run must match to be reused: its steps, seed and the tokens' fingerprint."""
    return {"steps": steps, "seed": seed, "tokenizer": f"{fingerprint.config_hash}:{fingerprint.weights_hash}"}


def finished_lm_run(run_dir: Path, expect: dict) -> Path | None:
    """The export of a finished LM run made with ``expect`` (``done.json``), else None: a run of other steps,
    another seed or another tokenizer's tokens (a retrained folder of the same name) is not reused."""
    done, export = run_dir / "done.json", run_dir / "export"
    if not (done.is_file() and export.is_dir()):
        return None
    record = json.loads(done.read_text())
    same = all(record.get(k) == v for k, v in expect.items()) and record.get("end_step") == expect["steps"]
    return export if same else None


def record_lm_run(run_dir: Path, expect: dict, summary) -> Path:
    """Mark a finished run reusable; a run stopped before its last step (a signal, ``max_minutes``) is not,
    and stops the bench: scoring its mid-run export would put a half-trained LM in the table."""
    if summary.end_step != expect["steps"]:
        raise MusictokError(f"{run_dir}: the LM stopped at step {summary.end_step} of {expect['steps']}; run the "
                            "same command again to resume it")
    write_json(run_dir / "done.json", expect | {"end_step": summary.end_step, "wall_seconds": summary.wall_seconds,
                                               "seconds_per_step": summary.seconds_per_step})
    return run_dir / "export"


def _has_split(corpus: str, split: str) -> bool:
    from .data.datasets import CorpusIndex

    try:
        return len(CorpusIndex(corpus, split).pieces) > 0
    except (FileNotFoundError, ValueError):  # no corpus index, or an unknown split
        return False


def _lm_metrics(lm_dir: Path, cfg: BenchConfig, real_tokens: list | None = None, log: Log = print) -> dict:
    """The LM's predictability on the test split (with its unigram baseline) and, given the real-music clips'
    tokens, its cnBPT on them (``real_cnbpt``) — the same scoring, :func:`musictok.evaluate.score_lm`."""
    from .evaluate import evaluate_lm
    from .train.lm import load_lm

    res = evaluate_lm(lm_dir, cfg.corpus, cfg.eval_split, max_windows=cfg.lm_eval_windows, cache_dir=cfg.cache_dir,
                      train_pieces=cfg.max_pieces)
    lm = res["lm"]
    streams = list(lm["streams"].values())
    n = sum(s["num_tokens"] for s in streams)

    def top(s: dict, k: int) -> float:
        acc = s["topk_accuracy"]
        return acc[k] if k in acc else acc[str(k)]

    acc = {str(k): sum(top(s, k) * s["num_tokens"] for s in streams) / n for k in (1, 5, 10)}
    loaded = load_lm(lm_dir)
    return {"row": {"bpt": lm["bpt"], "cnbpt": lm["cnbpt"], "enbpt": lm["enbpt"], "cnbps": lm["cnbps"],
                    "acc1": acc["1"], "acc5": acc["5"], "acc10": acc["10"],
                    "lm_steps_per_second": loaded.pattern.num_steps / cfg.context_seconds,
                    "unigram_cnbpt": res["unigram_baseline"]["cnbpt"],
                    "real_cnbpt": _real_cnbpt(loaded, real_tokens, cfg, log)},
            "loss_by_position_bits": res["loss_by_position_bits"]}


def _real_cnbpt(loaded, tokens: list | None, cfg: BenchConfig, log: Log) -> float | None:
    """cnBPT of a loaded LM on the real-music clips' tokens; None without them, or when no clip holds one
    context window (``eval_seconds`` shorter than ``context_seconds``)."""
    if not tokens:
        return None
    from .evaluate import score_lm

    try:
        return score_lm(loaded, tokens, max_windows=cfg.lm_eval_windows)["lm"]["cnbpt"]
    except MusictokError as e:  # TokenWindows: no clip as long as the context
        log(f"  real: cnBPT left out: {e}")
        return None


def training_budget(source: str) -> dict[str, float | None]:
    """A tokenizer's own training budget: ``train_steps`` (its ``config.json``'s ``train_step``) and
    ``train_minutes`` (wall time over every sitting of its run, from the ``summary.json`` beside a training
    export, when that summary ends at the export's step); None for what the checkpoint does not record (a
    bundled folder records steps at most)."""
    from .pretrained import CONFIG_FILE, PretrainedError, resolve

    try:
        folder = resolve(source)
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (PretrainedError, OSError, ValueError):
        return {"train_steps": None, "train_minutes": None}
    steps, minutes = meta.get("train_step"), None
    folder = folder.resolve()
    summary_path = folder.parent / "summary.json"
    if folder.name == "export" and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if steps is None or summary.get("end_step") == steps:  # the sitting that wrote this export
            steps = summary.get("end_step")
            # elapsed_seconds: every sitting (summaries before it: the last sitting's wall time, whole if not resumed)
            seconds = summary.get("elapsed_seconds") or (None if summary.get("start_step")
                                                         else summary.get("wall_seconds"))
            minutes = seconds / 60 if seconds else None
    return {"train_steps": steps, "train_minutes": minutes}


def _report_reconstructions(tok, cfg: BenchConfig, clips_store: dict) -> list[str]:
    """Encode → decode the report clips (prompt + continuation span) for the audio players."""
    seconds = cfg.prompt_seconds + cfg.continuation_seconds
    clips = _eval_clips(tok.sample_rate, cfg, cfg.report_clips, seconds)
    out = []
    for i, wav in enumerate(clips.audio):
        key = f"{clips.names[i]}"
        clips_store.setdefault(key, audio_data_uri(wav.numpy(), tok.sample_rate))
        out.append(audio_data_uri(tok.decode(tok.encode(wav))[0].cpu().numpy(), tok.sample_rate))
    return out


def _continuations(lm_dir: Path, tok, cfg: BenchConfig, clips_store: dict) -> dict:
    """Continue the first ``prompt_seconds`` of each report clip; generation speed in tokens per second."""
    from .generate import generate
    from .train.lm import load_lm

    loaded = load_lm(lm_dir)
    clips = _eval_clips(tok.sample_rate, cfg, cfg.report_clips, cfg.prompt_seconds + cfg.continuation_seconds)
    audio, speeds = [], []
    for i, wav in enumerate(clips.audio):
        g = generate(loaded, prompt=wav, prompt_seconds=cfg.prompt_seconds,
                     seconds=cfg.prompt_seconds + cfg.continuation_seconds, temperature=cfg.temperature,
                     top_k=cfg.top_k, seed=cfg.seed + i)
        audio.append(audio_data_uri(g.wav.cpu().numpy(), tok.sample_rate))
        speeds.append(g.tokens_per_second_generated)
    return {"generation_tokens_per_second": float(np.mean(speeds)), "audio": audio}


# ---------------------------------------------------------------------------------------- probe and Fréchet
def _probe_metrics(tok, cfg: BenchConfig) -> dict:
    """The probe's macro AP / ROC-AUC (with piece-level intervals and the shuffled-label control) on the corpus,
    and on the recordings' source packages when ``cfg.probe_real`` is set; ``details`` holds the per-tag results."""
    from .evaluate import evaluate_probe

    kw = dict(seconds=cfg.probe_seconds, train_clips=cfg.probe_train_clips, test_clips=cfg.probe_test_clips,
              min_positives=cfg.probe_min_positives, resamples=cfg.probe_resamples, seed=cfg.seed,
              test_split=cfg.eval_split)
    res = evaluate_probe(tok, cfg.corpus, **kw)
    out = {"probe_ap": res["macro_ap"], "probe_ap_ci": res["macro_ap_ci"], "probe_auc": res["macro_auc"],
           "probe_auc_ci": res["macro_auc_ci"], "probe_auc_shuffled": res["shuffled_auc"], "details": {"corpus": res}}
    if cfg.probe_real:
        real = evaluate_probe(tok, cfg.probe_real, **kw)
        out |= {"real_probe_ap": real["macro_ap"], "real_probe_auc": real["macro_auc"],
                "real_probe_auc_ci": real["macro_auc_ci"]}
        out["details"]["real"] = real
    return out


def _probe_summary(cfg: BenchConfig, extras: dict) -> dict:
    """What the probe columns mean, and each corpus's tags with their test prevalence (the AP of chance)."""
    tags: dict[str, dict[str, float]] = {}
    for v in extras.values():
        for key, res in v.get("probe", {}).items():
            name = Path(res["data"]["corpus"]).name
            tags.setdefault(name, {t: p["prevalence"] for t, p in res["per_tag"].items()})
    return {"description": f"logistic regression on the mean and std over time of the code embeddings of "
                           f"{cfg.probe_seconds:g}-s clips ({cfg.probe_train_clips} training-split clips at most, "
                           f"{cfg.probe_test_clips} {cfg.eval_split}-split clips); macro AP / ROC-AUC over the tags "
                           "with both classes among the scored clips, 95% intervals resampling pieces; the shuffled-"
                           "label AUC is the same probe fitted on permuted labels (chance at this sample size).",
            "tags": tags}


class FrechetSetup:
    """The Fréchet protocol of the bench: held-out clips split by piece into prompts (A) and a reference (B);
    the floor is the true continuation of A against B, the same set sizes as every row's continuations."""

    def __init__(self, cfg: BenchConfig, work: Path, log: Log):
        from .train.tagger import TaggerTrainConfig, load_tagger, train_tagger

        self.cfg, self.log = cfg, log
        tagger_dir = cfg.frechet_tagger
        if tagger_dir is None:
            corpora = [cfg.corpus] + ([cfg.probe_real] if cfg.probe_real else [])
            tcfg = (TaggerTrainConfig.quick if cfg.lm_preset == "tiny" else TaggerTrainConfig)(corpora)
            tagger_dir = str(train_tagger(tcfg, work / "tagger", log))
        self.tagger = load_tagger(tagger_dir)
        self.tagger_dir = tagger_dir
        self.by_rate: dict[int, dict] = {}

    def _embed(self, clips: list[torch.Tensor], sr: int, groups: list[str]) -> dict:
        from .evaluate import window_embeddings

        return window_embeddings(clips, sr, groups, tagger=self.tagger, window_seconds=self.cfg.frechet_window_seconds,
                                 hop_seconds=self.cfg.frechet_hop_seconds)

    def _sets(self, sr: int) -> dict:
        """Prompts, reference embeddings and the floor at one sample rate (made once)."""
        if sr not in self.by_rate:
            from .evaluate import corpus_clips
            from .metrics.frechet import split_halves

            cfg = self.cfg
            audio, _, groups = corpus_clips(cfg.corpus, cfg.eval_split, sr, cfg.prompt_seconds + cfg.continuation_seconds,
                                            cfg.frechet_clips)
            a, b = split_halves(groups, seed=cfg.seed)
            if len(a) == 0:
                raise ValueError(f"--frechet: {len(set(groups))} piece(s) in the {cfg.eval_split} split; the prompts "
                                 "and the reference need two at least")
            cut = int(cfg.prompt_seconds * sr)
            ga, gb = [groups[i] for i in a], [groups[i] for i in b]
            ref = self._embed(list(audio[b]), sr, gb)
            sets = {"prompts": audio[a], "groups": ga, "cut": cut, "ref": ref, "sr": sr}
            sets["floor"] = self._distances(list(audio[a][:, cut:]), ga, sets, "")
            self.by_rate[sr] = sets
        return self.by_rate[sr]

    def _distances(self, clips: list[torch.Tensor], groups: list[str], sets: dict, suffix: str) -> dict:
        from .metrics.frechet import frechet_with_interval

        out = {}
        for name, (x, gx) in self._embed(clips, sets["sr"], groups).items():
            y, gy = sets["ref"][name]
            r = frechet_with_interval(x, y, gx, gy, resamples=self.cfg.frechet_resamples, seed=self.cfg.seed)
            out[f"fd_{name}{suffix}"], out[f"fd_{name}{suffix}_ci"] = r.value, [r.low, r.high]
        return out

    def reconstructions(self, tok) -> dict:
        """``fd_*_recon``: the tokenizer's decode(encode(·)) of the prompts' true continuations against B."""
        sets = self._sets(tok.sample_rate)
        recon = [tok.decode(tok.encode(w))[0].cpu()[sets["cut"]:] for w in sets["prompts"]]
        return {k: v for k, v in self._distances(recon, sets["groups"], sets, "_recon").items() if not k.endswith("_ci")}

    def continuations(self, lm_dir: Path, tok) -> dict:
        """``fd_*`` with intervals: the LM's continuations of the prompts (generated part only) against B."""
        from .generate import generate
        from .train.lm import load_lm

        sets = self._sets(tok.sample_rate)
        loaded, cfg = load_lm(lm_dir), self.cfg
        gen = [generate(loaded, prompt=w, prompt_seconds=cfg.prompt_seconds,
                        seconds=cfg.prompt_seconds + cfg.continuation_seconds, temperature=cfg.temperature,
                        top_k=cfg.top_k, seed=cfg.seed + i).wav.cpu()[sets["cut"]:]
               for i, w in enumerate(sets["prompts"])]
        return self._distances(gen, sets["groups"], sets, "")

    def floor_summary(self) -> dict:
        """The floor (true continuations vs the reference) at the first sample rate, for the report."""
        sr, sets = next(iter(self.by_rate.items()))
        f = sets["floor"]
        return {"mel": f["fd_mel"], "mel_ci": f["fd_mel_ci"], "tagger": f.get("fd_tagger"),
                "tagger_ci": f.get("fd_tagger_ci"), "sample_rate": sr, "tagger_dir": self.tagger_dir,
                "description": f"the continuations of the first {self.cfg.prompt_seconds:g} s of {len(sets['groups'])} "
                               f"held-out clips (one half of the pieces) to {self.cfg.prompt_seconds + self.cfg.continuation_seconds:g} s, "
                               "generated part only, against all windows of the other half's clips; Mel statistics "
                               "and the tagger's embedding (metrics/frechet.py, nn/tagger.py), 95% half-sampling intervals."}


# ---------------------------------------------------------------------------------------- speed
def _time_codec(encode: Callable, decode: Callable, wav: torch.Tensor, seconds: float, repeats: int) -> dict:
    with torch.inference_mode():
        decode(encode(wav[..., : wav.shape[-1] // 8]))  # warm-up
        enc, dec = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            codes = encode(wav)
            t1 = time.perf_counter()
            decode(codes)
            dec.append(time.perf_counter() - t1)
            enc.append(t1 - t0)
    return {"encode_realtime_factor": seconds / statistics.median(enc),
            "decode_realtime_factor": seconds / statistics.median(dec)}


def _speed_audio(sample_rate: int, cfg: BenchConfig) -> torch.Tensor:
    try:
        return _eval_clips(sample_rate, cfg, 1, cfg.speed_seconds).audio[0]
    except Exception:  # a corpus with no clip that long: noise has the same cost
        return 0.1 * torch.randn(int(cfg.speed_seconds * sample_rate), generator=torch.Generator().manual_seed(0))


def speed_table(tokenizers: dict, cfg: BenchConfig, log: Log = print) -> dict:
    """Encode / decode real-time factors on ``speed_seconds`` of audio, batch 1, this machine's threads."""
    rows: dict[str, dict] = {}
    for short, tok in tokenizers.items():
        wav = _speed_audio(tok.sample_rate, cfg)
        rows[short] = _time_codec(tok.encode, tok.decode, wav, cfg.speed_seconds, cfg.speed_repeats) | {
            "kind": "musictok", "sample_rate": tok.sample_rate, "tokens_per_second": tok.layout.tokens_per_second}
    notes: dict[str, str] = {}
    if cfg.baselines:
        for name, build in (("EnCodec 24 kHz (random weights)", _encodec), ("DAC 24 kHz (random weights)", _dac)):
            try:
                model, encode, decode, sr = build()
            except Exception as e:  # not installed here, or its imports fail: leave the row out, say why
                notes[name] = f"left out: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
                log(f"  {name}: {notes[name]}")
                continue
            wav = _speed_audio(sr, cfg)
            rows[name] = _time_codec(encode, decode, wav, cfg.speed_seconds, cfg.baseline_repeats) | {
                "kind": "baseline", "sample_rate": sr}
    ref = next((k for k in rows if k.startswith("EnCodec")), None)
    if ref:
        for r in rows.values():
            r["encode_vs_encodec"] = r["encode_realtime_factor"] / rows[ref]["encode_realtime_factor"]
            r["decode_vs_encodec"] = r["decode_realtime_factor"] / rows[ref]["decode_realtime_factor"]
    return {"rows": rows, "notes": notes, "seconds": cfg.speed_seconds, "threads": torch.get_num_threads(),
            "repeats": cfg.speed_repeats, "baseline_repeats": cfg.baseline_repeats}


def _without_torchaudio():
    """A stand-in ``torchaudio`` module while a baseline package is imported, if the real one is missing.

    EnCodec and DAC import torchaudio at module level but their models never call it (it serves file I/O and
    resampling). It cannot be installed here without replacing torch, so the bench imports them with a stub
    that raises if anything does touch it."""
    import contextlib
    import importlib.util
    import sys
    import types

    @contextlib.contextmanager
    def guard():
        if importlib.util.find_spec("torchaudio") is not None:  # the real one is there: nothing to stand in for
            yield
            return
        stub = types.ModuleType("torchaudio")

        def missing(name: str):
            raise ImportError(f"torchaudio.{name} is not available (stubbed by musictok bench)")

        stub.__getattr__ = missing  # type: ignore[attr-defined]
        sys.modules["torchaudio"] = stub
        try:
            yield
        finally:
            sys.modules.pop("torchaudio", None)

    return guard()


def _encodec():
    with _without_torchaudio():
        from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    model.set_target_bandwidth(1.5)  # 2 codebooks × 75 frames/s: the lowest setting

    def encode(w):
        return model.encode(w.reshape(1, 1, -1))

    return model, encode, model.decode, 24000


def _dac():
    with _without_torchaudio():
        import dac

    model = dac.DAC(encoder_dim=64, encoder_rates=[2, 4, 5, 8], latent_dim=None, decoder_dim=1536,
                    decoder_rates=[8, 5, 4, 2], n_codebooks=32, codebook_size=1024, codebook_dim=8,
                    sample_rate=24000).eval()  # the published 24 kHz configuration

    def encode(w):
        z, codes, *_ = model.encode(model.preprocess(w.reshape(1, 1, -1), 24000))
        return codes

    def decode(codes):
        return model.decode(model.quantizer.from_codes(codes)[0])

    return model, encode, decode, 24000
