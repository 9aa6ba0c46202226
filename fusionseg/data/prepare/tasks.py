"""The records of a job: per-frame tasks and results, the plan of lists and frames, the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionseg.data.prepare.options import PrepareOptions, Status
from fusionseg.modalities.intrinsics import Intrinsics


@dataclass(frozen=True)
class FrameTask:
    """One frame's inputs and outputs (all absolute paths).

    Attributes:
        id: Frame id; outputs are ``<out>/<product>/<id>.png``.
        depth: Depth file, or None when only EVI/NDVI are produced.
        rgb: RGB file (sizes are checked against depth; EVI/NDVI read it), or None.
        nir: NIR file for EVI/NDVI, or None.
        intrinsics_file: Per-frame intrinsics file from an `intrinsics`/`calib` column, or None.
        outputs: product -> output file.
    """

    id: str
    depth: Path | None
    rgb: Path | None
    nir: Path | None
    intrinsics_file: Path | None
    outputs: dict[str, Path]

    @property
    def primary(self) -> Path | None:
        """The input file a failure is reported against."""
        return self.depth or self.nir or self.rgb


@dataclass(frozen=True)
class ListPlan:
    """One new list file: its path, columns, and per frame the input files to carry over."""

    path: Path
    input_columns: tuple[str, ...]
    frames: tuple[tuple[str, dict[str, Path]], ...]  # (id, input column -> absolute file)


@dataclass(frozen=True)
class PreparePlan:
    """Everything `run_prepare` needs; built by `plan_prepare`."""

    input: Path
    out_dir: Path
    options: PrepareOptions
    depth_scale_m: float | None
    depth_scale_source: str
    filled_scale_m: float | None
    intrinsics: Intrinsics | None
    intrinsics_source: str
    tasks: tuple[FrameTask, ...]
    lists: tuple[ListPlan, ...]
    # per-frame intrinsics files hold MATLAB's 1-based principal points (1 is subtracted from cx, cy)
    per_frame_one_based: bool = False


@dataclass(frozen=True)
class FrameResult:
    """What happened to one frame."""

    id: str
    status: Status
    message: str = ""
    file: str = ""
    written: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass
class PrepareSummary:
    """Outcome of a run (what the CLI prints; `to_dict` is its --json form)."""

    out_dir: Path
    meta_path: Path
    lists: list[Path]
    products: tuple[str, ...]
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[FrameResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no frame failed."""
        return self.failed == 0

    @property
    def frames_per_s(self) -> float:
        """Processed (done) frames per second of wall time."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "out_dir": str(self.out_dir),
            "meta": str(self.meta_path),
            "lists": [str(p) for p in self.lists],
            "products": list(self.products),
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "failures": [{"id": f.id, "file": f.file, "message": f.message} for f in self.failures],
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames_per_s, 3),
        }
