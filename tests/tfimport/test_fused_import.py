"""`import-deepscene` for SSMA and CMoDE checkpoints: the whole converter path on the real tensor lists.

No fused TF checkpoint exists here (the fused graphs' numerics are checked against TensorFlow in
`test_fused_parity.py`). These tests give the converter every tensor of the published SSMA / CMoDE
lists (`reference/tf-variables/`), read through a stand-in for the bundle reader (the reader itself is
tested on TF-written files): the experts carry the genuine AdapNet++ weights of
`../shared/data/deepscene-tf-dev/` (each expert must then be exactly the AdapNet++ parity path), the
fusion heads seeded values.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from finetune_helpers import finetune_dataset, finetune_sets

from fusionseg.cli import main
from fusionseg.engine.checkpoint import load_checkpoint, model_from_checkpoint
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.fsutil import sha256_file
from fusionseg.tfimport import convert
from fusionseg.tfimport.bundle import TFCheckpoint, model_tensors
from fusionseg.tfimport.convert import import_deepscene
from fusionseg.tfimport.convert_fused import cmode_grid, fused_sections

CMODE_TEST_GRID = (2, 4)  # a 32x64 input: keeps the gate FCs small (the zoo's 24x48 is checked apart)


@pytest.fixture(scope="module")
def dev_tensors(dev: Path) -> dict[str, np.ndarray]:
    """The AdapNet++ dev checkpoint's tensors, without the `resnet_v2_50/` scope."""
    reader = TFCheckpoint(dev / "model.ckpt-1")
    return {k.split("/", 1)[1]: reader.read(i.key) for k, i in model_tensors(reader).items()}


def head_value(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Seeded values for a fusion-head tensor: He-scaled weights, non-trivial BN statistics."""
    base = name.rsplit("/", 1)[-1]
    if base in ("moving_variance", "gamma"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if base in ("moving_mean", "beta", "biases"):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def fused_tensors(shapes: dict, dev: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Every listed tensor: experts (`rgb/...`, `depth/...`) from the dev checkpoint, heads seeded."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {"Global_Step": np.array(1, np.int32)}
    for name, shape in shapes.items():
        if name.startswith(("rgb/", "depth/")):
            tensors[name] = dev[name.split("/", 2)[2]]
        elif name != "Global_Step":
            tensors[name] = head_value(name, shape, rng)
    return tensors


@pytest.fixture
def fake_reader(monkeypatch: pytest.MonkeyPatch):
    """Make `import_deepscene` read `tensors` instead of a bundle (the reader has its own tests)."""

    def install(tensors: dict[str, np.ndarray]) -> None:
        reader = SimpleNamespace(read=tensors.__getitem__)
        monkeypatch.setattr(convert, "resolve_prefix", lambda path: path)
        monkeypatch.setattr(convert, "TFCheckpoint", lambda prefix: reader)
        entries = {k: SimpleNamespace(key=k) for k in tensors if k != "Global_Step"}
        monkeypatch.setattr(convert, "model_tensors", lambda _reader: entries)

    return install


@pytest.fixture(scope="module")
def ssma_tensors(tf_shapes, dev_tensors: dict) -> dict[str, np.ndarray]:
    return fused_tensors(tf_shapes("ssma"), dev_tensors, seed=1)


@pytest.fixture
def ssma_checkpoint(ssma_tensors: dict, fake_reader, tmp_path: Path) -> Path:
    fake_reader(ssma_tensors)
    out = tmp_path / "ssma.pt"
    args = ["import-deepscene", str(tmp_path), "--zoo", "ssma-cityscapes-rgb-hha"]  # fills the rest
    assert main([*args, "--out", str(out)]) == 0
    return out


def test_ssma_checkpoint_is_a_fusion_checkpoint(ssma_checkpoint: Path) -> None:
    payload = load_checkpoint(ssma_checkpoint)
    assert payload["kind"] == "ssma" and payload["modalities"] == ["rgb", "hha"]
    assert payload["in_channels"] == {"rgb": 3, "hha": 3} and payload["num_classes"] == 12
    assert payload["stage"] == "imported" and payload["experts"] == []
    assert (
        payload["zoo"]["file"] == "cityscapes_ssma_rgb_hha.zip" and payload["zoo"]["published_miou"] == 82.64
    )
    cfg = payload["config"]
    assert cfg["fusion"]["scheme"] == "ssma" and cfg["fusion"]["aux"] is False
    assert cfg["model"]["padding"] == "tf_same" and cfg["data"]["modalities"] == ["rgb", "hha"]
    scopes = payload["imported_from"]["expert_scopes"]
    assert scopes == {"rgb": "rgb/resnet_v2_50/", "hha": "depth/resnet_v2_50/"}  # fusion order (§7)


def test_ssma_experts_are_the_adapnetpp_parity_path(ssma_checkpoint: Path, converted: Path, outputs) -> None:
    """Each expert trunk, fed the dev input, gives the taps of the converted AdapNet++ (which match TF)."""
    _, x, reference = outputs
    model = model_from_checkpoint(load_checkpoint(ssma_checkpoint)).eval()
    expert_state = load_checkpoint(converted)["model"]
    for modality in ("rgb", "hha"):
        trunk = model.experts[modality]
        state = trunk.state_dict()
        assert all(torch.equal(v, expert_state[f"trunk.{k}"]) for k, v in state.items()), modality
    with torch.no_grad():
        taps = model.experts["hha"](x)
    for tap in ("easpp", "skip1", "skip2"):
        assert torch.allclose(taps[tap], reference.taps[tap], atol=1e-5), tap


def test_ssma_checkpoint_predicts_evaluates_and_exports(
    ssma_checkpoint: Path, shared_data: Path, tmp_path: Path, capsys
) -> None:
    frame = cv2.resize(cv2.imread(str(shared_data / "kinectv2-samples/emsanet/sample_rgb.png")), (128, 64))
    for modality in ("rgb", "hha", "label"):
        (tmp_path / modality).mkdir()
    cv2.imwrite(str(tmp_path / "rgb" / "0.png"), frame)
    cv2.imwrite(str(tmp_path / "hha" / "0.png"), frame[:, ::-1])  # any 3-channel 8-bit image
    cv2.imwrite(str(tmp_path / "label" / "0.png"), np.arange(64 * 128, dtype=np.uint8).reshape(64, 128) % 12)
    capsys.readouterr()
    args = ["predict", "--checkpoint", str(ssma_checkpoint), str(tmp_path / "rgb"), "--json"]
    assert main([*args, "--modality-dir", f"hha={tmp_path / 'hha'}", "--out", str(tmp_path / "p")]) == 0
    labels = json.loads(capsys.readouterr().out)["frames"][0]["outputs"]["labels"]
    assert cv2.imread(labels, cv2.IMREAD_UNCHANGED).shape == (64, 128)
    from fusionseg import Segmenter

    seg = Segmenter.from_checkpoint(ssma_checkpoint, device="cpu")
    assert seg.modalities == ("rgb", "hha")
    assert seg.predict({"rgb": frame[:50, :100], "hha": frame[:50, ::-1][:, :100]}).shape == (50, 100)
    (tmp_path / "val.txt").write_text("# columns: rgb hha label\nrgb/0.png hha/0.png label/0.png\n")
    args = ["evaluate", "--checkpoint", str(ssma_checkpoint), "--data", str(tmp_path / "val.txt"), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 1
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "ssma.onnx"
    args = ["export", "--checkpoint", str(ssma_checkpoint), "--size", "64x128", "--out", str(onnx), "--json"]
    assert main(args) == 0
    assert all(check["ok"] for check in json.loads(capsys.readouterr().out)["checks"])


@pytest.fixture(scope="module")
def cmode_tensors(tf_shapes, dev_tensors: dict) -> dict[str, np.ndarray]:
    shapes = tf_shapes("cmode")
    h, w = CMODE_TEST_GRID
    for name, shape in shapes.items():
        if name.startswith("fc") and name.endswith("/weights") and shape[1] == 128:  # first gate FCs
            shapes[name] = (20 * h * w, 128)
    return fused_tensors(shapes, dev_tensors, seed=2)


def test_cmode_import_composes_the_adapnetpp_experts(
    cmode_tensors: dict, fake_reader, tmp_path: Path, converted: Path, outputs
) -> None:
    fake_reader(cmode_tensors)
    out = import_deepscene(tmp_path, tmp_path / "cmode.pt", dataset="cityscapes11", modalities="rgb,jet").out
    payload = load_checkpoint(out)
    assert payload["kind"] == "cmode" and payload["modalities"] == ["rgb", "jet"]
    assert payload["config"]["fusion"]["cmode_pool_hw"] == list(CMODE_TEST_GRID)
    assert payload["input_size"] == [32, 64]
    assert payload["imported_from"]["expert_scopes"]["jet"] == "depth/resnet_v1_50/"
    model = model_from_checkpoint(payload).eval()
    expert_state = load_checkpoint(converted)["model"]
    for modality in ("rgb", "jet"):  # complete experts, aux heads included (deepscene-tf.md §8)
        state = model.experts[modality].state_dict()
        assert set(state) == set(expert_state)
        assert all(torch.equal(v, expert_state[k]) for k, v in state.items()), modality
    _, x, reference = outputs
    with torch.no_grad():
        logits = model.experts["jet"]({"jet": x}).logits
        fused = model({"rgb": x[..., :64, :128], "jet": x[..., :64, :128]}).logits
    assert torch.allclose(logits, reference.logits, atol=1e-5)
    assert fused.shape == (1, 12, 64, 128) and torch.isfinite(fused).all()


def test_cmode_grid_of_the_zoo_size(tf_shapes) -> None:
    """The published CMoDE list (12 classes, 384x768) implies a 24x48 gate grid, an identity pooling."""
    shapes = tf_shapes("cmode")
    tensors = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items() if k.startswith("fc512/")}
    assert cmode_grid(tensors) == (24, 48)
    fusion, size = fused_sections("cmode", tensors, (0, 0))
    assert fusion["cmode_pool_hw"] == [24, 48] and size == (384, 768)
    tensors["fc512/weights"] = np.broadcast_to(np.float32(0), (20 * 24 * 47, 128))
    with pytest.raises(CheckpointError, match="'fc512/weights' has 22560 rows"):
        cmode_grid(tensors)


def test_fused_import_refusals(ssma_tensors: dict, fake_reader, tmp_path: Path, capsys) -> None:
    fake_reader(ssma_tensors)
    beta = "depth/resnet_v2_50/conv10/BatchNorm/beta"
    with pytest.raises(ConfigError, match="modalities: a ssma checkpoint reads 2 input"):
        import_deepscene(tmp_path, tmp_path / "x.pt", dataset="cityscapes11", modalities="rgb")
    with pytest.raises(ConfigError, match="holds a ssma graph .*not cmode"):
        import_deepscene(
            tmp_path, tmp_path / "x.pt", dataset="cityscapes11", model="cmode", modalities="rgb,hha"
        )
    with pytest.raises(ConfigError, match="'depth_raw' has 1 channel"):
        import_deepscene(tmp_path, tmp_path / "x.pt", dataset="cityscapes11", modalities="rgb,depth_raw")
    broken = dict(ssma_tensors)
    broken["conv553/biases"] = np.zeros(25, np.float32)
    del broken[beta]
    fake_reader(broken)
    capsys.readouterr()
    args = ["import-deepscene", str(tmp_path), "--dataset", "cityscapes11", "--modalities", "rgb,hha"]
    assert main([*args, "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"lacks tensor '{beta}'" in err[0], err
    broken[beta] = ssma_tensors[beta]
    fake_reader(broken)  # the entry list is taken when installed
    with pytest.raises(CheckpointError, match=r"'conv553/biases' has shape \[25\]"):
        import_deepscene(tmp_path, tmp_path / "x.pt", dataset="cityscapes11", modalities="rgb,hha")
    broken["conv553/biases"] = ssma_tensors["conv553/biases"]
    broken["conv999/weights"] = np.zeros((1, 1, 2, 2), np.float32)
    fake_reader(broken)
    with pytest.raises(CheckpointError, match="'conv999/weights' has no place"):
        import_deepscene(tmp_path, tmp_path / "x.pt", dataset="cityscapes11", modalities="rgb,hha")
    assert not (tmp_path / "x.pt").exists()


def test_train_fusion_fine_tunes_an_imported_ssma(ssma_checkpoint: Path, tmp_path: Path, capsys) -> None:
    data = finetune_dataset(tmp_path / "data", ("rgb", "hha"))
    args = ["train-fusion", "--init-from", str(ssma_checkpoint), "--out", str(tmp_path / "run")]
    assert main([*args, *finetune_sets(data, ["fusion.lr=1e-9", "fusion.iterations=1"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scheme"] == "ssma"
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["init_from"]["sha256"] == sha256_file(ssma_checkpoint) and last["experts"] == []
    imported = load_checkpoint(ssma_checkpoint)["model"]
    key = "experts.rgb.encoder.stem.conv.weight"
    assert torch.equal(last["model"][key], imported[key])  # frozen expert
    key = "fusion.easpp.gate.0.weight"  # the head trained one step at lr 1e-9: still the imported one
    assert torch.allclose(last["model"][key], imported[key], atol=1e-6)
