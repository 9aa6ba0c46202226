"""Depth read in the wrong unit is refused wherever depth is read (prepare-depth, training and
evaluation datasets, predict), judged by the range of the sensor: real frames pass with their true
unit and fail, naming the units that would fit, when the unit is off by 4x, 10x or 1000x."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_dataset import write_sample

from fusionseg.config import DataConfig
from fusionseg.data.catalog import get_dataset_info
from fusionseg.data.dataset import build_dataset, read_modality, resolve_depth_sensor
from fusionseg.data.io import DEPTH_SENSOR_CHOICES, DEPTH_SENSORS, DEPTH_UNITS, check_depth_range, read_depth
from fusionseg.data.listfile import write_list
from fusionseg.errors import DataError

# real captures in ../shared/data: (file, its unit, its sensor)
REAL = [
    ("kinectv2-samples/esanet/sample_depth.png", "0.1mm", "indoor"),
    ("kinectv2-samples/emsanet/sample_depth.png", "mm", "indoor"),
    ("nyuv2-hha-ref/crop425x560/nyu0001_depth_raw_mm.png", "mm", "indoor"),
    *[(f"nyuv2-hha-ref/full480x640/nyu000{i}/depth_raw_1e-4m.png", "1e-4m", "indoor") for i in (1, 2, 3, 4)],
    *[(f"kitti-object-lidar3/sparse_depth/00000{i}.png", "kitti", "outdoor") for i in (0, 1, 2)],
]


@pytest.mark.parametrize(("name", "unit", "sensor"), REAL, ids=[r[0].split("/")[-1] for r in REAL])
def test_real_frames_pass_with_their_unit_and_fail_with_a_wrong_one(shared_data, name, unit, sensor):
    path = shared_data / name
    for check in (sensor, "any"):
        depth = read_depth(path, depth_scale_m=unit, sensor=check)
        assert depth.dtype == np.float32 and (depth > 0).any()
    true_scale = DEPTH_UNITS[unit]
    wrong = {u: s for u, s in DEPTH_UNITS.items() if max(s / true_scale, true_scale / s) >= 3.5}
    assert "m" in wrong and len(wrong) >= 2
    for other in wrong:
        with pytest.raises(DataError) as info:
            read_depth(path, depth_scale_m=other, sensor=sensor)
        message = str(info.value)
        assert str(path) in message and "median depth" in message and "m/unit" in message, message
        assert "units that would fit" in message and f"{unit} (median" in message, message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("sensor", "median_m", "ok"),
    [
        ("indoor", 2.5, True),
        ("indoor", 0.25, False),  # mm read as 0.1 mm
        ("indoor", 25.0, False),  # 0.1 mm read as mm
        ("outdoor", 12.0, True),
        ("outdoor", 3.0, False),  # KITTI 1/256 m read as mm
        ("any", 3000.0, False),  # mm read as m
        ("any", 25.0, True),  # "any" cannot tell 10x: that is what the sensor profiles are for
        ("off", 3e6, True),
    ],
)
def test_sensor_ranges(sensor, median_m, ok):
    depth = np.zeros((20, 20), np.float32)
    depth[:10] = median_m
    depth[10:12] = median_m * 1.1
    if ok:
        check_depth_range(depth, source="f.png", sensor=sensor)
    else:
        with pytest.raises(DataError, match=r"^f\.png: "):
            check_depth_range(depth, source="f.png", sensor=sensor)


def test_empty_frames_only_where_allowed():
    empty = np.zeros((8, 8), np.float32)
    with pytest.raises(DataError, match="no valid pixels"):
        check_depth_range(empty, source="f.png", sensor="indoor")
    check_depth_range(empty, source="f.png", sensor="indoor", allow_empty=True)  # a sensor that saw nothing
    with pytest.raises(ValueError, match="sensor must be one of"):
        check_depth_range(empty + 1, source="f.png", sensor="kinect")
    assert DEPTH_SENSOR_CHOICES == (*DEPTH_SENSORS, "off")


def test_datasets_declare_their_sensor():
    assert get_dataset_info("nyuv2_13").depth_sensor == "indoor"
    assert get_dataset_info("cityscapes19").depth_sensor == "outdoor"
    assert get_dataset_info("synthetic").depth_sensor == "any"  # indoor and outdoor scenes mixed
    assert resolve_depth_sensor(DataConfig(dataset="sunrgbd")) == "indoor"
    assert resolve_depth_sensor(DataConfig(dataset="sunrgbd", depth_sensor="off")) == "off"


def test_training_data_in_the_wrong_unit_is_refused(tmp_path: Path):
    """Millimetre PNGs read with depth_scale_m=1 (the issue's reproducer) or 0.1 mm on an indoor set."""
    rows = [write_sample(tmp_path, f"{i:02d}") for i in range(2)]  # depth 1.5 m, stored in mm
    write_list(tmp_path / "train.txt", ("rgb", "depth", "nir", "label"), rows)
    (tmp_path / "val.txt").write_text((tmp_path / "train.txt").read_text())
    cfg = DataConfig(root=str(tmp_path), modalities=("rgb", "depth"), height_px=16, width_px=32)
    assert build_dataset(cfg, "train", num_classes=5)[0]["inputs"]["depth"].max() == pytest.approx(1.5)
    for bad in (
        dataclasses.replace(cfg, depth_scale_m=1.0),
        dataclasses.replace(cfg, dataset="nyuv2_13", depth_scale_m=1e-4),
    ):
        for split in ("train", "val"):
            with pytest.raises(DataError, match=r"depth/00\.png: median depth"):
                build_dataset(bad, split, num_classes=14)[0]
    escaped = dataclasses.replace(cfg, dataset="nyuv2_13", depth_scale_m=1e-4, depth_sensor="off")
    assert build_dataset(escaped, "val", num_classes=14)[0]["inputs"]["depth"].max() == pytest.approx(0.15)


def test_all_missing_depth_frame_is_valid_training_input(tmp_path: Path):
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint16))
    assert read_modality("depth", path, depth_scale_m=1e-3, depth_sensor="indoor").max() == 0.0


def test_cli_choices_match_the_sensor_table():
    import typing

    from fusionseg.cli.options import DEPTH_SENSOR_NAMES
    from fusionseg.cli.predict import command as predict
    from fusionseg.cli.prepare_depth import command as prepare

    assert DEPTH_SENSOR_NAMES == DEPTH_SENSOR_CHOICES
    for command, extra in ((predict, ("auto",)), (prepare, ())):
        option = {p.name: p for p in command.params}["depth_sensor"]
        assert tuple(option.type.choices) == (*extra, *DEPTH_SENSOR_CHOICES), command.name
    hints = typing.get_type_hints(DataConfig)
    assert typing.get_args(hints["depth_sensor"]) == ("auto", *DEPTH_SENSOR_CHOICES)
