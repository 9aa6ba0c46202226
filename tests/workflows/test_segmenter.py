"""`Segmenter`: the one inference path of the Python API and `fusionseg predict` (issue 16, item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fusionseg import Segmenter
from fusionseg.errors import DataError


def _checkpoint(path: Path, modality: str, channels: int, *, depth_sensor: str = "auto") -> Path:
    """A seeded random AdapNet++ expert at 64x128 with 9 classes, saved as training saves it."""
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.models.adapnet import build_adapnet
    from fusionseg.workflows.train_expert import expert_checkpoint_meta

    data = {"height_px": 64, "width_px": 128, "depth_sensor": depth_sensor}
    cfg = config_from_dict({"data": data, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=channels, modality=modality).eval()
    meta = expert_checkpoint_meta(cfg, modality, in_channels=channels)
    header = checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg))
    return save_checkpoint(path, header)


@pytest.fixture(scope="module")
def rgb_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("seg") / "rgb.pt", "rgb", 3)


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (50, 90, 3), dtype=np.uint8)


def test_predict_is_the_argmax_of_probabilities_at_the_input_size(rgb_ckpt: Path, bgr: np.ndarray) -> None:
    seg = Segmenter.from_checkpoint(rgb_ckpt, device="cpu")
    probs = seg.probabilities({"rgb": bgr})
    labels = seg.predict({"rgb": bgr})
    assert probs.shape == (9, 50, 90) and labels.shape == (50, 90) and labels.dtype == np.uint8
    assert np.array_equal(labels, probs.argmax(0))
    logits = seg.logits({"rgb": bgr})
    assert np.allclose(torch.from_numpy(logits).softmax(0).numpy(), probs, atol=1e-6)


def test_resize_mode_runs_the_training_size_and_answers_at_the_input_size(
    rgb_ckpt: Path, bgr: np.ndarray
) -> None:
    pad = Segmenter.from_checkpoint(rgb_ckpt, device="cpu")
    resize = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", mode="resize")
    assert resize.input_size == (64, 128)
    probs = resize.probabilities({"rgb": bgr})
    assert probs.shape == (9, 50, 90) and np.allclose(probs.sum(0), 1, atol=1e-5)
    assert resize.logits({"rgb": bgr}).shape == (9, 50, 90)
    # a different function from the native-size pass: the network saw a 64x128 image
    assert not np.allclose(probs, pad.probabilities({"rgb": bgr}), atol=1e-4)
    # the banded upsampling of label_map gives the arg-max of the resized probabilities
    assert (resize.predict({"rgb": bgr}) == probs.argmax(0)).mean() > 0.999


def test_averaged_passes_give_probabilities_but_no_logits(rgb_ckpt: Path, bgr: np.ndarray) -> None:
    seg = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", scales=(0.5, 1.0), flip=True)
    assert seg.probabilities({"rgb": bgr}).shape == (9, 50, 90)
    with pytest.raises(ValueError, match="one pass"):
        seg.logits({"rgb": bgr})
    slide = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", mode="slide")
    assert slide.predict({"rgb": np.zeros((70, 150, 3), np.uint8)}).shape == (70, 150)


def test_depth_in_a_wrong_unit_is_refused_not_mis_scaled(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "depth.pt", "depth", 1, depth_sensor="indoor")
    depth_mm = np.random.default_rng(0).integers(500, 4000, (40, 70), dtype=np.uint16)
    seg = Segmenter.from_checkpoint(path, device="cpu", depth_scale="mm")
    assert seg.depth_sensor == "indoor" and seg.predict({"depth": depth_mm}).shape == (40, 70)
    wrong = Segmenter.from_checkpoint(path, device="cpu", depth_scale="m")  # 0.5-4 km "indoors"
    with pytest.raises(DataError, match=r"inputs\['depth'\].*mm"):
        wrong.predict({"depth": depth_mm})
    with pytest.raises(DataError, match=r"inputs\['depth'\]"):
        seg.predict({"depth": depth_mm.astype(np.float32)})  # millimetres passed as metres
    off = Segmenter.from_checkpoint(path, device="cpu", depth_scale="m", depth_sensor="off")
    assert off.predict({"depth": depth_mm}).shape == (40, 70)


def test_native_size_refuses_frames_above_its_megapixel_limit(rgb_ckpt: Path) -> None:
    seg = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", max_native_megapixels=0.001)
    with pytest.raises(DataError, match="megapixels"):
        seg.predict({"rgb": np.zeros((50, 90, 3), np.uint8)})
    resize = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", mode="resize", max_native_megapixels=0.001)
    assert resize.predict({"rgb": np.zeros((50, 90, 3), np.uint8)}).shape == (50, 90)


def test_predict_files_gives_the_segmenter_s_labels(rgb_ckpt: Path, bgr: np.ndarray, tmp_path: Path) -> None:
    import cv2

    from fusionseg.workflows.predict import predict_files

    cv2.imwrite(str(tmp_path / "frame.png"), bgr)
    summary = predict_files(rgb_ckpt, [tmp_path / "frame.png"], tmp_path / "out", device="cpu")
    written = cv2.imread(str(summary.frames[0].outputs["labels"]), cv2.IMREAD_UNCHANGED)
    seg = Segmenter.from_checkpoint(rgb_ckpt, device="cpu", mode="resize")
    assert np.array_equal(written, seg.predict({"rgb": bgr}))
