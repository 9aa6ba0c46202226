"""prepare-dataset's framework: resume, failures, settings checks, the pool, units, class files, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from dataset_layouts import H, W, make_cityscapes

from fusionseg.cli import cli, main
from fusionseg.data import datasets
from fusionseg.data.catalog import DatasetInfo, get_dataset_info
from fusionseg.data.classfile import dump_class_file, load_class_file
from fusionseg.data.datasets.base import FrameRef, RawFrame
from fusionseg.data.datasets.runner import prepare_dataset
from fusionseg.data.io import depth_to_png_units_exact, parse_depth_scale
from fusionseg.data.listfile import read_list
from fusionseg.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cityscapes(tmp_path_factory.mktemp("cityscapes"))


def test_rerun_skips_finished_frames_and_rewrites_a_cut_file(download: Path, tmp_path: Path) -> None:
    first = prepare_dataset("cityscapes", download, tmp_path, workers=1)
    assert (first.done, first.skipped) == (4, 0)
    again = prepare_dataset("cityscapes", download, tmp_path, workers=1)
    assert (again.done, again.skipped, again.failed) == (0, 4, 0)
    cut = tmp_path / "train/depth/aachen_000001_000019.png"
    cut.write_bytes(cut.read_bytes()[:-20])  # a write a kill cut short
    third = prepare_dataset("cityscapes", download, tmp_path, workers=1)
    assert (third.done, third.skipped) == (1, 3)
    assert cv2.imread(str(cut), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert [p.name for p in third.lists] == ["train.txt", "val.txt"]


def test_other_settings_need_overwrite(download: Path, tmp_path: Path) -> None:
    prepare_dataset("cityscapes", download, tmp_path, num_classes=19, workers=1)
    with pytest.raises(ConfigError, match="num_classes: 19 -> 11.*`overwrite`"):
        prepare_dataset("cityscapes", download, tmp_path, num_classes=11, workers=1)
    summary = prepare_dataset("cityscapes", download, tmp_path, num_classes=11, workers=1, overwrite=True)
    assert summary.done == 4
    (tmp_path / "meta.json").write_text('{"kind": "something else"}')
    with pytest.raises(ConfigError, match="did not write"):
        prepare_dataset("cityscapes", download, tmp_path, num_classes=11, workers=1, overwrite=True)


def test_pool_writes_the_same_files(download: Path, tmp_path: Path) -> None:
    prepare_dataset("cityscapes", download, tmp_path / "one", workers=1)
    summary = prepare_dataset("cityscapes", download, tmp_path / "two", workers=2)
    assert summary.ok and summary.done == 4
    for name in ("train/label/bochum_000000_000313.png", "val/depth/frankfurt_000000_000294.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_depth_that_does_not_fit_the_unit_is_refused_not_saturated() -> None:
    depth = np.full((2, 2), 3.0, np.float32)
    assert depth_to_png_units_exact(depth, depth_scale_m=1e-3, source="f").max() == 3000
    depth[0, 0] = 70.0  # beyond 65.535 m in millimetres
    with pytest.raises(DataError, match="f: depth up to 70 m does not fit 16 bits"):
        depth_to_png_units_exact(depth, depth_scale_m=1e-3, source="f")
    assert (
        depth_to_png_units_exact(depth, depth_scale_m=parse_depth_scale("1/256"), source="f")[0, 0] == 17920
    )


class _FarReader:
    """A reader whose depth exceeds its declared unit (1e-4 m holds 6.55 m; the frame reaches 9 m)."""

    name = "far"
    class_choices = (3,)

    def label_space(self, num_classes: int) -> DatasetInfo:
        return DatasetInfo("far", ("void", "a", "b", "c"), ((0, 0, 0),) * 4)

    def depth_unit(self) -> str | None:
        return "1e-4m"

    def check_layout(self, root: Path) -> None:
        return None

    def list_frames(self, root: Path, num_classes: int) -> list[FrameRef]:
        return [FrameRef("near", "train", ()), FrameRef("far", "train", ()), FrameRef("bug", "val", ())]

    def read_frame(self, root: Path, ref: FrameRef, num_classes: int) -> RawFrame:
        if ref.frame_id == "bug":
            raise ZeroDivisionError("a reader bug")
        depth = np.full((4, 4), 9.0 if ref.frame_id == "far" else 2.0, np.float32)
        return RawFrame(ref.frame_id, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8), depth, None)


def test_a_frame_beyond_its_unit_or_a_reader_error_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(datasets.READERS, "far", _FarReader())
    summary = prepare_dataset("far", tmp_path, tmp_path / "out", workers=1)
    assert (summary.done, summary.failed) == (1, 2)
    assert "far (train): depth up to 9 m does not fit" in summary.failures[0].message
    assert summary.failures[1].message == "ZeroDivisionError: a reader bug"  # fails alone too
    assert [s.id for s in read_list(tmp_path / "out/train.txt").samples] == ["near"]


def test_modalities_hha_jet_use_each_frames_intrinsics(download: Path, tmp_path: Path) -> None:
    summary = prepare_dataset("cityscapes", download, tmp_path, modalities=("hha", "jet"), workers=1)
    assert summary.ok and summary.modalities.done == 4
    listing = read_list(tmp_path / "val.txt")
    assert listing.columns == ("rgb", "depth", "depth_filled", "hha", "jet", "intrinsics", "label")
    hha = cv2.imread(str(listing.samples[0].files["hha"]), cv2.IMREAD_UNCHANGED)
    assert hha.shape == (H, W, 3)
    meta = json.loads((tmp_path / "modalities/meta.json").read_text())
    assert meta["intrinsics_source"] == "per-frame column"
    assert meta["parameters"]["complete"] == "fast" and meta["parameters"]["jet_max_depth_m"] == 80.0


CLASSES = """
name: orchard
void: [0, 255]
classes:
  - {id: 7, name: trunk, colour: [120, 80, 40]}
  - {id: 3, name: leaf}
"""


def test_class_file_renumbers_a_custom_dataset(tmp_path: Path) -> None:
    class_file = tmp_path / "classes.yaml"
    class_file.write_text(CLASSES)
    label = np.full((H, W), 7, np.uint8)
    label[0, 0], label[1, 1] = 3, 255
    for split in ("train", "val"):
        (tmp_path / split / "rgb").mkdir(parents=True)
        (tmp_path / split / "label").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / split / f"rgb/{split}1.png"), np.full((H, W, 3), 90, np.uint8))
        cv2.imwrite(str(tmp_path / split / f"label/{split}1.png"), label)
    unknown = label.copy()
    unknown[2, 2] = 4
    cv2.imwrite(str(tmp_path / "train/label/train1.png"), unknown)
    summary = prepare_dataset(str(class_file), tmp_path, tmp_path / "out", workers=1)
    assert summary.failed == 1
    assert "train1.png: label ids [4] are not in the class file" in summary.failures[0].message
    cv2.imwrite(str(tmp_path / "train/label/train1.png"), label)
    summary = prepare_dataset(str(class_file), tmp_path, tmp_path / "out", workers=1)
    assert (
        summary.ok and (summary.done, summary.skipped) == (1, 1) and summary.splits == {"train": 1, "val": 1}
    )
    out = cv2.imread(str(tmp_path / "out/train/label/train1.png"), cv2.IMREAD_UNCHANGED)
    assert (out[0, 0], out[1, 1], out[5, 5]) == (2, 0, 1)
    meta = json.loads((tmp_path / "out/meta.json").read_text())
    assert meta["classes"] == ["void", "trunk", "leaf"] and meta["palette"][1] == [120, 80, 40]
    with pytest.raises(ConfigError, match="are not 1..2 in order"):
        get_dataset_info(str(class_file))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("classes:\n  - {id: 1, name: a}\n", "no `void`"),
        (
            "void: 0\nclasses:\n  - {id: 1, name: a}\n  - {id: 1, name: b}\n",
            "classes\\[1\\]: id 1 is already used by 'a'",
        ),
        ("void: 1\nclasses:\n  - {id: 1, name: a}\n", "classes\\[0\\]: id 1 is already used by 'void'"),
        ("void: 0\nclasses:\n  - {id: 1, name: a, colour: [1, 2]}\n", "colour must be"),
        ("void: 0\nclases: []\n", "non-empty `classes`"),
    ],
)
def test_class_file_errors_name_the_file(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error) as info:
        load_class_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_class_file_is_a_dataset_for_training(tmp_path: Path) -> None:
    path = tmp_path / "mine.yml"
    path.write_text("void: 0\nclasses:\n  - {id: 1, name: road}\n  - {id: 2, name: car}\n")
    info = get_dataset_info(str(path))
    assert info.name == "mine" and info.classes == ("void", "road", "car") and info.num_classes == 3


def test_cli_help_errors_and_json(download: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert CliRunner().invoke(cli, ["prepare-dataset", "--help"]).exit_code == 0
    assert main(["prepare-dataset", "kitti", "--root", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown dataset 'kitti'" in err[0]
    args = [
        "prepare-dataset",
        "cityscapes",
        "--root",
        str(download),
        "--out",
        str(tmp_path / "o"),
        "--workers",
        "1",
    ]
    assert main([*args, "--classes", "7"]) == 2
    assert "--classes: cityscapes offers 19, 11 classes, got 7" in capsys.readouterr().err
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"] == {"train": 3, "val": 1}


def test_cli_exit_status_3_when_a_frame_fails(
    download: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cs"
    shutil.copytree(download, root)
    bad = root / "camera/val/frankfurt/frankfurt_000000_000294_camera.json"
    bad.write_text("{not json")
    code = main(
        ["prepare-dataset", "cityscapes", "--root", str(root), "--out", str(tmp_path / "o"), "--workers", "1"]
    )
    err = capsys.readouterr().err
    assert code == 3 and f"{bad}: not valid JSON" in err and "1 frames failed" in err


@pytest.mark.parametrize(
    "name", ["cityscapes11", "cityscapes19", "synthia", "freiburg_forest", "scannet", "sunrgbd"]
)
def test_class_file_written_for_the_output_reads_back(tmp_path: Path, name: str) -> None:
    info = get_dataset_info(name)
    path = tmp_path / "classes.yaml"
    path.write_text(dump_class_file(info))
    assert get_dataset_info(str(path)) == info


def test_output_folder_may_not_hold_the_download(download: Path) -> None:
    for out in (download, download.parent):
        with pytest.raises(ConfigError, match="holds the download"):
            prepare_dataset("cityscapes", download, out, workers=1)


def test_a_pool_that_stops_early_fails_the_unreported_frames(
    download: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fusionseg.data import pool

    def first_only(fn, tasks, *, on_result, **kwargs) -> None:  # noqa: ANN001 - run_in_pool's shape
        on_result(tasks[0], fn(tasks[0]))  # then the workers die without a word (spawn start-up failure)

    monkeypatch.setattr(pool, "run_in_pool", first_only)
    summary = prepare_dataset("cityscapes", download, tmp_path, workers=2)
    assert (summary.done, summary.failed) == (1, 3)
    assert all("rerun to resume" in f.message for f in summary.failures)
    again = prepare_dataset("cityscapes", download, tmp_path, workers=1)  # resumes the rest
    assert (again.done, again.skipped, again.failed) == (3, 1, 0)
