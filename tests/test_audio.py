import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musictok import audio
from musictok.audio import AudioError


def sine(sr=16000, seconds=1.0, freq=440.0, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_save_load_roundtrip_wav_and_flac(tmp_path):
    x = sine()
    for name in ("a.wav", "a.flac"):
        audio.save(tmp_path / name, x, 16000)
        y, sr = audio.load(tmp_path / name)
        assert sr == 16000 and y.shape == x.shape
        assert np.max(np.abs(y - x)) < (1e-7 if name.endswith("wav") else 2e-7)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_resamples_and_downmixes(tmp_path):
    stereo = np.stack([sine(), 0.5 * sine()])
    sf.write(tmp_path / "s.wav", stereo.T, 16000)
    y, sr = audio.load(tmp_path / "s.wav", sample_rate=24000)
    assert sr == 24000 and y.ndim == 1 and abs(len(y) - 24000) <= 1
    # band-limited resampling keeps a 440 Hz sine's amplitude: mean of channels = 0.375
    assert abs(np.max(np.abs(y[1000:-1000])) - 0.375) < 0.01
    y2, _ = audio.load(tmp_path / "s.wav", mono=False)
    assert y2.shape == (2, 16000)


def test_load_window(tmp_path):
    x = np.arange(16000, dtype=np.float32) / 16000
    audio.save(tmp_path / "r.wav", x, 16000)
    y, _ = audio.load(tmp_path / "r.wav", offset=0.5, duration=0.25)
    assert len(y) == 4000 and y[0] == pytest.approx(0.5)


def test_peak_and_loudness_normalize():
    x = sine(amp=0.1)
    y = audio.peak_normalize(x, -6.0)
    assert 20 * math.log10(np.max(np.abs(y))) == pytest.approx(-6.0, abs=1e-4)
    z = audio.loudness_normalize(sine(seconds=3.0), 16000, -23.0)
    assert audio.loudness(z, 16000) == pytest.approx(-23.0, abs=0.05)
    assert audio.peak_normalize(np.zeros(10, np.float32)).sum() == 0


def test_info(tmp_path):
    audio.save(tmp_path / "a.flac", sine(seconds=2.0), 16000)
    i = audio.info(tmp_path / "a.flac")
    assert i.duration == pytest.approx(2.0) and i.channels == 1 and i.sample_rate == 16000
    assert i.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.01)


def _expect(path: Path, cause: str, **kw):
    with pytest.raises(AudioError) as e:
        audio.load(path, **kw)
    msg = str(e.value)
    assert str(path) in msg, msg
    assert cause in msg, msg


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.wav", "not found")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _expect(p, "empty")


def test_not_audio(tmp_path):
    p = tmp_path / "text.wav"
    p.write_text("this is not a sound file at all\n" * 20)
    _expect(p, "cannot be decoded as audio")


def test_truncated_file(tmp_path):
    good = tmp_path / "good.flac"
    audio.save(good, sine(), 16000)
    p = tmp_path / "cut.flac"
    p.write_bytes(good.read_bytes()[:30])
    _expect(p, "cannot be decoded as audio")


def test_zero_length(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    _expect(p, "zero length")


def test_nan_and_inf_samples(tmp_path):
    x = sine()
    x[100] = np.nan
    x[200] = np.inf
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    _expect(p, "NaN/Inf")


def test_absurd_sample_rate(tmp_path):
    p = tmp_path / "rate.wav"
    sf.write(p, sine(), 16000)
    raw = bytearray(p.read_bytes())
    raw[24:28] = (3_000_000).to_bytes(4, "little")  # WAV header: sample rate field
    p.write_bytes(bytes(raw))
    _expect(p, "sample rate 3000000 Hz")


def test_directory_is_not_audio(tmp_path):
    _expect(tmp_path, "is a directory")


def test_save_refuses_nan_and_leaves_nothing(tmp_path):
    x = sine()
    x[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        audio.save(tmp_path / "bad.wav", x, 16000)
    assert list(tmp_path.iterdir()) == []


def test_find_audio(tmp_path):
    (tmp_path / "sub").mkdir()
    audio.save(tmp_path / "sub" / "b.flac", sine(), 16000)
    audio.save(tmp_path / "a.wav", sine(), 16000)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in audio.find_audio(tmp_path)] == ["a.wav", "b.flac"]


def test_streaming_loudness_is_pyloudnorms(tmp_path):
    """BS.1770 fed block by block (what `info` does, so a 3-hour file needs no 3-hour array)."""
    import pyloudnorm

    rng = np.random.default_rng(0)
    for sr, n, c in ((16000, 16000 * 3 + 123, 1), (44100, 44100 * 2, 2), (48000, int(48000 * 0.45), 5)):
        x = (rng.standard_normal((c, n)) * np.linspace(0, 0.3, n)).astype(np.float32)
        meter = audio.LoudnessMeter(sr, c, n)
        for i in range(0, n, 5000):
            meter.add(x[:, i: i + 5000])
        expected = pyloudnorm.Meter(sr).integrated_loudness(x.T.astype(np.float64))
        assert meter.result() == pytest.approx(expected, abs=1e-9)
    assert math.isnan(audio.loudness(np.zeros((8, 16000), np.float32) + 0.1, 16000))  # BS.1770 stops at 5


def test_truncated_files_are_refused(tmp_path):
    sf.write(tmp_path / "a.wav", sine(seconds=2.0), 16000, subtype="PCM_16")
    whole = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    _expect(tmp_path / "cut.wav", "header promises 2.00 s, the file holds 1.00 s")
    sf.write(tmp_path / "a.ogg", sine(seconds=4.0), 16000, format="OGG", subtype="VORBIS")
    ogg = (tmp_path / "a.ogg").read_bytes()
    (tmp_path / "cut.ogg").write_bytes(ogg[: int(len(ogg) * 0.8)])
    _expect(tmp_path / "cut.ogg", "end-of-stream")
    assert audio.info(tmp_path / "a.ogg").duration == pytest.approx(4.0)


def test_outputs_are_checked_before_any_work(tmp_path):
    for bad, why in (("x.mp3xyz", "cannot write audio with extension"), ("noext", "no extension")):
        with pytest.raises(AudioError, match=why):
            audio.check_output(tmp_path / bad)
    with pytest.raises(AudioError, match="is a folder"):
        audio.check_output(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(AudioError, match="is a file, not a folder"):
        audio.check_output(tmp_path / "f" / "a.wav")
    assert audio.check_output(tmp_path / "new" / "a.flac") == tmp_path / "new" / "a.flac"
