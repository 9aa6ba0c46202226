"""Colour-coded label maps, overlays and the confusion-matrix plot."""

from __future__ import annotations

import numpy as np
import pytest

from fusionseg.engine.visualize import (
    colorize_labels,
    overlay_labels,
    render_comparison_grid,
    render_confusion_matrix,
)

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


def test_comparison_grid_places_cells_under_titles():
    h, w, gap, title = 8, 12, 3, 20
    labels = np.full((h, w), 2, np.uint8)
    labels[:, : w // 2] = 1
    cells = [
        [np.full((h, w, 3), 10 * (3 * i + j), np.uint8) for j in range(2)]
        + [colorize_labels(labels, PALETTE)]
        for i in range(2)
    ]
    before = [[c.copy() for c in row] for row in cells]
    img = render_comparison_grid(cells, ["rgb", "depth", "ssma"], gap_px=gap, title_px=title)
    assert img.dtype == np.uint8 and img.shape == (title + 2 * (h + gap), gap + 3 * (w + gap), 3)
    for i in range(2):
        for j in range(3):
            y0, x0 = title + i * (h + gap), gap + j * (w + gap)
            np.testing.assert_array_equal(img[y0 : y0 + h, x0 : x0 + w], cells[i][j])
            np.testing.assert_array_equal(cells[i][j], before[i][j])  # inputs untouched
    x_ssma = gap + 2 * (w + gap)
    assert img[title + 1, x_ssma + 1].tolist() == [0, 0, 255]  # class 1: red (RGB) -> BGR
    assert img[title + 1, x_ssma + w - 1].tolist() == [255, 128, 0]  # class 2
    header = img[:title]
    assert (header < 128).any() and (header == 255).any()  # dark title text on white
    assert (img[title : title + h, :gap] == 255).all()  # white border


def test_comparison_grid_title_ink_sits_over_its_column():
    cells = [[np.zeros((16, 64, 3), np.uint8)] * 3]
    img = render_comparison_grid(cells, ["", "depth", ""], gap_px=4)
    ink_cols = np.flatnonzero((img[:24] < 128).any(axis=(0, 2)))
    assert ink_cols.size and ink_cols.min() >= 4 + 68 and ink_cols.max() < 4 + 2 * 68


@pytest.mark.parametrize(
    ("rows", "titles"),
    [
        ([], ["a"]),
        ([[np.zeros((4, 4, 3), np.uint8)]], []),
        ([[np.zeros((4, 4, 3), np.uint8)]], ["a", "b"]),  # row shorter than the titles
        ([[np.zeros((4, 4, 3), np.uint8)], [np.zeros((4, 5, 3), np.uint8)]], ["a"]),  # other size
        ([[np.zeros((4, 4, 3), np.float32)]], ["a"]),
        ([[np.zeros((4, 4), np.uint8)]], ["a"]),
    ],
)
def test_comparison_grid_rejects_bad_cells(rows, titles):
    with pytest.raises(ValueError):
        render_comparison_grid(rows, titles)
