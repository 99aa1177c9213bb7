"""Token LM training, scoring and generation end to end, on a tiny tokenizer and corpus."""

import pytest
import torch

from musictok.evaluate import evaluate_lm
from musictok.generate import generate
from musictok.tokenizers.bandtok import BandTok, BandTokConfig
from musictok.train.config import DataConfig, RunConfig
from musictok.train.lm import LMTask, TokenWindows, load_lm, token_cache
from musictok.train.loop import TrainConfig, Trainer


def test_train_score_generate(tiny_corpus, tmp_path):
    torch.manual_seed(0)
    tok = BandTok(BandTokConfig.tiny(sample_rate=16000))
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)
    tok.save_pretrained(tmp_path / "tok")
    run = RunConfig(kind="lm", model={"preset": "tiny", "rope": "2d"},
                    lm={"tokenizer": str(tmp_path / "tok"), "pattern": "band-grid", "context_seconds": 1.0,
                        "cache_dir": str(tmp_path / "cache"), "valid_windows": 4},
                    data=DataConfig(corpus=str(tiny_corpus), valid_split="train"),
                    train=TrainConfig(out_dir=str(tmp_path / "lm"), steps=3, batch_size=2, warmup_steps=1,
                                      log_every=1, ckpt_every=100, valid_every=100))
    summary = Trainer(LMTask(run), run.train).run()
    assert summary.end_step == 3 and summary.last_valid["bits_per_token"] > 0
    loaded = load_lm(tmp_path / "lm" / "export")
    assert loaded.meta["pattern"] == "band-grid" and loaded.model.config.rope == "2d"

    result = evaluate_lm(tmp_path / "lm" / "export", tiny_corpus, "train", max_windows=4,
                         cache_dir=tmp_path / "cache")
    assert 0 < result["lm"]["cnbpt"] < 2 and result["unigram_baseline"]["bpt"] > 0
    assert len(result["loss_by_position_bits"]) == loaded.pattern.num_steps

    wav = torch.randn(16000 * 2) * 0.05
    g = generate(tmp_path / "lm" / "export", prompt=wav, prompt_seconds=0.5, seconds=2.5, temperature=0.0)
    frames = g.tokens.codes[0].shape[1]
    assert g.wav.shape[0] == g.tokens.lengths[0] and frames == 40  # 2.5 s at 15.625 frames/s, past the context
    prompt_codes = tok.encode(wav[:8000]).codes[0]
    assert torch.equal(g.tokens.codes[0][:, : prompt_codes.shape[1]], prompt_codes)  # the prompt is kept
    again = generate(tmp_path / "lm" / "export", prompt=wav, prompt_seconds=0.5, seconds=2.5, temperature=0.0,
                     use_cache=False)
    assert torch.equal(again.tokens.codes[0], g.tokens.codes[0])

    # batch generation (evaluation): sequence b of a batch is the sequence seed + b gives alone
    prompts = torch.stack([wav, torch.randn(16000 * 2) * 0.05, wav])
    together = generate(loaded, prompt=prompts, prompt_seconds=0.5, seconds=2.5, temperature=1.0, seed=7)
    assert together.wav.shape == (3, together.tokens.lengths[0]) and together.tokens.batch_size == 3
    alone = [generate(loaded, prompt=prompts[b], prompt_seconds=0.5, seconds=2.5, temperature=1.0, seed=7 + b)
             for b in range(3)]
    for b, one in enumerate(alone):
        assert torch.equal(together.tokens.codes[0][b], one.tokens.codes[0][0])
    assert not torch.equal(alone[0].tokens.codes[0], alone[2].tokens.codes[0])  # same prompt, own draws
    assert together.generated_tokens == sum(one.generated_tokens for one in alone)
    more = generate(loaded, prompt=wav, prompt_seconds=0.5, seconds=2.5, temperature=1.0, seed=7, batch=3)
    assert torch.equal(more.tokens.codes[0][0], alone[0].tokens.codes[0][0])  # one prompt, three continuations


def test_windows_are_deterministic(tiny_corpus, tmp_path):
    tok = BandTok(BandTokConfig.tiny(sample_rate=16000))
    tokens = token_cache(tok, tiny_corpus, "train", tmp_path)
    a = TokenWindows(tokens, 16, random=True, seed=1, length=10)
    b = TokenWindows(token_cache(tok, tiny_corpus, "train", tmp_path), 16, random=True, seed=1, length=10)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(10))
    grid = TokenWindows(tokens, 16, random=False, max_windows=5)
    assert len(grid) == 5 and grid[0][0].shape == (16, 4)
    # two sources weighted 3 : 1 share the windows 3 : 1, whatever their lengths; pieces within a source by length
    mixed = TokenWindows(tokens, 16, random=True, length=10, groups=[0, 1, 1], group_weights=[3.0, 1.0])
    assert mixed.p[0] == pytest.approx(0.75) and mixed.p[1] / mixed.p[2] == pytest.approx(a.p[1] / a.p[2])


def test_multi_rate_windows_and_coarse_to_fine_lm(tiny_corpus, tmp_path):
    """PyramidCodec's three streams at 1×, 2×, 4× the coarsest rate: windows cover the same span in every
    stream, and an LM trains and is scored on them with the coarse-to-fine pattern, stream by stream."""
    from musictok.tokenizers.pyramid import PyramidCodec, PyramidCodecConfig

    tok = PyramidCodec(PyramidCodecConfig.tiny())
    tok.train()
    tok.forward_train(torch.randn(2, 16384) * 0.1)
    tok.save_pretrained(tmp_path / "tok")
    windows = TokenWindows(token_cache(tok, tiny_corpus, "train", tmp_path / "cache"), 8, random=True, length=4)
    assert [w.shape for w in windows[0]] == [(8, 1), (16, 2), (32, 2)]
    batch = TokenWindows.collate([windows[i] for i in range(3)])
    assert [b.shape[0] for b in batch] == [3, 3, 3]
    run = RunConfig(kind="lm", model={"preset": "tiny"},
                    lm={"tokenizer": str(tmp_path / "tok"), "pattern": "coarse-to-fine", "context_seconds": 1.0,
                        "cache_dir": str(tmp_path / "cache"), "valid_windows": 4},
                    data=DataConfig(corpus=str(tiny_corpus), valid_split="train"),
                    train=TrainConfig(out_dir=str(tmp_path / "lm"), steps=2, batch_size=2, warmup_steps=1,
                                      log_every=1, ckpt_every=100, valid_every=100))
    Trainer(LMTask(run), run.train).run()
    result = evaluate_lm(tmp_path / "lm" / "export", tiny_corpus, "train", max_windows=4, cache_dir=tmp_path / "cache")
    assert set(result["lm"]["streams"]) == {"level1", "level2", "level3"}
    assert result["lm"]["tokens_per_second"] == tok.layout.tokens_per_second
    wav = torch.randn(16000 * 3) * 0.05
    g = generate(tmp_path / "lm" / "export", prompt=wav, prompt_seconds=1.024, seconds=2.5, temperature=1.0, seed=3)
    prompt = tok.encode(wav[:16384]).codes
    for s, ratio in enumerate((1, 2, 4)):  # every stream keeps the prompt's cells
        n = prompt[0].shape[1] * ratio
        assert torch.equal(g.tokens.codes[s][:, :n], prompt[s][:, :n])
    assert g.generated_tokens > 0 and g.wav.shape[0] == g.tokens.lengths[0]
    again = generate(tmp_path / "lm" / "export", prompt=wav, prompt_seconds=1.024, seconds=2.5, temperature=1.0,
                     seed=3, use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(again.tokens.codes, g.tokens.codes))
