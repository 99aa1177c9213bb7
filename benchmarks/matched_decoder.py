"""The matched-decoder comparison (DuoTok §4.2, Appendix B.3.1): one decoder recipe, one budget, trained on
each frozen tokenizer's codewords, so the reconstructability of the tokens is compared without each
tokenizer's own decoder in the way.

    .venv/bin/python benchmarks/matched_decoder.py \
        --tokenizers bandtok-small,rvq-dac-small,duotok-small \
        [--steps 8000 --batch 8 --clip-seconds 2 --lr 3e-4 --seed 0] [--clips 16] [--out docs/results/matched-decoder]

The default budget, 8,000 steps on every training piece, takes ≈ 14 min per tokenizer on this 2-core CPU
(0.1 s a step, timed on a quiet machine for bandtok-small's codewords), plus encoding the training split once
per new tokenizer fingerprint (shared with `bench --dual`'s cache); the chorales' 365 training pieces hold
≈ 2.8 GB of float32 stems in memory.

Every tokenizer decodes with its own machinery (BandTok: a Mel decoder and a vocoder; the RVQ codec: a
waveform decoder; DuoTok: a Mel decoder per track and a vocoder), so its reconstruction mixes what the tokens
hold with how well its decoder was built and trained. Here each tokenizer's tokens are decoded by the same
recipe instead:

- **Input: codewords.** ``Tokenizer.code_embeddings`` gives per stream ``(B, frames, slots, D)``. A frame of
  several slots (BandTok's 8 band slots, the RVQ codec's 8 levels) becomes the **concatenation of its slots'
  codewords in slot order** (``slots × D`` numbers per frame: the decoder sees every slot apart, and may learn
  the RVQ sum itself); a two-track tokenizer (DuoTok) has one slot per stream, and stream ``k`` is track
  ``k``'s input. A single-stream tokenizer encodes each stem on its own (as ``musictok bench --dual`` does).
- **Decoder: DuoTok's** :class:`~musictok.tokenizers.duotok.TrackDecoder` (``--decoder small``: ConvNeXt of
  dim 192 × 4 blocks at the token rate, ×4 to the Mel rate, ConvNeXt 96 × 2, a 1×1 conv to the Mel bins; the
  size of DuoTok small's own stage-4 decoders). Only its input convolution depends on the tokenizer (its width
  is the codeword dimension); the parameter counts are reported. **One decoder per tokenizer**, trained on
  both tracks (DuoTok's own stage 4 has one per track).
- **Target: the vocoder's Mel.** The natural-log Mel that ``--vocoder`` (default the bundled
  ``vocoder-small``) inverts, 4 frames per token frame, normalised as DuoTok normalises it
  (``(m + 5) / 2.5``); loss Mel L1 + L2 (DuoTok's stage 4 before its GAN; no GAN here). The vocoder never
  trains; it turns every decoded Mel into audio. A tokenizer that normalises the level before encoding
  (BandTok: -20 dBFS) encodes ``stem / g``: its decoder learns the Mel of ``stem / g`` and its audio is
  multiplied back by ``g``, as the tokenizer's own ``decode`` does with ``Tokens.scales``.
- **Data and budget.** The first ``--train-pieces`` pieces (0, the default: all) of the training split of
  ``--corpus`` are encoded whole, once per tokenizer fingerprint (:func:`musictok.bench_dual.duo_tokens`: its cache under
  ``--cache-dir/duo`` is shared with ``musictok bench --dual``). Each step draws ``--batch`` windows of
  ``--clip-seconds`` at token-frame offsets (both stems of each: ``2 × batch`` sequences); window ``i`` is a
  pure function of ``(seed, i)`` and the pieces' lengths, so **every tokenizer sees the same windows in the
  same order**. Steps, batch, LR (warmup + cosine), AdamW settings, gradient clip, seed and autocast are the
  same for every tokenizer; :class:`musictok.train.loop.Trainer` runs them (checkpoints, exact resume, a
  progress bar and log lines, ``--amp bf16`` optional).
- **Evaluation.** ``--clips`` clips of ``--seconds`` (one from the middle of each of the first pieces of
  ``--split``), each stem's Mel distance (:func:`musictok.metrics.reconstruction.mel_distance`) to the audio
  of three kinds of row: the vocoder on the true Mel (the floor every row shares), each tokenizer's tokens
  through the matched decoder and the vocoder, and the same tokens through the tokenizer's own decoder
  (``decode(encode(...))``). Per track the mean over clips with a 95 % cluster-bootstrap interval (one clip per
  piece), and the paired difference between tokenizers' matched rows with its interval.

Resume: each tokenizer trains in ``--work/<name>-<fingerprint>/`` (``recipe.json``, ``checkpoint.pt``,
``log.jsonl``, ``export/``, ``sittings.json``, ``scores.json``). A rerun skips a finished training and reuses
scores made with the same settings; an unfinished one (killed, or stopped by ``--max-minutes``) resumes
exactly where its checkpoint left off; a folder trained under another recipe is refused.

Writes ``--out``.md, .json and .png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from functools import cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from musictok import pretrained
from musictok.atomic import write_json, write_text
from musictok.audio import SILENCE_RMS
from musictok.bench import _short
from musictok.bench_dual import (duo_stems, duo_tokens, is_two_track, mean_with_interval, middle_clips,
                                 two_track_layout)
from musictok.data.datasets import CorpusIndex
from musictok.data.score import DUO_TRACKS
from musictok.errors import MusictokError
from musictok.metrics.reconstruction import mel_distance
from musictok.nn.vocoder import Vocoder, load_vocoder, vocoder_fingerprint
from musictok.plots import _figure_backend, save_figure
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer, level_scale
from musictok.tokenizers.duotok import DuoTokConfig, TrackDecoder
from musictok.tokens import Tokens
from musictok.train.loop import CHECKPOINT, DistInfo, TrainConfig, Trainer, TrainTask

MEL_PER_FRAME = 4  # Mel frames (of the vocoder's hop) per token frame: TrackDecoder's upsampling
MEL_MEAN, MEL_STD = DuoTokConfig.mel_mean, DuoTokConfig.mel_std  # the decoder's fixed Mel normalisation
DECODERS = {"small": DuoTokConfig.small, "tiny": DuoTokConfig.tiny}
FLOOR = "vocoder on the true Mel"
LEVEL = 0.95


class MatchedDecoderError(MusictokError):
    """A tokenizer, vocoder, corpus or work folder the comparison cannot use; the message says which and why."""


@dataclass
class Recipe:
    """What is held constant across tokenizers: the decoder and its whole training budget."""

    steps: int = 8000
    batch_size: int = 8  # clips per step; both stems of each are decoded (2 × batch sequences)
    clip_seconds: float = 2.0
    lr: float = 3e-4  # DuoTok small's stage 4
    warmup_steps: int = 50
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.8, 0.99)
    grad_clip: float = 1.0
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    seed: int = 0
    amp: str = "none"
    train_pieces: int = 0  # the first N training pieces; 0 = all of them
    decoder: str = "small"

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise MatchedDecoderError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if self.train_pieces < 0:
            raise MatchedDecoderError(f"--train-pieces must be >= 0 (0 = all), got {self.train_pieces}")
        if not (math.isfinite(self.clip_seconds) and self.clip_seconds > 0):
            raise MatchedDecoderError(f"--clip-seconds must be > 0, got {self.clip_seconds}")
        if self.decoder not in DECODERS:
            raise MatchedDecoderError(f"--decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"betas": list(self.betas)}

    def train_config(self, out_dir: Path, max_minutes: float | None) -> TrainConfig:
        try:
            return TrainConfig(out_dir=str(out_dir), steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                               betas=self.betas, weight_decay=self.weight_decay, warmup_steps=self.warmup_steps,
                               grad_clip=self.grad_clip, log_every=max(self.steps // 12, 1),
                               ckpt_every=max(self.steps // 6, 1), valid_every=self.steps, seed=self.seed,
                               amp=self.amp, max_minutes=max_minutes)
        except ValueError as e:
            raise MatchedDecoderError(str(e)) from None


def decoder_config(recipe: Recipe, vocoder: Vocoder) -> DuoTokConfig:
    """The TrackDecoder's sizes (``recipe.decoder``) on the vocoder's Mel, 4 Mel frames per token frame."""
    mel = vocoder.config.mel
    return DECODERS[recipe.decoder](sample_rate=mel.sample_rate, n_fft=mel.n_fft, hop_length=mel.hop_length,
                                    n_mels=mel.n_mels, time_downsample=MEL_PER_FRAME, seed=recipe.seed)


# ------------------------------------------------------------------------------------------------ tokens
def codewords(tokenizer: Tokenizer, codes: Tensor) -> Tensor:
    """Track codes ``(N, 2, frames, slots)`` -> decoder input ``(2N, frames, slots × D)``, row ``2n + k``
    track ``k`` of item ``n``: the slots' codewords concatenated per frame."""
    N, K, W, S = codes.shape
    streams = [codes[:, k] for k in range(K)] if is_two_track(tokenizer) else [codes.reshape(N * K, W, S)]
    n = streams[0].shape[0]
    tokens = Tokens(streams, tokenizer.layout, tokenizer.fingerprint(), tokenizer.sample_rate,
                    [W * tokenizer.hop_samples] * n)
    e = tokenizer.code_embeddings(tokens)  # per stream (n, W, slots, D)
    e = torch.stack(e, dim=1) if is_two_track(tokenizer) else e[0]  # (N, 2, W, 1, D) or (2N, W, S, D)
    return e.reshape(N * K, W, -1).float()


def codeword_dim(tokenizer: Tokenizer) -> int:
    slots = tokenizer.layout.streams[0].num_slots
    return codewords(tokenizer, torch.zeros(1, len(DUO_TRACKS), 1, slots, dtype=torch.long)).shape[-1]


def track_scales(tokenizer: Tokenizer, stems: np.ndarray) -> list[float]:
    """The gain each track's tokens were made without (``Tokens.scales``; 1 without ``level_dbfs``): a
    single-stream tokenizer measures each stem, a two-track one the stems' mix."""
    level = tokenizer.level_dbfs
    if level is None:
        return [1.0] * len(stems)
    if is_two_track(tokenizer):
        return [level_scale(torch.from_numpy(stems.sum(0)), level)] * len(stems)
    return [level_scale(torch.from_numpy(s), level) for s in stems]


def normalised_mel(vocoder: Vocoder, wav: Tensor, skip: int, frames: int) -> Tensor:
    """``(N, T)`` -> the vocoder's natural-log Mel frames ``skip … skip + frames``, normalised as the decoder
    predicts it ``(N, n_mels, frames)``."""
    with torch.autocast(wav.device.type, enabled=False):
        m = vocoder.wav_to_mel(wav.float())[..., skip: skip + frames]
    return (m - MEL_MEAN) / MEL_STD


def mel_to_audio(vocoder: Vocoder, mel: Tensor, length: int) -> Tensor:
    """Normalised Mel ``(N, n_mels, F)`` -> ``(N, length)`` through the vocoder (as ``DuoTok.mel_to_wav``)."""
    wav = vocoder(mel.float() * MEL_STD + MEL_MEAN)
    return F.pad(wav, (0, max(length - wav.shape[-1], 0)))[..., :length]


# ------------------------------------------------------------------------------------------------ training
@dataclass
class TrainPieces:
    """The training pieces' stems, zero-padded by one token frame before and to whole frames plus one after
    (the margin gives every window's Mel its real context)."""

    ids: list[str]
    stems: list[np.ndarray]  # (2, (frames + 2) × hop) float32
    lengths: list[int]  # samples of each piece
    hop: int  # samples per token frame

    @property
    def frames(self) -> list[int]:
        return [-(-n // self.hop) for n in self.lengths]


def load_train_pieces(corpus: str, pieces: int, sample_rate: int, hop: int) -> TrainPieces:
    index = CorpusIndex(corpus, "train")
    ids, stems, lengths = [], [], []
    for piece in index.pieces[:pieces or None]:
        s = duo_stems(corpus, piece, sample_rate)
        frames = -(-s.shape[1] // hop)
        ids.append(piece["id"])
        lengths.append(s.shape[1])
        stems.append(np.pad(s, ((0, 0), (hop, (frames + 1) * hop - s.shape[1]))))
    return TrainPieces(ids, stems, lengths, hop)


class Windows(Dataset):
    """Training item ``i``: ``frames`` token frames of one training piece — its track codes
    ``(2, frames, slots)``, its stems with one token frame of margin either side ``(2, (frames + 2) × hop)``
    and the tracks' scales ``(2,)``. The piece (chosen in proportion to its number of windows) and the offset
    come from ``(seed, i)`` and the pieces' lengths alone: the same windows for every tokenizer."""

    def __init__(self, pieces: TrainPieces, codes: list[Tensor], scales: list[list[float]], frames: int,
                 seed: int, length: int):
        self.pieces, self.codes, self.frames, self.seed, self.length = pieces, codes, frames, seed, length
        self.scales = [torch.tensor(s, dtype=torch.float32) for s in scales]
        self.starts = np.array([max(f - frames + 1, 0) for f in pieces.frames], dtype=np.float64)
        if not self.starts.sum():
            raise MatchedDecoderError(f"no training piece holds {frames} token frames: shorten --clip-seconds")
        self.weights = self.starts / self.starts.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, i])
        p = int(rng.choice(len(self.weights), p=self.weights))
        f = int(rng.integers(0, int(self.starts[p])))
        hop = self.pieces.hop
        stems = self.pieces.stems[p][:, f * hop: (f + self.frames + 2) * hop]
        return {"codes": self.codes[p][:, f: f + self.frames], "stems": torch.from_numpy(stems.copy()),
                "scales": self.scales[p]}


class MatchedDecoderTask(TrainTask):
    """One tokenizer's decoder: Mel L1 + L2 from its frozen codewords to each track's Mel."""

    def __init__(self, tokenizer: Tokenizer, vocoder: Vocoder, windows: Windows, config: DuoTokConfig, in_dim: int,
                 recipe: Recipe, meta: dict):
        self.tokenizer, self.vocoder, self.windows = tokenizer.eval(), vocoder.eval(), windows
        self.config, self.in_dim, self.recipe, self.meta = config, in_dim, recipe, meta

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        self.device = device
        self.decoder = TrackDecoder(self.in_dim, self.config).to(device)  # the Trainer has seeded torch
        self.opt = torch.optim.AdamW(self.decoder.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)

    def modules(self) -> dict[str, nn.Module]:
        return {"decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"decoder": self.opt}

    def train_dataset(self, length: int) -> Dataset:
        self.windows.length = length
        return self.windows

    def train_step(self, batch: dict, step: int, autocast: Any) -> dict[str, float]:
        codes, stems, scales = batch["codes"], batch["stems"].to(self.device), batch["scales"].to(self.device)
        frames = codes.shape[2]
        with torch.no_grad():
            e = codewords(self.tokenizer, codes).to(self.device)  # (2B, frames, in_dim)
            wav = (stems / scales[..., None]).reshape(-1, stems.shape[-1])  # row 2n + k, as e
            target = normalised_mel(self.vocoder, wav, MEL_PER_FRAME, MEL_PER_FRAME * frames)
        self.decoder.train()
        with autocast():
            mel_hat = self.decoder(e)
        mel_hat = mel_hat.float()
        l1, l2 = F.l1_loss(mel_hat, target), F.mse_loss(mel_hat, target)  # as DuoTok.stage4_losses
        loss = self.recipe.l1_weight * l1 + self.recipe.l2_weight * l2
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad = float(nn.utils.clip_grad_norm_(self.decoder.parameters(), self.recipe.grad_clip))
        self.opt.step()
        return {"loss": float(loss.detach()), "mel_l1": float(l1.detach()), "mel_l2": float(l2.detach()),
                "grad_norm": grad}

    def validate(self, autocast: Any) -> dict[str, float]:
        return {}  # the test clips are scored after training

    def export(self, out_dir: Path, step: int) -> None:
        pretrained.write(out_dir, self.decoder.state_dict(), self.meta | {"train_step": step})


def load_decoder(folder: Path) -> tuple[TrackDecoder, dict]:
    _, meta, state = pretrained.read(folder)
    decoder = TrackDecoder(meta["in_dim"], DuoTokConfig.from_dict(meta["decoder_config"]))
    decoder.load_state_dict(state)
    return decoder.eval(), meta


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise MatchedDecoderError(path, "not valid JSON (delete it to start this tokenizer over)") from None


# ------------------------------------------------------------------------------------------------ evaluation
def eval_clips(corpus: str, split: str, clips: int, seconds: float, sample_rate: int) -> tuple[list[str], list[Tensor]]:
    """``bench --dual``'s clips: one ``seconds`` clip ``(2, n)`` from the middle of each of the first pieces."""
    try:
        return middle_clips(corpus, split, clips, seconds, sample_rate)
    except ValueError as e:
        raise MatchedDecoderError(str(e)) from None


def encode_tracks(tokenizer: Tokenizer, x: Tensor) -> tuple[Tokens, Tensor, list[float]]:
    """A clip's stems ``(2, n)`` -> its tokens, the track codes ``(1, 2, frames, slots)`` and track scales."""
    if is_two_track(tokenizer):
        tokens = tokenizer.encode(x[None])
        codes = torch.stack([c[0] for c in tokens.codes])[None]
        scales = [tokens.scales[0]] * len(x) if tokens.scales else [1.0] * len(x)
    else:
        tokens = tokenizer.encode(x)  # the two stems as a batch of two clips
        codes = tokens.codes[0][None]
        scales = list(tokens.scales) if tokens.scales else [1.0] * len(x)
    return tokens, codes, scales


@torch.no_grad()
def score_tokenizer(tokenizer: Tokenizer, decoder: TrackDecoder, vocoder: Vocoder, clips: list[Tensor]
                    ) -> dict[str, dict[str, list[float]]]:
    """Per clip and track the Mel distance of the matched decoder's audio and of the tokenizer's own."""
    sr = tokenizer.sample_rate
    out = {row: {t: [] for t in DUO_TRACKS} for row in ("matched", "own")}
    for x in clips:
        tokens, codes, scales = encode_tracks(tokenizer, x)
        own = tokenizer.decode(tokens).cpu()
        own = own[0] if is_two_track(tokenizer) else own
        mel = decoder(codewords(tokenizer, codes))  # (2, n_mels, 4 × frames)
        matched = mel_to_audio(vocoder, mel, x.shape[-1]) * torch.tensor(scales)[:, None]
        for row, y in (("matched", matched), ("own", own)):
            d = mel_distance(x, y, sr, align=True)
            for k, t in enumerate(DUO_TRACKS):
                out[row][t].append(float(d[k]))
    return out


@torch.no_grad()
def score_floor(vocoder: Vocoder, clips: list[Tensor], sample_rate: int) -> dict[str, list[float]]:
    """Per clip and track the Mel distance of the vocoder on the stem's own Mel (copy synthesis)."""
    out = {t: [] for t in DUO_TRACKS}
    for x in clips:
        d = mel_distance(x, vocoder.resynthesize(x), sample_rate, align=True)
        for k, t in enumerate(DUO_TRACKS):
            out[t].append(float(d[k]))
    return out


def summarise(per_clip: list[float], resamples: int, seed: int) -> dict:
    """Mean over clips and its bootstrap interval (each clip is its own piece), as ``bench --dual``'s."""
    return mean_with_interval(per_clip, resamples, seed, LEVEL)


def paired(rows: dict[str, dict], resamples: int, seed: int) -> dict[str, dict]:
    """Per pair of tokenizers and track, the mean difference (first − second) of the matched rows over the
    same clips and its interval: negative = the first tokenizer's tokens decode closer to the stems."""
    out = {}
    for a, b in combinations(rows, 2):
        out[f"{a} − {b}"] = {t: summarise(np.subtract(rows[a]["matched"][t]["per_clip"],
                                                     rows[b]["matched"][t]["per_clip"]), resamples, seed)
                            for t in DUO_TRACKS}
    return out


# ------------------------------------------------------------------------------------------------ one tokenizer
def check_tokenizer(name: str, tokenizer: Tokenizer, vocoder: Vocoder) -> None:
    """A tokenizer the recipe can decode: at the vocoder's rate, ``MEL_PER_FRAME`` Mel frames per token frame."""
    mel = vocoder.config.mel
    want = mel.sample_rate / mel.hop_length / MEL_PER_FRAME
    if tokenizer.sample_rate != mel.sample_rate:
        raise MatchedDecoderError(name, f"runs at {tokenizer.sample_rate} Hz, the vocoder at {mel.sample_rate} Hz")
    if not is_two_track(tokenizer):
        try:
            two_track_layout(tokenizer.layout)
        except ValueError as e:
            raise MatchedDecoderError(name, str(e)) from None
    rates = sorted({s.frame_rate for s in tokenizer.layout.streams})
    if any(abs(r - want) > 1e-6 for r in rates) or tokenizer.hop_samples != mel.hop_length * MEL_PER_FRAME:
        raise MatchedDecoderError(name, f"{', '.join(f'{r:g}' for r in rates)} token frames/s, the decoder needs "
                                        f"the vocoder's Mel rate / {MEL_PER_FRAME} = {want:g} "
                                        f"({mel.sample_rate} Hz, hop {mel.hop_length})")


def run_dir_of(work: Path, name: str, tokenizer: Tokenizer) -> Path:
    fp = tokenizer.fingerprint()
    return work / f"{_short(name)}-{fp.config_hash[:8]}-{fp.weights_hash[:8]}"


def train_decoder(name: str, tokenizer: Tokenizer, vocoder: Vocoder, recipe: Recipe, args: argparse.Namespace,
                  train_pieces, console) -> tuple[Path, dict] | None:
    """Train (or resume, or skip when finished) the tokenizer's decoder; its run folder and budget, or
    ``None`` when the sitting stopped before the last step (``--max-minutes``, a signal)."""
    run_dir = run_dir_of(Path(args.work), name, tokenizer)
    # what the decoder learns from and towards: the recipe, the corpus and the vocoder whose Mel is the target
    made = recipe.to_dict() | {"corpus": str(Path(args.corpus).resolve()),
                               "vocoder": vocoder_fingerprint(vocoder).short()}
    recorded = _read_json(run_dir / "recipe.json")
    if recorded is not None and recorded != made:
        changed = ", ".join(f"{k} {recorded.get(k)} -> {v}" for k, v in made.items() if recorded.get(k) != v)
        raise MatchedDecoderError(run_dir, f"was trained with another recipe ({changed}); delete it or pick "
                                           "another --work")
    write_json(run_dir / "recipe.json", made)
    export = _read_json(run_dir / "export" / "config.json") or {}
    sittings = _read_json(run_dir / "sittings.json") or []
    if export.get("train_step") != recipe.steps:
        pieces = train_pieces()
        tokens = duo_tokens(tokenizer, args.corpus, "train", args.cache_dir, recipe.train_pieces or None)
        codes = [torch.stack([c[0] for c in t.codes]) for t in tokens]  # (2, frames, slots) per piece
        for pid, c, f in zip(pieces.ids, codes, pieces.frames):
            if c.shape[1] != f:
                raise MatchedDecoderError(args.cache_dir, f"cached tokens of {pid} hold {c.shape[1]} frames, the "
                                                          f"piece {f}: a stale cache? delete its duo/ folder")
        frames = max(round(recipe.clip_seconds * tokenizer.sample_rate / tokenizer.hop_samples), 1)
        windows = Windows(pieces, codes, [track_scales(tokenizer, s[:, pieces.hop: pieces.hop + n])
                                          for s, n in zip(pieces.stems, pieces.lengths)],
                          frames, recipe.seed, recipe.steps * recipe.batch_size)
        config = decoder_config(recipe, vocoder)
        fp = tokenizer.fingerprint()
        meta = {"model": "matched-decoder", "in_dim": codeword_dim(tokenizer), "decoder_config": config.to_dict(),
                "tokenizer": {"source": name, **dataclasses.asdict(fp)}, "recipe": recipe.to_dict(),
                "window_frames": frames}
        task = MatchedDecoderTask(tokenizer, vocoder, windows, config, meta["in_dim"], recipe, meta)
        resume = (run_dir / CHECKPOINT).is_file()
        print(f"[{_short(name)}] {'resuming' if resume else 'training'} the matched decoder in {run_dir}", flush=True)
        summary = Trainer(task, recipe.train_config(run_dir, args.max_minutes), console=console).run(resume=resume)
        sittings.append({"start_step": summary.start_step, "end_step": summary.end_step,
                         "wall_seconds": summary.wall_seconds})
        write_json(run_dir / "sittings.json", sittings)
        if summary.end_step < recipe.steps:
            return None
    else:
        print(f"[{_short(name)}] decoder trained ({recipe.steps} steps): {run_dir}", flush=True)
    steps = sum(s["end_step"] - s["start_step"] for s in sittings)
    wall = sum(s["wall_seconds"] for s in sittings)
    return run_dir, {"steps": recipe.steps, "batch_size": recipe.batch_size, "clip_seconds": recipe.clip_seconds,
                     "lr": recipe.lr, "seed": recipe.seed, "amp": recipe.amp,
                     "seconds_per_step": wall / steps if steps else None, "wall_minutes": wall / 60,
                     "sittings": len(sittings)}


def evaluate(name: str, tokenizer: Tokenizer, vocoder: Vocoder, run_dir: Path, clip_ids: list[str],
             clips: list[Tensor], args: argparse.Namespace) -> dict:
    """The matched and own rows of one tokenizer (reused from ``scores.json`` when made the same way)."""
    decoder, meta = load_decoder(run_dir / "export")
    settings = {"split": args.split, "clips": clip_ids, "seconds": args.seconds,
                "vocoder": dataclasses.asdict(vocoder_fingerprint(vocoder)), "decoder_step": meta["train_step"]}
    cached = _read_json(run_dir / "scores.json")
    if cached is not None and cached.get("settings") == settings:
        print(f"[{_short(name)}] scores reused from {run_dir / 'scores.json'}", flush=True)
        per_clip = cached["per_clip"]
    else:
        t0 = time.time()
        per_clip = score_tokenizer(tokenizer, decoder, vocoder, clips)
        write_json(run_dir / "scores.json", {"settings": settings, "per_clip": per_clip})
        print(f"[{_short(name)}] scored {len(clips)} clips in {time.time() - t0:.0f} s", flush=True)
    layout = tokenizer.layout.streams[0]
    fp = tokenizer.fingerprint()
    return {"source": name, "fingerprint": fp.short(), "run_dir": str(run_dir),
            "codewords": {"streams": len(tokenizer.layout.streams), "slots": layout.num_slots,
                          "slot_axis": layout.slot_axis, "in_dim": meta["in_dim"],
                          "kbps_per_track": layout.bitrate / 1000},
            "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
            **{row: {t: summarise(per_clip[row][t], args.resamples, args.bootstrap_seed) for t in DUO_TRACKS}
               for row in ("matched", "own")}}


# ------------------------------------------------------------------------------------------------ report
def _cell(s: dict) -> str:
    lo, hi = s["interval"]
    ci = "" if math.isnan(lo) else f" [{lo:.3f} {hi:.3f}]"
    return f"{s['mel_distance']:.3f}{ci}"


def _signed(s: dict) -> str:
    lo, hi = s["interval"]
    ci = "" if math.isnan(lo) else f" [{lo:+.3f} {hi:+.3f}]"
    return f"{s['mel_distance']:+.3f}{ci}"


def reading(result: dict) -> str:
    rows, floor, b = result["tokenizers"], result["floor"], result["recipe"]
    parts = []
    for t in DUO_TRACKS:
        ranked = sorted(rows, key=lambda n: rows[n]["matched"][t]["mel_distance"])
        order = ", then ".join(f"{n} ({rows[n]['matched'][t]['mel_distance']:.3f})" for n in ranked)
        parts.append(f"{t.capitalize()}: through the same decoder, {order}; the vocoder alone on the true Mel "
                     f"gives {floor[t]['mel_distance']:.3f}.")
    for pair, d in result["paired"].items():
        said = []
        for t in DUO_TRACKS:
            lo, hi = d[t]["interval"]
            if math.isnan(lo):
                said.append(f"{t}: one clip, no interval")
            elif hi < 0 or lo > 0:
                said.append(f"{t}: {d[t]['mel_distance']:+.3f}, the interval excludes 0")
            else:
                said.append(f"{t}: {d[t]['mel_distance']:+.3f}, the interval contains 0 (not separated on these clips)")
        parts.append(f"{pair}: " + "; ".join(said) + ".")
    silent, clips = result["settings"]["silent_stems"], result["settings"]["clips"]
    for t in DUO_TRACKS:
        if silent[t]:
            parts.append(f"In {silent[t]} of the {clips} clips the {t} stem is silent: the floor there is 0 and a "
                         "row's distance measures only how quiet its decode stays, which weighs heavily in that mean.")
    for better, worse, said in (("own", "matched", "the budget of this comparison is small next to the trainings "
                                  "of the own decoders, which were also built for those codes"),
                                 ("matched", "own", "its own decoder is the weaker part of its pipeline")):
        names = [n for n in rows if all(rows[n][better][t]["mel_distance"] < rows[n][worse][t]["mel_distance"]
                                        for t in DUO_TRACKS)]
        if names:
            parts.append(f"The {better} decoder beats the {worse} one on both tracks for {', '.join(names)}: {said}.")
    parts.append(f"Budget: {b['steps']} steps of {b['batch_size']} clips × {b['clip_seconds']:g} s (both stems) per "
                 "tokenizer. A decoder trained this briefly ranks how readily each tokenizer's codewords turn into "
                 "a Mel at this budget, not how well they would at convergence (the paper: 276k steps), and one "
                 "training seed says nothing of seed-to-seed spread. The intervals are over the "
                 f"{clips} clips (one per piece of the {result['settings']['split']} split): how precisely these "
                 "clips pin the means, not what another training would give.")
    return "\n\n".join(parts)


def markdown(result: dict, plot: str) -> str:
    rows, floor, b, s = result["tokenizers"], result["floor"], result["recipe"], result["settings"]
    lines = [f"# Matched-decoder comparison ({result['date']})", "",
             f"Command: `{result['command']}`. musictok {result['musictok_version']}, metrics "
             f"v{result['metrics_version']}, {result['machine']}.", "",
             f"The same decoder (DuoTok's TrackDecoder, `{b['decoder']}`) trained with the same budget on each "
             "frozen tokenizer's codewords (a frame's slots concatenated) to the Mel of vocoder "
             f"`{result['vocoder']['source']}`, which turns it into audio. Mel distance of each track to its stem "
             f"on {s['clips']} clips of {s['seconds']:g} s (the {s['split']} split of `{s['corpus']}`), mean and "
             f"{LEVEL:.0%} bootstrap interval over clips; lower is better.", "",
             "| row | lead | accompaniment |", "|---|---|---|",
             f"| {FLOOR} (floor) | {_cell(floor['lead'])} | {_cell(floor['accompaniment'])} |"]
    for kind in ("matched", "own"):
        for n, r in rows.items():
            lines.append(f"| {n}: {kind} decoder | {_cell(r[kind]['lead'])} | {_cell(r[kind]['accompaniment'])} |")
    if result["paired"]:
        lines += ["", "Paired differences of the matched rows (same clips; negative = the first decodes closer):", "",
                  "| pair | lead | accompaniment |", "|---|---|---|"]
        for pair, d in result["paired"].items():
            lines.append(f"| {pair} | {_signed(d['lead'])} | {_signed(d['accompaniment'])} |")
    lines += ["", f"Budget, the same for every tokenizer: {b['steps']} steps × batch {b['batch_size']} "
              f"({b['clip_seconds']:g} s windows, both stems), AdamW lr {b['lr']:g} (warmup {b['warmup_steps']}, "
              f"cosine), betas {tuple(b['betas'])}, weight decay {b['weight_decay']:g}, Mel L1 × {b['l1_weight']:g} + "
              f"L2 × {b['l2_weight']:g}, seed {b['seed']}, autocast {b['amp']}, windows from "
              + (f"the first {b['train_pieces']} training pieces." if b['train_pieces'] else "every training piece."), "",
              "| tokenizer | codewords per frame | decoder parameters | steps | batch | s / step | wall min |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for n, r in rows.items():
        c, g = r["codewords"], r["budget"]
        what = (f"{c['streams']} streams × {c['in_dim']}" if c["streams"] > 1 else
                f"{c['slots']} {c['slot_axis']} slots → {c['in_dim']}")
        sps = "–" if g["seconds_per_step"] is None else f"{g['seconds_per_step']:.2f}"
        lines.append(f"| {n} | {what} | {r['decoder_parameters']:,} | {g['steps']} | {g['batch_size']} | {sps} | "
                     f"{g['wall_minutes']:.1f} |")
    lines += ["", f"![Mel distance per row]({plot})", "", "## Reading", "", result["reading"], ""]
    return "\n".join(lines)


def plot_rows(result: dict, path: Path) -> Path:
    plt = _figure_backend()
    rows = result["tokenizers"]
    labels = [FLOOR] + [f"{n} {kind}" for kind in ("matched", "own") for n in rows]
    stats = [result["floor"]] + [rows[n][kind] for kind in ("matched", "own") for n in rows]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(labels) + 1.5))
    y = np.arange(len(labels))
    for k, t in enumerate(DUO_TRACKS):
        m = np.array([s[t]["mel_distance"] for s in stats])
        ci = np.array([s[t]["interval"] for s in stats])
        err = np.abs(np.nan_to_num(np.stack([m - ci[:, 0], ci[:, 1] - m])))
        ax.barh(y + (k - 0.5) * 0.38, m, height=0.36, xerr=err, label=t, capsize=2)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("Mel distance to the stem (lower is better)")
    ax.legend()
    ax.set_title("Matched decoder: same recipe and budget on every tokenizer's codewords")
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace, command: str) -> dict | None:
    recipe = Recipe(steps=args.steps, batch_size=args.batch, clip_seconds=args.clip_seconds, lr=args.lr,
                    warmup_steps=min(args.warmup, args.steps), weight_decay=args.weight_decay, seed=args.seed,
                    amp=args.amp, train_pieces=args.train_pieces, decoder=args.decoder)
    recipe.train_config(Path(args.work), args.max_minutes)  # its checks, before anything loads
    if args.clips < 1 or not (math.isfinite(args.seconds) and args.seconds > 0):
        raise MatchedDecoderError(f"--clips must be >= 1 and --seconds > 0 (got {args.clips} and {args.seconds})")
    if not (Path(args.corpus) / "metadata.jsonl").is_file():
        raise MatchedDecoderError(args.corpus, "no corpus here (no metadata.jsonl; build one with "
                                               "`musictok data build`)")
    for split in ("train", args.split):
        if not CorpusIndex(args.corpus, split).pieces:
            raise MatchedDecoderError(args.corpus, f"the {split} split has no pieces")
    try:
        vocoder = load_vocoder(args.vocoder)
    except pretrained.PretrainedError as e:
        raise MatchedDecoderError(f"--vocoder {e}") from None
    names = [n for n in args.tokenizers.split(",") if n]
    if not names:
        raise MatchedDecoderError("--tokenizers: name at least one tokenizer (bundled name or folder)")
    tokenizers: dict[str, tuple[str, Tokenizer]] = {}
    for name in names:
        tok = Tokenizer.from_pretrained(name).eval()  # a TokenizerError names the folder and the problem
        check_tokenizer(name, tok, vocoder)
        if _short(name) in tokenizers:
            raise MatchedDecoderError(name, f"two tokenizers would share the row name {_short(name)!r}")
        tokenizers[_short(name)] = (name, tok)
    if args.threads:
        torch.set_num_threads(args.threads)
    sr = vocoder.config.mel.sample_rate
    clip_ids, clips = eval_clips(args.corpus, args.split, args.clips, args.seconds, sr)

    @cache
    def train_pieces() -> TrainPieces:  # loaded once, and only when a decoder still has to train
        t0 = time.time()
        pieces = load_train_pieces(args.corpus, recipe.train_pieces, sr, vocoder.config.mel.hop_length * MEL_PER_FRAME)
        print(f"loaded {len(pieces.ids)} training pieces in {time.time() - t0:.0f} s", flush=True)
        return pieces

    from rich.console import Console

    console = Console(stderr=True)
    t0 = time.time()
    rows, stopped = {}, []
    for short, (name, tok) in tokenizers.items():
        trained = train_decoder(name, tok, vocoder, recipe, args, train_pieces, console)
        if trained is None:
            stopped.append(short)
            continue
        run_dir, budget = trained
        rows[short] = evaluate(name, tok, vocoder, run_dir, clip_ids, clips, args) | {"budget": budget}
    if stopped:
        print(f"stopped before the last step: {', '.join(stopped)}; rerun the same command to resume", flush=True)
        return None
    floor = score_floor(vocoder, clips, sr)
    result = {**provenance(), "command": command,
              "settings": {"corpus": args.corpus, "split": args.split, "clips": len(clips), "clip_ids": clip_ids,
                           "seconds": args.seconds, "resamples": args.resamples, "bootstrap_seed": args.bootstrap_seed,
                           "silent_stems": {t: sum(float(x[k].pow(2).mean().sqrt()) <= SILENCE_RMS for x in clips)
                                            for k, t in enumerate(DUO_TRACKS)},
                           "level": LEVEL, "cache_dir": args.cache_dir, "work": args.work},
              "recipe": recipe.to_dict(),
              "vocoder": {"source": args.vocoder, "fingerprint": vocoder_fingerprint(vocoder).short()},
              "floor": {t: summarise(floor[t], args.resamples, args.bootstrap_seed) for t in DUO_TRACKS},
              "tokenizers": rows, "paired": paired(rows, args.resamples, args.bootstrap_seed),
              "wall_minutes": (time.time() - t0) / 60}
    result["reading"] = reading(result)
    out = Path(args.out)
    plot = plot_rows(result, Path(f"{out}.png"))
    write_json(Path(f"{out}.json"), result)
    write_text(Path(f"{out}.md"), markdown(result, plot.name))
    return result


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizers", default="bandtok-small,rvq-dac-small",
                    help="comma list of bundled names or tokenizer folders (e.g. runs/duotok-small-stage4/export)")
    ap.add_argument("--corpus", default="data/chorales")
    ap.add_argument("--vocoder", default="vocoder-small")
    ap.add_argument("--steps", type=int, default=Recipe.steps)
    ap.add_argument("--batch", type=int, default=Recipe.batch_size, help="clips per step (both stems of each)")
    ap.add_argument("--clip-seconds", type=float, default=Recipe.clip_seconds)
    ap.add_argument("--lr", type=float, default=Recipe.lr)
    ap.add_argument("--warmup", type=int, default=Recipe.warmup_steps)
    ap.add_argument("--weight-decay", type=float, default=Recipe.weight_decay)
    ap.add_argument("--seed", type=int, default=Recipe.seed, help="the decoders' initialisation and the windows' order")
    ap.add_argument("--amp", default=Recipe.amp, choices=("none", "bf16"))
    ap.add_argument("--train-pieces", type=int, default=Recipe.train_pieces,
                    help="the first N training pieces (encoded whole; 0 = all)")
    ap.add_argument("--decoder", default=Recipe.decoder, choices=tuple(DECODERS))
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="stop a training (with a checkpoint) after this long; rerun to resume")
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples over clips")
    ap.add_argument("--bootstrap-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--work", default="runs/matched-decoder")
    ap.add_argument("--cache-dir", default="data/token-cache")
    ap.add_argument("--out", default="docs/results/matched-decoder", help="writes OUT.md, OUT.json, OUT.png")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    try:
        result = run(args, shlex.join([".venv/bin/python", "benchmarks/matched_decoder.py", *argv]))
    except MusictokError as e:  # MatchedDecoderError, a tokenizer or audio file that cannot be read, a checkpoint
        print(f"matched_decoder: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if result is not None:
        print(Path(f"{args.out}.md").read_text())
    return result


if __name__ == "__main__":
    main()
