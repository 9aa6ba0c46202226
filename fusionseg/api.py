"""The Python API: what every CLI verb does, as plain functions.

Notebooks and scripts use these directly; each CLI verb parses options, builds a config, makes one call
here and renders the result. Heavy modules are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fusionseg.config import RunConfig, load_config

__all__ = ["load_config", "RunConfig"]  # each section below appends its names


# ---------------------------------------------------------------------------------------------------
# Sections below are added per feature; each function is a thin wrapper over its owning module.
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# prepare-depth and the preprocessing benchmark (fusionseg.data.prepare, fusionseg.benchmark.preprocess)
# ---------------------------------------------------------------------------------------------------
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # prepare imports OpenCV: resolved lazily by __getattr__ below
    from fusionseg.data.prepare import PrepareOptions, PrepareSummary

_LAZY = {"PrepareOptions": "fusionseg.data.prepare", "PrepareSummary": "fusionseg.data.prepare"}


def __getattr__(name: str) -> Any:
    """Import re-exported classes of heavy modules on first use, keeping `import fusionseg.api` light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prepare_depth(
    input_path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    *,
    depth_scale: str | float | None = None,
    intrinsics: Any = None,
    intrinsics_one_based: bool = False,
    on_plan: Any = None,
    on_result: Any = None,
) -> PrepareSummary:
    """Complete depth and write HHA/JET/normals/EVI/NDVI images for a dataset (`prepare-depth`).

    Args:
        input_path: List file, dataset root or folder of depth images.
        out_dir: Output folder (``<product>/<id>.png``, new list files, meta.json).
        options: What to compute (`fusionseg.data.prepare.PrepareOptions`).
        depth_scale: Depth unit name or metres per stored unit; default from the dataset's meta.json.
        intrinsics: "fx,fy,cx,cy", a file, or `Intrinsics`; default from meta.json or a per-frame column.
        intrinsics_one_based: The given intrinsics use 1-based pixel centres (NYU/MATLAB).
        on_plan: Called once with the plan before processing starts.
        on_result: Called with each frame's `FrameResult` as it finishes.

    Returns:
        The run's summary; frames that failed are listed with their messages (nothing is raised for
        them).
    """
    from fusionseg.data.prepare import prepare_depth as _prepare_depth

    return _prepare_depth(
        input_path,
        out_dir,
        options,
        depth_scale=depth_scale,
        intrinsics=intrinsics,
        intrinsics_one_based=intrinsics_one_based,
        on_plan=on_plan,
        on_result=on_result,
    )


def benchmark_preprocess(
    *,
    repeat: int = 20,
    warmup: int = 2,
    device: str = "auto",
    data_dir: str | Path | None = None,
    sizes: Iterable[tuple[int, int]] = (),
    only: Iterable[str] = (),
    on_timing: Any = None,
) -> Any:
    """Time every preprocessor in ms/frame, single-thread CPU and GPU (`fusionseg benchmark preprocess`).

    Args:
        repeat: Timed runs per case after `warmup` untimed ones.
        warmup: Untimed runs per case.
        device: "auto", "cpu" or "cuda" (GPU cases; "cuda" fails without CUDA).
        data_dir: Shared real-data folder (NYU frame 1, a 1242x375 KITTI frame); None: synthetic frames.
        sizes: (W, H) synthetic frame sizes to use instead of the standard frames.
        only: Run only the cases whose name contains one of these strings.
        on_timing: Called with each `Timing` as it is measured.

    Returns:
        `fusionseg.benchmark.preprocess.BenchmarkReport` (machine, settings, timings; `to_markdown()`).
    """
    from fusionseg.benchmark.preprocess import run_preprocess_benchmark

    return run_preprocess_benchmark(
        repeat=repeat,
        warmup=warmup,
        device=device,
        data_dir=data_dir,
        sizes=tuple(sizes),
        only=tuple(only),
        on_timing=on_timing,
    )


__all__ += ["PrepareOptions", "PrepareSummary", "prepare_depth", "benchmark_preprocess"]


# ---------------------------------------------------------------------------------------------------
# summary: parameters per module, tap shapes and GFLOPs of a model (fusionseg.models.summary)
# ---------------------------------------------------------------------------------------------------
from collections.abc import Callable  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from fusionseg.models.summary import ModelSummary

# A summary builder: (config, input channels) -> (model, make_input(batch, height_px, width_px)).
# Builders may build on the meta device: counts, shapes and FLOPs need no real weights.
SummaryBuilder = Callable[[RunConfig, int], tuple[Any, Callable[[int, int, int], Any]]]


def _summary_adapnetpp(cfg: RunConfig, in_channels: int) -> tuple[Any, Callable[[int, int, int], Any]]:
    import torch

    from fusionseg.models.adapnet import build_adapnet

    with torch.device("meta"):  # shapes and FLOPs only: no weights allocated, nothing computed
        model = build_adapnet(cfg.model, in_channels=in_channels)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format

    def make_input(batch: int, height_px: int, width_px: int) -> Any:
        x = torch.zeros(batch, in_channels, height_px, width_px, device="meta")
        return x.contiguous(memory_format=memory_format)

    return model, make_input


# Models `summarize_model` (and `fusionseg summary --model`) knows; fusion models add their entry here.
SUMMARY_MODELS: dict[str, SummaryBuilder] = {"adapnetpp": _summary_adapnetpp}


def summarize_model(
    model: str = "adapnetpp",
    cfg: RunConfig | None = None,
    *,
    in_channels: int = 3,
    size_px: tuple[int, int] | None = (384, 768),
    batch_size: int = 1,
) -> ModelSummary:
    """Build a model from its config and summarise it (`fusionseg summary`).

    Args:
        model: A key of `SUMMARY_MODELS` ("adapnetpp").
        cfg: Run config (the model section is used); default the code defaults.
        in_channels: Input channels of the model (3 for images, 1 for raw depth).
        size_px: (H, W) of the example input, multiples of 16; None counts parameters only.
        batch_size: Batch size of the example input.

    Returns:
        `fusionseg.models.summary.ModelSummary` (per-module counts, tap shapes, GFLOPs).

    Raises:
        ConfigError: unknown model, or a size that is not a positive multiple of 16.
    """
    from fusionseg.errors import ConfigError
    from fusionseg.models.summary import summarize_model as _summarize

    if model not in SUMMARY_MODELS:
        raise ConfigError(f"unknown model {model!r} (choose from: {', '.join(sorted(SUMMARY_MODELS))})")
    if size_px is not None and (min(size_px) < 16 or size_px[0] % 16 or size_px[1] % 16):
        raise ConfigError(
            f"size {size_px[0]}x{size_px[1]}: height and width must be positive multiples of 16"
        )
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    net, make_input = SUMMARY_MODELS[model](cfg or RunConfig(), in_channels)
    example = None if size_px is None else make_input(batch_size, *size_px)
    return _summarize(net, example, name=model)


__all__ += ["SUMMARY_MODELS", "summarize_model"]


# ---------------------------------------------------------------------------------------------------
# Synthetic scenes (fusionseg.data.synthetic)
# ---------------------------------------------------------------------------------------------------
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:  # the generator imports open3d, so only its types are named here
    from collections.abc import Callable

    from fusionseg.config import SyntheticConfig
    from fusionseg.data.synthetic import SyntheticSummary


def make_synthetic(
    out_dir: str | Path,
    cfg: SyntheticConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticSummary:
    """Render a synthetic multimodal dataset into `out_dir`; see `fusionseg.data.synthetic`.

    Args:
        out_dir: Dataset root (created if needed; complete frames already there are kept).
        cfg: Generator settings (`RunConfig.synthetic`).
        progress: Called as progress(done, total) while frames are rendered.

    Returns:
        What was written (counts, list files, meta.json, time).

    Raises:
        ConfigError: invalid settings. DataError: unwritable folder or one made with other settings.
    """
    from fusionseg.data.synthetic import generate_dataset

    return generate_dataset(out_dir, cfg, progress=progress)


__all__ += ["make_synthetic"]


# ---------------------------------------------------------------------------------------------------
# Fusion: stages 2-3, the whole pipeline (fusionseg.engine.stages), robustness (fusionseg.engine.robustness)
# ---------------------------------------------------------------------------------------------------
if TYPE_CHECKING:
    from fusionseg.engine.stages import FusionResult, PipelineResult


def train_fusion(
    experts: dict[str, str | Path],
    *,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    scheme: str | None = None,
    out_dir: str | Path | None = None,
    finetune: bool | None = None,
    resume: bool = False,
    progress: Any = None,
    on_stage: Any = None,
) -> FusionResult:
    """Train a fused model on top of unimodal experts (`fusionseg train-fusion`, stages 2 and 3).

    Args:
        experts: Modality -> unimodal checkpoint, in fusion order (modality 1 first).
        config_path: YAML with differences; the first expert's saved config is the base.
        overrides: `section.key=value` strings.
        scheme: "ssma" or "cmode" (default `fusion.scheme`).
        out_dir: Run folder (default `train.out_dir`); stage 3 runs in `<out_dir>/finetune`.
        finetune: Also run stage 3 (default `fusion.finetune`).
        resume: Continue from the checkpoints in the run folder(s).
        progress: Called with each `fusionseg.engine.trainer.TrainEvent`.
        on_stage: Called with (stage name, `Stage`) before each stage trains.

    Returns:
        `fusionseg.engine.stages.FusionResult` (expert provenance, per-stage checkpoints).

    Raises:
        ConfigError, CheckpointError, DataError: the message names the key, file or mismatch.
    """
    from fusionseg.engine.stages import fusion_run_config
    from fusionseg.engine.stages import train_fusion as _train_fusion

    cfg = fusion_run_config(
        experts,
        config_path=config_path,
        overrides=tuple(overrides),
        scheme=scheme,
        out_dir=out_dir,
        finetune=finetune,
    )
    return _train_fusion(cfg, resume=resume, progress=progress, on_stage=on_stage)


def train_pipeline(
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    progress: Any = None,
    on_step: Any = None,
    on_stage: Any = None,
) -> PipelineResult:
    """Run every stage of a fusion experiment from one config (`fusionseg train-pipeline`):
    prepare-depth if configured, one expert per modality, each fusion scheme, then the report: every
    model's val mIoU clean and under `fusion.pipeline_robustness` (`PipelineResult.results`), written
    to `<out>/eval/results.json` and `results.md`, and `<out>/eval/predictions.png`. Finished stages
    and evaluations are skipped, interrupted ones resumed; see `engine.stages.run_pipeline`.

    Args:
        config_path: YAML config (e.g. configs/synthetic-pipeline.yaml).
        overrides: `section.key=value` strings.
        progress: Trainer events of every training stage.
        on_step: Called with each step's name before it runs.
        on_stage: Called with (stage name, `Stage`) before a fusion stage trains.
    """
    from fusionseg.engine.stages import run_pipeline

    cfg = load_config(config_path, tuple(overrides))
    return run_pipeline(cfg, progress=progress, on_step=on_step, on_stage=on_stage)


def evaluate_robustness(
    checkpoint: str | Path,
    data: str | Path,
    *,
    degrade: Iterable[str] = (),
    drop: Iterable[str] = (),
    gate_report: bool = False,
    seed: int = 0,
    **evaluate_kwargs: Any,
) -> Any:
    """`evaluate` with dropped (`--drop-modality`) or corrupted (`--degrade NAME=noise|zero|dark|fog`)
    modalities and an optional gate report of a fused model; see `engine.robustness.evaluate_robustness`.

    Returns:
        `fusionseg.engine.robustness.RobustnessReport` (`.evaluation` is the usual report).
    """
    from fusionseg.engine.robustness import evaluate_robustness as _evaluate_robustness

    return _evaluate_robustness(
        checkpoint,
        data,
        degrade=tuple(degrade),
        drop=tuple(drop),
        gate_report=gate_report,
        seed=seed,
        **evaluate_kwargs,
    )


def _summary_fused(scheme: str) -> SummaryBuilder:
    """`fusionseg summary --model ssma|cmode`: the fused model over `data.modalities` (default rgb,depth)
    with frozen experts, as in fusion stage 2."""

    def build(cfg: RunConfig, in_channels: int) -> tuple[Any, Callable[[int, int, int], Any]]:
        import dataclasses

        import torch

        from fusionseg.data.modality_specs import modality_channels
        from fusionseg.fusion.build import build_model

        modalities = tuple(cfg.data.modalities) if len(cfg.data.modalities) >= 2 else ("rgb", "depth")
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, modalities=modalities))
        channels = {m: modality_channels(m) for m in modalities}
        model = build_model(cfg, in_channels=channels, scheme=scheme)
        model.freeze_experts()

        def make_input(batch: int, height_px: int, width_px: int) -> Any:
            return {m: torch.zeros(batch, c, height_px, width_px) for m, c in channels.items()}

        return model, make_input

    return build


SUMMARY_MODELS["ssma"] = _summary_fused("ssma")
SUMMARY_MODELS["cmode"] = _summary_fused("cmode")

__all__ += ["train_fusion", "train_pipeline", "evaluate_robustness"]


# ---------------------------------------------------------------------------------------------------
# Unimodal training, evaluation and prediction (fusionseg.engine.trainer, fusionseg.engine.inference)
# ---------------------------------------------------------------------------------------------------
if TYPE_CHECKING:  # torch-heavy modules: only their types are named here
    from collections.abc import Mapping, Sequence

    from fusionseg.engine.inference import EvaluationReport, PredictedFrame, PredictSummary
    from fusionseg.engine.trainer import TrainEvent, TrainResult


def train_expert(
    cfg: RunConfig,
    modality: str,
    *,
    resume: bool = False,
    progress: Callable[[TrainEvent], None] | None = None,
) -> TrainResult:
    """Train one AdapNet++ expert on one modality (`train-unimodal`); see `engine.trainer.train_expert`.

    Args:
        cfg: Resolved config; the run folder is `cfg.train.out_dir`.
        modality: Modality column of the dataset lists ("rgb", "depth", "jet", "hha", "evi", ...).
        resume: Continue from the newest intact checkpoint of the run folder.
        progress: Receives `TrainEvent`s (steps, validations, checkpoints, warnings).
    """
    from fusionseg.engine.trainer import train_expert as _train_expert

    return _train_expert(cfg, modality, resume=resume, progress=progress)


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    out_dir: str | Path | None = None,
    config: RunConfig | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    input_transform: Any = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EvaluationReport:
    """mIoU, per-class IoU, pixel accuracy and confusion matrix of a checkpoint on a labelled list
    (`evaluate`); see `engine.inference.evaluate_checkpoint`."""
    from fusionseg.engine.inference import evaluate_checkpoint

    return evaluate_checkpoint(
        checkpoint,
        data,
        scales=scales,
        flip=flip,
        out_dir=out_dir,
        config=config,
        batch_size=batch_size,
        device=device,
        input_transform=input_transform,
        on_start=on_start,
        on_batch=on_batch,
    )


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    depth_scale: str | float | None = None,
    modality_dirs: Mapping[str, str | Path] | None = None,
    mode: str = "resize",
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: str = "auto",
    on_start: Callable[[int], None] | None = None,
    on_frame: Callable[[PredictedFrame], None] | None = None,
    depth_sensor: str = "auto",
    max_native_megapixels: float = 16.0,
) -> PredictSummary:
    """Segment image files of any size and write label, colour and overlay PNGs (`predict`); see
    `engine.inference.predict_files`."""
    from fusionseg.engine.inference import predict_files

    return predict_files(
        checkpoint,
        inputs,
        out_dir,
        depth_scale=depth_scale,
        modality_dirs=modality_dirs,
        mode=mode,  # type: ignore[arg-type]
        scales=scales,
        flip=flip,
        device=device,
        on_start=on_start,
        on_frame=on_frame,
        depth_sensor=depth_sensor,
        max_native_megapixels=max_native_megapixels,
    )


__all__ += ["train_expert", "evaluate", "predict"]


# ---------------------------------------------------------------------------------------------------
# Deployment: export and model benchmarks (fusionseg.engine.export, fusionseg.benchmark.model)
# ---------------------------------------------------------------------------------------------------
if TYPE_CHECKING:
    from fusionseg.benchmark.model import ModelBenchmarkReport, ModelTiming
    from fusionseg.engine.export import ExportReport


def export_model(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    format: str = "onnx",
    opset: int = 17,
    size: tuple[int, int] | None = None,
    verify: bool = True,
) -> ExportReport:
    """Export a checkpoint to ONNX, TorchScript, torch.export or safetensors and check it against
    PyTorch (`fusionseg export`); see `engine.export.export_model`.

    Args:
        checkpoint: Expert or fused-model checkpoint.
        out: Output file (default beside the checkpoint, suffix per format).
        format: "onnx", "torchscript", "torch-export" or "safetensors".
        opset: ONNX opset.
        size: (H, W) to trace at (multiples of 16); default the checkpoint's training size.
        verify: Compare the exported model with PyTorch (max |diff| in the report).
    """
    from fusionseg.engine.export import export_model as _export_model

    return _export_model(checkpoint, out, format=format, opset=opset, size=size, verify=verify)


def benchmark_model(
    *,
    model: str = "adapnetpp",
    size_hw: tuple[int, int] = (384, 768),
    batch: int = 1,
    device: str = "auto",
    train: bool = False,
    warmup: int = 3,
    repeat: int = 10,
    compare: bool = False,
    amp: str = "off",
    channels_last: bool = False,
    compile: bool = False,
    num_classes: int = 12,
    threads: int | None = None,
    command: str = "",
    on_result: Callable[[ModelTiming], None] | None = None,
) -> ModelBenchmarkReport:
    """Latency, fps, GFLOPs and peak memory of a model and, with `compare`, of torchvision peers in the
    same process (`fusionseg benchmark model`); see `benchmark.model.run_model_benchmark`.

    Args:
        model: "adapnetpp", "ssma" or "cmode".
        size_hw: (H, W) input size in pixels (multiples of 16).
        batch: Images per run.
        device: "auto", "cpu", "cuda", "cuda:N".
        train: Time optimiser steps instead of forward passes.
        warmup / repeat: Untimed and timed runs per model.
        compare: Also run deeplabv3_resnet50, fcn_resnet50 (and smp models when installed).
        amp / channels_last / compile: Speed options ("off", "bf16", "fp16").
        num_classes: Classes of every model.
        threads: torch CPU threads (None: unchanged).
        command: Command line recorded in the report.
        on_result: Called with each model's timing.
    """
    from fusionseg.benchmark.model import run_model_benchmark

    return run_model_benchmark(
        model=model,
        size_hw=size_hw,
        batch=batch,
        device=device,
        mode="train" if train else "inference",
        warmup=warmup,
        repeat=repeat,
        compare=compare,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
        num_classes=num_classes,
        threads=threads,
        command=command,
        on_result=on_result,
    )


__all__ += ["export_model", "benchmark_model"]
