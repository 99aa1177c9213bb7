"""Folders of audio → folders of ``.mtok`` token files and back (what `musictok encode/decode` run).

Inputs may be files or folders; a folder's tree is mirrored under the output folder. Every output is
written atomically, so an interrupted run leaves whole files only, and a rerun skips finished outputs
unless asked to overwrite. Nothing is ever written over an input, nor over audio musictok did not decode.

Long files stream: encoding reads, downmixes and resamples a block at a time and encodes the tokenizer's
overlapping chunks as the samples arrive (the same chunks, hence the same tokens, as
``Tokenizer.encode`` of the whole file); decoding writes each decoded chunk to the output as it goes. So
memory stays flat in the length of the file.

Channels and rates (``--channels``, ``--sample-rate``): a stereo file is encoded as two channels, each its
own token streams (``musictok.channels``), and decoded back to a stereo file; a file of more than two
channels, or any file under ``--channels mono``, is downmixed. Every ``.mtok`` records its input's rate,
channel count and length, so decoding can give back the input's rate at its exact length on request;
by default it writes the tokenizer's rate, which holds everything the tokens describe.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from .audio import AUDIO_EXTENSIONS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioStream, find_audio, open_output
from .channels import encode_channels, from_channels, join_channels, split_channels, to_channels
from .errors import MusictokError
from .tokens import SourceAudio, Tokens

MTOK = ".mtok"
DECODED_BY = "musictok decode"  # written into every decoded file, so a rerun knows it may replace it
# --channels: "keep" encodes a stereo file as stereo and anything else as mono; the others are channel layouts.
CHANNEL_CHOICES = ("keep", "mono", "stereo", "mid-side")


class ConvertError(MusictokError):
    """Inputs that cannot be converted as asked (nothing to convert, an output that would replace an input)."""


@dataclass
class ConvertReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that already existed
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)  # converted, but the user should know
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float | None:
        """Seconds of audio per second of compute; ``None`` when nothing was converted."""
        return self.audio_seconds / self.compute_seconds if self.compute_seconds > 0 else None


def plan(inputs: Iterable[str | Path], out_dir: str | Path, suffixes: tuple[str, ...], new_suffix: str
         ) -> list[tuple[Path, Path]]:
    """``(input file, output file)`` pairs; folders are searched recursively and mirrored.

    Refuses (before any work) inputs that hold nothing to convert and outputs that would land on an input."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConvertError(out, "is a file; --out must be a folder")
    pairs: list[tuple[Path, Path]] = []
    items = [Path(i) for i in inputs]
    for p in items:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            files = find_audio(p) if suffixes == AUDIO_EXTENSIONS else sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            pairs += [(f, (out / f.relative_to(p)).with_suffix(new_suffix)) for f in files]
        else:
            pairs.append((p, (out / p.name).with_suffix(new_suffix)))
    if not pairs:
        kinds = "audio files" if suffixes == AUDIO_EXTENSIONS else " or ".join(f"{s} files" for s in suffixes)
        raise ConvertError(", ".join(map(str, items)), f"no {kinds} found")
    targets = [t for _, t in pairs]
    dupes = {t for t in targets if targets.count(t) > 1}
    if dupes:
        raise ConvertError(f"two inputs would write the same output {sorted(dupes)[0]}; convert them separately")
    sources = {src.resolve(): src for src, _ in pairs}
    for src, dst in pairs:
        if dst.resolve() in sources:
            raise ConvertError(src, f"its output {dst} would replace the input {sources[dst.resolve()]}; "
                                    "choose another --out")
    return pairs


def _convert(pairs: list[tuple[Path, Path]], work: Callable[[Path, Path, ConvertReport], None], *,
             overwrite: bool, on_file: Callable[[Path, str], None] | None,
             replaceable: Callable[[Path, Path], None] | None = None) -> ConvertReport:
    """The bookkeeping both directions share: skip finished outputs, record failures, report progress.

    ``work(src, dst, report)`` converts one file and adds its written files and timings to ``report``;
    a :class:`MusictokError` (bad audio, damaged tokens, a tokenizer that must refuse them) fails that file
    only, and the others go on. ``replaceable(src, dst)`` raises when an existing ``dst`` must be kept."""
    report = ConvertReport()
    for src, dst in pairs:
        try:
            if dst.exists() and replaceable:
                replaceable(src, dst)
            if dst.exists() and not overwrite:
                report.skipped.append(dst)
                status = "skipped"
            else:
                work(src, dst, report)
                status = "written"
        except MusictokError as e:
            report.failed.append((src, str(e).removeprefix(f"{src}: ")))
            status = "failed"
        if on_file:
            on_file(src, status)
    return report


# ---------------------------------------------------------------- encoding


def _peak_warning(peak: float) -> str | None:
    if peak <= 1.0:
        return None
    return (f"peak {20 * math.log10(peak):+.1f} dBFS is above full scale: the tokenizer was trained on audio "
            "within ±1, so expect distortion; lower the gain first")


def check_channels(tokenizer, channels: str) -> None:
    """Refuse, before any work, a ``--channels`` value that is unknown or that the tokenizer cannot keep."""
    if channels not in CHANNEL_CHOICES:
        raise ConvertError(f"--channels: one of {', '.join(CHANNEL_CHOICES)}, not {channels!r}")
    if channels in ("stereo", "mid-side") and getattr(tokenizer, "stem_inputs", 0):
        raise ConvertError(f"--channels {channels}: a {tokenizer.name} tokenizer of several tracks encodes mono "
                           "mixes; use --channels mono")


def channels_warning(tokenizer, channels: str) -> str | None:
    """A caution for ``--channels mid-side`` with a decoder that picks its own phases (see
    ``musictok.channels``), or ``None``."""
    if channels != "mid-side" or not tokenizer.phase_free:
        return None
    return (f"--channels mid-side: {tokenizer.name} picks its own phases when it decodes, so left = mid + side and "
            "right = mid − side do not cancel: panned sources leak into the other channel or vanish; prefer "
            "--channels stereo")


def file_channels(channels: str, input_channels: int, tokenizer, path: str | Path | None = None
                  ) -> tuple[str, str | None]:
    """The channel layout a file of ``input_channels`` channels is encoded in under ``--channels``, and a
    warning when ``keep`` had to drop channels. A mono file stays mono whatever was asked (there is nothing
    to keep apart); ``stereo`` and ``mid-side`` refuse more than two channels (which two?)."""
    if input_channels == 1 or channels == "mono":
        return "mono", None
    if getattr(tokenizer, "stem_inputs", 0):
        return "mono", (f"{input_channels} channels downmixed to mono: a {tokenizer.name} tokenizer of several "
                        "tracks encodes mono mixes")
    if input_channels == 2:
        return ("stereo" if channels == "keep" else channels), None
    if channels == "keep":
        return "mono", f"{input_channels} channels downmixed to mono (musictok keeps one or two channels)"
    raise ConvertError(path, f"has {input_channels} channels; --channels {channels} takes two (left, right); "
                             "use --channels mono to downmix")


def encode_file(path: str | Path, tokenizer, *, chunk_units: int | None = None, channels: str = "keep"
                ) -> tuple[Tokens, float]:
    """Encode one audio file (resampled to the tokenizer's rate): ``(tokens, peak)`` where ``peak`` is the
    largest absolute input sample. ``channels`` is a :data:`CHANNEL_CHOICES` entry (see
    :func:`file_channels`); the tokens record the file's own rate, channel count and length.

    A file longer than two chunks streams (see the module docstring); a level-normalising tokenizer
    (``level_dbfs``) then gets its scale from a first, cheap pass over the file at the file's own rate:
    the RMS of the mono downmix, or of all samples of both channels (one gain per file, as in
    ``musictok.channels``)."""
    from .corpus_encode import ChunkPlan, source_level_scale

    check_channels(tokenizer, channels)
    chunk = chunk_units or tokenizer.chunk_units
    layout, _ = file_channels(channels, AudioStream(path).channels, tokenizer, path)
    stream = AudioStream(path, tokenizer.sample_rate, mono=layout == "mono")
    if ChunkPlan(tokenizer.hop_samples, chunk, tokenizer.context_units).whole(
            stream.read_frames * tokenizer.sample_rate / stream.source_rate):
        wav = torch.from_numpy(np.concatenate(list(stream), axis=-1))
        tokens = tokenizer.encode(wav, chunk_units=chunk) if layout == "mono" else \
            encode_channels(tokenizer, wav, layout, chunk_units=chunk)
    else:
        scale = None if tokenizer.level_dbfs is None else \
            source_level_scale(path, tokenizer.level_dbfs, mono=layout == "mono")
        blocks = stream if layout == "mono" else (to_channels(b, layout) for b in stream)
        codes, length = encode_stream(tokenizer, blocks, chunk, scale)
        k = codes[0].shape[0]  # channels, side by side in the batch
        batch = Tokens(codes, tokenizer.layout, tokenizer.fingerprint(), tokenizer.sample_rate, [length] * k,
                       tokenizer.token_extra(), None if scale is None else [scale] * k)
        tokens = join_channels(batch, layout)
    source = SourceAudio(stream.source_rate, stream.channels, (stream.frames_read,))
    return dataclasses.replace(tokens, source=source), stream.peak


@torch.no_grad()
def encode_stream(tokenizer, blocks: Iterable[np.ndarray], chunk_units: int, scale: float | None = None
                  ) -> tuple[list[Tensor], int]:
    """Per stream ``(C, frames, slots)`` codes of audio given as consecutive blocks, and its length: blocks
    ``(T_i,)`` are one channel (``C = 1``), blocks ``(C, T_i)`` are ``C`` channels encoded side by side.

    The chunks are those of ``Tokenizer._encode_long`` (``chunk_units`` units, ``context_units`` of context
    each side, zero padding at the end; see :class:`~musictok.corpus_encode.StreamChunker`), so the codes
    equal whole-file encoding; only one chunk of samples is held at a time. ``scale`` divides every sample
    (a level-normalising tokenizer's gain)."""
    from .corpus_encode import ChunkPlan, StreamChunker

    fpu = tokenizer._frames_per_unit()
    chunker = StreamChunker(ChunkPlan(tokenizer.hop_samples, chunk_units, tokenizer.context_units))
    pieces: list[list[Tensor]] = [[] for _ in fpu]
    total = 0

    def run(chunks) -> None:
        for c in chunks:
            x = torch.from_numpy(c.samples)
            if scale is not None:
                x = x / scale
            with tokenizer.encoding_autocast():
                codes = tokenizer._encode_codes(x.to(tokenizer.device))
            for s, f in enumerate(fpu):
                pieces[s].append(codes[s][:, (c.start - c.lo) * f: (c.stop - c.lo) * f].cpu())

    was_training = tokenizer.training
    tokenizer.eval()
    try:
        for block in blocks:
            total += block.shape[-1]
            run(chunker.push(block))
        run(chunker.finish())
    finally:
        tokenizer.train(was_training)
    if total == 0:
        raise ConvertError("the audio stream is empty")
    return [torch.cat(p, dim=1) for p in pieces], total


def plan_stem_pairs(inputs: Iterable[str | Path], out_dir: str | Path) -> list[tuple[tuple[Path, Path], Path]]:
    """Audio files taken two at a time as (lead, accompaniment) -> one ``.mtok`` each, named after the lead."""
    items = [Path(i) for i in inputs]
    if len(items) % 2:
        raise ConvertError(", ".join(map(str, items)), "stems come in pairs: lead, accompaniment, lead, …")
    for p in items:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file (stems are given as files, in pairs)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConvertError(out, "is a file; --out must be a folder")
    pairs = [((items[i], items[i + 1]), (out / items[i].name).with_suffix(MTOK)) for i in range(0, len(items), 2)]
    targets = [t for _, t in pairs]
    if len(set(targets)) != len(targets):
        raise ConvertError("two pairs would write the same output; name their lead files differently")
    return pairs


def encode_stem_files(pairs: list[tuple[tuple[Path, Path], Path]], tokenizer, *, overwrite: bool = False,
                      on_file: Callable[[Path, str], None] | None = None) -> ConvertReport:
    """Encode pairs of stems (lead, accompaniment) with a tokenizer of two tracks (DuoTok): one ``.mtok``
    per pair, both streams in it. Each pair is read whole (stems of a song fit in memory); the shorter stem
    is padded with silence."""
    from .audio import load

    if getattr(tokenizer, "stem_inputs", 0) != 2:
        raise ConvertError(f"--stems: a {tokenizer.name} tokenizer encodes one signal; stems need a tokenizer of "
                           "two tracks (duotok)")
    partner = {lead: acc for (lead, acc), _ in pairs}

    def work(src: Path, dst: Path, report: ConvertReport) -> None:
        t0 = time.perf_counter()
        wavs = [load(f, tokenizer.sample_rate)[0] for f in (src, partner[src])]
        n = max(len(w) for w in wavs)
        x = torch.from_numpy(np.stack([np.pad(w, (0, n - len(w))) for w in wavs]))[None]
        tokens = tokenizer.encode(x)
        report.compute_seconds += time.perf_counter() - t0
        report.audio_seconds += n / tokenizer.sample_rate
        tokens.extra |= {"source_files": [src.name, partner[src].name], "input": "stems"}
        report.written.append(tokens.save(dst))

    return _convert([(lead, dst) for (lead, _), dst in pairs], work, overwrite=overwrite, on_file=on_file)


def encode_files(pairs: list[tuple[Path, Path]], tokenizer, *, overwrite: bool = False,
                 on_file: Callable[[Path, str], None] | None = None, channels: str = "keep", workers: int = 0
                 ) -> ConvertReport:
    """Encode each audio file (resampled to the tokenizer's rate; its channels as ``channels`` says, see
    :func:`file_channels`) into a ``.mtok`` file.

    ``workers=0`` decodes and encodes one file after the other in this process; ``workers >= 1`` decodes
    in that many worker processes while this one encodes (:func:`musictok.corpus_encode.encode_corpus`):
    the same tokens, written as each file completes."""
    check_channels(tokenizer, channels)
    if workers:
        from .corpus_encode import encode_corpus

        return encode_corpus(pairs, tokenizer, workers=workers, channels=channels, overwrite=overwrite,
                             on_file=on_file)

    def work(src: Path, dst: Path, report: ConvertReport) -> None:
        t0 = time.perf_counter()
        tokens, peak = encode_file(src, tokenizer, channels=channels)
        report.compute_seconds += time.perf_counter() - t0
        report.audio_seconds += tokens.lengths[0] / tokens.sample_rate
        tokens.extra["source_file"] = src.name
        report.written.append(tokens.save(dst))
        for warning in (file_channels(channels, tokens.source.channels, tokenizer)[1], _peak_warning(peak)):
            if warning:
                report.warnings.append((src, warning))

    return _convert(pairs, work, overwrite=overwrite, on_file=on_file)


# ---------------------------------------------------------------- decoding


def decoded_by_musictok(path: Path) -> bool:
    """Whether an existing audio file was written by `musictok decode` (and so may be replaced)."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            return f.software.startswith(DECODED_BY)
    except Exception:  # not audio at all: certainly not ours
        return False


def check_levels(tokenizer, levels: int | None) -> None:
    """Refuse, before any work, a ``levels`` the tokenizer cannot decode with."""
    if levels is None:
        return
    most = tokenizer.num_decode_levels
    if most is None:
        raise ConvertError(f"--levels: a {tokenizer.name} tokenizer decodes all its codes at once; it has no levels")
    if not 1 <= levels <= most:
        raise ConvertError(f"--levels: {tokenizer.name} has levels 1..{most}, not {levels}")


@torch.no_grad()
def decode_chunks(tokenizer, codes: list[Tensor], chunk_units: int, options: dict | None = None
                  ) -> Iterator[Tensor]:
    """``(B, T_i)`` waveform pieces of ``Tokenizer._decode_long``, one chunk at a time (concatenated, the
    same samples)."""
    fpu = tokenizer._frames_per_unit()
    options = options or {}
    units = -(-codes[0].shape[1] // fpu[0])
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        if units <= chunk_units + 2 * tokenizer.context_units:
            yield tokenizer._decode_codes([c.to(tokenizer.device) for c in codes], **options)
            return
        hop, ctx = tokenizer.hop_samples, tokenizer.context_units
        for start in range(0, units, chunk_units):
            stop = min(start + chunk_units, units)
            lo, hi = max(start - ctx, 0), min(stop + ctx, units)
            wav = tokenizer._decode_codes([c[:, lo * f: hi * f].to(tokenizer.device) for c, f in zip(codes, fpu)],
                                          **options)
            yield wav[..., (start - lo) * hop: (stop - lo) * hop]
    finally:
        tokenizer.train(was_training)


def track_paths(path: str | Path, tokens: Tokens, tokenizer) -> list[Path]:
    """Beside ``NAME.wav``, one ``NAME.<track>.wav`` per track of a tokenizer of several tracks (DuoTok:
    ``NAME.lead.wav``, ``NAME.accompaniment.wav``; ``NAME.wav`` is then their mix); none otherwise."""
    if getattr(tokenizer, "stem_inputs", 0) <= 1:
        return []
    p = Path(path)
    return [p.with_name(f"{p.stem}.{s.name}{p.suffix}") for s in tokens.layout.streams]


def parse_sample_rate(value: str | int | None) -> str | int:
    """``--sample-rate``: ``model`` (the tokenizer's rate, the default), ``original`` (the input's) or Hz."""
    if value is None or value in ("model", "original"):
        return value or "model"
    try:
        rate = int(value)
    except ValueError:
        raise ConvertError(f"--sample-rate: model, original or a rate in Hz, not {value!r}") from None
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ConvertError(f"--sample-rate: {rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz")
    return rate


def output_rate(tokens: Tokens, sample_rate: str | int) -> tuple[int, str | None]:
    """The rate to decode ``tokens`` at under ``--sample-rate`` (see :func:`parse_sample_rate`), and a
    warning when ``original`` is asked of a file that does not record it (written by an older musictok)."""
    if sample_rate == "model":
        return tokens.sample_rate, None
    if sample_rate != "original":
        return int(sample_rate), None
    if tokens.source is None:
        return tokens.sample_rate, (f"does not record its input's sample rate (an older token file); decoded at "
                                    f"the tokenizer's {tokens.sample_rate} Hz")
    return tokens.source.sample_rate, None


def output_length(tokens: Tokens, rate: int, index: int = 0) -> int:
    """Samples of clip ``index`` decoded at ``rate``: the input's own length at the input's rate, else its
    duration at ``rate`` (at the tokenizer's rate, its length in the tokens)."""
    if tokens.source is not None and rate == tokens.source.sample_rate:
        return tokens.source.lengths[index]
    return round(tokens.lengths[index] * rate / tokens.sample_rate)


def decode_to_file(tokens: Tokens, tokenizer, path: str | Path, *, chunk_units: int | None = None,
                   sample_rate: int | None = None, **options) -> tuple[Path, float]:
    """Decode one clip straight into an audio file, chunk by chunk: ``(path, peak)``. The samples are those
    of ``musictok.channels.decode_channels(tokenizer, tokens)[0]`` (every channel in order, trimmed to the
    original length, the clip's scale applied), resampled to ``sample_rate`` when given (soxr's streaming
    resampler, the one-shot samples) to :func:`output_length` samples."""
    import contextlib

    import soxr

    if tokens.batch_size != 1:
        raise ValueError("decode_to_file takes one clip; use tokens.item(i)")
    tracks = track_paths(path, tokens, tokenizer)  # a multi-track decode: the mix at `path`, each track beside it
    if tracks and tokens.channels != "mono":
        raise ConvertError(path, f"{tokens.channels} tokens of a tokenizer of several tracks cannot be decoded")
    mono = split_channels(tokens)  # the channels side by side in the batch, as the tokenizer decodes them
    tokenizer.check_tokens(mono)
    n, scale = tokens.lengths[0], 1.0 if tokens.scales is None else tokens.scales[0]
    rate = sample_rate or tokens.sample_rate
    target, width = output_length(tokens, rate), tokens.num_channels
    for t in tracks:
        if t.exists() and not decoded_by_musictok(t):
            raise ConvertError(path, f"would write over {t}, which musictok did not write; choose another --out")
    outputs = [Path(path), *tracks]
    resamplers = [soxr.ResampleStream(tokens.sample_rate, rate, width, dtype="float32", quality="VHQ")
                  if rate != tokens.sample_rate else None for _ in outputs]
    taken, written, peak = 0, 0, 0.0  # samples at the tokenizer's rate taken, at the output rate written

    def emit(files: list, pieces: list[np.ndarray], last: bool) -> None:
        """Write ``(channels, T)`` pieces (one per output) at the tokenizer's rate, resampled, up to ``target``."""
        nonlocal written, peak
        outs = [x if rs is None else rs.resample_chunk(np.ascontiguousarray(x.T), last=last).T
                for rs, x in zip(resamplers, pieces)]
        outs = [y[:, : target - written] for y in outs]
        for f, y in zip(files, outs):
            f.write(np.ascontiguousarray(y.T))
        if outs[0].size:
            peak = max(peak, float(np.max(np.abs(outs[0]))))
        written += outs[0].shape[-1]

    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open_output(q, rate, width, software=DECODED_BY)) for q in outputs]
        for wav in decode_chunks(tokenizer, mono.codes, chunk_units or tokenizer.chunk_units, options):
            # (channels, T): one row per channel (a mono clip: one row); a tokenizer of tracks: (1, tracks, T)
            signals = [wav] if wav.ndim == 2 else [wav[0].sum(0, keepdim=True), *wav[0][:, None]]
            m = min(wav.shape[-1], n - taken)
            pieces = [from_channels((x[..., :m] * scale).cpu().numpy(), tokens.channels) for x in signals]
            if not all(np.all(np.isfinite(x)) for x in pieces):
                raise ConvertError(path, "the decoder produced NaN/Inf samples")
            taken += m
            emit(files, pieces, last=taken >= n)
            if taken >= n:
                break
        if taken < n:  # decode() pads a short decoder output with zeros
            emit(files, [np.zeros((width, n - taken), np.float32) for _ in outputs], last=True)
        if written < target:  # a resampler may fall a sample short of the input's length
            for f in files:
                f.write(np.zeros((target - written, width), np.float32))
    return Path(path), peak


def decode_files(pairs: list[tuple[Path, Path]], load_tokenizer: Callable[[Tokens], object], *,
                 overwrite: bool = False, on_file: Callable[[Path, str], None] | None = None,
                 levels: int | None = None, sample_rate: str | int = "model") -> ConvertReport:
    """Decode each ``.mtok`` file to audio with the tokenizer that made it (see ``load_tokenizer``), with
    all its channels; ``levels`` decodes with a prefix of RVQ codebooks / pyramid levels, ``sample_rate``
    (see :func:`parse_sample_rate`) picks the output rate."""
    sample_rate = parse_sample_rate(sample_rate)

    def refuse_foreign(src: Path, dst: Path) -> None:
        """An existing output is replaced (or kept as finished) only if `musictok decode` wrote it."""
        if decoded_by_musictok(dst):
            return
        original = ", the audio these tokens were made from" if _source_file(src) == dst.name else ""
        raise ConvertError(src, f"would write over {dst}, which musictok did not write{original}; "
                                "choose another --out")

    def work(src: Path, dst: Path, report: ConvertReport) -> None:
        tokens = Tokens.load(src)
        tokenizer = load_tokenizer(tokens)
        check_levels(tokenizer, levels)
        options = {} if levels is None else {"levels": levels}
        targets = [dst if tokens.batch_size == 1 else dst.with_name(f"{dst.stem}-{i}{dst.suffix}")
                   for i in range(tokens.batch_size)]  # a file holding several clips gives name-0.wav …
        for target in targets:
            if target != dst and target.exists():
                refuse_foreign(src, target)
        rate, warning = output_rate(tokens, sample_rate)
        if warning:
            report.warnings.append((src, warning))
        for i, target in enumerate(targets):
            t0 = time.perf_counter()
            path, peak = decode_to_file(tokens.item(i) if tokens.batch_size > 1 else tokens, tokenizer, target,
                                        sample_rate=rate, **options)
            report.compute_seconds += time.perf_counter() - t0
            report.written.append(path)
            report.audio_seconds += tokens.lengths[i] / tokens.sample_rate
            if peak > 1.0:
                report.warnings.append((src, f"decoded peak {20 * math.log10(peak):+.1f} dBFS is above full scale "
                                             f"in {path.name} (kept in the float WAV; players will clip it)"))

    return _convert(pairs, work, overwrite=overwrite, on_file=on_file, replaceable=refuse_foreign)


@dataclass
class TokenFileInfo:
    """What `musictok info` prints for one ``.mtok`` file."""

    path: str
    duration: float
    sample_rate: int  # the tokenizer's
    channels: str  # the channel layout: mono, stereo, mid-side
    channel_names: list[str]
    clips: int
    tokenizer: str
    streams: list[str]
    tokens_per_second: float  # all channels together
    kbps: float
    source_sample_rate: int | None  # the input file's, when recorded
    source_channels: int | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def token_file_info(path: str | Path) -> TokenFileInfo:
    """Duration, channel layout, tokenizer and the input's rate of a ``.mtok`` file."""
    t = Tokens.load(path)
    return TokenFileInfo(str(path), t.duration, t.sample_rate, t.channels, list(t.channel_names), t.batch_size,
                         t.fingerprint.short(), [s.name for s in t.layout.streams], t.layout.tokens_per_second,
                         t.layout.bitrate / 1000, t.source.sample_rate if t.source else None,
                         t.source.channels if t.source else None)


def _source_file(mtok: Path) -> str | None:
    """The name of the audio file a ``.mtok`` was encoded from, or ``None`` when it does not say (a damaged
    token file is reported by the decode step itself, with its own message)."""
    try:
        return Tokens.load(mtok).extra.get("source_file")
    except MusictokError:
        return None
