"""encode / decode / eval through the real entry point, on a tiny randomly initialised tokenizer."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from musictok.audio import save
from musictok.metrics import METRICS_VERSION
from musictok.tokenizers.bandtok import BandTok, BandTokConfig

SR = 16000


def run(*args):
    return subprocess.run([sys.executable, "-c", "from musictok.cli import main; main()", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = BandTok(BandTokConfig.tiny(sample_rate=SR))
    model.train()
    model.forward_train(torch.randn(2, SR * 2) * 0.1)
    model.save_pretrained(root / "tok")
    BandTok(BandTokConfig.tiny(sample_rate=SR, seed=5)).save_pretrained(root / "other")
    t = np.arange(SR * 3) / SR
    save(root / "audio" / "a.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    save(root / "audio" / "sub" / "b.flac", (0.2 * np.sin(2 * np.pi * 330 * t[: SR * 2])).astype(np.float32), 44100)
    return root


def test_encode_decode_mirror_the_tree(setup):
    r = run("encode", str(setup / "audio"), "-o", str(setup / "tokens"), "--tokenizer", str(setup / "tok"))
    assert r.returncode == 0, r.stderr
    assert (setup / "tokens" / "a.mtok").is_file() and (setup / "tokens" / "sub" / "b.mtok").is_file()
    assert "2 encoded" in r.stdout
    r = run("encode", str(setup / "audio"), "-o", str(setup / "tokens"), "--tokenizer", str(setup / "tok"))
    assert "2 already there" in r.stdout  # a rerun skips finished files
    r = run("decode", str(setup / "tokens"), "-o", str(setup / "decoded"))
    assert r.returncode == 0, r.stderr
    from musictok.audio import load

    wav, sr = load(setup / "decoded" / "a.wav")
    assert sr == SR and len(wav) == SR * 3  # original length, the tokenizer's rate
    assert (setup / "decoded" / "sub" / "b.wav").is_file()


def test_decode_with_the_wrong_tokenizer_is_refused(setup):
    run("encode", str(setup / "audio" / "a.wav"), "-o", str(setup / "t2"), "--tokenizer", str(setup / "tok"))
    r = run("decode", str(setup / "t2" / "a.mtok"), "-o", str(setup / "d2"), "--tokenizer", str(setup / "other"))
    assert r.returncode == 1 and "made by bandtok" in r.stderr and "Traceback" not in r.stderr
    assert not (setup / "d2" / "a.wav").exists()


def test_damaged_token_file_is_refused(setup):
    run("encode", str(setup / "audio" / "a.wav"), "-o", str(setup / "t3"), "--tokenizer", str(setup / "tok"))
    p = setup / "t3" / "a.mtok"
    raw = bytearray(p.read_bytes())
    raw[-2] ^= 0xFF
    p.write_bytes(bytes(raw))
    r = run("decode", str(p), "-o", str(setup / "d3"))
    assert r.returncode == 1 and "damaged" in r.stderr
    assert not (setup / "d3" / "a.wav").exists()


def test_eval_recon_and_tokens_write_json(setup):
    r = run("eval", "recon", "--tokenizer", str(setup / "tok"), "--audio", str(setup / "audio"), "--seconds", "1",
            "--json", str(setup / "recon.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((setup / "recon.json").read_text())
    assert set(res["reconstruction"]) == {"tokens", "mel→griffin-lim"}
    assert res["reconstruction"]["tokens"]["mel_distance"] > 0
    assert res["tokenizer"]["name"] == "bandtok" and res["data"]["clips"] == 4 and "musictok_version" in res
    assert res["metrics_version"] == METRICS_VERSION  # which definitions made these numbers
    r = run("eval", "tokens", "--tokenizer", str(setup / "tok"), "--audio", str(setup / "audio"), "--seconds", "1",
            "--json", str(setup / "tokens.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((setup / "tokens.json").read_text())
    dep = res["streams"]["bands"]["dependence"]
    assert "mutual_information" in dep and "neighbour_mutual_information_time" in dep
    assert 0 <= res["stability"]["gain_minus_6db"] <= 1
    assert 0 < res["streams"]["bands"]["codebook"]["pooled"]["utilization"] <= 1
    assert res["metrics_version"] == METRICS_VERSION


def test_eval_needs_exactly_one_source(setup):
    r = run("eval", "recon", "--tokenizer", str(setup / "tok"))
    assert r.returncode == 1 and "exactly one" in r.stderr
