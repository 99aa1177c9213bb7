"""VectorQuantizer: EMA arithmetic, k-means init, dead-code restart, straight-through, invariances."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from musictok.quantize import QuantizedResult, VectorQuantizer, VQConfig, code_stats


def _set_codebook(vq: VectorQuantizer, embed: torch.Tensor, cluster_size: torch.Tensor) -> None:
    with torch.no_grad():
        vq.embed.copy_(embed)
        vq.cluster_size.copy_(cluster_size)
        vq.embed_avg.copy_(embed * cluster_size[:, None])
        vq.initted.fill_(True)


def _blobs(centers: torch.Tensor, per_blob: int, std: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    points = centers.repeat_interleave(per_blob, 0)
    return points + std * torch.randn(points.shape, generator=g)


def test_ema_update_by_hand() -> None:
    eps = 1e-5
    vq = VectorQuantizer(
        VQConfig(dim=2, codebook_size=2, decay=0.5, eps=eps, kmeans_init=False, dead_after_steps=0)
    ).train()
    _set_codebook(vq, torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 10.0]])
    result = vq(x)

    assert result.codes.tolist() == [0, 0, 1]
    # Quantized with the codebook *before* the update.
    torch.testing.assert_close(result.z_q, torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]))
    # counts = [2, 1], sums = [[1, 1], [9, 10]]; new = 0.5 * old + 0.5 * batch.
    cluster_size = torch.tensor([0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 1])  # [1.5, 1.0]
    embed_avg = torch.tensor([[0.5 * 0 + 0.5 * 1, 0.5 * 0 + 0.5 * 1],
                              [0.5 * 10 + 0.5 * 9, 0.5 * 10 + 0.5 * 10]])
    total = 2.5
    smoothed = (cluster_size + eps) / (total + 2 * eps) * total
    embed = embed_avg / smoothed[:, None]
    torch.testing.assert_close(vq.cluster_size, cluster_size)
    torch.testing.assert_close(vq.embed_avg, embed_avg)
    torch.testing.assert_close(vq.embed, embed)
    # Rounded to the values one writes down: [1/3, 1/3] and [9.5, 10].
    torch.testing.assert_close(vq.embed, torch.tensor([[1 / 3, 1 / 3], [9.5, 10.0]]), atol=1e-4, rtol=0)
    # Commitment = 0.25 * mean squared distance to the (old) codewords.
    expected_commitment = 0.25 * torch.tensor([1.0, 1.0, 1.0]).sum() / 6
    torch.testing.assert_close(result.losses["commitment"], expected_commitment)
    assert result.losses["codebook"].item() == 0.0
    assert vq.steps_unused.tolist() == [0, 0] and int(vq.step) == 1


def test_eval_mode_does_not_update() -> None:
    vq = VectorQuantizer(VQConfig(dim=2, codebook_size=2, kmeans_init=False)).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(10, 2))
    for key, value in vq.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_dead_code_restart_after_unused_steps() -> None:
    vq = VectorQuantizer(
        VQConfig(dim=2, codebook_size=2, decay=0.9, kmeans_init=False, dead_after_steps=3)
    ).train()
    _set_codebook(vq, torch.tensor([[0.0, 0.0], [100.0, 100.0]]), torch.tensor([1.0, 1.0]))
    g = torch.Generator().manual_seed(0)
    batches = [0.1 * torch.randn(8, 2, generator=g) for _ in range(3)]
    for step, batch in enumerate(batches[:2], start=1):
        vq(batch)
        assert vq.steps_unused.tolist() == [0, step]
        assert vq.embed[1, 0].item() > 99.0  # still far away: not restarted yet
    vq(batches[2])  # third step unused: restart from this batch
    new_code = vq.embed[1]
    assert (batches[2] - new_code).abs().sum(1).min().item() < 1e-6  # exactly one of the batch vectors
    assert vq.steps_unused.tolist() == [0, 0]
    assert vq.cluster_size[1].item() == 1.0
    torch.testing.assert_close(vq.embed_avg[1], new_code)


def test_dead_code_restart_by_ema_threshold() -> None:
    vq = VectorQuantizer(
        VQConfig(dim=2, codebook_size=2, decay=0.5, kmeans_init=False, dead_after_steps=0, threshold_dead=0.5)
    ).train()
    _set_codebook(vq, torch.tensor([[0.0, 0.0], [100.0, 100.0]]), torch.tensor([1.0, 1.0]))
    x = 0.1 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    vq(x)  # cluster size of code 1: 1 -> 0.5, not below the threshold
    assert vq.embed[1, 0].item() > 99.0
    vq(x)  # 0.5 -> 0.25 < 0.5: restarted, its count reset to max(threshold, 1)
    assert (x - vq.embed[1]).abs().sum(1).min().item() < 1e-6
    assert vq.cluster_size[1].item() == 1.0


def test_kmeans_init_finds_well_separated_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centers = 10.0 * torch.randn(6, 8, generator=g)
    x = _blobs(centers, per_blob=50, std=0.1, seed=1)
    x = x[torch.randperm(x.shape[0], generator=g)]
    vq = VectorQuantizer(VQConfig(dim=8, codebook_size=6, kmeans_iters=5, seed=3)).train()
    assert not bool(vq.initted)
    result = vq(x)
    assert bool(vq.initted)
    # Each blob has a codeword at its mean, and each codeword sits on a blob.
    distances = torch.cdist(centers, vq.embed)
    assert distances.min(dim=1).values.max().item() < 0.1
    assert distances.min(dim=0).values.max().item() < 0.1
    assert result.stats["utilization"].item() == 1.0
    torch.testing.assert_close(result.stats["perplexity"], torch.tensor(6.0))
    torch.testing.assert_close(vq.cluster_size.sum(), torch.tensor(300.0))


def test_kmeans_init_is_seeded() -> None:
    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
    a = VectorQuantizer(VQConfig(dim=4, codebook_size=16, seed=7)).train()
    b = VectorQuantizer(VQConfig(dim=4, codebook_size=16, seed=7)).train()
    a(x)
    b(x)
    assert torch.equal(a.embed, b.embed)


@pytest.mark.parametrize("options", [{}, {"codebook_dim": 3}, {"cosine": True}, {"use_ema": False}])
def test_straight_through_gradient(options: dict) -> None:
    vq = VectorQuantizer(VQConfig(dim=6, codebook_size=16, commitment_weight=0.0, **options)).train()
    x = torch.randn(2, 30, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    result = vq(x)
    result.z_q.retain_grad()
    weight = torch.randn(result.z_q.shape, generator=torch.Generator().manual_seed(1))
    (result.z_q * weight).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    if not options:  # no projection, no normalisation: the gradient passes unchanged
        torch.testing.assert_close(x.grad, result.z_q.grad)
        torch.testing.assert_close(x.grad, weight)


def test_commitment_gradient_pulls_input_to_codeword() -> None:
    vq = VectorQuantizer(VQConfig(dim=2, codebook_size=1, kmeans_init=False, dead_after_steps=0)).eval()
    _set_codebook(vq, torch.tensor([[1.0, 2.0]]), torch.tensor([1.0]))
    x = torch.zeros(1, 2, requires_grad=True)
    vq(x).losses["commitment"].backward()
    # d/dx 0.25 * mean((x - e)^2) = 0.25 * 2 (x - e) / 2
    torch.testing.assert_close(x.grad, torch.tensor([[-0.25, -0.5]]))


@pytest.mark.parametrize("options", [{}, {"codebook_dim": 4}, {"cosine": True}])
def test_eval_codes_are_batch_invariant(options: dict) -> None:
    vq = VectorQuantizer(VQConfig(dim=16, codebook_size=64, **options)).train()
    g = torch.Generator().manual_seed(0)
    vq(torch.randn(8, 40, 16, generator=g))  # k-means init + one update
    vq.eval()
    x = torch.randn(5, 300, 16, generator=g)
    batch_codes = vq.encode(x)
    assert batch_codes.shape == (5, 300) and batch_codes.dtype == torch.long
    alone = torch.stack([vq.encode(item) for item in x])
    assert torch.equal(batch_codes, alone)
    assert torch.equal(vq.encode(x[2, 17]), batch_codes[2, 17])  # a single (D,) vector
    result = vq(x)
    assert torch.equal(result.codes, batch_codes)
    torch.testing.assert_close(vq.decode(batch_codes), result.z_q, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.stack([vq(item).z_q for item in x]), result.z_q, atol=0, rtol=0)


def test_low_dim_and_cosine_shapes() -> None:
    config = VQConfig(dim=32, codebook_size=128, codebook_dim=8, cosine=True, use_ema=False)
    vq = VectorQuantizer(config).train()
    x = torch.randn(3, 20, 32, generator=torch.Generator().manual_seed(0))
    result = vq(x)
    assert isinstance(result, QuantizedResult)
    assert result.z_q.shape == (3, 20, 32) and result.codes.shape == (3, 20)
    assert vq.codebook.shape == (128, 8)
    torch.testing.assert_close(vq.codebook.norm(dim=-1), torch.ones(128))
    result.loss.backward()
    assert vq.project_in.weight.grad.abs().sum() > 0  # commitment trains the down-projection
    assert vq.embed.grad.abs().sum() > 0  # codebook loss trains the codewords
    assert vq.decode(result.codes).shape == (3, 20, 32)


def test_gradient_codebook_follows_shifted_inputs() -> None:
    vq = VectorQuantizer(VQConfig(dim=4, codebook_size=8, use_ema=False, dead_after_steps=0)).train()
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    fitted = vq(x).losses["codebook"].item()  # k-means init: the distortion of a fitted codebook
    shift = torch.randn(4, generator=torch.Generator().manual_seed(1))
    shifted = vq(x + shift).losses["codebook"].item()
    optimizer = torch.optim.Adam(vq.parameters(), lr=0.1)
    for _ in range(30):
        loss = vq(x + shift).losses["codebook"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # The codebook loss alone moves the codewords onto the shifted data: back to a fitted distortion.
    assert vq(x + shift).losses["codebook"].item() < fitted + 0.1 * (shifted - fitted)


def test_l2norm_lookup_picks_by_direction_and_passes_the_raw_codeword() -> None:
    """DAC's look-up: the nearest codeword by direction, but the codeword itself (not unit-norm) is the output."""
    vq = VectorQuantizer(VQConfig(dim=2, codebook_size=2, kmeans_init=False, lookup="l2norm", use_ema=False)).eval()
    with torch.no_grad():
        vq.embed.copy_(torch.tensor([[3.0, 3.0], [1.0, 0.0]]))
    x = torch.tensor([[0.9, 0.5]])  # nearer [1, 0] in L2 (0.26 vs 10.66), nearer [3, 3] in direction
    euclid = VectorQuantizer(VQConfig(dim=2, codebook_size=2, kmeans_init=False, use_ema=False)).eval()
    with torch.no_grad():
        euclid.embed.copy_(vq.embed)
    assert euclid.encode(x).tolist() == [1] and vq.encode(x).tolist() == [0]
    torch.testing.assert_close(vq(x).z_q, torch.tensor([[3.0, 3.0]]))  # norm 4.24, not 1


def test_l2norm_kmeans_clusters_directions_and_keeps_their_norms() -> None:
    directions = torch.eye(4) * torch.tensor([1.0, 2.0, 4.0, 8.0])[:, None]  # four directions, four norms
    x = _blobs(directions, 64, 0.05, seed=0)
    vq = VectorQuantizer(VQConfig(dim=4, codebook_size=4, lookup="l2norm", use_ema=False)).train()
    vq(x)
    norms = sorted(vq.codebook.norm(dim=-1).tolist())
    assert norms == pytest.approx([1.0, 2.0, 4.0, 8.0], rel=0.05)
    assert len(set(vq.encode(x).tolist())) == 4


@pytest.mark.parametrize("weight_norm", [False, True])
def test_pca_init_projects_onto_the_principal_subspace(weight_norm: bool) -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16, generator=g))[0][:, :4]  # a 4-d subspace of 16 dims
    mean = torch.randn(16, generator=g)
    x = torch.randn(512, 4, generator=g) * torch.tensor([4.0, 3.0, 2.0, 1.0]) @ basis.T + mean
    vq = VectorQuantizer(VQConfig(dim=16, codebook_size=8, codebook_dim=4, pca_init=True, weight_norm=weight_norm))
    vq.init_from_data(x)
    w_in = vq.project_in.weight.detach()
    torch.testing.assert_close(w_in @ w_in.T, torch.eye(4), atol=1e-4, rtol=0)  # orthonormal rows
    with torch.no_grad():
        round_trip = vq.project_out(vq.project_in(x))
    torch.testing.assert_close(round_trip, x, atol=1e-3, rtol=0)  # the data lie in that subspace
    assert bool(vq.initted) and vq.codebook.shape == (8, 4)
    names = set(vq.state_dict())
    assert ("project_in.parametrizations.weight.original0" in names) == weight_norm


def test_factorised_codes_train_projections_and_codebook_by_loss() -> None:
    config = VQConfig(dim=32, codebook_size=64, codebook_dim=8, lookup="l2norm", use_ema=False, weight_norm=True)
    vq = VectorQuantizer(config).train()
    x = torch.randn(4, 50, 32, generator=torch.Generator().manual_seed(0))
    result = vq(x)
    assert result.z_q.shape == (4, 50, 32) and 0 <= int(result.codes.min()) and int(result.codes.max()) < 64
    assert result.losses["codebook"].item() == pytest.approx(4 * result.losses["commitment"].item())  # 1 vs 0.25
    (result.z_q.pow(2).mean() + result.loss).backward()
    assert vq.embed.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vq.project_in.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in vq.project_out.parameters())


def test_code_stats() -> None:
    codes = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    stats = code_stats(codes, codebook_size=8)
    torch.testing.assert_close(stats["perplexity"], torch.tensor(4.0))
    torch.testing.assert_close(stats["utilization"], torch.tensor(0.5))
    one = code_stats(torch.zeros(10, dtype=torch.long), codebook_size=8)
    torch.testing.assert_close(one["perplexity"], torch.tensor(1.0))


def test_mask_limits_updates_and_losses() -> None:
    vq = VectorQuantizer(
        VQConfig(dim=2, codebook_size=2, decay=0.5, kmeans_init=False, dead_after_steps=0)
    ).train()
    _set_codebook(vq, torch.tensor([[0.0, 0.0], [10.0, 10.0]]), torch.tensor([1.0, 1.0]))
    x = torch.tensor([[1.0, 0.0], [9.0, 10.0], [50.0, 50.0]])
    result = vq(x, mask=torch.tensor([True, True, False]))
    assert result.codes.tolist() == [0, 1, 1]  # masked vectors are still quantized
    torch.testing.assert_close(vq.cluster_size, torch.tensor([1.0, 1.0]))  # 0.5 * 1 + 0.5 * 1 each
    torch.testing.assert_close(result.losses["commitment"], torch.tensor(0.25 * 2 / 4))


def test_user_errors() -> None:
    vq = VectorQuantizer(VQConfig(dim=4, codebook_size=8))
    with pytest.raises(ValueError, match="channels-last"):
        vq(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.decode(torch.tensor([8]))
    with pytest.raises(ValueError, match="decay"):
        VQConfig(dim=4, decay=1.0)
    with pytest.raises(ValueError, match="lookup"):
        VQConfig(dim=4, lookup="manhattan")
    with pytest.raises(ValueError, match="not both"):
        VQConfig(dim=4, codebook_dim=2, cosine=True, lookup="l2norm")
    with pytest.raises(ValueError, match="codebook_dim"):
        VQConfig(dim=4, pca_init=True)


def _ddp_worker(rank: int, world: int, init_file: str, data: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        vq = VectorQuantizer(VQConfig(dim=4, codebook_size=8, kmeans_iters=3, dead_after_steps=1)).train()
        shard = data.chunk(world)[rank]
        vq(shard)  # k-means init (seeds from rank 0) + EMA update
        vq(shard + 0.5)  # EMA update; codes unused in this step are restarted from rank 0's batch
        out[rank] = {k: v.clone() for k, v in vq.state_dict().items()}
    finally:
        dist.destroy_process_group()


def test_distributed_statistics_agree_across_ranks() -> None:
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        manager = mp.Manager()
        out = manager.dict()
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), data, out), nprocs=2, join=True)
        states = dict(out)
    assert set(states) == {0, 1}
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # The counts are global: every vector of both ranks was counted once per step.
    assert int(states[0]["step"]) == 2
