"""Saved model folders: ``config.json`` + ``model.safetensors``, written atomically, never unpickled.

Used by tokenizers (``save_pretrained`` / ``from_pretrained``), separators, the vocoder and the token LM alike.
Named folders are looked up in ``$MUSICTOK_PRETRAINED`` (``:``-separated) and then in the repository's
``pretrained/``. Any of them can be stored in half precision (:func:`for_storage`): the file halves, and loading
puts the rounded weights back into the model's own (float32) parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import __version__
from .atomic import make_temp_dir
from .errors import MusictokError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class PretrainedError(MusictokError):
    """A saved model folder that cannot be found or read."""


def search_path() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("MUSICTOK_PRETRAINED", "").split(os.pathsep) if p]
    paths.append(Path(__file__).resolve().parents[2] / "pretrained")
    return paths


def resolve(name_or_dir: str | os.PathLike) -> Path:
    """A folder path, or the name of a bundled folder, -> the folder holding ``config.json``."""
    p = Path(name_or_dir)
    if (p / CONFIG_FILE).is_file():
        return p
    if p.exists():
        raise PretrainedError(f"{p}: no {CONFIG_FILE} here, so it is not a saved model folder")
    for root in search_path():
        if (root / str(name_or_dir) / CONFIG_FILE).is_file():
            return root / str(name_or_dir)
    known = sorted({d.name for root in search_path() if root.is_dir()
                    for d in root.iterdir() if (d / CONFIG_FILE).is_file()})
    raise PretrainedError(f"{name_or_dir}: no such model folder or bundled checkpoint "
                          f"(bundled: {', '.join(known) or 'none'})")


def check_device(device: str | torch.device) -> torch.device:
    """The torch device called ``device``; a :class:`PretrainedError` (naming it) when the name is not a
    device or this machine has no such device, instead of an error from deep inside weight loading."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise PretrainedError(str(device), "not a device name (cpu, cuda, cuda:1, mps …)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PretrainedError(str(device), "CUDA is not available on this machine (no GPU, or a CPU-only "
                                               "torch); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PretrainedError(str(device), f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PretrainedError(str(device), "MPS is not available on this machine; use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise PretrainedError(str(device), f"{dev.type} devices are not supported; use cpu or cuda")
    return dev


@dataclass(frozen=True)
class StoredWeights:
    """A state dict as it goes into ``model.safetensors`` and as it comes back out of it into the model."""

    stored: dict[str, Tensor]  # what the file holds: floating tensors in the storage dtype
    loaded: dict[str, Tensor]  # what ``load_state_dict`` makes of it: the model's dtypes, rounded values
    dtype: str  # recorded in ``config.json`` as ``storage_dtype``: "torch.float16", or "as trained"


def for_storage(state: dict[str, Tensor], dtype: torch.dtype | None = None) -> StoredWeights:
    """Round the floating tensors of ``state`` to ``dtype`` for storage (integer buffers — step counters,
    code usage — stay as they are). A fingerprint saved beside them must hash :attr:`StoredWeights.loaded`,
    the weights a user gets back, not the unrounded ones."""
    if dtype is None:
        return StoredWeights(state, state, "as trained")
    if not dtype.is_floating_point:
        raise PretrainedError(f"storage dtype {dtype}: not a floating type (float16, bfloat16, float32)")
    stored = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    for k, v in stored.items():  # fp16 tops out at 65504: a larger weight would silently become inf
        if v.is_floating_point() and not bool(torch.isfinite(v).all()) and bool(torch.isfinite(state[k]).all()):
            raise PretrainedError(f"{k}: a value out of {dtype}'s range (largest |x| "
                                  f"{float(state[k].abs().max()):.4g}); store it in a wider dtype")
    loaded = {k: v.to(state[k].dtype) for k, v in stored.items()}
    return StoredWeights(stored, loaded, str(dtype))


def write(directory: str | os.PathLike, state: dict[str, Tensor], meta: dict) -> Path:
    """Write weights and config into a temporary folder, then swap it into place. Other files already in
    the folder (a model card, a README) are kept: replacing the weights must not delete what the user wrote."""
    from safetensors.torch import save_file

    d = Path(directory)
    tmp = make_temp_dir(d)
    try:
        if d.is_dir():
            for f in d.iterdir():
                if f.name not in (WEIGHTS_FILE, CONFIG_FILE) and not f.name.startswith("."):
                    (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps({"musictok_version": __version__} | meta, indent=1))
        for f in (tmp / WEIGHTS_FILE, tmp / CONFIG_FILE):
            os.chmod(f, 0o644)  # safetensors creates owner-only files; a model folder is meant to be shared
        if d.exists():
            old = d.with_name(f".{d.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(d, old)
            os.replace(tmp, d)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d


def read(name_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Path, dict, dict[str, Tensor]]:
    """``(folder, config dict, state dict)`` of a saved model folder."""
    from safetensors.torch import load_file

    check_device(map_location)
    d = resolve(name_or_dir)
    try:
        meta = json.loads((d / CONFIG_FILE).read_text())
    except ValueError:
        raise PretrainedError(f"{d / CONFIG_FILE}: not valid JSON") from None
    try:
        state = load_file(str(d / WEIGHTS_FILE), device=str(map_location))
    except Exception as e:
        raise PretrainedError(f"{d / WEIGHTS_FILE}: cannot read weights ({type(e).__name__})") from None
    return d, meta, state
