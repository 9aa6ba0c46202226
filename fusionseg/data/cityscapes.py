"""Cityscapes camera files: stereo baseline and intrinsics per frame (`reference/modalities.md` §5.2).

Each frame has `camera/<split>/<city>/<name>_camera.json` with `extrinsic.baseline` (metres) and
`intrinsic.fx/fy/u0/v0` (pixels at 2048x1024). Values differ per city and sequence, so they are read per
frame rather than hard-coded (§5.2). The principal point (u0, v0) is taken as 0-based (OpenCV
convention), which is how cityscapesScripts uses it; the README does not say so explicitly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

__all__ = ["CityscapesCamera", "read_cityscapes_camera"]


@dataclass(frozen=True)
class CityscapesCamera:
    """Stereo parameters of one Cityscapes frame.

    Attributes:
        baseline_m: Stereo baseline in metres (`extrinsic.baseline`, about 0.21-0.22).
        intrinsics: Left-camera intrinsics in pixels at the full 2048x1024 resolution (use
            `Intrinsics.scaled` after resizing).
    """

    baseline_m: float
    intrinsics: Intrinsics


def _number(data: dict, section: str, key: str, path: Path) -> float:
    block = data.get(section)
    if not isinstance(block, dict):
        raise DataError(f"{path}: missing '{section}' section in the camera file")
    if key not in block:
        raise DataError(f"{path}: missing key '{section}.{key}' in the camera file")
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{path}: '{section}.{key}' must be a finite number, got {value!r}")
    return float(value)


def read_cityscapes_camera(path: str | Path) -> CityscapesCamera:
    """Read a Cityscapes `*_camera.json` file.

    Args:
        path: The frame's camera JSON file.

    Returns:
        CityscapesCamera with the baseline in metres and 0-based pixel intrinsics.

    Raises:
        DataError: unreadable file, invalid JSON, a missing or non-numeric key, or a non-positive
            baseline or focal length; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"{path}: cannot read camera file ({reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'extrinsic' and 'intrinsic' sections")

    baseline_m = _number(data, "extrinsic", "baseline", path)
    fx, fy, u0, v0 = (_number(data, "intrinsic", key, path) for key in ("fx", "fy", "u0", "v0"))
    if baseline_m <= 0:
        raise DataError(f"{path}: 'extrinsic.baseline' must be positive metres, got {baseline_m}")
    if fx <= 0 or fy <= 0:
        raise DataError(f"{path}: focal lengths must be positive, got fx={fx}, fy={fy}")
    return CityscapesCamera(baseline_m=baseline_m, intrinsics=Intrinsics(fx, fy, u0, v0))
