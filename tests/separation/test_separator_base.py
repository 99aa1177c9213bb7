"""The Separator contract: windows of long inputs, stem order and count, sum to the mixture, persistence."""

import pytest
import torch

from musictok.separation import MaskSeparator, MaskSeparatorConfig, Separator, SeparatorError, iter_windows
from musictok.train.separator import SeparatorTask
from musictok.train.config import load_run_config
from musictok.train.loop import DistInfo

from sep_helpers import CONFIGS, SR


@pytest.mark.parametrize("length", [5, 100, 1000, 1003])
def test_windows_tile_the_input_whatever_the_blocks(length):
    x = torch.arange(length, dtype=torch.float32)[None]
    hop, chunk, ctx = 4, 10, 3
    whole = list(iter_windows([x], hop, chunk, ctx))
    sizes = [7, 1, 50, 3] * 100
    blocks, start = [], 0
    for n in sizes:
        if start >= length:
            break
        blocks.append(x[:, start: start + n])
        start += n
    streamed = list(iter_windows(iter(blocks), hop, chunk, ctx))
    assert len(whole) == len(streamed)
    kept = []
    for a, b in zip(whole, streamed):
        assert torch.equal(a.audio, b.audio) and (a.keep_start, a.keep_stop) == (b.keep_start, b.keep_stop)
        assert a.audio.shape[-1] <= (chunk + 2 * ctx) * hop and a.audio.shape[-1] % hop == 0
        kept.append(a.audio[..., a.keep_start: a.keep_stop])
    assert torch.equal(torch.cat(kept, dim=-1), x)  # every sample once, in order


def test_long_file_in_chunks_equals_whole_file_away_from_seams():
    torch.manual_seed(0)
    sep = MaskSeparator(MaskSeparatorConfig.tiny(sample_rate=SR)).eval()
    for p in sep.parameters():  # a random model with larger weights mixes more context than an untrained one
        p.data.normal_(0, 0.3)
    mix = torch.randn(1, 3 * SR) * 0.1
    whole = sep.separate(mix, chunk_units=10_000)  # one window
    chunked = sep.separate(mix, chunk_units=40)  # 40 × 128 samples per chunk: nine chunks
    assert chunked.shape == whole.shape == (1, 4, 3 * SR)
    seams = torch.arange(40, 3 * SR // 128, 40) * 128
    away = torch.ones(3 * SR, dtype=torch.bool)
    for s in seams:
        away[max(int(s) - 256, 0): int(s) + 256] = False
    assert torch.allclose(chunked[..., away], whole[..., away], atol=1e-5)
    assert torch.allclose(chunked, whole, atol=1e-4)  # the context covers the receptive field: seams too


def test_stems_in_the_requested_order_and_count_and_sum_to_the_mix():
    torch.manual_seed(1)
    mix = torch.randn(2, SR) * 0.1
    for stems in (("drums", "bass", "other", "vocals"), ("accompaniment", "lead")):
        sep = MaskSeparator(MaskSeparatorConfig.tiny(sample_rate=SR, stems=stems))
        out = sep.separate(mix)
        assert sep.stem_names == list(stems) and out.shape == (2, len(stems), SR)
        assert float((out.sum(1) - mix).abs().max()) < 1e-5  # softmax masks: Σ stems = mix by construction
    with pytest.raises(ValueError, match="distinct"):
        MaskSeparatorConfig(stems=("vocals", "vocals"))


def test_training_batches_follow_the_separator_order(tiny_corpus):
    run = load_run_config(CONFIGS / "sep-mask-tiny.yaml", {
        "data.corpus": str(tiny_corpus), "data.valid_split": "train", "model.sample_rate": SR,
        "model.stems": ["other", "vocals", "drums", "bass"]})
    task = SeparatorTask(run)
    task.setup(torch.device("cpu"), DistInfo(), run.train)
    item = task.train_dataset(4)[0]
    batch = {"mix": item["mix"][None], "stems": item["stems"][None]}
    mix, stems = task._stems(batch)
    names = task.train_dataset(4).stem_names  # the corpus order: vocals, bass, other, drums
    for i, name in enumerate(task.model.stem_names):
        assert torch.equal(stems[0, i], item["stems"][names.index(name)])
    assert torch.allclose(stems.sum(1), mix, atol=1e-5)  # exact stems
    with pytest.raises(ValueError, match="stem group"):
        SeparatorTask(load_run_config(CONFIGS / "sep-mask-tiny.yaml", {"model.stems": ["vocals", "lead"]}))


def test_save_and_load(tmp_path, tiny_tokenizer):
    torch.manual_seed(2)
    sep = MaskSeparator(MaskSeparatorConfig.tiny(sample_rate=SR))
    sep.save_pretrained(tmp_path / "mask")
    again = Separator.from_pretrained(tmp_path / "mask")
    mix = torch.randn(1, SR // 2) * 0.1
    assert isinstance(again, MaskSeparator) and torch.equal(again.separate(mix), sep.separate(mix))
    with pytest.raises(SeparatorError, match="a tokenizer, not a separator"):
        Separator.from_pretrained(tiny_tokenizer)
    with pytest.raises(SeparatorError, match="no such model"):
        Separator.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(SeparatorError, match="takes no options"):
        sep.separate(mix, temperature=1.0)


def test_lm_separator_decays_what_the_lm_trainer_decays(tiny_corpus, tiny_tokenizer):
    """Weight decay on matrices and tables, not on norms or the TokenLM's per-column gains (which start
    at 1: decaying them pulls the band embeddings towards 0), as TokenLM.optimizer_groups does."""
    run = load_run_config(CONFIGS / "sep-lm-tiny.yaml", {
        "data.corpus": str(tiny_corpus), "data.valid_split": "train", "model.tokenizer": str(tiny_tokenizer),
        "train.weight_decay": 0.1})
    task = SeparatorTask(run)
    task.setup(torch.device("cpu"), DistInfo(), run.train)
    decay, no_decay = task.opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    gains = [p for n, p in task.model.named_parameters() if n.endswith("_gain")]
    assert gains and all(any(p is q for q in no_decay["params"]) for p in gains)
    assert any(p is task.model.stem_embedding.weight for p in decay["params"])
