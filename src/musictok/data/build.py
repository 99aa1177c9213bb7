"""`musictok data build`: render a multi-stem corpus, resumably, one folder per piece.

Layout of the output folder::

    OUT/build.json                  what was built, with which SoundFont and settings
    OUT/metadata.jsonl              one line per finished piece (rebuilt from the piece folders)
    OUT/<piece>/piece.json          the piece's metadata; written last, so its presence means "done"
    OUT/<piece>/mix.flac            = exactly the sum of the part stems beside it
    OUT/<piece>/0_soprano.flac ...  one stem per part
    OUT/<piece>/score.mid           the notes as rendered (480 ticks per quarter)
    OUT/<piece>/musdb/{mix,vocals,bass,other,drums}.flac   its own mix = sum of its stems

A piece is rendered into ``OUT/.tmp-<piece>`` and renamed into place when complete, so a killed run leaves
no partial piece; a rerun skips finished pieces and clears stale temporary folders.

Stems are quantized to the 24-bit grid *before* they are summed, so the mix stored as 24-bit FLAC (or
32-bit float WAV) equals the sum of the stored stems exactly.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..atomic import write_json, write_text
from ..audio import save
from .corpus import Piece, PieceError, list_works, load_piece, piece_id, split_of
from .render import SoundFont, find_soundfont, render_notes
from .stems import (
    GM_INSTRUMENTS,
    choose_musdb_programs,
    choose_programs,
    drum_notes,
    duo_assignment,
    musdb_assignment,
)

TAIL_SECONDS = 1.5  # release tail after the last note-off
MIX_PEAK = 0.89  # ≈ -1 dBFS
Q24 = float(2**23)
GROUPS = ("parts", "musdb")


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
    tempo_jitter: float = 0.0  # ± fraction of the written tempo
    transpose_jitter: int = 0  # ± semitones
    musdb: bool = True  # also render the musdb group (voice patch + generated drums)
    audio_format: str = "flac"  # "flac" (24-bit) or "wav" (32-bit float)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
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
    soundfont: str
    soundfont_origin: str
    pieces: int
    rendered: int
    existing: int
    failed: list[PieceResult]
    hours: float
    wall_seconds: float
    splits: dict[str, int]

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


def piece_rng(seed: int, pid: str) -> np.random.Generator:
    """A generator per (seed, piece): the same piece gets the same draws whatever else is built."""
    digest = hashlib.sha256(f"{seed}:{pid}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


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


def render_piece(path: Path, cfg: BuildConfig, soundfont: SoundFont) -> PieceResult:
    """Render one work into its folder; never raises for a bad piece (the result says why)."""
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
        programs = choose_programs(piece.parts, rng)
        num_samples = int(math.ceil((piece.duration + TAIL_SECONDS) * cfg.sample_rate))
        sr, sfp = cfg.sample_rate, soundfont.path

        raw = [render_notes(p.notes, prog, sr, num_samples, sfp) for p, prog in zip(piece.parts, programs)]
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        stems, mix = _finalize_stems(raw)
        ext = cfg.audio_format
        stem_files = []
        for i, (part, stem) in enumerate(zip(piece.parts, stems)):
            name = f"{i}_{_slug(part.name)}.{ext}"
            save(tmp / name, stem, sr)
            stem_files.append(name)
        save(tmp / f"mix.{ext}", mix, sr)
        piece.to_midi(programs).write(str(tmp / "score.mid"))

        musdb_meta = None
        if cfg.musdb:
            musdb_meta = _render_musdb(piece, programs, raw, rng, cfg, soundfont, num_samples, tmp / "musdb")

        meta = _metadata(piece, programs, stem_files, cfg, soundfont, num_samples, musdb_meta)
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
    raw: list[np.ndarray],
    rng: np.random.Generator,
    cfg: BuildConfig,
    soundfont: SoundFont,
    num_samples: int,
    folder: Path,
) -> dict:
    """vocals / bass / other / drums with their own mix. Parts keep their render unless their patch changes."""
    progs = choose_musdb_programs(piece.parts, programs, rng)
    sr, sfp = cfg.sample_rate, soundfont.path

    def part_audio(i: int) -> np.ndarray:
        if progs[i] == programs[i]:
            return raw[i]
        return render_notes(piece.parts[i].notes, progs[i], sr, num_samples, sfp)

    assign = musdb_assignment([p.median_pitch for p in piece.parts])
    zeros = np.zeros(num_samples, dtype=np.float32)
    melodic = {
        stem: (np.sum([part_audio(i) for i in idx], axis=0) if idx else zeros) for stem, idx in assign.items()
    }
    drums = render_notes(drum_notes(piece, rng), 0, sr, num_samples, sfp, is_drums=True)
    names = ["vocals", "bass", "other", "drums"]
    # drums sit a little under the music, as in a mix
    stems, mix = _finalize_stems([melodic["vocals"], melodic["bass"], melodic["other"], 0.5 * drums])
    folder.mkdir(parents=True)
    for name, stem in zip(names, stems):
        save(folder / f"{name}.{cfg.audio_format}", stem, sr)
    save(folder / f"mix.{cfg.audio_format}", mix, sr)
    return {
        "stems": {n: f"{n}.{cfg.audio_format}" for n in names},
        "parts": {k: v for k, v in assign.items()},
        "programs": {stem: [progs[i] for i in idx] for stem, idx in assign.items()},
        "drum_hits": len(piece.beats),
    }


def _metadata(
    piece: Piece,
    programs: list[int],
    stem_files: list[str],
    cfg: BuildConfig,
    soundfont: SoundFont,
    num_samples: int,
    musdb_meta: dict | None,
) -> dict:
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
        "parts": [
            {
                "index": i,
                "name": p.name,
                "stem": f,
                "program": prog,
                "program_name": GM_INSTRUMENTS.get(prog, ("?",))[0],
                "pitch_range": list(p.pitch_range),
                "notes": len(p.notes),
            }
            for i, (p, prog, f) in enumerate(zip(piece.parts, programs, stem_files))
        ],
        "groups": {"duo": duo_assignment([p.median_pitch for p in piece.parts])},
        "musdb": musdb_meta,
        "soundfont": soundfont.name,
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
    soundfont = find_soundfont(cfg.soundfont)
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
        return _build_locked(cfg, soundfont, works, t0, on_piece, on_start)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _build_locked(cfg: BuildConfig, soundfont: SoundFont, works: list[Path], t0: float,
                  on_piece: Callable[[PieceResult], None] | None,
                  on_start: Callable[[int], None] | None) -> BuildReport:
    _check_same_settings(cfg, soundfont)
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
                done(render_piece(w, cfg, soundfont))
        else:
            pool = ProcessPoolExecutor(max_workers=cfg.workers, initializer=_remember_parent,
                                       initargs=(os.getpid(),))
            try:
                futures = [pool.submit(render_piece, w, cfg, soundfont) for w in works]
                for f in as_completed(futures):
                    done(f.result())
            finally:  # on Ctrl-C or a crashed worker, queued pieces are dropped rather than rendered
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        rows = write_metadata_index(cfg.out)  # whatever finished is indexed, even after an interruption

    report = BuildReport(
        out=str(cfg.out),
        corpus=cfg.corpus,
        soundfont=str(soundfont.path),
        soundfont_origin=soundfont.origin,
        pieces=len(rows),
        rendered=sum(r.status == "rendered" for r in results),
        existing=sum(r.status == "existing" for r in results),
        failed=sorted((r for r in results if r.status == "failed"), key=lambda r: r.id),
        hours=sum(r["duration_seconds"] for r in rows) / 3600,
        wall_seconds=time.time() - t0,
        splits=dict(Counter(r["split"] for r in rows)),
    )
    info = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    summary = asdict(report) | {"config": info, "musictok_version": __version__}
    write_json(cfg.out / "build.json", summary)
    return report


# Settings that change the rendered audio: a rerun into the same folder must keep them.
SETTINGS = ("seed", "sample_rate", "tempo_jitter", "transpose_jitter", "musdb", "audio_format")


def _check_same_settings(cfg: BuildConfig, soundfont: SoundFont) -> None:
    """Refuse to mix pieces rendered with other settings into one folder."""
    previous = cfg.out / "build.json"
    if not previous.is_file():
        return
    try:
        old = json.loads(previous.read_text())
    except ValueError:
        return
    before = old.get("config", {})
    for key in SETTINGS:
        if key in before and before[key] != getattr(cfg, key):
            raise ValueError(f"{cfg.out} was built with {key}={before[key]!r}, not {getattr(cfg, key)!r}; "
                             "use the same settings to resume, or another --out")
    if old.get("soundfont") and Path(old["soundfont"]).name != soundfont.name:
        raise ValueError(f"{cfg.out} was rendered with the SoundFont {Path(old['soundfont']).name}, not "
                         f"{soundfont.name}; pass --soundfont {old['soundfont']} or use another --out")
