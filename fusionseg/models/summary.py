"""Model summaries: parameters per module, trainable / frozen / buffer counts, tap shapes, GFLOPs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModuleRow:
    """Counts of one module group.

    Attributes:
        name: Group name (e.g. "stem", "block1", "easpp").
        params: Parameter elements (`parameters()`).
        trainable: Of those, elements with `requires_grad`.
        buffers: Buffer elements, BN running mean + variance (`num_batches_tracked` excluded).
    """

    name: str
    params: int
    trainable: int
    buffers: int


@dataclass(frozen=True)
class ModelSummary:
    """Result of `summarize_model`; `to_dict()` is the JSON form.

    Attributes:
        model: Model name.
        modules: One row per group, then "(other)" for anything outside the groups.
        total_params / trainable_params / frozen_params / buffers: Whole-model element counts.
        input_shape: (B, C, H, W) of the example input, None when no forward pass was run.
        taps: Output shape of every named tap (e.g. "skip1", "easpp").
        logits_shape: Shape of the logits, None when no forward pass was run.
        gflops: Forward FLOPs / 1e9 in eval mode, counted by `torch.utils.flop_counter.FlopCounterMode`
            (one multiply-accumulate = 2 FLOPs; convs, deconvs and matmuls only: BN, ReLU, pooling
            and interpolation are not counted). None when no forward pass was run.
    """

    model: str
    modules: tuple[ModuleRow, ...]
    total_params: int
    trainable_params: int
    frozen_params: int
    buffers: int
    input_shape: tuple[int, ...] | None
    taps: dict[str, tuple[int, ...]]
    logits_shape: tuple[int, ...] | None
    gflops: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["modules"] = [asdict(row) for row in self.modules]
        d["taps"] = {k: list(v) for k, v in self.taps.items()}
        for key in ("input_shape", "logits_shape"):
            d[key] = None if d[key] is None else list(d[key])
        return d


def _is_counted_buffer(name: str) -> bool:
    return not name.endswith("num_batches_tracked")


def count_elements(module: nn.Module) -> tuple[int, int, int]:
    """(params, trainable params, buffers) element counts of `module`; BN counters excluded."""
    params = list(module.parameters())
    buffers = sum(b.numel() for n, b in module.named_buffers() if _is_counted_buffer(n))
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad), buffers


def summarize_model(
    model: nn.Module,
    example_input: Tensor | Mapping[str, Tensor] | None = None,
    *,
    name: str | None = None,
    groups: Mapping[str, nn.Module] | None = None,
) -> ModelSummary:
    """Count parameters per module group and, given an input, run one eval forward for shapes and FLOPs.

    Args:
        model: Any module; its forward may return a Tensor or something with `.logits` / `.taps`
            (`ExpertOutput`).
        example_input: Passed as `model(example_input)`, e.g. a (B, C, H, W) float tensor; None skips
            the forward pass (shapes and GFLOPs are then None / empty).
        name: Model name for the report; default the class name.
        groups: Named sub-modules to list; default `model.module_groups()` if the model has it, else
            its direct children. Parameters outside every group are reported as "(other)".

    Returns:
        A `ModelSummary`. The model's train/eval mode is restored afterwards; weights are untouched.
    """
    if groups is None:
        groups = model.module_groups() if hasattr(model, "module_groups") else dict(model.named_children())
    rows = [ModuleRow(n, *count_elements(m)) for n, m in groups.items()]
    total, trainable, buffers = count_elements(model)
    left = (
        total - sum(r.params for r in rows),
        trainable - sum(r.trainable for r in rows),
        buffers - sum(r.buffers for r in rows),
    )
    if any(left):
        rows.append(ModuleRow("(other)", *left))

    taps: dict[str, tuple[int, ...]] = {}
    logits_shape = input_shape = gflops = None
    if example_input is not None:
        was_training = model.training
        model.eval()
        try:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                out = model(example_input)
        finally:
            model.train(was_training)
        gflops = counter.get_total_flops() / 1e9
        logits = out if isinstance(out, Tensor) else getattr(out, "logits", None)
        logits_shape = None if logits is None else tuple(logits.shape)
        taps = {k: tuple(v.shape) for k, v in (getattr(out, "taps", None) or {}).items()}
        if isinstance(example_input, Tensor):
            input_shape = tuple(example_input.shape)
        else:
            input_shape = tuple(next(iter(example_input.values())).shape)
    return ModelSummary(
        model=name or type(model).__name__,
        modules=tuple(rows),
        total_params=total,
        trainable_params=trainable,
        frozen_params=total - trainable,
        buffers=buffers,
        input_shape=input_shape,
        taps=taps,
        logits_shape=logits_shape,
        gflops=gflops,
    )
