"""Cross-check musictok's Fréchet distance against fadtk's ``calc_frechet_distance`` on the same statistics.

    pip download --no-deps fadtk==1.1.0 -d /tmp/fadtk && (cd /tmp/fadtk && unzip -q fadtk-*.whl)
    .venv/bin/python benchmarks/frechet_crosscheck.py /tmp/fadtk

fadtk cannot be installed beside musictok (it pins numpy < 2 and needs torchaudio, transformers, CLAP …), and
its distance needs none of that: this script imports only ``fadtk/fad.py`` from an unpacked wheel, with
stand-ins for the modules its top level imports but the distance never calls (torchaudio, hypy_utils), and
compares the two implementations on Gaussian samples of several sizes and dimensions, including fewer samples
than dimensions (rank-deficient covariances: fadtk takes the non-symmetric product's eigendecomposition, which
loses digits there; musictok's symmetric form does not).
Prints one line per case and the largest relative difference.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np

from musictok.metrics.frechet import frechet_distance, gaussian_stats


def _stub(name: str, **attrs) -> None:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod


def load_fadtk(root: Path):
    """fadtk's ``fad`` module without its heavy dependencies (never called by the distance)."""
    def unused(*_a, **_k):
        raise RuntimeError("not available in the cross-check")

    _stub("torchaudio")
    _stub("hypy_utils", write=unused)
    _stub("hypy_utils.tqdm_utils", tq=unused, tmap=unused, pmap=unused)
    _stub("hypy_utils.logging_utils", setup_logger=lambda *a, **k: __import__("logging").getLogger("fadtk"))
    _stub("hypy_utils.downloader", download_file=unused)
    _stub("hypy_utils.nlp_utils", substr_between=unused)
    pkg = types.ModuleType("fadtk")
    pkg.__path__ = [str(root / "fadtk")]  # a package without running its __init__ (which imports every model)
    sys.modules["fadtk"] = pkg
    return importlib.import_module("fadtk.fad")


def main() -> None:
    fad = load_fadtk(Path(sys.argv[1]))
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, d in ((2000, 8), (1000, 64), (300, 128), (96, 128)):
        a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
        b = 1.1 * rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d) + 0.2
        ma, ca = gaussian_stats(a)
        mb, cb = gaussian_stats(b)
        ours = frechet_distance(ma, ca, mb, cb)
        theirs = float(fad.calc_frechet_distance(ma, ca, mb, cb))
        rel = abs(ours - theirs) / max(abs(theirs), 1e-12)
        worst = max(worst, rel) if n > d else worst
        print(f"n={n:5d} d={d:4d}  musictok {ours:.9f}  fadtk {theirs:.9f}  relative difference {rel:.2e}"
              + ("  (n < d: singular covariances)" if n <= d else ""))
    print(f"largest relative difference (n > d): {worst:.2e}")


if __name__ == "__main__":
    main()
