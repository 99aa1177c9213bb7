"""Stereo 44.1 kHz files through `musictok encode` / `decode --sample-rate original`, per channel.

    PYTHONPATH=src nice -n 19 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/stereo_roundtrip.py \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music/City.ogg --corpus data/chorales

Two 10 s stereo inputs at 44.1 kHz, written to a temporary folder (never committed):
- ``real``: an excerpt of a real stereo recording (a held-out hedgewars track);
- ``panned``: a test-split chorale with its top voice hard left and the other voices hard right (rendered at
  24 kHz, resampled to 44.1 kHz), so that a swap or a leak between channels cannot hide.

Each goes through the file functions the CLI calls (``encode_files`` with ``--channels stereo``, ``mid-side``
and ``mono``; ``decode_files`` with ``--sample-rate original`` and ``model``). Reported per channel: the Mel
distance of the 44.1 kHz output against the input (and against the *other* input channel: the order
check), the same at the tokenizer's 24 kHz against the input resampled to 24 kHz (the unit of the other
results pages), RMS level in and out; the stereo image as the correlation of left and right, in and out,
and the Mel distance of the output's downmix against the input's (a phase-free decoder gives each channel
its own phases, which a downmix hears as comb filtering); and lengths, rates, encode / decode CPU time. Writes
``docs/results/stereo.md`` and ``stereo.json`` (the page's reading of the figures is written by hand).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from musictok.atomic import write_json
from musictok.audio import load, resample, save
from musictok.convert import decode_files, encode_files
from musictok.data.datasets import CorpusIndex
from musictok.metrics.reconstruction import mel_distance
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer

RATE, SECONDS = 44100, 10.0


def real_input(path: Path, offset: float) -> np.ndarray:
    wav, sr = load(path, RATE, mono=False, offset=offset, duration=SECONDS)
    assert wav.shape[0] == 2, f"{path} is not stereo"
    return wav


def panned_input(corpus: Path) -> tuple[np.ndarray, str]:
    """The first test chorale of at least 10 s: top voice left, the rest right."""
    index = CorpusIndex(corpus, "test")
    piece = next(p for p in index.pieces if p["duration_seconds"] >= SECONDS + 2)
    folder = index.folder(piece)
    lead = set(piece["groups"]["duo"]["lead"])
    parts = {p["index"]: load(folder / p["stem"], duration=SECONDS + 1)[0] for p in piece["parts"]}
    sr = piece["sample_rate"]
    left = sum(w for i, w in parts.items() if i in lead)
    right = sum(w for i, w in parts.items() if i not in lead)
    wav = resample(np.stack([left, right]), sr, RATE)[:, : int(SECONDS * RATE)]
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32), piece["id"]


def rms_db(x: np.ndarray) -> float:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20 * math.log10(r) if r > 0 else float("-inf")


def correlation(x: np.ndarray) -> float:
    """Of the two channels of ``(2, T)``: 1 for a centred mono source, near 0 for unrelated channels."""
    a, b = x.astype(np.float64)
    return round(float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)), 3)


def mel(ref: np.ndarray, est: np.ndarray, rate: int) -> list[float]:
    """Per channel, ``(C, T)`` against ``(C, T)``."""
    return [round(float(d), 4) for d in mel_distance(torch.from_numpy(ref), torch.from_numpy(est), rate)]


def timed(work) -> tuple[object, float, float]:
    """``(result, CPU seconds, wall seconds)``. With one thread the CPU time is what an idle core would take;
    the wall time also counts the waits on a machine shared with a training run."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def run(tokenizer: Tokenizer, name: str, wav: np.ndarray, work: Path, channels: str, repeats: int) -> dict:
    """One input through one channel layout; times are the quickest of ``repeats`` runs."""
    src, mtok = work / f"{name}.wav", work / f"{name}-{channels}.mtok"
    cpu, wall = [], []
    for _ in range(repeats):
        enc, c, w = timed(lambda: encode_files([(src, mtok)], tokenizer, overwrite=True, channels=channels))
        assert not enc.failed, enc.failed
        cpu.append(c)
        wall.append(w)
    load_tok = lambda tokens: tokenizer  # noqa: E731
    out: dict = {"channels": channels, "encode_cpu_seconds": round(min(cpu), 3),
                 "encode_wall_seconds": round(min(wall), 3)}
    for rate_choice in ("original", "model"):
        dst = work / f"{name}-{channels}-{rate_choice}.wav"
        cpu, wall = [], []
        for _ in range(repeats if rate_choice == "original" else 1):
            dec, c, w = timed(lambda: decode_files([(mtok, dst)], load_tok, overwrite=True, sample_rate=rate_choice))
            assert not dec.failed, dec.failed
            cpu.append(c)
            wall.append(w)
        y, sr = load(dst, mono=False)
        y = np.repeat(y, 2, axis=0) if y.shape[0] == 1 else y  # a mono decode, heard on both speakers
        ref = wav if sr == RATE else resample(wav, RATE, sr)
        row = {"rate": sr, "frames": int(y.shape[-1]), "input_frames": int(ref.shape[-1]),
               "decode_cpu_seconds": round(min(cpu), 3), "decode_wall_seconds": round(min(wall), 3),
               "mel_distance": mel(ref, y, sr), "mel_distance_vs_other_channel": mel(ref[::-1].copy(), y, sr),
               "rms_dbfs_in": [round(rms_db(c), 2) for c in ref], "rms_dbfs_out": [round(rms_db(c), 2) for c in y],
               "lr_correlation_in": correlation(ref), "lr_correlation_out": correlation(y),
               "downmix_mel_distance": mel(ref.mean(0, keepdims=True), y.mean(0, keepdims=True), sr)[0]}
        out[rate_choice] = row
    out["realtime_encode_cpu"] = round(SECONDS / out["encode_cpu_seconds"], 2)
    out["realtime_decode_44k_cpu"] = round(SECONDS / out["original"]["decode_cpu_seconds"], 2)
    return out


def markdown(res: dict) -> str:
    lines = ["# Stereo and 44.1 kHz round trips", "",
             f"musictok {res['musictok_version']}, {res['date']}, {res['machine']}. Written by "
             "`benchmarks/stereo_roundtrip.py`; JSON beside this page.", "",
             "Each input is 10 s of stereo at 44.1 kHz; `encode --channels C` then `decode --sample-rate original`"
             " (44.1 kHz) or the default (the tokenizer's 24 kHz). Mel distance: DAC's (lower is better), per channel"
             " **L / R**; *vs other* is the same output channel against the other input channel (it must be "
             "larger: channels in order). At 44.1 kHz the reference keeps its top octave, which a 24 kHz tokenizer "
             "cannot return, so those numbers are higher than the 24 kHz ones. `mono` is a downmix heard on both "
             "speakers (half the tokens). Times: CPU seconds of one thread to encode the 10 s file and to decode "
             f"it at 44.1 kHz (file reading, resampling and writing included), the quickest of {res['repeats']} "
             "runs; the machine was shared with a training run, so wall times (in the JSON) say little.", ""]
    for inp, info in res["inputs"].items():
        lines += [f"## {inp}: {info['what']}", "",
                  "| tokenizer | channels | tokens/s | Mel L / R at 44.1 kHz | vs other | Mel L / R at 24 kHz | "
                  "RMS dBFS in → out (L / R) | L·R correlation in → out | downmix Mel | frames in → out (44.1 kHz) "
                  "| encode / decode CPU s |",
                  "| --- | --- | ---: | --- | --- | --- | --- | --- | ---: | --- | --- |"]
        for tok, rows in info["results"].items():
            for r in rows:
                o, m = r["original"], r["model"]
                lr = lambda xs: " / ".join(f"{x:.3f}" for x in xs)  # noqa: E731
                lines.append(
                    f"| {tok} | {r['channels']} | {r['tokens_per_second']:g} | {lr(o['mel_distance'])} | "
                    f"{lr(o['mel_distance_vs_other_channel'])} | {lr(m['mel_distance'])} | "
                    f"{o['rms_dbfs_in'][0]:.1f} → {o['rms_dbfs_out'][0]:.1f} / "
                    f"{o['rms_dbfs_in'][1]:.1f} → {o['rms_dbfs_out'][1]:.1f} | "
                    f"{o['lr_correlation_in']:.2f} → {o['lr_correlation_out']:.2f} | {o['downmix_mel_distance']:.3f} | "
                    f"{o['input_frames']} → {o['frames']} | {r['encode_cpu_seconds']:.2f} / {o['decode_cpu_seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizers", default="bandtok-small,rvq-small")
    ap.add_argument("--real", type=Path, required=True, help="a stereo recording (44.1 kHz or any rate)")
    ap.add_argument("--real-offset", type=float, default=30.0)
    ap.add_argument("--corpus", type=Path, default=Path("data/chorales"))
    ap.add_argument("--out", type=Path, default=Path("docs/results"))
    ap.add_argument("--repeats", type=int, default=2, help="runs per timing; the quickest is kept")
    args = ap.parse_args()
    torch.set_num_threads(1)
    chorale, piece = panned_input(args.corpus)
    inputs = {"real": (real_input(args.real, args.real_offset),
                       f"{args.real.name} from {args.real_offset:g} s (a real stereo mix)"),
              "panned": (chorale, f"{piece}, top voice left, other voices right")}
    res = {**provenance(), "repeats": args.repeats,
           "inputs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (wav, what) in inputs.items():
            save(work / f"{name}.wav", wav, RATE)
            res["inputs"][name] = {"what": what, "results": {}}
            for tok_name in args.tokenizers.split(","):
                tokenizer = Tokenizer.from_pretrained(tok_name)
                rows = []
                for channels in ("stereo", "mid-side", "mono"):
                    row = run(tokenizer, name, wav, work, channels, args.repeats)
                    row["tokens_per_second"] = tokenizer.layout.tokens_per_second * (1 if channels == "mono" else 2)
                    rows.append(row)
                    print(name, tok_name, channels, row["original"]["mel_distance"], row["model"]["mel_distance"],
                          flush=True)
                res["inputs"][name]["results"][tok_name] = rows
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "stereo.json", res)
    (args.out / "stereo.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
