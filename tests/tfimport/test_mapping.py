"""TF1 DeepScene tensor lists -> fusionseg state dicts (deepscene-tf.md §3, §5, §6)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from fusionseg.config import config_from_dict
from fusionseg.errors import CheckpointError
from fusionseg.fusion.build import build_model
from fusionseg.models.adapnet import build_adapnet
from fusionseg.tfimport.mapping import (
    Rule,
    adapnetpp_mapping,
    apply_mapping,
    cmode_mapping,
    ssma_mapping,
    tf_shape,
)

NUM_CLASSES = 12
TF = "resnet_v2_50/"
UNIT = TF + "block{b}/unit_{u}/bottleneck_v1/"


@pytest.fixture(scope="module")
def adapnet_shapes(tf_shapes) -> dict[str, tuple[int, ...]]:
    return tf_shapes("adapnetpp")


def _adapnet(device: str = "meta", *, aux: bool = True) -> torch.nn.Module:
    cfg = config_from_dict({"model": {"num_classes": NUM_CLASSES, "easpp_rates": [3, 6, 12], "aux": aux}})
    with torch.device(device):
        return build_adapnet(cfg.model, in_channels=3)


@pytest.fixture(scope="module")
def meta_model() -> torch.nn.Module:
    return _adapnet()


def check_mapping_covers(rules: list[Rule], tf_shapes: dict, model: torch.nn.Module) -> None:
    """Each TF tensor but Global_Step used once (halves once each), each key filled once, shapes fit."""
    uses = Counter((r.tf_name, r.half) for r in rules)
    assert max(uses.values()) == 1
    assert {r.tf_name for r in rules} == set(tf_shapes) - {"Global_Step"}
    halves = Counter(r.tf_name for r in rules if r.half is not None)
    assert all(n == 2 for n in halves.values())
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    targets = Counter(r.target for r in rules)
    assert set(targets) == set(state)
    assert max(targets.values()) == 1
    for r in rules:
        assert tf_shape(r, state[r.target].shape) == tf_shapes[r.tf_name], r


def test_adapnetpp_mapping_covers_the_tensor_list(adapnet_shapes: dict, meta_model: torch.nn.Module) -> None:
    rules = adapnetpp_mapping(meta_model)
    check_mapping_covers(rules, adapnet_shapes, meta_model)
    assert len(adapnet_shapes) == 389
    assert sum(r.half is not None for r in rules) == 16  # 8 multiscale units x 2 halves


def test_mapping_names_the_paper_layers(meta_model: torch.nn.Module) -> None:
    """The explicit table: trap BNs, skips, eASPP order, decoder stages, aux heads."""
    by_tf = {(r.tf_name, r.half): r.target for r in adapnetpp_mapping(meta_model)}
    enc = "trunk.encoder."
    assert (
        by_tf[(UNIT.format(b=3, u=6) + "conv3/BatchNorm/gamma", None)] == enc + "block4.unit1.pre_bn.weight"
    )
    assert by_tf[(UNIT.format(b=1, u=3) + "conv3/BatchNorm/beta", None)] == enc + "block1.out_bn.bias"
    assert by_tf[(UNIT.format(b=2, u=1) + "conv3/BatchNorm/moving_mean", None)] == (
        enc + "block2.unit2.pre_bn.running_mean"
    )
    assert by_tf[(UNIT.format(b=4, u=3) + "conv3/BatchNorm/moving_variance", None)] == (
        enc + "block4.out_bn.running_var"
    )
    assert by_tf[(TF + "conv0/BatchNorm/gamma", None)] == enc + "stem.input_bn.weight"
    expected = {
        "conv32": "trunk.skips.skip1",
        "conv174": "trunk.skips.skip2",
        "conv7": "trunk.easpp.cascades.0.1",
        "conv247": "trunk.easpp.cascades.0.2",
        "conv91": "trunk.easpp.cascades.2.3",
        "conv57": "trunk.easpp.image_pool",
        "conv10": "trunk.easpp.fuse",
        "conv41": "decoder.stages.skip2.up",
        "conv88": "decoder.stages.skip1.fuse.0",
        "conv5": "decoder.upsample",
        "conv911": "aux.aux1",
        "conv912": "aux.aux2",
    }
    for scope, module in expected.items():
        assert by_tf[(f"{TF}{scope}/weights", None)] == f"{module}.conv.weight"


def test_model_without_aux_drops_the_aux_tensors(adapnet_shapes: dict) -> None:
    model = _adapnet(aux=False)
    rules = adapnetpp_mapping(model)
    dropped = {r.tf_name for r in rules if r.target is None}
    assert dropped == {n for n in adapnet_shapes if "/conv911/" in n or "/conv912/" in n}
    arrays = {k: np.zeros(s, np.float32) for k, s in adapnet_shapes.items() if k not in dropped}
    state = apply_mapping(rules, arrays, model)  # the aux tensors need not be present
    assert set(state) == set(model.state_dict())


@pytest.fixture(scope="module")
def tf_arrays(adapnet_shapes: dict) -> dict[str, np.ndarray]:
    """Seeded random values in every tensor (about 30 M floats)."""
    rng = np.random.default_rng(0)
    arrays = {k: rng.standard_normal(s, dtype=np.float32) for k, s in adapnet_shapes.items() if s}
    arrays["Global_Step"] = np.array(1234, np.int32)
    return arrays


@pytest.fixture(scope="module")
def loaded(tf_arrays: dict) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    model = _adapnet("cpu")
    state = apply_mapping(adapnetpp_mapping(model), tf_arrays, model)
    model.load_state_dict(state, strict=True)
    return model, state


def test_apply_mapping_places_values(tf_arrays: dict, loaded: tuple) -> None:
    model, state = loaded
    # A conv kernel element: TF [kh, kw, in, out] -> [out, in, kh, kw].
    tf_k = tf_arrays[TF + "conv1/weights"]
    assert model.trunk.encoder.stem.conv.weight[5, 2, 1, 3] == tf_k[1, 3, 2, 5]
    # A transposed conv: TF [kh, kw, out, in] -> [in, out, kh, kw], no flip.
    tf_d = tf_arrays[TF + "conv5/weights"]
    assert model.decoder.upsample.conv.weight[7, 4, 0, 6] == tf_d[0, 6, 4, 7]
    # Multiscale split: output channel 0 -> convs.0[0], channel mid/2 -> convs.1[0].
    tf_ms = tf_arrays[UNIT.format(b=3, u=4) + "conv2/weights"]  # [3, 3, 256, 256]
    convs = model.trunk.encoder.block3.unit4.conv2.convs
    assert torch.equal(convs[0].weight[0], torch.from_numpy(tf_ms[..., 0].transpose(2, 0, 1)))
    assert torch.equal(convs[1].weight[0], torch.from_numpy(tf_ms[..., 128].transpose(2, 0, 1)))
    # conv3/BatchNorm trap: lands in the next unit's pre-activation BN.
    tf_bn = tf_arrays[UNIT.format(b=2, u=2) + "conv3/BatchNorm/moving_mean"]
    assert torch.equal(model.trunk.encoder.block2.unit3.pre_bn.running_mean, torch.from_numpy(tf_bn))
    tf_gamma = tf_arrays[UNIT.format(b=3, u=6) + "conv3/BatchNorm/gamma"]
    assert torch.equal(model.trunk.encoder.block4.unit1.pre_bn.weight, torch.from_numpy(tf_gamma))
    assert all(v.item() == 0 for k, v in state.items() if k.endswith("num_batches_tracked"))


def test_apply_mapping_copies(tf_arrays: dict, loaded: tuple) -> None:
    _model, state = loaded
    key = "trunk.encoder.stem.input_bn.running_var"
    assert state[key].data_ptr() != tf_arrays[TF + "conv0/BatchNorm/moving_variance"].ctypes.data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", r"lacks tensor 'resnet_v2_50/conv78/weights'"),
        ("shape", r"'resnet_v2_50/conv78/weights' has shape \[1, 1, 256, 13\]"),
        ("extra", r"'resnet_v2_50/conv999/weights' has no place"),
    ],
)
def test_apply_mapping_refusals(
    adapnet_shapes: dict, meta_model: torch.nn.Module, change: str, message: str
) -> None:
    arrays = {k: np.broadcast_to(np.float32(0), s) for k, s in adapnet_shapes.items()}
    name = TF + "conv78/weights"
    if change == "missing":
        del arrays[name]
    elif change == "shape":
        arrays[name] = np.zeros((1, 1, 256, 13), np.float32)
    else:
        arrays[TF + "conv999/weights"] = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(CheckpointError, match=message) as info:
        apply_mapping(adapnetpp_mapping(meta_model), arrays, meta_model)
    assert "\n" not in str(info.value)


def test_optimizer_entries_are_ignored(adapnet_shapes: dict, meta_model: torch.nn.Module) -> None:
    """§1: Adam slots and *_power entries are not model tensors; a shape check is all that runs on meta."""
    rules = adapnetpp_mapping(meta_model)
    arrays = {k: np.broadcast_to(np.float32(0), s) for k, s in adapnet_shapes.items()}
    arrays[TF + "beta1_power"] = np.float32(0.9)
    arrays[TF + TF + "conv1/weights/Adam"] = np.zeros((7, 7, 3, 64), np.float32)
    state = apply_mapping(rules, arrays, meta_model)
    assert len(state) == len(meta_model.state_dict())


def _fused(scheme: str) -> torch.nn.Module:
    cfg = config_from_dict(
        {
            "data": {"modalities": ["rgb", "depth"]},
            "model": {"num_classes": NUM_CLASSES},
            "fusion": {"scheme": scheme},
        }
    )
    with torch.device("meta"):
        return build_model(cfg, in_channels={"rgb": 3, "depth": 3})


def _marked(shapes: dict, marks: dict[str, float]) -> dict[str, np.ndarray]:
    """Zero arrays of the listed shapes (no memory: broadcast views), `marks` filled with a constant."""
    arrays = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
    for name, value in marks.items():
        arrays[name] = np.full(shapes[name], value, np.float32)
    return arrays


def test_ssma_mapping_covers_the_tensor_list(tf_shapes) -> None:
    shapes = tf_shapes("ssma")
    model = _fused("ssma")
    rules = ssma_mapping(model)
    check_mapping_covers(rules, shapes, model)
    by_tf = {(r.tf_name, r.half): r.target for r in rules}
    assert by_tf[("conv513/weights", None)] == "fusion.skip2.bottleneck.0.weight"  # stride 8
    assert by_tf[("conv553/biases", None)] == "fusion.skip1.project.bias"  # stride 4
    assert by_tf[("conv515/BatchNorm/gamma", None)] == "fusion.easpp.project.1.weight"
    assert by_tf[("conv550/weights", None)] == "decoder.stages.skip2.gate.conv.weight"
    assert by_tf[("depth/resnet_v2_50/conv32/weights", None)] == "experts.depth.skips.skip1.conv.weight"
    state = apply_mapping(
        rules, _marked(shapes, {"conv519/biases": 3.0, "rgb/resnet_v2_50/conv10/weights": 2.0}), model
    )
    assert torch.all(state["fusion.skip1.gate.0.bias"] == 3.0)
    assert torch.all(state["experts.rgb.easpp.fuse.conv.weight"] == 2.0)
    assert torch.all(state["experts.depth.easpp.fuse.conv.weight"] == 0.0)


def test_cmode_mapping_covers_the_tensor_list(tf_shapes) -> None:
    shapes = tf_shapes("cmode")
    model = _fused("cmode")
    rules = cmode_mapping(model)
    check_mapping_covers(rules, shapes, model)
    by_tf = {(r.tf_name, r.half): r for r in rules}
    assert by_tf[("fc545/weights", None)].target == "fusion.gates.11.fc1.weight"
    assert by_tf[("fc545/weights", None)].transform == "linear"
    assert by_tf[("conv547/weights", None)].target == "fusion.final.weight"
    assert by_tf[("depth/resnet_v1_50/conv911/weights", None)].target == "experts.depth.aux.aux1.conv.weight"
    fc = np.arange(128 * 2, dtype=np.float32).reshape(128, 2)  # TF [in, out]
    arrays = _marked(shapes, {})
    arrays["fc513/weights"] = fc
    state = apply_mapping(rules, arrays, model)
    assert torch.equal(state["fusion.gates.0.fc2.weight"], torch.from_numpy(fc.T.copy()))


def test_ssma_refuses_a_missing_fusion_tensor(tf_shapes) -> None:
    shapes = tf_shapes("ssma")
    del shapes["conv552/biases"]
    model = _fused("ssma")
    with pytest.raises(CheckpointError, match="lacks tensor 'conv552/biases'"):
        apply_mapping(ssma_mapping(model), _marked(shapes, {}), model)
