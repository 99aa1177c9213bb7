"""benchmarks/matched_decoder.py on tiny models and the tiny corpus: a two-track tokenizer (DuoTok) and a
single-stream one run on each stem (BandTok) decoded by one TrackDecoder recipe under one budget. Rows, shapes
and intervals; a stopped training resumed to the weights of a straight one; a rerun that skips; one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musictok.nn.vocoder import Vocoder, VocoderConfig, save_vocoder
from musictok.spectral import MelConfig
from musictok.tokenizers.bandtok import BandTokConfig
from musictok.tokenizers.base import Tokenizer
from musictok.tokenizers.duotok import DuoTokConfig
from musictok.tokenizers.rvq_codec import RVQCodec, RVQCodecConfig

SR = 16000
STEPS = 3


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("matched_decoder")


@pytest.fixture(scope="module")
def models(tmp_path_factory, dual_tokenizers):
    """Tiny DuoTok and BandTok (15.625 token frames/s at 16 kHz), a tiny RVQ codec at 62.5 frames/s, and a
    tiny vocoder on the tokenizers' Mel (hop 256: 62.5 Mel frames/s = 4 per token frame)."""
    root = tmp_path_factory.mktemp("matched-models")
    for name in ("duo", "band"):
        (root / name).symlink_to(dual_tokenizers / name)
    torch.manual_seed(0)
    RVQCodec(RVQCodecConfig.tiny()).save_pretrained(root / "rvq")
    mel = MelConfig(sample_rate=SR, n_fft=1024, hop_length=256, win_length=1024, n_mels=32)
    save_vocoder(Vocoder(VocoderConfig.tiny(mel=mel)), root / "vocoder")
    return root


def _args(models, corpus, work, out, *extra):
    return ["--tokenizers", f"{models / 'duo'},{models / 'band'}", "--corpus", str(corpus),
            "--vocoder", str(models / "vocoder"), "--steps", str(STEPS), "--batch", "2", "--clip-seconds", "1.0",
            "--warmup", "1", "--train-pieces", "1", "--decoder", "tiny", "--split", "train", "--clips", "2",
            "--seconds", "2.0", "--resamples", "100", "--work", str(work), "--cache-dir", str(work.parent / "cache"),
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def runs(bench, models, tiny_corpus, tmp_path_factory):
    """First sitting stopped after one step (``--max-minutes 0``), then resumed to the end, then rerun."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every test runs (conftest): the straight run compared with it runs so too
    tmp = tmp_path_factory.mktemp("matched")
    work, out = tmp / "work", tmp / "results" / "matched-decoder"
    stopped = bench.main(_args(models, tiny_corpus, work, out, "--max-minutes", "0"))
    assert stopped is None and not Path(f"{out}.json").exists()  # nothing reported before every decoder finished
    first = bench.main(_args(models, tiny_corpus, work, out))
    sittings = {n: json.loads((Path(r["run_dir"]) / "sittings.json").read_text())
                for n, r in first["tokenizers"].items()}
    rerun = bench.main(_args(models, tiny_corpus, work, out))
    torch.set_num_threads(threads)
    return {"tmp": tmp, "work": work, "out": out, "first": first, "sittings": sittings, "rerun": rerun}


def test_rows_intervals_and_the_floor(runs, models):
    written = json.loads(Path(f"{runs['out']}.json").read_text())
    assert written["date"] and written["machine"] and written["metrics_version"]  # provenance() stamped
    assert set(written["tokenizers"]) == {"duo", "band"}
    assert set(written["floor"]) == {"lead", "accompaniment"}
    summaries = [written["floor"][t] for t in ("lead", "accompaniment")]
    for row in written["tokenizers"].values():
        for kind in ("matched", "own"):
            assert set(row[kind]) == {"lead", "accompaniment"}
            summaries += row[kind].values()
    for s in summaries:
        assert s["clips"] == len(s["per_clip"]) == 2
        assert s["mel_distance"] == pytest.approx(np.mean(s["per_clip"]))
        lo, hi = s["interval"]
        assert 0 < lo <= s["mel_distance"] <= hi
    d = written["paired"]["duo − band"]["lead"]
    per = np.subtract(written["tokenizers"]["duo"]["matched"]["lead"]["per_clip"],
                      written["tokenizers"]["band"]["matched"]["lead"]["per_clip"])
    assert d["per_clip"] == pytest.approx(per.tolist()) and d["interval"][0] <= d["mel_distance"] <= d["interval"][1]
    duo, band = written["tokenizers"]["duo"]["codewords"], written["tokenizers"]["band"]["codewords"]
    assert duo["streams"] == 2 and duo["in_dim"] == DuoTokConfig.tiny().codebook_dim
    assert band["streams"] == 1 and band["slots"] == BandTokConfig.tiny().bands
    md = Path(f"{runs['out']}.md").read_text()
    assert "| vocoder on the true Mel (floor) |" in md and "| duo: matched decoder |" in md
    assert "| band: own decoder |" in md and "## Reading" in md and written["reading"] in md
    assert Path(f"{runs['out']}.png").stat().st_size > 0


def test_every_tokenizer_gets_the_same_budget(runs):
    rows = runs["first"]["tokenizers"]
    held = ("steps", "batch_size", "clip_seconds", "lr", "seed", "amp")
    budgets = [{k: v for k, v in r["budget"].items() if k in held} for r in rows.values()]
    assert budgets[0] == budgets[1] == {"steps": STEPS, "batch_size": 2, "clip_seconds": 1.0, "lr": 3e-4, "seed": 0,
                                        "amp": "none"}
    for r in rows.values():
        assert r["budget"]["seconds_per_step"] > 0 and r["budget"]["sittings"] == 2
        recipe = json.loads((Path(r["run_dir"]) / "recipe.json").read_text())
        # the recipe, plus what the decoder learns from and towards: the corpus and the vocoder
        assert recipe == runs["first"]["recipe"] | {"corpus": recipe["corpus"], "vocoder": recipe["vocoder"]}
        assert recipe["vocoder"] == runs["first"]["vocoder"]["fingerprint"] and Path(recipe["corpus"]).is_dir()


def test_a_stopped_training_resumes_to_the_straight_runs_weights(runs, bench, models, tiny_corpus):
    for sittings in runs["sittings"].values():  # stopped after step 1, resumed from it
        assert [(s["start_step"], s["end_step"]) for s in sittings] == [(0, 1), (1, STEPS)]
    work = runs["tmp"] / "straight"
    args = _args(models, tiny_corpus, work, runs["tmp"] / "straight-out")
    args[1] = str(models / "duo")
    straight = bench.main(args)
    a = load_file(str(Path(runs["first"]["tokenizers"]["duo"]["run_dir"]) / "export" / "model.safetensors"))
    b = load_file(str(Path(straight["tokenizers"]["duo"]["run_dir"]) / "export" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)


def test_a_rerun_skips_training_and_reuses_scores(runs):
    first, rerun = runs["first"], runs["rerun"]
    for name, r in rerun["tokenizers"].items():
        assert json.loads((Path(r["run_dir"]) / "sittings.json").read_text()) == runs["sittings"][name]
        assert r["matched"] == first["tokenizers"][name]["matched"] and r["own"] == first["tokenizers"][name]["own"]


def test_shapes_of_codewords_and_decoded_mel(bench, models):
    vocoder = bench.load_vocoder(models / "vocoder")
    recipe = bench.Recipe(decoder="tiny")
    for name, slots in (("duo", 1), ("band", BandTokConfig.tiny().bands)):
        tok = Tokenizer.from_pretrained(models / name)
        codes = torch.randint(0, 64, (3, 2, 5, slots))
        e = bench.codewords(tok, codes)
        dim = bench.codeword_dim(tok)
        assert e.shape == (6, 5, dim)
        per_slot = tok.code_embeddings(tok.encode(torch.zeros(1, tok.hop_samples) if slots > 1 else
                                                  torch.zeros(1, 2, tok.hop_samples)))[0].shape[-1]
        assert dim == slots * per_slot  # the slots' codewords concatenated
        decoder = bench.TrackDecoder(dim, bench.decoder_config(recipe, vocoder))
        assert decoder(e).shape == (6, vocoder.config.mel.n_mels, 5 * bench.MEL_PER_FRAME)
        if slots > 1:  # row 2n + k is stem k of item n, encoded on its own
            assert torch.equal(e[3], bench.codewords(tok, codes[1:2, 1:2].repeat(1, 2, 1, 1))[0])


def test_windows_are_the_same_for_every_tokenizer_and_aligned(bench, models):
    hop, frames = 1024, 3
    lengths = [10 * hop + 100, 4 * hop]
    stems = [np.tile(np.arange(n, dtype=np.float32), (2, 1)) for n in lengths]  # sample index as the signal
    pieces = bench.TrainPieces(["a", "b"], [], lengths, hop)
    for s in stems:
        f = -(-s.shape[1] // hop)
        pieces.stems.append(np.pad(s, ((0, 0), (hop, (f + 1) * hop - s.shape[1]))))
    codes_a = [torch.arange(f).repeat(2, 1)[..., None] for f in pieces.frames]  # code = frame index
    codes_b = [c.repeat(1, 1, 8) for c in codes_a]
    wa = bench.Windows(pieces, codes_a, [[1.0, 1.0]] * 2, frames, seed=3, length=50)
    wb = bench.Windows(pieces, codes_b, [[2.0, 2.0]] * 2, frames, seed=3, length=50)
    for i in range(50):
        a, b = wa[i], wb[i]
        assert torch.equal(a["stems"], b["stems"]) and torch.equal(a["codes"][..., 0], b["codes"][..., 0])
        f = int(a["codes"][0, 0, 0])
        assert a["codes"][0, :, 0].tolist() == list(range(f, f + frames))
        assert float(a["stems"][0, hop]) == f * hop  # the window's first sample after the margin
    vocoder = bench.load_vocoder(models / "vocoder")  # the margin gives the window's Mel its real context
    wav = torch.randn(1, 12 * hop)
    whole = bench.normalised_mel(vocoder, wav, 0, 48)
    window = bench.normalised_mel(vocoder, wav[:, 4 * hop: (4 + frames + 2) * hop], 4, 4 * frames)
    assert torch.allclose(window, whole[..., 4 * 5: 4 * (5 + frames)], atol=1e-4)


@pytest.mark.parametrize("breakage, message", [("name", "no-such-tokenizer: no such model folder"),
                                               ("corpus", "no corpus here"),
                                               ("rate", "62.5 token frames/s, the decoder needs"),
                                               ("recipe", "was trained with another recipe (steps 3 -> 4")])
def test_an_unusable_input_is_a_one_line_error(bench, models, tiny_corpus, runs, tmp_path, capsys, breakage, message):
    args = _args(models, tiny_corpus, runs["work"], tmp_path / "out")
    if breakage == "name":
        args[1] = "no-such-tokenizer"
    elif breakage == "corpus":
        args[args.index("--corpus") + 1] = str(tmp_path / "nowhere")
    elif breakage == "rate":
        args[1] = f"{models / 'duo'},{models / 'rvq'}"
    else:
        args[args.index("--steps") + 1] = "4"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.json").exists()
