"""`predict_stream`: labels, overlays and an overlay video from videos, image sequences and bags."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from stream_helpers import H, W, colour, read_video, write_bag, write_video

from fusionseg.data.io import write_png
from fusionseg.data.sources import ImageSequence, open_source
from fusionseg.errors import DataError
from fusionseg.workflows.predict_stream import (
    LABEL_DIR,
    OVERLAY_DIR,
    StreamFrameResult,
    frame_inputs,
    predict_stream,
)
from fusionseg.workflows.segmenter import Segmenter

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


class _ThresholdSegmenter(Segmenter):
    """A stand-in model: class 1 where blue > 50 (rgb models), class 2 where depth > 1002 (rgb-d)."""

    def __init__(self, modalities: tuple[str, ...] = ("rgb",)) -> None:
        self.modalities = modalities
        self.kinds = {"rgb": "colour", "depth": "depth", "hha": "colour"}
        self.class_names = ["void", "blue", "far"]
        self.palette = PALETTE
        self.recipes = {}  # how inputs are made from raw data: unknown for this stand-in
        self.calls: list[dict[str, np.ndarray]] = []

    def predict(self, inputs):  # type: ignore[override]
        self.calls.append(dict(inputs))
        if "depth" in inputs:
            return np.where(inputs["depth"] > 1002, 2, 0).astype(np.uint8)
        return (inputs["rgb"][:, :, 0] > 50).astype(np.uint8)


def test_video_gives_labels_overlays_video_and_timing(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 5)
    seen: list[StreamFrameResult] = []
    totals: list[int] = []
    summary = predict_stream(
        _ThresholdSegmenter(), clip, tmp_path / "out", on_start=totals.append, on_frame=seen.append
    )
    assert totals == [5] and [r.id for r in seen] == [f"{i:06d}" for i in range(5)]
    assert (summary.frames, summary.done, summary.failed) == (5, 5, 0)
    for i in range(5):
        labels = cv2.imread(str(tmp_path / "out" / LABEL_DIR / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint8 and labels.shape == (H, W)
        assert (labels == 1).all() == (20 * i > 50)  # frame i has blue = 20 i
        overlay = cv2.imread(str(tmp_path / "out" / OVERLAY_DIR / f"{i:06d}.png"))
        assert overlay.shape == (H, W, 3)
    assert summary.video is not None and len(read_video(summary.video)) == 5
    for stage in ("read", "model", "write"):
        timing = summary.timing[stage]
        assert timing.frames == 5 and 0 <= timing.median_ms <= timing.p95_ms and timing.mean_ms > 0
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["timing"]["model"]["frames"] == 5 and data["video"].endswith((".mp4", ".avi"))


def test_bad_frames_are_reported_and_the_sequence_goes_on(tmp_path: Path) -> None:
    for i in range(4):
        write_png(tmp_path / "seq" / f"f{i}.png", colour(i))
    (tmp_path / "seq" / "f1.png").write_bytes(b"corrupt")
    write_png(tmp_path / "seq" / "f2.png", np.zeros((H, W), np.uint16))  # a depth map among colour
    seen: list[StreamFrameResult] = []
    summary = predict_stream(_ThresholdSegmenter(), tmp_path / "seq", tmp_path / "out", on_frame=seen.append)
    assert [r.status for r in seen] == ["done", "failed", "failed", "done"]
    assert summary.failed == 2 and [fid for fid, _ in summary.failures] == ["f1", "f2"]
    assert all("\n" not in message for _, message in summary.failures)
    assert "f1.png" in summary.failures[0][1] and "f2.png" in summary.failures[1][1]
    assert sorted(p.name for p in (tmp_path / "out" / LABEL_DIR).iterdir()) == ["f0.png", "f3.png"]
    assert len(read_video(summary.video)) == 2
    assert summary.timing["read"].frames == 4 and summary.timing["model"].frames == 2


def test_rerun_skips_finished_frames_and_rebuilds_the_whole_video(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 4)
    first = predict_stream(_ThresholdSegmenter(), clip, tmp_path / "out", max_frames=2)
    assert first.frames == 2 and len(read_video(first.video)) == 2
    model = _ThresholdSegmenter()
    second = predict_stream(model, clip, tmp_path / "out")
    assert (second.skipped, second.done) == (2, 2) and len(model.calls) == 2
    assert len(read_video(second.video)) == 4
    again = predict_stream(_ThresholdSegmenter(), clip, tmp_path / "out", overwrite=True, video=False)
    assert again.done == 4 and again.video is None


def test_rgbd_bag_pairs_depth_and_reports_the_unpaired_frame(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "run.bag", ros1=True)
    source = open_source(bag, rgb_topic="/camera/color", depth_topic="/camera/depth")
    model = _ThresholdSegmenter(("rgb", "depth"))
    summary = predict_stream(model, source, tmp_path / "out")
    assert (summary.done, summary.failed) == (3, 1) and "message 2" in summary.failures[0][1]
    assert [int(call["depth"][0, 0]) for call in model.calls] == [1000, 1001, 1003]
    labels = cv2.imread(
        str(tmp_path / "out" / LABEL_DIR / f"{10**9 + 300 * 10**6}.png"), cv2.IMREAD_UNCHANGED
    )
    assert (labels == 2).all()  # its depth (1003) came from the depth message paired with it


def test_inputs_the_frame_cannot_give_fail_that_frame_only(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 2)
    frame = next(iter(open_source(clip)))
    with pytest.raises(DataError, match="reads 'depth' but the source gives no depth"):
        frame_inputs(_ThresholdSegmenter(("rgb", "depth")), frame)
    summary = predict_stream(_ThresholdSegmenter(("rgb", "hha")), clip, tmp_path / "out", video=False)
    assert summary.failed == 2 and "predict_frame" in summary.failures[0][1]
    assert "frame 000000" in summary.failures[0][1]
    made = predict_stream(
        _ThresholdSegmenter(("rgb", "hha")),
        clip,
        tmp_path / "made",
        predict_frame=lambda seg, f: seg.predict({"rgb": f.rgb, "hha": f.rgb}),
    )
    assert made.done == 2
    wrong = predict_stream(
        _ThresholdSegmenter(),
        clip,
        tmp_path / "wrong",
        predict_frame=lambda seg, f: np.zeros((H // 2, W), np.uint8),
    )
    assert wrong.failed == 2 and "labels of shape (16, 48), expected uint8 (32, 48)" in wrong.failures[0][1]

    def crash(seg: Segmenter, f) -> np.ndarray:
        raise RuntimeError("CUDA out of memory\ntraceback detail")

    crashed = predict_stream(_ThresholdSegmenter(), clip, tmp_path / "crash", predict_frame=crash)
    assert crashed.failures[0] == ("000000", "frame 000000: RuntimeError: CUDA out of memory")


def test_real_checkpoint_on_an_image_sequence(tmp_path: Path) -> None:
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.models.adapnet import build_adapnet
    from fusionseg.workflows.train_expert import expert_checkpoint_meta

    cfg = config_from_dict({"data": {"height_px": 64, "width_px": 128}, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=3).eval()
    meta = expert_checkpoint_meta(cfg, "rgb", in_channels=3)
    ckpt = save_checkpoint(
        tmp_path / "rgb.pt",
        checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg)),
    )
    for i in range(2):
        write_png(tmp_path / "seq" / f"{i}.png", colour(i))
    summary = predict_stream(ckpt, ImageSequence(tmp_path / "seq"), tmp_path / "out", device="cpu")
    assert summary.done == 2, summary.failures
    seg = Segmenter.from_checkpoint(ckpt, device="cpu")
    expected = seg.predict({"rgb": colour(1)})
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "out" / LABEL_DIR / "1.png"), cv2.IMREAD_UNCHANGED), expected
    )
