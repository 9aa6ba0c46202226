"""SegmentationDataset and build_dataset on small files written with OpenCV."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusionseg.config import DataConfig
from fusionseg.data.dataset import SegmentationDataset, build_dataset, read_modality
from fusionseg.data.listfile import read_list, write_list
from fusionseg.data.modality_specs import MODALITIES, modality_channels
from fusionseg.data.transforms import PairedTransform
from fusionseg.errors import ConfigError, DataError

H, W = 24, 32


def write_sample(root: Path, name: str, *, label_value: int = 2, size: tuple[int, int] = (H, W)) -> dict:
    """rgb with distinct B, G, R values, depth in mm (left half 1.5 m, right half missing), label ids."""
    h, w = size
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30  # B, G, R as OpenCV stores them
    depth_mm = np.zeros((h, w), np.uint16)
    depth_mm[:, : w // 2] = 1500
    label = np.full((h, w), label_value, np.uint8)
    label[0, 0] = 255  # void in the file's convention
    files = {}
    for column, image in (("rgb", rgb), ("depth", depth_mm), ("nir", rgb[..., 1]), ("label", label)):
        path = root / column / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), image)
        files[column] = path
    return files


@pytest.fixture()
def list_path(tmp_path: Path) -> Path:
    rows = [write_sample(tmp_path, f"{i:02d}", label_value=1 + i) for i in range(3)]
    return write_list(tmp_path / "train.txt", ("rgb", "depth", "nir", "label"), rows)


def test_modality_table() -> None:
    assert modality_channels("rgb") == 3 and modality_channels("hha") == 3
    assert modality_channels("depth") == 1 and modality_channels("nir") == 1
    assert all(modality_channels(m) in (1, 3) for m in MODALITIES)
    with pytest.raises(ConfigError, match="unknown modality 'lidar'.*known: rgb"):
        modality_channels("lidar")


def test_read_modality_units(list_path: Path) -> None:
    files = read_list(list_path).samples[0].files
    rgb = read_modality("rgb", files["rgb"], depth_scale_m=1e-3)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.float32
    assert rgb[0, 0].tolist() == [10, 20, 30]  # B, G, R order, 0-255, no mean subtraction
    depth = read_modality("depth", files["depth"], depth_scale_m="mm")
    assert depth.shape == (H, W, 1) and depth.dtype == np.float32
    assert depth[0, 0, 0] == pytest.approx(1.5) and depth[0, -1, 0] == 0


def test_sample_shapes_dtypes_and_units(list_path: Path) -> None:
    ds = SegmentationDataset(
        read_list(list_path), modalities=("rgb", "depth", "nir"), size=(H, W), num_classes=5
    )
    assert len(ds) == 3 and ds.channels == {"rgb": 3, "depth": 1, "nir": 1}
    item = ds[1]
    assert set(item) == {"inputs", "label", "id", "files"}
    rgb, depth, nir = (item["inputs"][m] for m in ("rgb", "depth", "nir"))
    assert rgb.shape == (3, H, W) and rgb.dtype == torch.float32
    assert depth.shape == (1, H, W) and nir.shape == (1, H, W)
    assert rgb[:, 5, 5].tolist() == [10, 20, 30] and nir[0, 5, 5] == 20
    assert depth[0, 5, 2].item() == pytest.approx(1.5) and depth[0, 5, -1] == 0
    label = item["label"]
    assert label.shape == (H, W) and label.dtype == torch.int64
    assert label[0, 0] == 0 and label[5, 5] == 2  # 255 read as void
    assert item["id"] == "01"
    assert item["files"]["depth"].endswith("depth/01.png") and set(item["files"]) == {
        "rgb",
        "depth",
        "nir",
        "label",
    }


def test_resize_to_configured_size_nearest_for_depth_and_label(list_path: Path) -> None:
    ds = SegmentationDataset(read_list(list_path), modalities=("rgb", "depth"), size=(48, 40), num_classes=5)
    item = ds[0]
    assert item["inputs"]["rgb"].shape == (3, 48, 40) and item["label"].shape == (48, 40)
    assert torch.unique(item["inputs"]["depth"]).tolist() == pytest.approx([0.0, 1.5])  # no blended depths
    assert set(torch.unique(item["label"]).tolist()) <= {0, 1}


def test_size_mismatch_names_both_files(tmp_path: Path) -> None:
    files = write_sample(tmp_path, "a")
    small = np.full((H // 2, W // 2), 1000, np.uint16)
    cv2.imwrite(str(files["depth"]), small)
    lst = read_list(write_list(tmp_path / "l.txt", ("rgb", "depth", "label"), [files]))
    ds = SegmentationDataset(lst, modalities=("rgb", "depth"), size=(H, W), num_classes=5)
    with pytest.raises(DataError) as info:
        ds[0]
    message = str(info.value)
    assert str(files["rgb"]) in message and f"{H}x{W}" in message
    assert str(files["depth"]) in message and f"{H // 2}x{W // 2}" in message


def test_label_out_of_range_names_file_and_ids(tmp_path: Path) -> None:
    files = write_sample(tmp_path, "a", label_value=7)
    lst = read_list(write_list(tmp_path / "l.txt", ("rgb", "label"), [files]))
    with pytest.raises(DataError, match=rf"{files['label']}: label ids 7 out of range for 5 classes"):
        SegmentationDataset(lst, modalities=("rgb",), size=None, num_classes=5)[0]
    # with no ignore id, 255 is out of range too
    with pytest.raises(DataError, match="label ids 7, 255 out of range"):
        SegmentationDataset(lst, modalities=("rgb",), size=None, num_classes=5, ignore_index=None)[0]
    assert SegmentationDataset(lst, modalities=("rgb",), size=None, num_classes=8)[0]["label"].max() == 7


def test_missing_column_and_unknown_modality(list_path: Path) -> None:
    lst = read_list(list_path)
    with pytest.raises(DataError, match="no column 'hha'"):
        SegmentationDataset(lst, modalities=("rgb", "hha"), size=None, num_classes=5)
    with pytest.raises(ConfigError, match="unknown modality 'rbg'"):
        SegmentationDataset(lst, modalities=("rbg",), size=None, num_classes=5)


def test_augmentation_is_deterministic_per_seed_epoch_index(list_path: Path) -> None:
    def make(seed: int) -> SegmentationDataset:
        transform = PairedTransform(size_hw=(16, 16), max_rotation_deg=10.0, nearest=frozenset({"depth"}))
        return SegmentationDataset(
            read_list(list_path),
            modalities=("rgb", "depth"),
            size=None,
            num_classes=5,
            transform=transform,
            seed=seed,
        )

    a, b = make(3), make(3)
    first = a[2]
    for other in (b[2], a[(2, 0)]):  # a fresh dataset (another worker) and an explicit epoch agree
        for m in ("rgb", "depth"):
            assert torch.equal(first["inputs"][m], other["inputs"][m])
        assert torch.equal(first["label"], other["label"])
    a.set_epoch(1)
    epochs = [a[2]["inputs"]["rgb"]] + [a[(2, e)]["inputs"]["rgb"] for e in range(2, 5)]
    assert not any(torch.equal(first["inputs"]["rgb"], x) for x in epochs)
    assert torch.equal(epochs[0], b[(2, 1)]["inputs"]["rgb"])
    assert not torch.equal(make(4)[2]["inputs"]["rgb"], first["inputs"]["rgb"])


def test_normalization_applied_after_transform(list_path: Path) -> None:
    norm = {"rgb": ((10.0, 20.0, 30.0), (2.0, 4.0, 5.0))}
    ds = SegmentationDataset(
        read_list(list_path), modalities=("rgb", "depth"), size=(H, W), num_classes=5, normalization=norm
    )
    assert ds.normalization == norm
    item = ds[0]
    assert item["inputs"]["rgb"][:, 3, 3].tolist() == [0.0, 0.0, 0.0]
    assert item["inputs"]["depth"][0, 3, 3].item() == pytest.approx(1.5)  # untouched
    with pytest.raises(ConfigError, match="needs 3 means"):
        SegmentationDataset(
            read_list(list_path),
            modalities=("rgb",),
            size=None,
            num_classes=5,
            normalization={"rgb": ((1.0,), (1.0,))},
        )
    with pytest.raises(ConfigError, match="not one of the modalities"):
        SegmentationDataset(
            read_list(list_path),
            modalities=("rgb",),
            size=None,
            num_classes=5,
            normalization={"depth": ((1.0,), (1.0,))},
        )


def test_build_dataset_from_config(list_path: Path, tmp_path: Path) -> None:
    (tmp_path / "val.txt").write_text(list_path.read_text())
    cfg = DataConfig(root=str(tmp_path), modalities=("rgb", "depth"), height_px=16, width_px=32)
    train = build_dataset(cfg, "train", num_classes=5, seed=1)
    val = build_dataset(cfg, "val", num_classes=5)
    assert train.transform is not None and val.transform is None
    assert train.transform.nearest == {"depth"} and train.transform.photometric == {"rgb"}
    assert train[0]["inputs"]["depth"].shape == (1, 16, 32) and val[0]["label"].shape == (16, 32)
    only_rgb = build_dataset(
        dataclasses.replace(cfg, augment=False), "train", modalities=("rgb",), num_classes=5
    )
    assert set(only_rgb[0]["inputs"]) == {"rgb"} and only_rgb.transform is None
    with pytest.raises(ConfigError, match="split"):
        build_dataset(cfg, "test", num_classes=5)  # type: ignore[arg-type]


def test_build_dataset_headerless_list_and_folder_layout(tmp_path: Path) -> None:
    for i in range(2):
        files = write_sample(tmp_path / "val", f"{i}")
    rel = {c: p.relative_to(tmp_path).as_posix() for c, p in files.items()}
    (tmp_path / "val.txt").write_text(f"{rel['rgb']} {rel['label']}\n")
    cfg = DataConfig(root=str(tmp_path), modalities=("rgb",), height_px=H, width_px=W)
    assert len(build_dataset(cfg, "val", num_classes=5)) == 1
    folders = build_dataset(
        dataclasses.replace(cfg, layout="folders", modalities=("rgb", "depth")), "val", num_classes=5
    )
    assert [s.id for s in folders.list_file.samples] == ["0", "1"]
    assert folders[1]["inputs"]["depth"].shape == (1, H, W)


def test_works_in_a_dataloader_with_workers(list_path: Path) -> None:
    transform = PairedTransform(size_hw=(16, 16), nearest=frozenset({"depth"}))
    ds = SegmentationDataset(
        read_list(list_path),
        modalities=("rgb", "depth"),
        size=None,
        num_classes=5,
        transform=transform,
        seed=5,
    )
    direct = torch.stack([ds[i]["inputs"]["rgb"] for i in range(3)])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["inputs"]["rgb"].shape == (3, 3, 16, 16) and batch["label"].dtype == torch.int64
    assert torch.equal(batch["inputs"]["rgb"], direct)


def test_real_nyu_frame(shared_data: Path, tmp_path: Path) -> None:
    """NYU frame 1: rgb, toolbox-filled depth in 1e-4 m, 13-class labels (listed by absolute path)."""
    frame = shared_data / "nyuv2-hha-ref" / "full480x640" / "nyu0001"
    row = {
        "rgb": frame / "rgb.png",
        "depth_filled": frame / "depth_filled_1e-4m.png",
        "label": frame / "label13.png",
    }
    path = write_list(tmp_path / "nyu.txt", ("rgb", "depth_filled", "label"), [row], allow_absolute=True)
    with pytest.raises(DataError, match="absolute path"):
        read_list(path)
    cfg = DataConfig(
        root=str(tmp_path),
        val_list="nyu.txt",
        modalities=("rgb", "depth_filled"),
        height_px=240,
        width_px=320,
        depth_scale_m=1e-4,
        allow_absolute_paths=True,
    )
    item = build_dataset(cfg, "val", num_classes=14)[0]
    depth = item["inputs"]["depth_filled"]
    assert item["inputs"]["rgb"].shape == (3, 240, 320) and depth.shape == (1, 240, 320)
    assert 0.5 < depth.median().item() < 10.0  # metres, indoor
    assert item["label"].max() <= 13 and item["id"] == "rgb"
