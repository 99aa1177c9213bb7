"""DuoTok's staged trainer on the tiny configs: the four stages chain, freeze what the paper freezes, resume
exactly, and the last export encodes and decodes stems and mixes."""

import dataclasses
from pathlib import Path

import pytest
import torch

from musictok.tokenizers.base import Tokenizer
from musictok.tokenizers.duotok import DuoTok
from musictok.train.config import load_run_config
from musictok.train.duotok import DuoTokTask
from musictok.train.loop import DistInfo, Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SR = 16000


def _config(stage: int, corpus: Path, out: Path, init_from: Path | None = None, **extra):
    over = {"train.out_dir": str(out), "data.valid_split": "train"}
    if stage == 1:
        over |= {"model.sample_rate": SR, "data.sources": [{"path": str(corpus), "weight": 1.0},
                                                           {"path": str(corpus), "weight": 1.0, "stems": True}]}
    else:
        over |= {"data.corpus": str(corpus), "init_from": str(init_from)}
    return load_run_config(CONFIGS / f"duotok-tiny-stage{stage}.yaml", over | extra)


def _train(stage, corpus, out, init_from=None, resume=False, **extra):
    run = _config(stage, corpus, out, init_from, **extra)
    return Trainer(DuoTokTask(run), run.train).run(resume=resume)


def _state(path: Path) -> dict:
    return Tokenizer.from_pretrained(path).state_dict()


def _same(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def stages(tiny_corpus, tmp_path_factory):
    """The four tiny stages, each from the previous export: ``{stage: (export folder, summary)}``."""
    root = tmp_path_factory.mktemp("duotok")
    out, prev = {}, None
    for stage in (1, 2, 3, 4):
        summary = _train(stage, tiny_corpus, root / f"stage{stage}", prev, **{"train.steps": 3})
        prev = root / f"stage{stage}" / "export"
        out[stage] = (prev, summary)
    return out


def test_stages_chain_and_record_their_stage(stages):
    for stage, (export, summary) in stages.items():
        model = Tokenizer.from_pretrained(export)
        assert isinstance(model, DuoTok) and model.config.trained_stage == stage
        assert summary.end_step == 3
    valid = {s: summary.last_valid for s, (_, summary) in stages.items()}
    assert {"best_rq", "accuracy"} <= set(valid[1])
    assert {"mel", "chroma", "mss", "symbolic"} <= set(valid[2])
    assert {"mel", "symbolic", "utilization/lead", "normalized_entropy/accompaniment"} <= set(valid[3])
    assert "mss" not in valid[3]
    assert {"mel_l1/lead", "mel_l1/accompaniment"} <= set(valid[4])
    log = stages[4][1].last_log
    assert {"disc", "adv", "fm"} <= set(log)  # the GAN started at step 2


def test_each_stage_trains_only_what_the_paper_trains(stages):
    s1, s2, s3, s4 = (_state(stages[k][0]) for k in (1, 2, 3, 4))
    assert not _same(s1, s2, "encoder.") and not _same(s1, s2, "heads.mss.")  # stage 2: encoder + heads
    assert _same(s1, s2, "quantizers.") and _same(s1, s2, "decoders.")
    # stage 3: the frozen encoder really receives no update; the MSS head is off
    assert _same(s2, s3, "encoder.") and _same(s2, s3, "heads.mss.")
    assert not _same(s2, s3, "quantizers.0.") and not _same(s2, s3, "quantizers.1.")
    assert not _same(s2, s3, "heads.symbolic.") and _same(s2, s3, "decoders.")
    # stage 4: only the decoders
    for prefix in ("encoder.", "heads.", "quantizers."):
        assert _same(s3, s4, prefix)
    assert not _same(s3, s4, "decoders.0.") and not _same(s3, s4, "decoders.1.")


def test_the_frozen_encoder_is_out_of_the_optimizer(stages, tiny_corpus, tmp_path):
    task = DuoTokTask(_config(3, tiny_corpus, tmp_path / "s3", stages[2][0]))
    task.setup(torch.device("cpu"), DistInfo(), task.run.train)
    in_opt = {id(p) for g in task.opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt or p.requires_grad for p in task.model.encoder.parameters())
    assert not any(id(p) in in_opt for p in task.model.heads.mss.parameters())
    assert all(id(p) in in_opt for p in task.model.quantizers.parameters())


def test_unfrozen_encoder_is_the_ablation(stages, tiny_corpus, tmp_path):
    _train(3, tiny_corpus, tmp_path / "s3", stages[2][0], **{"train.steps": 2, "duotok.freeze_encoder": False})
    assert not _same(_state(stages[2][0]), _state(tmp_path / "s3" / "export"), "encoder.")


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_every_stage_resumes_exactly(stages, tiny_corpus, tmp_path, stage):
    prev = stages[stage - 1][0] if stage > 1 else None
    _train(stage, tiny_corpus, tmp_path / "straight", prev)
    assert _train(stage, tiny_corpus, tmp_path / "split", prev, **{"train.max_minutes": 0.0}).end_step == 1
    _train(stage, tiny_corpus, tmp_path / "split", prev, resume=True)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["modules"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["modules"]
    assert a.keys() == b.keys()
    for module in a:
        for k in a[module]:
            assert torch.equal(a[module][k], b[module][k]), (stage, module, k)


def test_the_last_export_tokenizes_stems_and_mixes(stages):
    model = Tokenizer.from_pretrained(stages[4][0])
    stems = torch.randn(1, 2, SR) * 0.05
    tokens = model.encode(stems)
    assert [s.name for s in tokens.layout.streams] == ["lead", "accompaniment"]
    assert model.decode(tokens).shape == (1, 2, SR)
    assert model.decode(model.encode(stems.sum(1))).shape == (1, 2, SR)


def test_stage_configs_are_checked(stages, tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="trained up to stage 1"):
        DuoTokTask(_config(3, tiny_corpus, tmp_path / "x", stages[1][0]))
    with pytest.raises(ValueError, match="preset"):
        DuoTokTask(_config(2, tiny_corpus, tmp_path / "x", stages[1][0], **{"model.preset": "tiny"}))
    with pytest.raises(ValueError, match="init_from"):
        load_run_config(CONFIGS / "duotok-tiny-stage2.yaml", {"init_from": None})
    with pytest.raises(ValueError, match="stage"):
        load_run_config(CONFIGS / "duotok-tiny-stage2.yaml", {"stage": 5})
    with pytest.raises(ValueError, match="noise_prob"):
        DuoTokTask(_config(2, tiny_corpus, tmp_path / "x", stages[1][0], **{"duotok.noise_prob": 2.0}))
    with pytest.raises(ValueError, match="vocoder"):
        DuoTokTask(_config(2, tiny_corpus, tmp_path / "x", stages[1][0], **{"duotok.vocoder": "vocoder-small"}))


def test_cli_refuses_a_bad_init_from(tmp_path):
    from typer.testing import CliRunner

    from musictok.cli import app

    res = CliRunner().invoke(app, ["train", "tokenizer", "--config", str(CONFIGS / "duotok-tiny-stage2.yaml"),
                                   "--init-from", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "stage2.yaml: init_from: " in str(res.exception)
    assert "no such model folder" in str(res.exception)
    res = CliRunner().invoke(app, ["train", "lm", "--config", str(CONFIGS / "duotok-tiny-stage1.yaml")])
    assert res.exit_code != 0 and "use `musictok train tokenizer`" in str(res.exception)


def test_cli_set_overrides_a_key(stages, tmp_path):
    from typer.testing import CliRunner

    from musictok.cli import app

    base = ["train", "tokenizer", "--config", str(CONFIGS / "duotok-tiny-stage2.yaml"), "--init-from",
            str(stages[1][0]), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(app, base + ["--set", "duotok.noise_prob=2"])
    assert res.exit_code != 0 and "duotok.noise_prob: must be in 0..1, got 2" in str(res.exception)
    res = CliRunner().invoke(app, base + ["--set", "duotok.noise_prob"])
    assert res.exit_code != 0 and "section.key=value" in str(res.exception)


def test_stage_4_may_switch_to_the_flow_decoder(stages, tiny_corpus, tmp_path):
    summary = _train(4, tiny_corpus, tmp_path / "flow", stages[3][0],
                     **{"train.steps": 2, "model.decoder": "flow", "model.flow_steps": 2})
    assert {"flow/lead", "mel_l1/lead"} <= set(summary.last_valid)
    model = Tokenizer.from_pretrained(tmp_path / "flow" / "export")
    assert model.config.decoder == "flow" and model.config.trained_stage == 4
    assert model.decode(model.encode(torch.randn(1, 2, SR) * 0.05)).shape == (1, 2, SR)
    with pytest.raises(ValueError, match="do not fit"):
        _train(3, tiny_corpus, tmp_path / "bad", stages[2][0], **{"model.dim": 48})


def test_stage_2_takes_the_papers_four_kinds_of_sample():
    from musictok.train.duotok import DuoTokStage

    opts = DuoTokStage(views={"mix": 4, "lead": 1, "accompaniment": 1, "accompaniment_only": 1})
    assert opts.view_weights == (4.0, 1.0, 1.0, 1.0)
    assert DuoTokStage().view_weights == (4.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="accompaniment_only"):
        DuoTokStage(views={"vocals": 1})
    run = load_run_config(CONFIGS / "duotok-small-stage2.yaml")
    assert DuoTokStage(**run.duotok).view_weights == (4.0, 1.0, 1.0, 1.0)  # the paper's 4:1:1:1


def test_symbolic_pos_weight_from_the_note_density(stages, tiny_corpus):
    import json

    import numpy as np

    from musictok.data.score import DuoScoreClips
    from musictok.train.duotok import DuoTokStage, symbolic_pos_weight

    density = np.array([[0.01, 1e-4], [0.04, 0.0]])  # (lead, accompaniment) x (roll, onset)
    torch.testing.assert_close(symbolic_pos_weight(density, "balanced"),
                               torch.tensor([[99.0, 9999.0], [24.0, 1.0]]))  # a target never seen: weight 1
    torch.testing.assert_close(symbolic_pos_weight(density, "sqrt"),
                               torch.tensor([[99.0, 9999.0], [24.0, 1.0]]).sqrt())
    assert torch.equal(symbolic_pos_weight(density, 2.5), torch.full((2, 2), 2.5))
    with pytest.raises(ValueError, match="symbolic_pos_weight"):
        DuoTokStage(symbolic_pos_weight="auto")
    with pytest.raises(ValueError, match="symbolic_pos_weight"):
        DuoTokStage(symbolic_pos_weight=0.0)
    # the density counts the score's notes: one onset cell per note (distinct key and frame)
    ds = DuoScoreClips(tiny_corpus, "train", 1.0, SR, hop_length=256, time_downsample=4, length=1)
    d = ds.note_density()
    assert 0 < d[0, 1] < d[0, 0] < 0.1 and 0 < d[1, 1] < d[1, 0] < 0.2  # sparse; onsets sparser than rolls
    hop = 256 / SR
    cells = sum(88 * max(int(p["duration_seconds"] / hop), 1) for p in ds.clips.index.pieces)
    notes = sum(len({(int(n[0]), int(np.floor(n[1] / hop + 0.5))) for n in ds.score(p["id"])[0]})
                for p in ds.clips.index.pieces)
    assert d[0, 1] * cells == pytest.approx(notes)
    # stage 2 weighed the head's notes by the default, recorded in its export beside the density
    cfg = json.loads((stages[2][0] / "config.json").read_text())
    torch.testing.assert_close(torch.tensor(cfg["symbolic_pos_weight"]),
                               symbolic_pos_weight(np.array(cfg["note_density"]), "sqrt"))


def test_stage_3_may_pick_another_codebook_size(stages, tiny_corpus, tmp_path):
    """The quantizers first train in stage 3, so a variant with another codebook shares stages 1-2: the
    encoder is stage 2's bit for bit, the codebooks have the new size; a stage-3 export keeps its own size."""
    _train(3, tiny_corpus, tmp_path / "k16", stages[2][0], **{"train.steps": 2, "model.codebook_size": 16})
    model = Tokenizer.from_pretrained(tmp_path / "k16" / "export")
    assert model.config.codebook_size == 16 and model.layout.streams[0].codebook_sizes == (16,)
    assert _same(_state(stages[2][0]), model.state_dict(), "encoder.")
    assert int(model.encode(torch.randn(1, 2, SR) * 0.05).codes[0].max()) < 16
    with pytest.raises(ValueError, match="do not fit"):  # trained quantizers are not thrown away
        _train(3, tiny_corpus, tmp_path / "again", stages[3][0], **{"model.codebook_size": 16})


def test_small_4096_variant_follows_the_small_recipe():
    base = {n: load_run_config(CONFIGS / f"duotok-small-stage{n}.yaml") for n in (3, 4)}
    var = {n: load_run_config(CONFIGS / f"duotok-small-4096-stage{n}.yaml") for n in (3, 4)}
    assert var[3].model == {"codebook_size": 4096} and var[3].init_from == base[3].init_from
    assert var[4].init_from == "runs/duotok-small-4096-stage3/export"
    for n in (3, 4):  # everything but the codebook and the folders is the small recipe's
        assert var[n].duotok == base[n].duotok and var[n].gan == base[n].gan and var[n].data == base[n].data
        assert dataclasses.replace(var[n].train, out_dir="") == dataclasses.replace(base[n].train, out_dir="")
