"""`make demo`: the main job on the embedded default corpus and the bundled checkpoints.

1. renders a handful of held-out (test-split) Bach chorales with the embedded SoundFont, plus one
   training and one validation piece, so the smoke configs (``configs/*-tiny.yaml``) can train on it;
2. checks that every mix is the sum of its stems and draws one piece's mix and stems;
3. encodes that piece with the bundled `bandtok-small`, decodes it, writes both WAVs and a picture
   (original Mel | reconstructed Mel | token grid), and prints Mel distance, SI-SDR and speeds;
4. continues its first 4 seconds for 8 more with the bundled token LM `bandtok-small-lm`;
5. separates the piece's four-stem (musdb-style) mix with the bundled LM separator `sep-lm-small`, draws the
   estimated stems and scores each against the true one (SI-SDR, Mel distance).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .audio import load
from .data.build import BuildConfig, build_corpus
from .data.datasets import CorpusIndex
from .data.verify import check_piece
from .metrics.version import METRICS_VERSION
from .plots import plot_stems


def run_demo(out: Path, data: Path, pieces: int = 4, console: Console | None = None,
             tokenizer: str = "bandtok-small", lm: str = "bandtok-small-lm", separator: str = "sep-lm-small") -> dict:
    console = console or Console()
    t0 = time.time()
    console.rule("[bold]1. render a small corpus: held-out test pieces, one train, one valid")
    render_seconds = 0.0
    for split, limit in (("test", pieces), ("train", 1), ("valid", 1)):
        report = build_corpus(BuildConfig(out=data, corpus="chorales", limit=limit, split=split, seed=0),
                              on_piece=lambda r: console.print(f"  {r.status:9s} {r.id}"
                                                               + (f": {r.reason}" if r.reason else "")))
        render_seconds += report.wall_seconds
    index = CorpusIndex(data)
    console.print(f"{report.pieces} pieces, {report.hours * 60:.1f} min of audio, "
                  f"SoundFont {Path(report.soundfont).name} ({report.soundfont_origin}), "
                  f"{render_seconds:.1f} s")

    console.rule("[bold]2. check mix = Σ stems")
    worst = max(c.max_abs_error for p in index.pieces for c in check_piece(index.folder(p)))
    console.print(f"max |mix − Σ stems| over every folder: {worst:.2e}")

    console.rule("[bold]3. draw one piece")
    piece = next((p for p in index.pieces if p["split"] == "test"), index.pieces[0])
    folder = index.folder(piece)
    sr = piece["sample_rate"]
    seconds = min(20.0, piece["duration_seconds"])
    mix, _ = load(folder / piece["mix"], duration=seconds)
    parts = [load(folder / p["stem"], duration=seconds)[0] for p in piece["parts"]]
    names = [f"{p['name']} · {p['program_name']}" for p in piece["parts"]]
    out.mkdir(parents=True, exist_ok=True)
    pngs = [plot_stems(mix, parts, names, sr, out / f"{piece['id']}_parts.png",
                       title=f"{piece['id']} ({piece['split']}) — parts")]
    duo = piece["groups"]["duo"]
    pngs.append(plot_stems(mix, [np.sum([parts[i] for i in duo[k]], axis=0) for k in ("lead", "accompaniment")],
                           ["lead", "accompaniment"], sr, out / f"{piece['id']}_duo.png",
                           title=f"{piece['id']} — duo"))
    if piece.get("musdb"):
        sub = folder / "musdb"
        stems = piece["musdb"]["stems"]
        pngs.append(plot_stems(load(sub / piece["mix"], duration=seconds)[0],
                               [load(sub / f, duration=seconds)[0] for f in stems.values()],
                               list(stems), sr, out / f"{piece['id']}_musdb.png", title=f"{piece['id']} — musdb"))

    table = Table(title=f"{piece['id']}: {piece['title']}")
    for col in ("part", "instrument", "pitch range", "notes"):
        table.add_column(col)
    for p in piece["parts"]:
        table.add_row(p["name"], f"{p['program_name']} ({p['program']})", "–".join(map(str, p["pitch_range"])),
                      str(p["notes"]))
    console.print(table)
    console.print(f"key {piece['key']}, {piece['time_signature']}, {piece['tempo_qpm']} qpm, "
                  f"{piece['duration_seconds']:.1f} s, split {piece['split']}")
    for p in pngs:
        console.print(f"wrote {p}")
    summary = {"metrics_version": METRICS_VERSION, "pieces": report.pieces, "hours": report.hours,
               "max_mix_error": worst, "figures": [str(p) for p in pngs]}
    console.rule(f"[bold]4. tokenize it with {tokenizer}")
    summary["tokenizer"] = _tokenize_demo(tokenizer, folder / piece["mix"], piece["id"], seconds, out, console)
    console.rule(f"[bold]5. continue it with {lm}")
    summary["lm"] = _continue_demo(lm, folder / piece["mix"], piece["id"], out, console)
    console.rule(f"[bold]6. separate it with {separator}")
    summary["separation"] = _separate_demo(separator, folder, piece, min(seconds, 8.0), out, console)
    summary["seconds"] = time.time() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    console.print(f"demo finished in {summary['seconds']:.1f} s")
    return summary


def _tokenize_demo(name: str, mix_path: Path, piece_id: str, seconds: float, out: Path, console: Console) -> dict:
    """Encode → decode one clip; write WAVs, tokens and a picture; report quality and speed."""
    import torch

    from .audio import save
    from .metrics.reconstruction import mel_distance, si_sdr
    from .plots import plot_reconstruction
    from .tokenizers.base import Tokenizer, TokenizerError

    try:
        model = Tokenizer.from_pretrained(name)
    except TokenizerError as e:
        console.print(f"[yellow]skipped:[/] {e}")
        return {"skipped": str(e)}
    wav, sr = load(mix_path, model.sample_rate, duration=seconds)
    x = torch.from_numpy(wav)
    model.decode(model.encode(x))  # warm-up, so the timing below is the steady state
    t0 = time.perf_counter()
    tokens = model.encode(x)
    t1 = time.perf_counter()
    y = model.decode(tokens)[0]
    t2 = time.perf_counter()
    tokens.save(out / f"{piece_id}.mtok")
    save(out / f"{piece_id}_original.wav", wav, sr)
    save(out / f"{piece_id}_reconstruction.wav", y.numpy(), sr)
    mel = model.denormalize(model.mel(torch.nn.functional.pad(x, (0, -len(x) % model.hop_samples))[None]))[0]
    png = plot_reconstruction(mel.numpy(), model.decode_mel(tokens)[0].numpy(), tokens.codes[0][0].numpy(),
                              model.layout.streams[0].frame_rate, model.config.hop_length / sr,
                              out / f"{piece_id}_tokens.png", title=f"{piece_id} through {name}")
    result = {"mel_distance": float(mel_distance(x, y, sr)), "si_sdr": float(si_sdr(x, y)),
              "encode_realtime_factor": seconds / (t1 - t0), "decode_realtime_factor": seconds / (t2 - t1),
              "tokens": list(tokens.codes[0].shape[1:]), "tokens_per_second": model.layout.tokens_per_second,
              "kbps": model.layout.bitrate / 1000}
    table = Table(title=f"{model.fingerprint().short()} on {seconds:.0f} s of {piece_id}", show_header=False)
    table.add_row("token grid (frames × bands)", " × ".join(map(str, result["tokens"])))
    table.add_row("token rate / bitrate", f"{result['tokens_per_second']:g} tokens/s, {result['kbps']:.3g} kbps")
    table.add_row("Mel distance (DAC definition, ↓)", f"{result['mel_distance']:.3f}")
    if model.phase_free:  # the decoder makes up its own phase: a waveform comparison means nothing here
        table.add_row("SI-SDR (dB) — meaningless here", f"{result['si_sdr']:.2f} (the decoder is trained on "
                      "Mel spectra and picks its own phase; judge by the Mel distance)")
    else:
        table.add_row("SI-SDR (dB, ↑)", f"{result['si_sdr']:.2f}")
    table.add_row("encode / decode speed", f"{result['encode_realtime_factor']:.0f}× / "
                                             f"{result['decode_realtime_factor']:.0f}× real time")
    console.print(table)
    for p in (out / f"{piece_id}_original.wav", out / f"{piece_id}_reconstruction.wav", png):
        console.print(f"wrote {p}")
    return result


def _continue_demo(lm: str, mix_path: Path, piece_id: str, out: Path, console: Console) -> dict:
    """4 s of the held-out piece as a prompt, 8 s more sampled by the LM (top-k 50), decoded to audio."""
    import torch

    from . import pretrained
    from .audio import save
    from .generate import generate

    try:
        pretrained.resolve(lm)
    except pretrained.PretrainedError as e:
        console.print(f"[yellow]skipped:[/] {e}")
        return {"skipped": str(e)}
    wav, sr = load(mix_path, duration=4.0)
    g = generate(lm, prompt=torch.from_numpy(wav), prompt_sample_rate=sr, prompt_seconds=4.0, seconds=12.0,
                 temperature=1.0, top_k=50)
    path = save(out / f"{piece_id}_continuation.wav", g.wav.numpy(), g.tokens.sample_rate)
    g.tokens.save(out / f"{piece_id}_continuation.mtok")
    console.print(f"{g.generated_tokens} tokens sampled at {g.tokens_per_second_generated:.0f} tokens/s after a "
                  f"{g.prompt_seconds:.1f} s prompt; wrote {path}")
    return {"generated_tokens": g.generated_tokens, "tokens_per_second": g.tokens_per_second_generated}


def _separate_demo(name: str, folder: Path, piece: dict, seconds: float, out: Path, console: Console) -> dict:
    """The piece's musdb mix (vocals, drums, bass, other) through a separator: one WAV per stem, a picture of
    the estimates, SI-SDR and Mel distance of each against its true stem."""
    import torch

    from .audio import SILENCE_RMS, save
    from .metrics.reconstruction import mel_distance, si_sdr
    from .separation.base import Separator, SeparatorError

    if not piece.get("musdb"):
        console.print("[yellow]skipped:[/] this piece was rendered without the musdb stem group")
        return {"skipped": "no musdb stems"}
    try:
        model = Separator.from_pretrained(name)
    except SeparatorError as e:
        console.print(f"[yellow]skipped:[/] {e}")
        return {"skipped": str(e)}
    sub, sr = folder / "musdb", model.sample_rate
    mix = torch.from_numpy(load(sub / piece["mix"], sr, duration=seconds)[0])
    files = piece["musdb"]["stems"]
    missing = [s for s in model.stem_names if s not in files]
    if missing:
        console.print(f"[yellow]skipped:[/] {name} separates {', '.join(missing)}, which the corpus does not render")
        return {"skipped": f"stems {missing} not rendered"}
    true = torch.stack([torch.from_numpy(load(sub / files[s], sr, duration=seconds)[0]) for s in model.stem_names])
    t0 = time.perf_counter()
    est = model.separate(mix)[0]  # (stems, T)
    wall = time.perf_counter() - t0
    n = min(est.shape[-1], true.shape[-1])
    est, true = est[:, :n], true[:, :n]
    png = plot_stems(mix.numpy(), list(est.numpy()), [f"{s} (estimate)" for s in model.stem_names], sr,
                     out / f"{piece['id']}_separated.png", title=f"{piece['id']} separated by {name}")
    table = Table(title=f"{name} on {seconds:.0f} s of {piece['id']} ({seconds / wall:.2g}× real time)")
    for col in ("stem", "SI-SDR (dB) ↑", "Mel distance ↓", "file"):
        table.add_column(col)
    stems = {}
    for k, stem in enumerate(model.stem_names):
        path = save(out / f"{piece['id']}_sep_{stem}.wav", est[k].numpy(), sr)
        silent = float(true[k].pow(2).mean().sqrt()) <= SILENCE_RMS  # SI-SDR is undefined against silence
        stems[stem] = {"si_sdr": None if silent else float(si_sdr(true[k], est[k])),
                       "mel_distance": float(mel_distance(true[k][None], est[k][None], sr)[0]), "file": str(path)}
        table.add_row(stem, "– (silent stem)" if silent else f"{stems[stem]['si_sdr']:.1f}",
                      f"{stems[stem]['mel_distance']:.2f}", path.name)
    console.print(table)
    console.print(f"wrote {png}")
    return {"stems": stems, "realtime_factor": seconds / wall, "figure": str(png)}
