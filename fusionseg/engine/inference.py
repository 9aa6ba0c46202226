"""Prediction primitives: any input size (resize, pad or sliding window), multi-scale and flip.

A model is called as `model(inputs) -> ExpertOutput` with `inputs = {modality: (B, C, H, W) float}`,
so the same code serves an expert and a fused model. AdapNet++ needs H and W to be multiples of 16
(adapnetpp.md §1); every mode below guarantees that.

Modes for one scale s:
- "resize": inputs resized to the training size times s (rounded to multiples of 16); the paper's
  protocol (val images resized to the training resolution, adapnetpp.md §13).
- "pad": inputs resized by s, padded bottom/right (edge replicate) to multiples of 16, output cropped.
- "slide": inputs resized by s and covered by training-size windows overlapping by `overlap`;
  window probabilities are averaged.
Class probabilities (softmax) are averaged over scales and flips, then resized to the input size.
`evaluate_model` accumulates the confusion matrix of a model over a labelled loader;
`load_for_inference` rebuilds a checkpoint's model for evaluation and prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionseg.engine.metrics import ConfusionMatrix, SegmentationMetrics
from fusionseg.engine.runtime import autocast_context, inputs_to_device
from fusionseg.errors import DataError
from fusionseg.models.adapnet import OUTPUT_STRIDE

InputTransform = Callable[[dict[str, Tensor]], dict[str, Tensor]]
Mode = Literal["resize", "pad", "slide"]
SIZE_MULTIPLE = OUTPUT_STRIDE  # adapnetpp.md §1: output stride 16, decoder needs exact multiples


def select_inputs(inputs: Mapping[str, Tensor], modalities: Sequence[str], *, source: str = "batch") -> dict:
    """The model's modalities from a sample's inputs, in the model's order.

    This is the one place where evaluation and prediction build a model's inputs; callers that degrade
    or drop modalities pass an `InputTransform` applied after it.

    Raises:
        DataError: a modality the model needs is missing (names it and what is there).
    """
    missing = [m for m in modalities if m not in inputs]
    if missing:
        raise DataError(
            f"{source}: the model needs modality {missing[0]!r} but the data has {sorted(inputs) or 'none'}"
        )
    return {m: inputs[m] for m in modalities}


def _round_multiple(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _resize(
    inputs: Mapping[str, Tensor], size: tuple[int, int], nearest: Collection[str] = ()
) -> dict[str, Tensor]:
    """Bilinear resize, nearest for the modalities in `nearest` (depth: no mixed surfaces)."""
    out = {}
    for name, t in inputs.items():
        if tuple(t.shape[-2:]) == tuple(size):
            out[name] = t
        elif name in nearest:
            out[name] = F.interpolate(t, size=size, mode="nearest")
        else:
            out[name] = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return out


def _pad(inputs: Mapping[str, Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
    """Pad bottom/right to `size` by replicating the last row/column."""
    out = {}
    for name, t in inputs.items():
        dh, dw = size[0] - t.shape[-2], size[1] - t.shape[-1]
        out[name] = F.pad(t, (0, dw, 0, dh), mode="replicate") if dh or dw else t
    return out


def logits_at_input_size(model: nn.Module, inputs: Mapping[str, Tensor]) -> Tensor:
    """Pre-softmax class scores at the inputs' own size: padded bottom/right (edge replicate) to
    multiples of 16, one forward pass, cropped back.

    Args:
        model: In eval mode, `model({modality: tensor}) -> ExpertOutput`.
        inputs: modality -> (B, C_m, H, W) float tensors of one size, on the model's device.

    Returns:
        (B, C, H, W) float32 logits.
    """
    h, w = next(iter(inputs.values())).shape[-2:]
    return model(_pad_to_multiple(inputs)).logits.float()[..., :h, :w]


def _pad_to_multiple(inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Pad bottom/right (edge replicate) up to the next multiples of 16 (adapnetpp.md §1)."""
    h, w = next(iter(inputs.values())).shape[-2:]
    return _pad(
        inputs, (math.ceil(h / SIZE_MULTIPLE) * SIZE_MULTIPLE, math.ceil(w / SIZE_MULTIPLE) * SIZE_MULTIPLE)
    )


def _probs(model: nn.Module, inputs: Mapping[str, Tensor], flip: bool) -> Tensor:
    """Softmax of the logits, averaged with the horizontally flipped input when `flip`."""
    logits = model(dict(inputs)).logits.float()  # (B, C, h, w)
    probs = logits.softmax(dim=1)
    if flip:
        flipped = {name: t.flip(-1) for name, t in inputs.items()}
        logits_f = model(flipped).logits.float()
        probs = 0.5 * (probs + logits_f.softmax(dim=1).flip(-1))
    return probs


def _probs_slide(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    *,
    window: tuple[int, int],
    overlap: float,
    flip: bool,
) -> Tensor:
    h, w = next(iter(inputs.values())).shape[-2:]
    wh, ww = window
    ph, pw = max(h, wh), max(w, ww)
    padded = _pad(inputs, (ph, pw))
    sh, sw = max(1, int(wh * (1 - overlap))), max(1, int(ww * (1 - overlap)))
    ys = list(range(0, ph - wh + 1, sh))
    xs = list(range(0, pw - ww + 1, sw))
    if ys[-1] != ph - wh:
        ys.append(ph - wh)
    if xs[-1] != pw - ww:
        xs.append(pw - ww)
    total: Tensor | None = None
    count = torch.zeros(1, 1, ph, pw, device=next(iter(inputs.values())).device)
    for y in ys:
        for x in xs:
            crop = {name: t[..., y : y + wh, x : x + ww] for name, t in padded.items()}
            p = _probs(model, crop, flip)  # (B, C, wh, ww)
            if total is None:
                total = torch.zeros(p.shape[0], p.shape[1], ph, pw, device=p.device)
            total[..., y : y + wh, x : x + ww] += p
            count[..., y : y + wh, x : x + ww] += 1
    assert total is not None
    return (total / count)[..., :h, :w]


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    inputs: Mapping[str, Tensor],
    *,
    mode: Mode = "pad",
    size: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    overlap: float = 1 / 3,
    amp: str = "off",
    nearest: Collection[str] = (),
) -> Tensor:
    """Class probabilities at the inputs' own size.

    Args:
        model: The model, in eval mode: `model({modality: tensor}) -> ExpertOutput`.
        inputs: modality -> (B, C_m, H, W) float tensors, all of the same H, W, on the model's device.
        mode: "resize", "pad" or "slide" (module docstring).
        size: (h, w) training size, required by "resize" and "slide" (multiples of 16).
        scales: Scale factors; probabilities are averaged over them.
        flip: Also average the horizontally flipped prediction.
        overlap: Window overlap fraction for "slide" (0 <= overlap < 1).
        amp: Autocast mode, "off", "bf16" or "fp16".
        nearest: Modalities resized nearest-neighbour (depth); the others bilinearly.

    Returns:
        (B, C, H, W) float32 class probabilities.

    Raises:
        ValueError: bad mode, scales, or missing `size`.
    """
    if mode not in ("resize", "pad", "slide"):
        raise ValueError(f"mode must be 'resize', 'pad' or 'slide', got {mode!r}")
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"scales must be positive numbers, got {list(scales)}")
    if mode != "pad" and size is None:
        raise ValueError(f"mode {mode!r} needs the training size")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
    shapes = {tuple(t.shape[-2:]) for t in inputs.values()}
    if len(shapes) != 1:
        raise ValueError(f"all modalities must have the same height and width, got {sorted(shapes)}")
    h, w = shapes.pop()
    device = next(iter(inputs.values())).device
    total: Tensor | None = None
    with autocast_context(device, amp):
        for s in scales:
            if mode == "resize":
                assert size is not None
                target = (
                    _round_multiple(size[0] * s, SIZE_MULTIPLE),
                    _round_multiple(size[1] * s, SIZE_MULTIPLE),
                )
                scaled = _resize(inputs, target, nearest)
                p = _probs(model, scaled, flip)
            elif mode == "pad":
                sh, sw = max(1, round(h * s)), max(1, round(w * s))
                scaled = _resize(inputs, (sh, sw), nearest)
                p = _probs(model, _pad_to_multiple(scaled), flip)[..., :sh, :sw]
            else:
                assert size is not None
                scaled = _resize(inputs, (max(1, round(h * s)), max(1, round(w * s))), nearest)
                p = _probs_slide(model, scaled, window=tuple(size), overlap=overlap, flip=flip)
            if tuple(p.shape[-2:]) != (h, w):
                p = F.interpolate(p.float(), size=(h, w), mode="bilinear", align_corners=False)
            total = p.float() if total is None else total + p.float()
    assert total is not None
    return total / len(scales)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    num_classes: int,
    modalities: Sequence[str],
    class_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    mode: Mode = "pad",
    size: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    amp: str = "off",
    channels_last: bool = False,
    input_transform: InputTransform | None = None,
    nearest: Collection[str] = (),
    on_batch: Callable[[int], None] | None = None,
) -> SegmentationMetrics:
    """Run a model over a labelled loader and accumulate the confusion matrix.

    Args:
        model: The model; switched to eval mode and restored to its previous mode afterwards.
        loader: Batches `{"inputs": {modality: (B, C, H, W)}, "label": (B, H, W) int64, ...}`.
        num_classes: C, including void.
        modalities: The model's modalities (picked from each batch by `select_inputs`).
        class_names: C names for the report.
        device: Where to compute.
        mode, size, scales, flip, amp: See `predict_probs`.
        channels_last: Feed channels-last tensors.
        input_transform: Applied to the selected inputs (e.g. to drop or degrade a modality).
        nearest: Modalities resized nearest-neighbour when scales != 1 (depth).
        on_batch: Called with the number of images after each batch (progress).

    Returns:
        The metrics of the whole loader (argmax over all C ids; void ground truth skipped).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    try:
        for batch in loader:
            inputs = select_inputs(batch["inputs"], modalities)
            if input_transform is not None:
                inputs = input_transform(inputs)
            inputs = inputs_to_device(inputs, device, channels_last=channels_last)
            label = batch["label"].to(device)  # (B, H, W)
            probs = predict_probs(
                model,
                inputs,
                mode=mode,
                size=size,
                scales=scales,
                flip=flip,
                amp=amp,
                nearest=nearest,
            )  # (B, C, H, W)
            if tuple(probs.shape[-2:]) != tuple(label.shape[-2:]):
                probs = F.interpolate(probs, size=label.shape[-2:], mode="bilinear", align_corners=False)
            cm.update(probs.argmax(dim=1), label)
            if on_batch is not None:
                on_batch(int(label.shape[0]))
    finally:
        model.train(was_training)
    return cm.compute(class_names)


def load_for_inference(
    checkpoint: str | Path,
    *,
    device: torch.device | str = "cpu",
    expected: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint (weights-only), rebuild its model in eval mode on `device`.

    Args:
        checkpoint: The `.pt` file.
        device: Where the model goes.
        expected: Checkpoint keys that must have these values (checked before the model is built).

    Returns:
        (model, payload); the payload's weights, optimiser and RNG entries are dropped.

    Raises:
        CheckpointError: unreadable, corrupt, refused, or a key differing from `expected`.
    """
    from fusionseg.engine.checkpoint import check_compatible, load_checkpoint, model_from_checkpoint

    payload = load_checkpoint(checkpoint, map_location="cpu")
    for key in ("optimizer", "scheduler", "scaler", "rng"):
        payload.pop(key, None)
    if expected:
        check_compatible(payload, expected, source=str(checkpoint))
    model = model_from_checkpoint(payload, source=str(checkpoint))
    payload.pop("model", None)
    return model.to(device).eval(), payload


def _bilinear_taps(n_out: int, n_in: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Source indices (i0, i1) and weight of i1 per output position, as F.interpolate's bilinear
    (align_corners=False): src = max(0, (dst + 0.5) * n_in / n_out - 0.5)."""
    scale = n_in / n_out
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (src - i0).float()


def upsampled_labels(
    probs: Tensor, size_hw: tuple[int, int], *, dtype: Any = np.uint8, band_bytes: int = 64 << 20
) -> np.ndarray:
    """Arg-max class of `probs` bilinearly resized to `size_hw`, computed a band of rows at a time.

    The same arithmetic as `F.interpolate(probs[None], size, mode="bilinear", align_corners=False)`
    followed by an arg-max, without holding the (C, H, W) resized maps: memory is one band of
    `band_bytes` (default 64 MB) plus the (H, W) labels.

    Args:
        probs: (C, h, w) float class probabilities.
        size_hw: (H, W) output size.
        dtype: Label dtype (uint8 for up to 256 classes).
        band_bytes: Memory of one band of resized maps.

    Returns:
        (H, W) labels of `dtype`.
    """
    c, h_in, w_in = probs.shape
    h, w = size_hw
    probs = probs.float()
    if (h_in, w_in) == (h, w):
        return probs.argmax(dim=0).cpu().numpy().astype(dtype)
    if c * h * w * 4 <= band_bytes:  # the whole map fits in one band: one interpolation (2.5x faster)
        whole = F.interpolate(probs[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        return whole.argmax(dim=0).cpu().numpy().astype(dtype)
    ys0, ys1, wy = _bilinear_taps(h, h_in, probs.device)
    xs0, xs1, wx = _bilinear_taps(w, w_in, probs.device)
    labels = np.empty((h, w), dtype=dtype)
    rows = max(1, band_bytes // max(1, c * w * 4 * 2))
    for top in range(0, h, rows):
        sl = slice(top, min(h, top + rows))
        ly = wy[sl].view(1, -1, 1)
        band = probs[:, ys0[sl]] * (1 - ly) + probs[:, ys1[sl]] * ly  # (C, rows, w_in)
        band = band[..., xs0] * (1 - wx) + band[..., xs1] * wx  # (C, rows, W)
        labels[sl] = band.argmax(dim=0).cpu().numpy()
    return labels
