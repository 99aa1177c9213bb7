"""The duotok-small recipe, short of training it: the four stages fit the ≈ 150 min budget at the measured
step times (each config's header says its share), and scripts/duotok_small.sh runs stages in order, skips
finished ones, resumes an interrupted one and stops the chain at one that did not finish (run here on the
tiny configs and corpus)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musictok.train.config import load_run_config

ROOT = Path(__file__).resolve().parents[2]
BUDGET_MINUTES = 150
OVERHEAD_MINUTES = 2  # per stage: start-up, validation every 500 steps, checkpoints (an allowance, not measured)


def _step_times() -> dict[str, float]:
    """Mean seconds per step by stage from docs/results/duotok-step-times.md ('1', ..., '4', '4 gan')."""
    out = {}
    for line in (ROOT / "docs/results/duotok-step-times.md").read_text().splitlines():
        m = re.match(r"\| (\d)( with the GAN)? [^|]*\|[^|]*\|[^|]*\| \*\*(\d+\.\d+)\*\* \|", line)
        if m:
            out[m[1] + (" gan" if m[2] else "")] = float(m[3])
    return out


def _budget(config: Path) -> list[tuple[int, float]]:
    """The header's ``budget:`` line as (steps, seconds per step) terms."""
    line = next(ln for ln in config.read_text().splitlines() if ln.startswith("# budget:"))
    return [(int(n.replace(",", "")), float(t)) for n, t in re.findall(r"([\d,]+) steps × (\d+\.\d+) s", line)]


def test_the_four_stages_fit_the_budget_at_the_measured_step_times():
    times = _step_times()
    assert set(times) == {"1", "2", "3", "4", "4 gan"}
    total = 0.0
    for stage in (1, 2, 3, 4):
        config = ROOT / f"configs/duotok-small-stage{stage}.yaml"
        run, terms = load_run_config(config), _budget(config)
        assert sum(n for n, _ in terms) == run.train.steps  # the header states the config's steps
        if stage < 4:
            assert terms == [(run.train.steps, times[str(stage)])]
        else:  # the GAN's steps cost what the GAN's row says, and they are most of the stage
            assert terms == [(run.gan.start_step, times["4"]), (run.train.steps - run.gan.start_step, times["4 gan"])]
            assert run.gan.start_step < 0.25 * run.train.steps
        minutes = sum(n * t for n, t in terms) / 60
        assert f"= {minutes:.1f} min" in config.read_text()  # the header's arithmetic
        total += minutes + OVERHEAD_MINUTES
    assert BUDGET_MINUTES - 15 < total <= BUDGET_MINUTES


def test_the_gan_starts_near_the_peak_learning_rate():
    from musictok.train.loop import lr_lambda

    run = load_run_config(ROOT / "configs/duotok-small-stage4.yaml")
    assert lr_lambda(run.train)(run.gan.start_step) > 0.9


def _run(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_chains_skips_and_resumes(tiny_corpus, tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "configs").mkdir()
    (repo / "data").mkdir()
    for script in ("duotok_small.sh", "duotok_ablations.sh"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    shutil.copytree(ROOT / "scripts/lib", repo / "scripts/lib")
    for stage in (1, 2, 3, 4):
        shutil.copy(ROOT / f"configs/duotok-tiny-stage{stage}.yaml", repo / "configs")
    (repo / "data/demo").symlink_to(tiny_corpus)
    env = os.environ | {"PREFIX": "duotok-tiny", "PYTHON": sys.executable,
                        "MUSICTOK": f"{sys.executable} -m musictok", "PYTHONPATH": str(ROOT / "src"),
                        "OMP_NUM_THREADS": "1"}
    script = ["bash", "scripts/duotok_small.sh"]
    ablations = ["bash", "scripts/duotok_ablations.sh"]
    musictok = [sys.executable, "-m", "musictok", "train", "tokenizer"]

    r = _run(ablations + ["no-noise"], repo, env)  # nothing to start from yet
    assert r.returncode == 1 and "runs/duotok-tiny-stage1 has not finished" in r.stderr
    r = _run(script + ["stage1", "stage2", "stage3"], repo, env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # the ablations: each from the finished stages, with its switch and nothing else changed
    r = _run(ablations + ["no-mss", "no-freeze"], repo, env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    def cfg(name: str) -> dict:  # the run config a stage recorded
        return json.loads((repo / f"runs/duotok-tiny-{name}/run.json").read_text())["run_config"]

    def differ(a: dict, b: dict) -> dict:
        a, b = a.get("duotok") or {}, b.get("duotok") or {}
        return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}

    assert differ(cfg("no-mss-stage2"), cfg("stage2")) == {"mss_weight": (0, None)}  # the config's default: 1
    assert differ(cfg("no-mss-stage3"), cfg("stage3")) == {"separated_share": (0, 0.5)}
    assert differ(cfg("no-freeze-stage3"), cfg("stage3")) == {"freeze_encoder": (False, None)}  # default: True
    assert cfg("no-freeze-stage3")["init_from"] == "runs/duotok-tiny-stage2/export"
    assert cfg("no-mss-stage3")["init_from"] == "runs/duotok-tiny-no-mss-stage2/export"
    assert not (repo / "runs/duotok-tiny-no-freeze-stage2").exists()  # no-freeze reuses stage 2
    # stage 4 interrupted after its first step (max_minutes 0 stops it like a signal would)
    r = _run(musictok + ["--config", "configs/duotok-tiny-stage4.yaml", "--out", "runs/duotok-tiny-stage4",
                         "--set", "train.max_minutes=0"], repo, env)
    assert r.returncode == 0, r.stderr[-2000:]
    # a stopped stage ends the chain: nothing after it may start from its mid-run export
    r = _run(script + ["stage4"], repo, env | {"MUSICTOK": "true"})
    assert r.returncode == 1 and "stopped before step 4" in r.stderr
    r = _run(script, repo, env)  # all four: three done, the fourth resumed to its end
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert [f"runs/duotok-tiny-stage{s}: done (4 steps)" in r.stdout for s in (1, 2, 3)] == [True] * 3
    assert "runs/duotok-tiny-stage4: 4 steps --resume" in r.stdout
    summary = (repo / "runs/duotok-tiny-stage4/summary.json").read_text()
    assert '"start_step": 1' in summary and '"end_step": 4' in summary and '"stopped_early": false' in summary
    r = _run(script, repo, env | {"MUSICTOK": "false"})  # everything done: no training is even started
    assert r.returncode == 0 and r.stdout.count(": done (4 steps)") == 4
