"""SoundFont rendering of note lists with TinySoundFont, one synthesizer instance per stem.

Giving every stem its own synthesizer keeps stems independent (no shared voice stealing or reverb), so
the mix can be defined as the exact sum of the stems.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .corpus import Note

# Better General MIDI SoundFonts that Debian installs, tried in order before the embedded one.
SYSTEM_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),  # fluid-soundfont-gm
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),  # musescore-general-soundfont-small
    Path("/usr/share/sounds/sf2/MuseScore_General.sf2"),
)
BLOCK = 64  # TinySoundFont renders in blocks of 64 samples internally


class SoundFontError(Exception):
    """The SoundFont given cannot be used."""


@dataclass(frozen=True)
class SoundFont:
    path: Path
    origin: str  # "given", "system" or "embedded (pretty_midi TimGM6mb)"

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
        if p.suffix.lower() not in (".sf2", ".sf3", ".sfo"):
            raise SoundFontError(f"{p}: not a SoundFont (expected .sf2, .sf3 or .sfo)")
        return SoundFont(p.resolve(), "given")
    for p in SYSTEM_SOUNDFONTS:
        if p.is_file():
            return SoundFont(p, "system")
    return SoundFont(embedded_soundfont(), "embedded (pretty_midi TimGM6mb)")


@lru_cache(maxsize=4)
def _soundfont_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


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

    Returns float32 mono ``(num_samples,)``. Deterministic: TinySoundFont has no random state.
    """
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        sfid = synth.sfload(_soundfont_bytes(str(soundfont)))
    except Exception as e:
        raise SoundFontError(f"{soundfont}: cannot be loaded as a SoundFont ({e})") from None
    synth.program_select(0, sfid, 128 if is_drums else 0, 0 if is_drums else program, is_drums)

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
            synth.noteon(0, key, vel)
        else:
            synth.noteoff(0, key)
    if pos < num_samples:
        out[pos:] = _generate(synth, num_samples - pos)
    return out


def _generate(synth, n: int) -> np.ndarray:
    buf = synth.generate(n)
    stereo = np.frombuffer(buf, dtype=np.float32).reshape(-1, 2)
    return stereo.mean(axis=1)
