"""HHA encoding of depth (Gupta, Girshick, Arbelaez, Malik, ECCV 2014), numpy/OpenCV back-end.

Follows /work/shared/reference/modalities.md §3 step by step (section numbers are cited in the
code), i.e. Gupta's MATLAB `saveHHA` / `processDepthImage` with `computeNormalsSquareSupport`,
`getYDir` and `getRMatrix` (the fixed, non-`abs` version). Deliberate deviations, all confined to
degenerate input (see docs/hha.md):

* pixels with depth 0 are always treated as missing, even where `raw_depth_m` is non-zero (MATLAB
  would spread 1/0 = inf over their windows);
* gravity estimation keeps the previous direction when an iteration has no usable normal (MATLAB
  returns a zero or arbitrary vector there), and `sign(0)` is taken as +1.

Speed: with numba installed (extra `fast`) the plane fits, the gravity passes and the channels run as
compiled loops (`fusionseg.modalities.hha_kernels`), about 2.7x faster on one core than the numpy
path that runs otherwise; both give the MATLAB reference's 8-bit output (docs/hha.md).

Channel order: `hha` returns channels (disparity, height, angle), the order of the file written by
MATLAB's `imwrite` (R, G, B). OpenCV writes BGR, so save with `cv2.imwrite(path, hha_to_bgr(img))`;
`cv2.imread` of such a file gives back B = angle, G = height, R = disparity, the tensor order the
DeepScene networks were trained on (spec preamble).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.normals import (
    STRIP_ROWS,
    check_depth,
    check_intrinsics,
    compute_normals_square_support,
    hha_kernels,
    ray_slopes,
    round_to_uint8,
    square_support_normals,
)

__all__ = [
    "GRAVITY_STAGES",
    "HHAComponents",
    "NORMAL_RADII_PX",
    "compute_normals_square_support",
    "estimate_gravity",
    "gravity_rotation",
    "hha",
    "hha_components",
    "hha_to_bgr",
]

# §3.3 step 6: window radii of the angle normals (7x7) and of the gravity normals (21x21)
NORMAL_RADII_PX = (3, 10)
# §3.4: (angle threshold in degrees, iterations) per stage of getYDir
GRAVITY_STAGES = ((45.0, 5), (15.0, 5))
# normals per chunk of the gravity sums (keeps the temporaries within the CPU caches)
GRAVITY_CHUNK = 32768
# incremental re-classification: largest drift of y from the last full pass that is followed
# incrementally, and slack on the bound of |y.n| changes (rounding, non-unit normals)
GRAVITY_NEAR = 0.05
GRAVITY_DRIFT_SLACK = 1e-9
# §3.4: initial gravity guess, camera "down" (level camera)
INITIAL_GRAVITY = (0.0, 1.0, 0.0)
# §3.5 step 3: floor rule; if the lowest point is less than 90 cm below the camera, assume the
# camera is 130 cm above the floor
FLOOR_SEARCH_CM = -90.0
FLOOR_FALLBACK_CM = -130.0
# §3.5 step 1: rotations by at most this angle are taken as the identity
MIN_ROTATION_DEG = 0.1
# §3.6: disparity scale (31000 / z_cm), nearest depth used (cm), and the angle channel
# theta + 128 - 90, added in saveHHA's order ((theta + 128) - 90 rounds like MATLAB)
DISPARITY_SCALE = 31000.0
MIN_DISPARITY_DEPTH_CM = 100.0
ANGLE_SLACK_DEG = 128.0
RIGHT_ANGLE_DEG = 90.0
# the constants above in the order `hha_kernels.hha_channels` takes them
KERNEL_CONSTANTS = np.array(
    [
        FLOOR_SEARCH_CM,
        FLOOR_FALLBACK_CM,
        DISPARITY_SCALE,
        MIN_DISPARITY_DEPTH_CM,
        ANGLE_SLACK_DEG,
        RIGHT_ANGLE_DEG,
    ]
)


class HHAComponents(NamedTuple):
    """Float HHA channels before 8-bit rounding, and the intermediate geometry.

    Attributes:
        disparity: (H, W) float64, 31000 / max(z_cm, 100) (channel 1).
        height_cm: (H, W) float64 height above the estimated floor, cm (channel 2).
        angle_deg: (H, W) float64 angle between the 7x7 normal and `gravity`, degrees; 180 where
            the normal is undefined (MATLAB behaviour, §3.5 step 4). Channel 3 is
            angle_deg + 128 - 90.
        gravity: (3,) float64 unit gravity direction in camera coordinates (x right, y down,
            z forward), pointing DOWN (starts at (0, 1, 0) for a level camera).
        normals: (H, W, 3) float64 unit normals of the 7x7 fit (NaN where undefined).
    """

    disparity: NDArray[np.float64]
    height_cm: NDArray[np.float64]
    angle_deg: NDArray[np.float64]
    gravity: NDArray[np.float64]
    normals: NDArray[np.float64]


def estimate_gravity(
    normals: NDArray[np.floating],
    *,
    initial: tuple[float, float, float] = INITIAL_GRAVITY,
    stages: tuple[tuple[float, int], ...] = GRAVITY_STAGES,
) -> NDArray[np.float64]:
    """Gravity direction from a normal field, Gupta's `getYDir` (spec §3.4).

    Each iteration splits the normals into those nearly parallel to the current direction y
    (|y.n| > cos theta: floors, ceilings, table tops) and those nearly perpendicular
    (|y.n| < sin theta: walls) and takes as new y the eigenvector with the smallest eigenvalue of
    sum_walls n n^T - sum_floors n n^T, signed to agree with the previous y.

    Args:
        normals: (..., 3) unit normals (e.g. (H, W, 3)); rows containing NaN are ignored.
        initial: Starting direction (camera down).
        stages: (threshold_deg, iterations) per stage.

    Returns:
        (3,) float64 unit vector, gravity pointing down in camera coordinates. Where an
        iteration finds no parallel or perpendicular normal the direction is kept (deviation
        from MATLAB, which returns a zero/arbitrary vector there).

    Raises:
        ValueError: `normals` is not (..., 3).
    """
    normals = np.asarray(normals)
    if normals.ndim < 1 or normals.shape[-1] != 3:
        raise ValueError(f"normals must have shape (..., 3), got {normals.shape}")
    planes = normals.reshape(-1, 3).T.astype(np.float64)  # (3, K) copy
    planes[:, np.isnan(planes).any(axis=0)] = 0.0  # undefined normals -> 0 (they add nothing)
    return _gravity_from_planes(planes, initial=initial, stages=stages)


def _wall_floor_weight(similarity: NDArray[np.float64], sin_t: float, cos_t: float) -> NDArray:
    """+1 where |y.n| < sin(theta) (walls), -1 where |y.n| > cos(theta) (floors), else 0 (§3.4)."""
    return np.subtract(similarity < sin_t, similarity > cos_t, dtype=np.float64)


def _weighted_scatter(planes: NDArray[np.float64], weight: NDArray[np.float64]) -> NDArray[np.float64]:
    """Upper triangle of sum_k weight_k n_k n_k^T for (3, k) normals: (3, 3) float64.

    Six dot products: BLAS handles a (3, k) @ (k, 3) product with k >> 3 far more slowly."""
    wx, wy, wz = planes * weight  # (3, k)
    x, y, z = planes
    return np.array([[wx @ x, wx @ y, wx @ z], [0.0, wy @ y, wy @ z], [0.0, 0.0, wz @ z]])


def _full_pass(
    planes: NDArray[np.float64], y: NDArray[np.float64], sin_t: float, cos_t: float
) -> tuple[NDArray[np.float64], tuple[NDArray[np.float64], ...]]:
    """A = sum_W n n^T - sum_F n n^T over all (3, K) normals at direction y (§3.4 steps 1-3), chunk
    by chunk (cache-sized temporaries), and the normals within GRAVITY_NEAR of a threshold.

    Returns:
        (A (3, 3), (near planes (3, c), their weights (c,), their margins (c,))).
    """
    a = np.zeros((3, 3))
    parts = []
    for start in range(0, planes.shape[1], GRAVITY_CHUNK):
        chunk = planes[:, start : start + GRAVITY_CHUNK]  # (3, k)
        similarity = y @ chunk  # (k,) y.n, §3.4 step 1
        np.abs(similarity, out=similarity)
        weight = _wall_floor_weight(similarity, sin_t, cos_t)  # step 2
        a += _weighted_scatter(chunk, weight)
        to_floor = similarity - cos_t
        np.abs(to_floor, out=to_floor)
        margin = np.subtract(similarity, sin_t, out=similarity)
        np.abs(margin, out=margin)
        np.minimum(margin, to_floor, out=margin)
        near = np.flatnonzero(margin <= GRAVITY_NEAR)
        parts.append((chunk[:, near], weight[near], margin[near]))
    near_parts = tuple(np.concatenate(p, axis=-1) for p in zip(*parts))
    return a, near_parts


def _gravity_from_planes(
    planes: NDArray[np.float64],
    *,
    initial: tuple[float, float, float] = INITIAL_GRAVITY,
    stages: tuple[tuple[float, int], ...] = GRAVITY_STAGES,
) -> NDArray[np.float64]:
    """`estimate_gravity` on (3, K) normal planes (x, y, z rows), zero columns for undefined normals.

    A zero normal has y.n = 0, so it is counted as a wall, but adds 0 n n^T = 0 to the sum: the
    same as MATLAB dropping undefined normals, without copying the defined ones out.

    Same result as re-classifying every normal in every iteration, but cheaper: after a full pass
    at direction y_ref, a unit normal's |y.n| moves by at most |y - y_ref|, so while y stays
    within GRAVITY_NEAR of y_ref only the normals that close to a threshold (kept aside by the
    full pass) can change class; the sum is updated with those that do.
    """
    y = np.asarray(initial, dtype=np.float64)
    for threshold_deg, iterations in stages:
        cos_t = float(np.cos(np.deg2rad(threshold_deg)))
        sin_t = float(np.sin(np.deg2rad(threshold_deg)))
        y_ref = None
        a = np.zeros((3, 3))  # upper triangle of A = sum_W n n^T - sum_F n n^T (§3.4 step 3)
        for _ in range(iterations):
            drift = np.inf if y_ref is None else float(np.linalg.norm(y - y_ref)) + GRAVITY_DRIFT_SLACK
            if hha_kernels is not None:  # compiled: one loop instead of ~15 array passes
                if drift > GRAVITY_NEAR:
                    y_ref = y
                    a, near, near_weight, near_margin = hha_kernels.gravity_full_pass(
                        planes, y, sin_t, cos_t, GRAVITY_NEAR
                    )
                else:
                    hha_kernels.gravity_update(
                        planes, near, near_weight, near_margin, y, drift, sin_t, cos_t, a
                    )
            elif drift > GRAVITY_NEAR:  # full pass over all normals
                y_ref = y
                a, (near_planes, near_weight, near_margin) = _full_pass(planes, y, sin_t, cos_t)
            else:
                candidates = np.flatnonzero(near_margin <= drift)
                subset = near_planes[:, candidates]  # (3, c')
                new_weight = _wall_floor_weight(np.abs(y @ subset), sin_t, cos_t)
                change = new_weight - near_weight[candidates]
                moved = np.flatnonzero(change)
                if moved.size:
                    a += _weighted_scatter(subset[:, moved], change[moved])
                    near_weight[candidates[moved]] = new_weight[moved]
            if not a.any():
                continue  # deviation: no parallel or perpendicular normal, keep y
            _, vectors = np.linalg.eigh(a, UPLO="U")  # ascending eigenvalues, as MATLAB's eig
            new_y = np.ascontiguousarray(vectors[:, 0])
            # §3.4 step 4: agree in sign with the previous estimate (sign 0 -> +1)
            y = -new_y if float(y @ new_y) < 0 else new_y
    return y


def gravity_rotation(gravity: NDArray[np.floating]) -> NDArray[np.float64]:
    """Rotation taking (0, 1, 0) to `gravity`, Gupta's `getRMatrix` (spec §3.5 step 1).

    Args:
        gravity: (3,) direction (normalised here).

    Returns:
        (3, 3) float64 rotation R with R @ (0, 1, 0) = gravity; the identity if the angle between
        them is at most 0.1 degrees.
    """
    y0 = np.array(INITIAL_GRAVITY)
    yf = np.asarray(gravity, dtype=np.float64)
    yf = yf / np.linalg.norm(yf)
    phi_deg = np.degrees(np.arccos(np.clip(y0 @ yf, -1.0, 1.0)))  # fixed version: no abs()
    if abs(phi_deg) <= MIN_ROTATION_DEG:
        return np.eye(3)
    axis = np.cross(y0, yf)
    axis /= np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    phi = np.deg2rad(phi_deg)
    return np.eye(3) + np.sin(phi) * k + (1.0 - np.cos(phi)) * (k @ k)


def _check_inputs(
    depth_m: object, intrinsics: object, raw_depth_m: object
) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    depth = check_depth(depth_m, "depth_m")
    check_intrinsics(intrinsics)
    if raw_depth_m is None:
        return depth, None
    raw = check_depth(raw_depth_m, "raw_depth_m", allow_all_zero=True)
    if raw.shape != depth.shape:
        raise ValueError(f"raw_depth_m must have the shape of depth_m {depth.shape}, got {raw.shape}")
    return depth, raw == 0


def _geometry(
    depth_m: NDArray[np.float64], intrinsics: Intrinsics, missing: NDArray[np.bool_] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Depth (cm), 7x7 normals (3, H, W) and gravity (3,) of §3.1-3.4."""
    # §3.1: the reference works in centimetres
    z_cm = depth_m * 100.0
    # §3.3: one set of per-pixel terms, box-summed with both radii; (3, H, W) planes each. The
    # gravity normals are left unoriented (0 where undefined): §3.4 uses only |y.n| and n n^T
    normals, normals_gravity = square_support_normals(
        z_cm, intrinsics, NORMAL_RADII_PX, missing, oriented=(True, False)
    )
    gravity = _gravity_from_planes(normals_gravity.reshape(3, -1))  # §3.4, from the 21x21 normals
    return z_cm, normals, gravity


def _heights_above_floor(
    z_cm: NDArray[np.float64], intrinsics: Intrinsics, gravity: NDArray[np.float64]
) -> NDArray[np.float64]:
    """§3.5 steps 1-3: heights (H, W) in cm above the floor: the lowest point, or 130 cm below the
    camera when the lowest point is less than 90 cm below it (all pixels, missing ones included)."""
    column, row = _height_coefficients(z_cm.shape, intrinsics, gravity)
    height_cm = z_cm * (column[None, :] - row[:, None])  # (H, W)
    floor_cm = float(height_cm.min())
    if floor_cm > FLOOR_SEARCH_CM:
        floor_cm = FLOOR_FALLBACK_CM
    height_cm -= floor_cm
    return height_cm


def _strips(image: NDArray) -> list[slice]:
    """Row slices of `STRIP_ROWS` rows covering `image` (temporaries per strip stay cache-sized)."""
    return [slice(top, top + STRIP_ROWS) for top in range(0, image.shape[0], STRIP_ROWS)]


def _height_coefficients(
    shape: tuple[int, int], intrinsics: Intrinsics, gravity: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """§3.5 steps 1-2: h = -(R^T p)_y = -(second column of R) . p = z (column[u] - row[v]), cm.

    With p = z (x/z, y/z, 1) (§3.2, unmasked): column = -(r0 x/z) (W,) and row = r1 y/z + r2 (H,),
    so a height costs one product per pixel instead of a point cloud.
    """
    x_over_z, y_over_z = ray_slopes(shape, intrinsics)  # (1, W), (H, 1)
    r0, r1, r2 = gravity_rotation(gravity)[:, 1]
    return np.negative(r0 * x_over_z.ravel()), r1 * y_over_z.ravel() + r2


def _channels(
    z_cm: NDArray[np.float64],
    normals: NDArray[np.float64],
    gravity: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Float disparity and angle (deg) of some image rows (§3.5 step 4, §3.6).

    Args:
        z_cm: (h, W) depth of those rows, cm. normals: (3, h, W) 7x7 normals of those rows.
    """
    # §3.5 step 4: angle with gravity from the 7x7 normals; NaN normals -> 180 (MATLAB max(-1, NaN),
    # which np.fmax reproduces: it returns the number where one argument is NaN)
    cosine = normals[0] * gravity[0]
    cosine += normals[1] * gravity[1]
    cosine += normals[2] * gravity[2]
    np.fmax(cosine, -1.0, out=cosine)
    np.fmin(cosine, 1.0, out=cosine)
    angle_deg = np.degrees(np.arccos(cosine, out=cosine), out=cosine)
    # §3.6 channel 1: disparity of the unmasked completed depth, nearest depth 100 cm
    disparity = np.maximum(z_cm, MIN_DISPARITY_DEPTH_CM)
    np.divide(DISPARITY_SCALE, disparity, out=disparity)
    return disparity, angle_deg


def hha_components(
    depth_m: NDArray[np.floating],
    intrinsics: Intrinsics,
    *,
    raw_depth_m: NDArray[np.floating] | None = None,
) -> HHAComponents:
    """HHA channels as floats (before 8-bit rounding) with the estimated gravity and normals.

    Args:
        depth_m: (H, W) completed depth in metres, finite, >= 0, 0 = missing, not all zero.
        intrinsics: Pinhole intrinsics of the depth image, 0-based pixel centres (convert
            MATLAB values with `Intrinsics.from_one_based`).
        raw_depth_m: (H, W) raw depth in metres; only its zeros are used, as the missing mask
            (§3.1). Default: the mask of `depth_m` itself (RD = D).

    Returns:
        HHAComponents(disparity, height_cm, angle_deg, gravity, normals).

    Raises:
        ValueError: bad shape, dtype or values of an argument (the message names it).
    """
    depth, missing = _check_inputs(depth_m, intrinsics, raw_depth_m)
    z_cm, normals, gravity = _geometry(depth, intrinsics, missing)
    height_cm = _heights_above_floor(z_cm, intrinsics, gravity)
    disparity, angle_deg = _channels(z_cm, normals, gravity)
    normals_hw3 = np.ascontiguousarray(normals.transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)
    return HHAComponents(disparity, height_cm, angle_deg, gravity=gravity, normals=normals_hw3)


def hha(
    depth_m: NDArray[np.floating],
    intrinsics: Intrinsics,
    *,
    raw_depth_m: NDArray[np.floating] | None = None,
) -> NDArray[np.uint8]:
    """Encode depth as HHA: horizontal disparity, height above ground, angle with gravity.

    Args:
        depth_m: (H, W) completed depth in metres, finite, >= 0, 0 = missing, not all zero.
        intrinsics: Pinhole intrinsics of the depth image, 0-based pixel centres.
        raw_depth_m: (H, W) raw depth in metres whose zeros mark missing pixels (spec §3.1);
            default: the zeros of `depth_m` (RD = D, as in the NYU MATLAB reference).

    Returns:
        (H, W, 3) uint8 with channels (disparity, height, angle) - the R, G, B order of the MATLAB
        file, not OpenCV's BGR: write it with `cv2.imwrite(path, hha_to_bgr(image))`.
        Disparity 31000 / max(z_cm, 100) (255 nearer than ~1.22 m), height in cm (saturating at
        255), angle with gravity + 38 degrees (floor ~38, wall ~128, ceiling ~218; 218 where
        the normal is undefined).

    Raises:
        ValueError: bad shape, dtype or values of an argument (the message names it).
    """
    depth, missing = _check_inputs(depth_m, intrinsics, raw_depth_m)
    z_cm, normals, gravity = _geometry(depth, intrinsics, missing)
    out = np.empty(z_cm.shape + (3,), dtype=np.uint8)  # (H, W, 3)
    if hha_kernels is not None:  # the same steps in one compiled pass
        column, row = _height_coefficients(z_cm.shape, intrinsics, gravity)
        hha_kernels.hha_channels(z_cm, normals, gravity, column, row, KERNEL_CONSTANTS, out)
        return out
    height_cm = _heights_above_floor(z_cm, intrinsics, gravity)
    for rows in _strips(z_cm):  # strip by strip: no full-size float temporaries
        disparity, angle_deg = _channels(z_cm[rows], normals[:, rows], gravity)
        angle_deg += ANGLE_SLACK_DEG
        angle_deg -= RIGHT_ANGLE_DEG
        # §3.6: MATLAB uint8() rounding: half away from zero, saturate (no NaN left here)
        for channel, values in ((0, disparity), (1, height_cm[rows]), (2, angle_deg)):
            round_to_uint8(values, out=out[rows, :, channel])
    return out


def hha_to_bgr(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Reverse the channel order of an HHA image (disparity, height, angle) for OpenCV.

    Args:
        image: (H, W, 3) HHA image as returned by `hha`.

    Returns:
        (H, W, 3) contiguous copy with channels (angle, height, disparity), ready for
        `cv2.imwrite`; applying it twice gives the original order back.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"image must be a (H, W, 3) numpy array, got {shape}")
    return np.ascontiguousarray(image[..., ::-1])
