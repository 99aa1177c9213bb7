"""The command line: each command as a user types it, through the real entry point."""

import json
import subprocess
import sys

import numpy as np

from musictok.audio import save


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from musictok.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_every_command_has_help():
    for args in ([], ["data"], ["data", "build"], ["data", "stats"], ["info"], ["demo"]):
        r = run(*args, "--help")
        assert r.returncode == 0, (args, r.stderr)
        assert "Usage" in r.stdout


def test_info_prints_and_fails_cleanly(tmp_path):
    save(tmp_path / "a.wav", (0.25 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    r = run("info", str(tmp_path / "a.wav"), "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["sample_rate"] == 16000 and abs(row["duration"] - 1.0) < 1e-9
    (tmp_path / "bad.wav").write_text("nope")
    r = run("info", str(tmp_path / "bad.wav"))
    assert r.returncode == 1
    assert "bad.wav" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_data_build_and_stats(tmp_path):
    out = tmp_path / "corpus"
    r = run("data", "build", "--limit", "1", "--workers", "1", "--sample-rate", "16000", "--no-musdb",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "hours of audio" in r.stdout
    r = run("data", "stats", str(out), "--verify")
    assert r.returncode == 0, r.stderr
    assert "max |mix − Σ stems| over 1 pieces: 0.000e+00" in r.stdout


def test_data_errors_are_one_line(tmp_path):
    r = run("data", "build", "--corpus", "jazz", "--out", str(tmp_path))
    assert r.returncode == 1 and "unknown corpus 'jazz'" in r.stderr and "Traceback" not in r.stderr
    r = run("data", "build", "--soundfont", str(tmp_path / "missing.sf2"), "--out", str(tmp_path))
    assert r.returncode == 1 and "missing.sf2" in r.stderr and "not found" in r.stderr
    r = run("data", "stats", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and "data build" in r.stderr and "Traceback" not in r.stderr


def test_composers_are_one_entry_per_person():
    from musictok.cli import _composers

    counts = _composers(["J.S. Bach", "bach", "bach", "Monteverdi, Claudio", "monteverdi", "Palestrina"])
    assert counts == {"J.S. Bach": 3, "Monteverdi, Claudio": 2, "Palestrina": 1}
