"""The audio tagger learns a planted attribute from log-Mels, and embeds windows of any length."""

import torch

from musictok.metrics.probe import roc_auc
from musictok.nn.tagger import AudioTagger, TaggerConfig
from musictok.train.tagger import TagClips, TaggerTrainConfig, fit_tagger, tagger_auc

SR = 16000


def _clips(n, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SR) / SR
    wavs, labels = [], []
    for i in range(n):
        noise = 0.05 * torch.randn(SR, generator=g)
        f = 300 + 400 * torch.rand(1, generator=g)
        tone = 0.3 * torch.sin(2 * torch.pi * f * t) if i % 2 else 0.0
        wavs.append(noise + tone)
        labels.append([float(i % 2)])
    return torch.stack(wavs), torch.tensor(labels)


def test_tagger_learns_a_planted_tone():
    torch.manual_seed(0)
    model = AudioTagger(TaggerConfig(sample_rate=SR, n_mels=32, stft_window=512, width=16, embed_dim=8, tags=["tone"]))
    wav, y = _clips(16, 0)
    mels = model.log_mel(wav)
    data = TagClips(mels, y, torch.ones_like(y, dtype=torch.bool), [str(i) for i in range(16)])
    fit_tagger(model, data, TaggerTrainConfig([], steps=30, batch=8, lr=5e-3, crop_seconds=0.5), log=lambda s: None)
    test_wav, test_y = _clips(16, 1)
    test = TagClips(model.log_mel(test_wav), test_y, torch.ones_like(test_y, dtype=torch.bool), [])
    assert tagger_auc(model, test)["tone"] > 0.95
    emb = model.embed(test_wav[:, : SR // 3])
    assert emb.shape == (16, 8)
    # the embedding alone separates the classes: its first principal direction ranks them
    centred = emb - emb.mean(0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    auc = roc_auc((centred @ direction).numpy(), test_y[:, 0].numpy())
    assert max(auc, 1 - auc) > 0.9
