"""Pinhole camera intrinsics in pixels, 0-based pixel centres (OpenCV convention)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels with 0-based pixel centres (OpenCV convention).

    Pixel (u, v) = (column, row), the top-left pixel's centre is (0, 0). MATLAB-derived values (NYU
    toolbox, Gupta's HHA code) use 1-based centres: convert them with `from_one_based`.

    Attributes:
        fx: Focal length along x (columns), pixels.
        fy: Focal length along y (rows), pixels.
        cx: Principal point column, pixels, 0-based.
        cy: Principal point row, pixels, 0-based.
    """

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Intrinsics.{name} must be a finite number, got {value!r}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"Intrinsics focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_one_based(cls, fx: float, fy: float, cx: float, cy: float) -> Intrinsics:
        """Build from MATLAB-style 1-based principal point (subtracts 1 from cx and cy)."""
        return cls(fx, fy, cx - 1.0, cy - 1.0)

    @classmethod
    def parse(cls, text: str) -> Intrinsics:
        """Parse "fx,fy,cx,cy" (0-based pixels).

        Raises:
            ValueError: not four comma-separated numbers.
        """
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if len(parts) != 4:
            raise ValueError(f"intrinsics must be 'fx,fy,cx,cy', got {text!r}")
        try:
            fx, fy, cx, cy = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"intrinsics must be four numbers 'fx,fy,cx,cy', got {text!r}") from None
        return cls(fx, fy, cx, cy)

    def scaled(self, sx: float, sy: float) -> Intrinsics:
        """Intrinsics after resizing the image by factors (sx, sy) (pixel-centre aware)."""
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)

    def cropped(self, top_px: int, left_px: int) -> Intrinsics:
        """Intrinsics of a crop starting at row `top_px`, column `left_px`."""
        return Intrinsics(self.fx, self.fy, self.cx - left_px, self.cy - top_px)

    def as_dict(self) -> dict[str, float]:
        """{"fx", "fy", "cx", "cy"} as plain floats (JSON-ready)."""
        return {"fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy)}
