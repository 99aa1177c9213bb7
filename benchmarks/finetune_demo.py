"""Fine-tune a bundled tokenizer on half of the hedgewars tracks; score the other half before and after.

    .venv/bin/python benchmarks/finetune_demo.py [--tokenizer bandtok-small] [--steps 1000] [--clips 48]

A demonstration of `musictok train tokenizer --init NAME --audio DIR` (docs/finetune.md), not a model to
bundle: hedgewars is the held-out real-music test set of every other result, so the fine-tuned model stays in
``--work`` and is never bundled or used elsewhere.

1. The tracks of ``--corpus`` (``make data-hedgewars``: 26 OGG tracks imported as 10 s segments, one
   ``folder`` per track) are split into halves A and B by the SHA-1 of the track's folder name: whole tracks,
   the same halves on every machine.
2. Each half becomes a plain folder of audio in ``--work`` (symbolic links to the segments, one sub-folder
   per track), which is what a user would point ``--audio`` at.
3. The tokenizer is fine-tuned on half A with the default recipe (``prepare_run`` + ``Trainer``: exactly
   what the command runs; a rerun resumes from the run's checkpoint).
4. Half B is cut into a fixed grid of ``--seconds`` clips (``--clips`` of them, round-robin over its tracks)
   and scored with ``evaluate_reconstruction`` by the bundled and the fine-tuned tokenizer: the Mel distance
   (DAC definition) of every reconstruction path and the decoded level error. The vocoder inside the
   tokenizer is not trained by the fine-tune, so ``mel→vocoder`` must come out unchanged: a check that only
   the tokens moved.

Writes ``--out``/finetune-demo.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections import defaultdict
from pathlib import Path

from musictok.atomic import write_json, write_text
from musictok.data.datasets import CorpusIndex
from musictok.evaluate import evaluate_reconstruction, load_clips
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer
from musictok.train.loop import CHECKPOINT, Trainer
from musictok.train.registry import RunRequest, prepare_run

PATHS = ("tokens", "tokens→griffin-lim", "mel→vocoder", "mel→griffin-lim")
LABELS = {"tokens": "tokens → vocoder (what `decode` returns)", "tokens→griffin-lim": "tokens → Griffin-Lim",
          "mel→vocoder": "Mel → vocoder (not fine-tuned: a check)",
          "mel→griffin-lim": "Griffin-Lim from the true Mel"}


def track_halves(corpus: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]], dict[str, float]]:
    """``(half A, half B, seconds per track)``: each half maps a track's folder to its segment files. A
    track goes to A when it is in the first half of the tracks ordered by the SHA-1 of their folder name."""
    index = CorpusIndex(corpus)
    segments: dict[str, list[Path]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    for piece in index.pieces:
        folder = piece.get("folder", piece["id"])
        segments[folder].append((index.folder(piece) / piece["mix"]).resolve())
        seconds[folder] += piece["duration_seconds"]
    if len(segments) < 2:
        raise SystemExit(f"{corpus}: {len(segments)} track(s); two halves need two tracks at least")
    order = sorted(segments, key=lambda t: hashlib.sha1(t.encode()).hexdigest())
    cut = (len(order) + 1) // 2
    return ({t: sorted(segments[t]) for t in order[:cut]}, {t: sorted(segments[t]) for t in order[cut:]},
            dict(seconds))


def link_folder(half: dict[str, list[Path]], folder: Path) -> Path:
    """A plain audio folder of ``half``: ``folder/<track>/<segment>`` links to the corpus's files."""
    for track, files in half.items():
        (folder / track).mkdir(parents=True, exist_ok=True)
        for f in files:
            link = folder / track / f.name
            if not link.is_symlink():
                os.symlink(f, link)
    return folder


def score(tok: Tokenizer, clips) -> dict:
    rec = evaluate_reconstruction(tok, clips)["reconstruction"]
    return {p: {"mel_distance": rec[p]["mel_distance"], "level_error_db": rec[p]["level_error_db"]}
            for p in PATHS if p in rec}


def markdown(result: dict) -> str:
    s, b, a = result["setup"], result["before"], result["after"]
    lines = [
        f"# Fine-tuning {s['tokenizer']} on half of the hedgewars tracks ({result['date']})",
        "",
        "A demonstration of `musictok train tokenizer --init` (docs/finetune.md), not a model to bundle: "
        "hedgewars stays the held-out test set of every other result.",
        "",
        f"- Tracks split by the SHA-1 of their folder name: half A {len(s['half_a'])} tracks "
        f"({s['hours_a']:.2f} h) to fine-tune on, half B {len(s['half_b'])} tracks ({s['hours_b']:.2f} h) to score.",
        f"- Fine-tune: `{s['command']}` (default recipe: lr {s['lr']:g}, warmup {s['warmup_steps']}, batch "
        f"{s['batch_size']}, {s['clip_seconds']:g} s clips, no GAN, vocoder not trained); "
        f"{s['end_step']} steps, {s['seconds_per_step']:.2f} s/step"
        + (f" ({s['train_minutes']:.1f} min)." if not s["start_step"] else
           f" (the last sitting, from step {s['start_step']}: {s['train_minutes']:.1f} min)."),
        f"- Before: {s['fingerprint_before']}; after: {s['fingerprint_after']}.",
        f"- Half B: {s['clips']} clips of {s['seconds']:g} s, round-robin over its tracks.",
        "",
        "| path | Mel distance before | after | change | level error before (dB) | after |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in PATHS:
        if p in b and p in a:
            mb, ma = b[p]["mel_distance"], a[p]["mel_distance"]
            lines.append(f"| {LABELS[p]} | {mb:.3f} | {ma:.3f} | {ma - mb:+.3f} ({(ma - mb) / mb:+.1%}) | "
                         f"{b[p]['level_error_db']:.2f} | {a[p]['level_error_db']:.2f} |")
    lines += ["", f"Half A: {', '.join(s['half_a'])}.", "", f"Half B: {', '.join(s['half_b'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="bandtok-small", help="a bundled name or a tokenizer folder")
    ap.add_argument("--corpus", default="data/hedgewars", help="the imported hedgewars corpus")
    ap.add_argument("--steps", type=int, default=1000, help="fine-tuning steps (the default recipe's)")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training early (rerun to resume)")
    ap.add_argument("--clips", type=int, default=48, help="clips of half B to score")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each scored clip")
    ap.add_argument("--work", default="runs/finetune-demo", help="the two halves' folders and the training run")
    ap.add_argument("--out", default="docs/results", help="where finetune-demo.{md,json} go")
    args = ap.parse_args()

    work, out = Path(args.work), Path(args.out)
    half_a, half_b, seconds = track_halves(Path(args.corpus))
    folder_a, folder_b = link_folder(half_a, work / "half-a"), link_folder(half_b, work / "half-b")
    run_dir = work / "run"
    request = RunRequest("tokenizer", init=args.tokenizer, audio=[str(folder_a)],
                         overrides={"train.out_dir": str(run_dir), "train.steps": args.steps}
                         | ({"train.max_minutes": args.max_minutes} if args.max_minutes is not None else {}))
    prepared = prepare_run(request)
    t0 = time.time()
    summary = Trainer(prepared.task, prepared.run.train).run(resume=(run_dir / CHECKPOINT).is_file())
    train_minutes = (time.time() - t0) / 60
    if summary.stopped_early:
        print(f"stopped at step {summary.end_step}/{args.steps}: rerun to resume, then score")
        return

    before = Tokenizer.from_pretrained(args.tokenizer)
    after = Tokenizer.from_pretrained(run_dir / "export")
    clips = load_clips(before.sample_rate, audio_dir=folder_b, seconds=args.seconds, max_clips=args.clips)
    result = {**provenance(),
              "setup": {"tokenizer": args.tokenizer, "command": f"musictok train tokenizer --init {args.tokenizer} "
                        f"--audio {folder_a} --steps {args.steps} --out {run_dir}",
                        "half_a": sorted(half_a), "half_b": sorted(half_b),
                        "hours_a": sum(seconds[t] for t in half_a) / 3600,
                        "hours_b": sum(seconds[t] for t in half_b) / 3600,
                        "start_step": summary.start_step, "end_step": summary.end_step,
                        "train_minutes": train_minutes,
                        "seconds_per_step": summary.seconds_per_step, "last_valid": summary.last_valid,
                        "lr": prepared.run.train.lr, "warmup_steps": prepared.run.train.warmup_steps,
                        "batch_size": prepared.run.train.batch_size, "clip_seconds": prepared.run.data.clip_seconds,
                        "fingerprint_before": before.fingerprint().short(),
                        "fingerprint_after": after.fingerprint().short(),
                        "clips": len(clips.audio), "seconds": args.seconds, "data": clips.source},
              "before": score(before, clips), "after": score(after, clips)}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "finetune-demo.json", result)
    write_text(out / "finetune-demo.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
