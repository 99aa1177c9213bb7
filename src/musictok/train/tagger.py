"""Training the audio tagger behind the "tagger Fréchet distance" (``nn/tagger.py``), and loading it.

Data: a fixed grid of clips from the *training* split of each corpus (rendered chorales, imported
recordings), their log-Mels computed once; each step draws random ``crop_seconds`` crops of them (the
windows the Fréchet distances embed), so training costs a few minutes on a CPU. Targets: each corpus's
attribute tags (``data/tags.py``), unknown where a corpus does not record them (the loss leaves them out),
plus which corpus a clip comes from. The held-out test split gives the tagger's macro ROC-AUC, saved with it:
an embedding whose tagger scores near 0.5 has learned nothing, and its distances say as little.

The held-out real music (hedgewars) is never among the corpora: distances are measured against it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import pretrained
from ..data.datasets import CorpusIndex, MixClips
from ..data.tags import corpus_tags
from ..metrics.probe import roc_auc
from ..nn.tagger import AudioTagger, TaggerConfig


@dataclass
class TaggerTrainConfig:
    """Which corpora, how many clips, how long to train. ``quick()`` is the smoke-test scale."""

    corpora: list[str]
    sample_rate: int = 24000
    clip_seconds: float = 4.0
    clips_per_corpus: int = 400
    test_clips_per_corpus: int = 64
    crop_seconds: float = 1.0
    steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0
    min_positives: int = 5  # pieces per class for a tag to be kept (data/tags.py)
    model: dict = field(default_factory=dict)  # TaggerConfig fields (n_mels, width, embed_dim, stft_window)

    @classmethod
    def quick(cls, corpora: list[str], **kw) -> TaggerTrainConfig:
        base = dict(clip_seconds=2.0, clips_per_corpus=8, test_clips_per_corpus=4, steps=5, batch=8, min_positives=1,
                    model={"n_mels": 32, "width": 16, "embed_dim": 8, "stft_window": 512})
        return cls(corpora=corpora, **(base | kw))


@dataclass
class TagClips:
    """Log-Mels of a clip grid and their labels: ``mels (N, n_mels, frames)``, ``labels``/``known (N, tags)``."""

    mels: torch.Tensor
    labels: torch.Tensor
    known: torch.Tensor
    groups: list[str]


def corpus_tag_table(corpora: list[str], min_positives: int = 5) -> tuple[list[str], dict[str, dict[str, dict[str, int]]]]:
    """The tagger's tags over several corpora — each corpus's own tags, plus ``corpus:<name>`` when there are
    several — and, per corpus, piece id -> known labels."""
    names = [Path(c).name for c in corpora]
    tags, labels = [], {}
    for c, name in zip(corpora, names):
        table = corpus_tags(CorpusIndex(c).pieces, min_positives=min_positives)
        tags += [t for t in table.tags if t not in tags]
        labels[c] = {pid: row | ({f"corpus:{n}": int(n == name) for n in names} if len(names) > 1 else {})
                     for pid, row in table.labels.items()}
    if len(names) > 1:
        tags += [f"corpus:{n}" for n in names]
    return tags, labels


def tag_clips(model: AudioTagger, corpora: list[str], split: str, clip_seconds: float, max_clips: int,
              min_positives: int = 5) -> TagClips:
    """The clip grid of ``split`` in every corpus, as log-Mels with labels (in ``model.config.tags`` order)."""
    tags = model.config.tags
    _, labels = corpus_tag_table(corpora, min_positives)
    mels, y, known, groups = [], [], [], []
    for c in corpora:
        index = CorpusIndex(c)
        folder_of = {p["id"]: p.get("folder", p["id"]) for p in index.pieces}
        ds = MixClips(c, split, clip_seconds, model.config.sample_rate, random=False, max_clips=max_clips)
        for i in range(len(ds)):
            item = ds[i]
            row = labels[c][item["piece"]]
            with torch.no_grad():
                mels.append(model.log_mel(item["audio"][None])[0])
            y.append([float(row.get(t, 0)) for t in tags])
            known.append([t in row for t in tags])
            groups.append(f"{Path(c).name}/{folder_of[item['piece']]}")
    return TagClips(torch.stack(mels), torch.tensor(y), torch.tensor(known), groups)


def fit_tagger(model: AudioTagger, data: TagClips, cfg: TaggerTrainConfig, log: Callable[[str], None] = print) -> None:
    """Random crops of the clips' log-Mels, masked binary cross-entropy over the known tags, AdamW."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():  # per-band standardisation from the training clips
        model.band_mean.copy_(data.mels.mean((0, 2))[:, None])
        model.band_std.copy_(data.mels.std((0, 2)).clamp_min(1e-3)[:, None])
    frames = data.mels.shape[-1]
    crop = min(max(int(round(cfg.crop_seconds * model.config.sample_rate / (model.config.stft_window // 4))), 4), frames)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for step in range(cfg.steps):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / max(cfg.steps, 1)))  # cosine to zero
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(data.mels), (cfg.batch,), generator=g)
        start = torch.randint(0, frames - crop + 1, (cfg.batch,), generator=g)
        x = torch.stack([data.mels[i, :, s: s + crop] for i, s in zip(idx.tolist(), start.tolist())])
        y, known = data.labels[idx], data.known[idx].float()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(model(x), y, reduction="none") * known).sum()
        loss = loss / known.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(cfg.steps // 6, 1) == 0 or step == cfg.steps - 1:
            log(f"  tagger step {step + 1}/{cfg.steps}: loss {loss.item():.4f}")
    model.eval()


def tagger_auc(model: AudioTagger, data: TagClips) -> dict[str, float]:
    """ROC-AUC per tag of the tagger on clips (tags with both classes among them), and their macro mean."""
    with torch.no_grad():
        scores = model(data.mels).numpy()
    out = {}
    for t, name in enumerate(model.config.tags):
        k = data.known[:, t].numpy()
        auc = roc_auc(scores[k, t], data.labels[k, t].numpy())
        if not math.isnan(auc):
            out[name] = auc
    out["macro"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out


def train_tagger(cfg: TaggerTrainConfig, out_dir: str | Path, log: Callable[[str], None] = print) -> Path:
    """Train (or reuse, when ``out_dir`` holds one trained with the same settings) and save the tagger."""
    out = Path(out_dir)
    settings = dataclasses.asdict(cfg)
    if (out / pretrained.CONFIG_FILE).is_file():
        meta = json.loads((out / pretrained.CONFIG_FILE).read_text())
        if meta.get("train") == settings:
            log(f"  reusing the tagger in {out}")
            return out
    tags, _ = corpus_tag_table(cfg.corpora, cfg.min_positives)
    if not tags:
        raise ValueError(f"{', '.join(cfg.corpora)}: no attribute varies enough to train a tagger on "
                         f"(every tag has fewer than {cfg.min_positives} pieces of one class)")
    model = AudioTagger(TaggerConfig(sample_rate=cfg.sample_rate, tags=tags, **cfg.model))
    log(f"tagger: {len(tags)} tags from {', '.join(Path(c).name for c in cfg.corpora)}")
    train = tag_clips(model, cfg.corpora, "train", cfg.clip_seconds, cfg.clips_per_corpus, cfg.min_positives)
    fit_tagger(model, train, cfg, log)
    test_corpora = [c for c in cfg.corpora if any(p["split"] == "test" for p in CorpusIndex(c).pieces)]
    auc = tagger_auc(model, tag_clips(model, test_corpora, "test", cfg.clip_seconds, cfg.test_clips_per_corpus,
                                      cfg.min_positives)) if test_corpora else {}
    log(f"  tagger test macro ROC-AUC {auc.get('macro', float('nan')):.3f}")
    return save_tagger(model, out, {"train": settings, "test_auc": auc, "train_clips": len(train.mels)})


def save_tagger(model: AudioTagger, directory: str | Path, extra: dict | None = None, *,
                storage_dtype: torch.dtype | None = None) -> Path:
    """Write a tagger folder (``config.json`` + ``model.safetensors``, atomically); ``extra``: how it was trained."""
    weights = pretrained.for_storage(model.state_dict(), storage_dtype)
    meta = (extra or {}) | {"model": "audio-tagger", "config": model.config.to_dict(), "storage_dtype": weights.dtype}
    return pretrained.write(directory, weights.stored, meta)


def load_tagger(name_or_dir: str | Path) -> AudioTagger:
    """A saved tagger (``train_tagger``'s folder)."""
    d, meta, state = pretrained.read(name_or_dir)
    if meta.get("model") != "audio-tagger":
        raise pretrained.PretrainedError(f"{d}: not an audio tagger folder")
    model = AudioTagger(TaggerConfig(**meta["config"]))
    model.load_state_dict(state)
    return model.eval()
