"""Data-parallel training: sharding without duplicates, synchronised BN, and 2-process gloo DDP equal to
single-process training on the same global batch."""

from __future__ import annotations

import csv
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from engine_helpers import NUM_CLASSES, ColourBlocks, tiny_config, tiny_meta
from torch import nn

from fusionseg.engine import distributed
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.engine.metrics import ConfusionMatrix
from fusionseg.engine.sampling import StepBatchSampler
from fusionseg.engine.trainer import Trainer
from fusionseg.errors import ConfigError
from fusionseg.models.output import ExpertOutput

WORLD = 2
PER_RANK_BATCH = 2
STEPS = 4
# Tolerance of the 2-process vs single-process comparison (per element: |a - b| <= ATOL + RTOL * |b|).
# Both runs compute the same gradients up to float32 summation order (the all-reduce adds two half-batch
# sums; SyncBN statistics come from two partial sums): measured differences after 4 Adam steps are
# <= 1.3e-7 on weights and ~1e-8 relative on BN running variances (which are ~1e3 for 0-255 input).
# Without SyncBN the weights differ by up to ~1e2, so 1e-5 separates right from wrong by orders of
# magnitude. The model has no bias in front of a BN (its exact gradient is 0, so Adam would turn rounding
# noise into +-lr steps there) and no dropout (masks cannot match across process counts).
ATOL = RTOL = 1e-5


class DDPNet(nn.Module):
    """Conv-BN-ReLU x 2, a classifier and two aux heads; no dropout, no bias before BN."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(3),
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(8, NUM_CLASSES, 1)
        self.aux_heads = nn.ModuleList([nn.Conv2d(8, NUM_CLASSES, 1) for _ in range(2)])

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> ExpertOutput:
        feats = self.body(inputs["rgb"])
        aux = tuple(h(feats) for h in self.aux_heads) if self.training else ()
        return ExpertOutput(logits=self.head(feats), aux=aux, taps={})


def _train(run_dir: Path, batch_size: int) -> None:
    cfg = tiny_config(batch_size=batch_size, iterations=STEPS, val_every=2, ckpt_every=2, lr=1e-2)
    torch.manual_seed(0)
    trainer = Trainer(
        DDPNet(),
        train_set=ColourBlocks(10, seed=0),
        val_set=ColourBlocks(5, seed=1),  # 5 samples: shards of 3 and 2
        config=cfg,
        run_dir=run_dir,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        checkpoint_meta=tiny_meta(),
    )
    trainer.fit()


def _ddp_worker(rank: int, port: int, run_dir: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then the normal trainer."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        _train(Path(run_dir), PER_RANK_BATCH)
    finally:
        distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_process_gloo_ddp_equals_single_process(tmp_path: Path) -> None:
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    mp.start_processes(_ddp_worker, args=(_free_port(), str(ddp_dir)), nprocs=WORLD, start_method="spawn")
    _train(single_dir, PER_RANK_BATCH * WORLD)  # the same global batch in one process

    ddp = load_checkpoint(ddp_dir / "last.pt")
    single = load_checkpoint(single_dir / "last.pt")
    assert ddp["step"] == single["step"] == STEPS
    assert set(ddp["model"]) == set(single["model"])  # no "module." prefix, BN keys unchanged
    torch.manual_seed(0)
    initial = DDPNet().state_dict()
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, atol=ATOL, rtol=RTOL, msg=key)
    moved = max((single["model"][k].double() - v.double()).abs().max().item() for k, v in initial.items())
    assert moved > 1e-3  # the runs trained: the equality is not that of untouched weights

    # validation is sharded and all-reduced: same pixel count and (near-identical weights) same scores
    assert ddp["metrics"]["num_pixels"] == single["metrics"]["num_pixels"] == 5 * 16 * 32 - 5 * 3
    assert ddp["metrics"]["miou"] == pytest.approx(single["metrics"]["miou"], abs=1e-6)
    # rank 0 alone logs: one row per step and validation, like the single-process run
    assert len(_csv_rows(ddp_dir / "metrics.csv")) == len(_csv_rows(single_dir / "metrics.csv"))
    assert sorted(p.name for p in ddp_dir.glob("*.pt")) == sorted(p.name for p in single_dir.glob("*.pt"))


# ---------------------------------------------------------------------------------------------------
# Sharding
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_batches_split_each_global_batch_without_duplicates(world: int) -> None:
    per_rank = 2
    global_batches = StepBatchSampler(7, per_rank * world, seed=3, with_epoch=True)
    shards = [
        iter(distributed.ShardedBatchSampler(global_batches, rank=r, world_size=world)) for r in range(world)
    ]
    reference = iter(StepBatchSampler(7, per_rank * world, seed=3, with_epoch=True))
    for _ in range(5):
        parts = [next(s) for s in shards]
        assert all(len(p) == per_rank for p in parts)
        assert [item for p in parts for item in p] == next(reference)  # in order, nothing twice


def test_sharded_batches_refuse_uneven_split() -> None:
    sampler = distributed.ShardedBatchSampler(StepBatchSampler(5, 3, seed=0), rank=0, world_size=2)
    with pytest.raises(ValueError, match="evenly"):
        next(iter(sampler))
    with pytest.raises(ValueError, match="outside"):
        distributed.ShardedBatchSampler(StepBatchSampler(5, 4, seed=0), rank=2, world_size=2)


@pytest.mark.parametrize(("n", "world"), [(0, 2), (5, 2), (7, 3), (2, 4), (9, 1)])
def test_shard_sampler_covers_every_index_once(n: int, world: int) -> None:
    shards = [list(distributed.ShardSampler(n, rank=r, world_size=world)) for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n)) and len(flat) == n  # no padding, no repeats
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(s) for s in shards] == [
        len(distributed.ShardSampler(n, rank=r, world_size=world)) for r in range(world)
    ]


# ---------------------------------------------------------------------------------------------------
# Launch environment and single-process behaviour
# ---------------------------------------------------------------------------------------------------


def test_launch_info_reads_torchrun_variables() -> None:
    info = distributed.launch_info({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (info.rank, info.local_rank, info.world_size) == (3, 1, 4)
    assert info.is_distributed and not info.is_main
    assert distributed.launch_info({}) == distributed.DistInfo()
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        distributed.launch_info({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="RANK=4"):
        distributed.launch_info({"RANK": "4", "WORLD_SIZE": "4"})


def test_backend_choice() -> None:
    assert distributed.resolve_backend("auto", cuda=False) == "gloo"
    assert distributed.resolve_backend("auto", cuda=True) == "nccl"
    assert distributed.resolve_backend("gloo", cuda=True) == "gloo"
    with pytest.raises(ConfigError, match="nccl needs CUDA"):
        distributed.resolve_backend("nccl", cuda=False)
    with pytest.raises(ConfigError, match="train.ddp_backend"):
        distributed.resolve_backend("mpi", cuda=False)


def test_without_torchrun_everything_is_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)
    info = distributed.init_distributed("auto", device=torch.device("cpu"))
    assert info == distributed.DistInfo() and not torch.distributed.is_initialized()
    assert distributed.is_main_process() and distributed.all_ranks_true(False) is False
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([1, 2, 2]), torch.tensor([1, 2, 1]))
    metrics = cm.compute()
    assert distributed.all_reduce_metrics(metrics) is metrics
    assert distributed.effective_batch_size(4, world_size=8, grad_accum=2) == 64


def test_cpu_sync_batchnorm_conversion_keeps_parameters_and_modes() -> None:
    torch.manual_seed(0)
    model = DDPNet()
    model.body[2].eval()  # e.g. a frozen part: its mode must survive the conversion
    params = dict(model.named_parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    converted = distributed.convert_sync_batchnorm(model, device=torch.device("cpu"))
    bns = [m for m in converted.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 and all(isinstance(m, distributed.AllReduceBatchNorm2d) for m in bns)
    assert not converted.body[2].training and converted.body[5].training
    assert list(converted.state_dict()) == list(state)
    assert all(p is params[n] for n, p in converted.named_parameters())  # the optimiser's tensors
    # without a process group it is plain BN: same output, same running-statistics update
    plain = DDPNet()
    plain.load_state_dict(state)
    plain.body[2].eval()
    x = torch.rand(2, 3, 8, 8) * 255
    assert torch.equal(converted({"rgb": x}).logits, plain({"rgb": x}).logits)
    for key, value in plain.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key


# ---------------------------------------------------------------------------------------------------
# The real model: AdapNet++ gradients under DDP + SyncBN, in float64
# ---------------------------------------------------------------------------------------------------


def _adapnet_batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = ColourBlocks(4, size=(32, 64), seed=0)
    x = torch.stack([data[i]["inputs"]["rgb"] for i in range(4)]).double()  # (4, 3, 32, 64)
    y = torch.stack([data[i]["label"] for i in range(4)])  # (4, 32, 64)
    return x, y


def _adapnet_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    from fusionseg.engine.losses import SegmentationLoss

    model.train()
    SegmentationLoss((0.6, 0.5))(model(x), y).total.backward()
    return {n: p.grad.detach().clone() for n, p in unwrap(model).named_parameters()}


def unwrap(model: nn.Module) -> nn.Module:
    return distributed.unwrap_model(model)


def _adapnet_model() -> nn.Module:
    from fusionseg.models.adapnet import AdapNetPP

    torch.manual_seed(0)
    return AdapNetPP(num_classes=NUM_CLASSES, dropout=0.0).double()


def _adapnet_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    try:
        info = distributed.init_distributed("gloo", device=cpu)
        model = distributed.convert_sync_batchnorm(_adapnet_model(), device=cpu)
        ddp = distributed.wrap_ddp(model, device=cpu)
        x, y = _adapnet_batch()
        half = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
        grads = _adapnet_grads(ddp, x[half], y[half])
        if info.is_main:
            torch.save({"grads": grads, "state": model.state_dict()}, out)
    finally:
        distributed.shutdown()


def test_adapnet_ddp_gradients_equal_single_process_in_float64(tmp_path: Path) -> None:
    """float64 removes rounding noise (float32 gradients of an untrained AdapNet++ already differ by a few
    % from float64 ones), so DDP + SyncBN must reproduce the single-process gradient almost exactly."""
    out = tmp_path / "ddp.pt"
    mp.start_processes(_adapnet_worker, args=(_free_port(), str(out)), nprocs=WORLD, start_method="spawn")
    ddp = torch.load(out)
    model = _adapnet_model()
    x, y = _adapnet_batch()
    single = _adapnet_grads(model, x, y)
    assert set(ddp["grads"]) == set(single)
    for name, grad in single.items():
        scale = grad.abs().max().item()
        diff = (ddp["grads"][name] - grad).abs().max().item()
        assert diff <= 1e-9 * max(scale, 1e-12) + 1e-15, f"{name}: {diff:.3g} vs scale {scale:.3g}"
    for name, value in model.state_dict().items():  # BN running statistics of the global batch
        torch.testing.assert_close(ddp["state"][name], value, rtol=1e-9, atol=1e-12, msg=name)
