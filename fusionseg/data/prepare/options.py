"""What a prepare-depth job is asked for: its products, the columns it reads and `PrepareOptions`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fusionseg.errors import ConfigError

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

Status = Literal["done", "skipped", "failed"]
Frames = list[tuple[str, dict[str, Path]]]  # (frame id, column -> absolute input file)


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
        completion_backend: "numpy" (`completion`, in the workers) or "torch" (`completion_torch` on
            `device`, frames processed in the main process); equal within 1e-4 m.
        device: Torch device for the torch back-ends ("cpu" or "cuda").
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
    completion_backend: Literal["numpy", "torch"] = "numpy"
    device: str = "cpu"
    overwrite: bool = False
    depth_sensor: str = "any"

    def __post_init__(self) -> None:
        from fusionseg.data.io import DEPTH_SENSOR_CHOICES

        choices = {
            "complete": ("none", "fast", "multiscale"),
            "blur": ("bilateral", "gaussian"),
            "hha_backend": ("numpy", "torch"),
            "completion_backend": ("numpy", "torch"),
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
                "(`complete` fast|multiscale, `hha`, `jet`, `normals`, `evi` or `ndvi`)"
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
