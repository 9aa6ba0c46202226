"""Camera intrinsics from `--intrinsics` text, JSON, K-matrix text or KITTI calib files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fusionseg.errors import ConfigError, DataError
from fusionseg.modalities.intrinsics import Intrinsics


def _intrinsics_from_mapping(data: Any, source: str) -> Intrinsics:
    """Intrinsics from {"fx","fy","cx","cy"}, {"intrinsics": {...}}, {"K": 3x3} or a Cityscapes camera."""
    if isinstance(data, dict) and isinstance(data.get("intrinsic"), dict) and "u0" in data["intrinsic"]:
        from fusionseg.data.cityscapes import read_cityscapes_camera

        return read_cityscapes_camera(source).intrinsics  # *_camera.json: fx, fy, u0, v0 (0-based)
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
    elif k.size == 16:  # ScanNet intrinsic_color.txt / intrinsic_depth.txt: a 4x4 matrix
        k = k.reshape(4, 4)[:3, :3]
    if k.size != 9:
        raise DataError(
            f"{source}: expected a 3x3 camera matrix (9 numbers), a 3x4 projection or a 4x4 matrix "
            f"(16), got {k.size} numbers"
        )
    k = k.reshape(3, 3)
    try:
        return Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    except ValueError as exc:
        raise DataError(f"{source}: bad camera matrix ({exc})") from None


def read_intrinsics_file(path: str | Path) -> Intrinsics:
    """Read camera intrinsics from a file (0-based pixel centres, as stored).

    Accepted forms: JSON ``{"fx", "fy", "cx", "cy"}``, a JSON object with an ``"intrinsics"`` entry
    (fusionseg synthetic meta.json, prepare-dataset frame records) or a ``"K"`` 3x3 list; a Cityscapes
    ``*_camera.json`` (``intrinsic.fx/fy/u0/v0``); a text file holding the 9 numbers of a 3x3 K
    matrix (whitespace, comma or bracket separated) or the 16 of a 4x4 one (ScanNet
    ``intrinsic_depth.txt``); a KITTI calib file (its ``P2:`` line). 1-based values (MATLAB) are
    corrected by the caller (`resolve_intrinsics(one_based=True)`, prepare-depth's
    `intrinsics_one_based`).

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
                raise ConfigError(f"intrinsics: {exc}") from None
        else:
            raise ConfigError(f"intrinsics: {text!r} is neither 'fx,fy,cx,cy' nor an existing file")
    if intr is not None and one_based:
        intr = Intrinsics.from_one_based(intr.fx, intr.fy, intr.cx, intr.cy)
    return intr
