"""Is the vocoder's phase the problem? Its STFT as the start of Griffin-Lim, against Griffin-Lim alone.

    .venv/bin/python benchmarks/vocoder_phase.py --vocoder pretrained/vocoder-small \
        --real data/debian/hedgewars-data/usr/share/games/hedgewars/Data/Music --clips 6

On real music vocoder-small (pseudo-inverse magnitude prior + learned correction and phase) is behind
training-free Griffin-Lim, mostly in the 1024- and 2048-sample windows (docs/results/vocoder-quality.md).
This asks whether a few Griffin-Lim iterations started from the vocoder's own STFT close that gap, and which
half of the head (magnitude or phase) carries its quality: the vocoder's magnitude and phase as predicted;
the prior magnitude alone with the vocoder's phase; both as the start of 4…64 fast Griffin-Lim iterations
(momentum 0.99, the head's STFT). Scores: Mel distance (DAC definition) with a 95 % bootstrap interval
over clips and its split by window. Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import math

import torch
from vocoder_quality import _score

from musictok.evaluate import load_clips
from musictok.nn.vocoder import load_vocoder
from musictok.spectral import griffin_lim, griffin_lim_from


@torch.no_grad()
def paths(vocoder, wav: torch.Tensor, iterations: tuple[int, ...]) -> dict[str, torch.Tensor]:
    c, head, length = vocoder.config, vocoder.head, wav.shape[-1]
    stft_args = dict(n_fft=head.n_fft, hop_length=head.hop, win_length=head.n_fft, center=True,
                     window=torch.hann_window(head.n_fft, periodic=True, device=wav.device))
    mel = vocoder.wav_to_mel(wav)
    out = head.proj(vocoder.backbone((mel - c.mel_mean) / c.mel_std).transpose(1, 2)).transpose(1, 2).float()
    log_magnitude, angle = out.chunk(2, dim=1)
    prior = vocoder.magnitude_prior(mel)
    magnitude = (log_magnitude + prior).clamp(max=math.log(head.max_magnitude)).exp()
    phase = torch.polar(torch.ones_like(magnitude), angle)
    rows = {"Griffin-Lim, 32 it. from a random phase": griffin_lim(mel, c.mel, length=length),
            "vocoder": vocoder(mel, length=length),
            "prior magnitude + vocoder phase": torch.istft(prior.exp() * phase, length=length, **stft_args)}
    for n in iterations:
        rows[f"vocoder magnitude and phase, then {n} GL it."] = griffin_lim_from(magnitude, phase, n, length,
                                                                                  stft_args)
    rows[f"prior magnitude + vocoder phase, then {max(iterations)} GL it."] = griffin_lim_from(
        prior.exp(), phase, max(iterations), length, stft_args)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocoder", default="pretrained/vocoder-small")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--real", required=True, help="a folder of real recorded music (held out: hedgewars)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--iterations", default="4,16,32,64")
    args = ap.parse_args()
    vocoder = load_vocoder(args.vocoder).float().eval()
    if vocoder.config.magnitude_prior != "pinv":
        raise SystemExit(f"{args.vocoder}: this probe needs a vocoder with the pinv magnitude prior")
    sr = vocoder.config.mel.sample_rate
    iterations = tuple(int(i) for i in args.iterations.split(","))
    sources = {"test split": load_clips(sr, corpus=args.corpus, split="test", seconds=args.seconds,
                                        max_clips=args.clips),
               "real music": load_clips(sr, audio_dir=args.real, seconds=args.seconds, max_clips=args.clips)}
    scores = {name: {k: _score(clips.audio, y, sr) for k, y in paths(vocoder, clips.audio, iterations).items()}
              for name, clips in sources.items()}
    print(f"{args.clips} clips of {args.seconds:g} s per source; Mel distance [95 % bootstrap interval]; "
          "mean |log10 Mel error| in the 1024 / 2048 windows\n")
    print("| path | " + " | ".join(f"{s}: Mel distance | {s}: 1024 / 2048" for s in sources) + " |")
    print("|---" * (1 + 2 * len(sources)) + "|")
    for path in scores["test split"]:
        cells = []
        for s in sources:
            e = scores[s][path]
            cells += [f"{e['mel_distance']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]",
                      f"{e['by_window']['1024']:.3f} / {e['by_window']['2048']:.3f}"]
        print(f"| {path} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
