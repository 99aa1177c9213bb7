"""The long-form protocol end to end on a tiny LM: Fréchet curves along the piece beside their floor, and the
structure of generated and real pieces."""

import torch

from musictok.longform import LongFormConfig, markdown_summary, run_long_form
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.train.config import DataConfig, RunConfig
from musictok.train.lm import LMTask
from musictok.train.loop import TrainConfig, Trainer


def test_long_form_smoke(tiny_corpus, tmp_path):
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=16000))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)
    tok.save_pretrained(tmp_path / "tok")
    run = RunConfig(kind="lm", model={"preset": "tiny", "rope": "2d"},
                    lm={"tokenizer": str(tmp_path / "tok"), "pattern": "band-grid", "context_seconds": 1.0,
                        "cache_dir": str(tmp_path / "cache"), "valid_windows": 2},
                    data=DataConfig(corpus=str(tiny_corpus), valid_split="train"),
                    train=TrainConfig(out_dir=str(tmp_path / "lm"), steps=2, batch_size=2, warmup_steps=1,
                                      log_every=1, ckpt_every=100, valid_every=100))
    Trainer(LMTask(run), run.train).run()
    cfg = LongFormConfig.smoke(corpus=str(tiny_corpus), split="train", continuation_seconds=2.0, long_seconds=3.0)
    res = run_long_form({"grid": str(tmp_path / "lm" / "export")}, cfg, log=lambda s: None)
    row = res["lms"]["grid"]
    assert [w["start"] for w in row["continuation"]["along"]] == [1.0]
    assert [w["start"] for w in row["long"]["along"]] == [1.0, 2.0]
    for w in row["long"]["along"]:
        assert w["mel"]["ci"][0] <= w["mel"]["value"] <= w["mel"]["ci"][1]
    floor = res["floor"]["16000"]
    assert [w["start"] for w in floor["along"]] == [1.0] and len(floor["structure"]) == 3  # the 3 real pieces
    assert len(row["long"]["structure"][0]["lag_profile"]) == 4  # 1 s of lags in 0.25-s segments
    page = markdown_summary(res, {})
    assert "| grid | band-grid | long | 2–3 s |" in page
