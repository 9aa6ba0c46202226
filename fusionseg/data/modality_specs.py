"""The modality registry: how each modality is stored and fed (channels, kind, resampling). No torch.

Asking how many channels `hha` has, or whether `depth_raw` is depth, must not import torch (the CLI,
the preparation jobs and config checks ask it); the torch dataset (`data.dataset`) reads files by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fusionseg.data.transforms import LINEAR, NEAREST
from fusionseg.errors import ConfigError


@dataclass(frozen=True)
class ModalitySpec:
    """How one modality is stored and fed.

    Attributes:
        name: Modality key (list column name).
        channels: Channels of the network input.
        kind: "colour": 8-bit colour file read in OpenCV's B, G, R order, float 0-255; "gray": 8-bit
            single-channel file, float 0-255; "depth": 16-bit depth file, float metres (0 = missing).
    """

    name: str
    channels: int
    kind: Literal["colour", "gray", "depth"]

    @property
    def interpolation(self) -> int:
        """OpenCV interpolation for resizing: nearest for depth (no mixed surfaces), bilinear otherwise."""
        return NEAREST if self.kind == "depth" else LINEAR


MODALITIES: dict[str, ModalitySpec] = {
    spec.name: spec
    for spec in (
        ModalitySpec("rgb", 3, "colour"),
        ModalitySpec("jet", 3, "colour"),
        ModalitySpec("hha", 3, "colour"),
        ModalitySpec("evi", 3, "colour"),
        ModalitySpec("ndvi", 3, "colour"),
        ModalitySpec("nrg", 3, "colour"),
        ModalitySpec("normals", 3, "colour"),
        ModalitySpec("depth", 1, "depth"),
        ModalitySpec("depth_raw", 1, "depth"),
        ModalitySpec("depth_sparse", 1, "depth"),
        ModalitySpec("depth_filled", 1, "depth"),
        ModalitySpec("nir", 1, "gray"),
    )
}


def get_modality(name: str) -> ModalitySpec:
    """The spec of a modality name.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return MODALITIES[name]
    except KeyError:
        raise ConfigError(f"unknown modality {name!r} (known: {', '.join(MODALITIES)})") from None


def modality_channels(name: str) -> int:
    """Number of input channels of a modality (3 for 8-bit colour images, 1 for depth and NIR)."""
    return get_modality(name).channels
