"""`fusionseg evaluate --degrade/--drop-modality/--gate-report`: robustness of a checkpoint.

The checkpoint is loaded once; its model is evaluated with corrupted inputs (`engine.robustness.
Degradation`) and, for a fused model, a `GateRecorder` hooked on that model's fusion gates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusionseg.data.io import write_png
from fusionseg.engine.inference import load_for_inference
from fusionseg.engine.robustness import (
    Degradation,
    GateRecorder,
    GateReport,
    parse_degradations,
    render_gate_plot,
)
from fusionseg.engine.runtime import resolve_device
from fusionseg.errors import ConfigError
from fusionseg.fsutil import atomic_write_text
from fusionseg.fusion.fused import CMoDEModel, SSMAModel
from fusionseg.workflows.evaluate import evaluate_loaded, expected_label_space


@dataclass(frozen=True)
class RobustnessReport:
    """Result of `evaluate_robustness`.

    Attributes:
        evaluation: The usual evaluation report (metrics of the corrupted inputs).
        degradations: Modality -> corruption applied ("zero" for dropped modalities).
        seed: Seed of the corruptions.
        gates: Gate means, when asked for.
        files: Written files: "gates_png", "gates_json" (with `out_dir` and a gate report).
    """

    evaluation: Any
    degradations: dict[str, str]
    seed: int
    gates: GateReport | None
    files: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: the evaluation's keys plus degradations, seed and gates."""
        d = self.evaluation.to_dict()
        d["degradations"] = dict(self.degradations)
        d["degradation_seed"] = self.seed
        d["gates"] = None if self.gates is None else self.gates.to_dict()
        d["files"] = {**d.get("files", {}), **{k: str(v) for k, v in self.files.items()}}
        return d


def evaluate_robustness(
    checkpoint: str | Any,
    data: str | Any,
    *,
    degrade: Sequence[str] = (),
    drop: Sequence[str] = (),
    gate_report: bool = False,
    seed: int = 0,
    out_dir: str | Any = None,
    config: Any = None,
    device: str = "auto",
    **evaluate_kwargs: Any,
) -> RobustnessReport:
    """Evaluate a checkpoint with dropped/degraded modalities and, optionally, a gate report.

    Args:
        checkpoint: Expert or fused checkpoint.
        data: Labelled list or dataset folder.
        degrade: "NAME=KIND" corruptions (`DEGRADATIONS`).
        drop: Modalities whose input is zeroed.
        gate_report: Record the fused model's gates (SSMA/CMoDE checkpoints only).
        seed: Seed of the corruptions.
        out_dir: Also receives gates.png and gates.json.
        config: Data config override, as for `evaluate_checkpoint`.
        device: "auto", "cpu", "cuda", ...
        **evaluate_kwargs: scales, flip, batch_size, on_start, on_batch.

    Returns:
        `RobustnessReport`.

    Raises:
        ConfigError: bad corruption, a modality the model does not use, or a gate report asked of an
            expert checkpoint. CheckpointError / DataError as `evaluate_checkpoint`.
    """
    kinds = parse_degradations(degrade, drop)
    dev = resolve_device(device)
    model, payload = load_for_inference(checkpoint, device=dev, expected=expected_label_space(config))
    transform = None
    if kinds:
        modalities = list(payload.get("modalities") or [])
        unknown = [m for m in kinds if m not in modalities]
        if unknown:
            raise ConfigError(f"`degrade`/`drop` {unknown[0]!r}: {checkpoint} uses {', '.join(modalities)}")
        normalization = payload.get("normalization") or {}
        if config is not None:
            normalization = {m: tuple(v) for m, v in config.data.normalization.items()}
        transform = Degradation(kinds, seed=seed, normalization=normalization)
    if gate_report and not isinstance(model, (SSMAModel, CMoDEModel)):
        raise ConfigError("gate_report: needs a fused (ssma or cmode) checkpoint; this one is an expert")
    recorder = GateRecorder(model) if gate_report else None  # hooks this model's fusion gates
    with recorder if recorder is not None else nullcontext():
        evaluation = evaluate_loaded(
            model,
            payload,
            data,
            checkpoint=checkpoint,
            out_dir=out_dir,
            config=config,
            device=dev,
            input_transform=transform,
            **evaluate_kwargs,
        )
    gates = None
    files: dict[str, Any] = {}
    if recorder is not None:
        if evaluation.metrics.class_names is not None:
            recorder.class_names = list(evaluation.metrics.class_names)
        gates = recorder.report()
        if out_dir is not None:
            files["gates_png"] = write_png(Path(out_dir) / "gates.png", render_gate_plot(gates))
            files["gates_json"] = atomic_write_text(
                Path(out_dir) / "gates.json", json.dumps(gates.to_dict(), indent=2) + "\n"
            )
    return RobustnessReport(evaluation, kinds, seed, gates, files)
