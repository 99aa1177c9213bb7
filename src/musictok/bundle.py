"""Bundling: a trained export made into a checkpoint to ship, in one call, whatever model it holds.

``musictok bundle runs/vocoder-small-mel/export pretrained/vocoder-small --dtype fp16``. The kind of model comes
from the export's ``config.json`` (:data:`KINDS`); it is loaded by its own loader (tokenizers check their weights
against the recorded fingerprint there) and written again by its own saver with ``storage_dtype``: the rounding
(:func:`musictok.pretrained.for_storage`) and the fingerprint of the rounded weights — the model a user loads —
are the savers' business, exactly as when a trainer exports. What the export records besides the model
(``train_step``, ``run_config``, ``init`` …) travels with it; ``extra`` adds or replaces such keys, never the
ones that describe the weights. The folder is written beside the destination and swapped in
(:func:`musictok.pretrained.write`), keeping the other files there (a ``MODEL_CARD.md``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import pretrained
from .errors import MusictokError
from .tokens import Fingerprint

# The names the command line takes; the keys of config.json's ``storage_dtype`` are torch's own names.
STORAGE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class BundleError(MusictokError):
    """A bundle that cannot be made: unknown model kind, a destination that would be replaced, bad metadata."""


@dataclass(frozen=True)
class Kind:
    """One kind of saved model: how to recognise its ``config.json``, which keys its saver writes itself
    (the export's other keys are carried over), and how to load it and save it again."""

    what: str  # for messages: "tokenizer", "vocoder", "token LM" …
    matches: Callable[[dict], bool]
    own_keys: tuple[str, ...]
    save: Callable[[Path, Path, torch.dtype | None, dict], None]  # (source, dest, storage dtype, extra meta)


def _save_tokenizer(source: Path, dest: Path, dtype: torch.dtype | None, extra: dict,
                    vocoder_ref: str | None = None) -> None:
    from .tokenizers.base import Tokenizer

    Tokenizer.from_pretrained(source).save_pretrained(dest, extra, storage_dtype=dtype, vocoder_ref=vocoder_ref)


def _save_separator(source: Path, dest: Path, dtype: torch.dtype | None, extra: dict) -> None:
    from .separation.base import Separator

    Separator.from_pretrained(source).save_pretrained(dest, extra, storage_dtype=dtype)


def _save_vocoder(source: Path, dest: Path, dtype: torch.dtype | None, extra: dict) -> None:
    from .nn.vocoder import load_vocoder, save_vocoder

    save_vocoder(load_vocoder(source), dest, extra, storage_dtype=dtype)


def _save_lm(source: Path, dest: Path, dtype: torch.dtype | None, extra: dict) -> None:
    from .train.lm import load_lm, save_lm

    loaded = load_lm(source)
    layout = {k: loaded.meta[k] for k in ("pattern", "pattern_options", "context_frames", "layout") if k in loaded.meta}
    save_lm(loaded.model, dest, layout | extra, storage_dtype=dtype)


def _save_tagger(source: Path, dest: Path, dtype: torch.dtype | None, extra: dict) -> None:
    from .train.tagger import load_tagger, save_tagger

    save_tagger(load_tagger(source), dest, extra, storage_dtype=dtype)


_COMMON = ("musictok_version", "config", "fingerprint", "storage_dtype")
KINDS: dict[str, Kind] = {
    "tokenizer": Kind("tokenizer", lambda m: isinstance(m.get("tokenizer"), str),
                      _COMMON + ("tokenizer", "state_hash", "derived_state", "vocoder_ref"), _save_tokenizer),
    "separator": Kind("separator", lambda m: isinstance(m.get("separator"), str),
                      _COMMON + ("separator", "stems"), _save_separator),
    "vocoder": Kind("vocoder", lambda m: m.get("model") == "vocoder", _COMMON + ("model",), _save_vocoder),
    "token-lm": Kind("token LM", lambda m: m.get("model") == "token-lm",
                     _COMMON + ("model", "vocab", "pattern", "pattern_options", "context_frames", "layout"), _save_lm),
    "audio-tagger": Kind("audio tagger", lambda m: m.get("model") == "audio-tagger", _COMMON + ("model",),
                         _save_tagger),
}


@dataclass(frozen=True)
class Bundle:
    """What :func:`bundle` wrote."""

    folder: Path
    kind: str  # a key of KINDS
    fingerprint: Fingerprint | None  # as recorded in the new config.json (separators and taggers have none)
    storage_dtype: str  # "torch.float16" …, or "as trained"
    size_bytes: int  # of model.safetensors


def checkpoint_kind(meta: dict) -> str | None:
    """The key of :data:`KINDS` whose models a ``config.json`` describes, or None."""
    return next((name for name, kind in KINDS.items() if kind.matches(meta)), None)


def bundle(source: str | os.PathLike, dest: str | os.PathLike, storage_dtype: torch.dtype | None = torch.float16, *,
           extra: dict | None = None, force: bool = False, vocoder_ref: str | None = None) -> Bundle:
    """Load the saved model in ``source`` (a folder or a bundled name) and write it to ``dest`` with its floating
    weights stored as ``storage_dtype`` (None: as trained). ``extra``: metadata keys to add or replace.
    A ``dest`` that already holds a model is replaced only with ``force``; its other files are kept.
    ``vocoder_ref``: a tokenizer names this bundled vocoder instead of storing it (``save_pretrained``)."""
    src = pretrained.resolve(source)
    try:
        meta = json.loads((src / pretrained.CONFIG_FILE).read_text())
    except ValueError:
        raise BundleError(src / pretrained.CONFIG_FILE, "not valid JSON") from None
    name = checkpoint_kind(meta) if isinstance(meta, dict) else None
    if name is None:
        raise BundleError(src / pretrained.CONFIG_FILE, "not a model this command can bundle (known: "
                          f"{', '.join(k.what for k in KINDS.values())})")
    kind = KINDS[name]
    if vocoder_ref is not None and name != "tokenizer":
        raise BundleError(src, f"--vocoder-ref is for tokenizers; this is a {kind.what}")
    out = Path(dest)
    if out.exists() and not out.is_dir():
        raise BundleError(out, "exists and is not a folder")
    if not force and any((out / f).exists() for f in (pretrained.CONFIG_FILE, pretrained.WEIGHTS_FILE)):
        raise BundleError(out, "already holds a saved model; pass --force to replace it (its other files, "
                               "such as MODEL_CARD.md, are kept)")
    clash = sorted(set(extra or {}) & set(kind.own_keys))
    if clash:
        raise BundleError(f"{', '.join(clash)}: describes the {kind.what}'s weights and is written by the save "
                          "itself; only other metadata (train_step, notes …) can be set")
    carried = {k: v for k, v in meta.items() if k not in kind.own_keys} | (extra or {})
    kind.save(src, out, storage_dtype, carried, **({"vocoder_ref": vocoder_ref} if vocoder_ref else {}))
    written = json.loads((out / pretrained.CONFIG_FILE).read_text())
    fp = written.get("fingerprint")
    return Bundle(out, name, Fingerprint(**fp) if fp else None, written.get("storage_dtype", "as trained"),
                  (out / pretrained.WEIGHTS_FILE).stat().st_size)
