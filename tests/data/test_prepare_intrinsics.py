"""Per-frame intrinsics files in every format of issue 15: ScanNet 4x4, Cityscapes camera JSON, 1-based K."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusionseg.data.prepare import PrepareOptions, read_intrinsics_file
from fusionseg.data.prepare.frame import _Context, _frame_intrinsics
from fusionseg.data.prepare.tasks import FrameTask
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics


def test_scannet_4x4_intrinsic_file(tmp_path: Path) -> None:
    path = tmp_path / "intrinsic_depth.txt"
    path.write_text(
        "577.870605 0.000000 319.500000 0.000000\n0.000000 577.870605 239.500000 0.000000\n"
        "0.000000 0.000000 1.000000 0.000000\n0.000000 0.000000 0.000000 1.000000\n"
    )
    assert read_intrinsics_file(path) == Intrinsics(577.870605, 577.870605, 319.5, 239.5)


def test_cityscapes_camera_json(tmp_path: Path) -> None:
    path = tmp_path / "aachen_000000_000019_camera.json"
    camera = {
        "extrinsic": {"baseline": 0.209313},
        "intrinsic": {"fx": 2262.52, "fy": 2265.30, "u0": 1096.98, "v0": 513.137},
    }
    path.write_text(json.dumps(camera))
    assert read_intrinsics_file(path) == Intrinsics(2262.52, 2265.30, 1096.98, 513.137)
    camera["intrinsic"]["fx"] = -1
    path.write_text(json.dumps(camera))
    with pytest.raises(DataError, match="camera.json: focal lengths must be positive"):
        read_intrinsics_file(path)


def test_wrong_number_count_is_named(tmp_path: Path) -> None:
    path = tmp_path / "k.txt"
    path.write_text(" ".join(["1"] * 10))
    with pytest.raises(DataError, match="k.txt: expected a 3x3 camera matrix .* got 10 numbers"):
        read_intrinsics_file(path)


@pytest.mark.parametrize(("one_based", "centre"), [(False, (319.5, 239.5)), (True, (318.5, 238.5))])
def test_per_frame_one_based_correction_is_explicit(tmp_path: Path, one_based: bool, centre: tuple) -> None:
    path = tmp_path / "K.txt"  # SUN RGB-D intrinsics.txt style: a 1-based MATLAB K
    np.savetxt(path, np.array([[529.5, 0, 319.5], [0, 529.5, 239.5], [0, 0, 1]]))
    task = FrameTask("f", None, None, None, path, {})
    ctx = _Context(PrepareOptions(jet=True), None, None, None, hha_on_main=False, one_based_files=one_based)
    intr = _frame_intrinsics(task, ctx)
    assert (intr.cx, intr.cy) == centre and intr.fx == 529.5


def test_one_based_flag_reaches_per_frame_files(tmp_path: Path) -> None:
    import cv2

    from fusionseg.data.prepare import plan_prepare

    cv2.imwrite(str(tmp_path / "d.png"), np.full((8, 8), 2000, np.uint16))
    np.savetxt(tmp_path / "K.txt", np.eye(3) * 500)
    (tmp_path / "list.txt").write_text("# columns: depth intrinsics\nd.png K.txt\n")
    opts = PrepareOptions(hha=True, workers=1)
    for one_based in (False, True):
        plan = plan_prepare(
            tmp_path / "list.txt", tmp_path / "out", opts, depth_scale="mm", intrinsics_one_based=one_based
        )
        assert plan.intrinsics_source == "per-frame column" and plan.per_frame_one_based is one_based
