"""Batch depth preparation (`fusionseg prepare-depth`): depth and NIR frames -> 8-bit modality images.

The job has three steps:

1. **Plan** (`plan_prepare`): find the frames (a list file, a dataset root with list files or one folder
   per modality, or a folder of depth PNGs matched by a glob pattern), resolve the depth unit and the
   camera intrinsics (never guessed), and name one output per frame and product, mirroring the input
   ids: ``<out>/<product>/<id>.png``.
2. **Run** (`run_prepare`): process the frames in a process pool, one frame per task. Outputs that
   already exist are skipped; every write is atomic (temp file, then rename), so an existing file is
   always complete and a killed run resumes where it stopped. A bad frame becomes a failure entry
   naming the file and the problem; the batch carries on.
3. **Record**: a new list file per input list (the input columns plus one column per product, paths
   relative to the new list) holding the frames that succeeded, and ``meta.json`` with every
   parameter, the intrinsics, the fusionseg version and each frame's status.

Per-frame pipeline (reference/modalities.md): depth in metres -> optional ip_basic completion (§1) ->
HHA (§3; the completed depth feeds it and the raw input gives the missing mask, §3.1), JET (§2) and
normals (§3.3); EVI/NDVI (§4) from the NIR and RGB columns.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fusionseg import __version__
from fusionseg.errors import ConfigError, DataError, FusionsegError
from fusionseg.fsutil import OutputLock, atomic_write_text, ensure_writable_dir, remove_stale_temps
from fusionseg.modalities.intrinsics import Intrinsics

# Output products, in the order they are added as list columns.
PRODUCTS: tuple[str, ...] = ("depth_filled", "hha", "jet", "normals", "evi", "ndvi")
# Products computed from depth, and those that also need camera intrinsics.
DEPTH_PRODUCTS = frozenset({"depth_filled", "hha", "jet", "normals"})
GEOMETRY_PRODUCTS = frozenset({"hha", "normals"})
# Products computed from the NIR and RGB columns.
SPECTRAL_PRODUCTS = frozenset({"evi", "ndvi"})

# List columns that may hold a per-frame intrinsics file (JSON, K-matrix text or KITTI calib).
INTRINSICS_COLUMNS: tuple[str, ...] = ("intrinsics", "calib")
RGB_COLUMN = "rgb"
NIR_COLUMN = "nir"

META_NAME = "meta.json"
META_KIND = "fusionseg prepare-depth"  # marks our meta.json apart from a dataset's own
FOLDER_LIST_NAME = "list.txt"  # name of the new list when the input is a plain folder
# Parameters that change output pixels: a rerun into the same folder must match them (or --overwrite).
_OUTPUT_PARAMETERS = (
    "complete",
    "extrapolate",
    "blur",
    "max_depth_m",
    "jet_max_depth_m",
    "normals_radius_px",
    "depth_column",
)
# Temp files left by a killed atomic write (fusionseg.fsutil): ".<name>.tmp-<random>".
_TEMP_RE = re.compile(r"^\..+\.tmp-[^/]+$")
_HHA_BATCH = 8  # frames per GPU batch with hha_backend="torch"

Status = Literal["done", "skipped", "failed"]
Frames = list[tuple[str, dict[str, Path]]]  # (frame id, column -> absolute input file)


# ----------------------------------------------------------------------------------------------------
# Options and plan
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PrepareOptions:
    """What to compute; every field is recorded in meta.json.

    Attributes:
        complete: ip_basic completion before encoding: "none", "fast" (§1.4) or "multiscale" (§1.5).
        extrapolate: ip_basic `extrapolate` (fill above the top-most measurement, §1.4 step 5).
        blur: ip_basic smoothing, "bilateral" or "gaussian".
        max_depth_m: ip_basic inversion depth; depths at or beyond it are dropped (§1.4 step 1).
        hha: Write HHA (§3) to ``hha/``.
        jet: Write JET-coded depth (§2) to ``jet/``.
        jet_max_depth_m: Depth mapped to the top of the JET map (7 m indoors per §2.1; ~80 m for LiDAR).
        normals: Write colour-coded surface normals to ``normals/``.
        normals_radius_px: Half-width of the normal-fitting window (3 = 7x7, as HHA's angle channel).
        evi: Write colour-coded EVI (§4) from the NIR and RGB columns to ``evi/``.
        ndvi: Write colour-coded NDVI (§4) to ``ndvi/``.
        depth_column: List column (or per-modality folder) holding the depth to prepare.
        pattern: Glob matching depth files when the input is a plain folder (e.g. "*/depth_raw*.png").
        workers: Worker processes; 0 = all cores, 1 = run in this process.
        hha_backend: "numpy" (HHA in the workers) or "torch" (batched `hha_torch` in the main process).
        device: Torch device for hha_backend="torch" ("cpu" or "cuda").
        overwrite: Recompute outputs that already exist.
        depth_sensor: Range every depth frame must fit (`io.DEPTH_SENSORS` key, or "off"): a frame
            read in the wrong unit fails, naming the units that would fit.
    """

    complete: Literal["none", "fast", "multiscale"] = "none"
    extrapolate: bool = False
    blur: Literal["bilateral", "gaussian"] = "bilateral"
    max_depth_m: float = 100.0
    hha: bool = False
    jet: bool = False
    jet_max_depth_m: float = 7.0
    normals: bool = False
    normals_radius_px: int = 3
    evi: bool = False
    ndvi: bool = False
    depth_column: str = "depth"
    pattern: str = "*.png"
    workers: int = 0
    hha_backend: Literal["numpy", "torch"] = "numpy"
    device: str = "cpu"
    overwrite: bool = False
    depth_sensor: str = "any"

    def __post_init__(self) -> None:
        from fusionseg.data.io import DEPTH_SENSOR_CHOICES

        choices = {
            "complete": ("none", "fast", "multiscale"),
            "blur": ("bilateral", "gaussian"),
            "hha_backend": ("numpy", "torch"),
            "depth_sensor": DEPTH_SENSOR_CHOICES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("max_depth_m", "jet_max_depth_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive number of metres, got {value!r}")
        if self.normals_radius_px < 1:
            raise ConfigError(f"normals_radius_px: must be >= 1, got {self.normals_radius_px}")
        if self.workers < 0:
            raise ConfigError(f"workers: must be >= 0 (0 = all cores), got {self.workers}")
        if not self.products:
            raise ConfigError(
                "nothing to do: ask for at least one output "
                "(--complete fast|multiscale, --hha, --jet, --normals, --evi or --ndvi)"
            )

    @property
    def products(self) -> tuple[str, ...]:
        """The products this run writes, in `PRODUCTS` order."""
        wanted = {
            "depth_filled": self.complete != "none",
            "hha": self.hha,
            "jet": self.jet,
            "normals": self.normals,
            "evi": self.evi,
            "ndvi": self.ndvi,
        }
        return tuple(p for p in PRODUCTS if wanted[p])


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


# ----------------------------------------------------------------------------------------------------
# Intrinsics and metadata files
# ----------------------------------------------------------------------------------------------------


def _intrinsics_from_mapping(data: Any, source: str) -> Intrinsics:
    """Intrinsics from {"fx","fy","cx","cy"}, {"intrinsics": {...}} or {"K": 3x3}."""
    if isinstance(data, dict) and "intrinsics" in data:
        data = data["intrinsics"]
    if isinstance(data, dict) and "K" in data:
        return _intrinsics_from_matrix(np.asarray(data["K"], dtype=np.float64), source)
    if not isinstance(data, dict) or not {"fx", "fy", "cx", "cy"} <= set(data):
        raise DataError(f"{source}: expected JSON with keys fx, fy, cx, cy (or 'intrinsics' or 'K')")
    try:
        return Intrinsics(*(float(data[k]) for k in ("fx", "fy", "cx", "cy")))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: bad intrinsics ({exc})") from None


def _intrinsics_from_matrix(k: np.ndarray, source: str) -> Intrinsics:
    """Intrinsics from a 3x3 K matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (or a 3x4 projection)."""
    if k.size == 12:
        k = k.reshape(3, 4)[:, :3]
    if k.size != 9:
        raise DataError(f"{source}: expected a 3x3 camera matrix (9 numbers), got {k.size} numbers")
    k = k.reshape(3, 3)
    try:
        return Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    except ValueError as exc:
        raise DataError(f"{source}: bad camera matrix ({exc})") from None


def read_intrinsics_file(path: str | Path) -> Intrinsics:
    """Read camera intrinsics from a file (0-based pixel centres, as stored).

    Accepted forms: JSON ``{"fx", "fy", "cx", "cy"}``, a JSON object with an ``"intrinsics"`` entry
    (fusionseg synthetic meta.json) or a ``"K"`` 3x3 list; a text file holding the 9 numbers of a
    3x3 K matrix (whitespace, comma or bracket separated); a KITTI calib file (its ``P2:`` line).

    Raises:
        DataError: unreadable file or none of the forms above (message names the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read intrinsics ({exc})") from None
    stripped = text.strip()
    if not stripped:
        raise DataError(f"{path}: intrinsics file is empty")
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
        return _intrinsics_from_mapping(data, str(path))
    for line in stripped.splitlines():  # KITTI calib: "P2: 12 numbers" (left colour camera)
        if line.startswith("P2:"):
            numbers = _numbers(line[3:], path)
            return _intrinsics_from_matrix(np.asarray(numbers), str(path))
    return _intrinsics_from_matrix(np.asarray(_numbers(stripped, path)), str(path))


def _numbers(text: str, path: Path) -> list[float]:
    tokens = [t for t in re.split(r"[\s,;\[\]]+", text) if t]
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise DataError(f"{path}: expected numbers (a 3x3 camera matrix), got {text[:60]!r}") from None


def resolve_intrinsics(spec: str | Path | Intrinsics | None, *, one_based: bool = False) -> Intrinsics | None:
    """Intrinsics from the `--intrinsics` value: "fx,fy,cx,cy", a file, or an `Intrinsics`.

    Args:
        spec: The option's value; None passes through.
        one_based: The values use MATLAB's 1-based pixel centres (NYU toolbox, Gupta's HHA code):
            1 is subtracted from cx and cy.

    Raises:
        ConfigError: text that is neither four numbers nor an existing file.
        DataError: a file that cannot be parsed.
    """
    if spec is None or isinstance(spec, Intrinsics):
        intr = spec
    else:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_file():
            intr = read_intrinsics_file(path)
        elif "," in text:
            try:
                intr = Intrinsics.parse(text)
            except ValueError as exc:
                raise ConfigError(f"--intrinsics: {exc}") from None
        else:
            raise ConfigError(f"--intrinsics: {text!r} is neither 'fx,fy,cx,cy' nor an existing file")
    if intr is not None and one_based:
        intr = Intrinsics.from_one_based(intr.fx, intr.fy, intr.cx, intr.cy)
    return intr


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read dataset metadata ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: dataset metadata must be a JSON object")
    return data


def _filled_scale(depth_scale_m: float) -> float:
    """Unit of the completed 16-bit depth: the input's when it is fine enough, else millimetres."""
    return depth_scale_m if depth_scale_m <= 0.01 else 1e-3


# ----------------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------------


def _header_columns(path: Path) -> tuple[str, ...] | None:
    """Column names of a list file's `# columns:` header (its first non-empty line), else None."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for line in fh:
                if line.strip():
                    text = line.strip().lstrip("#").strip()
                    if not text.lower().startswith("columns:"):
                        return None
                    return tuple(text.split(":", 1)[1].split())
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _is_list_file(path: Path) -> bool:
    """A text file whose first non-empty line is a `# columns:` header."""
    return _header_columns(path) is not None


def _has_samples(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return True  # let read_list report it
    return any(line.strip() and not line.strip().startswith("#") for line in lines)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_id(frame_id: str, source: Path) -> str:
    parts = Path(frame_id).parts
    if not frame_id or Path(frame_id).is_absolute() or ".." in parts:
        raise DataError(f"{source}: frame id {frame_id!r} cannot name an output file")
    return Path(frame_id).as_posix()


def _frames_from_list(path: Path) -> tuple[tuple[str, ...], Frames]:
    from fusionseg.data.listfile import read_list  # owned by the list-file module

    columns = _header_columns(path)
    if columns is not None and not _has_samples(path):
        return columns, []  # an empty split (e.g. val.txt of a tiny dataset) stays empty
    # missing files become per-frame failures later, not one error for the whole list
    listing = read_list(path, allow_absolute=True, check_files=False)
    frames = [
        (_check_id(s.id, path), {c: Path(p).absolute() for c, p in s.files.items()}) for s in listing.samples
    ]
    return tuple(listing.columns), frames


def _frames_from_folder(
    folder: Path, out_dir: Path, options: PrepareOptions
) -> tuple[tuple[str, ...], Frames]:
    """Frames of a folder: one sub-folder per modality (matched by file stem) or depth files by pattern."""
    column_dir = folder / options.depth_column
    if column_dir.is_dir() and not _inside(column_dir, out_dir):
        depth_files = _glob_files(column_dir, options.pattern, out_dir)
        ids = [f.relative_to(column_dir).with_suffix("").as_posix() for f in depth_files]
        columns = [options.depth_column]
        found: dict[str, dict[str, Path]] = {i: {options.depth_column: f} for i, f in zip(ids, depth_files)}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p != column_dir):
            if sub.name.startswith(".") or _inside(sub, out_dir) or _inside(out_dir, sub):
                continue
            by_id = {
                f.relative_to(sub).with_suffix("").as_posix(): f for f in _glob_files(sub, "**/*", out_dir)
            }
            if ids and all(i in by_id for i in ids):  # a modality column only if every frame has it
                columns.append(sub.name)
                for i in ids:
                    found[i][sub.name] = by_id[i]
        return tuple(columns), [(i, found[i]) for i in ids]
    files = _glob_files(folder, options.pattern, out_dir)
    frames = [(f.relative_to(folder).with_suffix("").as_posix(), {options.depth_column: f}) for f in files]
    return (options.depth_column,), frames


def _glob_files(folder: Path, pattern: str, out_dir: Path) -> list[Path]:
    return sorted(
        p.absolute()
        for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and not _inside(p, out_dir)
    )


def plan_prepare(
    input_path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    *,
    depth_scale: str | float | None = None,
    intrinsics: str | Path | Intrinsics | None = None,
    intrinsics_one_based: bool = False,
) -> PreparePlan:
    """Find the frames, resolve units and intrinsics, and name every output.

    Args:
        input_path: A list file (``# columns:`` header), a dataset root (list files and/or one folder per
            modality, optional meta.json) or a folder of depth files matched by `options.pattern`.
        out_dir: Output folder (created).
        options: What to compute.
        depth_scale: Metres per stored depth unit or a unit name ("mm", "1e-4m", "kitti", ...);
            defaults to the dataset's meta.json "depth_scale_m". Required for depth products.
        intrinsics: "fx,fy,cx,cy", an intrinsics file or `Intrinsics`; defaults to meta.json
            "intrinsics" or a per-frame `intrinsics`/`calib` column. Required for HHA and normals.
        intrinsics_one_based: The given intrinsics use 1-based pixel centres (NYU/MATLAB).

    Returns:
        The plan.

    Raises:
        ConfigError: missing depth scale or intrinsics, a missing column, or outputs in `out_dir`
            made with different parameters (unless `options.overwrite`).
        DataError: an unreadable input, duplicate frame ids, or an output folder that is not writable.
    """
    input_path = Path(input_path).expanduser()
    out_dir = Path(out_dir).expanduser().absolute()
    if not input_path.exists():
        raise DataError(f"{input_path}: input does not exist")
    # absolute like the files found under it (a relative folder with `..` made relative_to fail)
    input_path = input_path.absolute()
    products = options.products
    sources, meta, meta_path = _collect_sources(input_path, out_dir, options)
    _check_no_clobber(out_dir, [src.path for src in sources], input_path)
    for src in sources:
        _check_columns(src, products, options, input_path)
    depth_scale_m, scale_source = _resolve_depth_scale(depth_scale, meta, meta_path, products, input_path)
    intr, intr_source = resolve_intrinsics(intrinsics, one_based=intrinsics_one_based), "--intrinsics"
    if intr is None and isinstance(meta.get("intrinsics"), dict):
        intr, intr_source = _intrinsics_from_mapping(meta, str(meta_path)), str(meta_path)
    if intr is None:
        per_frame = all(any(c in src.input_columns for c in INTRINSICS_COLUMNS) for src in sources)
        intr_source = "per-frame column" if per_frame else "none"
        if not per_frame and any(p in GEOMETRY_PRODUCTS for p in products):
            raise ConfigError(
                f"{input_path}: --hha and --normals need camera intrinsics: pass --intrinsics fx,fy,cx,cy "
                "(0-based pixels; add --intrinsics-one-based for MATLAB/NYU values) or a JSON / "
                "3x3-matrix file"
            )
    tasks, list_plans = _build_tasks(sources, out_dir, options, input_path)
    ensure_writable_dir(out_dir)
    plan = PreparePlan(
        input=input_path.absolute(),
        out_dir=out_dir,
        options=options,
        depth_scale_m=depth_scale_m,
        depth_scale_source=scale_source,
        filled_scale_m=_filled_scale(depth_scale_m) if depth_scale_m is not None else None,
        intrinsics=intr,
        intrinsics_source=intr_source,
        tasks=tasks,
        lists=list_plans,
    )
    _check_previous_run(plan)
    return plan


def _collect_sources(
    input_path: Path, out_dir: Path, options: PrepareOptions
) -> tuple[list[ListPlan], dict[str, Any], Path]:
    """One `ListPlan` per input list (or one for a folder), plus the dataset's meta.json content."""
    sources: list[ListPlan] = []
    if input_path.is_file():
        columns, frames = _frames_from_list(input_path)
        sources.append(ListPlan(out_dir / input_path.name, columns, tuple(frames)))
        meta_path = input_path.parent / META_NAME
    else:
        meta_path = input_path / META_NAME
        lists = [p for p in sorted(input_path.glob("*.txt")) if _is_list_file(p)]
        for lst in lists:
            columns, frames = _frames_from_list(lst)
            sources.append(ListPlan(out_dir / lst.name, columns, tuple(frames)))
        if not lists:
            columns, frames = _frames_from_folder(input_path, out_dir, options)
            sources.append(ListPlan(out_dir / FOLDER_LIST_NAME, columns, tuple(frames)))
    if not any(src.frames for src in sources):
        hint = "" if input_path.is_file() else f" (pattern {options.pattern!r})"
        raise DataError(f"{input_path}: no frames found{hint}")
    meta = _read_meta(meta_path) if meta_path.is_file() else {}
    return sources, meta, meta_path


def _check_columns(src: ListPlan, products: Sequence[str], options: PrepareOptions, input_path: Path) -> None:
    needed = []
    if any(p in DEPTH_PRODUCTS for p in products):
        needed.append(options.depth_column)
    if any(p in SPECTRAL_PRODUCTS for p in products):
        needed += [NIR_COLUMN, RGB_COLUMN]
    missing = [c for c in needed if c not in src.input_columns]
    if missing:
        raise ConfigError(
            f"{input_path}: no {', '.join(repr(c) for c in missing)} column for {src.path.name} "
            f"(columns: {', '.join(src.input_columns)}); pick the depth with --depth-column"
        )


def _resolve_depth_scale(
    depth_scale: str | float | None,
    meta: dict[str, Any],
    meta_path: Path,
    products: Sequence[str],
    input_path: Path,
) -> tuple[float | None, str]:
    """Metres per stored depth unit and where it came from; never guessed."""
    from fusionseg.data.io import parse_depth_scale

    if not any(p in DEPTH_PRODUCTS for p in products):
        return None, "not needed"
    if depth_scale is not None:
        return parse_depth_scale(depth_scale), "--depth-scale"
    if "depth_scale_m" in meta:
        return parse_depth_scale(meta["depth_scale_m"]), str(meta_path)
    raise ConfigError(
        f"{input_path}: the depth unit is unknown (it is never guessed); pass --depth-scale with a "
        "unit name (mm, 0.1mm, 1e-4m, kitti, m) or a number of metres per stored unit"
    )


def _build_tasks(
    sources: list[ListPlan], out_dir: Path, options: PrepareOptions, input_path: Path
) -> tuple[tuple[FrameTask, ...], tuple[ListPlan, ...]]:
    """One task per distinct frame; an id two lists use for different files gets the list's name."""
    products = options.products
    tasks: dict[str, FrameTask] = {}
    list_plans = []
    for src in sources:
        named = []
        for frame_id, files in src.frames:
            task = _make_task(frame_id, files, out_dir, products, options)
            if frame_id in tasks and tasks[frame_id] != task:
                frame_id = f"{src.path.stem}/{frame_id}"  # e.g. val/000001
                task = _make_task(frame_id, files, out_dir, products, options)
                if frame_id in tasks and tasks[frame_id] != task:
                    raise DataError(f"{input_path}: frame id {frame_id!r} names two different sets of files")
            tasks[frame_id] = task
            named.append((frame_id, files))
        list_plans.append(ListPlan(src.path, src.input_columns, tuple(named)))
    return tuple(tasks.values()), tuple(list_plans)


def _check_no_clobber(out_dir: Path, new_lists: list[Path], input_path: Path) -> None:
    """Refuse an --out whose list files or meta.json would replace the input's own."""
    inputs = [input_path] if input_path.is_file() else list(input_path.glob("*.txt"))
    resolved = {p.resolve() for p in inputs}
    for new in new_lists:
        if new.resolve() in resolved:
            raise ConfigError(
                f"--out {out_dir}: writing {new.name} there would replace the input list; "
                "choose another --out"
            )
    meta = out_dir / META_NAME
    if meta.is_file():
        try:
            kind = json.loads(meta.read_text(encoding="utf-8")).get("kind")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
        if kind != META_KIND:
            raise ConfigError(
                f"--out {out_dir}: holds a {META_NAME} that prepare-depth did not write (a dataset's own?); "
                "choose another --out"
            )


def _make_task(
    frame_id: str, files: dict[str, Path], out_dir: Path, products: Sequence[str], options: PrepareOptions
) -> FrameTask:
    intr_file = next((files[c] for c in INTRINSICS_COLUMNS if c in files), None)
    return FrameTask(
        id=frame_id,
        depth=files.get(options.depth_column) if any(p in DEPTH_PRODUCTS for p in products) else None,
        rgb=files.get(RGB_COLUMN),
        nir=files.get(NIR_COLUMN),
        intrinsics_file=intr_file,
        outputs={p: out_dir / p / f"{frame_id}.png" for p in products},
    )


def _parameters(plan: PreparePlan) -> dict[str, Any]:
    params = asdict(plan.options)
    params["products"] = list(plan.options.products)
    params["depth_scale_m"] = plan.depth_scale_m
    params["depth_filled_scale_m"] = plan.filled_scale_m
    return params


def _check_previous_run(plan: PreparePlan) -> None:
    """Refuse to mix outputs made with different output-changing parameters in one folder."""
    meta_path = plan.out_dir / META_NAME
    if plan.options.overwrite or not meta_path.is_file():
        return
    try:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # unreadable old meta: nothing to compare (it is rewritten below)
    old_params = old.get("parameters", {}) if isinstance(old, dict) else {}
    new_params = _parameters(plan)
    keys = [*_OUTPUT_PARAMETERS, "depth_scale_m"]
    changed = [k for k in keys if k in old_params and old_params[k] != new_params[k]]
    old_intr = old.get("intrinsics") if isinstance(old, dict) else None
    new_intr = plan.intrinsics.as_dict() if plan.intrinsics is not None else None
    if "intrinsics" in old and old_intr != new_intr:
        changed.append("intrinsics")
    if changed:
        details = ", ".join(
            f"{k}: {old_intr if k == 'intrinsics' else old_params[k]!r} -> "
            f"{new_intr if k == 'intrinsics' else new_params[k]!r}"
            for k in changed
        )
        raise ConfigError(
            f"{plan.out_dir}: holds outputs made with different parameters ({details}); "
            "use another --out or pass --overwrite"
        )


# ----------------------------------------------------------------------------------------------------
# Per-frame processing (runs in worker processes)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Per-run settings sent to every worker with its task."""

    options: PrepareOptions
    depth_scale_m: float | None
    filled_scale_m: float | None
    intrinsics: Intrinsics | None
    hha_on_main: bool  # leave HHA to the main process (batched torch backend)


@dataclass(frozen=True)
class _HHAJob:
    """Inputs of a deferred HHA computation (torch backend)."""

    depth_m: np.ndarray
    raw_depth_m: np.ndarray | None
    intrinsics: Intrinsics
    out: Path


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from the PNG header when possible (no decoding)."""
    from fusionseg.data.io import PNG_SIGNATURE, read_image

    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(head) == 24 and head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    return read_image(path).shape[:2]


def _check_same_size(path: Path, shape_hw: tuple[int, int], reference: Path) -> None:
    size = _image_size(path)
    if tuple(size) != tuple(shape_hw):
        raise DataError(
            f"{path}: size {size[1]}x{size[0]} does not match the depth {reference.name} "
            f"({shape_hw[1]}x{shape_hw[0]}, width x height)"
        )


def _frame_intrinsics(task: FrameTask, ctx: _Context) -> Intrinsics:
    if ctx.intrinsics is not None:
        return ctx.intrinsics
    if task.intrinsics_file is None:
        raise DataError(
            f"{task.primary}: no camera intrinsics for this frame (needed by hha/normals); "
            "pass --intrinsics or fill its intrinsics column"
        )
    return read_intrinsics_file(task.intrinsics_file)


def _complete(depth_m: np.ndarray, options: PrepareOptions) -> np.ndarray:
    """ip_basic completion (§1.4 / §1.5) with its "still missing" residues (<= 0.1 m, §1.2) set to 0."""
    from fusionseg.modalities import completion

    fill = completion.fill_in_fast if options.complete == "fast" else completion.fill_in_multiscale
    filled = fill(
        depth_m, max_depth=options.max_depth_m, extrapolate=options.extrapolate, blur_type=options.blur
    )
    # 0 means missing everywhere downstream (HHA mask, JET black, 16-bit file)
    return np.where(filled > completion.VALID_THRESHOLD_M, filled, np.float32(0.0)).astype(np.float32)


def _hha_bgr(depth_m: np.ndarray, intr: Intrinsics, raw_depth_m: np.ndarray | None) -> np.ndarray:
    from fusionseg.modalities.hha import hha, hha_to_bgr

    # hha() returns (disparity, height, angle), the file's R, G, B order (§3.6); cv2 writes BGR
    return hha_to_bgr(hha(depth_m, intr, raw_depth_m=raw_depth_m))


def _compute_frame(task: FrameTask, ctx: _Context) -> tuple[dict[str, np.ndarray], list[_HHAJob]]:
    """Images for the outputs of `task` that do not exist yet (all of them with `overwrite`)."""
    from fusionseg.data.io import depth_to_png_units, read_depth, read_gray, read_image

    opts = ctx.options
    todo = [p for p, out in task.outputs.items() if opts.overwrite or not output_intact(out, p)]
    images: dict[str, np.ndarray] = {}
    deferred: list[_HHAJob] = []
    if any(p in DEPTH_PRODUCTS for p in todo):
        assert task.depth is not None and ctx.depth_scale_m is not None
        # unit (against the sensor's range), all-zero and dtype checks
        raw_m = read_depth(task.depth, depth_scale_m=ctx.depth_scale_m, sensor=opts.depth_sensor)
        if task.rgb is not None:
            _check_same_size(task.rgb, raw_m.shape, task.depth)
        intr = _frame_intrinsics(task, ctx) if any(p in GEOMETRY_PRODUCTS for p in todo) else None
        depth_m = _complete(raw_m, opts) if opts.complete != "none" else raw_m
        # §3.1: the completed depth feeds HHA, the raw input only gives the missing mask
        raw_for_hha = raw_m if opts.complete != "none" else None
        if "depth_filled" in todo:
            images["depth_filled"] = depth_to_png_units(depth_m, depth_scale_m=ctx.filled_scale_m)
        if "hha" in todo:
            assert intr is not None
            if ctx.hha_on_main:
                deferred.append(_HHAJob(depth_m, raw_for_hha, intr, task.outputs["hha"]))
            else:
                images["hha"] = _hha_bgr(depth_m, intr, raw_for_hha)
        if "jet" in todo:
            from fusionseg.modalities.jet import depth_to_jet

            images["jet"] = depth_to_jet(depth_m, max_depth_m=opts.jet_max_depth_m, order="bgr")
        if "normals" in todo:
            from fusionseg.modalities.normals import compute_normals, normals_to_uint8

            normals = compute_normals(depth_m, intr, radius_px=opts.normals_radius_px)
            images["normals"] = normals_to_uint8(normals, order="bgr")
    if any(p in SPECTRAL_PRODUCTS for p in todo):
        from fusionseg.modalities import evi as evi_mod

        assert task.nir is not None and task.rgb is not None
        nir = read_gray(task.nir)
        bgr = read_image(task.rgb)
        if bgr.shape[:2] != nir.shape:
            raise DataError(
                f"{task.rgb}: size {bgr.shape[1]}x{bgr.shape[0]} does not match the NIR "
                f"{task.nir.name} ({nir.shape[1]}x{nir.shape[0]}, width x height)"
            )
        if "evi" in todo:
            images["evi"] = evi_mod.encode_evi(nir, bgr)
        if "ndvi" in todo:
            images["ndvi"] = evi_mod.encode_ndvi(nir, bgr)
    return images, deferred


def process_frame(task: FrameTask, ctx: _Context) -> tuple[FrameResult, list[_HHAJob]]:
    """Compute and write one frame's missing outputs; failures are returned, never raised.

    Returns:
        The frame's result and, with the torch HHA backend, the HHA inputs left to the main process.
    """
    from fusionseg.data.io import write_png

    start = time.perf_counter()
    primary = str(task.primary or "")
    try:
        images, deferred = _compute_frame(task, ctx)
        for product, image in images.items():
            write_png(task.outputs[product], image)
    except FusionsegError as exc:
        return FrameResult(task.id, "failed", str(exc), primary, (), time.perf_counter() - start), []
    except MemoryError:
        msg = f"{primary}: out of memory while processing this frame"
        return FrameResult(task.id, "failed", msg, primary, (), time.perf_counter() - start), []
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the batch
        msg = f"{primary}: {type(exc).__name__}: {exc}"
        return FrameResult(task.id, "failed", msg, primary, (), time.perf_counter() - start), []
    written = tuple(images) + tuple("hha" for _ in deferred)
    return FrameResult(task.id, "done", "", primary, written, time.perf_counter() - start), deferred


# ----------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------


def _remove_stale_temps(out_dir: Path, products: Iterable[str]) -> int:
    """Delete temp files left by a killed atomic write (never complete outputs)."""
    removed = 0
    for product in products:
        folder = out_dir / product
        if not folder.is_dir():
            continue
        for path in folder.rglob(".*.tmp-*"):
            if path.is_file() and _TEMP_RE.match(path.name):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _write_meta(plan: PreparePlan, results: dict[str, FrameResult] | None, seconds: float) -> Path:
    counts = {"done": 0, "skipped": 0, "failed": 0}
    frames: dict[str, Any] = {}
    for frame_id, res in (results or {}).items():
        counts[res.status] += 1
        entry: dict[str, Any] = {"status": res.status}
        if res.message:
            entry["message"] = res.message
        frames[frame_id] = entry
    meta = {
        "kind": META_KIND,
        "fusionseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "state": "running" if results is None else "finished",
        "input": str(plan.input),
        "parameters": _parameters(plan),
        "depth_scale_source": plan.depth_scale_source,
        "intrinsics": plan.intrinsics.as_dict() if plan.intrinsics is not None else None,
        "intrinsics_convention": "0-based pixel centres (OpenCV)",
        "intrinsics_source": plan.intrinsics_source,
        "outputs": {
            p: {"folder": p, "format": "uint16 PNG" if p == "depth_filled" else "uint8 BGR PNG"}
            for p in plan.options.products
        },
        "lists": [lp.path.name for lp in plan.lists],
        "summary": {"total": len(plan.tasks), **counts, "seconds": round(seconds, 3)},
        "frames": frames,
    }
    path = plan.out_dir / META_NAME
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
    return path


_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last 8 bytes of every whole PNG


def output_intact(path: Path, product: str) -> bool:
    """True when an existing output is a whole PNG of the product's format (resume trusts only these).

    A file cut short (a killed run, a full disk), emptied or overwritten by something else fails: it
    must have the PNG signature, end with the IEND chunk and decode to uint16 single-channel depth
    (`depth_filled`) or a uint8 3-channel image (the colour products). Such a file is recomputed.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 8 + len(_PNG_END):
                return False
            fh.seek(-len(_PNG_END), os.SEEK_END)
            tail = fh.read()
    except OSError:
        return False
    import cv2

    from fusionseg.data.io import PNG_SIGNATURE

    if head != PNG_SIGNATURE or tail != _PNG_END:
        return False

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return False
    if product == "depth_filled":
        return image.dtype == np.uint16 and image.ndim == 2
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _write_lists(plan: PreparePlan, results: dict[str, FrameResult]) -> list[Path]:
    from fusionseg.data.listfile import write_list

    products = plan.options.products
    outputs = {task.id: task.outputs for task in plan.tasks}
    written = []
    for lp in plan.lists:
        ids = [
            frame_id
            for frame_id, _ in lp.frames
            if (res := results.get(frame_id)) is not None and res.status != "failed"
        ]  # a list never names a file that was not written
        # a rerun with fewer products keeps the columns an earlier run wrote, where every file is there
        previous = set(_header_columns(lp.path) or ()) if lp.path.is_file() else set()
        kept = {
            p
            for p in PRODUCTS
            if p in previous
            and p not in products
            and p not in lp.input_columns
            and all((plan.out_dir / p / f"{i}.png").is_file() for i in ids)
        }
        columns = list(lp.input_columns) + [
            p for p in PRODUCTS if (p in products or p in kept) and p not in lp.input_columns
        ]
        rows = []
        for frame_id, files in lp.frames:
            if frame_id not in ids:
                continue
            paths = {**files, **outputs[frame_id], **{p: plan.out_dir / p / f"{frame_id}.png" for p in kept}}
            rows.append({c: paths[c] for c in columns})
        # outputs are below the list (relative paths); input files outside `out_dir` are written as
        # absolute paths, since list readers refuse `..` (read with data.allow_absolute_paths=true)
        write_list(lp.path, columns, rows, allow_absolute=True)
        written.append(lp.path)
    return written


def run_prepare(
    plan: PreparePlan, *, on_result: Callable[[FrameResult], None] | None = None
) -> PrepareSummary:
    """Process every frame of `plan` and write the new list files and meta.json.

    Args:
        plan: From `plan_prepare`.
        on_result: Called in this process once per frame as it finishes (progress display).

    Returns:
        Counts of done / skipped / failed frames and the failures with their messages.

    Raises:
        ConfigError: the torch HHA backend asked for an unavailable device.
        DataError: another live process is writing to `plan.out_dir` (its lock file names it).
    """
    # one job per output folder: a second one refuses before it writes anything (fsutil.OutputLock);
    # the lock of a killed job is stale and taken over
    with OutputLock(plan.out_dir, purpose="prepare-depth"):
        remove_stale_temps(plan.out_dir)  # list / meta.json writes a kill cut short
        return _run_locked(plan, on_result)


def _run_locked(plan: PreparePlan, on_result: Callable[[FrameResult], None] | None) -> PrepareSummary:
    """`run_prepare` once the output folder's lock is held."""
    opts = plan.options
    start = time.perf_counter()
    ctx = _Context(
        options=opts,
        depth_scale_m=plan.depth_scale_m,
        filled_scale_m=plan.filled_scale_m,
        intrinsics=plan.intrinsics,
        hha_on_main=opts.hha_backend == "torch" and "hha" in opts.products,
    )
    hha_runner = _TorchHHA(opts.device) if ctx.hha_on_main else None
    _remove_stale_temps(plan.out_dir, opts.products)
    _write_meta(plan, None, 0.0)

    results: dict[str, FrameResult] = {}

    def report(res: FrameResult) -> None:
        results[res.id] = res
        if on_result is not None:
            on_result(res)

    todo = []
    for task in plan.tasks:
        if not opts.overwrite and all(output_intact(out, p) for p, out in task.outputs.items()):
            report(FrameResult(task.id, "skipped", file=str(task.primary or "")))
        else:
            todo.append(task)

    workers = opts.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    pending_hha: dict[str, tuple[FrameResult, list[_HHAJob]]] = {}

    def finish(res: FrameResult, deferred: list[_HHAJob]) -> None:
        if deferred and hha_runner is not None:
            pending_hha[res.id] = (res, deferred)
            if len(pending_hha) >= _HHA_BATCH:
                for done_res in hha_runner.flush(pending_hha):
                    report(done_res)
        else:
            report(res)

    if workers == 1:  # one process, one OpenCV thread, as in each pool worker (restored afterwards)
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for task in todo:
                finish(*process_frame(task, ctx))
        finally:
            cv2.setNumThreads(threads)
    else:
        _run_pool(todo, ctx, workers, finish)
    if hha_runner is not None and pending_hha:
        for done_res in hha_runner.flush(pending_hha):
            report(done_res)

    ordered = {t.id: results[t.id] for t in plan.tasks if t.id in results}
    seconds = time.perf_counter() - start
    lists = _write_lists(plan, ordered)
    meta_path = _write_meta(plan, ordered, seconds)
    summary = PrepareSummary(
        out_dir=plan.out_dir,
        meta_path=meta_path,
        lists=lists,
        products=opts.products,
        total=len(plan.tasks),
        seconds=seconds,
    )
    for res in ordered.values():
        if res.status == "done":
            summary.done += 1
        elif res.status == "skipped":
            summary.skipped += 1
        else:
            summary.failed += 1
            summary.failures.append(res)
    return summary


def _run_pool(
    todo: list[FrameTask],
    ctx: _Context,
    workers: int,
    finish: Callable[[FrameResult, list[_HHAJob]], None],
) -> None:
    """Run tasks in a spawn-started process pool, at most 4 per worker in flight."""
    queue = list(reversed(todo))
    in_flight: dict[Future, FrameTask] = {}
    # spawn: workers never inherit the parent's threads (torch/OpenMP state) and behave alike everywhere
    from fusionseg.data.pool import init_worker

    pool_args = {"initializer": init_worker, "initargs": (os.getpid(),)}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), **pool_args) as pool:
        try:
            while queue or in_flight:
                while queue and len(in_flight) < 4 * workers:
                    task = queue.pop()
                    in_flight[pool.submit(process_frame, task, ctx)] = task
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = in_flight.pop(fut)
                    try:
                        finish(*fut.result())
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                        msg = f"{task.primary}: {type(exc).__name__}: {exc}"
                        finish(FrameResult(task.id, "failed", msg, str(task.primary or "")), [])
        except BrokenProcessPool:
            # a worker died (killed, out of memory): report what was in flight or queued, stop
            for task in [*in_flight.values(), *reversed(queue)]:
                msg = f"{task.primary}: not processed (a worker process died; rerun to resume)"
                finish(FrameResult(task.id, "failed", msg, str(task.primary or "")), [])


class _TorchHHA:
    """Batched HHA with `hha_torch` in the main process (``--device cuda``)."""

    def __init__(self, device: str) -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: CUDA is not available to torch {torch.__version__} on this machine; "
                "use --device cpu"
            )
        self.device = torch.device(device)

    def flush(self, pending: dict[str, tuple[FrameResult, list[_HHAJob]]]) -> list[FrameResult]:
        """Compute and write the pending HHA images in batches of equal size; empties `pending`."""
        import torch

        from fusionseg.data.io import write_png
        from fusionseg.modalities.hha_torch import hha_torch

        groups: dict[tuple[tuple[int, int], bool], list[tuple[str, _HHAJob]]] = {}
        for frame_id, (_, jobs) in pending.items():
            for job in jobs:
                key = (job.depth_m.shape, job.raw_depth_m is not None)
                groups.setdefault(key, []).append((frame_id, job))
        failed: dict[str, str] = {}
        for (_, has_raw), items in groups.items():
            try:
                depth = torch.from_numpy(np.stack([job.depth_m for _, job in items]))  # (B, H, W) m
                raw = torch.from_numpy(np.stack([job.raw_depth_m for _, job in items])) if has_raw else None
                intr = [job.intrinsics for _, job in items]
                hha_u8 = hha_torch(depth, intr, raw_depth_m=raw, device=self.device)  # (B, H, W, 3)
                images = hha_u8.cpu().numpy()
                for (frame_id, job), image in zip(items, images):
                    try:
                        write_png(job.out, np.ascontiguousarray(image[..., ::-1]))  # RGB file order -> BGR
                    except FusionsegError as exc:
                        failed[frame_id] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a failed batch fails its frames, not the run
                for frame_id, _ in items:
                    failed[frame_id] = f"HHA ({self.device}) failed: {type(exc).__name__}: {exc}"
        results = []
        for frame_id, (res, _) in pending.items():
            if frame_id in failed:
                res = replace(res, status="failed", message=f"{res.file}: {failed[frame_id]}", written=())
            results.append(res)
        pending.clear()
        return results


def prepare_depth(
    input_path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    *,
    depth_scale: str | float | None = None,
    intrinsics: str | Path | Intrinsics | None = None,
    intrinsics_one_based: bool = False,
    on_plan: Callable[[PreparePlan], None] | None = None,
    on_result: Callable[[FrameResult], None] | None = None,
) -> PrepareSummary:
    """Plan and run a preparation job (see `plan_prepare` and `run_prepare` for the arguments).

    Args:
        on_plan: Called with the plan before any frame is processed (e.g. to size a progress bar).
    """
    plan = plan_prepare(
        input_path,
        out_dir,
        options,
        depth_scale=depth_scale,
        intrinsics=intrinsics,
        intrinsics_one_based=intrinsics_one_based,
    )
    if on_plan is not None:
        on_plan(plan)
    return run_prepare(plan, on_result=on_result)
