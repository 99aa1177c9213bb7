"""Fine-tuning a saved model on a folder of audio: starts from its weights, resumes exactly, exports a model
with its own fingerprint and a record of where it came from; a config that disagrees with it is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musictok import pretrained
from musictok.audio import save
from musictok.cli import app
from musictok.tokenizers.base import Tokenizer
from musictok.train.loop import DistInfo
from musictok.train.registry import RunError, RunRequest, prepare_run

SR = 16000
# the default recipe, shrunk to seconds
QUICK = ["--set", "train.batch_size=2", "--set", "train.log_every=1", "--set", "train.warmup_steps=1",
         "--set", "train.ckpt_every=100", "--set", "train.valid_every=100", "--set", "data.valid_clips=2",
         "--set", "data.valid_seconds=1.0"]
QUICK_OVERRIDES = {"train.batch_size": 2, "train.log_every": 1, "train.warmup_steps": 1, "train.ckpt_every": 100,
                   "train.valid_every": 100, "data.valid_clips": 2, "data.valid_seconds": 1.0}


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    """Six 2 s synthetic recordings (harmonic tones in noise) in two sub-folders: no metadata.jsonl."""
    root = tmp_path_factory.mktemp("my-music")
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    for k in range(6):
        f0 = 110 * 2 ** (k / 5)
        wav = sum(0.1 / h * np.sin(2 * np.pi * h * f0 * t) for h in range(1, 5)) + 0.01 * rng.standard_normal(t.size)
        save(root / ("a" if k % 2 else "b") / f"take{k}.wav", wav.astype(np.float32), SR)
    return root


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory) -> Path:
    """A tiny BandTok export whose codebook has been through k-means (as a trained one has), recording the
    clip length it was trained with."""
    from musictok.tokenizers.bandtok import BandTok, BandTokConfig

    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)
    d = tmp_path_factory.mktemp("init") / "tiny-tok"
    tok.save_pretrained(d, extra={"run_config": {"data": {"clip_seconds": 0.512}}})
    return d


def _invoke(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["modules"]


def test_weights_at_step_0_are_the_init_and_the_optimizer_is_fresh(init_dir, audio, tmp_path):
    prepared = prepare_run(RunRequest("tokenizer", init=str(init_dir), audio=[str(audio)],
                                      overrides=QUICK_OVERRIDES | {"train.out_dir": str(tmp_path / "ft")}))
    run = prepared.run
    assert run.init == str(init_dir) and run.train.lr == 1e-4 and run.gan.start_step >= 10**9
    assert run.data.clip_seconds == 0.512  # the clip length the checkpoint records
    assert [s["path"] for s in run.data.sources] == [str(audio)]
    prepared.task.setup(torch.device("cpu"), DistInfo(), run.train)
    want = Tokenizer.from_pretrained(init_dir).state_dict()
    have = prepared.task.model.state_dict()
    assert set(have) == set(want) and all(torch.equal(have[k], want[k]) for k in want)
    assert bool(have["quantizer.initted"])  # k-means is not run again over the trained codebook
    assert all(not s for s in prepared.task.opt_g.state.values())
    # the same config without --init starts from random weights: the comparison above can fail
    scratch = prepare_run(RunRequest("tokenizer", init=None, config=_config(tmp_path, audio, model=True),
                                     overrides={"train.out_dir": str(tmp_path / "s")}))
    scratch.task.setup(torch.device("cpu"), DistInfo(), scratch.run.train)
    assert not torch.equal(scratch.task.model.state_dict()["quantizer.embed"], want["quantizer.embed"])


def test_finetune_resumes_exactly_and_exports_a_new_model(init_dir, audio, tmp_path):
    base = ["train", "tokenizer", "--init", init_dir, "--audio", audio, "--steps", 4, *QUICK]
    res = _invoke(*base, "--out", tmp_path / "straight")
    assert res.exit_code == 0, (res.output, res.exception)
    assert "initialised from" in res.output and "the export: bandtok (config" in res.output
    res = _invoke(*base, "--out", tmp_path / "split", "--max-minutes", 0)  # stops after one step
    assert res.exit_code == 0 and "stopped early" in res.output, res.output
    res = _invoke(*base, "--out", tmp_path / "split", "--resume")
    assert res.exit_code == 0, (res.output, res.exception)
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(a[m][k], b[m][k]) for m in a for k in a[m])

    init = Tokenizer.from_pretrained(init_dir)
    tuned = Tokenizer.from_pretrained(tmp_path / "split" / "export")
    assert tuned.fingerprint() != init.fingerprint()
    assert tuned.fingerprint().config_hash == init.fingerprint().config_hash  # same model, new weights
    record = json.loads((tmp_path / "split" / "export" / "config.json").read_text())["init"]
    assert record["source"] == str(init_dir) and record["fingerprint"] == dataclasses.asdict(init.fingerprint())
    run_json = json.loads((tmp_path / "split" / "run.json").read_text())
    assert run_json["init"]["fingerprint"]["weights_hash"] == init.fingerprint().weights_hash
    assert run_json["run_config"]["init"] == str(init_dir)
    wav = torch.randn(SR) * 0.05
    assert tuned.decode(tuned.encode(wav)).shape == (1, SR)
    logs = [json.loads(x) for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert any(f"valid/mel_l1/{audio.name}" in row for row in logs)  # validated on the folder's held-out files


def _config(tmp_path: Path, audio: Path, model: bool | str = False) -> Path:
    p = tmp_path / "run.yaml"
    section = {True: "model: {preset: tiny, sample_rate: 16000}\n", False: ""}.get(model, model)
    p.write_text(f"kind: bandtok\n{section}data: {{sources: [{{path: {audio}}}], clip_seconds: 0.512, "
                 "valid_clips: 2, valid_seconds: 1.0}\ngan: {start_step: 100}\n"
                 "train: {steps: 2, batch_size: 2, warmup_steps: 1, log_every: 1, ckpt_every: 100, valid_every: 100}\n")
    return p


def test_a_config_may_fine_tune_and_must_agree_with_the_model(init_dir, audio, tmp_path):
    agree = _config(tmp_path, audio, "model: {preset: tiny, sample_rate: 16000}\n")
    (tmp_path / "init.yaml").write_text(agree.read_text() + f"init: {init_dir}\n")
    prepared = prepare_run(RunRequest("tokenizer", config=agree, init=str(init_dir)))
    assert prepared.run.model["latent_dim"] == 16 and prepared.run.gan.start_step == 100  # the config's GAN
    with pytest.raises(RunError) as e:  # the keys it sets must match ...
        prepare_run(RunRequest("tokenizer", config=_config(tmp_path, audio, "model: {latent_dim: 8}\n"),
                               init=str(init_dir)))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{tmp_path / 'run.yaml'}: model.latent_dim: the config has 8")
    assert "has 16" in msg
    with pytest.raises(RunError, match="model.sample_rate: the config has 24000"):  # ... and a preset, whole
        prepare_run(RunRequest("tokenizer", config=_config(tmp_path, audio, "model: {preset: tiny}\n"),
                               init=str(init_dir)))
    # the same through the command line: exit 1, one line naming the key
    res = _invoke("train", "tokenizer", "--config", _config(tmp_path, audio, "model: {codebook_size: 32}\n"),
                  "--init", init_dir, "--out", tmp_path / "x")
    assert res.exit_code != 0 and "model.codebook_size" in str(res.exception) and not (tmp_path / "x").exists()
    # `init:` in the config is the same as --init
    assert prepare_run(RunRequest("tokenizer", config=tmp_path / "init.yaml")).init.given == str(init_dir)


def test_vocoder_fine_tune(audio, tmp_path):
    from musictok.nn.vocoder import Vocoder, VocoderConfig, load_vocoder, save_vocoder, vocoder_fingerprint
    from musictok.spectral import MelConfig

    torch.manual_seed(0)
    voc = Vocoder(VocoderConfig.tiny(mel=MelConfig(sample_rate=SR)))
    save_vocoder(voc, tmp_path / "voc")
    res = _invoke("train", "vocoder", "--init", tmp_path / "voc", "--audio", audio, "--steps", 2,
                  "--out", tmp_path / "ft", *QUICK, "--set", "data.clip_seconds=0.25")
    assert res.exit_code == 0, (res.output, res.exception)
    tuned = load_vocoder(tmp_path / "ft" / "export")
    meta = json.loads((tmp_path / "ft" / "export" / "config.json").read_text())
    assert meta["fingerprint"] == dataclasses.asdict(vocoder_fingerprint(tuned))
    assert meta["fingerprint"] != dataclasses.asdict(vocoder_fingerprint(voc))
    assert meta["init"]["fingerprint"] == dataclasses.asdict(vocoder_fingerprint(voc))


def test_lm_fine_tune_reads_the_folder_through_its_tokenizer(init_dir, audio, tmp_path):
    from musictok.lm.model import TokenLM, TokenLMConfig
    from musictok.train.lm import context_pattern, lm_fingerprint, load_lm

    tok = Tokenizer.from_pretrained(init_dir)
    pattern = context_pattern("band-grid", tok.layout, 8, {})
    torch.manual_seed(0)
    lm = TokenLM.from_pattern(TokenLMConfig.preset("tiny", rope="2d"), pattern)
    meta = {"model": "token-lm", "config": lm.config.to_dict(), "vocab": lm.vocab.to_dict(), "pattern": "band-grid",
            "pattern_options": {}, "context_frames": 8, "layout": tok.layout.to_dict(),
            "tokenizer": {"source": str(init_dir), **dataclasses.asdict(tok.fingerprint())}}
    pretrained.write(tmp_path / "lm", lm.state_dict(), meta)
    cache = tmp_path / "cache"
    args = ["train", "lm", "--init", tmp_path / "lm", "--audio", f"{audio / 'a'}:3", "--audio", audio / "b",
            "--out", tmp_path / "ft", "--steps", 2, "--set", f"lm.cache_dir={cache}", "--set", "train.batch_size=2",
            "--set", "train.warmup_steps=1", "--set", "lm.valid_windows=2"]
    prepared = prepare_run(RunRequest("lm", init=str(tmp_path / "lm"), audio=[f"{audio / 'a'}:3", str(audio / "b")],
                                      overrides={"lm.cache_dir": str(cache), "train.out_dir": str(tmp_path / "p")}))
    assert [s["weight"] for s in prepared.run.data.sources] == [3.0, 1.0]
    assert prepared.run.lm["pattern"] == "band-grid" and prepared.run.train.lr == 1e-4
    prepared.task.setup(torch.device("cpu"), DistInfo(), prepared.run.train)
    assert all(torch.equal(prepared.task.model.state_dict()[k], v) for k, v in lm.state_dict().items())
    assert list((cache / next(p.name for p in cache.iterdir()) / "files").glob("take*.mtok"))  # files, tokenized
    res = _invoke(*args)
    assert res.exit_code == 0, (res.output, res.exception)
    tuned = load_lm(tmp_path / "ft" / "export")
    assert dataclasses.asdict(lm_fingerprint(tuned.model, tuned.meta)) == tuned.meta["fingerprint"]
    assert tuned.meta["fingerprint"] != dataclasses.asdict(lm_fingerprint(lm, meta))
    assert tuned.meta["init"]["source"] == str(tmp_path / "lm")
    config = tmp_path / "lm.yaml"  # a config may not change the LM's sequence layout
    config.write_text(f"kind: lm\nlm: {{pattern: delay}}\ndata: {{sources: [{{path: {audio}}}]}}\n")
    with pytest.raises(RunError, match="lm.pattern: the config has 'delay'"):
        prepare_run(RunRequest("lm", config=config, init=str(tmp_path / "lm")))


def test_audio_options_and_weights(audio, tmp_path):
    from musictok.train.finetune import audio_sources

    save(tmp_path / "x" / "a" / "one.wav", np.zeros(SR, np.float32), SR)  # a second folder named "a"
    sources = audio_sources([f"{audio / 'a'}:2.5", str(audio / "b"), str(tmp_path / "x" / "a")])
    assert [(s["weight"], s["name"]) for s in sources] == [(2.5, "a"), (1.0, "b"), (1.0, "a-2")]
    with pytest.raises(ValueError, match="weight after ':' must be a number > 0"):
        audio_sources([f"{audio}:0"])
    with pytest.raises(ValueError, match="no such folder"):
        audio_sources([str(tmp_path / "gone")])
