"""Tensor-name mapping from the DeepScene TF1 AdapNet++ graph to fusionseg (deepscene-tf.md §3, §5, §6).

A mapping is a list of `Rule`s, generated from the fusionseg model's structure; `apply_mapping` turns a
dict of TF tensors into a full fusionseg state dict, refusing missing, misshapen or unused tensors.

| TF scope (under `resnet_v2_50/`)                    | fusionseg module (under `AdapNetPP`)              |
|-----------------------------------------------------|---------------------------------------------------|
| conv0/BatchNorm (input BN, no conv)                 | trunk.encoder.stem.input_bn                       |
| conv1/weights, conv1/BatchNorm                      | trunk.encoder.stem.conv, stem.bn                  |
| block{b}/unit_{u}/bottleneck_v1/conv1, conv1/BN     | trunk.encoder.block{b}.unit{u}.conv1, bn1         |
| ... conv2/weights, conv2/BatchNorm                  | ... conv2 (multiscale: conv2.convs.0 / .1 take    |
|                                                     | the 1st / 2nd half of the output channels), bn2   |
| ... conv3/weights                                   | ... conv3                                         |
| ... shortcut/weights                                | ... shortcut (no BN)                              |
| ... conv3/BatchNorm (§5 trap: the unit's output sum) | next unit's pre_bn; last unit of blocks 1, 2, 4: |
|                                                     | block{b}.out_bn; block3/unit_6: block4.unit1.pre_bn |
| conv32, conv174 (1x1 -> 24 + BN)                    | trunk.skips.skip1 (stride 4), skips.skip2 (stride 8) |
| conv256                                             | trunk.easpp.conv1x1 (branch A)                    |
| conv70, conv7, conv247, conv71 (rate 3)             | trunk.easpp.cascades.0.{0,1,2,3}                  |
| conv80, conv8, conv248, conv81 (rate 6)             | trunk.easpp.cascades.1.{0,1,2,3}                  |
| conv90, conv9, conv249, conv91 (rate 12)            | trunk.easpp.cascades.2.{0,1,2,3}                  |
| conv57, conv10                                      | trunk.easpp.image_pool, easpp.fuse                |
| conv41 (deconv x2), conv89, conv96                  | decoder.stages.skip2.up, .fuse.0, .fuse.1         |
| conv16 (deconv x2), conv88, conv95                  | decoder.stages.skip1.up, .fuse.0, .fuse.1         |
| conv78, conv5 (deconv x4)                           | decoder.classifier, decoder.upsample              |
| conv911 (on conv16's BN), conv912 (on conv41's BN)  | aux.aux1, aux.aux2 (dropped if the model has none) |

Every `<scope>/weights` pairs with `<module>.conv.weight` (or `<module>.weight`) and every
`<scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}` with `<module>.{weight,bias,running_mean,
running_var}`. Conv kernels `[k, k, in, out]` and transposed-conv kernels `[k, k, out, in]` both become
PyTorch's layout by `transpose(3, 2, 0, 1)`, with no spatial flip (§3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from fusionseg.backbones.resnet import BLOCK_UNITS, MultiscaleConv2d, MultiscaleResNet50
from fusionseg.errors import CheckpointError

# TF BatchNorm variable -> PyTorch BatchNorm tensor (§5).
BN_TENSORS: Mapping[str, str] = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}

# eASPP cascades (§6): TF scopes of (1x1 in, 3x3, 3x3, 1x1 out) per rate, in the model's rate order.
EASPP_CASCADES = (
    ("conv70", "conv7", "conv247", "conv71"),
    ("conv80", "conv8", "conv248", "conv81"),
    ("conv90", "conv9", "conv249", "conv91"),
)
# Decoder stages (§6), keyed by the fusionseg stage name: (deconv, first 3x3, second 3x3).
DECODER_STAGES: Mapping[str, tuple[str, str, str]] = {
    "skip2": ("conv41", "conv89", "conv96"),
    "skip1": ("conv16", "conv88", "conv95"),
}
SKIP_SCOPES: Mapping[str, str] = {"skip1": "conv32", "skip2": "conv174"}
AUX_SCOPES: Mapping[str, str] = {"aux1": "conv911", "aux2": "conv912"}

Transform = Literal["copy", "conv", "linear"]


@dataclass(frozen=True)
class Rule:
    """One TF tensor (or one half of it) and where it goes.

    Attributes:
        tf_name: Full TF tensor name, e.g. `resnet_v2_50/conv1/weights`.
        target: fusionseg state-dict key, or None for a TF tensor that is knowingly dropped.
        transform: "copy" (BN vectors, biases), "conv" (`transpose(3, 2, 0, 1)`: conv and
            transposed-conv kernels) or "linear" (FC `[in, out]` -> `[out, in]`).
        half: 0 / 1: take the first / second half of the TF tensor's last axis (multiscale conv2
            output channels) before transforming; None: the whole tensor.
    """

    tf_name: str
    target: str | None
    transform: Transform = "copy"
    half: int | None = None


def _bn(tf_scope: str, module: str) -> list[Rule]:
    """`<tf_scope>/BatchNorm/*` -> `<module>.{weight, bias, running_mean, running_var}`."""
    return [Rule(f"{tf_scope}/BatchNorm/{t}", f"{module}.{p}") for t, p in BN_TENSORS.items()]


def _conv_bn(tf_scope: str, module: str) -> list[Rule]:
    """A fusionseg `conv_bn` / `deconv_bn` (children `conv`, `bn`) from `<tf_scope>/{weights, BatchNorm}`."""
    return [Rule(f"{tf_scope}/weights", f"{module}.conv.weight", "conv"), *_bn(tf_scope, f"{module}.bn")]


def _next_bn(encoder: MultiscaleResNet50, b: int, u: int) -> str:
    """The BN that normalises unit (b, u)'s output sum: the §5 home of its `conv3/BatchNorm`."""
    block = getattr(encoder, f"block{b}")
    if u < BLOCK_UNITS[b - 1]:
        name = f"block{b}.unit{u + 1}.pre_bn"
    elif hasattr(block, "out_bn"):
        name = f"block{b}.out_bn"
    else:
        name = f"block{b + 1}.unit1.pre_bn"
    module = encoder.get_submodule(name)
    if not isinstance(module, nn.BatchNorm2d):
        raise ValueError(f"TF mapping: block{b}.unit{u} has no following BatchNorm ({name} is absent)")
    return name


def encoder_rules(encoder: MultiscaleResNet50, tf: str, pt: str) -> list[Rule]:
    """Rules of the ResNet-50 encoder: TF names start with `tf`, fusionseg keys with `pt`."""
    rules = _bn(f"{tf}conv0", f"{pt}stem.input_bn")
    rules += [Rule(f"{tf}conv1/weights", f"{pt}stem.conv.weight", "conv"), *_bn(f"{tf}conv1", f"{pt}stem.bn")]
    for b, num_units in enumerate(BLOCK_UNITS, start=1):
        for u in range(1, num_units + 1):
            unit = encoder.get_submodule(f"block{b}.unit{u}")
            t, p = f"{tf}block{b}/unit_{u}/bottleneck_v1/", f"{pt}block{b}.unit{u}."
            rules.append(Rule(f"{t}conv1/weights", f"{p}conv1.weight", "conv"))
            rules += _bn(f"{t}conv1", f"{p}bn1")
            if isinstance(unit.conv2, MultiscaleConv2d):  # §3: output channels split in two halves
                rules += [Rule(f"{t}conv2/weights", f"{p}conv2.convs.{h}.weight", "conv", h) for h in (0, 1)]
            else:
                rules.append(Rule(f"{t}conv2/weights", f"{p}conv2.weight", "conv"))
            rules += _bn(f"{t}conv2", f"{p}bn2")
            rules.append(Rule(f"{t}conv3/weights", f"{p}conv3.weight", "conv"))
            rules += _bn(f"{t}conv3", pt + _next_bn(encoder, b, u))  # §5 trap
            if unit.shortcut is not None:
                rules.append(Rule(f"{t}shortcut/weights", f"{p}shortcut.weight", "conv"))
    return rules


def trunk_rules(trunk: nn.Module, tf: str, pt: str) -> list[Rule]:
    """Rules of an `AdapNetTrunk` (encoder, skip convs, eASPP); the SSMA experts are exactly this."""
    rules = encoder_rules(trunk.encoder, tf, f"{pt}encoder.")
    for tap, scope in SKIP_SCOPES.items():
        rules += _conv_bn(f"{tf}{scope}", f"{pt}skips.{tap}")
    easpp = f"{pt}easpp."
    if len(trunk.easpp.cascades) != len(EASPP_CASCADES):
        raise ValueError(f"TF mapping: the TF eASPP has 3 cascades, this model {len(trunk.easpp.cascades)}")
    rules += _conv_bn(f"{tf}conv256", f"{easpp}conv1x1")
    for i, scopes in enumerate(EASPP_CASCADES):
        for j, scope in enumerate(scopes):
            rules += _conv_bn(f"{tf}{scope}", f"{easpp}cascades.{i}.{j}")
    rules += _conv_bn(f"{tf}conv57", f"{easpp}image_pool")
    rules += _conv_bn(f"{tf}conv10", f"{easpp}fuse")
    return rules


def decoder_rules(tf: str, pt: str) -> list[Rule]:
    """Rules of a `Decoder` without context gates (the SSMA gates are the caller's)."""
    rules: list[Rule] = []
    for stage, (up, fuse0, fuse1) in DECODER_STAGES.items():
        p = f"{pt}stages.{stage}."
        rules += _conv_bn(f"{tf}{up}", f"{p}up") + _conv_bn(f"{tf}{fuse0}", f"{p}fuse.0")
        rules += _conv_bn(f"{tf}{fuse1}", f"{p}fuse.1")
    return rules + _conv_bn(f"{tf}conv78", f"{pt}classifier") + _conv_bn(f"{tf}conv5", f"{pt}upsample")


def adapnetpp_mapping(
    model: nn.Module, *, tf_prefix: str = "resnet_v2_50/", pt_prefix: str = ""
) -> list[Rule]:
    """Rules from the TF AdapNet++ checkpoint names to an `AdapNetPP`'s state-dict keys (module table).

    Args:
        model: The `AdapNetPP` to fill (any device, `meta` included); its structure drives the rules.
        tf_prefix: Scope of the TF graph (`resnet_v2_50/`; `rgb/resnet_v1_50/` for a CMoDE expert).
        pt_prefix: Prefix of the fusionseg keys (`experts.rgb.` for an expert inside a fused model).

    Returns:
        One rule per TF tensor (two for a multiscale `conv2/weights`). Without aux heads in `model`,
        `conv911`/`conv912` get rules with target None (dropped).
    """
    rules = trunk_rules(model.trunk, tf_prefix, f"{pt_prefix}trunk.")
    rules += decoder_rules(tf_prefix, f"{pt_prefix}decoder.")
    for head, scope in AUX_SCOPES.items():
        aux = _conv_bn(f"{tf_prefix}{scope}", f"{pt_prefix}aux.{head}")
        rules += aux if model.aux is not None else [Rule(r.tf_name, None) for r in aux]
    return rules


# SSMA (§7): TF scopes of each SSMA block (bottleneck, gate, projection), keyed by fusionseg tap name.
# fusionseg keys taps as AdapNet++ does (skip1 = stride 4, skip2 = stride 8); the original SSMA code's
# own attribute names are swapped, the scopes below follow the stride.
SSMA_BLOCKS: Mapping[str, tuple[str, str, str]] = {
    "easpp": ("conv511", "conv512", "conv515"),
    "skip2": ("conv513", "conv514", "conv552"),  # stride 8
    "skip1": ("conv518", "conv519", "conv553"),  # stride 4
}
SSMA_DECODER_GATES: Mapping[str, str] = {"skip2": "conv550", "skip1": "conv551"}
# TF expert scopes, in fusion order (modality 1 is `rgb`, modality 2 `depth`, whatever they hold).
TF_EXPERT_SCOPES = ("rgb", "depth")


def _conv_bias(tf_scope: str, module: str) -> list[Rule]:
    """A biased conv without BN: `<tf_scope>/{weights, biases}` -> `<module>.{weight, bias}`."""
    return [
        Rule(f"{tf_scope}/weights", f"{module}.weight", "conv"),
        Rule(f"{tf_scope}/biases", f"{module}.bias"),
    ]


def _expert_scopes(model: nn.Module) -> dict[str, str]:
    """fusionseg expert name -> TF scope (`rgb`, `depth`), by fusion order."""
    names = list(model.experts)
    if len(names) != len(TF_EXPERT_SCOPES):
        raise ValueError(f"TF mapping: the DeepScene fusion graphs have 2 experts, this model {names}")
    return dict(zip(names, TF_EXPERT_SCOPES, strict=True))


def ssma_mapping(model: nn.Module) -> list[Rule]:
    """Rules from the TF SSMA checkpoint names (§7) to an `SSMAModel`'s state-dict keys.

    | TF scope                                   | fusionseg module                                 |
    |--------------------------------------------|--------------------------------------------------|
    | {rgb,depth}/resnet_v2_50/...               | experts.<modality 1 / 2>. (`trunk_rules`)        |
    | conv511, conv512, conv515 (+BN)            | fusion.easpp.bottleneck.0, gate.0, project.{0,1} |
    | conv513, conv514, conv552 (stride 8)       | fusion.skip2.bottleneck.0, gate.0, project       |
    | conv518, conv519, conv553 (stride 4)       | fusion.skip1.bottleneck.0, gate.0, project       |
    | conv550, conv551 (+BN)                     | decoder.stages.skip2.gate, decoder.stages.skip1.gate |
    | conv41 ... conv5                           | decoder.* as in AdapNet++                        |

    Raises:
        ValueError: the model is not two experts, or has aux heads (the TF SSMA graph has none).
    """
    if model.aux_heads is not None:
        raise ValueError(
            "TF mapping: the TF SSMA graph has no aux heads; build the model with fusion.aux off"
        )
    rules: list[Rule] = []
    for name, scope in _expert_scopes(model).items():
        rules += trunk_rules(model.experts[name], f"{scope}/resnet_v2_50/", f"experts.{name}.")
    return rules + ssma_head_rules(model)


def ssma_head_rules(model: nn.Module) -> list[Rule]:
    """The top-level part of `ssma_mapping`: the SSMA blocks, the decoder gates and the fused decoder
    (everything but the experts; the rules depend only on `model.fusion`'s structure)."""
    rules: list[Rule] = []
    for tap, (bottleneck, gate, project) in SSMA_BLOCKS.items():
        p = f"fusion.{tap}."
        rules += _conv_bias(bottleneck, f"{p}bottleneck.0") + _conv_bias(gate, f"{p}gate.0")
        if isinstance(model.fusion[tap].project, nn.Sequential):  # 1x1 conv (no bias) -> BN
            rules += [
                Rule(f"{project}/weights", f"{p}project.0.weight", "conv"),
                *_bn(project, f"{p}project.1"),
            ]
        else:
            rules += _conv_bias(project, f"{p}project")
    for tap, scope in SSMA_DECODER_GATES.items():
        rules += _conv_bn(scope, f"decoder.stages.{tap}.gate")
    return rules + decoder_rules("", "decoder.")


def cmode_mapping(model: nn.Module) -> list[Rule]:
    """Rules from the TF CMoDE checkpoint names (§8) to a `CMoDEModel`'s state-dict keys.

    | TF scope                                   | fusionseg module                                 |
    |--------------------------------------------|--------------------------------------------------|
    | {rgb,depth}/resnet_v1_50/...               | experts.<modality 1 / 2>. (`adapnetpp_mapping`)  |
    | conv{511+3i} (+biases)                     | fusion.gates.{i}.conv                            |
    | fc{512+3i}, fc{513+3i} ([in, out] + biases) | fusion.gates.{i}.fc1, fc2 (transposed)          |
    | conv{511+3C}                               | fusion.final                                     |

    The FC rows keep their order: fusionseg's gates flatten NHWC like the original (§8).
    """
    rules: list[Rule] = []
    for name, scope in _expert_scopes(model).items():
        rules += adapnetpp_mapping(
            model.experts[name], tf_prefix=f"{scope}/resnet_v1_50/", pt_prefix=f"experts.{name}."
        )
    return rules + cmode_head_rules(model)


def cmode_head_rules(model: nn.Module) -> list[Rule]:
    """The top-level part of `cmode_mapping`: the class gates and the final conv of `model.fusion`."""
    rules: list[Rule] = []
    gates = model.fusion.gates
    for i in range(len(gates)):
        p, n = f"fusion.gates.{i}.", 511 + 3 * i
        rules += _conv_bias(f"conv{n}", f"{p}conv")
        for fc, scope in (("fc1", f"fc{n + 1}"), ("fc2", f"fc{n + 2}")):
            rules += [
                Rule(f"{scope}/weights", f"{p}{fc}.weight", "linear"),
                Rule(f"{scope}/biases", f"{p}{fc}.bias"),
            ]
    return rules + _conv_bias(f"conv{511 + 3 * len(gates)}", "fusion.final")


def is_ignored(tf_name: str) -> bool:
    """Checkpoint entries that are not model parameters: `Global_Step` and Adam state (§1)."""
    base = tf_name.rsplit("/", 1)[-1]
    return tf_name == "Global_Step" or base in ("Adam", "Adam_1", "beta1_power", "beta2_power")


def tf_shape(rule: Rule, target_shape: Sequence[int]) -> tuple[int, ...]:
    """The TF shape that `rule` needs to produce a fusionseg tensor of `target_shape`."""
    shape = list(target_shape)
    if rule.transform == "conv":  # PyTorch [out, in, kh, kw] <- TF [kh, kw, in, out]
        shape = [shape[2], shape[3], shape[1], shape[0]]
    elif rule.transform == "linear":  # [out, in] <- [in, out]
        shape = shape[::-1]
    if rule.half is not None:
        shape[-1] *= 2
    return tuple(shape)


def _convert(rule: Rule, value: np.ndarray) -> np.ndarray:
    if rule.half is not None:
        n = value.shape[-1] // 2
        value = value[..., rule.half * n : (rule.half + 1) * n]
    if rule.transform == "conv":
        value = value.transpose(3, 2, 0, 1)
    elif rule.transform == "linear":
        value = value.T
    return value


def _check_coverage(rules: Sequence[Rule], tf_tensors: Mapping[str, object], targets: Mapping) -> None:
    """Every rule's TF name present, every TF tensor used, every target filled once (one-line errors)."""
    needed = {r.tf_name for r in rules if r.target is not None}
    missing = sorted(needed - set(tf_tensors))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"TF checkpoint lacks tensor {missing[0]!r}{more}")
    known = {r.tf_name for r in rules}
    unused = sorted(k for k in tf_tensors if k not in known and not is_ignored(k))
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise CheckpointError(f"TF checkpoint tensor {unused[0]!r} has no place in the model{more}")
    filled = [r.target for r in rules if r.target is not None]
    bad = [t for t in filled if t not in targets] or sorted({t for t in filled if filled.count(t) > 1})
    if bad:
        raise ValueError(f"TF mapping: rule target {bad[0]!r} is not a model key, or is filled twice")
    left = sorted(set(targets) - set(filled))
    if left:
        raise ValueError(f"TF mapping: model key {left[0]!r} has no rule ({len(left)} keys unfilled)")


def apply_mapping(
    rules: Sequence[Rule], tf_tensors: Mapping[str, np.ndarray], model: nn.Module
) -> dict[str, Tensor]:
    """Build a full state dict for `model` from TF tensors by `rules`.

    Args:
        rules: From `adapnetpp_mapping` (or a fused model's mapping) for this `model`.
        tf_tensors: TF name -> array (TF layout). `Global_Step` and Adam entries are ignored.
        model: The model the state dict is for (any device; only names, shapes and dtypes are read).

    Returns:
        Every key of `model.state_dict()`, as CPU tensors in the model's dtypes (fresh copies);
        `num_batches_tracked` counters are 0. Load with `model.load_state_dict(..., strict=True)`.

    Raises:
        CheckpointError: a needed TF tensor is missing, has the wrong shape, or a TF tensor is unused
            (one line naming it).
        ValueError: the rules do not cover `model` exactly (a mapping bug, not a checkpoint problem).
    """
    reference = model.state_dict()
    targets = {k: v for k, v in reference.items() if not k.endswith("num_batches_tracked")}
    _check_coverage(rules, tf_tensors, targets)
    for rule in rules:
        if rule.target is None:
            continue
        want = tf_shape(rule, targets[rule.target].shape)
        got = tuple(np.shape(tf_tensors[rule.tf_name]))
        if got != want:
            raise CheckpointError(
                f"TF tensor {rule.tf_name!r} has shape {list(got)}, {rule.target} needs {list(want)}"
            )
    state: dict[str, Tensor] = {}
    for rule in rules:
        if rule.target is not None:
            value = _convert(rule, np.asarray(tf_tensors[rule.tf_name]))
            dtype = targets[rule.target].dtype
            state[rule.target] = torch.tensor(np.ascontiguousarray(value), dtype=dtype)
    for key, ref in reference.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=ref.dtype)
    return {key: state[key] for key in reference}  # the model's key order
