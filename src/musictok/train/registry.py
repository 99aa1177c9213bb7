"""The kinds of training run, one entry each, and how a ``musictok train`` command becomes a ready task.

An entry says which command trains the kind, how its ``model:`` section is checked before any data is read,
how its task is built, whether it trains on plain folders of audio (``--audio``), what a fine-tune of it
(``--init``) starts with, and what is printed when the run ends. ``prepare_run`` is the whole of
``musictok train`` short of running the loop, so the CLI only parses options and prints; adding a kind is
one :func:`register_run_kind` call (plus a command in ``cli.py`` when no existing one fits).

Task modules are imported inside the entries' functions: ``musictok --help`` stays quick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import MusictokError
from .config import RunConfig, apply_overrides, build_model_config, parse_run_config, read_run_yaml
from .finetune import (FineTuneDefaults, InitPoint, audio_sources, check_can_validate, finetune_recipe, load_init,
                       merge_init)
from .loop import TrainSummary, TrainTask


class RunError(MusictokError):
    """A run that cannot start: a bad config, option, checkpoint or data folder (one line, no traceback)."""


@dataclass(frozen=True)
class TaskOptions:
    """What a command passes to a task beside its run config."""

    vocoder: str | None = None  # --vocoder: a vocoder folder to bundle into a Mel tokenizer's export
    init: InitPoint | None = None  # --init: the checkpoint a fine-tune starts from


def finished_line(run: RunConfig, summary: TrainSummary) -> list[str]:
    """The line every run ends with: where it stopped, how fast, and where the export is."""
    state = {"steps": "finished", "budget": "finished (its wall-time budget, train.budget_minutes, reached)"}.get(
        summary.stop_reason, "stopped early (resume with --resume)")
    return [f"{state} at step {summary.end_step}/{run.train.steps} in {summary.wall_seconds / 60:.1f} min "
            f"({summary.seconds_per_step:.2f} s/step); export: {Path(summary.out_dir) / 'export'}"]


@dataclass(frozen=True)
class RunKind:
    """One kind of run (the ``kind:`` of a run config)."""

    name: str
    command: str  # `musictok train <command>` trains it
    check_model: Callable[[RunConfig], None]  # raises TypeError / ValueError naming the key
    make_task: Callable[[RunConfig, TaskOptions], TrainTask]  # ValueError: a config problem; RunError: an option's
    audio_folders: bool = True  # trains on any audio (data.sources, --audio); False: needs a corpus's stems
    finetune: FineTuneDefaults | None = None  # None: no --init
    summary: Callable[[RunConfig, TrainSummary], list[str]] = finished_line


RUN_KINDS: dict[str, RunKind] = {}


def register_run_kind(kind: RunKind) -> RunKind:
    RUN_KINDS[kind.name] = kind
    return kind


# ---------------------------------------------------------------------------------------- the entries
def _check_bandtok(run: RunConfig) -> None:
    from ..tokenizers.bandtok import BandTokConfig

    build_model_config(BandTokConfig, run.model)


def _bandtok_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .tokenizer import BandTokTask

    return BandTokTask(run, vocoder_dir=opts.vocoder, init=opts.init)


def _bandtok_full(model: dict) -> dict:
    from ..tokenizers.bandtok import BandTokConfig

    return build_model_config(BandTokConfig, model).to_dict()


def _check_codec(run: RunConfig) -> None:
    from .codec import codec_model_config

    codec_model_config(run.model)


def _codec_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .codec import CodecTask

    if opts.vocoder:
        raise RunError("--vocoder is for Mel tokenizers (kind: bandtok); a waveform codec has its own decoder")
    return CodecTask(run, init=opts.init)


def _codec_full(model: dict) -> dict:
    from .codec import CODECS, codec_model_config

    cls, config = codec_model_config(model)
    return {"tokenizer": next(k for k, (c, _) in CODECS.items() if c is cls)} | config.to_dict()


def _check_vocoder(run: RunConfig) -> None:
    from ..nn.vocoder import VocoderConfig

    build_model_config(VocoderConfig, run.model)


def _vocoder_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .vocoder import VocoderTask

    return VocoderTask(run, init=opts.init)


def _vocoder_full(model: dict) -> dict:
    from ..nn.vocoder import VocoderConfig

    return build_model_config(VocoderConfig, model).to_dict()


def _lm_config(model: dict):
    from ..lm.model import TokenLMConfig
    from ..settings import check_types

    fields = dict(model)
    preset = fields.pop("preset", "small")
    check_types(TokenLMConfig, fields, "model")
    return TokenLMConfig.preset(preset, **fields)


def _check_lm(run: RunConfig) -> None:
    from ..settings import build_checked
    from .lm import LMSection

    build_checked(LMSection, run.lm, "lm")
    _lm_config(run.model)


def _lm_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .lm import LMTask

    return LMTask(run, init=opts.init)


def _check_separator(run: RunConfig) -> None:
    from .separator import separation_check, separator_config

    separator_config(run.model)
    separation_check(run)


def _separator_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .separator import SeparatorTask

    return SeparatorTask(run)


def _check_duotok(run: RunConfig) -> None:
    from ..settings import build_checked
    from .duotok import DuoTokStage, duotok_model_config

    build_checked(DuoTokStage, run.duotok, "duotok")
    duotok_model_config(run)


def _duotok_task(run: RunConfig, opts: TaskOptions) -> TrainTask:
    from .duotok import DuoTokTask

    return DuoTokTask(run, vocoder_dir=opts.vocoder)


# Fine-tune clip lengths when a checkpoint records none: those of the bundled models' recipes.
register_run_kind(RunKind("bandtok", "tokenizer", _check_bandtok, _bandtok_task,
                          finetune=FineTuneDefaults(2.0, attached=("vocoder",), full_model=_bandtok_full)))
register_run_kind(RunKind("codec", "tokenizer", _check_codec, _codec_task,
                          finetune=FineTuneDefaults(1.0, full_model=_codec_full)))
register_run_kind(RunKind("vocoder", "vocoder", _check_vocoder, _vocoder_task,
                          finetune=FineTuneDefaults(1.0, full_model=_vocoder_full)))
register_run_kind(RunKind("lm", "lm", _check_lm, _lm_task,
                          finetune=FineTuneDefaults(None, train={"betas": [0.9, 0.95], "weight_decay": 0.1},
                                                    full_model=lambda m: _lm_config(m).to_dict())))
register_run_kind(RunKind("separator", "separator", _check_separator, _separator_task, audio_folders=False))
register_run_kind(RunKind("duotok", "tokenizer", _check_duotok, _duotok_task, audio_folders=False))


# ---------------------------------------------------------------------------------------- a command -> a task
@dataclass
class RunRequest:
    """A ``musictok train <command>`` invocation, parsed."""

    command: str  # tokenizer, vocoder, lm, separator
    config: Path | None = None
    init: str | None = None  # --init
    audio: list[str] = field(default_factory=list)  # --audio DIR[:weight], repeatable
    overrides: dict = field(default_factory=dict)  # dotted keys: --out, --steps, --max-minutes, --init-from, --set
    vocoder: str | None = None


@dataclass
class PreparedRun:
    """A run ready for the training loop."""

    kind: RunKind
    run: RunConfig
    task: TrainTask
    init: InitPoint | None = None

    def meta(self, command_line: str) -> dict:
        """What ``run.json`` records beside the loop settings."""
        meta = {"command": command_line, "run_config": self.run.to_dict()}
        return meta | ({"init": self.init.provenance()} if self.init is not None else {})

    def summary_lines(self, summary: TrainSummary) -> list[str]:
        """The kind's closing lines, plus, for a fine-tune, both fingerprints."""
        lines = self.kind.summary(self.run, summary)
        if self.init is not None:
            lines.append(f"initialised from {self.init.given}: {self.init.fingerprint.short()}; "
                         f"the export: {_export_fingerprint(Path(summary.out_dir) / 'export')}")
        return lines


def _export_fingerprint(export: Path) -> str:
    from ..tokens import Fingerprint

    try:
        return Fingerprint(**json.loads((export / "config.json").read_text())["fingerprint"]).short()
    except (OSError, ValueError, KeyError, TypeError):
        return "without a fingerprint"


def _where_model_error(e: Exception) -> str:
    """Errors from a model check name their key, or get told which section they came from."""
    named = str(e).startswith(("model.", "lm.", "unknown lm keys", "init_from", "duotok."))
    return "" if named else "model or lm section: "


def prepare_run(req: RunRequest) -> PreparedRun:
    """Config (or a fine-tune's default recipe) + options -> a checked run config and its task. Every
    expected failure is a :class:`RunError` whose one line names the file or option."""
    if req.config is None and req.init is None:
        raise RunError("--config: give a run config, or --init NAME_OR_DIR to fine-tune a saved model")
    raw, where = None, f"fine-tune of {req.init}"
    if req.config is not None:
        where = str(req.config)
        try:
            raw = read_run_yaml(req.config)
        except ValueError as e:
            raise RunError(str(e)) from None
    init = _init_of(req, raw, where)
    if raw is None:
        kind = RUN_KINDS[init.kind]
        if kind.command != req.command:
            raise RunError(f"--init {req.init}: holds a {init.what}; fine-tune it with `musictok train {kind.command}`")
        if not req.audio:
            raise RunError(f"--audio: give the folders of audio to fine-tune {req.init} on (--audio DIR, repeatable)")
        raw = finetune_recipe(init, kind.finetune)
    if req.audio:
        kind = RUN_KINDS.get(raw.get("kind"))
        if kind is not None and not kind.audio_folders:
            raise RunError(f"--audio: a {kind.name} run trains on a rendered corpus's stems; give its data in {where}")
        try:
            sources = audio_sources(req.audio)
        except ValueError as e:
            raise RunError(str(e)) from None
        raw["data"] = dict(raw.get("data") or {}) | {"sources": sources}
    try:
        run = parse_run_config(apply_overrides(raw, req.overrides), where)
    except ValueError as e:
        raise RunError(str(e)) from None
    kind = RUN_KINDS[run.kind]
    try:  # check the model section now, not after the data loader has started
        kind.check_model(run)
    except (TypeError, ValueError) as e:
        raise RunError(f"{where}: {_where_model_error(e)}{e}") from None
    if kind.command != req.command:
        raise RunError(f"{where}: is a {run.kind} config; use `musictok train {kind.command}`")
    for spec in run.data.source_specs:
        src = Path(spec.path)
        if not src.exists() or (not run.data.sources and not spec.is_corpus):
            hint = ("`make data-real` (or `musictok data import DIR --out ...`)" if "real" in src.name
                    else f"`musictok data build --out {src}`")
            raise RunError(f"{src}: no corpus here (data source of {where}); run {hint} first")
    if req.audio:
        try:
            check_can_validate(run.data.source_specs, run.data.valid_split)
        except (ValueError, MusictokError) as e:
            raise RunError(str(e)) from None
    try:
        task = kind.make_task(run, TaskOptions(vocoder=req.vocoder, init=init))
    except ValueError as e:
        raise RunError(f"{where}: {e}") from None
    return PreparedRun(kind, run, task, init)


def _init_of(req: RunRequest, raw: dict | None, where: str) -> InitPoint | None:
    """The checkpoint a run starts from (``--init``, else the config's ``init:``), checked against the config's
    kind; the config (when there is one) is merged with it in place."""
    given, option, prefix = req.init, "--init", ""
    if given is None and raw is not None and raw.get("init") is not None:
        given, option, prefix = raw["init"], "init:", f"{where}: "  # errors name the config file first
        if not isinstance(given, str) or not given:
            raise RunError(f"{where}: init: must be a bundled model name or a model folder, got {given!r}")
    if given is None:
        return None
    config_kind = RUN_KINDS.get(raw.get("kind")) if raw is not None else None
    if config_kind is not None and config_kind.finetune is None:
        how = " (a stage starts from init_from, the previous stage's export)" if config_kind.name == "duotok" else ""
        raise RunError(f"{prefix}{option} {given}: a {config_kind.name} run does not fine-tune{how}")
    try:
        init = load_init(given, option)
    except ValueError as e:
        raise RunError(f"{prefix}{e}") from None
    if config_kind is not None:
        if config_kind.name != init.kind:
            raise RunError(f"{prefix}{option} {given}: holds a {init.what} (kind {init.kind}), but {where} trains "
                           f"kind {config_kind.name}")
        try:
            merge_init(raw, init, config_kind.finetune, option)
        except (TypeError, ValueError) as e:
            raise RunError(f"{where}: {e}") from None
    return init
