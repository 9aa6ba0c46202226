"""ImageNet initialisation from a local torchvision/timm ResNet-50 state dict (adapnetpp.md §9)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from fusionseg.backbones.init import load_imagenet_init
from fusionseg.backbones.resnet import MultiscaleResNet50
from fusionseg.config import (
    ModelConfig,
    RunConfig,
    config_from_dict,
    config_to_dict,
    saved_config_from_dict,
)
from fusionseg.errors import CheckpointError, ConfigError
from fusionseg.models.adapnet import AdapNetPP, AdapNetTrunk
from fusionseg.workflows.train_expert import initial_expert

BN = ("weight", "bias", "running_mean", "running_var")
UNITS = (3, 4, 6, 3)


def _random_state(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Distinct random values in every float tensor, so a wrong mapping cannot match by accident."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = _random_state(resnet50(weights=None).state_dict(), seed=0)
    path = tmp_path_factory.mktemp("init") / "resnet50.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def model() -> AdapNetPP:
    torch.manual_seed(0)
    return AdapNetPP(num_classes=5)


def _expected(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The §9 table, written out independently of the implementation (encoder-relative names)."""
    exp = {"stem.conv.weight": src["conv1.weight"]}
    exp |= {f"stem.bn.{t}": src[f"bn1.{t}"] for t in BN}
    multiscale = {(2, 4), (3, 3), (3, 4), (3, 5), (3, 6), (4, 1), (4, 2), (4, 3)}
    for b, n in enumerate(UNITS, start=1):
        for u in range(1, n + 1):
            t, s = f"block{b}.unit{u}", f"layer{b}.{u - 1}"
            exp[f"{t}.conv1.weight"] = src[f"{s}.conv1.weight"]
            exp[f"{t}.conv3.weight"] = src[f"{s}.conv3.weight"]
            k = src[f"{s}.conv2.weight"]
            if (b, u) in multiscale:
                half = k.shape[0] // 2
                exp[f"{t}.conv2.convs.0.weight"] = k[:half]
                exp[f"{t}.conv2.convs.1.weight"] = k[half:]
            else:
                exp[f"{t}.conv2.weight"] = k
            for i in (1, 2):
                exp |= {f"{t}.bn{i}.{x}": src[f"{s}.bn{i}.{x}"] for x in BN}
            if u >= 2:
                exp |= {f"{t}.pre_bn.{x}": src[f"layer{b}.{u - 2}.bn3.{x}"] for x in BN}
            else:
                exp[f"{t}.shortcut.weight"] = src[f"layer{b}.0.downsample.0.weight"]
    exp |= {f"block4.unit1.pre_bn.{x}": src[f"layer3.5.bn3.{x}"] for x in BN}
    for b, last in ((1, "layer1.2"), (2, "layer2.3"), (4, "layer4.2")):
        exp |= {f"block{b}.out_bn.{x}": src[f"{last}.bn3.{x}"] for x in BN}
    return exp


def test_every_mapped_tensor_lands_exactly(source, model: AdapNetPP) -> None:
    path, src = source
    report = load_imagenet_init(model, path)
    exp = _expected(src)
    enc = model.trunk.encoder.state_dict()
    for name, value in exp.items():
        assert torch.equal(enc[name], value), name
    assert set(report.loaded) == {f"trunk.encoder.{n}" for n in exp}
    assert len(report.loaded) == 249 + 8  # §9: 249 source tensors; 8 multiscale kernels split in two
    assert report.loaded_elements == 23_545_792  # §9
    assert report.stem == "copied"
    assert "23,545,792" in report.summary()


def test_unmapped_targets_are_exactly_the_documented_ones(source, model: AdapNetPP) -> None:
    report = load_imagenet_init(model, source[0])
    fresh_prefixes = ("trunk.skips.", "trunk.easpp.", "decoder.", "aux.")
    expected = {
        n
        for n in list(dict(model.named_parameters())) + list(dict(model.named_buffers()))
        if n.startswith(fresh_prefixes) and not n.endswith("num_batches_tracked")
    } | {f"trunk.encoder.stem.input_bn.{t}" for t in BN}
    assert set(report.not_loaded) == expected
    assert not set(report.loaded) & set(report.not_loaded)
    # unused sources: the 4 projection-shortcut BNs and fc (§9)
    unused = {f"layer{b}.0.downsample.1.{t}" for b in range(1, 5) for t in BN} | {"fc.weight", "fc.bias"}
    assert set(report.sources_unused) == unused


def test_input_bn_and_heads_keep_their_init(source) -> None:
    torch.manual_seed(1)
    m = AdapNetPP(num_classes=3)
    before = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("trunk.encoder.block")}
    load_imagenet_init(m, source[0])
    after = m.state_dict()
    assert torch.equal(after["trunk.encoder.stem.input_bn.weight"], torch.ones(3))
    changed = [k for k, v in before.items() if not torch.equal(after[k], v)]
    assert sorted(changed) == sorted(
        f"trunk.encoder.stem.{p}" for p in ("conv.weight", *(f"bn.{t}" for t in BN))
    )


def test_flip_input_channels(source) -> None:
    path, src = source
    enc = MultiscaleResNet50(3)
    report = load_imagenet_init(enc, path, flip_input_channels=True)
    assert report.stem == "flipped"
    assert torch.equal(enc.stem.conv.weight, src["conv1.weight"][:, [2, 1, 0]])
    assert set(report.not_loaded) == {f"stem.input_bn.{t}" for t in BN}


def test_single_channel_stem_sums_rgb_filters(source) -> None:
    path, src = source
    trunk = AdapNetTrunk(1)
    report = load_imagenet_init(trunk, path)
    assert report.stem == "summed"
    assert torch.allclose(trunk.encoder.stem.conv.weight, src["conv1.weight"].sum(1, keepdim=True))
    with pytest.raises(ValueError, match="3-channel"):
        load_imagenet_init(trunk, path, flip_input_channels=True)


def test_timm_names_are_torchvision_names(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    state = timm.create_model("resnet50", pretrained=False).state_dict()
    tv = resnet50(weights=None).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in tv.items()}
    state = _random_state(state, seed=2)
    torch.save({"state_dict": state}, tmp_path / "timm.pth")  # wrapped, as in training checkpoints
    enc = MultiscaleResNet50(3)
    load_imagenet_init(enc, tmp_path / "timm.pth")
    assert torch.equal(enc.block3.unit4.conv2.convs[1].weight, state["layer3.3.conv2.weight"][128:])


def test_model_left_untouched_when_file_is_wrong(tmp_path: Path) -> None:
    enc = MultiscaleResNet50(3)
    before = enc.stem.conv.weight.clone()
    state = _random_state(resnet18(weights=None).state_dict(), seed=3)  # conv1/bn1 fit, layers do not
    torch.save(state, tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="r18.pth"):
        load_imagenet_init(enc, tmp_path / "r18.pth")
    assert torch.equal(enc.stem.conv.weight, before)


class _NotAllowed:
    """A class `weights_only` loading must refuse."""


@pytest.mark.parametrize(
    "content",
    [
        "random_dict",
        "pickle_object",
        "garbage_bytes",
        "list_of_tensors",
        "missing_file",
        "directory",
        "wrong_shape",
    ],
)
def test_wrong_files_raise_checkpoint_error(tmp_path: Path, content: str, model: AdapNetPP) -> None:
    path = tmp_path / "weights.pth"
    if content == "random_dict":
        torch.save({"a": torch.zeros(3), "b": torch.ones(2)}, path)
    elif content == "pickle_object":
        path.write_bytes(pickle.dumps(_NotAllowed(), protocol=2))
    elif content == "garbage_bytes":
        path.write_bytes(b"\x00\x01 definitely not a checkpoint")
    elif content == "list_of_tensors":
        torch.save([torch.zeros(1)], path)
    elif content == "directory":
        path.mkdir()
    elif content == "wrong_shape":
        state = {k: v.clone() for k, v in resnet50(weights=None).state_dict().items()}
        state["layer2.1.conv2.weight"] = torch.zeros(128, 128, 1, 1)
        torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_imagenet_init(model, path)
    message = str(info.value)
    assert "weights.pth" in message and "\n" not in message
    if content == "wrong_shape":
        assert "layer2.1.conv2.weight" in message


def test_config_flip_reaches_the_stem(source) -> None:
    """model.init_flip_channels is read by the trainer's model builder: it changes the stem weights."""
    path, src = source
    plain = initial_expert(ModelConfig(num_classes=5, init=str(path)), in_channels=3)
    flipped = initial_expert(
        ModelConfig(num_classes=5, init=str(path), init_flip_channels=True), in_channels=3
    )
    stem = "trunk.encoder.stem.conv.weight"
    assert torch.equal(plain.state_dict()[stem], src["conv1.weight"])
    assert torch.equal(flipped.state_dict()[stem], src["conv1.weight"][:, [2, 1, 0]])
    assert not torch.equal(plain.state_dict()[stem], flipped.state_dict()[stem])
    # a resumed run takes its weights from the checkpoint: the init file is not applied
    resumed = initial_expert(ModelConfig(num_classes=5, init=str(path)), in_channels=3, pretrained=False)
    assert not torch.equal(resumed.state_dict()[stem], src["conv1.weight"])


def test_config_flip_without_init_or_for_one_channel_is_refused(source) -> None:
    with pytest.raises(ConfigError, match="model.init_flip_channels: needs model.init"):
        initial_expert(ModelConfig(num_classes=5, init_flip_channels=True), in_channels=3)
    cfg = ModelConfig(num_classes=5, init=str(source[0]), init_flip_channels=True)
    with pytest.raises(ConfigError, match="1 channel"):
        initial_expert(cfg, in_channels=1)


def test_retired_model_name_key() -> None:
    """model.name is gone: refused in a user's config, dropped from configs saved by older versions."""
    with pytest.raises(ConfigError, match="unknown config key 'model.name'"):
        config_from_dict({"model": {"name": "adapnetpp"}})
    old = config_to_dict(RunConfig())
    old["model"]["name"] = "adapnetpp"  # as written into checkpoints before it was removed
    assert saved_config_from_dict(old) == RunConfig()
