"""`fusionseg evaluate`: a checkpoint's scores on a labelled list at its training resolution.

Loading and evaluating are separate steps: `evaluate_checkpoint` loads a checkpoint and hands it to
`evaluate_loaded`, which evaluates an already-loaded model (and its checkpoint metadata) and may be
called many times on one model (robustness tables, `workflows.report`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fusionseg.engine.checkpoint import check_compatible
from fusionseg.engine.inference import InputTransform, evaluate_model, load_for_inference
from fusionseg.engine.metrics import SegmentationMetrics
from fusionseg.engine.runtime import resolve_device
from fusionseg.errors import DataError


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


def expected_label_space(config: Any) -> dict[str, Any] | None:
    """Keys a checkpoint must have to be evaluated on data read with `config` (None: no override)."""
    from fusionseg.data.catalog import get_dataset_info

    if config is None:
        return None
    # data read with another config: its label space must be the checkpoint's
    return {"num_classes": get_dataset_info(config.data.dataset).num_classes}


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
) -> EvaluationReport:
    """Load a checkpoint and evaluate it on a labelled list at its training resolution.

    Args:
        checkpoint: `.pt` file (verified, weights-only).
        data, scales, flip, out_dir, config, batch_size, input_transform, on_batch, on_start: See
            `evaluate_loaded`.
        device: "auto", "cpu", "cuda", ...

    Raises:
        CheckpointError: unreadable or incompatible checkpoint. DataError: unreadable data.
    """
    dev = resolve_device(device)
    loaded = load_for_inference(checkpoint, device=dev, expected=expected_label_space(config))
    return evaluate_loaded(
        *loaded,
        data,
        checkpoint=checkpoint,
        scales=scales,
        flip=flip,
        out_dir=out_dir,
        config=config,
        batch_size=batch_size,
        device=dev,
        input_transform=input_transform,
        on_batch=on_batch,
        on_start=on_start,
    )


def evaluate_loaded(
    model: nn.Module,
    payload: Mapping[str, Any],
    data: str | Path,
    *,
    checkpoint: str | Path,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_dir: str | Path | None = None,
    config: Any = None,
    batch_size: int | None = None,
    device: torch.device | str = "auto",
    input_transform: InputTransform | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> EvaluationReport:
    """Evaluate a loaded model on a labelled list at its checkpoint's training resolution.

    Args:
        model: `load_for_inference`'s model, on `device`; not modified, so it can be evaluated again.
        payload: Its checkpoint metadata (`load_for_inference`'s payload).
        data: List file with the model's modality columns and `label`, or a dataset folder.
        checkpoint: The `.pt` file the model came from (recorded in the report).
        scales, flip: Inference scales (probabilities averaged); also average the flipped prediction.
        out_dir: Where to write confusion.npy, confusion.png and metrics.json.
        config: A `RunConfig` to read the data with instead of the checkpoint's; its class count must
            match the checkpoint's.
        batch_size: Images per batch (default the checkpoint's `train.batch_size`).
        device: "auto", "cpu", "cuda", ... or a device.
        input_transform: Applied to each batch's model inputs (modality dropping/degradation).
        on_batch, on_start: Called with the images of each batch; once with the number of images.

    Raises:
        CheckpointError: class count differing from `config`'s dataset. DataError: unreadable data.
    """
    from fusionseg.config import saved_config_from_dict
    from fusionseg.data.modality_specs import get_modality

    checkpoint, data = Path(checkpoint), Path(data)
    dev = resolve_device(device) if isinstance(device, str) else device
    expected = expected_label_space(config)
    if expected:
        check_compatible(payload, expected, source=str(checkpoint))
    cfg = config if config is not None else saved_config_from_dict(payload["config"])
    modalities = tuple(payload["modalities"])
    data_cfg, loader = _eval_loader(cfg, data, payload, batch_size=batch_size, on_start=on_start)
    count = {"n": 0}

    def counted(n: int) -> None:
        count["n"] += n
        if on_batch is not None:
            on_batch(n)

    metrics = evaluate_model(
        model,
        loader,
        num_classes=int(payload["num_classes"]),
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
    report = EvaluationReport(
        checkpoint=checkpoint,
        data=data,
        num_images=count["n"],
        modalities=modalities,
        scales=tuple(float(s) for s in scales),
        flip=flip,
        size_hw=(data_cfg.height_px, data_cfg.width_px),
        metrics=metrics,
    )
    if out_dir is not None:
        _write_report(report, Path(out_dir))
    return report


def _write_report(report: EvaluationReport, out: Path) -> None:
    """confusion.npy, confusion.png and metrics.json in `out` (atomic writes), listed in `report.files`."""
    from fusionseg.fsutil import atomic_write_text

    report.files.update(_write_confusion(report.metrics, out))
    path = out / "metrics.json"
    report.files["metrics_json"] = path
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")


def _eval_loader(
    cfg: Any,
    data: Path,
    payload: Mapping[str, Any],
    *,
    batch_size: int | None,
    on_start: Callable[[int], None] | None,
) -> tuple[Any, torch.utils.data.DataLoader]:
    """(data config, loader in order) of the evaluation data, read as the checkpoint's model needs."""
    from fusionseg.data.dataset import build_dataset

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
    return data_cfg, loader


def _write_confusion(metrics: SegmentationMetrics, out_dir: str | Path) -> dict[str, Path]:
    """confusion.npy and confusion.png in `out_dir` (atomic writes)."""
    from fusionseg.data.io import write_png
    from fusionseg.engine.visualize import render_confusion_matrix
    from fusionseg.fsutil import atomic_write_bytes

    out = Path(out_dir)
    files: dict[str, Path] = {}
    buffer = io.BytesIO()
    np.save(buffer, metrics.confusion)
    files["confusion_npy"] = atomic_write_bytes(out / "confusion.npy", buffer.getvalue())
    files["confusion_png"] = write_png(
        out / "confusion.png", render_confusion_matrix(metrics.confusion, metrics.class_names)
    )
    return files
