"""The bad-input corpus: odd and broken inputs against every command, as a new user would try them.

Each case runs the real entry point (``musictok.cli.main``, in-process so the corpus stays fast) and
checks the contract of the CLI: the exit code; on failure exactly one line ``error: <file or option>:
<cause>`` naming what is wrong; never a traceback; no partial output; no input modified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch

from musictok import pretrained
from musictok.audio import save

SR = 16000


# ---------------------------------------------------------------- running the CLI
@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(capsys, *args: str) -> Result:
    from musictok.cli import main

    capsys.readouterr()
    argv, sys.argv = sys.argv, ["musictok", *map(str, args)]
    try:
        main()  # an unexpected exception propagates here and fails the test: that is the traceback check
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def tree_digest(*roots: Path) -> dict[str, str]:
    """Content hash of every file under ``roots``: an input that changes shows up here."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------- shared inputs
def sine(seconds: float, freq: float = 220.0, amp: float = 0.2, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A tiny tokenizer, a tiny LM over its tokens, and the good and bad files every case reads (never writes)."""
    from musictok.lm.model import TokenLM, TokenLMConfig
    from musictok.tokenizers.bandtok import BandTok, BandTokConfig
    from musictok.train.lm import context_pattern

    root = tmp_path_factory.mktemp("bad-inputs")
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR))
    tok.save_pretrained(root / "tok")
    layout = tok.layout
    frames = 16
    pattern = context_pattern("band-grid", layout, frames, {})
    lm = TokenLM.from_pattern(TokenLMConfig.preset("tiny", rope="2d"), pattern)
    pretrained.write(root / "lm", lm.state_dict(), {
        "model": "token-lm", "config": lm.config.to_dict(), "vocab": lm.vocab.to_dict(), "pattern": "band-grid",
        "pattern_options": {}, "context_frames": frames, "layout": layout.to_dict(),
        "tokenizer": {"source": str(root / "tok"), **dataclasses.asdict(tok.fingerprint())}})

    a = root / "in"
    save(a / "good.wav", sine(3.0), SR)
    save(a / "prompt.wav", sine(4.0, 330.0), SR)
    sf.write(a / "eight.wav", np.tile(sine(1.0)[:, None], (1, 8)), SR, subtype="PCM_16")
    sf.write(a / "hot.wav", sine(2.0, amp=42.7), SR, subtype="FLOAT")  # +32.6 dBFS, legal in a float WAV
    whole = (a / "good.wav").read_bytes()
    (a / "cut_header.wav").write_bytes(whole[:46])  # cut inside the header
    sf.write(a / "pcm.wav", sine(3.0), SR, subtype="PCM_16")
    (a / "cut_pcm.wav").write_bytes((a / "pcm.wav").read_bytes()[:46])  # the header promises 3 s, holds 1 sample
    (a / "cut_data.wav").write_bytes(whole[: len(whole) // 3])
    sf.write(a / "full.ogg", sine(8.0), SR, format="OGG", subtype="VORBIS")
    ogg = (a / "full.ogg").read_bytes()
    (a / "cut.ogg").write_bytes(ogg[: int(len(ogg) * 0.7)])
    (a / "text.wav").write_text("this is not audio")
    (a / "empty.wav").write_bytes(b"")
    nan = sine(1.0)
    nan[100] = np.nan
    sf.write(a / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(a / "one_sample.wav", np.array([0.1], np.float32), SR, subtype="FLOAT")
    save(a / "silent.wav", np.zeros(SR * 2, np.float32), SR)
    (a / "empty_dir").mkdir()
    return root


# ---------------------------------------------------------------- the corpus
@dataclass
class Case:
    """``args(ws, tmp)`` gives the command line; ``code`` the exit code; ``error`` the substrings of the one
    error line (``None``: no error line); ``absent`` outputs that must not exist afterwards."""

    args: Callable[[Path, Path], list]
    code: int = 1
    error: tuple[str, ...] | None = ()
    absent: Callable[[Path, Path], list] = lambda ws, tmp: [tmp / "out"]
    check: Callable[[Result, Path, Path], None] | None = None  # anything else to assert
    warning: tuple[str, ...] | None = None  # substrings of the one warning line, if any


def _fake_corpus(tmp: Path) -> Path:
    """A folder that passes bench's corpus check (``metadata.jsonl``): what is refused must be refused first."""
    d = tmp / "corpus"
    d.mkdir(exist_ok=True)
    (d / "metadata.jsonl").write_text("")
    return d


def _mtok_dir(ws: Path, tmp: Path, name: str = "song", audio: str = "good.wav") -> Path:
    """``tmp/songs`` holding ``song.wav`` and the ``song.mtok`` encoded from it (the DIR → DIR setup)."""
    from musictok.convert import encode_file
    from musictok.tokenizers.base import Tokenizer

    d = tmp / "songs"
    d.mkdir(exist_ok=True)
    (d / f"{name}.wav").write_bytes((ws / "in" / audio).read_bytes())
    tokens, _ = encode_file(d / f"{name}.wav", Tokenizer.from_pretrained(ws / "tok"))
    tokens.extra["source_file"] = f"{name}.wav"
    tokens.save(d / f"{name}.mtok")
    return d


def _damaged(ws: Path, tmp: Path, cut: bool) -> Path:
    d = _mtok_dir(ws, tmp)
    raw = (d / "song.mtok").read_bytes()
    (d / "song.mtok").write_bytes(raw[: len(raw) - 40] if cut else b"\x00" * 64 + raw[64:])
    (d / "song.wav").unlink()
    return d / "song.mtok"


def _yaml(tmp: Path, text: str) -> Path:
    p = tmp / "run.yaml"
    p.write_text("kind: bandtok\nmodel: {preset: tiny}\n" + text)
    return p


def _recon_json(r: Result, ws: Path, tmp: Path) -> None:
    res = json.loads((tmp / "recon.json").read_text())
    assert res["reconstruction"]["tokens"]["si_sdr"] is None  # undefined, not −21 dB
    assert "–" in r.out and "undefined" in r.out


def _skipped_and_went_on(r: Result, ws: Path, tmp: Path) -> None:
    assert (tmp / "out" / "good.mtok").is_file() and not (tmp / "out" / "cut.mtok").exists()
    assert "1 encoded" in r.out and "1 failed" in r.out


IN = "in"
CASES: dict[str, Case] = {
    # ---- info
    "info-8-channels": Case(lambda ws, t: ["info", ws / IN / "eight.wav"], code=0, error=None,
                            check=lambda r, ws, t: "at most five channels" in r.out),
    "info-cut-wav-header": Case(lambda ws, t: ["info", ws / IN / "cut_header.wav"],
                                error=("cut_header.wav", "truncated", "header promises")),
    "info-cut-wav-data": Case(lambda ws, t: ["info", ws / IN / "cut_pcm.wav"],
                              error=("cut_pcm.wav", "truncated", "promises 3.00 s", "holds 0.00 s")),
    "info-cut-ogg": Case(lambda ws, t: ["info", ws / IN / "cut.ogg"], error=("cut.ogg", "truncated")),
    "info-not-audio": Case(lambda ws, t: ["info", ws / IN / "text.wav"], error=("text.wav", "cannot be decoded")),
    "info-empty-file": Case(lambda ws, t: ["info", ws / IN / "empty.wav"], error=("empty.wav", "empty")),
    "info-missing": Case(lambda ws, t: ["info", ws / IN / "nowhere.wav"], error=("nowhere.wav", "not found")),
    "info-nan": Case(lambda ws, t: ["info", ws / IN / "nan.wav"], error=("nan.wav", "NaN")),
    "info-folder": Case(lambda ws, t: ["info", ws / IN / "empty_dir"], error=("empty_dir", "directory")),
    "info-hot": Case(lambda ws, t: ["info", ws / IN / "hot.wav"], code=0, error=None,
                     check=lambda r, ws, t: "+32.6" in r.out and "above 0 dBFS" in r.out),
    "info-truncated-mtok": Case(lambda ws, t: ["info", _damaged(ws, t, cut=True)], error=("song.mtok", "truncated"),
                                absent=lambda ws, t: []),
    # ---- encode
    "encode-lm-as-tokenizer": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer",
                                                  ws / "lm"], error=("lm", "is a token LM, not a tokenizer")),
    "encode-no-cuda": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer", ws / "tok",
                                          "--device", "cuda"], error=("--device cuda", "CUDA is not available")),
    "encode-no-such-device": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer",
                                                 ws / "tok", "--device", "gpu"], error=("--device gpu", "not a device")),
    "encode-bad-precision": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer",
                                                ws / "tok", "--precision", "fp16"],
                                 error=("--precision fp16", "not one of fp32, bf16")),
    "encode-empty-folder": Case(lambda ws, t: ["encode", ws / IN / "empty_dir", "-o", t / "out", "--tokenizer",
                                               ws / "tok"], error=("empty_dir", "no audio files found")),
    "encode-missing-input": Case(lambda ws, t: ["encode", ws / IN / "nowhere.wav", "-o", t / "out", "--tokenizer",
                                                ws / "tok"], error=("nowhere.wav", "no such file")),
    "encode-missing-tokenizer": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer",
                                                    "no-such-model"], error=("no-such-model", "no such model")),
    "encode-out-is-a-file": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", ws / IN / "good.wav",
                                                "--tokenizer", ws / "tok"], error=("good.wav", "must be a folder")),
    "encode-cut-ogg-skips-and-goes-on": Case(
        lambda ws, t: ["encode", ws / IN / "cut.ogg", ws / IN / "good.wav", "-o", t / "out", "--tokenizer", ws / "tok"],
        error=("cut.ogg", "truncated"), absent=lambda ws, t: [t / "out" / "cut.mtok"], check=_skipped_and_went_on),
    "encode-hot-float-wav-warns": Case(
        lambda ws, t: ["encode", ws / IN / "hot.wav", "-o", t / "out", "--tokenizer", ws / "tok"], code=0,
        error=None, absent=lambda ws, t: [], warning=("hot.wav", "+32.6 dBFS", "above full scale")),
    "encode-channels-unknown": Case(lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer",
                                                   ws / "tok", "--channels", "quad"], error=("--channels", "'quad'")),
    "encode-stereo-of-8-channels": Case(
        lambda ws, t: ["encode", ws / IN / "eight.wav", "-o", t / "out", "--tokenizer", ws / "tok", "--channels",
                       "stereo"], error=("eight.wav", "8 channels", "--channels mono")),
    "encode-mid-side-warns-of-phases": Case(
        lambda ws, t: ["encode", ws / IN / "good.wav", "-o", t / "out", "--tokenizer", ws / "tok", "--channels",
                       "mid-side"], code=0, error=None, absent=lambda ws, t: [],
        warning=("--channels mid-side", "own phases", "--channels stereo")),
    "encode-8-channels-kept-as-mono-warns": Case(
        lambda ws, t: ["encode", ws / IN / "eight.wav", "-o", t / "out", "--tokenizer", ws / "tok"], code=0,
        error=None, absent=lambda ws, t: [], warning=("eight.wav", "8 channels downmixed to mono"),
        check=lambda r, ws, t: (t / "out" / "eight.mtok").is_file()),
    # ---- decode
    "decode-sample-rate-word": Case(lambda ws, t: ["decode", _mtok_dir(ws, t) / "song.mtok", "-o", t / "out",
                                                   "--sample-rate", "fast"], error=("--sample-rate", "'fast'")),
    "decode-sample-rate-too-low": Case(lambda ws, t: ["decode", _mtok_dir(ws, t) / "song.mtok", "-o", t / "out",
                                                      "--sample-rate", "8"], error=("--sample-rate", "outside")),
    "decode-dir-onto-itself": Case(
        lambda ws, t: ["decode", _mtok_dir(ws, t), "-o", t / "songs", "--overwrite"],
        error=("song.mtok", "would write over", "song.wav", "made from"), absent=lambda ws, t: []),
    "decode-dir-onto-itself-no-overwrite": Case(
        lambda ws, t: ["decode", _mtok_dir(ws, t), "-o", t / "songs"],
        error=("song.mtok", "would write over", "song.wav"), absent=lambda ws, t: []),
    "decode-truncated-mtok": Case(lambda ws, t: ["decode", _damaged(ws, t, cut=True), "-o", t / "out"],
                                  error=("song.mtok", "truncated")),
    "decode-garbage-mtok": Case(lambda ws, t: ["decode", _damaged(ws, t, cut=False), "-o", t / "out"],
                                error=("song.mtok", "not a token file")),
    "decode-empty-folder": Case(lambda ws, t: ["decode", ws / IN / "empty_dir", "-o", t / "out"],
                                error=("empty_dir", "no .mtok files found")),
    "decode-levels-on-bandtok": Case(lambda ws, t: ["decode", _mtok_dir(ws, t) / "song.mtok", "-o", t / "out",
                                                    "--levels", "2", "--tokenizer", ws / "tok"],
                                     error=("--levels", "no levels")),
    "decode-levels-zero": Case(lambda ws, t: ["decode", _mtok_dir(ws, t) / "song.mtok", "-o", t / "out",
                                              "--levels", "0"], error=("--levels", ">= 1")),
    "decode-no-cuda": Case(lambda ws, t: ["decode", _mtok_dir(ws, t) / "song.mtok", "-o", t / "out", "--device",
                                          "cuda:3"], error=("--device cuda:3",)),
    # ---- eval recon
    "eval-one-sample-file": Case(
        lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio", _folder(ws, t, "good.wav", "one_sample.wav"),
                       "--seconds", "1"], code=0, error=None, absent=lambda ws, t: [],
        warning=("one_sample.wav", "mostly padding"), check=lambda r, ws, t: "(3 × 1 s)" in r.out),
    "eval-only-one-sample-file": Case(
        lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio", _folder(ws, t, "one_sample.wav"),
                       "--seconds", "4"], error=("eval", "no usable audio"), absent=lambda ws, t: [],
        warning=("one_sample.wav", "mostly padding")),
    "eval-silent-reference": Case(
        lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio", _folder(ws, t, "silent.wav"), "--seconds",
                       "1", "--json", t / "recon.json"], code=0, error=None, absent=lambda ws, t: [],
        check=_recon_json),
    "eval-bad-file-skips-and-goes-on": Case(
        lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio", _folder(ws, t, "good.wav", "text.wav"),
                       "--seconds", "1"], error=("text.wav", "cannot be decoded"), absent=lambda ws, t: [],
        check=lambda r, ws, t: "(3 × 1 s)" in r.out),
    "eval-empty-folder": Case(lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio",
                                             ws / IN / "empty_dir"], error=("empty_dir", "no audio files")),
    "eval-seconds-nan": Case(lambda ws, t: ["eval", "recon", "--tokenizer", ws / "tok", "--audio", ws / IN,
                                            "--seconds", "nan"], error=("--seconds",)),
    # ---- generate
    "generate-out-is-the-prompt": Case(
        lambda ws, t: ["generate", "--lm", ws / "lm", "--prompt", _copy(ws, t, "prompt.wav"), "-o",
                       t / "in" / "prompt.wav", "--prompt-seconds", "1", "--seconds", "2"],
        error=("--out", "prompt.wav", "is the prompt"), absent=lambda ws, t: [t / "in" / "prompt.mtok"]),
    "generate-seconds-inf": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.wav",
                                                "--seconds", "inf"], error=("--seconds", "inf")),
    "generate-seconds-nan": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.wav",
                                                "--seconds", "nan"], error=("--seconds", "nan")),
    "generate-seconds-zero": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.wav",
                                                 "--seconds", "0"], error=("--seconds",)),
    "generate-seconds-negative": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.wav",
                                                     "--seconds", "-5"], error=("--seconds", "-5")),
    "generate-prompt-longer-than-total": Case(
        lambda ws, t: ["generate", "--lm", ws / "lm", "--prompt", ws / IN / "prompt.wav", "-o", t / "out" / "g.wav",
                       "--prompt-seconds", "12", "--seconds", "10"], error=("--prompt-seconds", "nothing to generate")),
    "generate-unknown-format": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.mp3xyz",
                                                   "--seconds", "1"], error=("--out", "g.mp3xyz", "cannot write")),
    "generate-out-is-a-folder": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", _mkdir(t / "out"),
                                                    "--seconds", "1"], error=("--out", "is a folder"),
                                     absent=lambda ws, t: [t / "out.mtok", t / "out.png"]),
    "generate-top-p": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "-o", t / "out" / "g.wav", "--top-p", "1.5"],
                           error=("--top-p", "1.5")),
    "generate-tokenizer-as-lm": Case(lambda ws, t: ["generate", "--lm", ws / "tok", "-o", t / "out" / "g.wav",
                                                    "--seconds", "1"], error=("tok", "not a token LM")),
    "generate-missing-prompt": Case(lambda ws, t: ["generate", "--lm", ws / "lm", "--prompt", ws / IN / "nope.wav",
                                                   "-o", t / "out" / "g.wav", "--seconds", "2", "--prompt-seconds",
                                                   "1"], error=("nope.wav", "not found")),
    "generate-works": Case(
        lambda ws, t: ["generate", "--lm", ws / "lm", "--prompt", ws / IN / "prompt.wav", "-o", t / "out" / "g.wav",
                       "--prompt-seconds", "0.5", "--seconds", "1.5"], code=0, error=None, absent=lambda ws, t: [],
        check=lambda r, ws, t: all((t / "out" / f).is_file() for f in ("g.wav", "g.mtok", "g.png"))),
    # ---- train (checked on load, before any data or model is touched)
    "train-lr-string": Case(lambda ws, t: ["train", "tokenizer", "--config", _yaml(t, 'train: {lr: "fast"}')],
                            error=("run.yaml", "train.lr", "fast")),
    "train-steps-float": Case(lambda ws, t: ["train", "tokenizer", "--config", _yaml(t, "train: {steps: 2.7}")],
                              error=("run.yaml", "train.steps", "whole number")),
    "train-steps-word": Case(lambda ws, t: ["train", "tokenizer", "--config", _yaml(t, 'train: {steps: "four"}')],
                             error=("run.yaml", "train.steps", "four")),
    "train-clip-seconds-string": Case(lambda ws, t: ["train", "tokenizer", "--config",
                                                     _yaml(t, 'data: {clip_seconds: "0.5"}')],
                                      error=("run.yaml", "data.clip_seconds", "remove the quotes")),
    "train-clip-seconds-negative": Case(lambda ws, t: ["train", "tokenizer", "--config",
                                                       _yaml(t, "data: {clip_seconds: -1}")],
                                        error=("run.yaml", "data.clip_seconds", "> 0")),
    "train-section-not-a-mapping": Case(lambda ws, t: ["train", "tokenizer", "--config", _yaml(t, "train: 5")],
                                        error=("run.yaml", "train", "mapping")),
    "train-model-type": Case(lambda ws, t: ["train", "tokenizer", "--config", _model_yaml(t)],
                             error=("run.yaml", "model.n_mels", "many")),
    "train-missing-config": Case(lambda ws, t: ["train", "tokenizer", "--config", t / "nope.yaml"],
                                 error=("nope.yaml", "not found")),
    "train-no-config-no-init": Case(lambda ws, t: ["train", "tokenizer", "--out", t / "out"],
                                    error=("--config", "--init NAME_OR_DIR")),
    # ---- fine-tuning (checked before any model is built or folder written)
    "finetune-init-missing": Case(lambda ws, t: ["train", "tokenizer", "--init", t / "nope", "--audio",
                                                 _songs(ws, t), "--out", t / "out"],
                                  error=("--init", "nope", "no such model folder")),
    "finetune-init-not-a-model": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / IN, "--audio",
                                                     _songs(ws, t), "--out", t / "out"],
                                      error=("--init", "no config.json")),
    "finetune-without-audio": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--out", t / "out"],
                                   error=("--audio", "give the folders")),
    "finetune-audio-missing": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--audio", t / "gone",
                                                  "--out", t / "out"], error=("--audio", "gone", "no such folder")),
    "finetune-audio-a-file": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--audio",
                                                 ws / IN / "good.wav", "--out", t / "out"],
                                  error=("--audio", "good.wav", "not a folder")),
    "finetune-audio-empty": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--audio",
                                                ws / IN / "empty_dir", "--out", t / "out"],
                                 error=("--audio", "empty_dir", "no audio files")),
    "finetune-audio-weight": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--audio",
                                                 f"{_songs(ws, t)}:-2", "--out", t / "out"],
                                  error=("--audio", ":-2", "weight")),
    "finetune-audio-one-file": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "tok", "--audio",
                                                   _folder(ws, t, "good.wav"), "--out", t / "out"],
                                    error=("--audio", "validate", "two or more")),
    "finetune-tokenizer-as-vocoder": Case(lambda ws, t: ["train", "vocoder", "--init", ws / "tok", "--audio",
                                                         _songs(ws, t), "--out", t / "out"],
                                          error=("--init", "bandtok tokenizer", "musictok train tokenizer")),
    "finetune-lm-as-tokenizer": Case(lambda ws, t: ["train", "tokenizer", "--init", ws / "lm", "--audio",
                                                    _songs(ws, t), "--out", t / "out"],
                                     error=("--init", "token LM", "musictok train lm")),
    "finetune-model-disagrees": Case(lambda ws, t: ["train", "tokenizer", "--config",
                                                    _yaml_bare(t, "model: {latent_dim: 8}\n"), "--init", ws / "tok",
                                                    "--audio", _songs(ws, t), "--out", t / "out"],
                                     error=("run.yaml", "model.latent_dim", "the config has 8", "has 16")),
    "finetune-kind-disagrees": Case(lambda ws, t: ["train", "vocoder", "--config",
                                                   _yaml_bare(t, "", kind="vocoder"), "--init", ws / "tok",
                                                   "--audio", _songs(ws, t), "--out", t / "out"],
                                    error=("--init", "bandtok tokenizer", "trains kind vocoder")),
    "finetune-a-duotok-stage": Case(lambda ws, t: ["train", "tokenizer", "--config",
                                                   _yaml_bare(t, "stage: 1\n", kind="duotok"), "--init", ws / "tok",
                                                   "--out", t / "out"],
                                    error=("--init", "a duotok run does not fine-tune", "init_from")),
    # ---- rough edges
    "bench-real-empty": Case(lambda ws, t: ["bench", "--dual", "--corpus", _fake_corpus(t), "--real",
                                            ws / IN / "empty_dir", "--out", t / "out"],
                             error=("--real", "empty_dir", "no audio files")),
    "bench-no-track-to-track-without-dual": Case(lambda ws, t: ["bench", "--no-track-to-track", "--corpus",
                                                                _fake_corpus(t), "--out", t / "out"],
                                                 error=("--no-track-to-track", "--dual")),
    "bench-real-missing": Case(lambda ws, t: ["bench", "--corpus", _fake_corpus(t), "--real", t / "gone",
                                              "--out", t / "out"], error=("gone", "--real", "not found")),
    "version": Case(lambda ws, t: ["--version"], code=0, error=None, check=lambda r, ws, t: "musictok" in r.out),
}


def _folder(ws: Path, tmp: Path, *names: str) -> Path:
    """A folder holding copies of some of the shared files (eval reads whole folders)."""
    d = tmp / "in" / "eval"
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes((ws / IN / n).read_bytes())
    return d


def _copy(ws: Path, tmp: Path, name: str) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / name).write_bytes((ws / IN / name).read_bytes())
    return tmp / "in" / name


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _yaml_bare(tmp: Path, text: str, kind: str = "bandtok") -> Path:
    """A run config without a model section (a fine-tune takes its model from --init)."""
    p = tmp / "run.yaml"
    p.write_text(f"kind: {kind}\n" + text)
    return p


def _songs(ws: Path, tmp: Path) -> Path:
    """A folder of two good recordings: enough to hold one out for validation."""
    d = tmp / "in" / "songs"
    d.mkdir(parents=True, exist_ok=True)
    for n in ("good.wav", "prompt.wav"):
        (d / n).write_bytes((ws / IN / n).read_bytes())
    return d


def _model_yaml(tmp: Path) -> Path:
    p = tmp / "run.yaml"
    p.write_text('kind: bandtok\nmodel: {preset: tiny, n_mels: "many"}\n')
    return p


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, ws, tmp_path, capsys):
    case = CASES[name]
    args = case.args(ws, tmp_path)
    before = tree_digest(ws, tmp_path)
    r = run_cli(capsys, *args)
    text = r.out + r.err
    assert "Traceback" not in text
    assert r.code == case.code, (name, r.code, r.err, r.out[-600:])
    errors = [line for line in r.err_lines if line.startswith("error:")]
    warnings = [line for line in r.err_lines if line.startswith("warning:")]
    assert len(r.err_lines) == len(errors) + len(warnings), r.err  # nothing else on stderr
    if case.error is None:
        assert not errors, r.err
    else:
        assert len(errors) == 1, r.err  # one line, naming the file or option and the cause
        for s in case.error:
            assert s in errors[0], (s, errors[0])
    if case.warning is None:
        assert not warnings, r.err
    else:
        assert len(warnings) == 1, r.err
        for s in case.warning:
            assert s in warnings[0], (s, warnings[0])
    after = tree_digest(ws, tmp_path)
    changed = [p for p in before if after.get(p) != before[p]]
    assert not changed, f"inputs modified: {changed}"
    for p in case.absent(ws, tmp_path):
        assert not p.exists() or (p.is_dir() and not any(p.rglob("*"))), f"partial output {p}"
    assert not [p for p in tmp_path.rglob(".*.tmp")], "a temporary file was left behind"
    if case.check:
        assert case.check(r, ws, tmp_path) is not False, (name, r.out[-800:])
