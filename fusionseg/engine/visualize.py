"""Pictures of predictions: colour-coded label maps, overlays, a confusion-matrix plot and a titled
grid of images for side-by-side comparisons (numpy + cv2).

All images are uint8 in OpenCV's BGR order, ready for `fusionseg.data.io.write_png`; palettes are given
in RGB (as in `DatasetInfo.palette`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray


def palette_bgr(palette: Sequence[Sequence[int]]) -> NDArray[np.uint8]:
    """(K, 3) uint8 BGR look-up table from K RGB triplets."""
    lut = np.asarray(palette, dtype=np.int64)
    if lut.ndim != 2 or lut.shape[1] != 3 or lut.min(initial=0) < 0 or lut.max(initial=0) > 255:
        raise ValueError(f"palette must be a list of RGB triplets in 0..255, got shape {lut.shape}")
    return lut[:, ::-1].astype(np.uint8)


def colorize_labels(labels: NDArray[np.integer], palette: Sequence[Sequence[int]]) -> NDArray[np.uint8]:
    """Colour-code a label map.

    Args:
        labels: (H, W) integer class ids.
        palette: RGB colour per class id; ids beyond the palette are drawn white.

    Returns:
        (H, W, 3) uint8 BGR image.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an (H, W) integer array, got {labels.dtype} {labels.shape}")
    lut = np.full((max(int(labels.max(initial=0)) + 1, len(palette)), 3), 255, dtype=np.uint8)
    lut[: len(palette)] = palette_bgr(palette)
    return lut[np.clip(labels, 0, None)]


def overlay_labels(
    image_bgr: NDArray[np.uint8], color_bgr: NDArray[np.uint8], *, alpha: float = 0.5
) -> NDArray[np.uint8]:
    """Blend a colour-coded label map over an image.

    Args:
        image_bgr: (H, W, 3) uint8 image.
        color_bgr: (H, W, 3) uint8 colour-coded labels of the same size.
        alpha: Weight of the labels, 0..1.

    Returns:
        (H, W, 3) uint8 blend (new array).
    """
    if image_bgr.shape != color_bgr.shape or image_bgr.ndim != 3:
        raise ValueError(f"image {image_bgr.shape} and labels {color_bgr.shape} must both be (H, W, 3)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return cv2.addWeighted(color_bgr, alpha, image_bgr, 1.0 - alpha, 0.0)


def _heat_bgr(value: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1) colour ramp, BGR."""
    v = float(np.clip(value, 0.0, 1.0))
    return (int(255 - 100 * v), int(255 - 200 * v), int(255 - 240 * v))


def render_confusion_matrix(
    confusion: NDArray[np.integer],
    class_names: Sequence[str],
    *,
    skip_void: bool = True,
    cell_px: int = 48,
) -> NDArray[np.uint8]:
    """Draw a row-normalised confusion matrix with class names and percentages.

    Args:
        confusion: (C, C) counts, rows = ground truth, columns = prediction.
        class_names: C names.
        skip_void: Leave out row 0 (void ground truth, always empty); column 0 stays ("predicted void").
        cell_px: Side of one cell in pixels.

    Returns:
        (H, W, 3) uint8 BGR image.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    c = cm.shape[0]
    if cm.shape != (c, c) or len(class_names) != c:
        raise ValueError(f"confusion {cm.shape} and {len(class_names)} class names do not match")
    rows = list(range(1 if skip_void else 0, c))
    cols = list(range(c))
    sums = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    label_w = max(cv2.getTextSize(n, font, scale, thick)[0][0] for n in class_names) + 12
    top = label_w + 24  # column names are drawn rotated in this band
    left = label_w
    height, width = top + cell_px * len(rows) + 10, left + cell_px * len(cols) + 10
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, gi in enumerate(rows):
        y0 = top + r * cell_px
        cv2.putText(canvas, class_names[gi], (4, y0 + cell_px // 2 + 4), font, scale, (0, 0, 0), thick)
        for k, pj in enumerate(cols):
            x0 = left + k * cell_px
            colour = _heat_bgr(norm[gi, pj])
            cv2.rectangle(canvas, (x0, y0), (x0 + cell_px - 1, y0 + cell_px - 1), colour, -1)
            text = f"{100 * norm[gi, pj]:.0f}"
            ink = (255, 255, 255) if norm[gi, pj] > 0.5 else (0, 0, 0)
            (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
            org = (x0 + (cell_px - tw) // 2, y0 + (cell_px + th) // 2)
            cv2.putText(canvas, text, org, font, scale, ink, thick)
    # column names: draw horizontally on a strip, then rotate it into the top band
    strip = np.full((cell_px * len(cols), top - 4, 3), 255, dtype=np.uint8)
    for k, pj in enumerate(cols):
        cv2.putText(
            strip, class_names[pj], (4, k * cell_px + cell_px // 2 + 4), font, scale, (0, 0, 0), thick
        )
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)  # (top - 4, cell_px * len(cols), 3)
    canvas[: rotated.shape[0], left : left + rotated.shape[1]] = rotated
    cv2.putText(canvas, "GT \\ pred (% of row)", (4, 14), font, scale, (0, 0, 0), thick)
    return canvas


GRID_GAP_PX = 4  # white border around and between the cells of `render_comparison_grid`


def render_comparison_grid(
    rows: Sequence[Sequence[NDArray[np.uint8]]],
    titles: Sequence[str],
    *,
    gap_px: int = GRID_GAP_PX,
    title_px: int = 24,
) -> NDArray[np.uint8]:
    """Lay out equally sized images as a grid under a header row of column titles.

    Cell (i, j) is copied unchanged to rows `title_px + i * (H + gap_px)` onwards and columns
    `gap_px + j * (W + gap_px)` onwards; the rest is white, titles are black and centred over their
    column (the font shrinks for titles wider than a cell).

    Args:
        rows: R rows of len(titles) images each, every one (H, W, 3) uint8 BGR of the same size.
        titles: Column titles.
        gap_px: White pixels around and between the cells (>= 0).
        title_px: Height of the header band (>= 12).

    Returns:
        (title_px + R * (H + gap_px), gap_px + len(titles) * (W + gap_px), 3) uint8 BGR image.

    Raises:
        ValueError: no rows or titles, a row of the wrong length, an image of another shape or dtype,
            or a negative gap / too small header.
    """
    if not rows or not titles:
        raise ValueError(f"rows and titles must not be empty, got {len(rows)} rows and {len(titles)} titles")
    if gap_px < 0 or title_px < 12:
        raise ValueError(f"gap_px must be >= 0 and title_px >= 12, got {gap_px} and {title_px}")
    first = np.asarray(rows[0][0]) if len(rows[0]) else None
    if first is None or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"cells must be (H, W, 3) images, got {None if first is None else first.shape}")
    h, w = first.shape[:2]
    for i, row in enumerate(rows):
        if len(row) != len(titles):
            raise ValueError(f"rows[{i}] has {len(row)} images for {len(titles)} titles")
        for j, cell in enumerate(row):
            if cell.shape != (h, w, 3) or cell.dtype != np.uint8:
                raise ValueError(f"rows[{i}][{j}] is {cell.dtype} {cell.shape}, expected uint8 {(h, w, 3)}")
    n_rows, n_cols = len(rows), len(titles)
    canvas = np.full((title_px + n_rows * (h + gap_px), gap_px + n_cols * (w + gap_px), 3), 255, np.uint8)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    for j, title in enumerate(titles):
        scale = 0.5
        (tw, th), _ = cv2.getTextSize(title, font, scale, thick)
        if tw > w - 4:  # shrink to fit the cell width, not below a legible size
            scale = max(0.3, scale * (w - 4) / tw)
            (tw, th), _ = cv2.getTextSize(title, font, scale, thick)
        x0 = gap_px + j * (w + gap_px)
        org = (x0 + max(0, (w - tw) // 2), (title_px + th) // 2)
        cv2.putText(canvas, title, org, font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    for i, row in enumerate(rows):
        y0 = title_px + i * (h + gap_px)
        for j, cell in enumerate(row):
            x0 = gap_px + j * (w + gap_px)
            canvas[y0 : y0 + h, x0 : x0 + w] = cell
    return canvas
