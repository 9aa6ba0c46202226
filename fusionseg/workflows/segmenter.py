"""`Segmenter`: a loaded checkpoint as a function from camera images to classes (issue 16, item 4).

    seg = Segmenter.from_checkpoint("cityscapes-rgb.pt", device="cpu")
    labels = seg.predict({"rgb": cv2.imread("frame.png")})     # (H, W) uint8 class ids

Inputs map modality names to arrays exactly as `cv2.imread(path, cv2.IMREAD_UNCHANGED)` returns them:
uint8 BGR (H, W, 3) for colour modalities (rgb, jet, hha, evi, ...), uint8 (H, W) for NIR, and for raw
depth either uint16 (H, W) with the `depth_scale` given to `from_checkpoint` or float32 metres
(0 = missing). Any size works: inputs are padded bottom/right to multiples of 16 (edge replicate),
run at their own resolution, and the outputs cropped back, so results are at the input's size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from fusionseg.engine.inference import load_for_inference, logits_at_input_size
from fusionseg.engine.runtime import resolve_device
from fusionseg.errors import DataError


class Segmenter:
    """A model and its checkpoint's conventions (modalities, normalisation, classes).

    Args:
        model: Any registered model kind, in eval mode.
        payload: Its checkpoint's metadata (modalities, in_channels, normalization, class_names, palette).
        device: Where the model runs.
        depth_scale: Metres per stored unit of uint16 depth inputs (a number or a `data.io.DEPTH_UNITS`
            name such as "mm"); None refuses uint16 depth.
    """

    def __init__(
        self,
        model: nn.Module,
        payload: Mapping[str, Any],
        *,
        device: torch.device | str = "cpu",
        depth_scale: str | float | None = None,
    ) -> None:
        from fusionseg.data.io import parse_depth_scale
        from fusionseg.data.modality_specs import get_modality

        self.model = model.eval()
        self.device = torch.device(device)
        self.modalities: tuple[str, ...] = tuple(payload["modalities"])
        self.in_channels = {m: int(payload["in_channels"][m]) for m in self.modalities}
        self.kinds = {m: get_modality(m).kind for m in self.modalities}
        self.normalization = dict(payload.get("normalization") or {})
        self.class_names: list[str] = list(payload.get("class_names") or [])
        self.palette = [tuple(c) for c in payload.get("palette") or []]
        self.num_classes = int(payload["num_classes"])
        self.depth_scale_m = None if depth_scale is None else parse_depth_scale(depth_scale)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, device: str = "auto", depth_scale: str | float | None = None
    ) -> Segmenter:
        """Load a fusionseg checkpoint (trained, or converted by `import-deepscene`).

        Raises:
            CheckpointError: unreadable, corrupt or refused checkpoint.
        """
        dev = resolve_device(device)
        model, payload = load_for_inference(path, device=dev)
        return cls(model, payload, device=dev, depth_scale=depth_scale)

    def logits(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.float32]:
        """(C, H, W) float32 pre-softmax class scores at the inputs' resolution."""
        with torch.no_grad():
            return logits_at_input_size(self.model, self._tensors(inputs))[0].cpu().numpy()

    def probabilities(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.float32]:
        """(C, H, W) float32 class probabilities (softmax of `logits`)."""
        with torch.no_grad():
            logits = logits_at_input_size(self.model, self._tensors(inputs))
            return logits.softmax(dim=1)[0].cpu().numpy()

    def predict(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.uint8]:
        """(H, W) uint8 class ids (argmax of `logits`; 0 = void)."""
        with torch.no_grad():
            logits = logits_at_input_size(self.model, self._tensors(inputs))
            return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """{modality: (1, C, H, W) float32} on the model's device, normalised as in training."""
        from fusionseg.data.normalization import normalize_input

        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise DataError(
                f"inputs: no {missing[0]!r} image (the model reads {', '.join(self.modalities)}; "
                f"got {', '.join(inputs) or 'none'})"
            )
        arrays = {m: self._as_float(m, np.asarray(inputs[m])) for m in self.modalities}
        sizes = {m: a.shape[:2] for m, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"inputs: the modalities differ in size: {sizes}")
        tensors = {}
        for m, array in arrays.items():
            if m in self.normalization:
                array = normalize_input(array, *self.normalization[m])
            chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)  # (C, H, W)
            tensors[m] = torch.from_numpy(chw)[None].to(self.device)
        return tensors

    def _as_float(self, name: str, array: np.ndarray) -> NDArray[np.float32]:
        """One input as (H, W, C) float32 in the network's units: 0-255 images, metres for depth."""
        channels = self.in_channels[name]
        image = array[:, :, None] if array.ndim == 2 else array
        if image.ndim != 3 or image.shape[2] != channels or min(image.shape[:2]) < 1:
            raise DataError(
                f"inputs[{name!r}]: expected an (H, W{', 3' if channels == 3 else ''}) image, "
                f"got shape {array.shape}"
            )
        if self.kinds[name] != "depth":
            if image.dtype != np.uint8:
                raise DataError(f"inputs[{name!r}]: expected uint8 as cv2.imread returns, got {array.dtype}")
            return image.astype(np.float32)
        if image.dtype == np.uint16:
            if self.depth_scale_m is None:
                raise DataError(
                    f"inputs[{name!r}]: uint16 depth needs `depth_scale` (metres per unit, or mm, 0.1mm, ...)"
                )
            return image.astype(np.float32) * np.float32(self.depth_scale_m)
        if image.dtype != np.float32 or not np.isfinite(image).all() or (image < 0).any():
            raise DataError(
                f"inputs[{name!r}]: depth must be uint16 (with `depth_scale`) or finite float32 metres >= 0"
            )
        return image
