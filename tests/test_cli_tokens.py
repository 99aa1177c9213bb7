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


def _notes(f0: float, rate: float, seconds: float, sr: int) -> np.ndarray:
    """Repeated decaying notes of six harmonics: music enough for a trained tokenizer to keep apart."""
    t = np.arange(int(seconds * sr)) / sr
    env = (np.sin(2 * np.pi * rate * t) > 0) * np.exp(-3 * (t * rate * 2 % 1))
    return (0.15 * env * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 7))).astype(np.float32)


def test_stereo_44k_round_trip_keeps_channel_order_length_and_rate(tmp_path):
    """The bundled bandtok-small (fast enough): left and right come back in order, at 44.1 kHz, exact length."""
    from musictok.audio import load
    from musictok.metrics.reconstruction import mel_distance

    x = np.stack([_notes(220.0, 2.0, 2.0, 44100), _notes(587.0, 3.0, 2.0, 44100)])
    save(tmp_path / "in" / "s.wav", x, 44100)
    r = run("encode", str(tmp_path / "in"), "-o", str(tmp_path / "t"), "--tokenizer", "bandtok-small")
    assert r.returncode == 0, r.stderr
    r = run("info", str(tmp_path / "t" / "s.mtok"))
    assert r.returncode == 0 and "stereo (left, right)" in r.stdout and "44100 Hz, 2 ch" in r.stdout, r.stdout
    r = run("decode", str(tmp_path / "t"), "-o", str(tmp_path / "d"), "--sample-rate", "original")
    assert r.returncode == 0, r.stderr
    y, sr = load(tmp_path / "d" / "s.wav", mono=False)
    assert sr == 44100 and y.shape == x.shape
    d = [[float(mel_distance(torch.from_numpy(x[j]), torch.from_numpy(y[i]), sr)) for j in range(2)] for i in range(2)]
    assert d[0][0] < d[0][1] - 1 and d[1][1] < d[1][0] - 1, d  # each channel is nearer its own source
    r = run("decode", str(tmp_path / "t"), "-o", str(tmp_path / "m"))  # the default: the tokenizer's rate
    y, sr = load(tmp_path / "m" / "s.wav", mono=False)
    assert r.returncode == 0 and sr == 24000 and y.shape == (2, round(x.shape[-1] * 24000 / 44100))


def test_old_mono_token_file_decodes_and_says_it_lacks_the_input_rate(setup, tmp_path):
    """A format-1 file (no channels, no input rate) decodes as before; `original` falls back with a warning."""
    import json as _json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    from musictok.tokens import _checksum

    run("encode", str(setup / "audio" / "a.wav"), "-o", str(tmp_path / "t"), "--tokenizer", str(setup / "tok"))
    with safe_open(str(tmp_path / "t" / "a.mtok"), framework="numpy") as f:
        header, arrays = _json.loads(f.metadata()["musictok"]), {k: f.get_tensor(k) for k in f.keys()}
    header = {k: v for k, v in header.items() if k not in ("channels", "source", "checksum")}
    header["checksum"] = _checksum(arrays, header)
    save_file(arrays, str(tmp_path / "t" / "a.mtok"), metadata={"musictok": _json.dumps(header)})
    r = run("decode", str(tmp_path / "t"), "-o", str(tmp_path / "d"), "--sample-rate", "original")
    assert r.returncode == 0 and "does not record its input's sample rate" in r.stderr, r.stderr
    from musictok.audio import load

    wav, sr = load(tmp_path / "d" / "a.wav")
    assert sr == SR and len(wav) == SR * 3
