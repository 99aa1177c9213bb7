"""Stem groups, General MIDI instrument pools, and the generated drum part — all as data.

A *stem group* says how the rendered part stems combine into the stems a task needs:
- ``parts``: the parts as written, one stem each (plus, on a share of pieces, a generated drum part);
- ``duo``: lead (the top part) vs accompaniment (everything else) — derived by summing part stems, so it
  adds no material and needs no files of its own;
- ``musdb``: vocals (top part on a voice patch), bass (lowest part), other (the rest) and drums (generated
  to follow the meter and tempo). It re-renders the top voice and adds drums, so it lives in its own
  subfolder with its own mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .corpus import Note, Part, Piece

# program: (name, lowest MIDI pitch, highest MIDI pitch) — comfortable ranges, not the extremes.
GM_INSTRUMENTS: dict[int, tuple[str, int, int]] = {
    0: ("Acoustic Grand Piano", 21, 108),
    6: ("Harpsichord", 29, 89),
    19: ("Church Organ", 24, 96),
    32: ("Acoustic Bass", 28, 60),
    33: ("Electric Bass (finger)", 28, 62),
    40: ("Violin", 55, 100),
    41: ("Viola", 48, 88),
    42: ("Cello", 36, 76),
    43: ("Contrabass", 28, 60),
    52: ("Choir Aahs", 40, 84),
    53: ("Voice Oohs", 40, 84),
    56: ("Trumpet", 54, 84),
    57: ("Trombone", 40, 72),
    58: ("Tuba", 26, 58),
    60: ("French Horn", 41, 77),
    64: ("Soprano Sax", 56, 88),
    65: ("Alto Sax", 49, 81),
    66: ("Tenor Sax", 44, 76),
    68: ("Oboe", 58, 91),
    69: ("English Horn", 52, 81),
    70: ("Bassoon", 34, 75),
    71: ("Clarinet", 50, 94),
    73: ("Flute", 60, 96),
    74: ("Recorder", 60, 96),
    # the wider palette: keyboards, organs, guitars, more strings and brass, pipes, synth leads and pads
    1: ("Bright Acoustic Piano", 21, 108),
    4: ("Electric Piano 1", 28, 100),
    7: ("Clavinet", 29, 89),
    11: ("Vibraphone", 53, 89),
    12: ("Marimba", 45, 96),
    16: ("Drawbar Organ", 24, 96),
    20: ("Reed Organ", 41, 89),
    21: ("Accordion", 41, 89),
    24: ("Acoustic Guitar (nylon)", 40, 83),
    25: ("Acoustic Guitar (steel)", 40, 84),
    26: ("Electric Guitar (jazz)", 40, 86),
    27: ("Electric Guitar (clean)", 40, 86),
    34: ("Electric Bass (pick)", 28, 62),
    35: ("Fretless Bass", 28, 62),
    46: ("Orchestral Harp", 24, 103),
    48: ("String Ensemble 1", 28, 96),
    49: ("String Ensemble 2", 28, 96),
    61: ("Brass Section", 40, 84),
    67: ("Baritone Sax", 36, 69),
    72: ("Piccolo", 74, 108),
    75: ("Pan Flute", 60, 96),
    79: ("Ocarina", 60, 84),
    80: ("Lead 1 (square)", 36, 96),
    81: ("Lead 2 (sawtooth)", 36, 96),
    82: ("Lead 3 (calliope)", 48, 96),
    88: ("Pad 1 (new age)", 36, 96),
    89: ("Pad 2 (warm)", 36, 96),
    90: ("Pad 3 (polysynth)", 36, 96),
    91: ("Pad 4 (choir)", 40, 84),
    95: ("Pad 8 (sweep)", 36, 96),
}
DRUM_KIT_NAME = "Standard Kit (GM percussion)"

# The General MIDI families the wide palette draws from (every programme has a range above).
GM_FAMILIES: dict[str, tuple[int, ...]] = {
    "keyboards": (0, 1, 4, 6, 7, 11, 12, 46),
    "organ": (16, 19, 20, 21),
    "guitars": (24, 25, 26, 27),
    "basses": (32, 33, 34, 35),
    "strings": (40, 41, 42, 43, 48, 49),
    "voices": (52, 53, 91),
    "brass": (56, 57, 58, 60, 61),
    "reeds": (64, 65, 66, 67, 68, 69, 70, 71),
    "pipes": (72, 73, 74, 75, 79),
    "synth leads": (80, 81, 82),
    "synth pads": (88, 89, 90, 95),
}

# Pools by register, chosen from the part's median pitch.
REGISTER_POOLS: dict[str, tuple[int, ...]] = {
    "high": (40, 68, 71, 73, 74, 56, 64),
    "mid": (40, 41, 71, 65, 60, 69, 0),
    "low": (41, 42, 60, 57, 66, 70, 6),
    "bass": (42, 43, 70, 58, 32, 33, 19),
}
VOICE_PROGRAMS = (52, 53)
BASS_PROGRAMS = (32, 33, 43, 58)

# The same registers over every family of `GM_FAMILIES`: an instrument is listed in a register where a part
# of that register sits in the middle of its comfortable range (the piccolo only up high, the tuba only
# down low); `fits` then checks each part's actual range.
WIDE_REGISTER_POOLS: dict[str, tuple[int, ...]] = {
    "high": (0, 4, 11, 46, 16, 21, 24, 27, 40, 48, 56, 64, 68, 71, 72, 73, 74, 75, 79, 80, 82, 88, 89),
    "mid": (0, 1, 4, 6, 12, 16, 19, 21, 24, 25, 26, 40, 41, 48, 56, 60, 61, 65, 69, 71, 73, 80, 81, 90, 91),
    "low": (0, 1, 6, 7, 12, 16, 19, 20, 24, 26, 27, 41, 42, 48, 49, 57, 60, 61, 66, 70, 71, 81, 88, 89, 90),
    "bass": (0, 16, 19, 32, 33, 34, 35, 42, 43, 48, 49, 57, 58, 67, 70, 89),
}


@dataclass(frozen=True)
class Palette:
    """Where programmes are drawn from: a pool per register, the musdb voice patches and bass instruments."""

    registers: dict[str, tuple[int, ...]]
    voices: tuple[int, ...]
    basses: tuple[int, ...]


PALETTES: dict[str, Palette] = {
    # the original, orchestral pools (the default: keeps earlier renders reproducible)
    "classic": Palette(REGISTER_POOLS, VOICE_PROGRAMS, BASS_PROGRAMS),
    "wide": Palette(WIDE_REGISTER_POOLS, VOICE_PROGRAMS, (32, 33, 34, 35, 43, 58)),
}
FALLBACK_PROGRAMS = (0, 19)  # the widest instruments, for parts no register pool covers


def register_of(part: Part) -> str:
    m = part.median_pitch
    if m >= 67:
        return "high"
    if m >= 57:
        return "mid"
    if m >= 48:
        return "low"
    return "bass"


def fits(program: int, part: Part, tolerance: int = 3) -> bool:
    lo, hi = part.pitch_range
    _, plo, phi = GM_INSTRUMENTS[program]
    return lo >= plo - tolerance and hi <= phi + tolerance


def choose_programs(parts: list[Part], rng: np.random.Generator, palette: str = "classic") -> list[int]:
    """One GM program per part, drawn from the palette's register pool and kept within the instrument's range.

    Distinct programs within a piece where possible, so stems of different parts sound different.
    """
    pools = PALETTES[palette].registers
    used: set[int] = set()
    out = []
    for part in parts:
        pool = [p for p in pools[register_of(part)] if fits(p, part)]
        if not pool:  # nothing in the register pool covers the range: fall back to the widest instruments
            pool = [p for p in FALLBACK_PROGRAMS if fits(p, part)] or [0]
        fresh = [p for p in pool if p not in used] or pool
        prog = int(fresh[rng.integers(len(fresh))])
        used.add(prog)
        out.append(prog)
    return out


def choose_musdb_programs(parts: list[Part], programs: list[int], rng: np.random.Generator,
                          palette: str = "classic") -> list[int]:
    """Programs for the musdb group: the top voice sings; the lowest part plays a bass instrument."""
    pal = PALETTES[palette]
    assign = musdb_assignment([p.median_pitch for p in parts])
    top, low = assign["vocals"][0], assign["bass"][0]
    out = list(programs)
    out[top] = int(pal.voices[rng.integers(len(pal.voices))])
    bass_ok = [p for p in pal.basses if fits(p, parts[low], tolerance=6)]
    if bass_ok and out[low] not in bass_ok:
        out[low] = int(bass_ok[rng.integers(len(bass_ok))])
    return out


def draw_drums(rng: np.random.Generator, share: float) -> bool:
    """Whether a piece gets a drum part in its ``parts`` group: true for about ``share`` of the pieces."""
    return share > 0 and float(rng.random()) < share


# General MIDI percussion keys
KICK, SNARE, CLOSED_HAT, CRASH = 36, 38, 42, 49


def drum_notes(piece: Piece, rng: np.random.Generator) -> list[Note]:
    """A simple kit part on the score's beat grid: kick on bar starts (and mid-bar in 4/4), snare on the
    other strong beats, closed hi-hat on every beat and half-beat, a crash on the first downbeat."""
    notes: list[Note] = []
    beats = piece.beats
    if not beats:
        return notes
    per_bar = max(piece.beats_per_bar, 1)
    beat_len = float(np.median(np.diff(beats))) if len(beats) > 1 else 0.5
    hit = 0.08
    first_down = True
    bar_pos = 0
    for i, t in enumerate(beats):
        if piece.downbeats[i]:
            bar_pos = 0
        nxt = beats[i + 1] if i + 1 < len(beats) else t + beat_len
        jitter = int(rng.integers(-6, 7))
        if bar_pos == 0:
            notes.append(Note(t, t + hit, KICK, 110 + jitter // 2))
            if first_down and piece.downbeats[i]:
                notes.append(Note(t, t + 4 * hit, CRASH, 90))
                first_down = False
        elif per_bar == 4 and bar_pos == 2:
            notes.append(Note(t, t + hit, KICK, 100 + jitter))
        else:
            notes.append(Note(t, t + hit, SNARE, 92 + jitter))
        notes.append(Note(t, t + hit / 2, CLOSED_HAT, 70 + jitter))
        half = (t + nxt) / 2
        notes.append(Note(half, half + hit / 2, CLOSED_HAT, 52 + jitter))
        bar_pos += 1
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


@dataclass(frozen=True)
class StemGroup:
    """How a folder's stems are assembled. ``subdir`` is None when the group sums part stems in place."""

    name: str
    subdir: str | None
    description: str


STEM_GROUPS: dict[str, StemGroup] = {
    "parts": StemGroup("parts", None, "the parts as written, one stem each (+ generated drums on a share)"),
    "duo": StemGroup("duo", None, "lead = top part; accompaniment = the sum of the other parts"),
    "musdb": StemGroup("musdb", "musdb", "vocals (top part, voice patch), bass, other, drums (generated)"),
}
MUSDB_STEMS = ("vocals", "bass", "other", "drums")


def voice_order(median_pitches: list[float]) -> list[int]:
    """Part indices from the highest voice to the lowest (scores do not always list parts that way:
    a chorale may put a doubling horn above the soprano)."""
    return sorted(range(len(median_pitches)), key=lambda i: (-median_pitches[i], i))


def duo_assignment(median_pitches: list[float], drums: int | None = None) -> dict[str, list[int]]:
    """Part indices summed into each duo stem: lead = the highest voice; a generated drum part (its index
    given as ``drums``) accompanies."""
    order = voice_order(median_pitches)
    extra = [] if drums is None else [drums]
    return {"lead": [order[0]], "accompaniment": sorted(order[1:]) + extra}


def musdb_assignment(median_pitches: list[float]) -> dict[str, list[int]]:
    """Part indices rendered into each melodic musdb stem (drums are generated, not a part)."""
    order = voice_order(median_pitches)
    return {"vocals": [order[0]], "bass": [order[-1]], "other": sorted(order[1:-1])}
