"""Fine-tuning: a run that starts from a saved model (a bundled name or a folder) instead of random weights.

``musictok train tokenizer|vocoder|lm --init NAME_OR_DIR --audio DIR [--audio DIR:weight ...]``, or the same
as ``init: NAME_OR_DIR`` and ``data.sources`` in a run config. Why it works the way it does:

- **The model comes from the checkpoint.** Its config becomes the run's ``model:`` section, so a config may
  leave ``model:`` out; one that keeps it must agree key by key (:func:`check_agrees` names the first key
  that differs), because weights only mean something in the architecture they were trained in.
- **Weights before step 0, a fresh optimizer.** The checkpoint's weights (EMA codebooks and their k-means
  flag included) are loaded when the task builds its model; Adam's moments and the LR schedule start
  anew, as for any run, so ``--resume`` and checkpoints behave as they always do.
- **Provenance travels.** ``run.json`` and the export's ``config.json`` record ``init``: what was given,
  the folder it resolved to and the checkpoint's fingerprint. The export is saved like any run's, so its
  fingerprint is its own (new weights) and ``Tokenizer.from_pretrained(dir)`` loads it.
- **A default recipe** (:func:`finetune_recipe`) when no config is given: a lower learning rate, a short
  run with warmup, the clip length the model was trained with, and no GAN (discriminators would start from
  scratch against a trained generator); ``--set gan.start_step=N`` asks for one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

from .. import pretrained
from ..tokens import Fingerprint

# The default recipe: a fine-tune moves a trained model a little, so the learning rate is a third to a fifth
# of the recipes' (3e-4 … 1e-3) and the run is short; validation and checkpoints come often enough to stop
# early with something saved.
FINETUNE_TRAIN = {"steps": 1000, "lr": 1e-4, "warmup_steps": 100, "min_lr_ratio": 0.1, "batch_size": 8,
                  "log_every": 50, "ckpt_every": 250, "valid_every": 250}
NO_GAN = 1_000_000_000  # gan.start_step that is never reached
VALID_CLIPS, VALID_SECONDS = 16, 4.0


@dataclass
class InitPoint:
    """A saved model a run starts from: what the user named, what it is, its weights and its fingerprint."""

    given: str  # as written (a bundled name or a folder)
    folder: Path  # the folder it resolved to
    kind: str  # the run kind that trains it: bandtok, codec, vocoder, lm, ...
    what: str  # for messages: "bandtok tokenizer", "vocoder", "token LM"
    model: dict  # the run config's model section that rebuilds exactly this architecture
    state: dict[str, Tensor]
    fingerprint: Fingerprint
    meta: dict  # its config.json
    lm: dict = field(default_factory=dict)  # token LMs: the lm section (tokenizer, pattern, context)

    @property
    def name(self) -> str:
        """A short name for default output folders (``runs/x/export`` -> ``x``)."""
        folder = self.folder.resolve()
        return folder.parent.name if folder.name == "export" else folder.name

    @property
    def clip_seconds(self) -> float | None:
        """The training clip length recorded with the checkpoint (exports of this project's runs), if any."""
        value = ((self.meta.get("run_config") or {}).get("data") or {}).get("clip_seconds")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def provenance(self) -> dict:
        """What a fine-tune records in ``run.json`` and in its export's ``config.json``."""
        return {"source": self.given, "folder": str(self.folder.resolve()),
                "fingerprint": dataclasses.asdict(self.fingerprint), "what": self.what}

    def load_into(self, module: nn.Module) -> None:
        """Copy the checkpoint's weights into a freshly built model of the same config (before step 0)."""
        try:
            missing, unexpected = module.load_state_dict(self.state, strict=False)
        except RuntimeError as e:  # a tensor of another shape
            raise ValueError(f"init {self.given}: its weights do not fit the model "
                             f"({str(e).splitlines()[-1].strip()[:160]})") from None
        if missing or unexpected:
            raise ValueError(f"init {self.given}: its weights do not fit the model "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def provenance(init: InitPoint | None) -> dict:
    """``{"init": …}`` for an export's extra metadata, or nothing for a run from scratch."""
    return {} if init is None else {"init": init.provenance()}


# ---------------------------------------------------------------------------------------- reading checkpoints
def _plain(d: Any) -> Any:
    """JSON types only (tuples become lists), so configs compare and serialise alike."""
    return json.loads(json.dumps(d))


def checkpoint_kind(meta: dict) -> str | None:
    """The run kind that trains a saved model, from its ``config.json``."""
    from .codec import CODECS

    tokenizer = meta.get("tokenizer")
    if meta.get("model") == "vocoder":
        return "vocoder"
    if meta.get("model") == "token-lm":
        return "lm"
    if "separator" in meta:
        return "separator"
    if isinstance(tokenizer, str):
        return "codec" if tokenizer in CODECS else tokenizer
    return None


def _tokenizer_init(given: str, folder: Path, meta: dict, kind: str) -> InitPoint:
    from ..tokenizers.base import Tokenizer

    tok = Tokenizer.from_pretrained(folder)  # checks the weights against the stored fingerprint
    model = _plain(tok.config_dict())
    if kind == "codec":
        model = {"tokenizer": tok.name} | model
    return InitPoint(given, folder, kind, f"{tok.name} tokenizer", model, tok.state_dict(), tok.fingerprint(), meta)


def _vocoder_init(given: str, folder: Path, meta: dict, kind: str) -> InitPoint:
    from ..nn.vocoder import load_vocoder, vocoder_fingerprint

    voc = load_vocoder(folder)
    return InitPoint(given, folder, kind, "vocoder", _plain(voc.config.to_dict()), voc.state_dict(),
                     vocoder_fingerprint(voc), meta)


def _lm_init(given: str, folder: Path, meta: dict, kind: str) -> InitPoint:
    from .lm import lm_fingerprint, load_lm

    loaded = load_lm(folder)
    rate = float(meta["layout"]["streams"][0]["frame_rate"])
    lm = {"tokenizer": meta["tokenizer"]["source"], "pattern": meta["pattern"],
          "pattern_options": meta.get("pattern_options", {}), "context_seconds": meta["context_frames"] / rate}
    return InitPoint(given, folder, kind, "token LM", _plain(loaded.model.config.to_dict()),
                     loaded.model.state_dict(), lm_fingerprint(loaded.model, meta), meta, lm)


INIT_LOADERS: dict[str, Callable[[str, Path, dict, str], InitPoint]] = {
    "bandtok": _tokenizer_init, "codec": _tokenizer_init, "vocoder": _vocoder_init, "lm": _lm_init}


def load_init(given: str, option: str = "--init") -> InitPoint:
    """Read the checkpoint a fine-tune starts from. ``option`` names where it was given, for errors
    (``ValueError``, one line: the option, the name, what is wrong)."""
    from ..errors import MusictokError

    try:
        folder = pretrained.resolve(given)
        meta = json.loads((folder / pretrained.CONFIG_FILE).read_text())
    except pretrained.PretrainedError as e:
        raise ValueError(f"{option} {e}") from None
    except ValueError:
        raise ValueError(f"{option} {given}: {pretrained.CONFIG_FILE} is not valid JSON") from None
    kind = checkpoint_kind(meta)
    if kind not in INIT_LOADERS:
        what = {"separator": "a separator", "duotok": "a DuoTok tokenizer (it trains in stages: use a stage config "
                "with init_from)"}.get(kind or "", "not a model musictok can fine-tune")
        raise ValueError(f"{option} {given}: {what}; fine-tuning starts from a BandTok, RVQ or pyramid codec "
                         "tokenizer, a vocoder or a token LM")
    try:
        return INIT_LOADERS[kind](given, folder, meta, kind)
    except MusictokError as e:
        raise ValueError(f"{option} {e}") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"{option} {given}: {pretrained.CONFIG_FILE} lacks what a {kind} checkpoint records "
                         f"({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------- the run config
@dataclass(frozen=True)
class FineTuneDefaults:
    """What a run kind's default fine-tune recipe needs to know about the kind."""

    clip_seconds: float | None  # when the checkpoint records none (the bundled recipe's); None: not audio clips
    train: dict = field(default_factory=dict)  # the kind's own defaults over FINETUNE_TRAIN
    attached: tuple[str, ...] = ()  # model keys that travel with an export but the run does not train
    full_model: Callable[[dict], dict] | None = None  # a model section (preset + fields) -> its whole config


def finetune_recipe(init: InitPoint, defaults: FineTuneDefaults) -> dict:
    """The raw run config of a fine-tune given no config: the checkpoint's model, the default schedule, an
    output folder named after the checkpoint; ``data.sources`` come from ``--audio``."""
    raw: dict = {"kind": init.kind, "init": init.given, "model": dict(init.model),
                 "train": FINETUNE_TRAIN | defaults.train | {"out_dir": f"runs/finetune-{init.name}"}}
    if init.kind == "lm":
        raw["lm"] = dict(init.lm)
        raw["data"] = {}
        return raw
    data = {"clip_seconds": init.clip_seconds or defaults.clip_seconds, "valid_clips": VALID_CLIPS,
            "valid_seconds": VALID_SECONDS}
    if init.model.get("level_dbfs") is not None:  # a gain-invariant tokenizer trains on clips at its level
        data["level_dbfs"] = init.model["level_dbfs"]
    raw["data"] = data
    raw["gan"] = {"start_step": NO_GAN}
    return raw


_MISSING = object()


def _first_difference(given: Any, have: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first dotted key whose value in ``given`` differs from ``have`` (only keys ``given`` sets);
    ``_MISSING`` stands for a key ``have`` lacks."""
    if isinstance(given, dict) and isinstance(have, dict):
        for k, v in given.items():
            found = _first_difference(v, have[k], f"{key}.{k}") if k in have else (f"{key}.{k}", v, _MISSING)
            if found:
                return found
        return None
    return None if given == have else (key, given, have)


def check_agrees(model: dict, init: InitPoint, defaults: FineTuneDefaults, option: str) -> None:
    """A config's ``model:`` section must describe the checkpoint's model: with a ``preset``, the whole config
    it builds (keys the run does not train, e.g. an attached vocoder, left out unless given); without, the keys
    it sets. Raises a one-line ``ValueError`` naming the first key that differs."""
    if not model:
        return
    given = _plain(model)
    if "preset" in given and defaults.full_model is not None:
        built = _plain(defaults.full_model(dict(model)))
        given = {k: v for k, v in built.items() if k not in defaults.attached or k in model}
    diff = _first_difference(given, init.model, "model")
    if diff is None:
        return
    key, mine, theirs = diff
    has = "has no such key" if theirs is _MISSING else f"has {theirs!r}"
    raise ValueError(f"{key}: the config has {mine!r}, {option} {init.given} {has}; a fine-tune keeps the "
                     "checkpoint's model (leave model: out, or make it agree)")


def check_lm_agrees(lm: dict, init: InitPoint, option: str) -> None:
    """A token LM's ``lm:`` section may not change the tokens it reads or how they are laid out."""
    meta = init.meta
    if "tokenizer" in lm and lm["tokenizer"] != init.lm["tokenizer"]:
        try:
            same = pretrained.resolve(lm["tokenizer"]).resolve() == pretrained.resolve(init.lm["tokenizer"]).resolve()
        except pretrained.PretrainedError:
            same = False
        if not same:
            raise ValueError(f"lm.tokenizer: the config has {lm['tokenizer']!r}, {option} {init.given} reads tokens "
                             f"of {init.lm['tokenizer']!r}; a fine-tuned LM keeps its tokenizer")
    for key in ("pattern", "pattern_options"):
        if key in lm and _plain(lm[key]) != _plain(init.lm[key]):
            raise ValueError(f"lm.{key}: the config has {lm[key]!r}, {option} {init.given} has {init.lm[key]!r}; "
                             "a fine-tuned LM keeps its sequence layout")
    if "context_seconds" in lm and isinstance(lm["context_seconds"], (int, float)):
        rate = float(meta["layout"]["streams"][0]["frame_rate"])
        if max(1, round(lm["context_seconds"] * rate)) != meta["context_frames"]:
            raise ValueError(f"lm.context_seconds: the config has {lm['context_seconds']}, {option} {init.given} "
                             f"has {init.lm['context_seconds']:.4g} s ({meta['context_frames']} frames); a "
                             "fine-tuned LM keeps its context")


def merge_init(raw: dict, init: InitPoint, defaults: FineTuneDefaults, option: str) -> dict:
    """A config plus the checkpoint it fine-tunes: the model (and an LM's tokens and layout) from the
    checkpoint, after checking the config agrees; everything else from the config."""
    check_agrees(raw.get("model") or {}, init, defaults, option)
    raw["model"] = dict(init.model)
    if init.kind == "lm":
        lm = dict(raw.get("lm") or {})
        check_lm_agrees(lm, init, option)
        raw["lm"] = lm | init.lm
    raw["init"] = init.given
    return raw


# ---------------------------------------------------------------------------------------- --audio folders
def _split_weight(item: str) -> tuple[str, float]:
    """``DIR`` or ``DIR:weight``; a tail after the last colon that is not a number belongs to the path."""
    head, sep, tail = item.rpartition(":")
    if not sep or not head:
        return item, 1.0
    try:
        weight = float(tail)
    except ValueError:
        return item, 1.0
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"--audio {item}: the weight after ':' must be a number > 0")
    return head, weight


def audio_sources(items: list[str]) -> list[dict]:
    """``--audio DIR[:weight]`` items -> ``data.sources`` entries, each folder checked: it exists, and holds
    audio (a plain folder) or is a corpus (``metadata.jsonl``). Equal weights unless given."""
    from ..audio import AUDIO_EXTENSIONS, find_audio

    out: list[dict] = []
    names: set[str] = set()
    for item in items:
        path, weight = _split_weight(item)
        p = Path(path).expanduser()
        if not p.exists():
            raise ValueError(f"--audio {path}: no such folder")
        if not p.is_dir():
            raise ValueError(f"--audio {path}: not a folder (give the folder that holds the audio files)")
        if not (p / "metadata.jsonl").is_file() and not find_audio(p):
            raise ValueError(f"--audio {path}: no audio files in it (looked for {' '.join(AUDIO_EXTENSIONS)})")
        name = p.resolve().name or "audio"
        base, k = name, 2
        while name in names:  # two folders of one name: keep their validation logs apart
            name, k = f"{base}-{k}", k + 1
        names.add(name)
        out.append({"path": str(p), "weight": weight, "name": name})
    return out


def check_can_validate(specs: list, split: str) -> None:
    """Fail before any model is built when none of the ``--audio`` folders can hold anything out."""
    from ..data.datasets import CorpusIndex, folder_split

    for s in specs:
        if s.is_corpus:
            if CorpusIndex(s.path, split).pieces:
                return
        elif folder_split(s.path).get(split):
            return
    raise ValueError(f"--audio: no folder has audio to validate on (the {split!r} split): a folder holds some "
                     "of its files out when it has two or more, so add files or another folder")
