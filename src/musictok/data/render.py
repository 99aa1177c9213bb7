"""SoundFont rendering of note lists with TinySoundFont, one synthesizer instance per stem.

Giving every stem its own synthesizer keeps stems independent (no shared voice stealing or reverb), so
the mix can be defined as the exact sum of the stems. A SoundFont is parsed once per process and cloned for
each stem (TinySoundFont's copy shares the sample data), so a large one costs one load, not one per stem.

A *pool* of SoundFonts (`find_soundfont_pool`) lets each stem draw its own (`choose_soundfonts`).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .corpus import Note

# Better General MIDI SoundFonts that Debian installs, tried in order before the embedded one.
SYSTEM_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # fluid-soundfont-gm
    Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),  # musescore-general-soundfont-small
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),  # musescore-general-soundfont
    Path("/usr/share/sounds/sf2/MuseScore_General.sf2"),
)
# Where a pool's "auto" entry looks, besides the embedded TimGM6mb: Debian packages unpacked (not installed)
# by scripts/fetch_debian.sh into data/debian/ (relative to the working directory), and installed ones.
POOL_SEARCH = ("data/debian/*/usr/share/sounds", "/usr/share/sounds")
SUFFIXES = (".sf2", ".sf3", ".sfo")
EMBEDDED = "embedded (pretty_midi TimGM6mb)"
# Presets TinySoundFont renders wrongly, by SoundFont file name: a stem never draws that SoundFont for them.
# MuseScore_General_Lite's acoustic pianos: the velocity layer around 80 (music21's default) sounds ≈ 25 dB
# under its neighbours (C4 peaks 0.017, 0.0025 and 0.068 at velocities 40, 80 and 120).
UNRELIABLE_PRESETS: dict[str, frozenset[int]] = {
    "MuseScore_General_Lite.sf3": frozenset({0, 1, 3}),
}
BLOCK = 64  # TinySoundFont renders in blocks of 64 samples internally


class SoundFontError(Exception):
    """The SoundFont given cannot be used."""


@dataclass(frozen=True)
class SoundFont:
    path: Path
    origin: str  # "given", "system" or `EMBEDDED`

    @property
    def name(self) -> str:
        return self.path.name


def embedded_soundfont() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfont(given: str | Path | None = None) -> SoundFont:
    """The SoundFont to use: the one given, else a Debian one if installed, else pretty_midi's TimGM6mb."""
    if given is not None:
        p = Path(given)
        if not p.is_file():
            raise SoundFontError(f"{p}: SoundFont file not found")
        if p.suffix.lower() not in SUFFIXES:
            raise SoundFontError(f"{p}: not a SoundFont (expected .sf2, .sf3 or .sfo)")
        return SoundFont(p.resolve(), "given")
    for p in SYSTEM_SOUNDFONTS:
        if p.is_file():
            return SoundFont(p, "system")
    return SoundFont(embedded_soundfont(), EMBEDDED)


def find_soundfont_pool(spec: Sequence[str | Path], programs: Iterable[int] = ()) -> list[SoundFont]:
    """The SoundFonts stems draw from, in a stable order. Each entry is a path, or ``auto``: the embedded
    TimGM6mb, then every SoundFont under `POOL_SEARCH`, by file name (one file per name).

    Every SoundFont must load and hold ``programs`` (General MIDI bank 0) and a drum kit (bank 128).
    """
    pool: list[SoundFont] = []
    for entry in spec:
        if str(entry) == "auto":
            for sf in [SoundFont(embedded_soundfont(), EMBEDDED)] + _search_pool():
                if sf.name not in {f.name for f in pool}:
                    pool.append(sf)
            continue
        sf = find_soundfont(entry)
        if sf.name in {f.name for f in pool}:
            raise SoundFontError(f"{sf.path}: a SoundFont named {sf.name} is already in the pool; stems are "
                                 "recorded by file name, so each name can be in the pool once")
        pool.append(sf)
    if not pool:
        raise SoundFontError("the SoundFont pool is empty")
    for sf in pool:
        check_general_midi(sf, programs)
    return pool


def check_general_midi(sf: SoundFont, programs: Iterable[int]) -> None:
    """Raise `SoundFontError` unless ``sf`` loads and holds ``programs`` (bank 0) and a drum kit (bank 128)."""
    font = _loaded(str(sf.path))
    missing = [p for p in sorted(set(programs)) if font.get_preset_index(0, p) < 0]
    if missing or font.get_preset_index(128, 0) < 0:
        what = f"programmes {missing}" if missing else "a drum kit (bank 128)"
        raise SoundFontError(f"{sf.path}: not a General MIDI SoundFont (lacks {what})")


def _search_pool() -> list[SoundFont]:
    found: dict[str, Path] = {}
    for pattern in POOL_SEARCH:
        for root in sorted(glob.glob(pattern)):
            for p in sorted(Path(root).rglob("*")):
                if p.suffix.lower() in SUFFIXES and p.is_file() and p.name not in found:
                    found[p.name] = p.resolve()
    return [SoundFont(found[name], "system") for name in sorted(found)]


def choose_soundfonts(pool: Sequence[SoundFont], programs: Sequence[int | None],
                      rng: np.random.Generator) -> list[SoundFont]:
    """A SoundFont per stem (``None`` = the drum kit), uniformly from the pool, skipping a SoundFont for a
    programme it renders wrongly (`UNRELIABLE_PRESETS`)."""
    out = []
    for prog in programs:
        ok = [sf for sf in pool if prog is None or prog not in UNRELIABLE_PRESETS.get(sf.name, ())] or list(pool)
        out.append(ok[int(rng.integers(len(ok)))])
    return out


def _synth():
    """TinySoundFont's extension module. Not a dependency of the package: its own dependency, pyaudio (live
    playback, unused here), needs PortAudio headers to build, so it is installed without dependencies."""
    try:
        from tinysoundfont import _tinysoundfont
    except ImportError:
        raise SoundFontError("rendering needs TinySoundFont: pip install --no-deps tinysoundfont==0.3.7 "
                             "(`make demo` / `make test` install it)") from None
    return _tinysoundfont


@lru_cache(maxsize=None)
def _loaded(path: str):
    """The parsed SoundFont, once per process (a pool is a handful of files; forked workers share it)."""
    tsf = _synth()
    try:
        return tsf.SoundFont(path)
    except Exception as e:
        raise SoundFontError(f"{path}: cannot be loaded as a SoundFont ({e})") from None


def render_notes(
    notes: list[Note],
    program: int,
    sample_rate: int,
    num_samples: int,
    soundfont: Path,
    *,
    is_drums: bool = False,
) -> np.ndarray:
    """Render one stem: a fresh synthesizer, one channel, note events at sample-exact positions.

    Returns float32 mono ``(num_samples,)``. Deterministic: TinySoundFont has no random state, and each stem
    gets a fresh clone of the parsed SoundFont (what `tinysoundfont.Synth` does, minus the reload).
    """
    tsf = _synth()
    synth = tsf.SoundFont(_loaded(str(soundfont)))  # shares the samples, fresh voices
    synth.set_output(tsf.OutputMode.StereoInterleaved, sample_rate, 0.0)
    synth.set_max_voices(256)
    synth.channel_set_bank(0, 128 if is_drums else 0)
    synth.channel_set_preset_number(0, 0 if is_drums else program, is_drums)

    # Events as (sample, order, key, velocity): note-offs sort before note-ons at the same instant, so a
    # repeated pitch is released and struck again rather than cut off.
    events: list[tuple[int, int, int, int]] = []
    for n in notes:
        s0 = int(round(n.start * sample_rate))
        s1 = max(int(round(n.end * sample_rate)), s0 + 1)
        events.append((s0, 1, n.pitch, n.velocity))
        events.append((s1, 0, n.pitch, 0))
    events.sort()

    out = np.zeros(num_samples, dtype=np.float32)
    pos = 0
    for sample, kind, key, vel in events:
        sample = min(sample, num_samples)
        if sample > pos:
            out[pos:sample] = _generate(synth, sample - pos)
            pos = sample
        if kind == 1:
            synth.channel_note_on(0, key, vel / 127.0)
        else:
            synth.channel_note_off(0, key)
    if pos < num_samples:
        out[pos:] = _generate(synth, num_samples - pos)
    return out


def _generate(synth, n: int) -> np.ndarray:
    buf = bytearray(n * 2 * 4)  # stereo float32
    synth.render(memoryview(buf), False)
    stereo = np.frombuffer(buf, dtype=np.float32).reshape(-1, 2)
    return stereo.mean(axis=1)
