"""The pinhole camera of the synthetic scenes: intrinsics, pose (pitch, roll, yaw) and ray directions."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from fusionseg.modalities.intrinsics import Intrinsics

GRAVITY_WORLD = np.array([0.0, 0.0, -1.0])


def default_intrinsics(height_px: int, width_px: int, *, hfov_deg: float) -> Intrinsics:
    """Square-pixel pinhole intrinsics with the principal point at the image centre (0-based).

    Args:
        height_px: Image height, pixels.
        width_px: Image width, pixels.
        hfov_deg: Horizontal field of view, degrees.
    """
    fx = (width_px / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(fx, fx, (width_px - 1) / 2.0, (height_px - 1) / 2.0)


def camera_rotation(pitch_deg: float, roll_deg: float, yaw_deg: float = 0.0) -> NDArray[np.float64]:
    """Camera-to-world rotation; its columns are the camera's x (right), y (down), z (forward) axes.

    Args:
        pitch_deg: Rotation about the camera x axis; positive looks down.
        roll_deg: Rotation about the optical axis; positive turns the camera's right side down.
        yaw_deg: Heading about the world z (up) axis; positive turns left (counter-clockwise from above).

    Returns:
        (3, 3) float64 rotation R with x_world = R @ x_cam.
    """
    p, r, y = (math.radians(a) for a in (pitch_deg, roll_deg, yaw_deg))
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # cam x, y, z -> E, down, N
    yaw = np.array([[math.cos(y), -math.sin(y), 0.0], [math.sin(y), math.cos(y), 0.0], [0.0, 0.0, 1.0]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), math.sin(p)], [0.0, -math.sin(p), math.cos(p)]])
    roll = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return yaw @ level @ pitch @ roll


def gravity_in_camera(rotation: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit gravity direction (pointing down) in camera coordinates for a camera-to-world rotation."""
    g = rotation.T @ GRAVITY_WORLD
    return g / np.linalg.norm(g)


def _pixel_directions(intrinsics: Intrinsics, height_px: int, width_px: int) -> NDArray[np.float32]:
    """(H, W, 3) camera-frame ray directions ((u-cx)/fx, (v-cy)/fy, 1): the hit distance is z-depth."""
    v, u = np.mgrid[0:height_px, 0:width_px].astype(np.float32)
    ones = np.ones_like(u)
    return np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, ones], -1)
