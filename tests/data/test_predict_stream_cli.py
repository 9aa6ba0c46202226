"""`fusionseg predict` on streams: a video and a ROS bag through the CLI, raw depth made into HHA by the
checkpoint's recipe, a frame without depth failing alone (issue 17, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from stream_helpers import BAG_K, H, W, write_bag, write_video

from fusionseg import Segmenter
from fusionseg.cli import main


def _expert(tmp: Path, modality: str, meta: dict | None = None) -> Path:
    """A seeded random AdapNet++ expert (64x128, 9 classes) whose data folder holds `meta` as meta.json."""
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.models.adapnet import build_adapnet
    from fusionseg.workflows.train_expert import expert_checkpoint_meta

    root = tmp / f"data-{modality}"
    root.mkdir()
    if meta is not None:
        (root / "meta.json").write_text(json.dumps(meta))
    data = {"root": str(root), "height_px": 64, "width_px": 128, "depth_sensor": "off"}
    cfg = config_from_dict({"data": data, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=3, modality=modality).eval()
    head = checkpoint_header(
        **expert_checkpoint_meta(cfg, modality, in_channels=3), step=0, model=model.state_dict(),
        config=config_to_dict(cfg),
    )  # fmt: skip
    return save_checkpoint(tmp / f"{modality}.pt", head)


def test_a_video_gives_labels_overlays_a_video_and_timing(tmp_path: Path, capsys) -> None:
    video = write_video(tmp_path / "drive.avi", frames=4)
    ckpt = _expert(tmp_path, "rgb")
    assert (
        main(["predict", "--checkpoint", str(ckpt), str(video), "--out", str(tmp_path / "o"), "--json"]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert (summary["frames"], summary["done"], summary["failed"]) == (4, 4, 0)
    assert set(summary["timing"]) == {"read", "model", "write"}
    labels = sorted((tmp_path / "o" / "labels").glob("*.png"))
    assert len(labels) == 4 and cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).shape == (H, W)
    assert Path(summary["video"]).is_file()


def test_a_bag_with_raw_depth_feeds_an_hha_model_through_its_recipe(tmp_path: Path, capsys) -> None:
    pytest.importorskip("rosbags")
    bag = write_bag(tmp_path / "bag2", ros1=False)
    meta = {"kind": "fusionseg prepare-depth", "parameters": {"products": ["hha"], "complete": "none"}}
    ckpt = _expert(tmp_path, "hha", meta)
    args = ["predict", "--checkpoint", str(ckpt), str(bag), "--out", str(tmp_path / "o")]
    args += ["--depth-scale", "mm"]
    args += ["--rgb-topic", "/camera/color", "--depth-topic", "/camera/depth"]
    args += ["--camera-info-topic", "/camera/info", "--no-video", "--json"]
    assert main(args) == 3  # the frame at 200 ms has no depth message: it fails alone
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["done"], summary["failed"]) == (3, 1) and summary["video"] is None
    failed = [line for line in captured.err.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "depth" in failed[0], captured.err
    # the same frame through the Python API: raw depth in mm, the bag's CameraInfo intrinsics
    seg = Segmenter.from_checkpoint(ckpt, device="cpu", depth_scale="mm", mode="resize")  # as the CLI
    fx, _, cx, _, fy, cy = BAG_K[:6]
    depth = np.full((H, W), 1000, np.uint16)  # the first frame's depth
    rgb = np.zeros((H, W, 3), np.uint8)
    expected = seg.predict_raw(rgb=rgb, depth=depth, intrinsics=(fx, fy, cx, cy))
    first = sorted((tmp_path / "o" / "labels").glob("*.png"))[0]
    assert np.array_equal(cv2.imread(str(first), cv2.IMREAD_UNCHANGED), expected)
