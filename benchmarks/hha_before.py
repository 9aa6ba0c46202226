"""The numpy HHA encoder as it was before issue 18 (fusionseg 'c1b5c3e'): the benchmark baseline.

`fusionseg benchmark preprocess` times this file's `hha_before` beside `fusionseg.modalities.hha.hha`
in the same run (case `hha[before]`), so the speed-up of the package's encoder reads the same on any
machine. Not part of the package and never imported by it except through the benchmark, which loads
it by path from the checkout. Kept verbatim (plane fits in 32-row strips with a halo, OpenCV running
box sums per moment and radius, incremental gravity re-classification); only `hha_before` is new, the
body of the old `hha`. The primitives issue 18 left unchanged (`ray_slopes`, `point_cloud`,
`box_sum`, `gravity_rotation`) are imported from the package rather than copied.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fusionseg.modalities.hha import gravity_rotation
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.normals import box_sum, check_depth, check_intrinsics, point_cloud
from fusionseg.modalities.normals import ray_slopes as _ray_slopes

STRIP_ROWS = 32
NORMAL_RADII_PX = (3, 10)
GRAVITY_STAGES = ((45.0, 5), (15.0, 5))
GRAVITY_CHUNK = 32768
GRAVITY_NEAR = 0.05
GRAVITY_DRIFT_SLACK = 1e-9
INITIAL_GRAVITY = (0.0, 1.0, 0.0)
FLOOR_SEARCH_CM = -90.0
FLOOR_FALLBACK_CM = -130.0
DISPARITY_SCALE = 31000.0
MIN_DISPARITY_DEPTH_CM = 100.0
ANGLE_SLACK_DEG = 128.0
RIGHT_ANGLE_DEG = 90.0


def hha_before(
    depth_m: NDArray[np.floating],
    intrinsics: Intrinsics,
    *,
    raw_depth_m: NDArray[np.floating] | None = None,
) -> NDArray[np.uint8]:
    """The pre-issue-18 `fusionseg.modalities.hha.hha`: (H, W) metres -> (H, W, 3) uint8 HHA."""
    depth = check_depth(depth_m, "depth_m")
    check_intrinsics(intrinsics)
    missing = None
    if raw_depth_m is not None:
        missing = check_depth(raw_depth_m, "raw_depth_m", allow_all_zero=True) == 0
    z_cm, normals, gravity, floor_cm = _geometry(depth, intrinsics, missing)
    out = np.empty(z_cm.shape + (3,), dtype=np.uint8)  # (H, W, 3)
    for rows in _strips(z_cm):
        disparity, height_cm, angle_deg = _channels(
            z_cm[rows], rows, normals[:, rows], gravity, floor_cm, intrinsics
        )
        angle_deg += ANGLE_SLACK_DEG
        angle_deg -= RIGHT_ANGLE_DEG
        for channel, values in enumerate((disparity, height_cm, angle_deg)):
            out[rows, :, channel] = round_to_uint8(values)
    return out


def _moment_planes(
    z: NDArray[np.float64],
    valid: NDArray[np.bool_],
    x_over_z: NDArray[np.float64],
    y_over_z: NDArray[np.float64],
) -> list[NDArray[np.float64]]:
    """Per-pixel terms of the inverse-depth plane fit (spec §3.3 steps 1-2), before box summing.

    With a = (X/Z, Y/Z, 1) and t = 1/Z: the entries xx, xy, x, yy, y, 1 of a.a^T and x, y, 1 of
    a.t, in the order of Gupta's `AtARaw`, `AtbRaw`; 0 at missing pixels (MATLAB's NaN -> 0).

    Args:
        z: (h, W) depth rows. valid: (h, W) bool. x_over_z: (1, W). y_over_z: (h, 1).

    Returns:
        Nine (h, W) float64 planes.
    """
    one = valid.astype(np.float64)  # 1 valid, 0 missing
    inv_z = np.divide(1.0, z, out=np.zeros_like(z), where=valid)  # t = 1/Z
    # X/Z = (u - cx)/fx up to one rounding, so the rays need no per-pixel division
    return [
        one * (x_over_z * x_over_z),
        one * (x_over_z * y_over_z),
        one * x_over_z,
        one * (y_over_z * y_over_z),
        one * y_over_z,
        one,
        inv_z * x_over_z,  # X/Z^2
        inv_z * y_over_z,  # Y/Z^2
        inv_z,  # 1/Z
    ]


def _solve_normals(
    sums: list[NDArray[np.float64]],
    points: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    out: NDArray[np.float64],
) -> None:
    """Normals from the window sums of the nine moments (spec §3.3 steps 4-5), into `out`.

    Args:
        sums: Nine (h, W) window sums (AtA entries xx, xy, x, yy, y, 1; Atb entries x, y, 1).
        points: Unmasked X, Y, Z planes, (h, W) each, to orient the normals.
        out: (3, h, W) float64 destination.
    """
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = sums
    # §3.3 step 4: n = adj(A^T A) A^T t; cofactors of the symmetric matrix as in Gupta's invertIt
    # (c12 and c23 are written a - b instead of -(b - a): the same IEEE result, one op less)
    c11 = a4 * a6
    c11 -= a5 * a5
    c12 = a3 * a5
    c12 -= a2 * a6
    c13 = a2 * a5
    c13 -= a3 * a4
    c22 = a1 * a6
    c22 -= a3 * a3
    c23 = a2 * a3
    c23 -= a1 * a5
    c33 = a1 * a4
    c33 -= a2 * a2
    nx, ny, nz = out
    np.multiply(c11, b1, out=nx)
    nx += c12 * b2
    nx += c13 * b3
    np.multiply(c12, b1, out=ny)
    ny += c22 * b2
    ny += c23 * b3
    np.multiply(c13, b1, out=nz)
    nz += c23 * b2
    nz += c33 * b3
    norm = nx * nx
    norm += ny * ny
    norm += nz * nz
    np.sqrt(norm, out=norm)
    # NaN where the window held fewer than two valid points, as in MATLAB, whose exact
    # filter2 sums make the adjugate exactly 0 there; running box sums can leave rounding residue
    # after a window leaves valid pixels, so those windows are found by their exact count a6
    norm[a6 < 2] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= norm
    # §3.3 step 5: flip by sign(n_z) (0 -> +1), then by sign(n.P) (NaN, 0 -> +1) with the
    # unmasked point P; NaN compares False, so NaN normals stay as they are (NaN)
    np.negative(out, out=out, where=nz < 0)
    x_pts, y_pts, z_pts = points
    dot = nx * x_pts
    dot += ny * y_pts
    dot += nz * z_pts
    np.negative(out, out=out, where=dot < 0)


def square_support_normals(
    depth: NDArray[np.floating],
    intrinsics: Intrinsics,
    radii_px: tuple[int, ...],
    missing_mask: NDArray[np.bool_] | None = None,
) -> list[NDArray[np.float64]]:
    """Normals by plane fits over square windows of several radii at once (spec §3.3).

    The per-pixel terms are computed once and box-summed per radius; work proceeds in strips of
    `STRIP_ROWS` rows (with a halo of the largest radius) so that temporaries stay cache-sized.
    The window sums equal MATLAB `filter2` 'same' with zero padding.

    Args:
        depth: (H, W) depth, any unit (HHA passes cm), >= 0, 0 = missing.
        intrinsics: Pinhole intrinsics, 0-based pixel centres.
        radii_px: Window radii R; windows are (2R+1)x(2R+1) pixels.
        missing_mask: (H, W) bool, True where depth is missing (the raw-depth mask of §3.1);
            pixels with depth 0 count as missing in any case (deviation: MATLAB would spread
            1/0 = inf over their windows).

    Returns:
        One (3, H, W) float64 array of unit normals (planes x, y, z) per radius, oriented away
        from the camera (n.P >= 0), NaN where the window held fewer than two valid points.
        Where the valid points of a window lie on one line (e.g. a single row of them at the edge
        of a hole) the plane is undetermined and the normal is rounding noise, as in MATLAB.
    """
    z = np.asarray(depth, dtype=np.float64)
    height, width = z.shape
    valid = z > 0
    if missing_mask is not None:
        valid &= ~missing_mask
    x_over_z, y_over_z = _ray_slopes(z.shape, intrinsics)  # (1, W), (H, 1)
    outs = [np.empty((3, height, width), dtype=np.float64) for _ in radii_px]
    halo = max(radii_px)
    for top in range(0, height, STRIP_ROWS):
        bottom = min(height, top + STRIP_ROWS)
        h0, h1 = max(0, top - halo), min(height, bottom + halo)  # rows with moments
        moments = _moment_planes(z[h0:h1], valid[h0:h1], x_over_z, y_over_z[h0:h1])
        points = point_cloud(z[top:bottom], intrinsics, first_row=top)  # unmasked, §3.2
        for radius, out in zip(radii_px, outs):
            # rows [top - R, bottom + R) suffice; zero padding only at the image border
            r0, r1 = max(h0, top - radius), min(h1, bottom + radius)
            keep = slice(top - r0, bottom - r0)
            sums = [box_sum(m[r0 - h0 : r1 - h0], radius)[keep] for m in moments]
            _solve_normals(sums, points, out[:, top:bottom])
    return outs


def round_to_uint8(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    """MATLAB `uint8()`: round half away from zero, saturate to [0, 255], NaN -> 0 (spec §3.6).

    Args:
        values: Float array of any shape (float32 stays float32 while rounding).

    Returns:
        uint8 array of the same shape.
    """
    x = np.clip(values, 0.0, 255.0)  # a copy; +-inf saturate, NaN stays NaN
    np.copyto(x, 0.0, where=np.isnan(x))
    rounded = np.floor(x)
    x -= rounded  # fractional part, exact in floating point: ties (x.5) are found exactly
    rounded += x >= 0.5
    return rounded.astype(np.uint8)


def _wall_floor_weight(similarity: NDArray[np.float64], sin_t: float, cos_t: float) -> NDArray:
    """+1 where |y.n| < sin(theta) (walls), -1 where |y.n| > cos(theta) (floors), else 0 (§3.4)."""
    weight = (similarity < sin_t).astype(np.float64)
    weight -= similarity > cos_t
    return weight


def _weighted_scatter(planes: NDArray[np.float64], weight: NDArray[np.float64]) -> NDArray[np.float64]:
    """Upper triangle of sum_k weight_k n_k n_k^T for (3, k) normals: (3, 3) float64."""
    wx, wy, wz = planes * weight  # (3, k)
    x, y, z = planes
    return np.array([[wx @ x, wx @ y, wx @ z], [0.0, wy @ y, wy @ z], [0.0, 0.0, wz @ z]])


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
    count = planes.shape[1]
    y = np.asarray(initial, dtype=np.float64)
    for threshold_deg, iterations in stages:
        cos_t = float(np.cos(np.deg2rad(threshold_deg)))
        sin_t = float(np.sin(np.deg2rad(threshold_deg)))
        y_ref = None
        a = np.zeros((3, 3))  # upper triangle of A = sum_W n n^T - sum_F n n^T (§3.4 step 3)
        for _ in range(iterations):
            drift = np.inf if y_ref is None else float(np.linalg.norm(y - y_ref)) + GRAVITY_DRIFT_SLACK
            if drift > GRAVITY_NEAR:  # full pass over all normals, chunk by chunk (cache-sized)
                y_ref = y
                a[:] = 0.0
                near_parts = []
                for start in range(0, count, GRAVITY_CHUNK):
                    chunk = planes[:, start : start + GRAVITY_CHUNK]  # (3, k)
                    similarity = np.abs(y @ chunk)  # (k,) |y.n|, §3.4 step 1
                    weight = _wall_floor_weight(similarity, sin_t, cos_t)  # step 2
                    a += _weighted_scatter(chunk, weight)
                    margin = np.minimum(np.abs(similarity - sin_t), np.abs(similarity - cos_t))
                    near = np.flatnonzero(margin <= GRAVITY_NEAR)
                    near_parts.append((chunk[:, near], weight[near], margin[near]))
                near_planes, near_weight, near_margin = (
                    np.concatenate(p, axis=-1) for p in zip(*near_parts)
                )  # (3, c), (c,), (c,): the normals that may change class before the next full pass
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
            new_y = vectors[:, 0]
            # §3.4 step 4: agree in sign with the previous estimate (sign 0 -> +1)
            y = -new_y if float(y @ new_y) < 0 else new_y
    return y


def _geometry(
    depth_m: NDArray[np.float64], intrinsics: Intrinsics, missing: NDArray[np.bool_] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float]:
    """Depth (cm), 7x7 normals (3, H, W), gravity (3,) and the floor height (cm) of §3.1-3.5."""
    # §3.1: the reference works in centimetres
    z_cm = depth_m * 100.0
    # §3.3: one set of per-pixel terms, box-summed with both radii; (3, H, W) planes each
    normals, normals_gravity = square_support_normals(z_cm, intrinsics, NORMAL_RADII_PX, missing)
    planes_gravity = normals_gravity.reshape(3, -1)  # (3, K) view
    np.copyto(planes_gravity, 0.0, where=np.isnan(planes_gravity))  # see _gravity_from_planes
    gravity = _gravity_from_planes(planes_gravity)  # §3.4, from the 21x21 normals
    # §3.5 step 3: floor rule over all pixels (missing ones included, their h is 0)
    floor_cm = min(float(_heights(z_cm[rows], rows, intrinsics, gravity).min()) for rows in _strips(z_cm))
    if floor_cm > FLOOR_SEARCH_CM:
        floor_cm = FLOOR_FALLBACK_CM
    return z_cm, normals, gravity, floor_cm


def _strips(image: NDArray) -> list[slice]:
    """Row slices of `STRIP_ROWS` rows covering `image` (temporaries per strip stay cache-sized)."""
    return [slice(top, top + STRIP_ROWS) for top in range(0, image.shape[0], STRIP_ROWS)]


def _heights(
    z_cm: NDArray[np.float64], rows: slice, intrinsics: Intrinsics, gravity: NDArray[np.float64]
) -> NDArray[np.float64]:
    """§3.5 steps 1-2: h = -(R^T p)_y = -(second column of R) . p for image rows `rows`, cm."""
    x_cm, y_cm, _ = point_cloud(z_cm, intrinsics, first_row=rows.start)  # unmasked cloud, §3.2
    r0, r1, r2 = gravity_rotation(gravity)[:, 1]
    height = r0 * x_cm
    height += r1 * y_cm
    height += r2 * z_cm
    return np.negative(height, out=height)


def _channels(
    z_cm: NDArray[np.float64],
    rows: slice,
    normals: NDArray[np.float64],
    gravity: NDArray[np.float64],
    floor_cm: float,
    intrinsics: Intrinsics,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Float disparity, height (cm) and angle (deg) of image rows `rows` (§3.5-3.6).

    Args:
        z_cm: (h, W) depth of those rows, cm. normals: (3, h, W) 7x7 normals of those rows.
    """
    height_cm = _heights(z_cm, rows, intrinsics, gravity)
    height_cm -= floor_cm
    # §3.5 step 4: angle with gravity from the 7x7 normals; NaN normals -> 180 (MATLAB max(-1, NaN))
    cosine = normals[0] * gravity[0]
    cosine += normals[1] * gravity[1]
    cosine += normals[2] * gravity[2]
    np.clip(cosine, -1.0, 1.0, out=cosine)
    np.copyto(cosine, -1.0, where=np.isnan(cosine))
    angle_deg = np.degrees(np.arccos(cosine, out=cosine), out=cosine)
    # §3.6 channel 1: disparity of the unmasked completed depth, nearest depth 100 cm
    disparity = np.maximum(z_cm, MIN_DISPARITY_DEPTH_CM)
    np.divide(DISPARITY_SCALE, disparity, out=disparity)
    return disparity, height_cm, angle_deg
