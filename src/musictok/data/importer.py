"""`musictok data import`: any folders of recorded audio -> a corpus of 24 kHz mono FLAC segments.

Layout of the output folder (readable by :class:`~musictok.data.datasets.CorpusIndex` like a rendered
corpus, so every trainer and evaluator takes it as it is)::

    OUT/import.json              the settings of the import, and every file that failed, with why
    OUT/metadata.jsonl           one line per segment (rebuilt from the source folders)
    OUT/<source>/source.json     one source file's metadata and its segments; written last = "done"
    OUT/<source>/000.flac ...    its segments, ``segment_seconds`` long (the last may be shorter)

Why these choices:

- **Splits by content hash.** A source file's split is a function of the SHA-1 of its bytes, so one
  recording never spans two splits, the split of a file never changes as the corpus grows, and the same
  file imported from two places lands in one folder.
- **Streaming.** The file is decoded in blocks and resampled with a streaming resampler, so memory is
  flat in the file's length and segment boundaries leave no resampling seams.
- **Resumable and atomic.** A source is written into ``OUT/.tmp-<source>`` and renamed when complete;
  a rerun skips finished sources. A file that cannot be decoded is one line in the report, and the rest
  goes on.
- **Licences travel with the data.** Each source records its licence: given on the command line, or read
  from the Debian ``copyright`` file of the package the file was unpacked from (``dpkg -x`` layout).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..atomic import write_json, write_text
from ..audio import AUDIO_EXTENSIONS, AudioError, save

SPLIT_SHARES = (("train", 0.90), ("valid", 0.05), ("test", 0.05))
SILENCE_DBFS = -60.0  # segments quieter than this (RMS) are dropped: silence teaches a tokenizer nothing


@dataclass
class ImportConfig:
    inputs: list[Path]
    out: Path
    segment_seconds: float = 30.0
    min_segment_seconds: float = 2.0  # a shorter tail is dropped
    sample_rate: int = 24000
    licence: str | None = None  # None: read it from a Debian copyright file when there is one
    split: str | None = None  # force every file into one split (e.g. a held-out test set)
    exclude: list[str] = field(default_factory=list)  # glob patterns on the path

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.out = Path(self.out)
        if not self.inputs:
            raise ValueError("give at least one folder or file to import")
        for p in self.inputs:
            if not p.exists():
                raise ValueError(f"{p}: no such file or folder")
        if not 1.0 <= self.segment_seconds <= 3600:
            raise ValueError(f"--segment-seconds must be in 1..3600, not {self.segment_seconds}")
        if not 8000 <= self.sample_rate <= 192000:
            raise ValueError(f"--sample-rate {self.sample_rate} Hz is outside 8000..192000")
        if self.split is not None and self.split not in ("train", "valid", "test"):
            raise ValueError(f"--split must be train, valid or test, not {self.split!r}")


@dataclass
class SourceResult:
    path: str
    status: str  # "imported", "existing", "duplicate" (same bytes as another file of this run), "failed"
    reason: str = ""
    slug: str = ""
    segments: int = 0
    seconds: float = 0.0


@dataclass
class ImportReport:
    out: str
    sources: int = 0
    imported: int = 0
    existing: int = 0
    duplicates: int = 0
    failed: list[SourceResult] = field(default_factory=list)
    hours: float = 0.0
    splits: dict = field(default_factory=dict)
    hours_by_package: dict = field(default_factory=dict)
    wall_seconds: float = 0.0


def content_hash(path: Path) -> str:
    """SHA-1 of the file's bytes (the source's identity: its split and folder name)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_for(digest: str, shares=SPLIT_SHARES) -> str:
    """Deterministic split from a hex digest: a uniform number in [0, 1) against cumulative shares."""
    u = int(digest[:12], 16) / float(16**12)
    total = 0.0
    for name, share in shares:
        total += share
        if u < total:
            return name
    return shares[-1][0]


def source_slug(path: Path, digest: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:40].strip("._") or "audio"
    return f"{stem}-{digest[:10]}"


# ------------------------------------------------------------------------------------ licences
def _dep5_paragraphs(text: str) -> list[dict[str, str]]:
    paras, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        paras.append(cur)
    return paras


def _free_text_licence(text: str) -> str | None:
    """The licence of an old-style (not machine-readable) Debian copyright file, when it is a GPL."""
    t = " ".join(text.split())
    m = re.search(r"GNU General Public License(?:,)? (?:as published by the Free Software Foundation; )?"
                  r"(?:either )?version (\d)", t)
    if m:
        return f"GPL-{m.group(1)}" + ("+" if re.search(r"or \(at your option\) any later|or later", t) else "")
    return None


def _dep5_matches(rel: Path, pattern: str) -> bool:
    """Does a DEP-5 ``Files:`` pattern name the installed file ``rel``?

    The pattern is written against the source tree, the path is where the package installed the file, so
    the pattern must match a whole-component tail of the path (``src/json/*`` does not match
    ``usr/share/x/music/a.ogg``). A pattern that names one file exactly also matches by file name alone,
    since packages often install ``music/a.ogg`` somewhere else; a wildcard file name (``sounds/*``) does
    not, or every later ``dir/*`` paragraph would claim every file.
    """
    if pattern == "*":
        return True
    parts = rel.parts
    if any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts))):
        return True
    name = pattern.rsplit("/", 1)[-1]
    return not any(c in name for c in "*?[") and name == rel.name


def debian_licence(path: Path) -> tuple[str, str] | None:
    """``(licence, copyright_file)`` for a file unpacked by ``dpkg -x`` (or from a ``.pk3`` beside one).

    Looks for the nearest ancestor holding ``usr/share/doc/<pkg>/copyright``. In a machine-readable
    (DEP-5) file the last ``Files:`` paragraph whose patterns match the file's name wins, as DEP-5 says;
    patterns are matched on path suffixes because installed paths differ from the source tree's.
    """
    p = path.resolve()
    for root in p.parents:
        docs = sorted((root / "usr" / "share" / "doc").glob("*/copyright"))
        if not docs:
            continue
        copyright_file = docs[0]
        text = copyright_file.read_text(errors="replace")
        paras = _dep5_paragraphs(text)
        files = [q for q in paras if "files" in q and "license" in q]
        rel = p.relative_to(root)
        best = None
        for q in files:
            patterns = q["files"].split()
            if any(pat.startswith("debian/") for pat in patterns):
                continue
            if any(_dep5_matches(rel, pat) for pat in patterns):
                best = q["license"].splitlines()[0].strip()
        if best is None:
            best = _free_text_licence(text)
        return (best or "see copyright file"), str(copyright_file)
    return None


# ------------------------------------------------------------------------------------ import
def _stream_segments(path: Path, sample_rate: int, segment_samples: int):
    """Yield mono float32 segments of ``segment_samples`` at ``sample_rate`` (the last may be short)."""
    import soundfile as sf
    import soxr

    with sf.SoundFile(str(path)) as f:
        sr = int(f.samplerate)
        if f.frames == 0:
            raise AudioError(path, "audio has zero length")
        stream = None if sr == sample_rate else soxr.ResampleStream(sr, sample_rate, 1, dtype="float32",
                                                                     quality="VHQ")
        pending: list[np.ndarray] = []
        have = 0
        block = max(sr, 1) * 10
        while True:
            data = f.read(frames=block, dtype="float32", always_2d=True)
            last = len(data) < block
            x = data.mean(axis=1)
            if not np.all(np.isfinite(x)):
                raise AudioError(path, "audio contains NaN/Inf samples")
            if stream is not None:
                x = stream.resample_chunk(x, last=last)
            pending.append(x)
            have += len(x)
            while have >= segment_samples:
                joined = np.concatenate(pending)
                yield joined[:segment_samples]
                pending, have = [joined[segment_samples:]], len(joined) - segment_samples
            if last:
                break
        if have:
            yield np.concatenate(pending)


def _import_one(path: Path, cfg: ImportConfig) -> SourceResult:
    digest = content_hash(path)
    slug = source_slug(path, digest)
    final = cfg.out / slug
    if (final / "source.json").is_file():
        meta = json.loads((final / "source.json").read_text())
        licence = cfg.licence or (found[0] if (found := debian_licence(path)) else "unknown")
        if meta.get("licence") != licence:  # relabel a source imported by an older, wrong licence reader
            meta["licence"] = licence
            write_json(final / "source.json", meta)
        return SourceResult(str(path), "existing", segments=len(meta["segments"]), seconds=meta["duration_seconds"],
                            slug=slug)
    tmp = cfg.out / f".tmp-{slug}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        seg_n = int(round(cfg.segment_seconds * cfg.sample_rate))
        segments, total = [], 0
        for k, seg in enumerate(_stream_segments(path, cfg.sample_rate, seg_n)):
            total += len(seg)
            if len(seg) < min(cfg.min_segment_seconds, cfg.segment_seconds) * cfg.sample_rate:
                continue
            rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
            if rms <= 10 ** (SILENCE_DBFS / 20):
                continue
            name = f"{k:03d}.flac"
            save(tmp / name, np.clip(seg, -1.0, 1.0), cfg.sample_rate)
            segments.append({"file": name, "index": k, "start_seconds": k * cfg.segment_seconds,
                             "duration_seconds": len(seg) / cfg.sample_rate})
        if not segments:
            raise AudioError(path, "no segment louder than -60 dBFS (silent or too short)")
        found = None if cfg.licence else debian_licence(path)
        meta = {
            "id": slug, "source": str(path), "sha1": digest,
            "split": cfg.split or split_for(digest),
            "licence": cfg.licence or (found[0] if found else "unknown"),
            "licence_file": found[1] if found else None,
            "package": _package_of(path),
            "duration_seconds": total / cfg.sample_rate,
            "sample_rate": cfg.sample_rate, "segments": segments, "musictok_version": __version__,
        }
        write_json(tmp / "source.json", meta)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except AudioError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        return SourceResult(str(path), "failed", reason=e.reason)
    except Exception as e:  # a decoder's own error: one line for this file, the import goes on
        shutil.rmtree(tmp, ignore_errors=True)
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return SourceResult(str(path), "failed", reason=f"cannot be decoded as audio ({msg})")
    return SourceResult(str(path), "imported", segments=len(segments), seconds=meta["duration_seconds"], slug=slug)


def _package_of(path: Path) -> str | None:
    """The Debian package a ``dpkg -x`` file came from (its doc folder's name), if any."""
    for root in path.resolve().parents:
        docs = sorted((root / "usr" / "share" / "doc").glob("*/copyright"))
        if docs:
            return docs[0].parent.name
    return None


def segment_rows(meta: dict) -> list[dict]:
    """One :class:`CorpusIndex` row per segment of a source (``folder`` + ``mix`` locate the file)."""
    base = {k: meta[k] for k in ("split", "licence", "package", "source")}
    return [{"id": f"{meta['id']}-{s['index']:03d}", "folder": meta["id"], "mix": s["file"],
             "duration_seconds": s["duration_seconds"], "kind": "recording", "composer": meta["package"] or "",
             "title": Path(meta["source"]).stem, "parts": [], **base} for s in meta["segments"]]


def write_import_index(out: Path) -> list[dict]:
    """Rebuild ``metadata.jsonl`` from the finished source folders (atomically)."""
    rows = []
    for p in sorted(out.glob("*/source.json")):
        rows.extend(segment_rows(json.loads(p.read_text())))
    write_text(out / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def list_sources(cfg: ImportConfig) -> list[Path]:
    files: list[Path] = []
    for root in cfg.inputs:
        cand = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in cand:
            if p.suffix.lower() not in AUDIO_EXTENSIONS + (".xm", ".mod", ".it", ".s3m"):
                continue
            if any(fnmatch.fnmatch(str(p), pat) for pat in cfg.exclude):
                continue
            files.append(p)
    return files


def import_audio(cfg: ImportConfig, on_source: Callable[[SourceResult], None] | None = None,
                 on_start: Callable[[int], None] | None = None) -> ImportReport:
    """Import every audio file under ``cfg.inputs`` into ``cfg.out`` (resumable; bad files are reported)."""
    t0 = time.time()
    files = list_sources(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    for stale in cfg.out.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if on_start:
        on_start(len(files))
    report = ImportReport(out=str(cfg.out), sources=len(files))
    seen: set[str] = set()
    try:
        for path in files:
            r = _import_one(path, cfg)
            if r.status == "existing" and r.slug in seen:
                r.status = "duplicate"
            seen.add(r.slug)
            if r.status == "duplicate":
                report.duplicates += 1
            elif r.status == "failed":
                report.failed.append(r)
            elif r.status == "imported":
                report.imported += 1
            else:
                report.existing += 1
            if on_source:
                on_source(r)
    finally:  # whatever finished is indexed, even after an interruption
        rows = write_import_index(cfg.out)
        report.hours = sum(r["duration_seconds"] for r in rows) / 3600
        for r in rows:
            report.splits[r["split"]] = report.splits.get(r["split"], 0) + 1
            pkg = r["package"] or "(no package)"
            report.hours_by_package[pkg] = report.hours_by_package.get(pkg, 0.0) + r["duration_seconds"] / 3600
        report.wall_seconds = time.time() - t0
        summary = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()
                                if k != "inputs"} | {"inputs": [str(p) for p in cfg.inputs]},
                   "report": asdict(report), "musictok_version": __version__}
        write_json(cfg.out / "import.json", summary)
    return report
