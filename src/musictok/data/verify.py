"""Checks of a rendered corpus: every folder's mix must equal the sum of its stems."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import load


@dataclass
class MixCheck:
    piece: str
    folder: str
    max_abs_error: float  # max |mix − Σ stems| over all samples


def check_piece(folder: str | Path) -> list[MixCheck]:
    """Mix-vs-stems error for the piece folder and for its musdb subfolder, if any."""
    folder = Path(folder)
    meta = json.loads((folder / "piece.json").read_text())
    out = []
    mix, _ = load(folder / meta["mix"], mono=True)
    total = np.sum([load(folder / p["stem"])[0] for p in meta["parts"]], axis=0, dtype=np.float64)
    out.append(MixCheck(meta["id"], str(folder), float(np.max(np.abs(mix - total)))))
    if meta.get("musdb"):
        sub = folder / "musdb"
        mix, _ = load(sub / meta["mix"])
        total = np.sum([load(sub / f)[0] for f in meta["musdb"]["stems"].values()], axis=0, dtype=np.float64)
        out.append(MixCheck(meta["id"], str(sub), float(np.max(np.abs(mix - total)))))
    return out
