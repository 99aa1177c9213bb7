"""Calibrating the MMD loss weight: the gradient the MMD term gives the encoder against the Mel term's.

    .venv/bin/python benchmarks/mmd_calibration.py --write     # runs/rvq-dac-small/export on its run's data

configs/rvq-dac-mmd-small.yaml takes rvq-mmd-small's weight, 1000, which was measured on other streams (64-d
Euclidean residuals, 512 features): on the look-up streams (8 levels × 8 L2-normalised dims) the statistic has
another scale. This script measures it on a saved codec export and training batches of the run config the
export records (or ``--config``):

- (a) the Mel term as training computes it: ``mel_weight ×`` the Mel distance of one batch, through
  ``forward_train`` in training mode (quantizer dropout as in training); every ``mel`` / ``mel_<k>`` loss;
- (b) ``weight ×`` the MMD statistic of one pool of ``mmd.pool_batches`` batches re-encoded with the current
  weights (``WaveformCodec.independence_statistic``, the function the training calls);

the norm of each one's gradient over the encoder's parameters, their ratio, and the weight at which the MMD
gradient would be ``--fraction ×`` the Mel one (the norm is linear in the weight). The Mel batch is the pool's
last batch, as at the training step that adds the MMD term. Both in float32 (training runs them under bf16
autocast). The Mel term acts on every step and the MMD term on one step in ``pool_batches``: the ratio compares
the gradients of the step where both act.

The statistic's halves and shuffles are random (``--seed``); one pool is one draw of them and of the clips.
``--write`` writes ``--out``/mmd-calibration.{md,json}. It encodes ``pool_batches`` batches with gradient: run it
while no training holds the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from musictok import pretrained
from musictok.atomic import write_json, write_text
from musictok.errors import MusictokError
from musictok.report import provenance
from musictok.tokenizers.base import Tokenizer
from musictok.tokenizers.rvq_codec import CodecOutput, WaveformCodec
from musictok.train.codec import whole_units
from musictok.train.config import RunConfig, load_run_config, parse_run_config

DEFAULT_EXPORT = "runs/rvq-dac-small/export"
FALLBACK_WEIGHT = 1000.0  # AudioCraft's weight, for an export trained without the term (what the calibration checked)


class CalibrationError(MusictokError):
    """An export, config or option the calibration cannot use; the message says which and why."""


# ------------------------------------------------------------------------------------------------ inputs
def load_codec(export: str) -> tuple[WaveformCodec, dict]:
    """The codec of a saved export and its ``config.json`` (train step, run config)."""
    try:
        folder = pretrained.resolve(export)
        meta = json.loads((folder / pretrained.CONFIG_FILE).read_text())
        model = Tokenizer.from_pretrained(folder)
    except MusictokError as e:
        raise CalibrationError(str(e)) from None
    if not isinstance(model, WaveformCodec):
        raise CalibrationError(f"{export}: holds a {model.name} tokenizer, not a waveform codec with an MMD term")
    if not model.mmd_ready:
        raise CalibrationError(f"{export}: no MMD term to measure: one codebook, or codebooks not initialised yet "
                               "(exported while the k-means buffer filled)")
    return model, meta


def run_config(meta: dict, export: str, config: str | None) -> RunConfig:
    """The run config whose data the batches come from: ``config`` if given, else the one the export records."""
    raw = meta.get("run_config")
    if not (config or raw):
        raise CalibrationError(f"{export}: its config.json records no run config; name one with --config")
    try:
        return load_run_config(config) if config else parse_run_config(dict(raw), f"{export}/config.json: run_config")
    except ValueError as e:
        raise CalibrationError(str(e)) from None


def training_pool(run: RunConfig, model: WaveformCodec, batches: int) -> list[Tensor]:
    """The first ``batches`` training batches of the run's data, ``(batch_size, T)`` each, as a one-process
    training draws them (clip ``i`` of the run's dataset is item ``i`` of its training order)."""
    size = run.train.batch_size
    clips = run.data.train_clips(whole_units(run.data.clip_seconds, model), model.sample_rate, batches * size)
    return [torch.stack([clips[i]["audio"] for i in range(b * size, (b + 1) * size)]) for b in range(batches)]


# ------------------------------------------------------------------------------------------------ measurement
def mel_term(out: CodecOutput) -> Tensor:
    """The weighted Mel losses of a training pass (``mel``, or PyramidCodec's ``mel_1 … mel_N``), summed."""
    return sum(v for k, v in out.losses.items() if k == "mel" or k.startswith("mel_"))


def grad_norm(loss: Tensor, module: nn.Module) -> float:
    """The L2 norm of ``loss``'s gradient over ``module``'s trainable parameters (0 where it does not reach)."""
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))


def calibrate(model: WaveformCodec, pool: list[Tensor], *, weight: float, fraction: float, seed: int) -> dict:
    """Both gradient norms on the encoder, their ratio (MMD / Mel) and the weight giving ``fraction``. The
    MMD gradient is taken first: the Mel pass runs the quantizer in training mode, which may restart codes."""
    model.train()
    torch.manual_seed(seed)
    statistic = model.independence_statistic(pool)
    raw_norm = grad_norm(statistic, model.encoder)
    mel = mel_term(model.forward_train(pool[-1]))
    mel_norm = grad_norm(mel, model.encoder)
    if not (raw_norm > 0 and math.isfinite(raw_norm)) or not (mel_norm > 0 and math.isfinite(mel_norm)):
        raise CalibrationError(f"a gradient norm is zero or not finite (Mel {mel_norm}, MMD statistic {raw_norm}): "
                               "nothing to calibrate against")
    mmd_norm, value = weight * raw_norm, float(statistic.detach())
    return {"mel_loss": float(mel.detach()), "mel_grad_norm": mel_norm, "mmd_statistic": value,
            "mmd_loss": weight * value, "mmd_grad_norm": mmd_norm, "ratio": mmd_norm / mel_norm,
            "suggested_weight": fraction * mel_norm / raw_norm}


# ------------------------------------------------------------------------------------------------ report
def markdown(result: dict) -> str:
    s, m = result["settings"], result["measured"]
    return "\n".join([
        f"# MMD weight calibration ({result['date']})", "",
        f"Command: `{result['command']}`. musictok {result['musictok_version']}; metrics v{result['metrics_version']}; "
        f"{result['machine']}.", "",
        f"Export `{result['export']}` (step {result['train_step']}, fingerprint {result['fingerprint']}); data of "
        f"{result['config_source']}: one pool of {s['pool_batches']} batches × {s['batch_size']} clips of "
        f"{s['clip_seconds']:g} s; MMD streams `{s['streams']}`; seed {s['seed']}. Gradient norms over the encoder's "
        f"{result['encoder_parameters']:,} parameters, float32. The Mel term acts on every step, the MMD term on one "
        f"step in {s['pool_batches']}.", "",
        "| term | loss | gradient norm on the encoder |", "|---|---:|---:|",
        f"| Mel: {s['mel_weight']:g} × Mel distance, one batch | {m['mel_loss']:.4g} | {m['mel_grad_norm']:.4g} |",
        f"| MMD: {s['weight']:g} × statistic ({m['mmd_statistic']:.3g}), one pool | {m['mmd_loss']:.4g} | "
        f"{m['mmd_grad_norm']:.4g} |", "",
        f"MMD / Mel gradient ratio at weight {s['weight']:g}: **{m['ratio']:.3g}**. The weight that makes the MMD "
        f"gradient {s['fraction']:g} × the Mel one: **{m['suggested_weight']:.4g}** (one pool: one draw of the "
        "statistic's shuffles and of the clips).", ""])


def run(args: argparse.Namespace, command: str) -> dict:
    if not (args.fraction > 0 and math.isfinite(args.fraction)):
        raise CalibrationError(f"--fraction must be > 0, got {args.fraction}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta = load_codec(args.export)
    cfg = run_config(meta, args.export, args.config)
    mmd = model.config.mmd
    weight = args.weight if args.weight is not None else (mmd.weight or FALLBACK_WEIGHT)
    if not (weight > 0 and math.isfinite(weight)):
        raise CalibrationError(f"--weight must be > 0, got {weight}")
    try:
        pool = training_pool(cfg, model, mmd.pool_batches)
    except (FileNotFoundError, ValueError) as e:  # a data source missing here
        raise CalibrationError(f"the run's data: {e}") from None
    measured = calibrate(model, pool, weight=weight, fraction=args.fraction, seed=args.seed)
    return {**provenance(), "command": command, "export": args.export, "train_step": meta.get("train_step"),
            "fingerprint": model.fingerprint().short(),
            "config_source": args.config or f"the run config in {args.export}/config.json",
            "encoder_parameters": sum(p.numel() for p in model.encoder.parameters()),
            "settings": {"weight": weight, "fraction": args.fraction, "seed": args.seed,
                         "mel_weight": model.config.mel_weight, "pool_batches": mmd.pool_batches,
                         "batch_size": cfg.train.batch_size, "clip_seconds": cfg.data.clip_seconds,
                         "streams": mmd.streams},
            "measured": measured}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default=DEFAULT_EXPORT, help="a saved codec (training export or bundled name)")
    ap.add_argument("--config", default=None, help="a run config YAML whose data to use (default: the export's own)")
    ap.add_argument("--weight", type=float, default=None,
                    help=f"MMD weight to measure (default: the export's, or {FALLBACK_WEIGHT:g} if it trained without)")
    ap.add_argument("--fraction", type=float, default=1.0,
                    help="target MMD / Mel gradient ratio for the suggested weight")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--write", action="store_true", help="write --out/mmd-calibration.{md,json}")
    ap.add_argument("--out", default="docs/results")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    try:
        result = run(args, shlex.join([".venv/bin/python", "benchmarks/mmd_calibration.py", *argv]))
    except MusictokError as e:
        print(f"mmd_calibration: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    text = markdown(result)
    if args.write:
        out = Path(args.out)
        write_json(out / "mmd-calibration.json", result)
        write_text(out / "mmd-calibration.md", text)
    print(text)
    return result


if __name__ == "__main__":
    main()
