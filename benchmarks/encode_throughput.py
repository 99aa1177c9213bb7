"""Corpus-scale tokenization: `musictok encode` on a folder against the floor every tokenizer pays.

    .venv/bin/python benchmarks/encode_throughput.py [--folder DIR] [--tokenizer bandtok-small] [--write]

The floor is what any tokenizer must do anyway, one file after the other in this process: decode the
compressed file, downmix, resample to the tokenizer's rate (soxr VHQ, as `encode` does), compute its
log-Mel. Then, in the same run, the same folder through ``encode_files`` — with ``--workers`` decoding
processes (the CLI's default), the same with ``--precision bf16`` (with the share of its codes equal to
fp32's) and, for comparison, ``workers=0`` (one file after the other, as before issue 16). The number that matters is ``floor seconds / encode seconds``: the share of the floor's speed
that encoding keeps (issue 16 aims at >= 60 %).

All files are read once before timing, so every row sees a warm page cache. On a machine shared with
another job the numbers say little (the load average is printed and recorded): run it on a quiet machine.
``--write`` writes docs/results/encode-throughput.{md,json}; without it nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from musictok.atomic import write_json
from musictok.audio import AUDIO_EXTENSIONS, AudioStream
from musictok.convert import MTOK, encode_files, plan
from musictok.corpus_encode import default_workers
from musictok.report import provenance
from musictok.spectral import MelConfig, MelSpectrogram
from musictok.tokenizers.base import Tokenizer
from musictok.tokens import Tokens

HEDGEWARS = "data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music"


def floor_seconds(files: list[Path], tokenizer, mel: MelSpectrogram, mono: bool) -> tuple[float, float]:
    """``(wall seconds, audio seconds)`` of decode + resample + log-Mel of every file (of its mono downmix,
    or of each of its channels), in segments of the tokenizer's chunk (so memory stays flat, as in encoding)."""
    seg = tokenizer.chunk_units * tokenizer.hop_samples
    audio, t0 = 0.0, time.perf_counter()
    with torch.no_grad():
        for f in files:
            held: list[np.ndarray] = []
            n = 0
            for block in AudioStream(f, tokenizer.sample_rate, mono=mono):
                block = np.atleast_2d(block)
                held.append(block)
                n += block.shape[-1]
                if n >= seg:
                    x = np.concatenate(held, axis=-1)
                    mel(torch.from_numpy(x[:, :seg]))
                    held, n = [x[:, seg:]], n - seg
                audio += block.shape[-1] / tokenizer.sample_rate
            if n > mel.config.n_fft // 2:
                mel(torch.from_numpy(np.concatenate(held, axis=-1)))
    return time.perf_counter() - t0, audio


def in_memory(tokenizer, mel: MelSpectrogram, seconds: float = 60.0, repeats: int = 3) -> dict:
    """Real-time factors of the bare log-Mel and of the encoder on ``seconds`` of noise (no files)."""
    x = 0.1 * torch.randn(1, int(seconds * tokenizer.sample_rate), generator=torch.Generator().manual_seed(0))
    out = {}
    with torch.no_grad():
        def encoder(precision: str):
            tokenizer.set_encode_precision(precision)
            with tokenizer.encoding_autocast():
                tokenizer._encode_long(x, 10 ** 9)

        for name, fn in (("log_mel", lambda: mel(x)), ("encoder", lambda: encoder("fp32")),
                         ("encoder_bf16", lambda: encoder("bf16"))):
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[f"{name}_realtime_factor"] = seconds / statistics.median(times)
    tokenizer.set_encode_precision("fp32")
    return out


def code_agreement(a: list[Path], b: list[Path]) -> float:
    """Share of equal codes between two encodings of the same files (``.mtok`` lists in the same order)."""
    equal = total = 0
    for fa, fb in zip(a, b, strict=True):
        for ca, cb in zip(Tokens.load(fa).codes, Tokens.load(fb).codes, strict=True):
            equal += int((ca == cb).sum())
            total += ca.numel()
    return equal / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", default=HEDGEWARS)
    ap.add_argument("--tokenizer", default="bandtok-small")
    ap.add_argument("--workers", type=int, default=None, help="decoding processes (default: the CLI's)")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--channels", default="mono", choices=("mono", "keep"),
                    help="mono (default: the issue's comparison) or keep (stereo files as two channels: the floor "
                         "then computes each channel's log-Mel too)")
    ap.add_argument("--skip-sequential", action="store_true", help="leave out the workers=0 row")
    ap.add_argument("--write", action="store_true", help="write docs/results/encode-throughput.{md,json}")
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()

    load_before = os.getloadavg()
    tokenizer = Tokenizer.from_pretrained(args.tokenizer).eval()
    cfg = tokenizer.config.mel_config() if hasattr(tokenizer.config, "mel_config") else MelConfig(
        sample_rate=tokenizer.sample_rate)
    mel = MelSpectrogram(cfg)

    def pairs(name: str) -> list[tuple[Path, Path]]:  # each row writes to its own folder
        return plan([args.folder], tempfile.mkdtemp(prefix=f"encode-throughput-{name}-"), AUDIO_EXTENSIONS,
                    MTOK)[: args.max_files]

    files = [src for src, _ in pairs("files")]
    for f in files:  # warm the page cache for every row alike
        f.read_bytes()
    workers = default_workers("cpu") if args.workers is None else args.workers
    result: dict = {"tokenizer": args.tokenizer, "folder": args.folder, "files": len(files), "channels": args.channels,
                    "threads": torch.get_num_threads(), "workers": workers}
    print(f"{len(files)} files; torch threads {torch.get_num_threads()}; load average {load_before[0]:.2f}",
          flush=True)

    floor, audio = floor_seconds(files, tokenizer, mel, mono=args.channels == "mono")
    result |= {"audio_seconds": audio, "floor_seconds": floor, "floor_realtime_factor": audio / floor}
    print(f"floor (decode + resample + log-Mel): {floor:.1f} s, {audio / floor:.0f}× real time", flush=True)
    rows = [("parallel", workers, "fp32"), ("parallel_bf16", workers, "bf16")] + (
        [] if args.skip_sequential else [("sequential", 0, "fp32")])
    written: dict[str, list[Path]] = {}
    for name, w, precision in rows:
        row_pairs = pairs(name)
        tokenizer.set_encode_precision(precision)
        t0 = time.perf_counter()
        report = encode_files(row_pairs, tokenizer, overwrite=True, workers=w, channels=args.channels)
        dt = time.perf_counter() - t0
        if report.failed:
            raise SystemExit(f"{len(report.failed)} files failed, e.g. {report.failed[0]}")
        written[name] = sorted(report.written)
        result |= {f"{name}_seconds": dt, f"{name}_realtime_factor": audio / dt, f"{name}_share_of_floor": floor / dt}
        print(f"encode, {name} (workers={w}, {precision}): {dt:.1f} s, {audio / dt:.0f}× real time, "
              f"{100 * floor / dt:.0f} % of the floor's speed", flush=True)
    tokenizer.set_encode_precision("fp32")
    result["bf16_code_agreement"] = code_agreement(written["parallel"], written["parallel_bf16"])
    print(f"bf16 codes equal to fp32's: {100 * result['bf16_code_agreement']:.2f} %", flush=True)
    result |= in_memory(tokenizer, mel)
    print(f"in memory, 60 s: log-Mel {result['log_mel_realtime_factor']:.0f}×, "
          f"encoder {result['encoder_realtime_factor']:.0f}× (bf16 {result['encoder_bf16_realtime_factor']:.0f}×) "
          "real time", flush=True)
    load_after = os.getloadavg()
    result |= {"load_average_before": load_before[0], "load_average_after": load_after[0],
               **provenance()}
    busy = max(load_before[0], load_after[0]) > 0.5
    if busy:
        print(f"warning: load average {max(load_before[0], load_after[0]):.2f}: another job shares the CPU, "
              "so these numbers are distorted", flush=True)
    print(json.dumps(result, indent=1))
    if not args.write:
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "encode-throughput.json", result)
    labels = {"parallel": f"`musictok encode` (workers={workers})",
              "parallel_bf16": f"`musictok encode --precision bf16` (workers={workers})",
              "sequential": "encode, one file after the other (workers=0)"}
    table = "".join(f"| {labels[name]} | {result[f'{name}_seconds']:.1f} | {result[f'{name}_realtime_factor']:.0f}× | "
                    f"{100 * result[f'{name}_share_of_floor']:.0f} % |\n" for name, _, _ in rows)
    (out / "encode-throughput.md").write_text(
        f"# Corpus-scale tokenization: {args.tokenizer} ({result['date']})\n\n"
        f"{len(files)} files, {audio / 3600:.2f} h of audio ({args.folder}, channels: {args.channels}); "
        f"{result['machine']}, "
        f"{result['threads']} torch threads, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
        f"{' — **another job shared the CPU: numbers distorted**' if busy else ''}.\n\n"
        "| | seconds | real-time factor | share of the floor's speed |\n|---|---:|---:|---:|\n"
        f"| floor: decode + resample + log-Mel | {floor:.1f} | {audio / floor:.0f}× | 100 % |\n" + table +
        f"\nbf16 codes equal to fp32's: {100 * result['bf16_code_agreement']:.2f} % of all codes.\n"
        f"\nIn memory, 60 s of noise: log-Mel {result['log_mel_realtime_factor']:.0f}×, encoder "
        f"{result['encoder_realtime_factor']:.0f}× real time (bf16 autocast: "
        f"{result['encoder_bf16_realtime_factor']:.0f}×).\n\n"
        f"Command: `.venv/bin/python benchmarks/encode_throughput.py --tokenizer {args.tokenizer} "
        f"--channels {args.channels} --write`\n")


if __name__ == "__main__":
    main()
