"""`train-unimodal`, `evaluate`, `predict` end to end with the real AdapNet++ (2 steps at 64x128)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fusionseg import api
from fusionseg.cli import cli, main
from fusionseg.config import SyntheticConfig, config_from_dict, config_to_dict
from fusionseg.engine.checkpoint import checkpoint_header, load_checkpoint, save_checkpoint
from fusionseg.models.adapnet import build_adapnet
from fusionseg.workflows.train_expert import expert_checkpoint_meta

SMALL = ["--set", "data.height_px=64", "--set", "data.width_px=128", "--set", "train.batch_size=2"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    api.make_synthetic(root, SyntheticConfig(num_frames=8, height_px=96, width_px=192, workers=1))
    return root


@pytest.fixture(scope="module")
def trained(synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RGB expert trained for 2 steps through the CLI; returns the run folder."""
    run = tmp_path_factory.mktemp("runs") / "rgb"
    args = [
        "train-unimodal",
        "--config",
        "configs/synthetic-rgb.yaml",
        "--modality",
        "rgb",
        "--out",
        str(run),
    ]
    args += ["--set", f"data.root={synthetic}", "--set", "train.iterations=2", *SMALL]
    assert main(args) == 0
    return run


@pytest.fixture(scope="module")
def depth_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised depth expert checkpoint (no training needed to test prediction)."""
    cfg = config_from_dict({"data": {"height_px": 64, "width_px": 128}, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=1).eval()
    meta = expert_checkpoint_meta(cfg, "depth", in_channels=1)
    path = tmp_path_factory.mktemp("ckpt") / "depth.pt"
    save_checkpoint(
        path, checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg))
    )
    return path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    return err[-1]


@pytest.mark.parametrize("verb", ["train-unimodal", "evaluate", "predict"])
def test_help(verb: str) -> None:
    result = CliRunner().invoke(cli, [verb, "--help"])
    assert result.exit_code == 0 and "Examples" in result.output


def test_train_writes_run_folder(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.pt", "last.pt.sha256"):
        assert (trained / name).is_file(), name
    ckpt = load_checkpoint(trained / "best.pt", require_sidecar=True)
    assert ckpt["kind"] == "expert" and ckpt["modalities"] == ["rgb"] and ckpt["num_classes"] == 9
    assert ckpt["in_channels"] == {"rgb": 3} and ckpt["input_size"] == [64, 128]
    assert len(ckpt["palette"]) == 9 and ckpt["class_names"][0] == "void"


def test_resume_continues_and_refuses_fresh_start(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "train-unimodal",
        "--config",
        "configs/synthetic-rgb.yaml",
        "--modality",
        "rgb",
        "--out",
        str(trained),
    ]
    data_root = Path(load_checkpoint(trained / "last.pt")["config"]["data"]["root"])
    base += ["--set", f"data.root={data_root}", *SMALL]
    capsys.readouterr()
    assert main([*base, "--set", "train.iterations=2"]) == 2
    assert "--resume" in one_line_error(capsys)
    assert main([*base, "--set", "train.iterations=3", "--resume", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 3 and out["resumed_from"].endswith("last.pt")
    # a depth run cannot resume an RGB checkpoint: the key and both values are named
    depth = ["train-unimodal", "--config", "configs/synthetic-depth.yaml", "--modality", "depth"]
    depth += ["--out", str(trained), "--set", f"data.root={data_root}", *SMALL]
    assert main([*depth, "--set", "train.iterations=4", "--resume"]) == 2
    err = one_line_error(capsys)
    assert "in_channels" in err or "modalities" in err
    assert "rgb" in err and "depth" in err


def test_evaluate_json_and_files(trained: Path, synthetic: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(trained / "best.pt"), "--data", str(synthetic / "val.txt")]
    assert main([*args, "--scales", "0.5,1", "--flip", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] > 0 and report["scales"] == [0.5, 1.0] and report["flip"] is True
    assert 0 <= report["miou"] <= 1 and 0 <= report["miou_spec"] <= report["miou"] + 1e-9
    assert set(report["per_class_iou"]) == {
        "ground",
        "wall",
        "furniture",
        "vegetation",
        "trail",
        "sky",
        "marking",
        "obstacle",
    }
    cm = np.load(tmp_path / "confusion.npy")
    assert cm.shape == (9, 9) and cm.sum() == sum(map(sum, report["confusion"]))
    assert cv2.imread(str(tmp_path / "confusion.png")) is not None
    assert json.loads((tmp_path / "metrics.json").read_text())["miou"] == report["miou"]
    # the rich table names both conventions
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "classes present" in text and "all classes" in text


def test_evaluate_refuses_other_class_count(trained: Path, synthetic: Path, capsys) -> None:
    capsys.readouterr()
    args = ["evaluate", "--checkpoint", str(trained / "best.pt"), "--data", str(synthetic / "val.txt")]
    assert main([*args, "--set", "data.dataset=cityscapes11"]) == 2
    err = one_line_error(capsys)
    assert "num_classes=9" in err and "12" in err


def test_evaluate_corrupt_checkpoint(trained: Path, synthetic: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    data = (trained / "best.pt").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    (tmp_path / "bad.pt.sha256").write_text((trained / "best.pt.sha256").read_text())
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(bad), "--data", str(synthetic / "val.txt")]) == 2
    assert "sha256 mismatch" in one_line_error(capsys)


def test_predict_real_frames_any_size(trained: Path, shared_data: Path, tmp_path: Path, capsys) -> None:
    frames = [
        shared_data / "nyuv2-hha-ref/full480x640/nyu0001/rgb.png",
        shared_data / "kitti-object-lidar3/image_2/000000.png",
        shared_data / "kinectv2-samples/esanet/sample_rgb.png",
        shared_data / "kinectv2-samples/emsanet/sample_rgb.png",
    ]
    capsys.readouterr()
    args = ["predict", "--checkpoint", str(trained / "best.pt"), *map(str, frames), "--out", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["frames"]) == 4
    for frame, source in zip(summary["frames"], frames):
        h, w = cv2.imread(str(source)).shape[:2]
        assert frame["size_hw"] == [h, w]
        labels = cv2.imread(frame["outputs"]["labels"], cv2.IMREAD_UNCHANGED)
        assert labels.shape == (h, w) and labels.dtype == np.uint8 and labels.max() < 9
        for kind in ("color", "overlay"):
            assert cv2.imread(frame["outputs"][kind]).shape == (h, w, 3)
    # --pad at native size on the odd-sized Kinect frame
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(trained / "best.pt"),
                str(frames[2]),
                "--out",
                str(tmp_path / "pad"),
                "--pad",
            ]
        )
        == 0
    )
    assert cv2.imread(str(tmp_path / "pad/labels/sample_rgb.png"), cv2.IMREAD_UNCHANGED).shape == (424, 512)


def test_predict_depth_needs_declared_unit(
    depth_checkpoint: Path, shared_data: Path, tmp_path, capsys
) -> None:
    esanet = shared_data / "kinectv2-samples/esanet/sample_depth.png"
    emsanet = shared_data / "kinectv2-samples/emsanet/sample_depth.png"
    capsys.readouterr()
    args = ["predict", "--checkpoint", str(depth_checkpoint), str(esanet), "--out", str(tmp_path)]
    assert main(args) == 2
    assert "--depth-scale" in one_line_error(capsys)
    assert main([*args, "--depth-scale", "0.1mm", "--json"]) == 0
    frame = json.loads(capsys.readouterr().out)["frames"][0]
    assert frame["size_hw"] == [424, 512] and "overlay" not in frame["outputs"]
    # a list file pairing depth with its RGB gives overlays; the 1440x1080 frame is in millimetres
    listing = tmp_path / "frames.txt"
    listing.write_text(f"# columns: depth rgb\n{emsanet} {emsanet.with_name('sample_rgb.png')}\n")
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(depth_checkpoint),
                str(listing),
                "--depth-scale",
                "mm",
                "--out",
                str(tmp_path / "list"),
                "--json",
            ]
        )
        == 0
    )
    frame = json.loads(capsys.readouterr().out)["frames"][0]
    assert frame["size_hw"] == [1080, 1440] and "overlay" in frame["outputs"]
    assert cv2.imread(frame["outputs"]["overlay"]).shape == (1080, 1440, 3)


def test_predict_bad_inputs(depth_checkpoint: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(depth_checkpoint),
                str(tmp_path / "nope.png"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "not found" in one_line_error(capsys)
    assert (
        main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), str(tmp_path), "--out", str(tmp_path)])
        == 2
    )
    assert "checkpoint not found" in one_line_error(capsys)


def test_training_progress_survives_a_pipe(synthetic: Path, tmp_path: Path, capsys) -> None:
    """stderr captured (not a terminal): plain lines with step count, loss, speed and ETA."""
    args = ["train-unimodal", "--config", "configs/synthetic-rgb.yaml", "--modality", "rgb"]
    args += ["--out", str(tmp_path / "run"), "--set", f"data.root={synthetic}", *SMALL]
    args += ["--set", "train.iterations=2", "--set", "train.log_every=1"]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("training  0/2 (0%)") for line in err), err
    done = [line for line in err if line.startswith("training  2/2 (100%)")]
    assert len(done) == 1 and "loss " in done[0] and "img/s" in done[0] and done[0].endswith("done")


def test_predict_refuses_depth_in_the_wrong_unit(depth_checkpoint: Path, shared_data: Path, tmp_path, capsys):
    """A millimetre Kinect v2 frame given as metres, or a 0.1 mm frame as mm for an indoor sensor."""
    mm_frame = shared_data / "kinectv2-samples/emsanet/sample_depth.png"
    tenth_mm_frame = shared_data / "kinectv2-samples/esanet/sample_depth.png"
    base = ["predict", "--checkpoint", str(depth_checkpoint), "--out", str(tmp_path / "p")]
    capsys.readouterr()
    assert main([*base, str(mm_frame), "--depth-scale", "m"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("predicting ")]
    assert len(err) == 1 and "sample_depth.png" in err[0] and "median depth 3003 m" in err[0], err
    assert "mm (median 3 m)" in err[0]
    args = [*base, str(tenth_mm_frame), "--depth-scale", "mm"]
    assert main([*args, "--depth-sensor", "indoor"]) == 2  # 10x: only a sensor's range catches it
    assert "units that would fit: 0.1mm" in capsys.readouterr().err
    assert main([*args, "--depth-sensor", "off", "--json"]) == 0  # the escape for unusual sensors
    assert main([*base, str(tenth_mm_frame), "--depth-scale", "0.1mm", "--depth-sensor", "indoor"]) == 0


def test_bad_training_size_is_a_user_error_before_any_folder(synthetic: Path, tmp_path: Path, capsys) -> None:
    args = ["train-unimodal", "--config", "configs/synthetic-rgb.yaml", "--modality", "rgb"]
    args += ["--out", str(tmp_path / "run"), "--set", f"data.root={synthetic}", "--set", "data.height_px=50"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.height_px x data.width_px: 50x192" in err[0] and "48x192" in err[0], err
    assert not (tmp_path / "run").exists()


def test_predict_goes_on_past_bad_files_and_exits_3(trained: Path, shared_data: Path, tmp_path: Path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.png").write_bytes((shared_data / "kitti-object-lidar3/image_2/000000.png").read_bytes())
    (folder / "b_empty.png").write_bytes(b"")
    (folder / "c_good.png").write_bytes((shared_data / "kinectv2-samples/esanet/sample_rgb.png").read_bytes())
    args = ["predict", "--checkpoint", str(trained / "best.pt"), str(folder), "--out", str(tmp_path / "out")]
    capsys.readouterr()
    assert main([*args, "--json"]) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert [f["id"] for f in summary["frames"]] == ["a_good", "c_good"]
    assert [f["id"] for f in summary["failed"]] == ["b_empty"] and "b_empty.png" in summary["failed"][0][
        "error"
    ]
    assert sorted(p.stem for p in (tmp_path / "out" / "labels").glob("*.png")) == ["a_good", "c_good"]
    assert "failed b_empty" in captured.err and "1 of 3 frames failed" in captured.err


def test_evaluate_refuses_overrides_it_would_ignore(trained: Path, synthetic: Path, capsys) -> None:
    args = ["evaluate", "--checkpoint", str(trained / "best.pt"), "--data", str(synthetic / "val.txt")]
    capsys.readouterr()
    assert main([*args, "--set", "model.num_classes=12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set model.num_classes" in err[0] and "ignore" in err[0], err


def test_native_size_prediction_refuses_frames_over_the_budget(
    trained: Path, shared_data: Path, tmp_path, capsys
):
    frame = shared_data / "kinectv2-samples/emsanet/sample_rgb.png"  # 1440x1080 = 1.6 megapixels
    args = ["predict", "--checkpoint", str(trained / "best.pt"), str(frame), "--out", str(tmp_path / "p")]
    capsys.readouterr()
    assert main([*args, "--pad", "--max-native-megapixels", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "2 megapixels" in err[0] and "--max-native-megapixels" in err[0], err


@pytest.mark.slow
def test_a_100_megapixel_frame_predicts_in_bounded_memory(trained: Path, tmp_path: Path) -> None:
    """The issue's 9000x11000 PNG (300 KB): 6.8 GB before the banded upsampling, now under 3.5 GB."""
    import resource
    import subprocess
    import sys

    image = np.zeros((9000, 11000, 3), np.uint8)
    image[:4500] = (90, 120, 160)
    image[4500:] = (40, 110, 60)
    assert cv2.imwrite(str(tmp_path / "huge.png"), image)
    del image
    code = "from fusionseg.cli import main; raise SystemExit(main())"
    args = ["predict", "--checkpoint", str(trained / "best.pt"), str(tmp_path / "huge.png")]
    args += ["--out", str(tmp_path / "out"), "--json"]
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # kB -> GB (Linux)
    labels = cv2.imread(str(tmp_path / "out" / "labels" / "huge.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (9000, 11000)
    assert peak_gb < 3.5, f"peak resident memory {peak_gb:.2f} GB"
