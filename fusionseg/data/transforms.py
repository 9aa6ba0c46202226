"""Paired, seeded augmentation: one set of random parameters applied to every modality and the label.

Following adapnetpp.md §8 (flip, scale, crop, optional rotation; brightness and contrast on RGB only,
never on depth-derived images). The functions below are deterministic and pure: the random parameters
are drawn once per sample by `PairedTransform.sample_params` from the `np.random.Generator` the caller
passes in, and then applied with the same values to all arrays (albumentations style).

Arrays are (H, W, C) float32 for inputs and (H, W) integer class ids for labels. Labels and depth are
always resampled with nearest neighbour; areas outside the source image are filled with 0, which means
black for images, missing for depth and void for labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

LINEAR = cv2.INTER_LINEAR
# Nearest neighbour for depth and labels. For resizing we use OpenCV's INTER_NEAREST_EXACT (pixel
# centres aligned like INTER_LINEAR) rather than INTER_NEAREST, which rounds source coordinates down and
# so shifts labels by up to one source pixel against bilinearly resized images at non-integer scales.
# warpAffine has no exact variant; its INTER_NEAREST already maps pixel centres like its bilinear.
NEAREST = cv2.INTER_NEAREST_EXACT


def _check_image(image: np.ndarray, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise ValueError(f"{name}: expected a non-empty (H, W) or (H, W, C) array, got shape {shape}")


def _like(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Restore the channel axis OpenCV drops for (H, W, 1) inputs."""
    if ref.ndim == 3 and out.ndim == 2:
        return out[:, :, None]
    return out


def resize(image: np.ndarray, size_hw: tuple[int, int], *, interpolation: int) -> np.ndarray:
    """Resize to `size_hw` = (H, W) pixels; returns a new array (a copy when the size already fits).

    Args:
        image: (H, W) or (H, W, C) array.
        size_hw: Output (height, width) in pixels, both >= 1.
        interpolation: `LINEAR` for images, `NEAREST` for depth and labels.
    """
    _check_image(image, "image")
    height, width = int(size_hw[0]), int(size_hw[1])
    if height < 1 or width < 1:
        raise ValueError(f"size_hw must be positive, got {size_hw}")
    if image.shape[:2] == (height, width):
        return image.copy()
    out = cv2.resize(image, (width, height), interpolation=interpolation)
    return _like(out, image)


def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right; returns a new array."""
    _check_image(image, "image")
    return np.ascontiguousarray(image[:, ::-1])


def rotate(image: np.ndarray, angle_deg: float, *, interpolation: int, fill: float = 0) -> np.ndarray:
    """Rotate about the image centre, keeping the size; uncovered corners get `fill`.

    Args:
        image: (H, W) or (H, W, C) array.
        angle_deg: Counter-clockwise angle in degrees.
        interpolation: `LINEAR` for images, `NEAREST` for depth and labels.
        fill: Value of pixels that come from outside the source.
    """
    _check_image(image, "image")
    if angle_deg == 0:
        return image.copy()
    height, width = image.shape[:2]
    if interpolation == cv2.INTER_NEAREST_EXACT:
        interpolation = cv2.INTER_NEAREST
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(angle_deg), 1.0)
    channels = 1 if image.ndim == 2 else image.shape[2]
    out = cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(float(fill),) * min(channels, 4),
    )
    return _like(out, image)


def crop_or_pad(
    image: np.ndarray, top_px: int, left_px: int, size_hw: tuple[int, int], *, fill: float = 0
) -> np.ndarray:
    """Cut the window of `size_hw` whose top-left corner is (`top_px`, `left_px`) in `image`.

    Negative offsets or windows reaching past the image are allowed: the uncovered part is `fill`. This
    is both the random crop (image larger than the window) and the padding (image smaller).

    Returns:
        New array of shape `size_hw` (+ channels), same dtype as `image`.
    """
    _check_image(image, "image")
    height, width = int(size_hw[0]), int(size_hw[1])
    out = np.full((height, width, *image.shape[2:]), fill, dtype=image.dtype)
    src_h, src_w = image.shape[:2]
    y0, x0 = max(top_px, 0), max(left_px, 0)
    y1, x1 = min(top_px + height, src_h), min(left_px + width, src_w)
    if y1 > y0 and x1 > x0:
        out[y0 - top_px : y1 - top_px, x0 - left_px : x1 - left_px] = image[y0:y1, x0:x1]
    return out


def adjust_brightness_contrast(
    image: NDArray[np.float32], *, brightness: float, contrast: float
) -> NDArray[np.float32]:
    """Photometric change of an 8-bit-range image: `(x - mean) * contrast + mean + brightness`, clipped.

    Contrast scales about the image's mean grey level, so it leaves the average brightness unchanged;
    brightness then shifts every channel. (The original augmentation code is unreleased; this form is
    our choice, see docs/datasets.md.)

    Args:
        image: (H, W, C) float32 in 0-255.
        brightness: Grey levels added, e.g. in [-40, 40].
        contrast: Factor, e.g. in [0.5, 1.5]; 1 leaves contrast unchanged.

    Returns:
        New (H, W, C) float32 array in 0-255.
    """
    _check_image(image, "image")
    if contrast < 0:
        raise ValueError(f"contrast must be >= 0, got {contrast}")
    image = image.astype(np.float32, copy=False)
    mean = np.float32(image.mean())
    out = (image - mean) * np.float32(contrast) + (mean + np.float32(brightness))
    return np.clip(out, 0.0, 255.0, out=out)


@dataclass(frozen=True)
class AugmentParams:
    """The random draw for one sample (applied identically to every modality and the label).

    Attributes:
        scale: Factor applied to the target size before cropping.
        flip: Mirror left-right.
        rotation_deg: Counter-clockwise rotation in degrees (0 = none).
        top_px: Crop window's top row in the scaled image (negative = padding above).
        left_px: Crop window's left column in the scaled image (negative = padding left).
        brightness: Grey levels added to photometric modalities.
        contrast: Contrast factor for photometric modalities.
    """

    scale: float = 1.0
    flip: bool = False
    rotation_deg: float = 0.0
    top_px: int = 0
    left_px: int = 0
    brightness: float = 0.0
    contrast: float = 1.0


@dataclass(frozen=True, kw_only=True)
class PairedTransform:
    """Random flip, rotation, scale and crop for all modalities and the label; photometric on some.

    Modalities in `photometric` first get their brightness and contrast changed. Then every input is
    resized to `size_hw` times a random scale (so the scale is relative to the training size, as the
    original resized to 768x384 before augmenting), flipped, rotated and cropped or padded to `size_hw`.

    Attributes:
        size_hw: Output (height, width) in pixels.
        scale_range: Uniform range of the scale factor.
        flip: Mirror left-right with probability 0.5.
        max_rotation_deg: Rotation drawn uniformly in +- this (0 = never rotate).
        brightness: Brightness shift drawn uniformly in +- this many grey levels.
        contrast_range: Uniform range of the contrast factor.
        photometric: Modalities that get brightness and contrast changes (adapnetpp.md §8: RGB only).
        nearest: Modalities resampled with nearest neighbour (depth in metres); others use bilinear.
    """

    size_hw: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    max_rotation_deg: float = 0.0
    brightness: float = 40.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    photometric: frozenset[str] = field(default_factory=lambda: frozenset({"rgb"}))
    nearest: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if min(self.size_hw) < 1:
            raise ValueError(f"size_hw must be positive, got {self.size_hw}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {self.scale_range}")
        low, high = self.contrast_range
        if not 0 <= low <= high:
            raise ValueError(f"contrast_range must satisfy 0 <= min <= max, got {self.contrast_range}")
        if self.brightness < 0 or self.max_rotation_deg < 0:
            raise ValueError("brightness and max_rotation_deg must be >= 0")

    def scaled_size(self, scale: float) -> tuple[int, int]:
        """(H, W) of the resized image before cropping, for a scale factor."""
        return (max(1, round(self.size_hw[0] * scale)), max(1, round(self.size_hw[1] * scale)))

    def sample_params(self, rng: np.random.Generator) -> AugmentParams:
        """Draw one sample's parameters; the same generator state always gives the same draw."""
        scale = float(rng.uniform(*self.scale_range))
        flip = bool(rng.random() < 0.5) if self.flip else False
        angle = float(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg))
        brightness = float(rng.uniform(-self.brightness, self.brightness))
        contrast = float(rng.uniform(*self.contrast_range))
        scaled_h, scaled_w = self.scaled_size(scale)
        # window offsets: inside the image when it is larger, a random placement in the padding otherwise
        dy, dx = scaled_h - self.size_hw[0], scaled_w - self.size_hw[1]
        top = int(rng.integers(min(dy, 0), max(dy, 0), endpoint=True))
        left = int(rng.integers(min(dx, 0), max(dx, 0), endpoint=True))
        return AugmentParams(
            scale=scale,
            flip=flip,
            rotation_deg=angle if self.max_rotation_deg > 0 else 0.0,
            top_px=top,
            left_px=left,
            brightness=brightness,
            contrast=contrast,
        )

    def _geometry(self, image: np.ndarray, params: AugmentParams, interpolation: int) -> np.ndarray:
        out = resize(image, self.scaled_size(params.scale), interpolation=interpolation)
        if params.flip:
            out = hflip(out)
        if params.rotation_deg:
            out = rotate(out, params.rotation_deg, interpolation=interpolation)
        return out

    def apply(
        self, inputs: Mapping[str, np.ndarray], label: np.ndarray | None, params: AugmentParams
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Apply fixed parameters to every modality and the label.

        Args:
            inputs: Modality -> (H, W, C) float32 array; all with the label's (H, W).
            label: (H, W) integer class ids (0 = void), or None.
            params: From `sample_params`.

        Returns:
            New arrays of (size_hw) spatial size; the arguments are not modified.
        """
        out: dict[str, np.ndarray] = {}
        for name, image in inputs.items():
            interpolation = NEAREST if name in self.nearest else LINEAR
            if name in self.photometric:  # before the geometry, so that padding stays 0
                image = adjust_brightness_contrast(
                    image, brightness=params.brightness, contrast=params.contrast
                )
            image = self._geometry(image, params, interpolation)
            out[name] = crop_or_pad(image, params.top_px, params.left_px, self.size_hw, fill=0)
        new_label = None
        if label is not None:
            new_label = self._geometry(label, params, NEAREST)
            new_label = crop_or_pad(new_label, params.top_px, params.left_px, self.size_hw, fill=0)
        return out, new_label

    def __call__(
        self, inputs: Mapping[str, np.ndarray], label: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """Draw parameters from `rng` and apply them; see `apply`."""
        return self.apply(inputs, label, self.sample_params(rng))
