"""Prediction at any input size (resize, pad or sliding window), multi-scale and flip, and evaluation.

A model is always called through a `forward(model, batch) -> ExpertOutput` function whose `batch` holds
`{"inputs": {modality: (B, C, H, W) float}}`, so the same code serves an expert and a fused model.
AdapNet++ needs H and W to be multiples of 16 (adapnetpp.md §1); every mode below guarantees that.

Modes for one scale s:
- "resize": inputs resized to the training size times s (rounded to multiples of 16); the paper's
  protocol (val images resized to the training resolution, adapnetpp.md §13).
- "pad": inputs resized by s, padded bottom/right (edge replicate) to multiples of 16, output cropped.
- "slide": inputs resized by s and covered by training-size windows overlapping by `overlap`;
  window probabilities are averaged.
Class probabilities (softmax) are averaged over scales and flips, then resized to the input size.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusionseg.engine.metrics import ConfusionMatrix, SegmentationMetrics
from fusionseg.errors import ConfigError, DataError
from fusionseg.models.output import ExpertOutput

ForwardFn = Callable[[nn.Module, Mapping[str, Any]], ExpertOutput]
InputTransform = Callable[[dict[str, Tensor]], dict[str, Tensor]]
Mode = Literal["resize", "pad", "slide"]
SIZE_MULTIPLE = 16  # adapnetpp.md §1: output stride 16, decoder needs exact multiples


def expert_forward(modality: str) -> ForwardFn:
    """The forward function of a unimodal expert: feed `batch["inputs"][modality]` to the model."""

    def forward(model: nn.Module, batch: Mapping[str, Any]) -> ExpertOutput:
        return model(batch["inputs"][modality])

    forward.__qualname__ = f"expert_forward[{modality}]"
    return forward


def resolve_device(name: str) -> torch.device:
    """`"auto"` -> CUDA when available else CPU; otherwise the named device, checked to exist.

    Raises:
        ConfigError: a CUDA/MPS device is asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: {name!r} is not a device name (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} asked for but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} asked for but MPS is not available here")
    return device


def autocast_context(device: torch.device, amp: str) -> Any:
    """Autocast for `amp` in {"off", "bf16", "fp16"} on `device` (fp16 needs CUDA).

    Raises:
        ConfigError: fp16 on a non-CUDA device, or an unknown mode.
    """
    if amp == "off":
        return nullcontext()
    if amp not in ("bf16", "fp16"):
        raise ConfigError(f"train.amp: {amp!r} is not one of 'off', 'bf16', 'fp16'")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp: fp16 needs a CUDA device (running on {device.type}; use off or bf16)")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def inputs_to_device(
    inputs: Mapping[str, Tensor], device: torch.device, *, channels_last: bool = False
) -> dict[str, Tensor]:
    """Move every modality tensor to `device` (float32, optionally channels-last)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {
        name: t.to(device, dtype=torch.float32, non_blocking=True).contiguous(memory_format=fmt)
        for name, t in inputs.items()
    }


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


def _probs(model: nn.Module, forward: ForwardFn, inputs: Mapping[str, Tensor], flip: bool) -> Tensor:
    """Softmax of the logits, averaged with the horizontally flipped input when `flip`."""
    logits = forward(model, {"inputs": dict(inputs)}).logits.float()  # (B, C, h, w)
    probs = logits.softmax(dim=1)
    if flip:
        flipped = {name: t.flip(-1) for name, t in inputs.items()}
        logits_f = forward(model, {"inputs": flipped}).logits.float()
        probs = 0.5 * (probs + logits_f.softmax(dim=1).flip(-1))
    return probs


def _probs_slide(
    model: nn.Module,
    forward: ForwardFn,
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
            p = _probs(model, forward, crop, flip)  # (B, C, wh, ww)
            if total is None:
                total = torch.zeros(p.shape[0], p.shape[1], ph, pw, device=p.device)
            total[..., y : y + wh, x : x + ww] += p
            count[..., y : y + wh, x : x + ww] += 1
    assert total is not None
    return (total / count)[..., :h, :w]


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    forward: ForwardFn,
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
        model: The model, in eval mode.
        forward: `forward(model, batch) -> ExpertOutput`.
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
                p = _probs(model, forward, scaled, flip)
            elif mode == "pad":
                sh, sw = max(1, round(h * s)), max(1, round(w * s))
                scaled = _resize(inputs, (sh, sw), nearest)
                target = (
                    math.ceil(sh / SIZE_MULTIPLE) * SIZE_MULTIPLE,
                    math.ceil(sw / SIZE_MULTIPLE) * SIZE_MULTIPLE,
                )
                p = _probs(model, forward, _pad(scaled, target), flip)[..., :sh, :sw]
            else:
                assert size is not None
                scaled = _resize(inputs, (max(1, round(h * s)), max(1, round(w * s))), nearest)
                p = _probs_slide(model, forward, scaled, window=tuple(size), overlap=overlap, flip=flip)
            if tuple(p.shape[-2:]) != (h, w):
                p = F.interpolate(p.float(), size=(h, w), mode="bilinear", align_corners=False)
            total = p.float() if total is None else total + p.float()
    assert total is not None
    return total / len(scales)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    forward: ForwardFn,
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
        forward: `forward(model, batch) -> ExpertOutput`.
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
                forward,
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


# ---------------------------------------------------------------------------------------------------
# Checkpoint-level evaluation and prediction (`fusionseg evaluate`, `fusionseg predict`)
# ---------------------------------------------------------------------------------------------------


def checkpoint_forward(payload: Mapping[str, Any]) -> ForwardFn:
    """The forward function of a checkpoint's model: an expert reads its one modality; any other kind
    (fused models) gets the dict of modality tensors."""
    if payload.get("kind") == "expert":
        return expert_forward(payload["modalities"][0])

    def forward(model: nn.Module, batch: Mapping[str, Any]) -> ExpertOutput:
        return model(batch["inputs"])

    return forward


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


@dataclass(frozen=True)
class EvaluationReport:
    """Result of `evaluate_checkpoint`.

    Attributes:
        checkpoint: The checkpoint evaluated.
        data: The list (or folder) evaluated on.
        num_images: Images evaluated.
        modalities: The model's modalities.
        scales: Inference scales.
        flip: Whether flipped predictions were averaged in.
        size_hw: Resolution evaluated at (the checkpoint's training size).
        metrics: The scores.
        files: Written files: "confusion_npy", "confusion_png", "metrics_json" (when `out_dir`).
    """

    checkpoint: Path
    data: Path
    num_images: int
    modalities: tuple[str, ...]
    scales: tuple[float, ...]
    flip: bool
    size_hw: tuple[int, int]
    metrics: SegmentationMetrics
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "checkpoint": str(self.checkpoint),
            "data": str(self.data),
            "num_images": self.num_images,
            "modalities": list(self.modalities),
            "scales": list(self.scales),
            "flip": self.flip,
            "size_hw": list(self.size_hw),
            **self.metrics.to_dict(),
            "confusion": self.metrics.confusion.tolist(),
            "files": {k: str(v) for k, v in self.files.items()},
        }


def _eval_data_config(data_cfg: Any, data: Path) -> tuple[Any, str]:
    """Point a data config at a list file, or a folder holding the val list or a folder layout."""
    if data.is_file():
        return replace(data_cfg, root=str(data.parent), val_list=data.name, layout="list"), "val"
    if data.is_dir():
        if (data / data_cfg.val_list).is_file():
            return replace(data_cfg, root=str(data), layout="list"), "val"
        return replace(data_cfg, root=str(data.parent), layout="folders"), data.name
    raise DataError(f"{data}: evaluation data not found (give a list file or a dataset folder)")


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_dir: str | Path | None = None,
    config: Any = None,
    batch_size: int | None = None,
    device: str = "auto",
    input_transform: InputTransform | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    loaded: tuple[nn.Module, Mapping[str, Any]] | None = None,
) -> EvaluationReport:
    """Evaluate a checkpoint on a labelled list at the checkpoint's training resolution.

    Args:
        checkpoint: `.pt` file (verified, weights-only).
        data: List file with the model's modality columns and `label`, or a dataset folder.
        scales: Inference scales (probabilities averaged).
        flip: Average the horizontally flipped prediction too.
        out_dir: Where to write confusion.npy, confusion.png and metrics.json.
        config: A `RunConfig` to read the data with instead of the checkpoint's; its class count must
            match the checkpoint's.
        batch_size: Images per batch (default the checkpoint's `train.batch_size`).
        device: "auto", "cpu", "cuda", ...
        input_transform: Applied to each batch's model inputs (modality dropping/degradation).
        on_batch: Called with the number of images after each batch.
        on_start: Called once with the number of images.
        loaded: `load_for_inference(checkpoint, ...)`'s (model, payload), already on `device`, when
            the caller evaluates one checkpoint several times (robustness tables): not loaded again.

    Raises:
        CheckpointError: unreadable or incompatible checkpoint. DataError: unreadable data.
    """
    from fusionseg.config import saved_config_from_dict
    from fusionseg.data.catalog import get_dataset_info
    from fusionseg.data.dataset import build_dataset
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.engine.visualize import render_confusion_matrix
    from fusionseg.fsutil import atomic_write_bytes, atomic_write_text

    checkpoint, data = Path(checkpoint), Path(data)
    dev = resolve_device(device)
    expected = None
    if config is not None:  # data read with another config: its label space must be the checkpoint's
        expected = {"num_classes": get_dataset_info(config.data.dataset).num_classes}
    if loaded is None:
        model, payload = load_for_inference(checkpoint, device=dev, expected=expected)
    else:
        model, payload = loaded[0], dict(loaded[1])
        if expected:
            from fusionseg.engine.checkpoint import check_compatible

            check_compatible(payload, expected, source=str(checkpoint))
    cfg = config if config is not None else saved_config_from_dict(payload["config"])
    modalities = tuple(payload["modalities"])
    num_classes = int(payload["num_classes"])
    data_cfg, split = _eval_data_config(cfg.data, data)
    dataset = build_dataset(data_cfg, split, modalities=modalities, num_classes=num_classes)
    if on_start is not None:
        on_start(len(dataset))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size or cfg.train.val_batch_size or cfg.train.batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    count = {"n": 0}

    def counted(n: int) -> None:
        count["n"] += n
        if on_batch is not None:
            on_batch(n)

    metrics = evaluate_model(
        model,
        checkpoint_forward(payload),
        loader,
        num_classes=num_classes,
        modalities=modalities,
        class_names=payload.get("class_names"),
        device=dev,
        mode="pad",
        scales=tuple(scales),
        flip=flip,
        input_transform=input_transform,
        nearest=[m for m in modalities if get_modality(m).kind == "depth"],
        on_batch=counted,
    )
    files: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        buffer = io.BytesIO()
        np.save(buffer, metrics.confusion)
        files["confusion_npy"] = atomic_write_bytes(out / "confusion.npy", buffer.getvalue())
        from fusionseg.data.io import write_png

        files["confusion_png"] = write_png(
            out / "confusion.png", render_confusion_matrix(metrics.confusion, metrics.class_names)
        )
    report = EvaluationReport(
        checkpoint=checkpoint,
        data=data,
        num_images=count["n"],
        modalities=modalities,
        scales=tuple(float(s) for s in scales),
        flip=flip,
        size_hw=(data_cfg.height_px, data_cfg.width_px),
        metrics=metrics,
        files=files,
    )
    if out_dir is not None:
        path = Path(out_dir) / "metrics.json"
        files["metrics_json"] = path
        atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report


# -- prediction on files ----------------------------------------------------------------------------

LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class PredictFrame:
    """One frame to predict: an id and a file per modality (model inputs, optionally "rgb")."""

    id: str
    files: dict[str, Path]


@dataclass(frozen=True)
class PredictedFrame:
    """What `predict_files` wrote for one frame.

    Attributes:
        id: Frame id (input file stem, made unique).
        inputs: Modality -> file read.
        size_hw: Input (and output) size in pixels.
        outputs: "labels" (raw ids PNG), "color" (palette PNG), "overlay" (when an RGB image exists).
        class_fractions: Class name -> share of the frame's pixels.
    """

    id: str
    inputs: dict[str, Path]
    size_hw: tuple[int, int]
    outputs: dict[str, Path]
    class_fractions: dict[str, float]


@dataclass(frozen=True)
class PredictSummary:
    """Result of `predict_files`."""

    checkpoint: Path
    out_dir: Path
    mode: str
    frames: list[PredictedFrame]
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)  # (frame id, one-line reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "out_dir": str(self.out_dir),
            "mode": self.mode,
            "seconds": round(self.seconds, 3),
            "failed": [{"id": i, "error": e} for i, e in self.failures],
            "frames": [
                {
                    "id": f.id,
                    "inputs": {k: str(v) for k, v in f.inputs.items()},
                    "size_hw": list(f.size_hw),
                    "outputs": {k: str(v) for k, v in f.outputs.items()},
                    "class_fractions": {k: round(v, 4) for k, v in f.class_fractions.items()},
                }
                for f in self.frames
            ],
        }


def _image_files(folder: Path) -> list[Path]:
    from fusionseg.data.listfile import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    from fusionseg.data.listfile import IMAGE_SUFFIXES

    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def collect_frames(
    inputs: Sequence[str | Path],
    *,
    primary: str,
    needed: Sequence[str],
    modality_dirs: Mapping[str, str | Path] | None = None,
) -> list[PredictFrame]:
    """Expand files, folders and list files into frames with a file per needed modality.

    Args:
        inputs: Image files of the `primary` modality, folders of them, or list files (one path per line,
            or a `# columns:` header naming modality columns).
        primary: Modality of the given files (the model's first).
        needed: Modalities each frame must have (the model's); "rgb" is added when found, for overlays.
        modality_dirs: Modality -> folder holding that modality's file with the same stem.

    Raises:
        DataError: a missing input, an empty folder, or a needed modality without a file (names it).
    """
    from fusionseg.data.listfile import LABEL_COLUMN, read_header, read_list

    dirs = {k: Path(v) for k, v in (modality_dirs or {}).items()}
    for name, folder in dirs.items():
        if not folder.is_dir():
            raise DataError(f"--modality-dir {name}={folder}: not a folder")
    raw: list[dict[str, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = _image_files(path)
            if not files:
                raise DataError(f"{path}: folder holds no image files")
            raw.extend({primary: f} for f in files)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            has_header = read_header(path) is not None
            listed = read_list(path, columns=None if has_header else [primary], allow_absolute=True)
            raw.extend({c: f for c, f in s.files.items() if c != LABEL_COLUMN} for s in listed.samples)
        elif path.is_file():
            raw.append({primary: path})
        else:
            raise DataError(f"{path}: input not found")
    frames: list[PredictFrame] = []
    ids: dict[str, int] = {}
    for files in raw:
        anchor = files.get(primary) or next(iter(files.values()))
        for name in {*needed, "rgb", *dirs}:
            if name in files:
                continue
            if name in dirs:
                found = _find_by_stem(dirs[name], anchor.stem)
                if found is not None and found.resolve() not in {f.resolve() for f in files.values()}:
                    files[name] = found
                    continue
            if name in needed:
                where = f"in {dirs[name]}" if name in dirs else "(pass --modality-dir NAME=DIR)"
                raise DataError(f"{anchor}: no {name!r} file with stem {anchor.stem!r} {where}")
        frame_id = anchor.stem
        if frame_id in ids:
            ids[frame_id] += 1
            frame_id = f"{anchor.parent.name}_{anchor.stem}"
            if frame_id in ids:
                frame_id = f"{frame_id}_{ids[anchor.stem]}"
        ids.setdefault(frame_id, 0)
        frames.append(PredictFrame(id=frame_id, files=dict(files)))
    if not frames:
        raise DataError("no input frames given")
    return frames


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG header (None for other formats)."""
    from fusionseg.data.io import read_image_header

    header = read_image_header(path, unknown_ok=True)
    return header.bit_depth if header is not None and header.format == "PNG" else None


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


# frames larger than this (megapixels) are not predicted at native size (pad/slide) unless asked for
NATIVE_MEGAPIXELS = 16.0


def read_predict_input(
    name: str, path: Path, *, depth_scale: str | float | None, depth_sensor: str = "any"
) -> np.ndarray:
    """Read one modality file for prediction as the training pipeline does.

    Depth files in 16 bits need `depth_scale` (never guessed); float depth files are taken as metres.
    Depth must fit the range of `depth_sensor` (`fusionseg.data.io.DEPTH_SENSORS` key, or "off"), so a
    wrong `depth_scale` is refused with the units that would fit.

    Returns:
        (H, W, C) float32 (0-255 images, metres for depth).

    Raises:
        DataError: 16-bit depth without a depth scale, a 16-bit file where a prepared 8-bit image
            (JET/HHA/...) is needed, or an unreadable file.
    """
    from fusionseg.data.dataset import read_modality
    from fusionseg.data.modality_specs import get_modality

    spec = get_modality(name)
    bits = _png_bit_depth(path)
    if spec.kind == "depth":
        if depth_scale is None:
            if bits == 16 or (bits is None and path.suffix.lower() not in (".tif", ".tiff", ".exr")):
                raise DataError(
                    f"{path}: the model reads this file as {name!r} depth; pass --depth-scale with the "
                    "file's unit (mm, 0.1mm, 1e-4m, kitti, m or metres per unit): units are never guessed"
                )
            depth_scale = 1.0  # float depth images hold metres
        return read_modality(name, path, depth_scale_m=depth_scale, depth_sensor=depth_sensor)
    if bits == 16:
        raise DataError(
            f"{path}: 16-bit image, but the checkpoint reads {name!r} as an 8-bit image; "
            + ("convert depth with `fusionseg prepare-depth` first" if name != "rgb" else "give an 8-bit RGB")
        )
    return read_modality(name, path, depth_scale_m=1.0)


def _label_space(payload: Mapping[str, Any]) -> tuple[tuple[int, int], list[str], list[Any]]:
    """(training size, class names, palette) of a checkpoint, from its own keys or its config."""
    from fusionseg.data.catalog import get_dataset_info

    data_cfg = (payload.get("config") or {}).get("data") or {}
    size = payload.get("input_size") or [data_cfg.get("height_px", 384), data_cfg.get("width_px", 768)]
    names, palette = payload.get("class_names"), payload.get("palette")
    if names is None or palette is None:
        info = get_dataset_info(data_cfg.get("dataset", "synthetic"))
        names, palette = list(info.classes), [list(c) for c in info.palette]
    return (int(size[0]), int(size[1])), list(names), list(palette)


def predict_files(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    depth_scale: str | float | None = None,
    modality_dirs: Mapping[str, str | Path] | None = None,
    mode: Mode = "resize",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: str = "auto",
    alpha: float = 0.5,
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[PredictedFrame], None] | None = None,
    depth_sensor: str = "auto",
    max_native_megapixels: float = NATIVE_MEGAPIXELS,
) -> PredictSummary:
    """Segment image files of any size with a checkpoint and write label maps.

    Memory: "resize" (the default) holds the decoded frame, its float copy, and the full-size labels
    and colour images, never full-size class maps (`upsampled_labels` works in 64 MB bands): a 9000 x
    11000 RGB frame predicts in 2.5 GB. "pad" and "slide" run at the native size and keep (C, H, W)
    maps: frames above `max_native_megapixels` are refused there, naming the option.

    For each frame writes `labels/<id>.png` (raw class ids, 8-bit or 16-bit), `color/<id>.png`
    (palette colours) and, when an RGB image is available, `overlay/<id>.png`; all at the input's size.

    Args:
        checkpoint: `.pt` file.
        inputs: Files, folders or list files of the model's first modality (see `collect_frames`).
        out_dir: Output folder.
        depth_scale: Unit of 16-bit depth inputs (name from `fusionseg.data.io.DEPTH_UNITS` or metres per
            unit); required when the model reads depth from 16-bit files.
        modality_dirs: Folders of the other modalities' files (matched by stem), incl. "rgb" for overlays.
        mode: "resize" to the checkpoint's training size (default), "pad" at native size to multiples of
            16, or "slide" training-size windows.
        scales: Inference scales. flip: Also average the flipped prediction.
        device: "auto", "cpu", "cuda", ...
        alpha: Label weight in overlays.
        on_start: Called with the number of frames. on_frame: Called after each frame.
        depth_sensor: Range depth inputs must fit (`fusionseg.data.io.DEPTH_SENSORS` key or "off");
            "auto" takes the one the checkpoint was trained with (its data.depth_sensor / dataset).
        max_native_megapixels: Largest frame (H x W / 1e6) predicted at native size ("pad", "slide").

    Raises:
        CheckpointError, DataError: unreadable checkpoint or inputs (named).
    """
    import time

    from fusionseg.data.io import read_image, write_png
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.data.normalization import normalize_input
    from fusionseg.data.transforms import LINEAR, NEAREST
    from fusionseg.data.transforms import resize as resize_array
    from fusionseg.engine.visualize import colorize_labels, overlay_labels
    from fusionseg.fsutil import ensure_writable_dir

    t0 = time.perf_counter()
    checkpoint, out = Path(checkpoint), Path(out_dir)
    if depth_scale is not None:
        from fusionseg.data.io import parse_depth_scale

        parse_depth_scale(depth_scale)  # fail before any work
    dev = resolve_device(device)
    model, payload = load_for_inference(checkpoint, device=dev)
    if depth_sensor == "auto":
        from fusionseg.config import saved_config_from_dict
        from fusionseg.data.dataset import resolve_depth_sensor

        depth_sensor = resolve_depth_sensor(saved_config_from_dict(payload.get("config") or {}).data)
    forward = checkpoint_forward(payload)
    modalities = list(payload["modalities"])
    frames = collect_frames(inputs, primary=modalities[0], needed=modalities, modality_dirs=modality_dirs)
    ensure_writable_dir(out)
    if on_start is not None:
        on_start(len(frames))
    size, names, palette = _label_space(payload)
    norm = payload.get("normalization") or {}
    depth_like = [m for m in modalities if get_modality(m).kind == "depth"]

    def predict_one(frame: PredictFrame) -> PredictedFrame:
        """Read, predict and write one frame (DataError: a bad input file, named)."""
        arrays = {
            m: read_predict_input(m, frame.files[m], depth_scale=depth_scale, depth_sensor=depth_sensor)
            for m in modalities
        }
        shapes = {m: a.shape[:2] for m, a in arrays.items()}
        if len(set(shapes.values())) > 1:
            raise DataError(f"frame {frame.id}: modality files differ in size: {shapes}")
        h, w = next(iter(shapes.values()))
        if mode != "resize" and h * w > max_native_megapixels * 1e6:
            raise DataError(
                f"{frame.files[modalities[0]]}: {h}x{w} is {h * w / 1e6:.0f} megapixels, above the "
                f"{max_native_megapixels:g} predicted at native size ({mode} keeps full-size class maps, "
                f"about {h * w * (len(names) + 1) * 4 / 2**30:.1f} GB); use --resize, or raise "
                "--max-native-megapixels"
            )
        tensors = {}
        for m, array in arrays.items():
            if mode == "resize":
                interp = NEAREST if m in depth_like else LINEAR
                array = resize_array(array, size, interpolation=interp)
                if array.ndim == 2:
                    array = array[:, :, None]
            if m in norm:
                array = normalize_input(array, *norm[m])
            tensors[m] = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), np.float32))[None]
        del arrays, array  # the full-size float inputs (1.2 GB for a 100-megapixel colour frame)
        tensors = inputs_to_device(tensors, dev)
        probs = predict_probs(
            model,
            forward,
            tensors,
            mode="pad" if mode == "resize" else mode,
            size=size,  # type: ignore[arg-type]
            scales=scales,
            flip=flip,
            nearest=depth_like,
        )  # (1, C, h', w')
        # bilinear upsampling of the probabilities to the input's size, a band of rows at a time: the
        # full-size (C, H, W) float maps of a 100-megapixel frame alone would take C x 400 MB
        labels = upsampled_labels(
            probs[0], (h, w), dtype=np.uint8 if len(names) <= 256 else np.uint16
        )  # (H, W)
        del tensors, probs
        color = colorize_labels(labels, palette)
        outputs = {
            "labels": write_png(out / "labels" / f"{frame.id}.png", labels),
            "color": write_png(out / "color" / f"{frame.id}.png", color),
        }
        if "rgb" in frame.files:
            try:
                rgb = read_image(frame.files["rgb"])
            except DataError:
                rgb = None
            if rgb is not None and rgb.shape[:2] == (h, w):
                blend = overlay_labels(rgb, color, alpha=alpha)
                outputs["overlay"] = write_png(out / "overlay" / f"{frame.id}.png", blend)
        counts = np.bincount(labels.reshape(-1), minlength=len(names))
        fractions = {names[i]: float(c) / labels.size for i, c in enumerate(counts[: len(names)]) if c}
        result = PredictedFrame(
            id=frame.id, inputs=dict(frame.files), size_hw=(h, w), outputs=outputs, class_fractions=fractions
        )
        return result

    # a bad frame (unreadable, wrong unit, sizes that differ) is listed and skipped, not fatal
    results: list[PredictedFrame] = []
    failures: list[tuple[str, str]] = []
    for frame in frames:
        try:
            result = predict_one(frame)
        except DataError as exc:
            failures.append((frame.id, str(exc)))
            continue
        results.append(result)
        if on_frame is not None:
            on_frame(result)
    if failures and not results:  # nothing could be predicted: the (first) reason is the error
        more = f" (all {len(failures)} frames failed)" if len(failures) > 1 else ""
        raise DataError(failures[0][1] + more)
    return PredictSummary(
        checkpoint=checkpoint,
        out_dir=out,
        mode=mode,
        frames=results,
        seconds=time.perf_counter() - t0,
        failures=failures,
    )
