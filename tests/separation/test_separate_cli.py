"""`musictok train separator` and `musictok separate`: outputs, skips, and one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf

from musictok.audio import save

from sep_helpers import SR


def run_cli(capsys, *args) -> tuple[int, str, str]:
    from musictok.cli import main

    capsys.readouterr()
    argv, sys.argv = sys.argv, ["musictok", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def _mix(path, seconds=3.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    save(path, (0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sign(np.sin(2 * np.pi * 2 * t))).astype(np.float32), sr)
    return path


def test_train_separator_command(tiny_corpus, tmp_path, capsys):
    cfg = tmp_path / "sep.yaml"
    cfg.write_text(f"kind: separator\nmodel: {{separator: mask, preset: tiny, sample_rate: {SR}}}\n"
                   f"data: {{corpus: {tiny_corpus}, clip_seconds: 0.5, valid_clips: 1, valid_seconds: 0.5, valid_split: train}}\n"
                   "train: {steps: 2, batch_size: 2, warmup_steps: 1, log_every: 1, ckpt_every: 5, valid_every: 2}\n")
    code, out, err = run_cli(capsys, "train", "separator", "--config", cfg, "--out", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file() and "finished at step 2/2" in out
    code, _, err = run_cli(capsys, "train", "tokenizer", "--config", cfg)
    assert code == 1 and "is a separator config; use `musictok train separator`" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: separator\nmodel: {separator: demucs}\n")
    code, _, err = run_cli(capsys, "train", "separator", "--config", bad)
    assert code == 1 and "model.separator must be one of lm, mask" in err and len(err.strip().splitlines()) == 1


def test_train_separator_resumes_from_the_command_line(tiny_corpus, tiny_tokenizer, tmp_path, capsys):
    """`--resume` continues the LM separator's run where it stopped (its log holds each step once, the
    separation check at every validation); a rerun without it is refused in one line; a bad `valid:` too."""
    cfg = tmp_path / "sep.yaml"
    cfg.write_text(f"kind: separator\nmodel: {{separator: lm, preset: tiny, tokenizer: {tiny_tokenizer}}}\n"
                   f"data: {{corpus: {tiny_corpus}, clip_seconds: 0.5, valid_clips: 1, valid_seconds: 0.5, valid_split: train}}\n"
                   "train: {steps: 2, batch_size: 2, warmup_steps: 1, log_every: 5, ckpt_every: 5, valid_every: 2}\n"
                   "valid: {separate_clips: 1}\n")
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "separator", "--config", cfg, "--out", run, "--set", "train.log_every=1")
    assert code == 0 and "finished at step 2/2" in out, err
    code, _, err = run_cli(capsys, "train", "separator", "--config", cfg, "--out", run, "--steps", "3")
    assert code == 1 and "already holds a checkpoint: pass --resume" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "train", "separator", "--config", cfg, "--out", run, "--steps", "3", "--resume",
                             "--set", "train.log_every=1")
    assert code == 0 and "finished at step 3/3" in out, err
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in rows if "valid/sep_mel/vocals" in r] == [2, 3]
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("separate_clips: 1", "separate_clips: -2"))
    code, _, err = run_cli(capsys, "train", "separator", "--config", bad, "--out", tmp_path / "bad")
    assert code == 1 and "valid.separate_clips: must be >= 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()


def test_separate_files_and_folders(tiny_separators, tmp_path, capsys):
    songs = tmp_path / "songs"
    _mix(songs / "a.wav")
    _mix(songs / "sub" / "b.flac", seconds=5.0, sr=22050)  # another rate: resampled on the way in
    code, out, err = run_cli(capsys, "separate", songs, "-o", tmp_path / "out", "--model", tiny_separators["mask"])
    assert code == 0, err
    assert "2 separated into vocals, drums, bass, other" in out
    mix, _ = sf.read(songs / "a.wav", dtype="float32")
    stems = np.stack([sf.read(tmp_path / "out" / "a" / f"{n}.wav", dtype="float32")[0]
                      for n in ("vocals", "drums", "bass", "other")])
    assert stems.shape == (4, len(mix)) and np.abs(stems.sum(0) - mix).max() < 1e-4  # the mask model sums to the mix
    assert sf.info(tmp_path / "out" / "sub" / "b" / "vocals.wav").frames == 5 * SR
    code, out, _ = run_cli(capsys, "separate", songs / "a.wav", "-o", tmp_path / "out", "--model", tiny_separators["mask"])
    assert code == 0 and "1 already there" in out
    code, out, err = run_cli(capsys, "separate", songs / "a.wav", "-o", tmp_path / "lm", "--model", tiny_separators["lm"],
                             "--temperature", "1", "--samples", "2")
    assert code == 0, err
    assert sf.info(tmp_path / "lm" / "a" / "other.wav").frames == len(mix)


@pytest.mark.parametrize("case", ["tokenizer-as-model", "greedy-samples", "mask-temperature", "missing-input",
                                  "no-model", "not-audio"])
def test_separate_one_line_errors(case, tiny_separators, tiny_tokenizer, tmp_path, capsys):
    song = _mix(tmp_path / "in" / "a.wav", seconds=1.0)
    (tmp_path / "in" / "notes.wav").write_text("not audio") if case == "not-audio" else None
    args, expect = {
        "tokenizer-as-model": (["separate", song, "-o", tmp_path / "out", "--model", tiny_tokenizer], "a tokenizer, not a separator"),
        "greedy-samples": (["separate", song, "-o", tmp_path / "out", "--model", tiny_separators["lm"], "--samples", "3"], "greedy"),
        "mask-temperature": (["separate", song, "-o", tmp_path / "out", "--model", tiny_separators["mask"], "--temperature", "1"],
                             "takes no options"),
        "missing-input": (["separate", tmp_path / "nope.wav", "-o", tmp_path / "out", "--model", tiny_separators["mask"]],
                          "nope.wav: no such file"),
        "no-model": (["separate", song, "-o", tmp_path / "out", "--model", "no-such-separator"], "no such model"),
        "not-audio": (["separate", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_separators["mask"]], "notes.wav"),
    }[case]
    code, out, err = run_cli(capsys, *args)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and expect in errors[0], err
    if case == "not-audio":  # the bad file is named and skipped, the good one separated
        assert (tmp_path / "out" / "a" / "vocals.wav").is_file() and not (tmp_path / "out" / "notes").exists()
    else:
        assert not (tmp_path / "out").exists()
