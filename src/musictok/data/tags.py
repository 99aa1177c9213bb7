"""Attribute tags of a corpus's pieces, read from its ``metadata.jsonl``: the targets of the attribute probe.

Only what the metadata really records becomes a tag, and a tag that does not vary is reported as such rather
than probed (a constant label has no AP or ROC-AUC):

- rendered corpora (``data build``): the **mode** of the recorded key (``minor``), **triple meter** (time
  signature numerator 3), a **tempo class** (``fast``: above the corpus's median tempo), and one tag per
  **instrument family** present among the parts' General MIDI programmes (the families of
  ``data/stems.py: GM_FAMILIES``; a programme outside them falls back to its GM block of eight), plus
  ``drums`` when a generated drum part is in the mix. The **composer** is a tag only when the corpus has
  several (409 chorales are all Bach, written two ways: ``bach`` and ``J.S. Bach``, which is one composer);
- imported recordings (``data import``): the **source package** (``package``, else the composer field, which
  the importer fills with the package name), one-vs-rest. Recordings carry no key, meter or instruments.

A piece's tags are a dict ``tag -> 0/1``; a tag absent from a piece's dict is *unknown* for it (e.g. the mode
of a recording), and the probe leaves unknown labels out of its loss and its scores.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .stems import GM_FAMILIES

_FAMILY_OF = {p: name for name, progs in GM_FAMILIES.items() for p in progs}
_GM_BLOCKS = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
              "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive", "sound effects")
_COMPOSER_ALIASES = {"bach": "J.S. Bach"}  # the corpus writes Bach both ways


def instrument_family(program: int) -> str:
    """The family of a General MIDI programme: the project's palette families, else GM's block of eight."""
    return _FAMILY_OF.get(int(program), _GM_BLOCKS[int(program) // 8])


def piece_attributes(piece: dict) -> dict[str, object]:
    """The raw attributes a metadata row records (``None`` where it records nothing)."""
    key = piece.get("key") or ""
    ts = piece.get("time_signature") or ""
    composer = piece.get("composer")
    parts = piece.get("parts") or []
    return {
        "kind": piece.get("kind", "render"),
        "package": piece.get("package") or (composer if piece.get("kind") == "recording" else None),
        "composer": _COMPOSER_ALIASES.get(composer, composer) if piece.get("kind") != "recording" else None,
        "mode": key.split()[-1].lower() if key.split() and key.split()[-1].lower() in ("major", "minor") else None,
        "numerator": int(ts.split("/")[0]) if ts.split("/")[0].isdigit() else None,
        "tempo_qpm": piece.get("tempo_qpm"),
        "families": sorted({"drums" if p.get("drums") else instrument_family(p["program"])
                            for p in parts if "program" in p}) if parts else None,
    }


@dataclass
class TagTable:
    """Per piece, its known tags; plus the tags left out and why (constant, or too rare to score)."""

    tags: list[str]
    labels: dict[str, dict[str, int]]  # piece id -> {tag: 0/1}, known tags only
    excluded: dict[str, str] = field(default_factory=dict)  # tag or attribute -> why it is not probed

    def matrix(self, piece_ids: list[str]) -> tuple[list[list[float]], list[list[bool]]]:
        """``(labels, known)`` rows for a list of piece ids (one row per id, repeats allowed)."""
        y = [[float(self.labels[p].get(t, 0)) for t in self.tags] for p in piece_ids]
        known = [[t in self.labels[p] for t in self.tags] for p in piece_ids]
        return y, known


def corpus_tags(pieces: list[dict], *, min_positives: int = 5) -> TagTable:
    """Tags of every piece, from the metadata rows of a whole corpus (all splits, so every split shares one
    tag set and one tempo threshold). A tag kept must have at least ``min_positives`` positive and as many
    negative pieces among its known ones; the rest are listed in ``excluded`` with the reason."""
    attrs = {p["id"]: piece_attributes(p) for p in pieces}
    labels: dict[str, dict[str, int]] = {pid: {} for pid in attrs}
    excluded: dict[str, str] = {}

    def add(tag: str, values: dict[str, int | None]) -> None:
        for pid, v in values.items():
            if v is not None:
                labels[pid][tag] = int(v)

    composers = {a["composer"] for a in attrs.values() if a["composer"]}
    if len(composers) > 1:
        for c in sorted(composers):
            add(f"composer:{c}", {pid: None if a["composer"] is None else a["composer"] == c for pid, a in attrs.items()})
    elif composers:
        excluded["composer"] = f"constant: every rendered piece is by {next(iter(composers))}"
    add("mode:minor", {pid: None if a["mode"] is None else a["mode"] == "minor" for pid, a in attrs.items()})
    add("meter:triple", {pid: None if a["numerator"] is None else a["numerator"] == 3 for pid, a in attrs.items()})
    tempi = [a["tempo_qpm"] for a in attrs.values() if a["tempo_qpm"] is not None]
    if tempi:
        median = statistics.median(tempi)
        add("tempo:fast", {pid: None if a["tempo_qpm"] is None else a["tempo_qpm"] > median for pid, a in attrs.items()})
    families = sorted({f for a in attrs.values() for f in a["families"] or []})
    for fam in families:
        add(f"family:{fam}", {pid: None if a["families"] is None else fam in a["families"] for pid, a in attrs.items()})
    packages = sorted({a["package"] for a in attrs.values() if a["package"]})
    if len(packages) > 1:
        for pkg in packages:
            add(f"package:{pkg}", {pid: None if a["kind"] != "recording" else a["package"] == pkg
                                   for pid, a in attrs.items()})
    elif packages:
        excluded["package"] = f"constant: every recording comes from {packages[0]}"

    kept = []
    all_tags = sorted({t for row in labels.values() for t in row})
    for tag in all_tags:
        known = [row[tag] for row in labels.values() if tag in row]
        pos = sum(known)
        if pos < min_positives or len(known) - pos < min_positives:
            excluded[tag] = f"{pos} positive and {len(known) - pos} negative pieces (< {min_positives})"
        else:
            kept.append(tag)
    labels = {pid: {t: v for t, v in row.items() if t in kept} for pid, row in labels.items()}
    return TagTable(kept, labels, excluded)
