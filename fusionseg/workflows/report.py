"""The pipeline's report: one val mIoU table, clean and under sensor faults, and a picture of predictions.

* `parse_conditions` reads `fusion.pipeline_robustness`: each condition is "NAME=KIND[,NAME=KIND...]"
  with the corruptions of `engine.robustness` (zero = the modality is dropped, noise, dark, fog).
* `evaluate_models` loads every model once and evaluates it on the val list (`evaluate_loaded`),
  clean and once per condition with a seeded `Degradation` as its input transform. An expert is
  evaluated again only under conditions that corrupt its own modality; under the others its input is
  the clean one, so its clean score is repeated (status "unaffected"). Each finished evaluation leaves
  `evaluated.json` beside its `metrics.json`, naming the checkpoint's sha256, the val list, the
  condition and the seed; a rerun with the same four reuses the score (status "skipped").
* `render_predictions` predicts a few val frames with every model (each checkpoint loaded once) and
  lays them out with `engine.visualize.render_comparison_grid`: inputs | ground truth | one column per
  model.
* `write_results` saves the table as `results.json` and `results.md` (atomic writes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from fusionseg.config import RunConfig
from fusionseg.data.catalog import get_dataset_info
from fusionseg.data.dataset import build_dataset
from fusionseg.data.modality_specs import get_modality
from fusionseg.data.normalization import denormalize_input
from fusionseg.engine.checkpoint import sidecar_path
from fusionseg.engine.inference import load_for_inference, predict_probs, select_inputs
from fusionseg.engine.robustness import Degradation, parse_degradations
from fusionseg.engine.runtime import inputs_to_device, resolve_device
from fusionseg.engine.visualize import colorize_labels, render_comparison_grid
from fusionseg.errors import ConfigError, DataError
from fusionseg.fsutil import atomic_write_text, sha256_file
from fusionseg.modalities.jet import depth_to_jet
from fusionseg.workflows.evaluate import evaluate_loaded

CLEAN = "clean"
CONDITIONS_KEY = "fusion.pipeline_robustness"
KIND_WORDS = {"zero": "dropped"}  # column titles: "rgb dropped", "rgb dark", "depth noise"
RECORD_FILE = "evaluated.json"  # what an evaluation folder's metrics.json was computed from
DEPTH_PERCENTILE = 99.0  # depth columns of the picture: JET range per frame up to this percentile ...
MIN_JET_RANGE_M = 0.1  # ... of its valid depth, at least this
METRIC = "val mIoU: mean IoU over classes 1..C-1 present in ground truth or prediction"


# ---------------------------------------------------------------------------------------------------
# Conditions
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One column of the results table.

    Attributes:
        name: "clean", or the normalised spec ("rgb=zero", "rgb=dark,depth=noise").
        kinds: Modality -> corruption (`engine.robustness.DEGRADATIONS`); empty for "clean".
    """

    name: str
    kinds: dict[str, str]

    @property
    def title(self) -> str:
        """Column title: "clean", "rgb dropped", "rgb dark + depth noise"."""
        if not self.kinds:
            return CLEAN
        return " + ".join(f"{m} {KIND_WORDS.get(k, k)}" for m, k in self.kinds.items())

    @property
    def slug(self) -> str:
        """Folder name: "clean", "rgb-zero", "rgb-dark_depth-noise"."""
        return "_".join(f"{m}-{k}" for m, k in self.kinds.items()) or CLEAN

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "degradations": dict(self.kinds)}


def parse_conditions(
    specs: Sequence[str], modalities: Sequence[str]
) -> tuple[tuple[Condition, ...], tuple[str, ...]]:
    """Check `fusion.pipeline_robustness` and keep the conditions the pipeline's modalities allow.

    Args:
        specs: "NAME=KIND[,NAME=KIND...]" strings.
        modalities: `data.modalities` of the pipeline.

    Returns:
        (clean condition followed by the kept ones, specs skipped because they name a modality outside
        `modalities`).

    Raises:
        ConfigError: malformed entry, unknown kind or modality, a lighting corruption on depth, or a
            condition given twice (the message starts with the config key).
    """
    kept: list[Condition] = [Condition(CLEAN, {})]
    skipped: list[str] = []
    for spec in specs:
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        if not entries:
            raise ConfigError(f"{CONDITIONS_KEY}: empty condition {spec!r}")
        try:
            kinds = parse_degradations(entries)
        except ConfigError as exc:
            raise ConfigError(f"{CONDITIONS_KEY}: {exc}") from None
        name = ",".join(f"{m}={k}" for m, k in kinds.items())
        if any(c.name == name for c in kept):
            raise ConfigError(f"{CONDITIONS_KEY}: condition {name!r} given twice")
        if any(m not in modalities for m in kinds):
            skipped.append(name)
        else:
            kept.append(Condition(name, kinds))
    return tuple(kept), tuple(skipped)


# ---------------------------------------------------------------------------------------------------
# Evaluation of every model under every condition
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One cell of the results table.

    Attributes:
        miou: Val mIoU (0..1; None when no class occurs).
        status: "done" (evaluated now), "skipped" (a finished evaluation of the same checkpoint, data,
            condition and seed was reused) or "unaffected" (the model reads none of the corrupted
            modalities: its clean score).
        metrics: The metrics.json the score comes from.
    """

    miou: float | None
    status: Literal["done", "skipped", "unaffected"]
    metrics: Path

    def to_dict(self) -> dict[str, Any]:
        return {"miou": self.miou, "status": self.status, "metrics": str(self.metrics)}


@dataclass(frozen=True)
class ResultsTable:
    """Val mIoU of every model (rows) clean and under every condition (columns).

    Attributes:
        data: The val list (or folder) evaluated on.
        num_images: Images per evaluation.
        seed: Seed of the corruptions.
        conditions: Columns, "clean" first.
        skipped_conditions: Configured conditions left out (they name a modality the pipeline lacks).
        scores: Model -> condition name -> score, models in pipeline order.
        checkpoints: Model -> checkpoint evaluated.
        training: Model -> `TrainingSummary` of the run that made its checkpoint (where it logged).
    """

    data: Path
    num_images: int
    seed: int
    conditions: tuple[Condition, ...]
    skipped_conditions: tuple[str, ...]
    scores: dict[str, dict[str, Score]]
    checkpoints: dict[str, Path]
    training: dict[str, TrainingSummary] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.scores)

    def miou(self, model: str, condition: str = CLEAN) -> float | None:
        """The score of one cell."""
        return self.scores[model][condition].miou

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: data, metric, conditions (columns) and per model the score of each condition."""
        return {
            "data": str(self.data),
            "num_images": self.num_images,
            "metric": METRIC,
            "degradation_seed": self.seed,
            "conditions": [c.to_dict() for c in self.conditions],
            "skipped_conditions": list(self.skipped_conditions),
            "models": {
                model: {
                    "checkpoint": str(self.checkpoints[model]),
                    "training": self.training[model].to_dict() if model in self.training else None,
                    "scores": {name: s.to_dict() for name, s in row.items()},
                }
                for model, row in self.scores.items()
            },
        }

    def to_markdown(self) -> str:
        """The table in Markdown, mIoU in %; scores repeated from the clean column are in italics."""
        head = ["model", *(c.title for c in self.conditions)]
        lines = [
            f"Val mIoU (%) on {self.data} ({self.num_images} images); corruptions seeded {self.seed}.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(self.conditions)) + "|",
        ]
        for model, row in self.scores.items():
            cells = []
            for c in self.conditions:
                text = format_miou(row[c.name].miou)
                cells.append(f"*{text}*" if row[c.name].status == "unaffected" else text)
            lines.append("| " + " | ".join([model, *cells]) + " |")
        lines += [
            "",
            "Italics: the model reads none of the corrupted modalities, so its clean score is repeated.",
        ]
        if self.training:
            runs = [f"{m} {t.describe()}" for m, t in self.training.items()]
            lines.append(f"Training (steps run, wall clock): {'; '.join(runs)}.")
        if self.skipped_conditions:
            lines.append(f"Skipped (modality not in the pipeline): {', '.join(self.skipped_conditions)}.")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TrainingSummary:
    """How long the run behind a checkpoint trained (its `metrics.csv`, last training row).

    Attributes:
        steps: Optimiser steps the run made.
        seconds: Wall-clock seconds of its training loop (validation included).
        best_step: Step of the checkpoint evaluated (best.pt may be earlier than the last step).
    """

    steps: int
    seconds: float | None
    best_step: int | None = None

    def describe(self) -> str:
        text = f"{self.steps} steps"
        if self.seconds is not None:
            text += f" in {self.seconds:.0f} s"
        if self.best_step is not None and self.best_step != self.steps:
            text += f" (best at {self.best_step})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "best_step": self.best_step}


def training_summary(checkpoint: str | Path, *, best_step: int | None = None) -> TrainingSummary | None:
    """The `TrainingSummary` of the run folder holding `checkpoint` (None without a readable log)."""
    import csv

    path = Path(checkpoint).parent / "metrics.csv"
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [
                r for r in csv.DictReader(fh) if r.get("split") == "train" and (r.get("step") or "").isdigit()
            ]
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows:
        return None
    last = rows[-1]
    try:
        seconds = float(last["wall_s"]) if last.get("wall_s") else None
    except ValueError:
        seconds = None
    return TrainingSummary(int(last["step"]), seconds, best_step)


def format_miou(miou: float | None) -> str:
    """mIoU as a percentage with one decimal ("-" when undefined)."""
    return "-" if miou is None else f"{100 * miou:.1f}"


def _digest(path: Path) -> str | None:
    """The checkpoint's recorded sha256 (its sidecar), without reading the checkpoint itself."""
    try:
        return sidecar_path(path).read_text(encoding="utf-8").split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _data_digest(data: Path) -> str | None:
    return sha256_file(data) if data.is_file() else None


def _reuse(folder: Path, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stored record of `folder` when it matches `record` and its metrics.json exists."""
    if record["checkpoint_sha256"] is None or not (folder / "metrics.json").is_file():
        return None
    try:
        stored = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in record.items()):
        return None
    if not isinstance(stored.get("modalities"), list) or not isinstance(stored.get("num_images"), int):
        return None
    miou = stored.get("miou")
    return stored if miou is None or isinstance(miou, float) else None


def evaluate_models(
    checkpoints: Mapping[str, str | Path],
    data: str | Path,
    *,
    out_dir: str | Path,
    conditions: Sequence[Condition],
    skipped_conditions: Sequence[str] = (),
    seed: int = 0,
    normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    device: str = "auto",
    notify: Callable[[str], None] | None = None,
) -> ResultsTable:
    """Evaluate every model on `data`, clean and under every condition.

    Model `m` writes `<out_dir>/<m>/metrics.json` (clean, spaces in `m` become "-") and
    `<out_dir>/<m>/<condition slug>/metrics.json`, each with its confusion matrix. Each checkpoint is
    loaded once, when its first evaluation runs, for all of its conditions.

    Args:
        checkpoints: Model name -> checkpoint, in row order.
        data: Val list file (or dataset folder).
        out_dir: The pipeline's eval folder.
        conditions: Columns from `parse_conditions` ("clean" first).
        skipped_conditions: Configured conditions left out, recorded in the table.
        seed: Seed of the corruptions (`engine.robustness.Degradation`).
        normalization: `data.normalization` of the models' inputs (undone before a corruption).
        device: "auto", "cpu", "cuda", ...
        notify: Called with a short description before each evaluation that runs.

    Returns:
        The `ResultsTable`.

    Raises:
        ValueError: `conditions` does not start with the clean one.
        CheckpointError, DataError: as `evaluate_checkpoint`.
    """
    if not conditions or conditions[0].name != CLEAN:
        raise ValueError("conditions must start with the clean condition (see parse_conditions)")
    data, out = Path(data), Path(out_dir)
    job = _EvalJob(data, _data_digest(data), seed, normalization, resolve_device(device), notify)
    scores = {
        model: job.row(model, Path(ckpt), out / model.replace(" ", "-"), conditions)
        for model, ckpt in checkpoints.items()
    }
    return ResultsTable(
        data=data,
        num_images=job.num_images,
        seed=seed,
        conditions=tuple(conditions),
        skipped_conditions=tuple(skipped_conditions),
        scores=scores,
        checkpoints={m: Path(p) for m, p in checkpoints.items()},
        training={
            m: summary
            for m, p in checkpoints.items()
            if (summary := training_summary(p, best_step=job.steps.get(m))) is not None
        },
    )


@dataclass
class _EvalJob:
    """The evaluations of `evaluate_models`: one row of scores per model."""

    data: Path
    data_sha: str | None
    seed: int
    normalization: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None
    device: torch.device
    notify: Callable[[str], None] | None
    num_images: int = 0
    steps: dict[str, int | None] = field(default_factory=dict)  # model -> step of the checkpoint

    def row(
        self, model: str, ckpt: Path, model_dir: Path, conditions: Sequence[Condition]
    ) -> dict[str, Score]:
        """Scores of one model under every condition (reused, repeated or evaluated now)."""
        ckpt_sha = _digest(ckpt)
        row: dict[str, Score] = {}
        modalities: list[str] = []
        loaded = None  # (model, payload), loaded once for all of this model's conditions
        for cond in conditions:
            folder = model_dir if cond.name == CLEAN else model_dir / cond.slug
            affected = {m: k for m, k in cond.kinds.items() if m in modalities}
            if cond.name != CLEAN and not affected:
                row[cond.name] = Score(row[CLEAN].miou, "unaffected", row[CLEAN].metrics)
                continue
            record = {
                "checkpoint_sha256": ckpt_sha,
                "data": str(self.data.resolve()),
                "data_sha256": self.data_sha,
                "condition": cond.name,
                "seed": self.seed,
            }
            stored = _reuse(folder, record)
            if stored is not None:
                row[cond.name] = Score(stored["miou"], "skipped", folder / "metrics.json")
                self.steps.setdefault(model, stored.get("step"))
                modalities = modalities or list(stored["modalities"])
                self.num_images = max(self.num_images, int(stored["num_images"]))
                continue
            if self.notify is not None:
                self.notify(f"evaluate {model}" + ("" if cond.name == CLEAN else f" ({cond.title})"))
            if loaded is None:
                loaded = load_for_inference(ckpt, device=self.device)
                self.steps[model] = loaded[1].get("step")
            row[cond.name], modalities = self._evaluate(model, ckpt, loaded, folder, affected, record)
        del loaded
        return row

    def _evaluate(
        self,
        model: str,
        ckpt: Path,
        loaded: tuple[nn.Module, Mapping[str, Any]],
        folder: Path,
        affected: Mapping[str, str],
        record: dict[str, Any],
    ) -> tuple[Score, list[str]]:
        """Evaluate a loaded model under one condition and record it in `folder/evaluated.json`."""
        transform = None
        if affected:
            transform = Degradation(affected, seed=self.seed, normalization=self.normalization)
        report = evaluate_loaded(
            *loaded, self.data, checkpoint=ckpt, out_dir=folder, device=self.device, input_transform=transform
        )
        miou = report.metrics.miou
        miou = float(miou) if np.isfinite(miou) else None
        self.num_images = max(self.num_images, report.num_images)
        record = record | {
            "miou": miou,
            "modalities": list(report.modalities),
            "num_images": report.num_images,
            "step": self.steps.get(model),
        }
        atomic_write_text(folder / RECORD_FILE, json.dumps(record, indent=2) + "\n")
        return Score(miou, "done", folder / "metrics.json"), list(report.modalities)


# ---------------------------------------------------------------------------------------------------
# Picture of predictions
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionGrid:
    """Side-by-side predictions of a few val frames.

    Attributes:
        image: (H, W, 3) uint8 BGR grid (`render_comparison_grid`).
        titles: Column titles: the input modalities, "ground truth", then the models.
        frames: Ids of the frames, one per grid row.
    """

    image: NDArray[np.uint8]
    titles: tuple[str, ...]
    frames: tuple[str, ...]


def pick_frames(count: int, frames: int) -> list[int]:
    """`frames` indices spread evenly over `count` samples (all of them when there are fewer)."""
    if count <= 0 or frames <= 0:
        return []
    if frames >= count:
        return list(range(count))
    return sorted({int(round(v)) for v in np.linspace(0, count - 1, frames)})


def _input_image(name: str, chw: torch.Tensor, normalization: Mapping[str, Any]) -> NDArray[np.uint8]:
    """A model input as a picture: colour images as they are, grey replicated, depth JET-coded from 0 to
    the frame's `DEPTH_PERCENTILE` percentile of valid depth (indoor and outdoor frames both get contrast).
    """
    x = chw.numpy().transpose(1, 2, 0).astype(np.float32)  # (C, H, W) -> (H, W, C)
    if name in normalization:
        x = denormalize_input(x, *normalization[name])  # raw units again
    if get_modality(name).kind == "depth":
        depth_m = np.ascontiguousarray(np.clip(x[:, :, 0], 0.0, None), dtype=np.float32)  # (H, W)
        valid = depth_m[depth_m > 0]
        top_m = float(np.percentile(valid, DEPTH_PERCENTILE)) if valid.size else 1.0
        return depth_to_jet(depth_m, max_depth_m=max(top_m, MIN_JET_RANGE_M))
    image = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return image if image.shape[2] == 3 else np.repeat(image, 3, axis=2)


def render_predictions(
    checkpoints: Mapping[str, str | Path], cfg: RunConfig, *, frames: int, device: str = "auto"
) -> PredictionGrid:
    """Predict `frames` val frames with every model and lay out inputs, ground truth and predictions.

    Frames are spread evenly over the val list of `cfg.data`; each model sees them as in evaluation
    (the dataset's resize and normalisation, "pad" mode, one scale, no flip). Depth columns are
    JET-coded per frame from 0 to the 99th percentile of its valid depth (near blue, far red, missing
    black).

    Args:
        checkpoints: Model name -> checkpoint, in column order.
        cfg: The pipeline's config (data section, dataset palette).
        frames: Number of rows (>= 1).
        device: "auto", "cpu", "cuda", ...

    Returns:
        The `PredictionGrid`.

    Raises:
        ValueError: `frames` < 1. CheckpointError, DataError: unreadable checkpoints or data.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    info = get_dataset_info(cfg.data.dataset)
    modalities = tuple(cfg.data.modalities)
    dataset = build_dataset(cfg.data, "val", modalities=modalities, num_classes=cfg.model.num_classes)
    samples = [dataset[i] for i in pick_frames(len(dataset), frames)]
    if not samples:
        raise DataError(f"{cfg.data.root}: no val frames to draw predictions for")
    stacked = {m: torch.stack([s["inputs"][m] for s in samples]) for m in modalities}  # (K, C, H, W)
    dev = resolve_device(device)
    predictions: dict[str, NDArray[np.int64]] = {}
    for name, ckpt in checkpoints.items():
        model, payload = load_for_inference(ckpt, device=dev)
        inputs = select_inputs(stacked, payload["modalities"], source=str(ckpt))
        probs = predict_probs(
            model,
            inputs_to_device(inputs, dev),
            mode="pad",
            nearest=[m for m in inputs if get_modality(m).kind == "depth"],
        )  # (K, C, H, W)
        predictions[name] = probs.argmax(dim=1).cpu().numpy()  # (K, H, W)
        del model, probs
    titles = [f"{m} (JET)" if get_modality(m).kind == "depth" else m for m in modalities]
    titles += ["ground truth", *checkpoints]
    rows = []
    for k, sample in enumerate(samples):
        row = [_input_image(m, sample["inputs"][m], dataset.normalization) for m in modalities]
        row.append(colorize_labels(sample["label"].numpy(), info.palette))
        row += [colorize_labels(predictions[name][k], info.palette) for name in checkpoints]
        rows.append(row)
    image = render_comparison_grid(rows, titles)
    return PredictionGrid(image, tuple(titles), tuple(str(s["id"]) for s in samples))


# ---------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------


def write_results(
    table: ResultsTable, out_dir: str | Path, *, predictions: tuple[Path, PredictionGrid] | None = None
) -> dict[str, Path]:
    """Write `results.json` and `results.md` into `out_dir` (atomically).

    Args:
        table: The scores.
        out_dir: The pipeline's eval folder.
        predictions: (path, grid) of the predictions picture, recorded in results.json.

    Returns:
        {"results_json": ..., "results_md": ...}.
    """
    out = Path(out_dir)
    values = table.to_dict()
    values["predictions"] = None
    markdown = table.to_markdown()
    if predictions is not None:
        path, grid = predictions
        values["predictions"] = {"path": str(path), "columns": list(grid.titles), "frames": list(grid.frames)}
        markdown += f"\nPredictions of val frames {', '.join(grid.frames)}: {path.name}\n"
    return {
        "results_json": atomic_write_text(out / "results.json", json.dumps(values, indent=2) + "\n"),
        "results_md": atomic_write_text(out / "results.md", markdown),
    }
