"""Installing musictok keeps the torch an environment already has (issue 17).

pyproject.toml declares compatible ranges; the exact versions of `make demo` / `make test` / CI live in
constraints.txt. The first tests check that the two files agree with each other and with the Makefile. The
slow ones build the wheel, make a fresh venv that already holds a torch, and ask pip's own resolver what
installing the wheel would do (``pip install --dry-run --report``: the whole resolution, nothing installed):
torch must not be on the list, neither for the CPU torch on this machine's disk (really installed) nor for
an older CUDA build at the declared lower bound (its metadata only: the index offers no other torch
cheaply, and the resolver reads nothing else).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Iterator

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the checks need nothing else from the newer Python

ROOT = Path(__file__).resolve().parents[1]
PIP_TIMEOUT = 600  # seconds; a cold pip cache on a slow index, not the usual few seconds


def _need_repo() -> None:
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "constraints.txt").is_file():
        pytest.skip("needs the source tree (pyproject.toml, constraints.txt), not an installed copy")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _makefile_variable(name: str) -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{name} :=(.*)$", text, re.M)
    assert m, f"Makefile: no {name} variable"
    return m.group(1).split()


# ------------------------------------------------------------------------------------- the files agree
def test_constraints_pin_everything_pyproject_declares_inside_its_ranges():
    _need_repo()
    pins, project = _constraints(), _pyproject()["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"] \
        + project["optional-dependencies"]["bench"]
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in pins, f"constraints.txt pins no {spec.name}"
        assert spec.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {spec.name}=={pins[name]}, outside pyproject's {spec}: -c would conflict"


def test_makefile_installs_only_pinned_names():
    """The Makefile names packages without versions (torch above all: unpinned, pip would fetch gigabytes)."""
    _need_repo()
    pins, makefile = _constraints(), (ROOT / "Makefile").read_text()
    assert pins["torch"] == Version("2.13.0"), "the CPU wheel on disk; another torch downloads gigabytes"
    assert "-c constraints.txt torch\n" in makefile
    assert "-c constraints.txt tinysoundfont\n" in makefile and "tinysoundfont" in pins
    baselines = [canonicalize_name(n) for n in _makefile_variable("BASELINES")]
    assert all("=" not in n for n in baselines)
    assert set(baselines) <= set(pins), f"unpinned: {sorted(set(baselines) - set(pins))}"
    bench = {canonicalize_name(Requirement(r).name) for r in _pyproject()["project"]["optional-dependencies"]["bench"]}
    assert bench <= set(baselines), "`make bench-baselines` must install what the bench extra names"
    assert re.search(r"^\$\(STAMP\): .*constraints\.txt", makefile, re.M), "the venv must rebuild when pins change"


def test_torch_is_a_lower_bound_below_the_locked_release():
    _need_repo()
    (torch,) = [r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == "torch"]
    ops = {s.operator for s in torch.specifier}
    assert ops == {">="}, f"torch must only have a lower bound, got {torch.specifier}"
    assert _torch_floor() < _constraints()["torch"]


def test_rendering_without_tinysoundfont_says_how_to_install_it(monkeypatch):
    """pip brings no synthesizer (tinysoundfont is installed --no-deps): rendering says how to get it."""
    from musictok.data.render import SoundFontError, embedded_soundfont, render_notes

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # what `import tinysoundfont` sees when absent
    with pytest.raises(SoundFontError) as e:
        render_notes([], 0, 16000, 64, embedded_soundfont())
    if (ROOT / "constraints.txt").is_file():
        assert f"pip install --no-deps tinysoundfont=={_constraints()['tinysoundfont']}" in str(e.value)


def _torch_floor() -> Version:
    (torch,) = [r for r in map(Requirement, _pyproject()["project"]["dependencies"]) if r.name == "torch"]
    return Version(next(s.version for s in torch.specifier if s.operator == ">="))


# ------------------------------------------------------------------------------ pip, in a fresh venv
def _pip_usable() -> None:
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed in this environment")
    if Version(importlib.metadata.version("pip")) < Version("22.3"):
        pytest.skip("pip >= 22.3 needed (--python and --dry-run --report)")


def _pip(*args: str, python: Path | None = None) -> subprocess.CompletedProcess:
    target = ["--python", str(python)] if python else []
    return subprocess.run([sys.executable, "-m", "pip", *target, *args], capture_output=True, text=True,
                          timeout=PIP_TIMEOUT)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The musictok wheel, built from a copy of the tree (a build in place would leave build/ behind)."""
    _need_repo()
    _pip_usable()
    try:
        if Version(importlib.metadata.version("setuptools")) < Version("77"):
            raise importlib.metadata.PackageNotFoundError
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("setuptools >= 77 is needed to build the wheel without fetching a build environment")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    r = _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    (built,) = (tmp / "dist").glob("musictok-*.whl")
    return built


@pytest.fixture
def venv_python(tmp_path) -> Iterator[Path]:
    """The python of a new venv with no packages (not even pip: the outer pip drives it with ``--python``).
    Removed afterwards: with torch inside it weighs 0.7 GB, and pytest keeps the last three runs' folders."""
    path = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(path)
    yield path / "bin" / "python"
    shutil.rmtree(path, ignore_errors=True)


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _would_install(python: Path, wheel: Path, tmp: Path) -> dict[str, str]:
    """``{name: version}`` that ``pip install WHEEL`` would install into the venv of ``python``."""
    report = tmp / "report.json"
    r = _pip("install", "--dry-run", "--quiet", "--report", str(report), str(wheel), python=python)
    if r.returncode != 0 and "from versions: none" in r.stderr:
        pytest.skip("no package index reachable to resolve musictok's dependencies")
    assert r.returncode == 0, r.stderr
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def _installed_torch(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_wheel_keeps_the_installed_torch(wheel, venv_python, tmp_path):
    """The CPU torch of this environment, installed from pip's find-links alone (no index), is kept."""
    version = importlib.metadata.version("torch")
    # --no-compile: byte-compiling torch's thousands of modules is most of an install's CPU time
    r = _pip("install", "--no-index", "--no-deps", "--no-compile", "--quiet", f"torch=={version}",
             python=venv_python)
    if r.returncode != 0:
        pytest.skip(f"no torch {version} wheel among pip's find-links (this machine keeps one on disk)")
    plan = _would_install(venv_python, wheel, tmp_path)
    assert "musictok" in plan and "numpy" in plan  # the dry run did resolve the dependencies
    assert "torch" not in plan, f"pip would replace torch {version} with {plan.get('torch')}"
    assert _installed_torch(venv_python) == version
    print(f"\nfresh venv with torch {version}: pip would install {len(plan)} packages, torch not among them")


@pytest.mark.slow
def test_wheel_keeps_an_older_cuda_torch(wheel, venv_python, tmp_path):
    """A CUDA build at the declared lower bound (metadata only: what the resolver reads) is kept too."""
    floor = _torch_floor()
    version = ".".join(map(str, (*floor.release, 0, 0)[:3])) + "+cu121"
    info = _site_packages(venv_python) / f"torch-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    assert _installed_torch(venv_python) == version
    plan = _would_install(venv_python, wheel, tmp_path)
    assert "musictok" in plan
    assert "torch" not in plan, f"pip would replace torch {version} with {plan.get('torch')}"
    print(f"\nfresh venv with torch {version}: pip would install {len(plan)} packages, torch not among them")
