"""Reconstruction, token statistics and speed of the waveform codecs, on the test split and on real music.

    .venv/bin/python benchmarks/codec_quality.py --tokenizers rvq-small,rvq-mmd-small,pyramid-small \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music    # after `make data-hedgewars`

Writes docs/results/codecs.md and codecs.json: per codec and data source, Mel / STFT distance, SI-SDR,
tokens/s, kbps, codebook utilization, inter-codebook mutual information (minus the same estimate on shuffled
pairs, with its 95 % interval; the raw plug-in value is kept in the JSON) and the MMD statistic; for
PyramidCodec also every prefix of levels against its band-limited target, with the tokens/s that prefix
needs. Speed is measured on a quiet machine by `musictok bench` (its speed table), not here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from musictok.atomic import write_json, write_text
from musictok.evaluate import evaluate_reconstruction, evaluate_tokens, load_clips, tokens_summary
from musictok.metrics.version import METRICS_VERSION
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer


def _previous_codecs(path: Path) -> dict:
    """Codecs measured by earlier runs, kept (and replaced when measured again) only if they were scored
    under the same metric definitions: one table never mixes versions."""
    if not path.is_file():
        return {}
    previous = json.loads(path.read_text())
    if previous.get("metrics_version") != METRICS_VERSION:
        print(f"{path}: made under metrics version {previous.get('metrics_version', 'none (before v1)')}, "
              f"this is {METRICS_VERSION}: its codecs are dropped, measure them again", flush=True)
        return {}
    return previous["codecs"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizers", default="rvq-small,rvq-mmd-small,pyramid-small")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--real", default=None, help="a folder of real recorded music")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="docs/results")
    args = ap.parse_args()
    sources = {"test split": {"corpus": args.corpus, "split": "test"}}
    if args.real:
        sources["real music"] = {"audio_dir": args.real}
    out = Path(args.out)
    result: dict = {**provenance(), "codecs": _previous_codecs(out / "codecs.json")}
    for name in args.tokenizers.split(","):
        tok = Tokenizer.from_pretrained(name)
        entry = {"fingerprint": tok.fingerprint().short(), "tokens_per_second": tok.layout.tokens_per_second,
                 "decode_levels": tok.num_decode_levels,
                 "kbps": tok.layout.bitrate / 1000, "streams": {s.name: s.tokens_per_second for s in tok.layout.streams}}
        for label, src in sources.items():
            clips = load_clips(tok.sample_rate, seconds=args.seconds, max_clips=args.clips, **src)
            t0 = time.time()
            rec = evaluate_reconstruction(tok, clips)
            toks = evaluate_tokens(tok, clips, stability=False)
            entry[label] = {"reconstruction": rec["reconstruction"], "speed": rec["speed"],
                            "tokens": tokens_summary(toks), "clips": len(clips.audio)}
            print(f"{name} on {label}: {json.dumps(rec['reconstruction']['tokens'])[:160]} ({time.time() - t0:.0f} s)",
                  flush=True)
        result["codecs"][name] = entry
    write_json(out / "codecs.json", result)
    write_text(out / "codecs.md", _markdown(result, args))
    print((out / "codecs.md").read_text())


def _interval(ci) -> str:
    return "" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _markdown(result: dict, args) -> str:
    lines = [f"# Waveform codecs: quality, tokens and speed ({result['date']})", "",
             f"{args.clips} clips of {args.seconds:g} s per source; Mel distance as DAC / PyramidCodec define it "
             "(log10 magnitudes, seven resolutions, summed). Encode / decode speed: the speed table of "
             f"`musictok bench` (docs/results/bench-*.md). Metric definitions: version {result['metrics_version']} "
             "(`musictok.metrics.version`).", "",
             "Command (one codec at a time, or several; results accumulate in codecs.json): "
             f"`.venv/bin/python benchmarks/codec_quality.py --tokenizers NAME --real {args.real or 'DIR'}`", ""]
    lines += ["| codec | data | tokens/s | kbps | Mel dist ↓ | STFT dist ↓ | SI-SDR dB | utilization | MI between codebooks (bits) − shuffled [95 % interval] | MMD |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, e in result["codecs"].items():
        for label in ("test split", "real music"):
            if label not in e:
                continue
            r, t = e[label]["reconstruction"]["tokens"], e[label]["tokens"]
            f = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
            lines.append(f"| {name} | {label} | {e['tokens_per_second']:.1f} | {e['kbps']:.3f} | {r['mel_distance']:.3f} | "
                         f"{r['stft_distance']:.3f} | {r['si_sdr']:.1f} | {f(t['utilization'])} | "
                         f"{f(t['inter_codebook_mi_bits'])} {_interval(t.get('inter_codebook_mi_ci'))} | "
                         f"{f(t['mmd_joint_vs_product'], 4)} |")
    for name, e in result["codecs"].items():
        paths = [p for p in e.get("test split", {}).get("reconstruction", {}) if p.startswith("levels")]
        if not paths:
            continue
        rates = list(e["streams"].values())
        lines += ["", f"## {name}: decoding with a prefix of levels", "",
                  "Each prefix against the band-limited target it was trained to reconstruct, and against the "
                  "full-band original.", "",
                  "| levels | tokens/s | its target | Mel dist vs its target (test / real) ↓ | Mel dist vs full band (test / real) ↓ |",
                  "|---|---:|---|---:|---:|"]
        n = len(rates)

        def mel(label: str, key: str) -> str:
            v = e.get(label, {}).get("reconstruction", {}).get(key, {}).get("mel_distance")
            return "–" if v is None else f"{v:.3f}"

        for k in range(1, n + 1):
            own = "tokens" if k == n else f"levels 1-{k} vs band-limited"
            full = "tokens" if k == n else f"levels 1-{k} vs full band"
            target = "full band" if k == n else f"1/{2 ** (n - k)} of the band"
            lines.append(f"| 1–{k} | {sum(rates[:k]):.1f} | {target} | {mel('test split', own)} / {mel('real music', own)} | "
                         f"{mel('test split', full)} / {mel('real music', full)} |")
    for name, e in result["codecs"].items():
        rec = e.get("test split", {}).get("reconstruction", {})
        prefixes = [p for p in rec if p.startswith("codebooks ")]
        if not prefixes:
            continue
        n = e["decode_levels"]
        lines += ["", f"## {name}: decoding with the first k codebooks", "",
                  "Does every level earn its bits? Each prefix against the original; the last row decodes the "
                  "encoder's latent without quantising it (the ceiling that more levels approach).", "",
                  "| codebooks | tokens/s | kbps | Mel dist (test / real) ↓ | SI-SDR dB (test / real) |",
                  "|---|---:|---:|---:|---:|"]

        def metric(label: str, path: str, key: str, fmt: str) -> str:
            v = e.get(label, {}).get("reconstruction", {}).get(path, {}).get(key)
            return "–" if v is None else format(v, fmt)

        for path in prefixes + ["tokens", "unquantised latent"]:
            k = n if path == "tokens" else (int(path.rsplit("-", 1)[1]) if path in prefixes else None)
            rate = "–" if k is None else f"{e['tokens_per_second'] * k / n:.1f}"
            kbps = "–" if k is None else f"{e['kbps'] * k / n:.3f}"
            label = {"tokens": f"1–{n} (all)", "unquantised latent": "unquantised latent"}.get(path, f"1–{k}")
            lines.append(f"| {label} | {rate} | {kbps} | {metric('test split', path, 'mel_distance', '.3f')} / "
                         f"{metric('real music', path, 'mel_distance', '.3f')} | "
                         f"{metric('test split', path, 'si_sdr', '.1f')} / {metric('real music', path, 'si_sdr', '.1f')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
