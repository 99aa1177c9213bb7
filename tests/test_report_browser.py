"""The bench's HTML report in a real browser: headless Chromium loads it, and the tables, every plot and every
audio player render (images decoded, audio metadata read), offline.

The report is the committed bench run (``docs/results/bench-2026-11-22.json`` and its plots) written by
``report.html_report``, with short synthetic clips for the players (the run's own audio is not kept). The
browser is Debian's ``chromium-headless-shell``: ``make test`` unpacks it into ``data/chromium``
(``scripts/fetch_chromium.sh``); ``MUSICTOK_CHROMIUM`` or a Chromium on the PATH also do. Without one the
test skips, saying why — except where ``MUSICTOK_REQUIRE_BROWSER=1`` (CI sets it): there a missing or broken
browser fails, so the report is never passed unseen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from musictok.report import audio_data_uri, html_report

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "docs" / "results" / "bench-2026-11-22.json"
UNPACKED = REPO / "data" / "chromium"
NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome")

# Waits for every image and audio element to finish loading (or fail), then writes what it found into
# <pre id="musictok-check"> for --dump-dom to return.
CHECK = """<pre id="musictok-check">pending</pre><script>
(function () {
  var t0 = Date.now();
  function poll() {
    var imgs = Array.from(document.images), audios = Array.from(document.querySelectorAll('audio'));
    var settled = imgs.every(function (i) { return i.complete; }) &&
                  audios.every(function (a) { return a.readyState >= 1 || a.error; });
    if (!settled && Date.now() - t0 < 20000) { setTimeout(poll, 50); return; }
    document.getElementById('musictok-check').textContent = JSON.stringify({
      settled: settled,
      tables: Array.from(document.querySelectorAll('table')).map(function (t) {
        return {rows: t.rows.length, width: t.getBoundingClientRect().width}; }),
      images: imgs.map(function (i) { return {alt: i.alt, width: i.naturalWidth, height: i.naturalHeight,
                                              shown: i.getBoundingClientRect().width}; }),
      audios: audios.map(function (a) { return {ready: a.readyState, duration: a.duration,
                                                error: a.error ? a.error.code : null,
                                                shown: a.getBoundingClientRect().width}; })
    });
  }
  window.addEventListener('load', poll);
})();
</script>"""


def _browser() -> tuple[str, dict[str, str]] | None:
    """The Chromium to run and its environment (the unpacked one needs its libraries on the path)."""
    env = dict(os.environ)
    if os.environ.get("MUSICTOK_CHROMIUM"):
        return os.environ["MUSICTOK_CHROMIUM"], env
    unpacked = UNPACKED / "usr" / "lib" / "chromium" / "chromium-headless-shell"
    if unpacked.is_file():
        libs = sorted({str(p.parent) for p in (UNPACKED / "usr" / "lib").rglob("*.so*")})
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")])
        return str(unpacked), env
    for name in NAMES:
        if shutil.which(name):
            return shutil.which(name), env
    return None


def _run(args: list[str], page: Path) -> subprocess.CompletedProcess:
    found = _browser()
    assert found is not None
    exe, env = found
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
           "--allow-file-access-from-files", *args, page.as_uri()]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _skip_or_fail(reason: str) -> None:
    """Skip on a user's machine without a working browser; fail where one is required (CI)."""
    if os.environ.get("MUSICTOK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MUSICTOK_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> None:
    found = _browser()
    if found is None:
        _skip_or_fail("no Chromium: `make test` unpacks Debian's chromium-headless-shell into data/chromium "
                      "(scripts/fetch_chromium.sh); or set MUSICTOK_CHROMIUM")
    probe = subprocess.run([found[0], "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", "about:blank"],
                           env=found[1], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0 or "<html" not in probe.stdout:
        missing = re.findall(r"lib[\w.+-]+\.so[\w.]*", probe.stderr)
        _skip_or_fail(f"{found[0]} does not start here"
                      + (f" (missing {missing[0]})" if missing else f": {probe.stderr.strip()[-200:]}"))


def report_page(out: Path, seconds: float = 1.5, sample_rate: int = 24000) -> tuple[Path, dict]:
    """The committed bench run as the HTML report, with two synthetic clips per player row."""
    result = json.loads(BENCH.read_text())
    plots = {k: BENCH.with_name(f"{BENCH.stem}-{k.replace('_', '-')}.png")
             for k in ("tradeoff", "loss_by_position", "usage")}
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    clips = [0.3 * np.sin(2 * np.pi * f * t) * np.exp(-t) for f in (220.0, 330.0)]
    uris = [audio_data_uri(c, sample_rate) for c in clips]
    media = {"clips": {f"test clip {i + 1}": u for i, u in enumerate(uris)},
             "recon": {r["tokenizer"]: uris for r in result["rows"][:2]},
             "continuation": {f"{r['tokenizer']} / {r['pattern']}": uris for r in result["rows"][:1]}}
    page = out / "report.html"
    page.write_text(html_report(result, plots, media))
    return page, {"result": result, "plots": plots, "media": media, "seconds": seconds}


def test_the_report_renders_in_a_browser(browser, tmp_path):
    page, made = report_page(tmp_path)
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    done = _run(["--virtual-time-budget=30000", "--dump-dom"], checked)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="musictok-check">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "pending", done.stdout[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert seen["settled"]
    result = made["result"]
    # the results table (a header and one row per tokenizer / pattern), the speed table, one per listened clip
    assert [t["rows"] for t in seen["tables"][:2]] == [1 + len(result["rows"]), 1 + len(result["speed"]["rows"])]
    assert len(seen["tables"]) == 2 + len(made["media"]["clips"]) and all(t["width"] > 0 for t in seen["tables"])
    # every plot decoded at its PNG's size, and laid out
    assert [i["alt"] for i in seen["images"]] == list(made["plots"])
    for img, path in zip(seen["images"], made["plots"].values()):
        import matplotlib.image

        h, w = matplotlib.image.imread(path).shape[:2]
        assert (img["width"], img["height"]) == (w, h) and img["shown"] > 0, img
    # every audio player: its Ogg decoded far enough to know its duration, no media error, a visible control
    media = made["media"]
    want = len(media["clips"]) * (1 + len(media["recon"]) + len(media["continuation"]))
    assert len(seen["audios"]) == want
    for a in seen["audios"]:
        assert a["error"] is None and a["ready"] >= 1 and a["shown"] > 0, a
        assert a["duration"] == pytest.approx(made["seconds"], abs=0.05), a


def test_a_screenshot_shows_the_page(browser, tmp_path):
    page, _ = report_page(tmp_path)
    shot = tmp_path / "shot.png"
    done = _run([f"--screenshot={shot}", "--window-size=1400,1800", "--hide-scrollbars"], page)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1800, 1400)
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not a blank page
