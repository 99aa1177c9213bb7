"""Bundling a trained export as a checkpoint (``musictok bundle``): every kind stores its floating weights
rounded to the storage dtype, loads back as those rounded values in float32, and records the fingerprint of
what it loads; the files beside the weights survive; mistakes are one line on stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from musictok import pretrained
from musictok.bundle import BundleError, bundle
from musictok.tokens import Fingerprint

SR = 16000


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """fp32 exports as the trainers write them (with their training metadata): a vocoder, a token LM, a
    tokenizer, an audio tagger."""
    from musictok.lm.model import TokenLM, TokenLMConfig
    from musictok.nn.tagger import AudioTagger, TaggerConfig
    from musictok.nn.vocoder import Vocoder, VocoderConfig, save_vocoder
    from musictok.spectral import MelConfig
    from musictok.tokenizers.bandtok import BandTok, BandTokConfig
    from musictok.train.lm import context_pattern, save_lm
    from musictok.train.tagger import save_tagger

    root = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    save_vocoder(Vocoder(VocoderConfig.tiny(mel=MelConfig(sample_rate=SR))), root / "voc",
                 {"train_step": 3000, "run_config": {"kind": "vocoder"}})
    tok = BandTok(BandTokConfig.tiny(sample_rate=SR))
    tok.save_pretrained(root / "tok", {"train_step": 7})
    lm = TokenLM.from_pattern(TokenLMConfig.preset("tiny", rope="2d"), context_pattern("band-grid", tok.layout, 8, {}))
    save_lm(lm, root / "lm", {"pattern": "band-grid", "pattern_options": {}, "context_frames": 8,
                              "layout": tok.layout.to_dict(), "train_step": 800,
                              "tokenizer": {"source": str(root / "tok"), **dataclasses.asdict(tok.fingerprint())}})
    save_tagger(AudioTagger(TaggerConfig(sample_rate=SR, n_mels=32, stft_window=512, width=16, embed_dim=8,
                                         tags=["tone"])), root / "tagger", {"train": {"steps": 30}})
    return {"vocoder": root / "voc", "lm": root / "lm", "tokenizer": root / "tok", "tagger": root / "tagger"}


def _load(kind: str, folder: Path):
    """(model, its fingerprint as loaded) of a folder."""
    if kind == "vocoder":
        from musictok.nn.vocoder import load_vocoder, vocoder_fingerprint

        v = load_vocoder(folder)
        return v, vocoder_fingerprint(v)
    from musictok.train.lm import lm_fingerprint, load_lm

    loaded = load_lm(folder)
    return loaded.model, lm_fingerprint(loaded.model, loaded.meta)


def _meta(folder: Path) -> dict:
    return json.loads((folder / pretrained.CONFIG_FILE).read_text())


@pytest.mark.parametrize("kind", ["vocoder", "lm"])
def test_fp16_bundle_loads_the_rounded_weights_and_records_their_fingerprint(kind, exports, tmp_path):
    before, before_fp = _load(kind, exports[kind])
    done = bundle(exports[kind], tmp_path / "b", torch.float16)
    stored = load_file(str(tmp_path / "b" / pretrained.WEIGHTS_FILE))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    after, after_fp = _load(kind, tmp_path / "b")
    for k, v in before.state_dict().items():
        got = after.state_dict()[k]
        assert got.dtype == torch.float32 and torch.equal(got, v.half().float()), k
    meta = _meta(tmp_path / "b")
    assert Fingerprint(**meta["fingerprint"]) == after_fp == done.fingerprint
    assert after_fp.config_hash == before_fp.config_hash and after_fp.weights_hash != before_fp.weights_hash
    assert meta["storage_dtype"] == done.storage_dtype == "torch.float16"
    assert meta["train_step"] == _meta(exports[kind])["train_step"]  # the export's record travels
    assert done.size_bytes < 0.55 * (exports[kind] / pretrained.WEIGHTS_FILE).stat().st_size
    again = bundle(tmp_path / "b", tmp_path / "again", torch.float16)  # rounding rounded weights changes nothing
    assert again.fingerprint == done.fingerprint


def test_a_tokenizer_bundles_as_save_pretrained_does(exports, tmp_path):
    from musictok.tokenizers.base import Tokenizer

    done = bundle(exports["tokenizer"], tmp_path / "t", torch.float16)
    tok = Tokenizer.from_pretrained(exports["tokenizer"])
    direct = tok.save_pretrained(tmp_path / "d", storage_dtype=torch.float16)
    assert (tmp_path / "t" / pretrained.WEIGHTS_FILE).read_bytes() == (direct / pretrained.WEIGHTS_FILE).read_bytes()
    assert done.fingerprint == Tokenizer.from_pretrained(tmp_path / "t").fingerprint()  # checked on load too
    assert _meta(tmp_path / "t")["train_step"] == 7


def test_a_tagger_bundles_too(exports, tmp_path):
    from musictok.train.tagger import load_tagger

    done = bundle(exports["tagger"], tmp_path / "t", torch.float16)
    assert done.kind == "audio-tagger" and done.fingerprint is None and done.storage_dtype == "torch.float16"
    before, after = load_tagger(exports["tagger"]).state_dict(), load_tagger(tmp_path / "t").state_dict()
    assert all(torch.equal(after[k], v.half().float()) if v.is_floating_point() else torch.equal(after[k], v)
               for k, v in before.items())
    assert _meta(tmp_path / "t")["train"] == {"steps": 30}


def test_for_storage_rounds_floating_tensors_only():
    state = {"w": torch.tensor([1 / 3, 60000.0]), "count": torch.tensor([3, 2**40])}
    w = pretrained.for_storage(state, torch.float16)
    assert w.stored["w"].dtype == torch.float16 and torch.equal(w.stored["count"], state["count"])
    assert w.loaded["w"].dtype == torch.float32 and w.loaded["w"][0] == torch.tensor(1 / 3).half().float()
    assert w.dtype == "torch.float16"
    assert pretrained.for_storage(state).stored is state and pretrained.for_storage(state).dtype == "as trained"
    with pytest.raises(pretrained.PretrainedError, match="not a floating type"):
        pretrained.for_storage(state, torch.int8)
    with pytest.raises(pretrained.PretrainedError, match="w: a value out of torch.float16's range"):
        pretrained.for_storage({"w": torch.tensor([70000.0])}, torch.float16)  # would be inf
    assert pretrained.for_storage({"w": torch.tensor([70000.0])}, torch.bfloat16).loaded["w"].isfinite().all()


def test_a_bundle_keeps_the_model_card_and_replaces_only_with_force(exports, tmp_path):
    dest = tmp_path / "vocoder-small"
    dest.mkdir()
    (dest / "MODEL_CARD.md").write_text("# card\n")
    bundle(exports["vocoder"], dest)  # a folder holding only a card: nothing to replace
    first = (dest / pretrained.WEIGHTS_FILE).read_bytes()
    with pytest.raises(BundleError, match="already holds a saved model; pass --force"):
        bundle(exports["lm"], dest)
    assert (dest / pretrained.WEIGHTS_FILE).read_bytes() == first
    done = bundle(exports["lm"], dest, force=True)
    assert done.kind == "token-lm" and (dest / "MODEL_CARD.md").read_text() == "# card\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocoder-small"]  # no temporary folder left


# ---------------------------------------------------------------------------------------------- command line
@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args) -> Result:
    from musictok.cli import main

    capsys.readouterr()
    argv, sys.argv = sys.argv, ["musictok", *map(str, args)]
    try:
        main()  # an unexpected exception propagates and fails the test: that is the no-traceback check
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def test_cli_bundles_in_one_line(exports, tmp_path, capsys):
    r = run_cli(capsys, "bundle", exports["lm"], tmp_path / "lm", "--dtype", "fp16", "--set", "note=seed 0")
    assert r.code == 0, r.err
    fp = Fingerprint(**_meta(tmp_path / "lm")["fingerprint"])
    mb = (tmp_path / "lm" / pretrained.WEIGHTS_FILE).stat().st_size / 1e6
    assert r.out.strip().splitlines() == [f"bundled {fp.short()} into {tmp_path / 'lm'} ({mb:.1f} MB, torch.float16)"]
    assert _meta(tmp_path / "lm")["note"] == "seed 0"
    r = run_cli(capsys, "bundle", "--help")
    assert r.code == 0 and "--dtype" in r.out and "--force" in r.out


def _errors(tmp: Path, exports: dict) -> dict:
    (tmp / "taken").mkdir()
    (tmp / "taken" / pretrained.CONFIG_FILE).write_text("{}")
    (tmp / "odd").mkdir()
    (tmp / "odd" / pretrained.CONFIG_FILE).write_text('{"model": "mystery"}')
    return {  # arguments -> what the one error line names
        "missing folder": (["runs/none/export", tmp / "x"], ["runs/none/export", "no such model folder"]),
        "unknown kind": ([tmp / "odd", tmp / "x"], ["odd", "not a model this command can bundle"]),
        "destination holds a model": ([exports["vocoder"], tmp / "taken"], ["taken", "--force"]),
        "bad dtype": ([exports["vocoder"], tmp / "x", "--dtype", "fp8"], ["--dtype fp8", "fp16, bf16, fp32"]),
        "weights key set": ([exports["vocoder"], tmp / "x", "--set", "fingerprint=x"], ["fingerprint", "written by"]),
        "bad --set": ([exports["vocoder"], tmp / "x", "--set", "train_step"], ["--set 'train_step'", "key=value"]),
    }


@pytest.mark.parametrize("case", ["missing folder", "unknown kind", "destination holds a model", "bad dtype",
                                  "weights key set", "bad --set"])
def test_cli_errors_are_one_line(case, exports, tmp_path, capsys):
    args, names = _errors(tmp_path, exports)[case]
    r = run_cli(capsys, "bundle", *args)
    assert r.code != 0 and "Traceback" not in r.out + r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.err
    for s in names:
        assert s in lines[0], (s, lines[0])
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "taken" / pretrained.CONFIG_FILE).read_text() == "{}"


def test_a_tokenizer_leaves_out_what_it_can_rebuild_or_name(tmp_path):
    """SimVQ's seeded basis is rebuilt by the constructor and a bundled vocoder is named instead of copied:
    neither is in the file, the loaded model is the same (same fingerprint, state and decode), and a named
    vocoder that changed is refused."""
    from safetensors import safe_open

    from musictok.nn.vocoder import Vocoder, VocoderConfig, load_vocoder, save_vocoder
    from musictok.tokenizers.base import Tokenizer, TokenizerError
    from musictok.tokenizers.duotok import DuoTok, DuoTokConfig
    from musictok.train.tokenizer import attach_vocoder

    torch.manual_seed(0)
    duo = DuoTok(DuoTokConfig.tiny())
    voc = Vocoder(VocoderConfig.tiny(mel=duo.config.mel_config())).eval()
    save_vocoder(voc, tmp_path / "voc", storage_dtype=torch.float16)
    model = attach_vocoder(duo, load_vocoder(tmp_path / "voc"))  # the vocoder as its folder loads it
    model.save_pretrained(tmp_path / "full", storage_dtype=torch.float16)
    model.save_pretrained(tmp_path / "lean", storage_dtype=torch.float16, vocoder_ref=str(tmp_path / "voc"))
    with safe_open(str(tmp_path / "lean" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith("vocoder.") or k.endswith("vq.basis") for k in keys)
    full, lean = Tokenizer.from_pretrained(tmp_path / "full"), Tokenizer.from_pretrained(tmp_path / "lean")
    assert lean.fingerprint() == full.fingerprint()
    a, b = full.state_dict(), lean.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the basis rounded as stored
    x = torch.randn(1, 2, duo.sample_rate) * 0.1
    assert torch.equal(full.decode(full.encode(x)), lean.decode(lean.encode(x)))
    other = Vocoder(VocoderConfig.tiny(mel=duo.config.mel_config())).eval()
    save_vocoder(other, tmp_path / "voc2")
    with pytest.raises(TokenizerError, match="not this tokenizer's vocoder"):
        model.save_pretrained(tmp_path / "bad", vocoder_ref=str(tmp_path / "voc2"))
    save_vocoder(other, tmp_path / "voc", storage_dtype=torch.float16)  # the named folder changes
    with pytest.raises(TokenizerError, match="names the vocoder"):
        Tokenizer.from_pretrained(tmp_path / "lean")
