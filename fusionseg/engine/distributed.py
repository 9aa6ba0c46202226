"""Data-parallel training across processes: torchrun set-up, sharding, synchronised BN, rank-0 helpers.

Launch any training verb with `torchrun` (docs/deployment.md); each process trains one replica:

    torchrun --nproc-per-node 4 -m fusionseg train-unimodal --config cfg.yaml --modality rgb

`torchrun` sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; `init_distributed` reads them
once (the trainer calls it at the start of `fit`) and joins the process group. Without those variables,
or with WORLD_SIZE=1, everything here is a no-op and training is single-process.

Batch semantics: `train.batch_size` is the batch of one process, so one optimiser step sees
`batch_size * world_size * grad_accum` samples (`effective_batch_size`). Step k of the run reads global
batch k of the seeded step sampler and every rank takes its own contiguous slice of it
(`ShardedBatchSampler`), so a run on W processes with batch b sees exactly the samples of a
single-process run with batch W*b, and DDP's gradient average equals the single-process gradient (the
loss is a per-pixel mean over equally sized crops).

BatchNorm: with `train.sync_bn` (default) every BN layer normalises with statistics over the global batch.
On CUDA this is `torch.nn.SyncBatchNorm`; on CPU (gloo), where that class refuses to run,
`AllReduceBatchNorm2d` computes the same statistics with differentiable all-reduces.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from fusionseg.errors import ConfigError

# environment variables torchrun sets for every process (torch.distributed.run)
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank, 0..world_size-1.
        local_rank: Rank on this node (the GPU index on multi-GPU nodes).
        world_size: Number of processes (1 = not distributed).
        backend: "nccl" or "gloo" once the process group is up, else None.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and writes checkpoints."""
        return self.rank == 0


# ---------------------------------------------------------------------------------------------------
# Process group
# ---------------------------------------------------------------------------------------------------


def launch_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank, local rank and world size from torchrun's environment variables (no process group yet).

    Args:
        env: The environment to read; default `os.environ`.

    Raises:
        ConfigError: a variable that is not an integer, or ranks outside the world size.
    """
    env = os.environ if env is None else env
    values = {}
    for name, default in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        text = env.get(name, default)
        try:
            values[name] = int(text)
        except ValueError:
            raise ConfigError(
                f"environment variable {name}={text!r} is not an integer (set by torchrun)"
            ) from None
    world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(
            f"inconsistent torchrun environment: RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world}"
        )
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def resolve_backend(name: str, *, cuda: bool) -> str:
    """The backend to use: auto means nccl when CUDA is available, else gloo; nccl needs CUDA.

    Raises:
        ConfigError: unknown backend or nccl without CUDA (names `train.ddp_backend`).
    """
    if name == "auto":
        return "nccl" if cuda else "gloo"
    if name not in ("nccl", "gloo"):
        raise ConfigError(f"train.ddp_backend: {name!r} is not one of 'auto', 'nccl', 'gloo'")
    if name == "nccl" and not cuda:
        raise ConfigError("train.ddp_backend: nccl needs CUDA; use gloo (or auto) for CPU training")
    return name


def current() -> DistInfo:
    """The running process group's view of this process (single-process `DistInfo()` when none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return DistInfo(
        rank=dist.get_rank(), local_rank=local, world_size=dist.get_world_size(), backend=dist.get_backend()
    )


def init_distributed(
    backend: str = "auto",
    *,
    device: torch.device | None = None,
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Join the process group torchrun describes; a no-op without torchrun or with WORLD_SIZE=1.

    Idempotent: when a process group is already up it is returned as is. With the nccl backend the
    process's CUDA device is set to its LOCAL_RANK first.

    Args:
        backend: "auto", "nccl" or "gloo" (`train.ddp_backend`).
        device: The training device; "auto" picks nccl only for a CUDA device. None: CUDA if available.
        timeout_s: Collective timeout (also how long ranks wait for one another, e.g. at start-up).

    Returns:
        This process's `DistInfo`.

    Raises:
        ConfigError: bad torchrun variables, MASTER_ADDR/MASTER_PORT missing, nccl without CUDA, or a
            LOCAL_RANK without a matching GPU.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    env = os.environ
    info = launch_info(env)
    if not info.is_distributed:
        return info
    if not dist.is_available():  # pragma: no cover - every supported build has torch.distributed
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={info.world_size} but {missing[0]} is not set (launch with torchrun)")
    cuda = torch.cuda.is_available() if device is None else device.type == "cuda"
    name = resolve_backend(backend, cuda=cuda)
    if name == "nccl":
        if info.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={info.local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                "start at most one process per GPU (torchrun --nproc-per-node)"
            )
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=name,
        init_method="env://",  # MASTER_ADDR / MASTER_PORT, torchrun's agent store when present
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return DistInfo(info.rank, info.local_rank, info.world_size, name)


def shutdown() -> None:
    """Leave the process group (if one is up)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0 or when not distributed: the process that logs, prints and writes files."""
    return current().is_main


def distributed_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: `cuda:<LOCAL_RANK>` for CUDA training under torchrun, else `device`."""
    if info.is_distributed and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def effective_batch_size(batch_size: int, *, world_size: int = 1, grad_accum: int = 1) -> int:
    """Samples per optimiser step: per-process batch x processes x accumulation steps."""
    return batch_size * world_size * grad_accum


# ---------------------------------------------------------------------------------------------------
# Collectives (all no-ops when single-process)
# ---------------------------------------------------------------------------------------------------


def barrier() -> None:
    """Wait until every rank gets here."""
    if current().is_distributed:
        dist.barrier()


def all_ranks_true(flag: bool, *, device: torch.device | None = None) -> bool:
    """True only when `flag` is true on every rank (e.g. "my loss is finite"), so all ranks agree.

    Args:
        flag: This rank's value.
        device: Device of the collective (the training device; CUDA for nccl).
    """
    if not current().is_distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_ranks_min(value: int, *, device: torch.device | None = None) -> int:
    """The smallest of every rank's `value` (e.g. a step count each rank estimated), so all agree."""
    if not current().is_distributed:
        return value
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum of `tensor` over ranks, as a new tensor (the input is not modified)."""
    out = tensor.clone()
    if current().is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_metrics(metrics: Any, *, device: torch.device | None = None) -> Any:
    """Segmentation metrics of the union of every rank's evaluation shard.

    Sums the (C, C) confusion matrices and recomputes IoU, mIoU and accuracy from the sum (averaging
    per-rank mIoUs would be wrong).

    Args:
        metrics: This rank's `fusionseg.engine.metrics.SegmentationMetrics`.
        device: Device of the collective.

    Returns:
        The metrics of all shards (the input itself when not distributed).
    """
    if not current().is_distributed:
        return metrics
    from fusionseg.engine.metrics import metrics_from_confusion

    confusion = torch.as_tensor(metrics.confusion, dtype=torch.int64, device=device)
    total = all_reduce_sum(confusion).cpu().numpy()
    return metrics_from_confusion(total, class_names=metrics.class_names)


# ---------------------------------------------------------------------------------------------------
# Sharding
# ---------------------------------------------------------------------------------------------------


class ShardedBatchSampler(Sampler[list[Any]]):
    """This rank's contiguous slice of every global batch another batch sampler yields.

    Rank r of W takes items [r*b, (r+1)*b) of each global batch of W*b items, so the ranks together read
    every item of the global batch exactly once.

    Args:
        global_batches: A batch sampler yielding global batches of `world_size * b` items (e.g.
            `StepBatchSampler` built with the global batch size).
        rank: This process's rank.
        world_size: Number of processes.

    Raises:
        ValueError: a rank outside the world, or a global batch not divisible by the world size.
    """

    def __init__(self, global_batches: Sampler[list[Any]], *, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.global_batches = global_batches
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.global_batches:
            per_rank, extra = divmod(len(batch), self.world_size)
            if extra or per_rank == 0:
                raise ValueError(
                    f"a global batch of {len(batch)} cannot be split evenly over {self.world_size} processes"
                )
            yield list(batch[self.rank * per_rank : (self.rank + 1) * per_rank])

    def __len__(self) -> int:
        return len(self.global_batches)  # type: ignore[arg-type]


class ShardSampler(Sampler[int]):
    """Indices rank, rank + W, rank + 2W, ... of an in-order dataset: each index on exactly one rank.

    Unlike `torch.utils.data.DistributedSampler` nothing is padded or repeated, so summing per-rank
    results (confusion matrices) counts every sample once; shards differ in length by at most one,
    which is fine for evaluation (no collectives inside the loop).

    Args:
        num_samples: Dataset length.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, num_samples: int, *, rank: int, world_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.indices = range(rank, num_samples, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ---------------------------------------------------------------------------------------------------
# Synchronised BatchNorm
# ---------------------------------------------------------------------------------------------------


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batches of all ranks (for CPU / gloo).

    Same parameters, buffers and state-dict keys as `nn.BatchNorm2d`; in eval mode, or without a process
    group, it is exactly `nn.BatchNorm2d`. In training mode the per-channel mean and (biased) variance are
    computed over every rank's batch with two differentiable all-reduces (sum -> mean, then the centred
    sum of squares -> variance), so the forward pass and the gradients equal single-process BN on the
    concatenated batch; the running variance is updated with the unbiased estimate as `nn.BatchNorm2d`
    does. Half-precision inputs (AMP) get their statistics computed in float32.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), normalised with global-batch statistics in training mode."""
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        if x.ndim != 4:
            raise ValueError(f"AllReduceBatchNorm2d expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float32 or float64
        c = xf.shape[1]
        count_local = xf.numel() // c
        sums = _all_reduce_sum_autograd(
            torch.cat([xf.sum(dim=(0, 2, 3)), xf.new_tensor([float(count_local)])])
        )  # (C + 1,): per-channel sums and the global count
        count = sums[c].detach()
        mean = sums[:c] / count  # (C,)
        centred = xf - mean[None, :, None, None]  # (B, C, H, W)
        var = _all_reduce_sum_autograd((centred * centred).sum(dim=(0, 2, 3))) / count  # (C,) biased
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
                    factor = 1.0 / float(self.num_batches_tracked.item())
                else:
                    factor = self.momentum
                n = float(count.item())
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return y.to(x.dtype)


def _all_reduce_sum_autograd(tensor: Tensor) -> Tensor:
    """Differentiable all_reduce(SUM): the backward pass all-reduces the gradient (the sum's adjoint)."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(tensor, op=dist.ReduceOp.SUM)


def convert_sync_batchnorm(module: nn.Module, *, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d with a synchronised one that shares its parameters and buffers.

    CUDA devices get `torch.nn.SyncBatchNorm`; other devices `AllReduceBatchNorm2d`. Parameters keep their
    identity and `requires_grad`, modules keep their train/eval mode, so frozen experts (eval mode,
    no gradients) stay frozen and their statistics are never synchronised or updated. BN subclasses are
    converted too: `PooledBatchNorm2d` (models/easpp.py) only differs from BN for a batch holding a
    single value per channel, which a global batch over two or more processes never is.

    Args:
        module: The model; converted in place where possible.
        device: The training device.

    Returns:
        The converted model (a new object only when `module` itself is a BN layer).
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNorm2d):
        out = AllReduceBatchNorm2d(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            device=torch.device("meta"),  # storage is taken from `module` just below
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


# ---------------------------------------------------------------------------------------------------
# Wrapping
# ---------------------------------------------------------------------------------------------------


def wrap_ddp(
    model: nn.Module,
    *,
    device: torch.device,
    find_unused_parameters: bool = True,
) -> nn.Module:
    """Wrap a model (already on `device`) in DistributedDataParallel.

    The wrapper broadcasts rank 0's weights and buffers at construction, so every replica starts
    identical whatever each process initialised, and rank 0's buffers (BN running statistics) again at
    every forward.

    Args:
        model: The network, on its training device.
        device: Training device (`cuda:<local rank>` or CPU).
        find_unused_parameters: Let DDP tolerate trainable parameters that get no gradient in a step
            (e.g. CMoDE experts' aux heads while fine-tuning experts); costs one graph traversal per step.
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" and device.index is not None else None,
        find_unused_parameters=find_unused_parameters,
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain network inside DDP and/or `torch.compile` wrappers (whose state dict has no prefixes)."""
    seen = 0
    while seen < 4:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            break
        seen += 1
    return model


__all__ = [
    "AllReduceBatchNorm2d",
    "DistInfo",
    "ShardSampler",
    "ShardedBatchSampler",
    "all_ranks_true",
    "all_reduce_metrics",
    "all_reduce_sum",
    "barrier",
    "convert_sync_batchnorm",
    "current",
    "distributed_device",
    "effective_batch_size",
    "init_distributed",
    "is_main_process",
    "launch_info",
    "resolve_backend",
    "shutdown",
    "unwrap_model",
    "wrap_ddp",
]
