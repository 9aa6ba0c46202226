"""ImageNet initialisation of the AdapNet++ encoder from a local ResNet-50 state dict (adapnetpp.md §9).

The source is a post-activation (v1.5) ResNet-50 state dict in torchvision naming; timm's `resnet50`
uses the same names and shapes. Each source unit's `bn3` normalises that unit's output *sum*, so in the
pre-activation topology it becomes the next unit's pre-activation BN or the block-output BN:

| AdapNet++ encoder tensor                      | source                                          |
|-----------------------------------------------|-------------------------------------------------|
| stem.input_bn                                 | none (fresh)                                    |
| stem.conv / stem.bn                           | conv1 / bn1                                     |
| block{b}.unit{u}.conv1, bn1, conv2, bn2, conv3 | layer{b}.{u-1}.conv1, bn1, conv2, bn2, conv3    |
| ... multiscale conv2.convs.0 / .1             | layer{b}.{u-1}.conv2 output channels 1st / 2nd half |
| block{b}.unit{u}.pre_bn (u >= 2)              | layer{b}.{u-2}.bn3                              |
| block4.unit1.pre_bn                           | layer3.5.bn3                                    |
| block1/2/4.out_bn                             | layer1.2.bn3, layer2.3.bn3, layer4.2.bn3        |
| block{b}.unit1.shortcut                       | layer{b}.0.downsample.0                         |
| (unused)                                      | layer{b}.0.downsample.1.*, fc.*                 |

Files are read with `torch.load(..., weights_only=True)`: no code from the file runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fusionseg.backbones.resnet import BLOCK_UNITS, MultiscaleConv2d, MultiscaleResNet50
from fusionseg.errors import CheckpointError

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class InitReport:
    """What `load_imagenet_init` did.

    Attributes:
        path: The state-dict file.
        loaded: Names (relative to the module passed in) of every tensor that was overwritten.
        not_loaded: Parameters and buffers of that module left at their fresh initialisation
            (`num_batches_tracked` counters are never listed).
        sources_unused: Source keys that were not used (projection-shortcut BNs, fc; BN counters are
            never listed).
        loaded_elements: Total number of elements copied.
        stem: How the 3-channel stem kernel was placed: "copied", "flipped" (RGB filters on BGR
            input), "summed" (1-channel input) or "repeated" (other channel counts).
    """

    path: str
    loaded: tuple[str, ...]
    not_loaded: tuple[str, ...]
    sources_unused: tuple[str, ...]
    loaded_elements: int
    stem: str

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"ImageNet init from {self.path}: {len(self.loaded)} tensors ({self.loaded_elements:,} values) "
            f"loaded, stem {self.stem}, {len(self.not_loaded)} tensors left fresh"
        )


@dataclass(frozen=True)
class _Entry:
    target: str  # relative to the encoder
    source: str
    half: int | None = None  # 0 / 1: first / second half of the source's output channels


def _encoder_mapping(encoder: MultiscaleResNet50) -> list[_Entry]:
    """The §9 table, generated from the encoder's structure."""
    entries = [_Entry("stem.conv.weight", "conv1.weight")]
    entries += [_Entry(f"stem.bn.{t}", f"bn1.{t}") for t in _BN_TENSORS]
    prev_bn3 = ""  # bn3 of the previous source unit in network order
    for b, num_units in enumerate(BLOCK_UNITS, start=1):
        block = getattr(encoder, f"block{b}")
        for u in range(1, num_units + 1):
            unit = getattr(block, f"unit{u}")
            tgt, src = f"block{b}.unit{u}", f"layer{b}.{u - 1}"
            if unit.pre_bn is not None:  # the previous unit's bn3 normalised this unit's input sum
                entries += [_Entry(f"{tgt}.pre_bn.{t}", f"{prev_bn3}.{t}") for t in _BN_TENSORS]
            entries.append(_Entry(f"{tgt}.conv1.weight", f"{src}.conv1.weight"))
            if isinstance(unit.conv2, MultiscaleConv2d):  # split the kernel's output channels
                entries += [_Entry(f"{tgt}.conv2.convs.{i}.weight", f"{src}.conv2.weight", i) for i in (0, 1)]
            else:
                entries.append(_Entry(f"{tgt}.conv2.weight", f"{src}.conv2.weight"))
            entries.append(_Entry(f"{tgt}.conv3.weight", f"{src}.conv3.weight"))
            for i in (1, 2):
                entries += [_Entry(f"{tgt}.bn{i}.{t}", f"{src}.bn{i}.{t}") for t in _BN_TENSORS]
            if unit.shortcut is not None:
                entries.append(_Entry(f"{tgt}.shortcut.weight", f"{src}.downsample.0.weight"))
            prev_bn3 = f"{src}.bn3"
        if hasattr(block, "out_bn"):
            entries += [_Entry(f"block{b}.out_bn.{t}", f"{prev_bn3}.{t}") for t in _BN_TENSORS]
    return entries


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state dict file"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a PyTorch state-dict file ({first_line})") from None
    for wrapper in ("state_dict", "model"):  # common training-checkpoint wrappers
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{path}: not a ResNet-50 state dict (holds a {type(obj).__name__})")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _find_encoder(model: nn.Module) -> tuple[str, MultiscaleResNet50]:
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, MultiscaleResNet50)]
    if len(found) != 1:
        raise ValueError(
            f"load_imagenet_init: model must contain exactly one MultiscaleResNet50, found {len(found)}"
        )
    name, encoder = found[0]
    return (f"{name}." if name else ""), encoder


def _stem_kernel(src: Tensor, in_channels: int, flip: bool) -> tuple[Tensor, str]:
    """Adapt the (64, 3, 7, 7) RGB stem kernel to the encoder's input channels."""
    if flip:
        if in_channels != 3:
            raise ValueError(f"flip_input_channels needs a 3-channel stem, this one has {in_channels}")
        return src[:, [2, 1, 0]], "flipped"  # §9: RGB-trained filters applied to BGR input
    if in_channels == 3:
        return src, "copied"
    if in_channels == 1:
        return src.sum(dim=1, keepdim=True), "summed"  # grey input: the sum keeps the response to I=R=G=B
    reps = -(-in_channels // 3)
    return src.repeat(1, reps, 1, 1)[:, :in_channels] * (3.0 / in_channels), "repeated"


def load_imagenet_init(
    model: nn.Module, path: str | Path, *, flip_input_channels: bool = False
) -> InitReport:
    """Initialise the AdapNet++ encoder inside `model` from a torchvision/timm ResNet-50 state dict (§9).

    Args:
        model: An `AdapNetPP`, `AdapNetTrunk` or `MultiscaleResNet50` (exactly one encoder inside).
        path: Local file written by `torch.save(resnet50.state_dict(), path)` (torchvision or timm),
            optionally wrapped as {"state_dict": ...} or {"model": ...}.
        flip_input_channels: Reverse the stem kernel's input channels, so RGB-trained filters see BGR
            input in the right order (§9 optional mode; default keeps the original's BGR-into-RGB).

    Returns:
        An `InitReport`; everything outside the encoder plus the input BN keeps its He init.

    Raises:
        CheckpointError: unreadable file, not a state dict, or not a ResNet-50 (missing key / shape).
        ValueError: `model` does not hold exactly one encoder, or flipping a non-3-channel stem.
    """
    path = Path(path)
    prefix, encoder = _find_encoder(model)
    state = _read_state_dict(path)
    targets = dict(encoder.named_parameters()) | dict(encoder.named_buffers())
    entries = _encoder_mapping(encoder)

    # Validate everything before touching the model.
    missing = sorted({e.source for e in entries if e.source not in state})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{path}: not a ResNet-50 state dict (missing {missing[0]!r}{more})")
    for e in entries:
        value = state[e.source]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: {e.source!r} is a {type(value).__name__}, not a tensor")
        expected = list(targets[e.target].shape)
        if e.half is not None:
            expected[0] *= 2
        if e.target == "stem.conv.weight":
            expected[1] = 3
        if list(value.shape) != expected:
            raise CheckpointError(
                f"{path}: {e.source!r} has shape {list(value.shape)}, a ResNet-50 has {expected}"
            )

    stem_mode = ""
    with torch.no_grad():
        for e in entries:
            src = state[e.source]
            if e.half is not None:
                n = src.shape[0] // 2
                src = src[e.half * n : (e.half + 1) * n]
            if e.target == "stem.conv.weight":
                src, stem_mode = _stem_kernel(src, encoder.in_channels, flip_input_channels)
            targets[e.target].copy_(src)

    loaded = {prefix + e.target for e in entries}
    everything = [n for n, _ in model.named_parameters()] + [
        n for n, _ in model.named_buffers() if not n.endswith("num_batches_tracked")
    ]
    used = {e.source for e in entries}
    return InitReport(
        path=str(path),
        loaded=tuple(n for n in everything if n in loaded),
        not_loaded=tuple(n for n in everything if n not in loaded),
        sources_unused=tuple(k for k in state if k not in used and not k.endswith("num_batches_tracked")),
        loaded_elements=sum(targets[e.target].numel() for e in entries),
        stem=stem_mode,
    )
