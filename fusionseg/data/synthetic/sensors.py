"""Range sensors: structured-light (Kinect-like) depth degradation and a spinning LiDAR's scan pattern."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.data.synthetic.camera import _pixel_directions
from fusionseg.modalities.intrinsics import Intrinsics

LIDAR_RANGE_NOISE_M = 0.01  # 1-sigma range noise of the sparse (LiDAR-like) depth
LIDAR_MAX_RANGE_M = 80.0


def simulate_kinect_depth(
    depth_m: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    max_range_m: float,
    noise_per_m: float,
    incidence_cos: NDArray[np.float32] | None = None,
    dropout_fraction: float = 0.04,
) -> NDArray[np.float32]:
    """Degrade dense depth like a structured-light sensor (Kinect v1 style).

    Noise grows with the square of distance; returns go missing at depth discontinuities, at grazing
    incidence, in random blobs and beyond the maximum range.

    Args:
        depth_m: (H, W) float32 dense depth, metres, 0 = no surface.
        rng: Source of the noise, blobs and jitter.
        max_range_m: Returns beyond this are missing.
        noise_per_m: k in sigma = k * z^2 (1/m); 0.0015 gives 1.5 mm at 1 m, 2.4 cm at 4 m.
        incidence_cos: Optional (H, W) |cos| of the angle between ray and surface normal; below 0.12
            the return is missing.
        dropout_fraction: Share of pixels removed by random blobs.

    Returns:
        (H, W) float32 metres, 0 = missing. The input is not modified.
    """
    if depth_m.ndim != 2 or depth_m.dtype != np.float32:
        raise ValueError(f"depth_m must be (H, W) float32, got {depth_m.shape} {depth_m.dtype}")
    h, w = depth_m.shape
    valid = (depth_m > 0) & (depth_m <= max_range_m)
    noisy = depth_m + (noise_per_m * depth_m**2) * rng.standard_normal((h, w), dtype=np.float32)
    # discontinuities: relative depth jump within a 3x3 neighbourhood (missing counts as far)
    far = np.where(depth_m > 0, depth_m, np.float32(1e4))
    kernel = np.ones((3, 3), np.uint8)
    jump = (cv2.dilate(far, kernel) - cv2.erode(far, kernel)) / np.maximum(cv2.erode(far, kernel), 1e-3)
    edges = cv2.dilate((jump > 0.05).astype(np.uint8), kernel) > 0
    # low-frequency blobs: smooth random field thresholded at its (1 - fraction) quantile
    field_small = rng.random((max(2, h // 24), max(2, w // 24))).astype(np.float32)
    blob_field = cv2.resize(field_small, (w, h), interpolation=cv2.INTER_CUBIC)
    blobs = blob_field > np.quantile(blob_field, 1.0 - dropout_fraction)
    keep = valid & ~edges & ~blobs
    if incidence_cos is not None:
        keep &= incidence_cos >= 0.12
    return np.where(keep, np.maximum(noisy, 0.0), 0.0).astype(np.float32)


def lidar_scan_mask(
    intrinsics: Intrinsics,
    shape: tuple[int, int],
    rotation: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    rows: int,
    density: float,
) -> NDArray[np.bool_]:
    """Pixels a spinning LiDAR at the camera centre samples: `rows` beams at fixed world elevations.

    The beam elevations are measured from the horizontal (so the scan lines tilt with roll and move
    with pitch) and spread evenly over the elevations the image sees; each beam sweeps in azimuth with
    a step chosen so that about `density` of the pixels receive a sample. Samples are snapped to the
    pixel they project into (no LiDAR-camera parallax).

    Args:
        intrinsics: Camera intrinsics.
        shape: (H, W) image size, pixels.
        rotation: (3, 3) camera-to-world rotation (`camera_rotation`).
        rng: Draws the elevation offset of the beam fan.
        rows: Number of beams; at most H // 3 are used.
        density: Target share of sampled pixels, in (0, 1).

    Returns:
        (H, W) bool, True where a beam samples.
    """
    h, w = shape
    rows = max(1, min(rows, h // 3))
    border = _pixel_directions(intrinsics, h, w)
    border = np.concatenate([border[0], border[-1], border[:, 0], border[:, -1]]) @ rotation.T  # (B, 3)
    elev = np.arcsin(border[:, 2] / np.linalg.norm(border, axis=1))
    azim = np.arctan2(border[:, 0], border[:, 1])  # about +y; the view never wraps around
    step = (elev.max() - elev.min()) / rows
    elevations = elev.min() + step * (np.arange(rows) + rng.uniform(0.2, 0.8))  # (R,)

    def project(n_azimuths: int) -> np.ndarray:
        """Flat pixel index of each beam sample inside the image."""
        e, a = np.meshgrid(elevations, np.linspace(azim.min(), azim.max(), n_azimuths), indexing="ij")
        dirs = np.stack([np.cos(e) * np.sin(a), np.cos(e) * np.cos(a), np.sin(e)], -1).reshape(-1, 3)
        cam = dirs @ rotation  # (N, 3) camera frame
        z = np.maximum(cam[:, 2], 1e-9)
        u = np.rint(intrinsics.fx * cam[:, 0] / z + intrinsics.cx)
        v = np.rint(intrinsics.fy * cam[:, 1] / z + intrinsics.cy)
        inside = (cam[:, 2] > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        return (v[inside] * w + u[inside]).astype(np.int64)

    trial = 64  # a trial sweep tells how many samples of a row land in the image
    share_inside = max(project(trial).size / (rows * trial), 1e-3)
    n_azimuths = max(2, math.ceil(density * h * w / (rows * share_inside)))
    mask = np.zeros(h * w, bool)
    mask[project(n_azimuths)] = True
    return mask.reshape(h, w)
