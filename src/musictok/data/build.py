"""`musictok data build`: render a multi-stem corpus, resumably, one folder per piece.

Layout of the output folder::

    OUT/build.json                  what was built, with which SoundFont(s) and settings; hours per SoundFont
    OUT/metadata.jsonl              one line per finished piece (rebuilt from the piece folders)
    OUT/<piece>/piece.json          the piece's metadata; written last, so its presence means "done"
    OUT/<piece>/mix.flac            = exactly the sum of the part stems beside it
    OUT/<piece>/0_soprano.flac ...  one stem per part (and N_drums.flac when the piece drew drums)
    OUT/<piece>/score.mid           the notes as rendered (480 ticks per quarter)
    OUT/<piece>/musdb/{mix,vocals,bass,other,drums}.flac   its own mix = sum of its stems

A piece is rendered into ``OUT/.tmp-<piece>`` and renamed into place when complete, so a killed run leaves
no partial piece; a rerun skips finished pieces and clears stale temporary folders.

Stems are quantized to the 24-bit grid *before* they are summed, so the mix stored as 24-bit FLAC (or
32-bit float WAV) equals the sum of the stored stems exactly.

Every random choice of a piece comes from `piece_rng(seed, piece)`: its programmes and musdb patches from the
main stream, its SoundFonts and its drums from streams of their own, so adding a SoundFont pool or drums
leaves a piece's instruments as they were.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..atomic import write_json, write_text
from ..audio import save
from .corpus import Note, Piece, PieceError, list_works, load_piece, piece_id, split_of
from .render import (
    SoundFont,
    check_general_midi,
    choose_soundfonts,
    find_soundfont,
    find_soundfont_pool,
    render_notes,
)
from .stems import (
    DRUM_KIT_NAME,
    GM_INSTRUMENTS,
    PALETTES,
    choose_musdb_programs,
    choose_programs,
    draw_drums,
    drum_notes,
    duo_assignment,
    musdb_assignment,
)

TAIL_SECONDS = 1.5  # release tail after the last note-off
MIX_PEAK = 0.89  # ≈ -1 dBFS
Q24 = float(2**23)
GROUPS = ("parts", "musdb")
DRUM_GAIN = 0.5  # drums sit a little under the music, as in a mix
LEVEL_RMS = 0.1  # with level_stems, each stem's RMS before the mix gain (only ratios matter)


@dataclass
class BuildConfig:
    out: Path
    corpus: str = "chorales"
    limit: int | None = None
    split: str | None = None  # render only the works of this split (train, valid or test)
    seed: int = 0
    sample_rate: int = 24000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    soundfont: Path | None = None
    # Several SoundFonts, each stem drawing one: paths and/or "auto" (see render.find_soundfont_pool);
    # a comma-separated string is split. None: the single `soundfont`.
    soundfont_pool: tuple[str, ...] | None = None
    palette: str = "classic"  # programme pools (stems.PALETTES): "classic" (orchestral) or "wide"
    drums_share: float = 0.0  # fraction of pieces whose parts group (and mix) gets a generated drum stem
    level_stems: bool = False  # bring every stem to one RMS before mixing (evens out SoundFont loudness)
    tempo_jitter: float = 0.0  # ± fraction of the written tempo
    transpose_jitter: int = 0  # ± semitones
    musdb: bool = True  # also render the musdb group (voice patch + generated drums)
    audio_format: str = "flac"  # "flac" (24-bit) or "wav" (32-bit float)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if isinstance(self.soundfont_pool, (str, Path)):
            self.soundfont_pool = tuple(e.strip() for e in str(self.soundfont_pool).split(",") if e.strip())
        if self.soundfont_pool is not None:
            self.soundfont_pool = tuple(str(e) for e in self.soundfont_pool)
            if not self.soundfont_pool:
                raise ValueError("the SoundFont pool is empty; give paths or auto")
            if self.soundfont is not None:
                raise ValueError("give either one SoundFont or a SoundFont pool, not both")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {', '.join(PALETTES)}, not {self.palette!r}")
        if not 0.0 <= self.drums_share <= 1.0:
            raise ValueError(f"drums share must be between 0 and 1, not {self.drums_share}")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio format must be flac or wav, not {self.audio_format!r}")
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate {self.sample_rate} Hz is outside 8000..192000")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.split not in (None, "train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, not {self.split!r}")


@dataclass
class PieceResult:
    id: str
    status: str  # "rendered", "existing", "failed"
    reason: str = ""
    duration: float = 0.0
    kind: str = ""  # the reason without its particulars, for the end-of-run tally


@dataclass
class BuildReport:
    out: str
    corpus: str
    soundfont: str  # the SoundFont's path; for a pool, the paths joined by commas
    soundfont_origin: str
    pieces: int
    rendered: int
    existing: int
    failed: list[PieceResult]
    hours: float
    wall_seconds: float
    splits: dict[str, int]
    soundfonts: list[dict] = field(default_factory=list)  # the pool: name, path, origin
    # Hours of the parts group per SoundFont: each piece's duration shared among its stems' SoundFonts (sums
    # to `hours`); stem hours count every stem's full duration.
    hours_by_soundfont: dict[str, float] = field(default_factory=dict)
    stem_hours_by_soundfont: dict[str, float] = field(default_factory=dict)

    def failure_reasons(self) -> Counter:
        return Counter(f.kind for f in self.failed)


class _Interrupted(Exception):
    """The process that started this worker has died: stop without publishing anything."""


_PARENT_PID: int | None = None


def _remember_parent(pid: int) -> None:
    global _PARENT_PID  # per worker process, set once by the pool initializer
    _PARENT_PID = pid


def _check_parent() -> None:
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        raise _Interrupted()


def piece_rng(seed: int, pid: str, stream: str = "") -> np.random.Generator:
    """A generator per (seed, piece): the same piece gets the same draws whatever else is built. A named
    ``stream`` gives independent draws for one concern (SoundFonts, drums)."""
    key = f"{seed}:{pid}" + (f":{stream}" if stream else "")
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def has_drums(seed: int, pid: str, share: float) -> bool:
    """Whether this piece's parts group gets a drum stem (about ``share`` of all pieces)."""
    return draw_drums(piece_rng(seed, pid, "drums"), share)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "part"


def _quantize(x: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid (exactly representable in float32 below 1.0)."""
    return (np.round(np.clip(x, -1.0, 1.0 - 1 / Q24) * Q24) / Q24).astype(np.float32)


def _finalize_stems(stems: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """One gain for all stems so the mix peaks at `MIX_PEAK`; quantize, then mix = Σ quantized stems."""
    raw_mix = np.sum(stems, axis=0, dtype=np.float64)
    peak = float(np.max(np.abs(raw_mix))) or 1.0
    gain = MIX_PEAK / peak
    q = [_quantize(s.astype(np.float64) * gain) for s in stems]
    mix = np.sum(q, axis=0, dtype=np.float64).astype(np.float32)
    assert float(np.max(np.abs(mix))) < 1.0
    return q, mix


def _level(x: np.ndarray, on: bool) -> np.ndarray:
    """With ``on``, scale a stem to `LEVEL_RMS` (SoundFonts differ by up to ≈ 20 dB on one programme)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if on else 0.0
    return (x * (LEVEL_RMS / rms)).astype(np.float32) if rms > 0 else x


@dataclass
class _Drums:
    """The generated drum part of a piece's parts group."""

    notes: list[Note]
    soundfont: SoundFont
    audio: np.ndarray  # rendered and levelled, before `DRUM_GAIN`


def render_piece(path: Path, cfg: BuildConfig, soundfonts: SoundFont | list[SoundFont]) -> PieceResult:
    """Render one work into its folder; never raises for a bad piece (the result says why).

    ``soundfonts`` is the pool every stem draws its SoundFont from (one SoundFont: no choice)."""
    pool = [soundfonts] if isinstance(soundfonts, SoundFont) else list(soundfonts)
    pid = piece_id(path)
    final = cfg.out / pid
    if (final / "piece.json").is_file():
        meta = json.loads((final / "piece.json").read_text())
        return PieceResult(pid, "existing", duration=meta.get("duration_seconds", 0.0))
    tmp = cfg.out / f".tmp-{pid}"
    try:
        rng = piece_rng(cfg.seed, pid)
        tempo_scale = 1.0 + float(rng.uniform(-cfg.tempo_jitter, cfg.tempo_jitter)) if cfg.tempo_jitter else 1.0
        transpose = int(rng.integers(-cfg.transpose_jitter, cfg.transpose_jitter + 1)) if cfg.transpose_jitter else 0
        piece = load_piece(path, tempo_scale=tempo_scale, transpose=transpose)
        programs = choose_programs(piece.parts, rng, cfg.palette)
        # one SoundFont per part, then one for the drums (drawn whether or not the piece gets drums)
        *fonts, drum_font = choose_soundfonts(pool, [*programs, None], piece_rng(cfg.seed, pid, "soundfonts"))
        num_samples = int(math.ceil((piece.duration + TAIL_SECONDS) * cfg.sample_rate))
        sr = cfg.sample_rate

        raw = [_level(render_notes(p.notes, prog, sr, num_samples, sf.path), cfg.level_stems)
               for p, prog, sf in zip(piece.parts, programs, fonts)]
        drums = None
        drum_rng = piece_rng(cfg.seed, pid, "drums")
        if draw_drums(drum_rng, cfg.drums_share):
            notes = drum_notes(piece, drum_rng)
            audio = render_notes(notes, 0, sr, num_samples, drum_font.path, is_drums=True)
            drums = _Drums(notes, drum_font, _level(audio, cfg.level_stems))
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        stems, mix = _finalize_stems(raw + ([DRUM_GAIN * drums.audio] if drums else []))
        ext = cfg.audio_format
        names = [f"{i}_{_slug(part.name)}.{ext}" for i, part in enumerate(piece.parts)]
        if drums:
            names.append(f"{len(piece.parts)}_drums.{ext}")
        for name, stem in zip(names, stems):
            save(tmp / name, stem, sr)
        save(tmp / f"mix.{ext}", mix, sr)
        midi = piece.to_midi(programs)
        if drums:
            import pretty_midi

            kit = pretty_midi.Instrument(program=0, is_drum=True, name="drums")
            kit.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start, n.end) for n in drums.notes]
            midi.instruments.append(kit)
        midi.write(str(tmp / "score.mid"))

        musdb_meta = None
        if cfg.musdb:
            musdb_meta = _render_musdb(piece, programs, fonts, raw, drums, drum_font, rng, cfg, num_samples,
                                       tmp / "musdb")

        meta = _metadata(piece, programs, fonts, names, drums, cfg, num_samples, musdb_meta)
        write_json(tmp / "piece.json", meta)
        _check_parent()  # a worker orphaned by a killed run must not race a rerun's clean-up
        if final.exists():  # a folder without piece.json: left by an older, interrupted layout
            shutil.rmtree(final)
        os.replace(tmp, final)
        return PieceResult(pid, "rendered", duration=meta["duration_seconds"])
    except PieceError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return PieceResult(pid, "failed", str(e), kind=re.sub(r"\d+", "N", str(e)))
    except _Interrupted:
        shutil.rmtree(tmp, ignore_errors=True)
        return PieceResult(pid, "failed", "interrupted", kind="interrupted")
    except Exception as e:  # a renderer or I/O failure on one piece must not end the whole run
        shutil.rmtree(tmp, ignore_errors=True)
        return PieceResult(pid, "failed", f"{type(e).__name__}: {str(e)[:120]}", kind=type(e).__name__)


def _render_musdb(
    piece: Piece,
    programs: list[int],
    fonts: list[SoundFont],
    raw: list[np.ndarray],
    drums: _Drums | None,
    drum_font: SoundFont,
    rng: np.random.Generator,
    cfg: BuildConfig,
    num_samples: int,
    folder: Path,
) -> dict:
    """vocals / bass / other / drums with their own mix. Parts keep their render (and SoundFont) unless their
    patch changes; the drums are the parts group's when the piece drew them, else generated here."""
    progs = choose_musdb_programs(piece.parts, programs, rng, cfg.palette)
    sr = cfg.sample_rate

    def part_audio(i: int) -> np.ndarray:
        if progs[i] == programs[i]:
            return raw[i]
        return _level(render_notes(piece.parts[i].notes, progs[i], sr, num_samples, fonts[i].path), cfg.level_stems)

    assign = musdb_assignment([p.median_pitch for p in piece.parts])
    zeros = np.zeros(num_samples, dtype=np.float32)
    melodic = {
        stem: (np.sum([part_audio(i) for i in idx], axis=0) if idx else zeros) for stem, idx in assign.items()
    }
    if drums is not None:
        drum_audio = drums.audio
    else:
        drum_audio = _level(render_notes(drum_notes(piece, rng), 0, sr, num_samples, drum_font.path, is_drums=True),
                            cfg.level_stems)
    names = ["vocals", "bass", "other", "drums"]
    stems, mix = _finalize_stems([melodic["vocals"], melodic["bass"], melodic["other"], DRUM_GAIN * drum_audio])
    folder.mkdir(parents=True)
    for name, stem in zip(names, stems):
        save(folder / f"{name}.{cfg.audio_format}", stem, sr)
    save(folder / f"mix.{cfg.audio_format}", mix, sr)
    return {
        "stems": {n: f"{n}.{cfg.audio_format}" for n in names},
        "parts": {k: v for k, v in assign.items()},
        "programs": {stem: [progs[i] for i in idx] for stem, idx in assign.items()},
        "soundfonts": {stem: [fonts[i].name for i in idx] for stem, idx in assign.items()}
        | {"drums": [drum_font.name]},
        "drum_hits": len(piece.beats),
    }


def _metadata(
    piece: Piece,
    programs: list[int],
    fonts: list[SoundFont],
    stem_files: list[str],
    drums: _Drums | None,
    cfg: BuildConfig,
    num_samples: int,
    musdb_meta: dict | None,
) -> dict:
    parts = [
        {
            "index": i,
            "name": p.name,
            "stem": f,
            "program": prog,
            "program_name": GM_INSTRUMENTS.get(prog, ("?",))[0],
            "soundfont": sf.name,
            "pitch_range": list(p.pitch_range),
            "notes": len(p.notes),
        }
        for i, (p, prog, sf, f) in enumerate(zip(piece.parts, programs, fonts, stem_files))
    ]
    if drums is not None:
        keys = [n.pitch for n in drums.notes]
        parts.append({"index": len(parts), "name": "drums", "stem": stem_files[-1], "program": 0,
                      "program_name": DRUM_KIT_NAME, "drums": True, "soundfont": drums.soundfont.name,
                      "pitch_range": [min(keys), max(keys)] if keys else [0, 0], "notes": len(drums.notes)})
    used = list(dict.fromkeys(p["soundfont"] for p in parts))
    return {
        "id": piece.id,
        "corpus_path": piece.corpus_path,
        "composer": piece.composer,
        "title": piece.title,
        "split": piece.split,
        "key": piece.key,
        "time_signature": piece.time_signature,
        "tempo_qpm": piece.tempo_qpm,
        "transpose": piece.transpose,
        "duration_seconds": round(num_samples / cfg.sample_rate, 6),
        "sample_rate": cfg.sample_rate,
        "num_samples": num_samples,
        "mix": f"mix.{cfg.audio_format}",
        "parts": parts,
        "groups": {"duo": duo_assignment([p.median_pitch for p in piece.parts],
                                         drums=len(piece.parts) if drums is not None else None)},
        "musdb": musdb_meta,
        "soundfont": used[0] if len(used) == 1 else "mixed",  # one name, or "mixed": see each part's
        "soundfonts": used,
        "seed": cfg.seed,
        "musictok_version": __version__,
    }


def write_metadata_index(out: Path) -> list[dict]:
    """Rebuild ``metadata.jsonl`` from the finished piece folders (atomically)."""
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/piece.json"))]
    write_text(out / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def build_corpus(cfg: BuildConfig, on_piece: Callable[[PieceResult], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> BuildReport:
    """Render every work of ``cfg.corpus`` (up to ``cfg.limit``) into ``cfg.out``."""
    t0 = time.time()
    pool = resolve_soundfonts(cfg)
    works = list_works(cfg.corpus)
    if cfg.split is not None:
        works = [w for w in works if split_of(piece_id(w)) == cfg.split]
    if cfg.limit is not None:
        works = works[: cfg.limit]
    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = open(cfg.out / ".build.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ValueError(f"{cfg.out}: another `data build` is writing into this folder") from None
    try:
        return _build_locked(cfg, pool, works, t0, on_piece, on_start)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def resolve_soundfonts(cfg: BuildConfig) -> list[SoundFont]:
    """The pool the stems draw from: ``cfg.soundfont_pool``, else the one SoundFont `find_soundfont` picks.
    Each is loaded and checked for the General MIDI programmes the palettes use and a drum kit."""
    if cfg.soundfont_pool is not None:
        return find_soundfont_pool(cfg.soundfont_pool, GM_INSTRUMENTS)
    sf = find_soundfont(cfg.soundfont)
    check_general_midi(sf, GM_INSTRUMENTS)
    return [sf]


def _build_locked(cfg: BuildConfig, pool: list[SoundFont], works: list[Path], t0: float,
                  on_piece: Callable[[PieceResult], None] | None,
                  on_start: Callable[[int], None] | None) -> BuildReport:
    _check_same_settings(cfg, pool)
    for stale in cfg.out.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if on_start:
        on_start(len(works))

    results: list[PieceResult] = []

    def done(r: PieceResult) -> None:
        results.append(r)
        if on_piece:
            on_piece(r)

    try:
        if cfg.workers == 1 or len(works) <= 1:
            for w in works:
                done(render_piece(w, cfg, pool))
        else:
            # forked workers share the SoundFonts the parent has loaded (resolve_soundfonts)
            executor = ProcessPoolExecutor(max_workers=cfg.workers, initializer=_remember_parent,
                                           initargs=(os.getpid(),))
            try:
                futures = [executor.submit(render_piece, w, cfg, pool) for w in works]
                for f in as_completed(futures):
                    done(f.result())
            finally:  # on Ctrl-C or a crashed worker, queued pieces are dropped rather than rendered
                executor.shutdown(wait=True, cancel_futures=True)
    finally:
        rows = write_metadata_index(cfg.out)  # whatever finished is indexed, even after an interruption

    by_font, stem_hours = hours_by_soundfont(rows)
    report = BuildReport(
        out=str(cfg.out),
        corpus=cfg.corpus,
        soundfont=",".join(str(sf.path) for sf in pool),
        soundfont_origin=", ".join(dict.fromkeys(sf.origin for sf in pool)),
        pieces=len(rows),
        rendered=sum(r.status == "rendered" for r in results),
        existing=sum(r.status == "existing" for r in results),
        failed=sorted((r for r in results if r.status == "failed"), key=lambda r: r.id),
        hours=sum(r["duration_seconds"] for r in rows) / 3600,
        wall_seconds=time.time() - t0,
        splits=dict(Counter(r["split"] for r in rows)),
        soundfonts=[{"name": sf.name, "path": str(sf.path), "origin": sf.origin} for sf in pool],
        hours_by_soundfont=by_font,
        stem_hours_by_soundfont=stem_hours,
    )
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    summary = asdict(report) | {"config": info, "musictok_version": __version__}
    write_json(cfg.out / "build.json", summary)
    return report


def hours_by_soundfont(rows: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Hours of the parts group per SoundFont, from piece.json rows: (each piece's duration shared among its
    stems' SoundFonts — sums to the corpus hours; every stem's full duration — stem hours)."""
    share: Counter = Counter()
    stems: Counter = Counter()
    for r in rows:
        hours = r["duration_seconds"] / 3600
        fonts = [p.get("soundfont", r.get("soundfont", "?")) for p in r["parts"]]
        for f in fonts:
            share[f] += hours / len(fonts)
            stems[f] += hours
    return ({k: round(v, 6) for k, v in sorted(share.items())}, {k: round(v, 6) for k, v in sorted(stems.items())})


# Settings that change the rendered audio: a rerun into the same folder must keep them.
SETTINGS = ("seed", "sample_rate", "tempo_jitter", "transpose_jitter", "musdb", "audio_format", "palette",
            "drums_share", "level_stems")


def _check_same_settings(cfg: BuildConfig, pool: list[SoundFont]) -> None:
    """Refuse to mix pieces rendered with other settings (or other SoundFonts) into one folder."""
    previous = cfg.out / "build.json"
    if not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text())
    except ValueError:
        return
    before = old.get("config", {})
    defaults = {f.name: f.default for f in fields(BuildConfig)}
    for key in SETTINGS:
        was = before.get(key, defaults[key])  # a folder built before a setting existed used its default
        if was != getattr(cfg, key):
            raise ValueError(f"{cfg.out} was built with {key}={was!r}, not {getattr(cfg, key)!r}; "
                             "use the same settings to resume, or another --out")
    if old.get("soundfonts"):
        old_names = [f["name"] for f in old["soundfonts"]]
    elif old.get("soundfont"):
        old_names = [Path(old["soundfont"]).name]
    else:
        return
    names = [sf.name for sf in pool]
    if old_names != names:
        hint = (f"--soundfont {old['soundfont']}" if len(old_names) == 1
                else f"--soundfont-pool {','.join(f['path'] for f in old['soundfonts'])}")
        raise ValueError(f"{cfg.out} was rendered with the SoundFont(s) {', '.join(old_names)}, not "
                         f"{', '.join(names)}; pass {hint} or use another --out")
