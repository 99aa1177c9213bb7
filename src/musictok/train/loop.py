"""One training loop for every model family: checkpoints, exact resume, logging, DDP, bf16 autocast.

A model family supplies a :class:`TrainTask` (its modules, optimizers, one training step, validation,
export); :class:`Trainer` owns everything else:

- **Checkpoints** (``OUT/checkpoint.pt``) are written atomically every ``ckpt_every`` steps, on SIGINT /
  SIGTERM and at the end: modules, optimizers, LR schedulers, the torch RNG and the step. Data position is
  derived from the step, because training clips are a pure function of their index.
- **Resume** (``resume=True``) continues exactly: the steps after a resume are those an uninterrupted run
  would have taken. Log lines after the checkpoint's step are dropped so the log has no duplicates.
- **Logging**: JSON lines in ``OUT/log.jsonl``, a rich progress bar, and a plain line every
  ``log_every`` steps (readable in ``nohup`` logs).
- **DDP** under ``torchrun``: one process per device, gradients averaged, rank 0 writes.
- **Autocast**: ``amp="bf16"`` runs forward passes under bf16 autocast (CUDA, and CPUs with fast bf16).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..atomic import atomic_path, write_json, write_text
from ..errors import MusictokError
from ..metrics.version import METRICS_VERSION
from ..settings import build_checked, require

CHECKPOINT = "checkpoint.pt"
LOG = "log.jsonl"
# changing these between a run and its resume would change which clip each step sees
RESUME_INVARIANTS = ("batch_size", "seed")
STOP_REASONS = ("steps", "time", "budget", "signal")  # TrainSummary.stop_reason, least pressing first


class CheckpointError(MusictokError):
    """A checkpoint that cannot be read or does not belong to this run."""


@dataclass
class TrainConfig:
    """Loop settings shared by all trainers (model settings live in the model's own config)."""

    out_dir: str = "runs/train"
    steps: int = 10_000
    batch_size: int = 8
    lr: float = 3e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decay to lr × this
    grad_clip: float = 1.0
    log_every: int = 25
    ckpt_every: int = 250
    valid_every: int = 500
    seed: int = 0
    num_workers: int = 0
    amp: str = "none"  # "none" or "bf16"
    max_minutes: float | None = None  # stop this invocation (with a checkpoint) after this much wall time
    # The run's whole wall-time budget, summed over resumes: reaching it ends the run as done (stop_reason
    # "budget"), with the steps it got — how runs that must share equal compute (the separators) are capped.
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if self.amp not in ("none", "bf16"):
            raise ValueError(f"train.amp must be 'none' or 'bf16', not {self.amp!r}")
        for key in ("steps", "batch_size", "log_every", "ckpt_every", "valid_every"):
            require(f"train.{key}", getattr(self, key), getattr(self, key) >= 1, ">= 1")
        for key in ("warmup_steps", "num_workers", "weight_decay"):
            require(f"train.{key}", getattr(self, key), getattr(self, key) >= 0, ">= 0")
        require("train.lr", self.lr, self.lr > 0, "> 0")
        require("train.grad_clip", self.grad_clip, self.grad_clip > 0, "> 0")
        require("train.min_lr_ratio", self.min_lr_ratio, 0 <= self.min_lr_ratio <= 1, "in 0..1")
        require("train.betas", list(self.betas), len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                "two numbers in [0, 1)")
        for key in ("max_minutes", "budget_minutes"):
            value = getattr(self, key)
            if value is not None:
                require(f"train.{key}", value, value >= 0, ">= 0 (or null)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return build_checked(cls, d, "training")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by ``torchrun``; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if info.enabled and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP-wrap a module with trainable parameters when running distributed; otherwise return it."""
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=True)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") and isinstance(module.module, nn.Module) else module


class TrainTask(abc.ABC):
    """What the loop needs from a model family (abstract)."""

    @abc.abstractmethod
    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        """Build modules and optimizers on ``device`` (wrap trainable modules with `wrap_ddp`)."""

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Everything whose state is checkpointed (abstract)."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name; each gets a warmup + cosine LR schedule (abstract)."""

    @abc.abstractmethod
    def train_dataset(self, length: int) -> Dataset:
        """Training clips indexed deterministically; ``length`` covers the whole run (abstract)."""

    @abc.abstractmethod
    def train_step(self, batch: Any, step: int, autocast: Any) -> dict[str, float]:
        """Forward, backward and optimizer steps for one batch; returns scalars to log (abstract)."""

    @abc.abstractmethod
    def validate(self, autocast: Any) -> dict[str, float]:
        """Validation scalars (called on rank 0 only) (abstract)."""

    @abc.abstractmethod
    def export(self, out_dir: Path, step: int) -> None:
        """Write the deliverable (e.g. ``save_pretrained``) from the current weights (abstract)."""


class _FromIndex(Sampler[int]):
    """Indices ``start, start+1, …`` interleaved across ranks: the data position is just a number."""

    def __init__(self, start: int, length: int, info: DistInfo):
        self.start, self.length, self.info = start, length, info

    def __iter__(self) -> Iterator[int]:
        for i in range(self.start, self.length):
            yield i * self.info.world_size + self.info.rank

    def __len__(self) -> int:
        return max(self.length - self.start, 0)


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min((step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class TrainSummary:
    out_dir: str
    start_step: int
    end_step: int
    wall_seconds: float  # of this invocation, pauses (SIGTSTP) left out
    seconds_per_step: float
    last_log: dict
    last_valid: dict
    stopped_early: bool
    # why the loop ended: "steps" (all done), "budget" (train.budget_minutes reached: done with fewer steps),
    # "time" (train.max_minutes: resume to go on) or "signal" (SIGINT / SIGTERM: resume to go on)
    stop_reason: str = "steps"
    elapsed_seconds: float = 0.0  # training wall time over every invocation of the run (what the budget counts)


class Trainer:
    def __init__(self, task: TrainTask, cfg: TrainConfig, *, console=None, extra_meta: dict | None = None):
        self.task, self.cfg = task, cfg
        self.out = Path(cfg.out_dir)
        self.console = console
        self.extra_meta = extra_meta or {}
        self._elapsed_before, self._t0, self._paused = 0.0, None, 0.0  # see _elapsed
        self._stop = False

    # ---------------------------------------------------------------- checkpoints
    def _state(self, step: int) -> dict:
        return {
            "step": step,
            "modules": {k: unwrap(m).state_dict() for k, m in self.task.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": {"torch": torch.get_rng_state(),
                    **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})},
            "train_config": self.cfg.to_dict(),
            "elapsed_seconds": self._elapsed(),
        }

    def _elapsed(self) -> float:
        """Seconds of training so far, over every invocation of this run (pauses left out: see _on_pause)."""
        return self._elapsed_before + self._running()

    def _running(self) -> float:
        """Wall seconds of this invocation's loop, without the time it spent paused."""
        return time.time() - self._t0 - self._paused if self._t0 is not None else 0.0

    def save_checkpoint(self, step: int) -> None:
        if not self.dist.is_main:
            return
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(self._state(step), tmp)

    def load_checkpoint(self) -> int:
        path = self.out / CHECKPOINT
        if not path.is_file():
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:
            raise CheckpointError(path, f"cannot read checkpoint ({type(e).__name__}); delete it to start over") from None
        saved = state.get("train_config", {})
        for key in RESUME_INVARIANTS:
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise CheckpointError(path, f"was trained with {key}={saved[key]}, this run has "
                                            f"{getattr(self.cfg, key)}; resuming would change the data order")
        for k, m in self.task.modules().items():
            unwrap(m).load_state_dict(state["modules"][k])
        for k, o in self.task.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        self._elapsed_before = float(state.get("elapsed_seconds", 0.0))  # checkpoints before budgets: 0
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([t.cpu() for t in state["rng"]["cuda"]])
        return int(state["step"])

    def _trim_log(self, step: int) -> None:
        log = self.out / LOG
        if not log.is_file():
            return
        keep = []
        for ln in log.read_text().splitlines():
            try:
                if json.loads(ln).get("step", 0) <= step:
                    keep.append(ln)
            except ValueError:  # a line torn by a kill mid-write
                continue
        write_text(log, "".join(ln + "\n" for ln in keep))

    def _log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / LOG, "a") as f:
            f.write(json.dumps(row) + "\n")

    # ---------------------------------------------------------------- the loop
    def _on_signal(self, signum, frame) -> None:
        self._stop = True

    def _on_pause(self, signum, frame) -> None:
        """SIGTSTP (``kill -TSTP PID``, or Ctrl-Z): stop this process as SIGSTOP would, and on SIGCONT count the
        pause out of the run's time, so a run paused to free the CPU for a while keeps its whole wall-time
        budget (``budget_minutes``, ``max_minutes``)."""
        t = time.time()
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once continued
        self._paused += time.time() - t

    def run(self, resume: bool = False) -> TrainSummary:
        cfg = self.cfg
        self.dist, self.device = setup_distributed()
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.task.setup(self.device, self.dist, cfg)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg))
                           for k, o in self.task.optimizers().items()}
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if not resume and (self.out / CHECKPOINT).exists():
            raise FileExistsError(f"{self.out} already holds a checkpoint: pass --resume to continue it, "
                                  "or choose another --out")
        self._elapsed_before, self._t0, self._paused = 0.0, None, 0.0
        start = self.load_checkpoint() if resume else 0
        if self.dist.is_main:
            self._trim_log(start)
            meta = {"train_config": cfg.to_dict(), "metrics_version": METRICS_VERSION, **self.extra_meta}
            write_json(self.out / "run.json", meta)
        autocast = self._autocast()
        loader = DataLoader(self.task.train_dataset(cfg.steps * cfg.batch_size * self.dist.world_size),
                            batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                            sampler=_FromIndex(start * cfg.batch_size, cfg.steps * cfg.batch_size, self.dist),
                            drop_last=True, persistent_workers=cfg.num_workers > 0)
        # Creating the loader's iterator draws a base seed from the global RNG; doing it outside the training
        # stream keeps a resumed run's random draws (e.g. the MMD loss's shuffles) equal to a straight run's.
        rng = torch.get_rng_state()
        batches = iter(loader)
        torch.set_rng_state(rng)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if hasattr(signal, "SIGTSTP"):  # POSIX
            old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, self._on_pause)
        self._t0 = time.time()
        step, row, valid, reason = start, {}, {}, "steps"
        progress = self._progress(start)
        try:
            for batch in batches:
                if step >= cfg.steps:
                    break
                t_step = time.time()
                logs = self.task.train_step(batch, step, autocast)
                with warnings.catch_warnings():  # a GAN's discriminator optimizer idles until the GAN starts
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    for sched in self.schedulers.values():
                        sched.step()
                step += 1
                if progress is not None:
                    progress[0].update(progress[1], completed=step,
                                       info=" ".join(f"{k} {v:.3f}" for k, v in list(logs.items())[:4]))
                if step % cfg.log_every == 0 or step == cfg.steps:
                    lr = next(iter(self.task.optimizers().values())).param_groups[0]["lr"]
                    row = {"step": step, "time": round(self._running(), 2),
                           "sec_per_step": round(time.time() - t_step, 3), "lr": lr, **logs}
                    self._log(row)
                    if self.dist.is_main:
                        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in row.items()), flush=True)
                if step % cfg.valid_every == 0 or step == cfg.steps:
                    valid = self._validate(step, autocast)
                if step % cfg.ckpt_every == 0:
                    self.save_checkpoint(step)
                    if self.dist.is_main:
                        self.task.export(self.out / "export", step)
                reason = self._agreed(self._stop_reason())
                if reason != "steps":
                    break
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if progress is not None:
                progress[0].stop()
        self.save_checkpoint(step)
        if self.dist.is_main:
            self.task.export(self.out / "export", step)
        wall = self._running()
        summary = TrainSummary(str(self.out), start, step, wall, wall / max(step - start, 1), row, valid,
                               reason != "steps", reason, self._elapsed())
        if self.dist.is_main:
            write_json(self.out / "summary.json", {"metrics_version": METRICS_VERSION} | dataclasses.asdict(summary))
        if self.dist.enabled and dist.is_initialized():
            # leave the group together: a rank that exits while another still tears down gloo aborts
            # ("terminate called without an active exception"), and torchrun reports the run as failed
            dist.barrier()
            dist.destroy_process_group()
        return summary

    def _stop_reason(self) -> str:
        """Why this process would leave the loop after this step ("steps": it would go on)."""
        cfg = self.cfg
        if self._stop:
            return "signal"
        if cfg.budget_minutes is not None and self._elapsed() > 60 * cfg.budget_minutes:
            return "budget"
        if cfg.max_minutes is not None and self._running() > 60 * cfg.max_minutes:
            return "time"
        return "steps"

    def _agreed(self, reason: str) -> str:
        """The stop reason every rank acts on (the most pressing of theirs): all must leave the loop at the
        same step, or the others hang in the next all-reduce."""
        if not self.dist.enabled:
            return reason
        code = torch.tensor([float(STOP_REASONS.index(reason))], device=self.device)
        dist.all_reduce(code, op=dist.ReduceOp.MAX)
        return STOP_REASONS[int(code.item())]

    def _validate(self, step: int, autocast) -> dict:
        if not self.dist.is_main:
            return {}
        valid = self.task.validate(autocast)
        if valid:
            self._log({"step": step, **{f"valid/{k}": v for k, v in valid.items()}})
            print(f"step={step} " + " ".join(f"valid/{k}={v:.4g}" for k, v in valid.items()), flush=True)
        return valid

    def _autocast(self):
        if self.cfg.amp == "bf16":
            return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)
        from contextlib import nullcontext

        return nullcontext

    def _progress(self, start: int):
        if not self.dist.is_main or self.console is None:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        p = Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                     TextColumn("{task.fields[info]}"), console=self.console, transient=True)
        task = p.add_task("train", total=self.cfg.steps, completed=start, info="")
        p.start()
        return p, task
