"""DDP, verified: two processes under torchrun (gloo, CPU) train what one process trains with the doubled batch.

Each rank takes every other index of the same data order (``_FromIndex``), DDP averages the gradients and
the quantizer sums its EMA statistics over ranks, so after a few steps the weights must agree with the
single-process run up to the order of float additions. The launch is the documented one
(``torchrun --nproc_per_node 2 -m musictok train …``, docs/distributed.md) with the same YAML, only
``train.batch_size`` halved (it is per process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.train.config import load_run_config
from musictok.train.lm import LMTask, token_cache
from musictok.train.loop import Trainer
from musictok.train.tokenizer import BandTokTask

STEPS, BATCH = 4, 4  # the single process's batch; each of the two ranks takes BATCH // 2

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available in this build")


def _torchrun(config: Path) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m musictok train <kind> --config config``."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    kind = "lm" if yaml.safe_load(config.read_text())["kind"] == "lm" else "tokenizer"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "musictok", "train", kind, "--config", str(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _pair(tmp_path: Path, cfg: dict) -> tuple[Path, Path]:
    """The same YAML twice: one process with the whole batch, two with half each."""
    paths = []
    for name, batch in (("single", BATCH), ("ddp", BATCH // 2)):
        c = yaml.safe_load(yaml.safe_dump(cfg))
        c["train"] |= {"batch_size": batch, "out_dir": str(tmp_path / name)}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(c))
        paths.append(tmp_path / f"{name}.yaml")
    return paths[0], paths[1]


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], lr: float, what: str) -> None:
    """All weights together within 1e-4 of their norm, and no element further than Adam can move it.

    Single elements may differ by more than float noise: in its first steps Adam moves each weight by about
    ``lr`` times the *sign* of its gradient, so where a gradient is ~0 (a bias under a balanced hinge loss)
    the float order of the all-reduce can flip a step — at most ``2 lr`` per step. A wrong data split or
    gradients left unaveraged move every weight by ~``lr`` per step: a difference near 1e-2 of the norm."""
    assert a.keys() == b.keys()
    diff, norm = 0.0, 0.0
    for k in a:
        if not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), f"{what} {k}"
            continue
        d = (a[k] - b[k]).double()
        diff, norm = diff + float(d.pow(2).sum()), norm + float(a[k].double().pow(2).sum())
        assert float(d.abs().max()) <= 2 * lr * STEPS, f"{what} {k}: {float(d.abs().max()):.3g}"
    assert diff ** 0.5 <= 1e-4 * norm ** 0.5, f"{what}: |difference| {diff ** 0.5:.3g}, |weights| {norm ** 0.5:.3g}"


def _exported(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "export" / "model.safetensors"))


def _train_train(kind: str, single: Path, ddp: Path):
    run = load_run_config(single)
    task = LMTask(run) if kind == "lm" else BandTokTask(run)
    summary = Trainer(task, run.train).run()
    _torchrun(ddp)
    return summary


def test_ddp_lm_equals_single_process_with_the_doubled_batch(tiny_corpus, tmp_path):
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=16000))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)
    tok.save_pretrained(tmp_path / "tok")
    token_cache(tok, tiny_corpus, "train", tmp_path / "cache")  # encoded once, before the ranks read it
    cfg = {"kind": "lm", "model": {"preset": "tiny", "rope": "2d"},
           "lm": {"tokenizer": str(tmp_path / "tok"), "pattern": "band-grid", "context_seconds": 1.0,
                  "cache_dir": str(tmp_path / "cache"), "valid_windows": 4},
           "data": {"corpus": str(tiny_corpus), "valid_split": "train"},
           "train": {"steps": STEPS, "lr": 3e-3, "warmup_steps": 1, "log_every": 1, "ckpt_every": 100,
                     "valid_every": 100}}
    single, ddp = _pair(tmp_path, cfg)
    summary = _train_train("lm", single, ddp)
    _assert_close(_exported(tmp_path / "single"), _exported(tmp_path / "ddp"), 3e-3, "lm")
    # the check can fail: one process on half the batch (rank 0 without the all-reduce) is far off
    half = load_run_config(ddp, {"train.out_dir": str(tmp_path / "half")})
    Trainer(LMTask(half), half.train).run()
    with pytest.raises(AssertionError, match="difference"):
        _assert_close(_exported(tmp_path / "single"), _exported(tmp_path / "half"), 3e-3, "lm")

    ddp_valid = json.loads((tmp_path / "ddp" / "summary.json").read_text())["last_valid"]
    assert ddp_valid["loss"] == pytest.approx(summary.last_valid["loss"], rel=1e-5)
    first = json.loads((tmp_path / "single" / "log.jsonl").read_text().splitlines()[0])["loss"]
    assert summary.last_log["loss"] < first  # it learned something in four steps


def test_ddp_bandtok_with_gan_equals_single_process_with_the_doubled_batch(tiny_corpus, tmp_path):
    """Generator, discriminator (from step 2) and EMA codebook. k-means seeding and dead-code restarts are
    off: they draw rows on rank 0 from its own half of the batch — the same distribution as one process
    drawing from the whole batch, but not the same rows."""
    cfg = {"kind": "bandtok", "model": {"preset": "tiny", "sample_rate": 16000, "kmeans_init": False,
                                        "dead_after_steps": 0},
           "data": {"corpus": str(tiny_corpus), "clip_seconds": 0.512, "valid_clips": 2, "valid_seconds": 1.024,
                    "valid_split": "train"},
           "gan": {"start_step": 2, "adv_weight": 0.1, "channels": 8},
           "train": {"steps": STEPS, "lr": 1e-3, "warmup_steps": 1, "log_every": 1, "ckpt_every": 100,
                     "valid_every": 100}}
    single, ddp = _pair(tmp_path, cfg)
    init = BandTok(BandTokConfig.tiny(sample_rate=16000, kmeans_init=False, dead_after_steps=0)).state_dict()
    _train_train("bandtok", single, ddp)
    single_w, ddp_w = _exported(tmp_path / "single"), _exported(tmp_path / "ddp")
    _assert_close(single_w, ddp_w, 1e-3, "bandtok")
    moved = [k for k in single_w if single_w[k].is_floating_point() and not torch.equal(single_w[k], init[k])]
    assert len(moved) > len(single_w) // 2  # it trained: most tensors left their initial values
    a = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)["modules"]["disc"]
    b = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=True)["modules"]["disc"]
    _assert_close(a, b, 1e-3, "discriminator")
