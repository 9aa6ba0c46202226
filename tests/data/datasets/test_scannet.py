""".sens, label zips, the label table and scene lists of ScanNet v2, built here in the official layout."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from indoor_layouts import COLOUR_HW, DEPTH_HW, make_scannet_root

from fusionseg.data.datasets import scannet
from fusionseg.errors import DataError


@pytest.fixture(scope="module")
def scannet_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scannet")
    return root, make_scannet_root(root)


def test_label_table_maps_nyu40_to_the_benchmark_ids(scannet_root: tuple[Path, dict]) -> None:
    root, _ = scannet_root
    table = scannet.read_label_table(root / scannet.LABEL_TSV)
    names = [c.lower() for c in scannet.SCANNET.classes]
    assert table[1] == names.index("wall") and table[2] == names.index("chair")
    assert table[3] == names.index("floor") and table[5] == names.index("door")
    assert table[99] == names.index("shower curtain") and table[300] == names.index("refrigerator")
    assert table[56] == names.index("other furniture")  # nyu40 39
    assert table[22] == 0 and table[40] == 0  # books (23), mirror (19): not benchmark classes
    assert table[7777] == 0 and table[0] == 0  # absent from the table, unannotated
    assert len(scannet.BENCHMARK_NYU40_IDS) == len(names) - 1 == 20


def test_sens_header_and_frames(scannet_root: tuple[Path, dict]) -> None:
    root, arrays = scannet_root
    sens = root / "scans" / "scene0000_01" / "scene0000_01.sens"
    header = scannet.read_sens_header(sens)
    assert header.color_hw == COLOUR_HW and header.depth_hw == DEPTH_HW and header.num_frames == 5
    assert header.depth_shift == 1000.0 and header.color_codec == "jpeg"
    offsets = scannet.sens_frame_offsets(sens, header)
    colour, depth = scannet.read_sens_frame(sens, header, offsets[4])
    np.testing.assert_array_equal(depth, arrays[("scene0000_01", 4)]["depth"])
    assert colour.shape == (*COLOUR_HW, 3) and abs(int(colour[5, 2, 0]) - 240) <= 4 and colour[5, 2, 2] < 40


def test_frames_follow_scene_lists_and_the_step(scannet_root: tuple[Path, dict]) -> None:
    root, _ = scannet_root
    reader = scannet.ScanNetReader(frame_step=2)
    reader.check_layout(root)
    refs = reader.list_frames(root, 20)
    assert [(r.frame_id, r.split) for r in refs] == [
        ("scene0000_00_000000", "train"),
        ("scene0000_00_000002", "train"),
        ("scene0000_00_000004", "train"),
        ("scene0000_01_000000", "train"),
        ("scene0000_01_000002", "train"),
        ("scene0000_01_000004", "train"),
        ("scene0011_00_000000", "val"),
        ("scene0011_00_000002", "val"),
        ("scene0011_00_000004", "val"),
    ]
    odd = [r.source[1] for r in scannet.ScanNetReader(frame_step=3).list_frames(root, 20)]
    assert odd == [0, 0, 0]  # frame 3 has no label image
    assert [r.source[1] for r in scannet.ScanNetReader().list_frames(root, 20)] == [0, 0, 0]


def test_read_frame_known_pixels(scannet_root: tuple[Path, dict]) -> None:
    root, arrays = scannet_root
    reader = scannet.ScanNetReader(frame_step=2)
    table = scannet.read_label_table(root / scannet.LABEL_TSV)
    for ref in reader.list_frames(root, 20):
        a = arrays[(ref.source[0], ref.source[1])]
        frame = reader.read_frame(root, ref, 20)
        assert frame.rgb.shape == (*DEPTH_HW, 3) and frame.label.shape == DEPTH_HW
        assert frame.depth_m.shape == DEPTH_HW and frame.depth_m.dtype == np.float32
        np.testing.assert_allclose(frame.depth_m, a["depth"] / 1000.0, rtol=1e-6)
        assert frame.depth_m[0, 0] == 0 and frame.depth_m[1, 1] == pytest.approx(9.5)
        np.testing.assert_array_equal(frame.label, table[a["label_small"]])
        assert abs(int(frame.rgb[3, 1, 0]) - 240) <= 4 and frame.rgb[3, 1, 2] < 40  # red stays red
        assert abs(int(frame.rgb[3, 14, 2]) - 240) <= 4 and frame.rgb[3, 14, 0] < 40
        k = frame.intrinsics
        assert (k.fx, k.cx, k.cy) == (18.0, pytest.approx(7.6), pytest.approx(5.7))


def test_bad_inputs_are_named(tmp_path: Path, scannet_root: tuple[Path, dict]) -> None:
    root, _ = scannet_root
    (tmp_path / "a.sens").write_bytes(struct.pack("<I", 3))
    with pytest.raises(DataError, match=r"a\.sens: \.sens version 3, expected 4"):
        scannet.read_sens_header(tmp_path / "a.sens")
    data = (root / "scans" / "scene0000_00" / "scene0000_00.sens").read_bytes()
    (tmp_path / "cut.sens").write_bytes(data[: len(data) - 10])
    with pytest.raises(DataError, match=r"cut\.sens: truncated \.sens file"):
        scannet.sens_frame_offsets(tmp_path / "cut.sens", scannet.read_sens_header(tmp_path / "cut.sens"))
    (tmp_path / "t.tsv").write_text("id\tcategory\n1\twall\n")
    with pytest.raises(DataError, match=r"t\.tsv: needs the tab-separated columns `id` and `nyu40id`"):
        scannet.read_label_table(tmp_path / "t.tsv")
    with pytest.raises(DataError, match=r"scannetv2-labels\.combined\.tsv: file not found"):
        scannet.ScanNetReader().check_layout(tmp_path)
    with pytest.raises(DataError, match="not a 4x4 pinhole"):
        scannet.intrinsics_from_4x4(np.eye(3), "x")


def test_docs_table_is_the_code_table() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "datasets.md").read_text(encoding="utf-8")
    cell = r"(\d+) \| (\d+) \| ([A-Za-z ]+)"
    pairs = {}
    for row in re.findall(rf"^\| {cell} \| {cell} \|$", docs, flags=re.MULTILINE):
        pairs |= {int(row[0]): (int(row[1]), row[2]), int(row[3]): (int(row[4]), row[5])}
    names = scannet.SCANNET.classes
    assert pairs == {i: (nyu40, names[i]) for i, nyu40 in enumerate(scannet.BENCHMARK_NYU40_IDS, 1)}
