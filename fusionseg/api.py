"""The Python API: what every CLI verb does, as the functions that do it.

Notebooks and scripts use these directly; each CLI verb parses options, builds a config, calls one of
these and renders the result. The names are re-exported from the modules that own them (listed in
`EXPORTS`), so each function's signature and docstring live in one place; they are imported on first
use, which keeps `import fusionseg.api` (and `fusionseg --help`) free of torch, OpenCV and open3d.

    from fusionseg import api
    cfg = api.load_config("configs/synthetic-pipeline.yaml")
    result = api.run_pipeline(cfg)            # = fusionseg.workflows.pipeline.run_pipeline
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fusionseg.config import RunConfig, load_config
from fusionseg.engine.export_formats import EXPORT_FORMATS
from fusionseg.registry import MODEL_KINDS

MODEL_NAMES: tuple[str, ...] = tuple(MODEL_KINDS)  # the model kinds summary, benchmark and export know

# public name -> (owning module, attribute there)
EXPORTS: dict[str, tuple[str, str]] = {
    # data: synthetic scenes and depth preparation
    "make_synthetic": ("fusionseg.data.synthetic", "generate_dataset"),
    "PrepareOptions": ("fusionseg.data.prepare", "PrepareOptions"),
    "prepare_depth": ("fusionseg.data.prepare", "prepare_depth"),
    "prepare_dataset": ("fusionseg.data.datasets.runner", "prepare_dataset"),
    "DATASET_READERS": ("fusionseg.data.datasets", "READERS"),
    # training
    "train_expert": ("fusionseg.workflows.train_expert", "train_expert"),
    "fusion_run_config": ("fusionseg.workflows.train_fusion", "fusion_run_config"),
    "train_fusion": ("fusionseg.workflows.train_fusion", "train_fusion"),
    "run_pipeline": ("fusionseg.workflows.pipeline", "run_pipeline"),
    "is_main_process": ("fusionseg.engine.distributed", "is_main_process"),
    # evaluation and prediction
    "evaluate": ("fusionseg.workflows.evaluate", "evaluate_checkpoint"),
    "evaluate_robustness": ("fusionseg.workflows.robustness", "evaluate_robustness"),
    "predict": ("fusionseg.workflows.predict", "predict_files"),
    "Segmenter": ("fusionseg.workflows.segmenter", "Segmenter"),
    "open_source": ("fusionseg.data.sources", "open_source"),
    "is_stream": ("fusionseg.data.sources", "is_stream"),
    "predict_stream": ("fusionseg.workflows.predict_stream", "predict_stream"),
    "init_run_config": ("fusionseg.workflows.init_from", "init_run_config"),
    "raw_predict": ("fusionseg.workflows.predict_stream", "raw_predict"),
    "resolve_intrinsics": ("fusionseg.data.prepare.intrinsics", "resolve_intrinsics"),
    "format_miou": ("fusionseg.workflows.report", "format_miou"),
    # models, deployment and benchmarks
    "summarize_model": ("fusionseg.workflows.summary", "summarize_model"),
    "export_model": ("fusionseg.engine.export", "export_model"),
    "import_deepscene": ("fusionseg.tfimport.convert", "import_deepscene"),
    "zoo_models": ("fusionseg.tfimport.zoo", "ZOO"),
    "benchmark_model": ("fusionseg.benchmark.model", "run_model_benchmark"),
    "benchmark_preprocess": ("fusionseg.benchmark.preprocess", "run_preprocess_benchmark"),
    "benchmark_pipeline": ("fusionseg.benchmark.pipeline", "run_pipeline_benchmark"),
}

__all__ = ["EXPORT_FORMATS", "MODEL_NAMES", "RunConfig", "load_config", *EXPORTS]


def __getattr__(name: str) -> Any:
    """Import an exported name from its owning module on first use (then it is a plain attribute)."""
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})


if TYPE_CHECKING:  # what type checkers and editors see (same objects as EXPORTS)
    from fusionseg.benchmark.model import run_model_benchmark as benchmark_model  # noqa: F401
    from fusionseg.benchmark.pipeline import run_pipeline_benchmark as benchmark_pipeline  # noqa: F401
    from fusionseg.benchmark.preprocess import run_preprocess_benchmark as benchmark_preprocess  # noqa: F401
    from fusionseg.data.datasets import READERS as DATASET_READERS  # noqa: F401
    from fusionseg.data.datasets.runner import prepare_dataset  # noqa: F401
    from fusionseg.data.prepare import PrepareOptions, prepare_depth  # noqa: F401
    from fusionseg.data.synthetic import generate_dataset as make_synthetic  # noqa: F401
    from fusionseg.engine.distributed import is_main_process  # noqa: F401
    from fusionseg.engine.export import export_model  # noqa: F401
    from fusionseg.tfimport.convert import import_deepscene  # noqa: F401
    from fusionseg.tfimport.zoo import ZOO as zoo_models  # noqa: F401
    from fusionseg.workflows.evaluate import evaluate_checkpoint as evaluate  # noqa: F401
    from fusionseg.workflows.pipeline import run_pipeline  # noqa: F401
    from fusionseg.workflows.predict import predict_files as predict  # noqa: F401
    from fusionseg.workflows.report import format_miou  # noqa: F401
    from fusionseg.workflows.robustness import evaluate_robustness  # noqa: F401
    from fusionseg.workflows.segmenter import Segmenter  # noqa: F401
    from fusionseg.workflows.summary import summarize_model  # noqa: F401
    from fusionseg.workflows.train_expert import train_expert  # noqa: F401
    from fusionseg.workflows.train_fusion import fusion_run_config, train_fusion  # noqa: F401
