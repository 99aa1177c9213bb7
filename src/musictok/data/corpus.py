"""Compositions from the corpus that ships inside music21, turned into timed note lists per part.

We read the score with music21 and compute note times in seconds ourselves (tempo map × quarter offsets)
instead of exporting MIDI through music21: its writer uses 10,080 ticks per quarter, which some MIDI readers
reject on long movements. Our own MIDI export (`Piece.to_midi`) uses 480 ticks per quarter.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Which corpus folders make up each named collection. "all" keeps every multi-part collection and leaves out
# the monophonic folk-tune books (each file there is one melody, or an opus of hundreds of them).
CORPORA: dict[str, tuple[str, ...]] = {
    "chorales": ("bach",),
    "palestrina": ("palestrina",),
    "madrigals": ("monteverdi",),
    "quartets": ("beethoven", "mozart", "haydn"),
    "all": (
        "bach", "palestrina", "monteverdi", "beethoven", "mozart", "haydn", "josquin", "trecento",
        "schumann_robert", "schumann_clara", "ciconia", "corelli", "cpebach", "handel", "luca", "lusitano",
        "schubert", "verdi", "weber", "webern", "schoenberg", "beach", "chopin", "joplin",
    ),
}
MIN_PARTS = 3
DEFAULT_QPM = 90.0  # used when a score carries no metronome mark
SPLITS = (("train", 0.90), ("valid", 0.95), ("test", 1.0))


class PieceError(Exception):
    """A work that cannot be turned into a multi-part piece (unparseable, too few parts, no notes)."""


@dataclass
class Note:
    """One sounding note: times in seconds, MIDI pitch and velocity."""

    start: float
    end: float
    pitch: int
    velocity: int


@dataclass
class Part:
    name: str
    notes: list[Note]

    @property
    def pitch_range(self) -> tuple[int, int]:
        ps = [n.pitch for n in self.notes]
        return (min(ps), max(ps)) if ps else (0, 0)

    @property
    def median_pitch(self) -> float:
        ps = sorted(n.pitch for n in self.notes)
        return float(ps[len(ps) // 2]) if ps else 0.0


@dataclass
class Piece:
    """A score reduced to what rendering needs: parts as timed notes, plus the beat grid for drums."""

    id: str
    corpus_path: str
    composer: str
    title: str
    parts: list[Part]
    key: str
    time_signature: str
    tempo_qpm: float
    transpose: int
    duration: float
    beats: list[float] = field(default_factory=list)  # seconds of every beat
    downbeats: list[bool] = field(default_factory=list)  # whether each beat starts a bar
    beats_per_bar: int = 4

    @property
    def split(self) -> str:
        return split_of(self.id)

    def to_midi(self, programs: list[int] | None = None):
        """A 480-ticks-per-quarter `pretty_midi.PrettyMIDI` with one track per part."""
        import pretty_midi

        pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=self.tempo_qpm)
        for i, part in enumerate(self.parts):
            prog = programs[i] if programs else 0
            inst = pretty_midi.Instrument(program=prog, name=part.name)
            inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in part.notes]
            pm.instruments.append(inst)
        return pm


def _core_dir() -> Path:
    """Where music21 keeps its bundled corpus."""
    import music21

    return Path(music21.__file__).parent / "corpus"


def list_works(corpus: str) -> list[Path]:
    """Sorted score paths of a named collection (see `CORPORA`)."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPORA)}")
    from music21 import corpus as m21corpus

    root = _core_dir()
    wanted = set(CORPORA[corpus])
    best: dict[str, Path] = {}  # some works ship in two formats (e.g. bwv277.krn and .mxl): keep one
    for p in map(Path, m21corpus.getCorePaths()):
        if p.relative_to(root).parts[0] not in wanted:
            continue
        pid = piece_id(p)
        if pid not in best or _format_rank(p) < _format_rank(best[pid]):
            best[pid] = p
    return sorted(best.values(), key=lambda p: str(p.relative_to(root)))


def _format_rank(p: Path) -> int:
    order = (".mxl", ".musicxml", ".xml", ".krn", ".mid", ".abc")
    return order.index(p.suffix.lower()) if p.suffix.lower() in order else len(order)


def piece_id(path: str | Path) -> str:
    """A stable, filesystem-safe id from the corpus path, e.g. ``bach/bwv66.6.mxl -> bach_bwv66.6``."""
    p = Path(path)
    try:
        rel = p.relative_to(_core_dir())
    except ValueError:
        rel = Path(p.name)
    stem = str(rel.with_suffix("")).replace("/", "_")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)


def split_of(pid: str) -> str:
    """train / valid / test (≈ 90/5/5) from a hash of the piece id: stable as the corpus grows."""
    u = int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16) / 2**32
    for name, upper in SPLITS:
        if u < upper:
            return name
    return SPLITS[-1][0]


class _TempoMap:
    """Quarter-note offsets → seconds, piecewise constant tempo."""

    def __init__(self, segments: list[tuple[float, float, float]]):
        # (start_quarter, end_quarter, seconds_per_quarter), contiguous from 0
        self.segments = segments
        self.cum = [0.0]
        for start, end, spq in segments:
            self.cum.append(self.cum[-1] + (end - start) * spq)

    def seconds(self, q: float) -> float:
        for (start, end, spq), base in zip(self.segments, self.cum):
            if q < end or (start, end, spq) == self.segments[-1]:
                return base + (q - start) * spq
        return self.cum[-1]


def _tempo_map(score, tempo_scale: float) -> tuple[_TempoMap, float]:
    from music21 import tempo

    marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
    end = float(score.highestTime) or 1.0
    if not marks:
        qpm = DEFAULT_QPM * tempo_scale
        return _TempoMap([(0.0, end, 60.0 / qpm)]), qpm
    segments = []
    for start, stop, mm in score.metronomeMarkBoundaries():
        qpm = float(mm.getQuarterBPM() or DEFAULT_QPM) * tempo_scale
        if stop > start:
            segments.append((float(start), float(stop), 60.0 / qpm))
    if not segments:
        segments = [(0.0, end, 60.0 / (DEFAULT_QPM * tempo_scale))]
    return _TempoMap(segments), 60.0 / segments[0][2]


def load_piece(path: str | Path, *, tempo_scale: float = 1.0, transpose: int = 0) -> Piece:
    """Parse one corpus work into a `Piece`; raises `PieceError` for anything unusable."""
    from music21 import converter, meter, stream

    path = Path(path)
    pid = piece_id(path)
    try:
        score = converter.parse(str(path))
    except Exception as e:  # music21 raises many types on malformed files
        raise PieceError(f"cannot parse score ({type(e).__name__}: {str(e)[:80]})") from None
    if isinstance(score, stream.Opus):
        raise PieceError("file is an opus of several works, not one score")
    parts = list(score.parts)
    if len(parts) < MIN_PARTS:
        raise PieceError(f"has {len(parts)} part(s), fewer than {MIN_PARTS}")

    tmap, qpm = _tempo_map(score, tempo_scale)
    out_parts: list[Part] = []
    for i, part in enumerate(parts):
        notes: list[Note] = []
        for el in part.stripTies().flatten().notes:
            q0 = float(el.offset)
            q1 = q0 + float(el.quarterLength)
            if q1 <= q0:  # grace notes have no duration
                continue
            t0, t1 = tmap.seconds(q0), tmap.seconds(q1)
            vel = el.volume.velocity if el.volume is not None and el.volume.velocity else 80
            for p in el.pitches:
                pitch = int(p.midi) + transpose
                if 0 <= pitch <= 127:
                    notes.append(Note(round(t0, 6), round(t1, 6), pitch, int(vel)))
        notes.sort(key=lambda n: (n.start, n.pitch))
        name = part.partName or part.id or f"part{i}"
        out_parts.append(Part(name=str(name).strip() or f"part{i}", notes=notes))
    if sum(len(p.notes) for p in out_parts) == 0:
        raise PieceError("score has no notes")
    out_parts = [p for p in out_parts if p.notes]
    if len(out_parts) < MIN_PARTS:
        raise PieceError(f"only {len(out_parts)} part(s) have notes; at least {MIN_PARTS} are needed")

    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    ts = ts if ts is not None else meter.TimeSignature("4/4")
    beats, downbeats = _beat_grid(parts[0], ts, tmap)
    md = score.metadata
    duration = max(n.end for p in out_parts for n in p.notes)
    return Piece(
        id=pid,
        corpus_path=str(path.relative_to(_core_dir())) if _core_dir() in path.parents else path.name,
        composer=(md.composer if md is not None and md.composer else path.parent.name) or "",
        title=(md.bestTitle if md is not None and md.bestTitle else pid) or pid,
        parts=out_parts,
        key=_key_name(score, transpose),
        time_signature=ts.ratioString,
        tempo_qpm=round(qpm, 3),
        transpose=transpose,
        duration=duration,
        beats=beats,
        downbeats=downbeats,
        beats_per_bar=int(ts.beatCount),
    )


def _beat_grid(part, default_ts, tmap: _TempoMap) -> tuple[list[float], list[bool]]:
    """Beat times (seconds) bar by bar, following time-signature changes and pickup bars."""
    beats: list[float] = []
    downbeats: list[bool] = []
    ts = default_ts
    for m in part.getElementsByClass("Measure"):
        if m.timeSignature is not None:
            ts = m.timeSignature
        beat_q = float(ts.beatDuration.quarterLength)
        bar_q = float(ts.barDuration.quarterLength)
        pad = float(m.paddingLeft or 0.0)
        start = float(m.offset) - pad  # where the bar would start if it were complete
        k = 0
        while k * beat_q < bar_q - 1e-9:
            q = start + k * beat_q
            if q >= float(m.offset) - 1e-9:
                beats.append(round(tmap.seconds(q), 6))
                downbeats.append(k == 0)
            k += 1
    return beats, downbeats


def _key_name(score, transpose: int) -> str:
    from music21 import key as m21key

    k = score.recurse().getElementsByClass(m21key.Key).first()
    if k is None:
        try:
            k = score.analyze("key")
        except Exception:
            return "unknown"
    if transpose:
        k = k.transpose(transpose)
    return f"{k.tonic.name} {k.mode}"


def piece_summary(piece: Piece) -> dict:
    """JSON-ready description without the note lists."""
    d = asdict(piece)
    d.pop("beats")
    d.pop("downbeats")
    d["parts"] = [
        {"name": p.name, "pitch_range": list(p.pitch_range), "notes": len(p.notes)} for p in piece.parts
    ]
    d["split"] = piece.split
    return d
