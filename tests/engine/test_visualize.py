"""Colour-coded label maps, overlays and the confusion-matrix plot."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.engine.visualize import colorize_labels, overlay_labels, render_confusion_matrix

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 128, 255)]


def test_colorize_uses_bgr_palette_and_white_for_unknown_ids():
    labels = np.array([[0, 1], [2, 7]], np.uint8)
    out = colorize_labels(labels, PALETTE)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 1].tolist() == [0, 0, 255]  # red in BGR
    assert out[1, 0].tolist() == [255, 128, 0]
    assert out[1, 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError):
        colorize_labels(np.zeros((2, 2), np.float32), PALETTE)


def test_overlay_blends_and_keeps_inputs():
    image = np.full((4, 4, 3), 100, np.uint8)
    colour = np.full((4, 4, 3), 200, np.uint8)
    before = image.copy()
    out = overlay_labels(image, colour, alpha=0.25)
    assert out[0, 0].tolist() == [125, 125, 125]
    np.testing.assert_array_equal(image, before)
    with pytest.raises(ValueError):
        overlay_labels(image, colour[:2])


def test_confusion_plot_draws_cells():
    cm = np.array([[0, 0, 0], [1, 9, 0], [0, 5, 5]])
    img = render_confusion_matrix(cm, ["void", "road", "car"])
    assert img.ndim == 3 and img.dtype == np.uint8 and img.shape[0] > 2 * 48
    left, top = img.shape[1] - 10 - 3 * 48, img.shape[0] - 10 - 2 * 48  # cell grid origin

    def cell(row: int, col: int) -> float:  # mean colour near a cell's corner (away from the text)
        y, x = top + row * 48 + 3, left + col * 48 + 3
        return float(img[y : y + 6, x : x + 6].mean())

    assert cell(0, 2) == 255.0  # road -> car: 0 %
    assert cell(0, 1) < cell(1, 1) < cell(0, 0) < 255.0  # 90 % darker than 50 % darker than 10 %
    with pytest.raises(ValueError):
        render_confusion_matrix(cm, ["a", "b"])
