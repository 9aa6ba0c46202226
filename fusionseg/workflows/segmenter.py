"""`Segmenter`: a loaded checkpoint as a function from camera images to classes (issue 16, item 4).

    seg = Segmenter.from_checkpoint("cityscapes-rgb.pt", device="cpu")
    labels = seg.predict({"rgb": cv2.imread("frame.png")})     # (H, W) uint8 class ids

Inputs map modality names to arrays exactly as `cv2.imread(path, cv2.IMREAD_UNCHANGED)` returns them:
uint8 BGR (H, W, 3) for colour modalities (rgb, jet, hha, evi, ...), uint8 (H, W) for NIR, and for raw
depth either uint16 (H, W) with the `depth_scale` given to `from_checkpoint` or float32 metres
(0 = missing). Depth must fit the range of the sensor the checkpoint was trained with
(`data.io.check_depth_range`), so a wrong `depth_scale` is refused instead of silently mis-scaled.

How a frame of any size meets the network (`mode`, as `fusionseg predict --mode`):
- "pad" (the default): padded bottom/right to multiples of 16 (edge replicate), run at the input's own
  resolution, cropped back; one pass gives exactly the original graphs' outputs for converted models.
- "resize": resized to the checkpoint's training size (the paper's evaluation protocol), the class
  probabilities resized back.
- "slide": training-size windows over the input at its own resolution.
`scales` and `flip` average probabilities over several passes. Every result is at the input's size.
`fusionseg predict` (`workflows.predict.predict_files`) runs its frames through a `Segmenter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from fusionseg.data.recipe import InputRecipe
from fusionseg.engine.checkpoint import checkpoint_input_size
from fusionseg.engine.inference import (
    Mode,
    load_for_inference,
    logits_at_input_size,
    predict_probs,
    upsampled_labels,
)
from fusionseg.engine.runtime import resolve_device
from fusionseg.errors import DataError
from fusionseg.modalities.intrinsics import Intrinsics

# frames larger than this (megapixels) are not predicted at native size (pad/slide) unless asked for
NATIVE_MEGAPIXELS = 16.0


def checkpoint_label_space(payload: Mapping[str, Any]) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(class names, palette) of a checkpoint: its own keys, else its config's dataset's."""
    from fusionseg.data.catalog import get_dataset_info

    names, palette = payload.get("class_names"), payload.get("palette")
    if names is None or palette is None:
        data_cfg = (payload.get("config") or {}).get("data") or {}
        info = get_dataset_info(data_cfg.get("dataset", "synthetic"))
        names, palette = list(info.classes), list(info.palette)
    return list(names), [tuple(int(v) for v in c) for c in palette]


def checkpoint_depth_sensor(payload: Mapping[str, Any]) -> str:
    """The depth range (`data.io.DEPTH_SENSORS` key) the checkpoint was trained with."""
    from fusionseg.config import saved_config_from_dict
    from fusionseg.data.dataset import resolve_depth_sensor

    return resolve_depth_sensor(saved_config_from_dict(payload.get("config") or {}).data)


def checkpoint_recipes(payload: Mapping[str, Any]) -> dict[str, InputRecipe]:
    """modality -> how it is made from raw data: the checkpoint's `input_recipes`, and for checkpoints
    from before recipes were recorded, the raw inputs (rgb, nir, raw depth) that need no recipe.

    Raises:
        CheckpointError: a recorded recipe that is not one.
    """
    from fusionseg.data.recipe import recipes_from_prepare_meta

    recorded = payload.get("input_recipes") or {}
    recipes = recipes_from_prepare_meta({}, list(payload["modalities"]), source="raw inputs")
    for modality, data in recorded.items():
        recipes[modality] = InputRecipe.from_dict(data, source=f"input_recipes[{modality!r}]")
    return recipes


class Segmenter:
    """A model and its checkpoint's conventions (modalities, normalisation, classes, training size).

    Args:
        model: Any registered model kind, in eval mode.
        payload: Its checkpoint's metadata (modalities, in_channels, normalization, class_names, palette,
            config).
        device: Where the model runs.
        depth_scale: Metres per stored unit of uint16 depth inputs (a number or a `data.io.DEPTH_UNITS`
            name such as "mm"); None refuses uint16 depth.
        depth_sensor: Range depth inputs must fit (`data.io.DEPTH_SENSORS` key or "off"); "auto" takes
            the checkpoint's.
        mode: "pad", "resize" or "slide" (module docstring).
        scales: Inference scales; probabilities are averaged over them.
        flip: Also average the horizontally flipped prediction.
        max_native_megapixels: Largest frame (H x W / 1e6) run at native size ("pad", "slide").
    """

    def __init__(
        self,
        model: nn.Module,
        payload: Mapping[str, Any],
        *,
        device: torch.device | str = "cpu",
        depth_scale: str | float | None = None,
        depth_sensor: str = "auto",
        mode: Mode = "pad",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        max_native_megapixels: float = NATIVE_MEGAPIXELS,
    ) -> None:
        from fusionseg.data.io import parse_depth_scale
        from fusionseg.data.modality_specs import get_modality

        if mode not in ("pad", "resize", "slide"):
            raise ValueError(f"mode must be 'pad', 'resize' or 'slide', got {mode!r}")
        self.model = model.eval()
        self.device = torch.device(device)
        self.payload = dict(payload)
        self.modalities: tuple[str, ...] = tuple(payload["modalities"])
        self.in_channels = {m: int(payload["in_channels"][m]) for m in self.modalities}
        self.kinds = {m: get_modality(m).kind for m in self.modalities}
        self.depth_like = [m for m in self.modalities if self.kinds[m] == "depth"]
        self.normalization = dict(payload.get("normalization") or {})
        self.class_names, self.palette = checkpoint_label_space(payload)
        self.num_classes = int(payload["num_classes"])
        self.input_size = checkpoint_input_size(payload)
        self.depth_scale_m = None if depth_scale is None else parse_depth_scale(depth_scale)
        self.depth_sensor = checkpoint_depth_sensor(payload) if depth_sensor == "auto" else depth_sensor
        self.mode, self.scales, self.flip = mode, tuple(scales), flip
        self.max_native_megapixels = max_native_megapixels
        self.recipes = checkpoint_recipes(payload)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str = "auto", **options: Any) -> Segmenter:
        """Load a fusionseg checkpoint (trained, or converted by `import-deepscene`).

        Args:
            path: The `.pt` file.
            device: "auto", "cpu", "cuda", ...
            **options: The keyword arguments of `Segmenter` (depth_scale, mode, scales, ...).

        Raises:
            CheckpointError: unreadable, corrupt or refused checkpoint.
        """
        if options.get("depth_scale") is not None:  # a bad unit fails before the checkpoint loads
            from fusionseg.data.io import parse_depth_scale

            parse_depth_scale(options["depth_scale"])
        dev = resolve_device(device)
        model, payload = load_for_inference(path, device=dev)
        return cls(model, payload, device=dev, **options)

    @property
    def label_dtype(self) -> type[np.unsignedinteger]:
        """uint8 for up to 256 classes, else uint16."""
        return np.uint8 if self.num_classes <= 256 else np.uint16

    def logits(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.float32]:
        """(C, H, W) float32 pre-softmax class scores at the inputs' resolution, from one pass.

        "pad" runs the input's own size; "resize" runs the training size and resizes the scores back
        bilinearly. Averages over scales, flips or windows exist only for probabilities.

        Raises:
            DataError: a bad input (named). ValueError: several scales, flip, or "slide".
        """
        if self.mode == "slide" or self.flip or self.scales != (1.0,):
            raise ValueError("logits come from one pass: use probabilities() with scales, flip or slide")
        arrays = self.network_inputs(inputs)
        h, w = self._frame_size(arrays)
        with torch.no_grad():
            logits = logits_at_input_size(self.model, self._tensors(arrays))  # (1, C, h', w')
            if tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            return logits[0].cpu().numpy()

    def probabilities(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.float32]:
        """(C, H, W) float32 class probabilities (softmax, averaged over scales and flips)."""
        arrays = self.network_inputs(inputs)
        h, w = self._frame_size(arrays)
        probs = self._model_probs(arrays)  # (1, C, h', w')
        if tuple(probs.shape[-2:]) != (h, w):
            probs = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)
        return probs[0].cpu().numpy()

    def predict(self, inputs: Mapping[str, np.ndarray]) -> NDArray[np.unsignedinteger]:
        """(H, W) class ids (uint8 up to 256 classes; 0 = void): the arg-max of `probabilities`."""
        return self.label_map(self.network_inputs(inputs))

    def predict_raw(
        self,
        *,
        rgb: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        nir: np.ndarray | None = None,
        intrinsics: Intrinsics | Sequence[float] | None = None,
    ) -> NDArray[np.unsignedinteger]:
        """(H, W) class ids from raw sensor frames: the model's inputs are made on the fly with the
        checkpoint's recipe (`raw_inputs`), exactly as `prepare-depth` makes its files.

        Args:
            rgb: (H, W, 3) uint8 colour image in OpenCV's B, G, R order (as `cv2.imread` reads it).
            depth: (H, W) raw depth: uint16 in the `depth_scale` unit, or float32 metres; 0 = missing
                (holes and sparse LiDAR are completed when the recipe says so).
            nir: (H, W) uint8 near-infrared image.
            intrinsics: The depth camera's 0-based pixel intrinsics at (H, W): an `Intrinsics` or
                (fx, fy, cx, cy); needed by HHA and normals.
        """
        return self.predict(self.raw_inputs(rgb=rgb, depth=depth, nir=nir, intrinsics=intrinsics))

    def raw_inputs(
        self,
        *,
        rgb: np.ndarray | None = None,
        depth: np.ndarray | None = None,
        nir: np.ndarray | None = None,
        intrinsics: Intrinsics | Sequence[float] | None = None,
        source: str = "frame",
    ) -> dict[str, np.ndarray]:
        """The model's inputs made from raw sensor frames (arguments as `predict_raw`), as the arrays
        `cv2.imread` would read from prepare-depth's files.

        Raises:
            DataError: a raw input the recipe needs is missing, of another size or unit, or the
                checkpoint records no recipe for one of its inputs (named).
        """
        from fusionseg.data.recipe import make_model_inputs

        self.raw_needs(source=source)
        depth_m = None if depth is None else self._raw_depth_m(np.asarray(depth), f"{source}: depth")
        if intrinsics is not None and not isinstance(intrinsics, Intrinsics):
            intrinsics = Intrinsics(*(float(v) for v in intrinsics))
        recipes = {m: self.recipes[m] for m in self.modalities}
        return make_model_inputs(
            recipes, bgr=rgb, depth_m=depth_m, nir=nir, intrinsics=intrinsics, source=source
        )

    def raw_needs(self, *, source: str = "checkpoint") -> frozenset[str]:
        """The raw inputs the model's recipes read: "rgb", "depth", "nir", "intrinsics".

        Raises:
            DataError: the checkpoint records no recipe for one of its inputs.
        """
        unknown = [m for m in self.modalities if m not in self.recipes]
        if unknown:
            raise DataError(
                f"{source}: the checkpoint does not record how its {unknown[0]!r} input was made (trained "
                "on files not written by prepare-depth); prepare that input and predict from the files"
            )
        return frozenset().union(*(self.recipes[m].needs for m in self.modalities))

    def describe_inputs(self) -> list[str]:
        """One line per model input saying how it is made from raw data (the recorded recipe, else an
        imported zoo model's published recipe, else that nothing records it)."""
        zoo_recipe = (self.payload.get("zoo") or {}).get("recipe")
        lines = []
        for m in self.modalities:
            if m in self.recipes:
                lines.append(self.recipes[m].describe())
            else:
                lines.append(f"{m}: {zoo_recipe}" if zoo_recipe else f"{m}: not recorded in the checkpoint")
        return lines

    def _raw_depth_m(self, depth: np.ndarray, source: str) -> NDArray[np.float32]:
        """(H, W) float32 metres from a raw uint16 or float32 depth frame, checked against the sensor."""
        from fusionseg.data.io import check_depth_range

        where = source
        if depth.ndim != 2:
            raise DataError(f"{where}: expected an (H, W) depth image, got shape {depth.shape}")
        if depth.dtype == np.uint16:
            if self.depth_scale_m is None:
                raise DataError(f"{where}: uint16 depth needs `depth_scale` (metres per unit, or mm, ...)")
            depth_m = depth.astype(np.float32) * np.float32(self.depth_scale_m)
        elif depth.dtype == np.float32 and np.isfinite(depth).all() and not (depth < 0).any():
            depth_m = depth
        else:
            raise DataError(f"{where}: must be uint16 (with `depth_scale`) or finite float32 metres >= 0")
        check_depth_range(
            depth_m,
            source=where,
            depth_scale_m=self.depth_scale_m,
            sensor=self.depth_sensor,
            allow_empty=True,
        )
        return depth_m

    def label_map(self, arrays: Mapping[str, NDArray[np.float32]]) -> NDArray[np.unsignedinteger]:
        """(H, W) class ids for inputs already in network units (`network_inputs`, or files read by
        `workflows.predict.read_predict_input`).

        The probabilities are resized to the frame a band of rows at a time, so a frame of any size
        never holds full-size (C, H, W) maps.
        """
        size = self._frame_size(arrays)
        probs = self._model_probs(arrays)  # (1, C, h', w')
        return upsampled_labels(probs[0], size, dtype=self.label_dtype)

    def network_inputs(
        self, inputs: Mapping[str, np.ndarray], *, source: str = "inputs"
    ) -> dict[str, NDArray[np.float32]]:
        """The model's inputs as (H, W, C) float32 in network units: 0-255 images, metres for depth.

        Args:
            inputs: modality -> array as `cv2.imread(..., cv2.IMREAD_UNCHANGED)` returns it.
            source: Named in errors (a file or frame).

        Raises:
            DataError: a missing modality, a wrong shape or dtype, or depth out of the sensor's range.
        """
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise DataError(
                f"{source}: no {missing[0]!r} image (the model reads {', '.join(self.modalities)}; "
                f"got {', '.join(inputs) or 'none'})"
            )
        return {m: self._as_float(m, np.asarray(inputs[m]), source) for m in self.modalities}

    def _frame_size(self, arrays: Mapping[str, np.ndarray]) -> tuple[int, int]:
        sizes = {m: tuple(a.shape[:2]) for m, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(f"the modalities differ in size: {sizes}")
        h, w = next(iter(sizes.values()))
        if self.mode != "resize" and h * w > self.max_native_megapixels * 1e6:
            raise DataError(
                f"{h}x{w} is {h * w / 1e6:.0f} megapixels, above the {self.max_native_megapixels:g} "
                f"predicted at native size ({self.mode} keeps full-size class maps, about "
                f"{h * w * (self.num_classes + 1) * 4 / 2**30:.1f} GB); use mode 'resize' (`mode`), "
                "or raise `max_native_megapixels`"
            )
        return int(h), int(w)

    def _model_probs(self, arrays: Mapping[str, NDArray[np.float32]]) -> Tensor:
        """(1, C, h', w') probabilities; (h', w') is the training size in "resize" mode, else (H, W)."""
        with torch.no_grad():
            return predict_probs(
                self.model,
                self._tensors(arrays),
                mode="pad" if self.mode == "resize" else self.mode,
                size=self.input_size,
                scales=self.scales,
                flip=self.flip,
                nearest=self.depth_like,
            )

    def _tensors(self, arrays: Mapping[str, NDArray[np.float32]]) -> dict[str, Tensor]:
        """{modality: (1, C, H', W') float32} on the model's device, normalised as in training, at the
        training size in "resize" mode (depth nearest, images bilinear, as the training data)."""
        from fusionseg.data.normalization import normalize_input
        from fusionseg.data.transforms import LINEAR, NEAREST
        from fusionseg.data.transforms import resize as resize_array

        tensors = {}
        for m in self.modalities:
            array = arrays[m]
            if self.mode == "resize":
                interp = NEAREST if m in self.depth_like else LINEAR
                array = resize_array(array, self.input_size, interpolation=interp)
                array = array[:, :, None] if array.ndim == 2 else array
            if m in self.normalization:
                array = normalize_input(array, *self.normalization[m])
            chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)  # (C, H', W')
            tensors[m] = torch.from_numpy(chw)[None].to(self.device)
        return tensors

    def _as_float(self, name: str, array: np.ndarray, source: str) -> NDArray[np.float32]:
        """One input as (H, W, C) float32 in the network's units: 0-255 images, metres for depth."""
        channels = self.in_channels[name]
        image = array[:, :, None] if array.ndim == 2 else array
        where = f"{source}[{name!r}]"
        if image.ndim != 3 or image.shape[2] != channels or min(image.shape[:2]) < 1:
            raise DataError(
                f"{where}: expected an (H, W{', 3' if channels == 3 else ''}) image, got shape {array.shape}"
            )
        if self.kinds[name] != "depth":
            if image.dtype != np.uint8:
                raise DataError(f"{where}: expected uint8 as cv2.imread returns, got {array.dtype}")
            return image.astype(np.float32)
        return self._raw_depth_m(image[:, :, 0], where)[:, :, None]
