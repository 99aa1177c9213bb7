"""Training and scoring token LMs on a tokenizer's tokens of a corpus, or of any folders of audio.

Tokens are made once per (tokenizer fingerprint, piece) and cached as ``.mtok`` files
(``CACHE/<fingerprint>/<piece>.mtok``; a plain folder's files under ``files/``, keyed by path, size and
modification time), so every LM trained on the same tokenizer reads the same tokens and a retrained
tokenizer never mixes with old ones. Training windows are a pure function of their index (piece drawn in
proportion to its length, within a source drawn by its weight when there are several; random start), like
the audio clips of the tokenizer trainers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .. import pretrained
from ..data.datasets import CorpusIndex, folder_split
from ..data.mixture import SourceSpec
from ..errors import MusictokError
from ..lm.model import TokenLM, TokenLMConfig
from ..lm.patterns import SequencePattern, make_pattern
from ..tokens import Fingerprint, Tokens, config_hash, weights_hash
from .config import RunConfig, per_source
from .finetune import InitPoint, provenance
from .loop import DistInfo, TrainConfig, TrainTask, unwrap, wrap_ddp


@dataclass
class LMSection:
    """The ``lm`` section of a run config: which tokens, laid out how, with how much context."""

    tokenizer: str = "bandtok-small"
    pattern: str = "band-grid"
    pattern_options: dict = dataclasses.field(default_factory=dict)  # e.g. {"positions": "1d"} for band-grid
    context_seconds: float = 4.0
    cache_dir: str = "data/token-cache"
    valid_windows: int = 32
    max_pieces: int | None = None  # train on the first N pieces only (quick benchmarks)

    def __post_init__(self) -> None:
        from ..settings import require

        require("lm.context_seconds", self.context_seconds, self.context_seconds > 0, "> 0 seconds")
        require("lm.valid_windows", self.valid_windows, self.valid_windows >= 1, ">= 1")
        if self.max_pieces is not None:
            require("lm.max_pieces", self.max_pieces, self.max_pieces >= 1, ">= 1 (or null)")


def token_cache(tokenizer, corpus: str | Path, split: str, cache_dir: str | Path,
                on_piece: Callable[[], None] | None = None, max_pieces: int | None = None) -> list[Tokens]:
    """Tokens of every piece's mix in ``split`` (the first ``max_pieces``), encoded once and cached per
    tokenizer fingerprint."""
    from ..audio import load

    index = CorpusIndex(corpus, split)
    folder = _cache_folder(tokenizer, cache_dir)
    out = []
    for piece in index.pieces[:max_pieces]:
        path = folder / f"{piece['id']}.mtok"
        if not path.is_file():
            wav, _ = load(index.folder(piece) / piece["mix"], tokenizer.sample_rate)
            tokenizer.encode(torch.from_numpy(wav)).save(path)
        out.append(Tokens.load(path))
        if on_piece:
            on_piece()
    if not out:
        raise MusictokError(f"{corpus}: the {split} split has no pieces")
    return out


def _cache_folder(tokenizer, cache_dir: str | Path) -> Path:
    fp = tokenizer.fingerprint()
    return Path(cache_dir) / f"{fp.name}-{fp.config_hash[:8]}-{fp.weights_hash[:8]}"


def folder_token_cache(tokenizer, folder: str | Path, split: str, cache_dir: str | Path,
                       max_pieces: int | None = None) -> list[Tokens]:
    """Tokens of every file of a plain audio folder's ``split`` (:func:`~musictok.data.datasets.folder_split`),
    encoded whole and cached per tokenizer fingerprint; a file edited in place is encoded again (its size or
    modification time is in the key)."""
    from ..audio import load

    files = folder_split(folder).get(split, [])[:max_pieces]
    if not files:
        raise MusictokError(f"{folder}: no audio file in the {split!r} split (a folder of one file only trains)")
    out = []
    for f in files:
        st = f.stat()
        key = hashlib.sha1(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f.stem)[:40]
        path = _cache_folder(tokenizer, cache_dir) / "files" / f"{stem}-{key}.mtok"
        if not path.is_file():
            wav, _ = load(f, tokenizer.sample_rate)
            tokenizer.encode(torch.from_numpy(wav)).save(path)
        out.append(Tokens.load(path))
    return out


def source_tokens(tokenizer, spec: SourceSpec, split: str, cache_dir: str | Path,
                  max_pieces: int | None = None) -> list[Tokens]:
    """Tokens of one data source's ``split``: a corpus's mixes or a plain folder's files."""
    if spec.stems:
        raise MusictokError(f"data.sources[{spec.path}]: stems: true is for the audio trainers; a token LM reads mixes")
    if spec.is_corpus:
        return token_cache(tokenizer, spec.path, split, cache_dir, max_pieces=max_pieces)
    return folder_token_cache(tokenizer, spec.path, split, cache_dir, max_pieces=max_pieces)


def source_has_split(spec: SourceSpec, split: str) -> bool:
    """Whether a source has anything in ``split`` (without encoding it)."""
    if spec.is_corpus:
        return bool(CorpusIndex(spec.path, split).pieces)
    return bool(folder_split(spec.path).get(split))


def lm_fingerprint(model: TokenLM, meta: dict, state: dict[str, Tensor] | None = None) -> Fingerprint:
    """A token LM's identity: its config, vocabulary and sequence layout (``meta``: pattern, pattern_options,
    context_frames, layout), and its weights (``state``: these instead of the model's own, e.g. the weights
    as a half-precision folder loads them)."""
    what = {"config": model.config.to_dict(), "vocab": model.vocab.to_dict()}
    what |= {k: meta.get(k) for k in ("pattern", "pattern_options", "context_frames", "layout")}
    return Fingerprint("token-lm", config_hash(what), weights_hash(model.state_dict() if state is None else state))


# what save_lm writes itself; any other key of its ``meta`` (train_step, run_config, init …) is kept as given
_LM_OWN_KEYS = ("musictok_version", "model", "config", "vocab", "fingerprint", "storage_dtype")


def save_lm(model: TokenLM, directory: str | Path, meta: dict, *, storage_dtype: torch.dtype | None = None) -> Path:
    """Write a token LM folder (``config.json`` + ``model.safetensors``, atomically). ``meta`` holds the
    sequence layout (pattern, pattern_options, context_frames, layout) and the tokenizer whose tokens it reads;
    the model's config, vocabulary and fingerprint are added here. ``storage_dtype=torch.float16`` halves the
    file; the fingerprint is then that of the rounded weights, the model :func:`load_lm` gives back."""
    weights = pretrained.for_storage(model.state_dict(), storage_dtype)
    out = {"model": "token-lm", "config": model.config.to_dict(), "vocab": model.vocab.to_dict()}
    out |= {k: v for k, v in meta.items() if k not in _LM_OWN_KEYS}
    out |= {"fingerprint": dataclasses.asdict(lm_fingerprint(model, out, weights.loaded)),
            "storage_dtype": weights.dtype}
    return pretrained.write(directory, weights.stored, out)


def window_frames(layout, frames: int) -> tuple[int, ...]:
    """Per-stream frames of a window of ``frames`` frames of stream 0 (faster streams: whole multiples)."""
    rates = [st.frame_rate for st in layout.streams]
    return tuple(frames * round(r / rates[0]) for r in rates)


def context_pattern(name: str, layout, frames: int, options: dict | None = None) -> SequencePattern:
    """The pattern an LM uses for a window of ``frames`` frames of stream 0."""
    return make_pattern(name, layout, window_frames(layout, frames), **(options or {}))


class TokenWindows(Dataset):
    """Fixed-length windows of a layout's codes: item ``i`` is a list, per stream, of ``(frames_s, slots_s)``.

    ``frames`` counts frames of stream 0; a stream ``r`` times faster gets ``r × frames`` frames from the
    same span of time (PyramidCodec's levels are 1×, 2×, 4× the coarsest rate). ``random=True``: window *i*
    is drawn from ``(seed, i)``; ``random=False``: non-overlapping windows, round-robin over pieces, at most
    ``max_windows``. ``groups`` (the source of each piece) with ``group_weights`` give each source its share
    of the windows, pieces within it in proportion to their length. :meth:`collate` stacks items into
    per-stream batches.
    """

    def __init__(self, tokens: list[Tokens], frames: int, *, random: bool, seed: int = 0,
                 length: int = 1000, max_windows: int | None = None, groups: list[int] | None = None,
                 group_weights: list[float] | None = None):
        rates = [s.frame_rate for s in tokens[0].layout.streams]
        self.ratios = [round(r / rates[0]) for r in rates]
        if any(abs(r / rates[0] - k) > 1e-6 for r, k in zip(rates, self.ratios)):
            raise MusictokError(f"stream rates {rates} are not whole multiples of the first stream's")
        long_enough = [all(c.shape[1] >= frames * k for c, k in zip(t.codes, self.ratios)) for t in tokens]
        self.codes = [[c[0] for c in t.codes] for t, ok in zip(tokens, long_enough) if ok]
        if not self.codes:
            raise MusictokError(f"no piece is at least {frames} token frames long; shorten the context")
        self.frames, self.random, self.seed, self.length = frames, random, seed, length
        spans = [min(c.shape[0] // k for c, k in zip(streams, self.ratios)) for streams in self.codes]
        lengths = np.array([n - frames + 1 for n in spans], dtype=np.float64)
        if groups is not None and group_weights is not None:
            kept = np.array([g for g, ok in zip(groups, long_enough) if ok])
            # a source of only short pieces drops out; the others share the windows by weight
            totals = {g: lengths[kept == g].sum() for g in set(kept.tolist())}
            lengths = lengths * np.array([group_weights[g] / totals[g] for g in kept])
        self.spans, self.p = spans, lengths / lengths.sum()
        if not random:
            grid, k = [], 0
            per = [n // frames for n in spans]
            while any(k < n for n in per):
                grid += [(i, k * frames) for i, n in enumerate(per) if k < n]
                k += 1
            self.grid = grid[:max_windows] if max_windows else grid
            self.length = len(self.grid)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> list[Tensor]:
        if self.random:
            rng = np.random.default_rng([self.seed, index])
            i = int(rng.choice(len(self.codes), p=self.p))
            start = int(rng.integers(0, self.spans[i] - self.frames + 1))
        else:
            i, start = self.grid[index]
        return [c[start * k: (start + self.frames) * k] for c, k in zip(self.codes[i], self.ratios)]

    @staticmethod
    def collate(items: list[list[Tensor]]) -> list[Tensor]:
        """Items -> per stream ``(B, frames_s, slots_s)``."""
        return [torch.stack(streams) for streams in zip(*items)]


class LMTask(TrainTask):
    # several sources: (source of each training piece, weight of each source); None: one source
    _groups: tuple[list[int], list[float]] | None = None

    def __init__(self, run: RunConfig, init: InitPoint | None = None):
        self.run = run
        self.lm = LMSection(**run.lm)
        model = dict(run.model)
        self.model_config = TokenLMConfig.preset(model.pop("preset", "small"), **model)
        self.init = init

    def setup(self, device: torch.device, dist_info: DistInfo, cfg: TrainConfig) -> None:
        from ..tokenizers.base import Tokenizer

        self.device, self.cfg = device, cfg
        tokenizer = Tokenizer.from_pretrained(self.lm.tokenizer)
        if self.init is not None:
            _check_same_tokenizer(tokenizer, self.init)
        self.tokenizer_info = {"source": tokenizer.source, **dataclasses.asdict(tokenizer.fingerprint())}
        self.layout = tokenizer.layout
        self.frames = max(1, round(self.lm.context_seconds * self.layout.streams[0].frame_rate))
        self.pattern = context_pattern(self.lm.pattern, self.layout, self.frames, self.lm.pattern_options)
        specs, split, cache = self.run.data.source_specs, self.run.data.valid_split, self.lm.cache_dir
        self.train_tokens, groups = [], []
        for k, spec in enumerate(specs):
            tokens = source_tokens(tokenizer, spec, "train", cache, max_pieces=self.lm.max_pieces)
            self.train_tokens += tokens
            groups += [k] * len(tokens)
        if len(specs) > 1:
            self._groups = (groups, [s.weight for s in specs])
        # one source: its split must exist (as ever); several: those that have one validate
        self.valid = {s.name: TokenWindows(source_tokens(tokenizer, s, split, cache), self.frames, random=False,
                                           max_windows=self.lm.valid_windows)
                      for s in specs if len(specs) == 1 or source_has_split(s, split)}
        if not self.valid:
            raise MusictokError(f"no source of the mixture has pieces in the {split!r} split to validate on")
        del tokenizer
        self.model = TokenLM.from_pattern(self.model_config, self.pattern).to(device)
        if self.init is not None:
            self.init.load_into(self.model)
        self.model_ddp = wrap_ddp(self.model, dist_info, device)
        # fused: one kernel per step over all parameters instead of a pass per Adam operation (CPU and CUDA have it)
        self.opt = torch.optim.AdamW(self.model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                     fused=True if device.type in ("cpu", "cuda") else None)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"lm": self.opt}

    def train_dataset(self, length: int) -> Dataset:
        groups, weights = self._groups or (None, None)
        return TokenWindows(self.train_tokens, self.frames, random=True, seed=self.run.data.seed, length=length,
                            groups=groups, group_weights=weights)

    def _batch(self, codes: list[Tensor]):
        b = self.pattern.build([c.to(self.device) for c in codes])
        return b.inputs, b.positions, self.pattern.scored_targets(b.targets)  # context cells are not scored

    def train_step(self, batch: Tensor, step: int, autocast: Any) -> dict[str, float]:
        self.model.train()
        inputs, positions, targets = self._batch(batch)
        with autocast():
            out = self.model_ddp(inputs, positions, targets, keep_logits=False)
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        grad = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip))
        self.opt.step()
        return {"loss": out.loss.item(), "bits_per_token": out.loss.item() / math.log(2), "grad_norm": grad}

    @torch.no_grad()
    def validate(self, autocast: Any) -> dict[str, float]:
        """Teacher-forced loss of the fixed validation windows, per source when there are several."""
        model = unwrap(self.model)
        model.eval()
        out_logs = {}
        for name, windows in self.valid.items():
            total, n = 0.0, 0
            for i in range(0, len(windows), 8):
                codes = TokenWindows.collate([windows[j] for j in range(i, min(i + 8, len(windows)))])
                inputs, positions, targets = self._batch(codes)
                with autocast():
                    out = model(inputs, positions, targets)
                mask = targets != -100
                total += float(out.per_token_nll[mask].sum())
                n += int(mask.sum())
            out_logs[name] = {"loss": total / n, "bits_per_token": total / n / math.log(2)}
        model.train()
        return per_source(out_logs)

    def export(self, out_dir: Path, step: int) -> None:
        model = unwrap(self.model)
        meta = {"pattern": self.lm.pattern, "pattern_options": self.lm.pattern_options, "context_frames": self.frames,
                "layout": self.layout.to_dict(), "tokenizer": self.tokenizer_info, "train_step": step,
                "run_config": self.run.to_dict()}
        save_lm(model, out_dir, meta | provenance(self.init))


def _check_same_tokenizer(tokenizer, init: InitPoint) -> None:
    """A fine-tuned LM must read the tokens it was trained on: its tokenizer, unchanged."""
    recorded = init.meta.get("tokenizer") or {}
    want = Fingerprint(recorded.get("name", "?"), recorded.get("config_hash", "?"), recorded.get("weights_hash", "?"))
    if tokenizer.fingerprint() != want:
        raise MusictokError(f"init {init.given}: it was trained on tokens of {want.short()}, but "
                            f"{recorded.get('source')} is now {tokenizer.fingerprint().short()}; "
                            "its tokens would differ")


@dataclass
class LoadedLM:
    model: TokenLM
    pattern: SequencePattern
    meta: dict


def load_lm(name_or_dir: str | Path, map_location: str = "cpu") -> LoadedLM:
    """A saved token LM with the pattern it was trained with."""
    from ..lm.patterns import LMVocab
    from ..tokens import TokenLayout

    d, meta, state = pretrained.read(name_or_dir, map_location)
    if meta.get("model") != "token-lm":
        what = f"a {meta['tokenizer']} tokenizer, " if isinstance(meta.get("tokenizer"), str) else ""
        raise pretrained.PretrainedError(f"{d}: {what}not a token LM folder (e.g. bandtok-small-lm)")
    model = TokenLM(TokenLMConfig.from_dict(meta["config"]), LMVocab.from_dict(meta["vocab"]))
    model.load_state_dict(state)
    pattern = context_pattern(meta["pattern"], TokenLayout.from_dict(meta["layout"]), meta["context_frames"],
                              meta.get("pattern_options", {}))
    return LoadedLM(model.to(map_location).eval(), pattern, meta | {"source": str(name_or_dir)})
