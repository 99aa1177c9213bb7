"""Encode / decode real-time factors of a tokenizer on 60 s of audio, batch 1, on this machine.

    .venv/bin/python benchmarks/tokenizer_speed.py --tokenizer bandtok-small [--seconds 60] [--repeats 5]

Writes docs/results/<tokenizer>-speed.md and .json (median of the repeats, after one warm-up).
Targets from the BandTok issue: encode ≥ 200×, decode with the vocoder ≥ 40× real time on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from musictok.atomic import write_json
from musictok.data.datasets import MixClips
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="bandtok-small")
    ap.add_argument("--corpus", default="data/chorales", help="audio source; random noise if missing")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()

    model = Tokenizer.from_pretrained(args.tokenizer)
    sr = model.sample_rate
    if (Path(args.corpus) / "metadata.jsonl").is_file():
        wav = MixClips(args.corpus, "test", args.seconds, sr, random=False, max_clips=1)[0]["audio"]
        source = f"{args.corpus} (test split, first clip)"
    else:
        wav = 0.1 * torch.randn(int(args.seconds * sr), generator=torch.Generator().manual_seed(0))
        source = "white noise"
    model.encode(wav[:sr])
    enc, dec = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tokens = model.encode(wav)
        t1 = time.perf_counter()
        model.decode(tokens)
        dec.append(time.perf_counter() - t1)
        enc.append(t1 - t0)
    result = {
        "tokenizer": args.tokenizer, "fingerprint": model.fingerprint().short(), "audio": source,
        "seconds": args.seconds, "batch": 1, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "encode_seconds_median": statistics.median(enc), "decode_seconds_median": statistics.median(dec),
        "encode_realtime_factor": args.seconds / statistics.median(enc),
        "decode_realtime_factor": args.seconds / statistics.median(dec),
        "decoder": "vocoder" if getattr(model, "vocoder", None) is not None else "griffin-lim",
        **provenance(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.tokenizer.rstrip('/').split('/')[-1]}-speed"
    write_json(out / f"{stem}.json", result)
    (out / f"{stem}.md").write_text(
        f"# {args.tokenizer}: encode / decode speed\n\n"
        f"{result['date']}, {result['machine']}, {result['threads']} threads, batch 1, {args.seconds:g} s of "
        f"{source}, median of {args.repeats} runs after a warm-up. Decoder: {result['decoder']}.\n\n"
        "| | seconds | real-time factor |\n|---|---:|---:|\n"
        f"| encode | {result['encode_seconds_median']:.3f} | {result['encode_realtime_factor']:.0f}× |\n"
        f"| decode | {result['decode_seconds_median']:.3f} | {result['decode_realtime_factor']:.0f}× |\n\n"
        f"Command: `.venv/bin/python benchmarks/tokenizer_speed.py --tokenizer {args.tokenizer}`\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
