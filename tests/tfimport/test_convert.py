"""`import-deepscene` on the genuine TF1 AdapNet++ checkpoint of `../shared/data/deepscene-tf-dev/`.

The checkpoint has random weights with non-trivial BN statistics; `expected.npz` holds TensorFlow's
float32 outputs for `inputs.npz`, stored as float16 (its README's acceptance: logits within 1e-2,
argmax agreement >= 99.9 %, taps within 1e-2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusionseg.cli import main
from fusionseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
from fusionseg.errors import CheckpointError, DataError
from fusionseg.tfimport import convert
from fusionseg.tfimport.convert import import_deepscene


def nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.float32)).permute(0, 3, 1, 2)  # NHWC float16 -> NCHW float32


def test_converted_model_reproduces_tensorflow(dev: Path, converted: Path, outputs) -> None:
    model, _, out = outputs
    expected = np.load(dev / "expected.npz")
    payload = load_checkpoint(converted)
    assert payload["kind"] == "expert" and payload["config"]["model"]["padding"] == "tf_same"
    assert payload["num_classes"] == 12 and payload["class_names"][1] == "Sky"
    logits = out.logits
    assert (logits - nchw(expected["logits"])).abs().max() <= 1e-2
    agreement = (logits.argmax(1)[0].numpy() == expected["argmax"][0]).mean()
    assert agreement >= 0.999, agreement
    for key, tap in (("easpp_out", "easpp"), ("skip1", "skip1"), ("skip2", "skip2")):
        assert (out.taps[tap] - nchw(expected[key])).abs().max() <= 1e-2, key


def test_symmetric_padding_would_not_be_the_same_function(dev: Path, converted: Path, outputs) -> None:
    """The same weights in a symmetric-padding model (the pre-issue-16 AdapNet++) miss badly (§4)."""
    model, x, _ = outputs
    payload = load_checkpoint(converted)
    payload["config"]["model"]["padding"] = "symmetric"
    symmetric = model_from_checkpoint(payload)
    with torch.no_grad():
        logits = symmetric({"rgb": x}).logits
    agreement = (logits.argmax(1)[0].numpy() == np.load(dev / "expected.npz")["argmax"][0]).mean()
    assert agreement < 0.9, agreement


def test_converted_checkpoint_evaluates_predicts_and_exports(
    converted: Path, shared_data: Path, tmp_path: Path, capsys
) -> None:
    frame = shared_data / "kinectv2-samples/emsanet/sample_rgb.png"
    capsys.readouterr()
    assert (
        main(["predict", "--checkpoint", str(converted), str(frame), "--out", str(tmp_path / "p"), "--json"])
        == 0
    )
    labels = cv2.imread(
        json.loads(capsys.readouterr().out)["frames"][0]["outputs"]["labels"], cv2.IMREAD_UNCHANGED
    )
    assert labels.shape == (1080, 1440) and labels.max() < 12
    # a two-frame labelled list in the checkpoint's label space (cityscapes11, 12 classes)
    data = tmp_path / "data"
    (data / "rgb").mkdir(parents=True)
    (data / "label").mkdir()
    image = cv2.resize(cv2.imread(str(frame)), (768, 384))
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(data / "rgb" / f"{i}.png"), image)
        cv2.imwrite(str(data / "label" / f"{i}.png"), rng.integers(0, 12, (384, 768), dtype=np.uint8))
    (data / "val.txt").write_text(
        "# columns: rgb label\n" + "".join(f"rgb/{i}.png label/{i}.png\n" for i in range(2))
    )
    assert main(["evaluate", "--checkpoint", str(converted), "--data", str(data / "val.txt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 2 and 0 <= report["miou"] <= 1
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "dev.onnx"
    args = ["export", "--checkpoint", str(converted), "--size", "64x128", "--out", str(onnx), "--json"]
    assert main(args) == 0
    assert all(check["ok"] for check in json.loads(capsys.readouterr().out)["checks"])


def test_wrong_class_count_is_one_line(dev: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    args = ["import-deepscene", str(dev), "--dataset", "cityscapes19", "--out", str(tmp_path / "x.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dataset: 'cityscapes19' has 20 classes" in err[0] and "cityscapes11" in err[0]
    assert not (tmp_path / "x.pt").exists()


def test_truncated_data_file_is_refused(dev: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "ckpt"
    copy.mkdir()
    shutil.copy(dev / "model.ckpt-1.index", copy)
    data = (dev / "model.ckpt-1.data-00000-of-00001").read_bytes()
    (copy / "model.ckpt-1.data-00000-of-00001").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    args = ["import-deepscene", str(copy), "--dataset", "cityscapes11", "--out", str(tmp_path / "x.pt")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.ckpt-1.data-00000-of-00001" in err[0], err


def test_missing_tensor_is_refused_naming_it(dev: Path, tmp_path: Path, monkeypatch) -> None:
    real = convert.model_tensors

    def without_one(reader):
        entries = dict(real(reader))
        entries.pop("resnet_v2_50/conv10/BatchNorm/beta")
        return entries

    monkeypatch.setattr(convert, "model_tensors", without_one)
    with pytest.raises(CheckpointError, match="conv10/BatchNorm/beta"):
        import_deepscene(dev, tmp_path / "x.pt", dataset="cityscapes11")
    assert not (tmp_path / "x.pt").exists()


def test_segmenter_reproduces_tensorflow_from_cv2_arrays(dev: Path, converted: Path) -> None:
    from fusionseg import Segmenter

    seg = Segmenter.from_checkpoint(converted, device="cpu")
    bgr = np.load(dev / "inputs.npz")["rgb_bgr_u8"]  # (384, 768, 3) uint8, as cv2.imread returns
    expected = np.load(dev / "expected.npz")
    logits = seg.logits({"rgb": bgr})
    reference = expected["logits"][0].astype(np.float32).transpose(2, 0, 1)  # (12, 384, 768)
    assert logits.shape == reference.shape and logits.dtype == np.float32
    assert np.abs(logits - reference).max() <= 1e-2
    labels = seg.predict({"rgb": bgr})
    assert labels.dtype == np.uint8 and (labels == expected["argmax"][0]).mean() >= 0.999
    probs = seg.probabilities({"rgb": bgr[:100, :150]})  # any size: padded to 112x160, cropped back
    assert probs.shape == (12, 100, 150) and np.allclose(probs.sum(0), 1, atol=1e-5)
    assert seg.class_names[1] == "Sky" and seg.modalities == ("rgb",)


def test_segmenter_refuses_inputs_it_cannot_read(converted: Path) -> None:
    from fusionseg import Segmenter
    from fusionseg.errors import DataError

    seg = Segmenter.from_checkpoint(converted, device="cpu")
    image = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(DataError, match="no 'rgb' image"):
        seg.predict({"depth": image})
    with pytest.raises(DataError, match="expected uint8"):
        seg.predict({"rgb": image.astype(np.float64)})
    with pytest.raises(DataError, match=r"expected an \(H, W, 3\) image"):
        seg.predict({"rgb": image[:, :, 0]})


def test_segmenter_reads_uint16_depth_with_its_scale(tmp_path: Path) -> None:
    from fusionseg import Segmenter
    from fusionseg.config import config_from_dict, config_to_dict
    from fusionseg.engine.checkpoint import checkpoint_header, save_checkpoint
    from fusionseg.errors import DataError
    from fusionseg.models.adapnet import build_adapnet
    from fusionseg.workflows.train_expert import expert_checkpoint_meta

    cfg = config_from_dict({"data": {"height_px": 64, "width_px": 128}, "model": {"num_classes": 9}})
    torch.manual_seed(0)
    model = build_adapnet(cfg.model, in_channels=1, modality="depth").eval()
    meta = expert_checkpoint_meta(cfg, "depth", in_channels=1)
    path = save_checkpoint(
        tmp_path / "depth.pt",
        checkpoint_header(**meta, step=0, model=model.state_dict(), config=config_to_dict(cfg)),
    )
    depth_mm = np.random.default_rng(0).integers(500, 4000, (40, 70), dtype=np.uint16)
    with pytest.raises(DataError, match="uint16 depth needs `depth_scale`"):
        Segmenter.from_checkpoint(path, device="cpu").predict({"depth": depth_mm})
    seg = Segmenter.from_checkpoint(path, device="cpu", depth_scale="mm")
    metres = depth_mm.astype(np.float32) / 1000
    assert np.array_equal(seg.predict({"depth": depth_mm}), seg.predict({"depth": metres}))
    assert seg.logits({"depth": metres}).shape == (9, 40, 70)


def test_a_zoo_zip_is_read_without_unpacking_by_hand(dev: Path, converted: Path, tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "adapnet++_dev_rgb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in ("model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001", "checkpoint", "README.md"):
            zf.write(dev / name, f"adapnet++_dev_rgb/{name}")
    out = import_deepscene(archive, tmp_path / "from-zip.pt", dataset="cityscapes11").out
    a, b = load_checkpoint(out)["model"], load_checkpoint(converted)["model"]
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("notes.txt", "no checkpoint here")
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint files"):
        import_deepscene(empty, tmp_path / "x.pt", dataset="cityscapes11")


def test_zoo_entries_fit_the_catalog_and_the_published_class_counts() -> None:
    from fusionseg.data.catalog import get_dataset_info
    from fusionseg.data.modality_specs import get_modality
    from fusionseg.tfimport.zoo import ZOO

    assert {get_dataset_info(m.dataset).num_classes for m in ZOO.values()} == {6, 12, 20, 21, 38}
    assert all(get_modality(m).channels == 3 for entry in ZOO.values() for m in entry.modalities)
    assert ZOO["adapnetpp-cityscapes-rgb"].published_miou == 80.77 and ZOO["adapnetpp-forest-evi"].verified
    assert ZOO["adapnetpp-cityscapes19-rgb"].easpp_rates == (6, 12, 18)
    ssma = [m for m in ZOO.values() if m.model == "ssma"]
    assert len(ssma) == 9 and all(m.verified and m.modalities[0] == "rgb" for m in ssma)  # SSMA README
    assert (
        ZOO["ssma-sun-rgb-hha"].modalities == ("rgb", "hha")
        and ZOO["ssma-forest-rgb-evi"].published_miou == 83.9
    )
    assert not any(m.model == "cmode" for m in ZOO.values())  # the CMoDE README publishes no models


def test_import_with_a_zoo_name_records_its_entry(dev: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "zoo.pt"
    capsys.readouterr()
    assert main(["import-deepscene", str(dev), "--zoo", "adapnetpp-cityscapes-rgb", "--out", str(out)]) == 0
    payload = load_checkpoint(out)
    assert payload["dataset"] == "cityscapes11" and payload["modalities"] == ["rgb"]
    assert payload["zoo"]["published_miou"] == 80.77 and payload["config"]["model"]["easpp_rates"] == [
        3,
        6,
        12,
    ]
    assert main(["import-deepscene", str(dev), "--zoo", "adapnetpp-nowhere", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--zoo: unknown model 'adapnetpp-nowhere'" in err[0]
    assert main(["zoo", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed} >= {"adapnetpp-cityscapes-rgb", "adapnetpp-sun-hha"}


def test_a_zoo_import_records_the_exact_input_recipe(dev: Path, tmp_path: Path) -> None:
    from fusionseg import Segmenter

    out = import_deepscene(dev, tmp_path / "hha.pt", zoo="adapnetpp-cityscapes-hha").out
    recipe = load_checkpoint(out)["input_recipes"]["hha"]
    assert (recipe["product"], recipe["complete"]) == ("hha", "multiscale")
    assert recipe["source"] == "zoo adapnetpp-cityscapes-hha"
    assert Segmenter.from_checkpoint(out, device="cpu").raw_needs() == {"depth", "intrinsics"}
    # Cityscapes' inverted JET is unverified: no recipe is recorded, and --raw says so
    jet = import_deepscene(dev, tmp_path / "jet.pt", zoo="adapnetpp-cityscapes-depth").out
    assert "jet" not in load_checkpoint(jet)["input_recipes"]
    with pytest.raises(DataError, match="does not record how its 'jet' input was made"):
        Segmenter.from_checkpoint(jet, device="cpu").raw_needs()
