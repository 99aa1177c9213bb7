"""Corpus-scale encoding: worker processes decode, the main process keeps the encoder busy.

`musictok encode` on a folder spends its time in two places: decoding and resampling each file (libsndfile,
soxr: one core per file) and the tokenizer's encoder (torch). Done one after the other, each waits for the
other. Here they overlap:

- **worker processes** (one thread each) open a file each, decode, resample and lay out its channels a block
  at a time, and cut it into the tokenizer's overlapping chunks — the very chunks of ``Tokenizer.encode``
  and :func:`musictok.convert.encode_file` — which they send to the main process as they are complete;
- **the main process** scales each chunk (level-normalising tokenizers), queues it, and **encoder threads**
  run the chunks through ``_encode_codes``: on a CPU several threads of one intra-op thread each (chunks in
  parallel; an OpenMP team sharing cores with the decoders stalls at every barrier, measured 2-3× slower),
  on a GPU one thread batching chunks of equal length;
- as soon as every chunk of a file is back, its ``.mtok`` is written (atomically), so results stream out and
  memory is bounded by the queues (a few chunks per worker), not by the corpus or the file length.

Every chunk is encoded alone or in a batch of equal-length chunks, and the encoder is batch-invariant, so
the tokens are those of encoding each file by itself, whatever the order the files finish in.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .audio import SILENCE_RMS, AudioStream
from .errors import MusictokError

QUEUE_PER_WORKER = 4  # messages (chunks of ≈ 25 s of audio) a worker may be ahead of the encoder


@dataclass
class Chunk:
    """One encoder input: ``(C, n)`` samples of units ``[lo, hi)`` of ``C`` channels (zero-padded to whole
    units), of which the codes of units ``[start, stop)`` are kept."""

    samples: np.ndarray
    lo: int
    start: int
    stop: int


@dataclass(frozen=True)
class ChunkPlan:
    """How a tokenizer cuts audio: ``hop`` samples per unit, ``chunk`` units kept per chunk, ``context``
    units of context either side (``Tokenizer.hop_samples``, ``chunk_units``, ``context_units``)."""

    hop: int
    chunk: int
    context: int

    def whole(self, samples: float) -> bool:
        """Whether a file of ``samples`` samples is encoded in one piece (what :func:`encode_file` reads whole
        rather than streams): up to two chunks with their context."""
        return samples <= 2 * (self.chunk + 2 * self.context + 1) * self.hop


class StreamChunker:
    """Cuts audio arriving a block at a time — ``(T_i,)`` or ``(C, T_i)`` — into the chunks of
    ``Tokenizer._encode_long`` (each ``(C, n)``).

    ``push`` returns the chunks a block completes, ``finish`` the rest once the length is known. A chunk
    is cut when the samples up to its right context have arrived, so at most one chunk (plus a block) is
    held. A clip no longer than one chunk with its context is a single chunk, as ``_encode_long`` has it."""

    def __init__(self, plan: ChunkPlan):
        self.plan = plan
        self.blocks: list[np.ndarray] = []
        self.held = 0  # samples (per channel) in self.blocks
        self.offset = 0  # sample index of the first held sample
        self.start = 0  # first unit not yet emitted

    def push(self, block: np.ndarray) -> list[Chunk]:
        block = np.atleast_2d(block)
        self.blocks.append(block)
        self.held += block.shape[-1]
        out = []
        hop, chunk, ctx = self.plan.hop, self.plan.chunk, self.plan.context
        # A chunk is only cut before the end is known if the clip is certainly longer than one chunk
        # with context: otherwise `_encode_long` encodes it whole.
        while self.offset + self.held >= (self.start + chunk + ctx) * hop and \
                self.offset + self.held > (chunk + 2 * ctx) * hop:
            stop = self.start + chunk
            out.append(self._cut(max(self.start - ctx, 0), stop, stop + ctx))
        return out

    def finish(self) -> list[Chunk]:
        """The remaining chunks; the last is zero-padded to whole units. None for an empty stream."""
        hop, chunk, ctx = self.plan.hop, self.plan.chunk, self.plan.context
        units = -(-(self.offset + self.held) // hop)
        if self.start == 0 and units <= chunk + 2 * ctx:  # one piece: no context to trim
            return [self._cut(0, units, units)] if units else []
        out = []
        while self.start < units:
            stop = min(self.start + chunk, units)
            out.append(self._cut(max(self.start - ctx, 0), stop, min(stop + ctx, units)))
        return out

    def _cut(self, lo: int, stop: int, hi: int) -> Chunk:
        hop = self.plan.hop
        held = np.concatenate(self.blocks, axis=-1) if len(self.blocks) > 1 else self.blocks[0]
        seg = held[:, lo * hop - self.offset: hi * hop - self.offset]
        short = (hi - lo) * hop - seg.shape[-1]
        samples = np.pad(seg, ((0, 0), (0, short))) if short else seg.copy()
        piece = Chunk(samples, lo, self.start, stop)
        self.start = stop
        drop = max(stop - self.plan.context, 0) * hop - self.offset  # the next chunk's context starts here
        self.blocks, self.held, self.offset = [held[:, drop:]], held.shape[-1] - drop, self.offset + drop
        return piece


def source_level_scale(path: str | os.PathLike, level_dbfs: float, *, mono: bool = True) -> float:
    """The gain a level-normalising tokenizer removes from a streamed file, from a cheap first pass at the
    file's own rate: the RMS of the mono downmix, or (``mono=False``) of every sample of every channel (one
    gain per file, as ``musictok.channels`` has it), so the whole resampled file is never needed."""
    sumsq, n = 0.0, 0
    for block in AudioStream(path, None, mono=mono):
        sumsq += float(np.sum(np.square(block, dtype=np.float64)))
        n += block.size
    rms = math.sqrt(sumsq / max(n, 1))
    return rms / 10 ** (level_dbfs / 20) if rms > SILENCE_RMS else 1.0


# ---------------------------------------------------------------- the decoding workers


@dataclass(frozen=True)
class TokenizerFacts:
    """What a worker needs to know of the tokenizer to lay out a file's channels (``convert.file_channels``)."""

    name: str
    stem_inputs: int


@dataclass(frozen=True)
class DecodeSettings:
    sample_rate: int
    plan: ChunkPlan
    level_dbfs: float | None
    channels: str  # the --channels choice
    tokenizer: TokenizerFacts


@dataclass(frozen=True)
class FileFacts:
    """What a worker learned of a file: its channel layout, a warning about it, its own rate, channel count
    and length (``SourceAudio``), and its peak."""

    layout: str
    warning: str | None
    source_rate: int
    source_channels: int
    frames: int
    peak: float


def decode_worker(tasks, results, settings: DecodeSettings) -> None:
    """A worker process: for each ``(index, path)`` from ``tasks`` until ``None``, send to ``results``

    - ``("whole", index, samples, FileFacts)`` for a file encoded in one piece (scaled and laid out into
      channels by the main process, as ``Tokenizer.encode`` and ``channels.encode_channels`` do it), or
    - ``("chunk", index, k, Chunk, scale)`` for each chunk of a streamed file, then
      ``("end", index, chunks, length, scale, FileFacts)``;
    - ``("error", index, reason)`` for a file that cannot be used (an expected :class:`MusictokError`),
      ``("crash", index, traceback)`` for anything else; ``("done",)`` at the end."""
    from .channels import to_channels
    from .convert import file_channels

    while (task := tasks.get()) is not None:
        index, path = task
        try:
            layout, warning = file_channels(settings.channels, AudioStream(path).channels, settings.tokenizer, path)
            stream = AudioStream(path, settings.sample_rate, mono=layout == "mono")

            def facts() -> FileFacts:
                return FileFacts(layout, warning, stream.source_rate, stream.channels, stream.frames_read, stream.peak)

            if settings.plan.whole(stream.read_frames * settings.sample_rate / stream.source_rate):
                samples = np.concatenate(list(stream), axis=-1)
                results.put(("whole", index, samples, facts()))
                continue
            scale = None if settings.level_dbfs is None else \
                source_level_scale(path, settings.level_dbfs, mono=layout == "mono")
            chunker, k, length = StreamChunker(settings.plan), 0, 0
            for block in stream:
                length += block.shape[-1]
                for piece in chunker.push(block if layout == "mono" else to_channels(block, layout)):
                    results.put(("chunk", index, k, piece, scale))
                    k += 1
            for piece in chunker.finish():
                results.put(("chunk", index, k, piece, scale))
                k += 1
            results.put(("end", index, k, length, scale, facts()))
        except MusictokError as e:
            results.put(("error", index, str(e).removeprefix(f"{path}: ")))
        except Exception:  # a bug, not bad input: the main process stops and shows it
            results.put(("crash", index, traceback.format_exc()))
    results.put(("done",))


# ---------------------------------------------------------------- the main process


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block (for the processes it starts), then put them back."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def default_workers(device: str = "cpu") -> int:
    """Decoding processes for ``device``: decoding + resampling costs about a quarter of bandtok-small's
    encoder on a CPU core, so a quarter of the cores keeps a CPU encoder fed; a GPU encoder is fed by
    all cores but one."""
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if str(device).startswith("cuda") else max(1, cores // 4)


@dataclass
class _File:
    src: Path
    dst: Path
    pieces: dict[int, list] = field(default_factory=dict)  # chunk index -> per-stream (C, frames, slots) codes
    chunks: int | None = None  # known once the worker has sent them all
    length: int = 0
    scale: float | None = None
    facts: FileFacts | None = None
    failed: bool = False


class _Encoder:
    """Encoder threads: each takes a job (or, batching, as many queued jobs as fit) and encodes it."""

    def __init__(self, tokenizer, threads: int, batch_size: int, done: Callable):
        self.tokenizer, self.batch_size, self.done = tokenizer, batch_size, done
        self.fpu = tokenizer._frames_per_unit()
        self.jobs: queue.Queue = queue.Queue(maxsize=2 * threads * batch_size)
        self.error: BaseException | None = None
        self.cpu = tokenizer.device.type == "cpu"
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"encoder-{i}") for i in range(threads)]
        for t in self.threads:
            t.start()

    def put(self, job) -> None:
        """Queue ``(index, k, chunk (C, n), lo, start, stop)`` (``None``: a thread may end); waits while the
        encoder is behind, and raises an encoder thread's error instead of waiting for ever."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.jobs.put(job, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait for the queued jobs; re-raise a thread's error."""
        for _ in self.threads:
            self.put(None)
        for t in self.threads:
            t.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Drop the queued jobs and let the threads end after the chunk in hand."""
        while True:
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            try:
                self.jobs.put_nowait(None)
            except queue.Full:
                break

    def _run(self) -> None:
        import torch

        if self.cpu:
            torch.set_num_threads(1)  # this thread's OpenMP team: one (the setting is per calling thread)
        try:
            with torch.no_grad(), self.tokenizer.encoding_autocast():  # both are per thread
                while (job := self.jobs.get()) is not None:
                    jobs = [job]
                    while len(jobs) < self.batch_size:
                        try:
                            nxt = self.jobs.get_nowait()
                        except queue.Empty:
                            break
                        if nxt is None:  # closing: put the sentinel back for this thread's next get
                            self.jobs.put(None)
                            break
                        jobs.append(nxt)
                    by_length: dict[int, list] = {}
                    for j in jobs:
                        by_length.setdefault(j[2].shape[-1], []).append(j)
                    for group in by_length.values():
                        x = torch.cat([j[2] for j in group]).to(self.tokenizer.device)  # every job's channels
                        codes = [c.cpu() for c in self.tokenizer._encode_codes(x)]
                        row = 0
                        for index, k, chunk, lo, start, stop in group:
                            rows = slice(row, row + chunk.shape[0])
                            self.done(index, k, [c[rows, (start - lo) * f: (stop - lo) * f]
                                                 for c, f in zip(codes, self.fpu)])
                            row = rows.stop
        except BaseException as e:  # handed to the main thread, which stops the run
            self.error = e
            while True:  # unblock a main thread waiting to queue more
                try:
                    self.jobs.get_nowait()
                except queue.Empty:
                    break


def encode_corpus(pairs: list[tuple[Path, Path]], tokenizer, *, workers: int, channels: str = "keep",
                  threads: int | None = None, batch_size: int | None = None, chunk_units: int | None = None,
                  overwrite: bool = False, on_file: Callable[[Path, str], None] | None = None):
    """Encode ``(audio file, .mtok file)`` pairs with ``workers`` decoding processes, each file's channels as
    ``channels`` says (``convert.file_channels``); returns a :class:`~musictok.convert.ConvertReport`
    (``compute_seconds`` is the wall time of the whole run).

    ``threads`` encoder threads (default: one per core on a CPU, one on a GPU) take chunks of up to
    ``batch_size`` files (default 1 on a CPU, where batching measured slower, else ``tokenizer.max_batch``).
    Files whose output exists are skipped unless ``overwrite``; a file that cannot be decoded fails alone."""
    import dataclasses
    import multiprocessing as mp

    import torch

    from .channels import join_channels, shared_scale, to_channels
    from .convert import ConvertReport, _peak_warning, check_channels
    from .tokenizers.base import level_scale
    from .tokens import SourceAudio, Tokens

    if workers < 1:
        raise ValueError(f"workers must be >= 1 (0 encodes in this process: convert.encode_files), got {workers}")
    check_channels(tokenizer, channels)
    report = ConvertReport()
    files: dict[int, _File] = {}
    for i, (src, dst) in enumerate(pairs):
        if dst.exists() and not overwrite:
            report.skipped.append(dst)
            if on_file:
                on_file(src, "skipped")
        else:
            files[i] = _File(Path(src), Path(dst))
    if not files:
        return report
    cpu = tokenizer.device.type == "cpu"
    threads = threads or ((os.cpu_count() or 1) if cpu else 1)
    batch_size = batch_size or (1 if cpu else tokenizer.max_batch)
    plan = ChunkPlan(tokenizer.hop_samples, chunk_units or tokenizer.chunk_units, tokenizer.context_units)
    fingerprint = tokenizer.fingerprint()  # computed once, before threads share the tokenizer
    extra = tokenizer.token_extra()
    streams = len(tokenizer.layout.streams)
    lock = threading.Lock()
    written: dict[int, Path] = {}

    def finish(index: int) -> None:
        """Write a file whose chunks are all back (called with ``lock`` held), as ``encode_file`` builds it:
        the channels side by side in a batch, joined into one clip of ``layout`` channels."""
        f, facts = files[index], files[index].facts
        codes = [torch.cat([f.pieces[k][s] for k in range(f.chunks)], dim=1) for s in range(streams)]
        c = codes[0].shape[0]
        batch = Tokens(codes, tokenizer.layout, fingerprint, tokenizer.sample_rate, [f.length] * c, dict(extra),
                       None if f.scale is None else [f.scale] * c)
        tokens = dataclasses.replace(join_channels(batch, facts.layout), source=SourceAudio(
            facts.source_rate, facts.source_channels, (facts.frames,)))
        tokens.extra["source_file"] = f.src.name
        written[index] = tokens.save(f.dst)
        report.audio_seconds += f.length / tokenizer.sample_rate
        for warning in (facts.warning, _peak_warning(facts.peak)):
            if warning:
                report.warnings.append((f.src, warning))
        f.pieces.clear()
        if on_file:
            on_file(f.src, "written")

    def done(index: int, k: int, codes: list) -> None:
        with lock:
            f = files[index]
            if f.failed:
                return
            f.pieces[k] = codes
            if f.chunks is not None and len(f.pieces) == f.chunks:
                finish(index)

    def whole(samples: np.ndarray, layout: str) -> tuple[list[Chunk], float | None]:
        """The chunks and gain of a file held whole: ``Tokenizer.encode`` (mono) or
        ``channels.encode_channels`` (two channels) step by step, the same operations on the same samples."""
        x = torch.from_numpy(samples)
        if layout == "mono":
            scale = None if tokenizer.level_dbfs is None else level_scale(x, tokenizer.level_dbfs)
        else:
            scale = None if tokenizer.level_dbfs is None else shared_scale(x, tokenizer.level_dbfs)
            x = to_channels(x[None], layout)[0]
        if scale is not None:
            x = x / scale
        chunker = StreamChunker(plan)
        return chunker.push(x.numpy()) + chunker.finish(), scale

    # The platform's default start method, as torch's DataLoader uses: fork on Linux (instant, and works from
    # a script without a ``__main__`` guard; the workers run no torch, so its threads are no hazard), spawn
    # where fork is unsafe (macOS, Windows).
    ctx = mp.get_context()
    tasks, results = ctx.Queue(), ctx.Queue(maxsize=QUEUE_PER_WORKER * workers)
    n = min(workers, len(files))
    for i, f in files.items():
        tasks.put((i, str(f.src)))
    for _ in range(n):
        tasks.put(None)
    settings = DecodeSettings(tokenizer.sample_rate, plan, tokenizer.level_dbfs, channels,
                              TokenizerFacts(tokenizer.name, getattr(tokenizer, "stem_inputs", 0)))
    procs = [ctx.Process(target=decode_worker, args=(tasks, results, settings), daemon=True) for _ in range(n)]
    was_training, threads_before = tokenizer.training, torch.get_num_threads()
    tokenizer.eval()
    t0 = time.perf_counter()
    with _environment(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"):
        for p in procs:  # a spawned interpreter reads its environment at start: one thread each
            p.start()  # (forked ones run no threaded library: libsndfile and soxr decode on one thread)
    encoder = None
    try:
        encoder = _Encoder(tokenizer, threads, batch_size, done)
        running = n
        while running:
            try:
                msg = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a decoding worker died (exit code {dead[0].exitcode})") from None
                continue
            kind = msg[0]
            if kind == "done":
                running -= 1
            elif kind == "whole":
                _, index, samples, facts = msg
                pieces, scale = whole(samples, facts.layout)
                with lock:
                    f = files[index]
                    f.length, f.scale, f.facts, f.chunks = samples.shape[-1], scale, facts, len(pieces)
                for k, c in enumerate(pieces):
                    encoder.put((index, k, torch.from_numpy(c.samples), c.lo, c.start, c.stop))
            elif kind == "chunk":
                _, index, k, c, scale = msg
                x = torch.from_numpy(c.samples)
                encoder.put((index, k, x if scale is None else x / scale, c.lo, c.start, c.stop))
            elif kind == "end":
                _, index, chunks, length, scale, facts = msg
                with lock:
                    f = files[index]
                    f.chunks, f.length, f.scale, f.facts = chunks, length, scale, facts
                    if len(f.pieces) == chunks:
                        finish(index)
            elif kind == "error":
                _, index, reason = msg
                with lock:
                    files[index].failed = True
                    report.failed.append((files[index].src, reason))
                if on_file:
                    on_file(files[index].src, "failed")
            elif kind == "crash":
                raise RuntimeError(f"decoding {files[msg[1]].src} failed:\n{msg[2]}")
        encoder.close()
    except BaseException:
        if encoder is not None:
            encoder.abort()
        raise
    finally:
        for q in (tasks, results):
            q.cancel_join_thread()  # what is left in them is no longer wanted; do not wait to flush it
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
        tokenizer.train(was_training)
        torch.set_num_threads(threads_before)
    report.compute_seconds = time.perf_counter() - t0
    report.written = [written[i] for i in sorted(written)]
    return report
