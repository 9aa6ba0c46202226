"""Compiled (numba) kernels of the plane fit and the gravity estimate: the fast path of HHA and normals.

Optional: importing this module raises ImportError without numba (`pip install fusionseg[fast]`),
and `fusionseg.modalities.normals` / `.hha` then use their numpy/OpenCV code, which computes the
same thing in many array passes. Here each step is one loop over the pixels with everything in
registers (issue 18: profiling showed the numpy version spending its time in ~150 full-image passes,
not in arithmetic). Same operations in the same order as the numpy path and Gupta's MATLAB code
(reference spec /work/shared/reference/modalities.md §3.3-3.4); only the order of the window sums
differs (running sums, as OpenCV's box filter), i.e. float rounding, never the 8-bit HHA.

Compiled on first use and cached next to this file (`cache=True`); a process that cannot write
there compiles in memory (about 2 s).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["gravity_full_pass", "gravity_update", "hha_channels", "plane_fit", "plane_fit_normals"]

MOMENTS = 9  # xx, xy, x, yy, y, 1 of a.a^T and x, y, 1 of a.t (Gupta's AtARaw, AtbRaw)
HALF_DOWN = float(np.nextafter(0.5, 0.0))  # the float64 just below 0.5 (see normals.round_to_uint8)


@njit(cache=True, error_model="numpy")
def _row_moments(z_row, valid_row, x_over_z, yz, out, pad):  # pragma: no cover - compiled
    """The nine per-pixel terms of one image row into out[k, pad : pad + W] of a (9, W + 2 pad)
    zero-padded buffer; 0 at missing pixels (§3.3). One vectorisable loop per term."""
    width = z_row.shape[0]
    one, inv_z = out[5, pad : pad + width], out[8, pad : pad + width]
    for c in range(width):
        v = 1.0 if valid_row[c] else 0.0
        one[c] = v
        inv_z[c] = v / (z_row[c] if valid_row[c] else 1.0)  # t = 1/Z, 0 where missing
    for c in range(width):
        xz = x_over_z[c]
        out[0, pad + c] = one[c] * (xz * xz)
        out[1, pad + c] = one[c] * (xz * yz)
        out[2, pad + c] = one[c] * xz
        out[3, pad + c] = one[c] * (yz * yz)
        out[4, pad + c] = one[c] * yz
        out[6, pad + c] = inv_z[c] * xz
        out[7, pad + c] = inv_z[c] * yz


@njit(cache=True, error_model="numpy")
def _row_window_sums(padded, radius, width, out):  # pragma: no cover - compiled
    """Sums over columns c-R..c+R of each zero-padded (9, W + 2R) row into out (9, W).

    Running sums, as OpenCV's box filter: add the column entering the window, subtract the one
    leaving it. The nine sums live in registers and advance together, so no addition waits on the
    previous one of the same sum."""
    m0, m1, m2, m3, m4, m5, m6, m7, m8 = (
        padded[0],
        padded[1],
        padded[2],
        padded[3],
        padded[4],
        padded[5],
        padded[6],
        padded[7],
        padded[8],
    )
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = 0.0
    for c in range(2 * radius):  # the first window without its last column
        s0 += m0[c]
        s1 += m1[c]
        s2 += m2[c]
        s3 += m3[c]
        s4 += m4[c]
        s5 += m5[c]
        s6 += m6[c]
        s7 += m7[c]
        s8 += m8[c]
    size = 2 * radius
    for c in range(width):
        e = c + size  # entering column (padded coordinates)
        s0 += m0[e]
        s1 += m1[e]
        s2 += m2[e]
        s3 += m3[e]
        s4 += m4[e]
        s5 += m5[e]
        s6 += m6[e]
        s7 += m7[e]
        s8 += m8[e]
        out[0, c] = s0
        out[1, c] = s1
        out[2, c] = s2
        out[3, c] = s3
        out[4, c] = s4
        out[5, c] = s5
        out[6, c] = s6
        out[7, c] = s7
        out[8, c] = s8
        s0 -= m0[c]  # leaving column
        s1 -= m1[c]
        s2 -= m2[c]
        s3 -= m3[c]
        s4 -= m4[c]
        s5 -= m5[c]
        s6 -= m6[c]
        s7 -= m7[c]
        s8 -= m8[c]


@njit(cache=True, error_model="numpy")
def _solve_row(sums, z_row, px, py_row, fx, fy, oriented, out_x, out_y, out_z):  # pragma: no cover
    """Unit normals of one row from its (9, W) window sums (§3.3 steps 4-5), as
    `normals._plane_normals`, `_normalise` and `_orient` do it: cofactors as in Gupta's invertIt,
    n = adj(A^T A) A^T t, undefined (NaN, or 0 when not `oriented`) where the window held fewer than
    two valid points. Branch-free (selects), so that the loop vectorises."""
    undefined = np.nan if oriented else 0.0
    s1, s2, s3, s4, s5, s6, s7, s8, s9 = (
        sums[0],
        sums[1],
        sums[2],
        sums[3],
        sums[4],
        sums[5],
        sums[6],
        sums[7],
        sums[8],
    )
    for c in range(z_row.shape[0]):
        a1, a2, a3, a4, a5, a6, b1, b2, b3 = s1[c], s2[c], s3[c], s4[c], s5[c], s6[c], s7[c], s8[c], s9[c]
        c11 = a4 * a6 - a5 * a5
        c12 = a3 * a5 - a2 * a6
        c13 = a2 * a5 - a3 * a4
        c22 = a1 * a6 - a3 * a3
        c23 = a2 * a3 - a1 * a5
        c33 = a1 * a4 - a2 * a2
        nx = c11 * b1 + c12 * b2 + c13 * b3
        ny = c12 * b1 + c22 * b2 + c23 * b3
        nz = c13 * b1 + c23 * b2 + c33 * b3
        norm = math.sqrt(nx * nx + ny * ny + nz * nz)
        if not oriented:
            norm = math.inf if norm == 0.0 else norm  # collinear points: 0, not 0/0
        nx, ny, nz = nx / norm, ny / norm, nz / norm  # 0/0 = NaN for collinear points, as MATLAB
        if oriented:
            sign = -1.0 if nz < 0 else 1.0
            nx, ny, nz = sign * nx, sign * ny, sign * nz
            z = z_row[c]
            sign = -1.0 if nx * (px[c] * z / fx) + ny * (py_row * z / fy) + nz * z < 0 else 1.0  # n.P
            nx, ny, nz = sign * nx, sign * ny, sign * nz
        few = a6 < 2
        out_x[c] = undefined if few else nx
        out_y[c] = undefined if few else ny
        out_z[c] = undefined if few else nz


@njit(cache=True, error_model="numpy")
def plane_fit_normals(
    z, valid, x_over_z, y_over_z, px, py, fx, fy, radius, oriented, out
):  # pragma: no cover
    """Normals of (2R+1)^2 plane fits of every pixel, streaming the image row by row.

    Args:
        z: (H, W) float64 depth. valid: (H, W) bool. x_over_z, px: (W,) ray slope and u - cx;
        y_over_z, py: (H,) ray slope and v - cy. fx, fy: focal lengths. radius: R.
        oriented: orient (n.P >= 0, NaN where undefined) or leave the sign (0 where undefined).
        out: (3, H, W) float64 destination.
    """
    height, width = z.shape
    rows = 2 * radius + 1
    ring = np.zeros((rows, MOMENTS, width))  # row window sums of the rows in the vertical window
    column = np.zeros((MOMENTS, width))  # running vertical sum of those
    padded = np.zeros((MOMENTS, width + 2 * radius))
    for r_in in range(height + radius):
        if r_in < height:  # row r_in enters the window
            slot = ring[r_in % rows]
            _row_moments(z[r_in], valid[r_in], x_over_z, y_over_z[r_in], padded, radius)
            _row_window_sums(padded, radius, width, slot)
            for k in range(MOMENTS):
                ck, sk = column[k], slot[k]
                for c in range(width):
                    ck[c] += sk[c]
        r_out = r_in - radius
        if r_out >= 0:
            _solve_row(
                column, z[r_out], px, py[r_out], fx, fy, oriented, out[0, r_out], out[1, r_out], out[2, r_out]
            )
            r_old = r_out - radius
            if r_old >= 0:  # row r_old leaves the window
                old = ring[r_old % rows]
                for k in range(MOMENTS):
                    ck, ok = column[k], old[k]
                    for c in range(width):
                        ck[c] -= ok[c]


@njit(cache=True, error_model="numpy")
def gravity_full_pass(planes, y, sin_t, cos_t, near_limit):  # pragma: no cover - compiled
    """One full re-classification of (3, K) unit normals at direction y (§3.4 steps 1-3).

    Returns:
        (A, near, weight, margin): the upper triangle of sum_walls n n^T - sum_floors n n^T (3, 3);
        the indices of the normals within `near_limit` of a threshold, their current weight (+1
        wall, -1 floor, 0 neither) and their distance to the nearer threshold.
    """
    count = planes.shape[1]
    xx = xy = xz = yy = yz = zz = 0.0
    near = np.empty(count, dtype=np.int64)
    weight = np.empty(count)
    margin = np.empty(count)
    found = 0
    for k in range(count):
        x, v, z = planes[0, k], planes[1, k], planes[2, k]
        s = abs(y[0] * x + y[1] * v + y[2] * z)
        w = (1.0 if s < sin_t else 0.0) - (1.0 if s > cos_t else 0.0)
        wx, wy, wz = w * x, w * v, w * z  # no branch on w: the classes alternate unpredictably
        xx += wx * x
        xy += wx * v
        xz += wx * z
        yy += wy * v
        yz += wy * z
        zz += wz * z
        m = min(abs(s - sin_t), abs(s - cos_t))
        near[found] = k  # branch-free compaction: written always, kept when near
        weight[found] = w
        margin[found] = m
        found += 1 if m <= near_limit else 0
    a = np.array([[xx, xy, xz], [0.0, yy, yz], [0.0, 0.0, zz]])
    return a, near[:found], weight[:found].copy(), margin[:found].copy()


@njit(cache=True, error_model="numpy")
def gravity_update(planes, near, weight, margin, y, drift, sin_t, cos_t, a):  # pragma: no cover
    """Re-classify, at direction y, the near normals whose margin is within `drift` (§3.4), updating
    their `weight` and the upper triangle of `a` (3, 3) in place: the incremental step of
    `hha._gravity_from_planes`."""
    for i in range(near.shape[0]):
        if margin[i] > drift:
            continue
        k = near[i]
        x, v, z = planes[0, k], planes[1, k], planes[2, k]
        s = abs(y[0] * x + y[1] * v + y[2] * z)
        w = (1.0 if s < sin_t else 0.0) - (1.0 if s > cos_t else 0.0)
        change = w - weight[i]
        if change != 0.0:
            weight[i] = w
            wx, wy, wz = change * x, change * v, change * z
            a[0, 0] += wx * x
            a[0, 1] += wx * v
            a[0, 2] += wx * z
            a[1, 1] += wy * v
            a[1, 2] += wy * z
            a[2, 2] += wz * z


@njit(cache=True, error_model="numpy")
def _round_uint8(x):  # pragma: no cover - compiled
    """`normals.round_to_uint8` of one float64: trunc(clip(x + pred(0.5), 0, 255)), NaN -> 0."""
    y = x + HALF_DOWN
    y = y if y > 0.0 else 0.0  # NaN -> 0
    return np.uint8(y if y < 255.0 else 255.0)


@njit(cache=True, error_model="numpy")
def hha_channels(z_cm, normals, gravity, column_coef, row_coef, constants, out):  # pragma: no cover
    """The 8-bit HHA image from depth, the 7x7 normals and gravity (§3.5-3.6), two loops.

    As `hha._heights`, `_channels` and `round_to_uint8`, operation for operation: h = z (col + row)
    with the (W,) and (H,) coefficients of the rotation; the floor is the lowest h, or
    `constants[1]` when that is above `constants[0]` (the floor rule); angle = acos(clip(n.g))
    + 128 - 90 with NaN normals at 180 degrees; disparity 31000 / max(z, 100).

    Args:
        z_cm: (H, W) depth, cm. normals: (3, H, W) oriented unit normals. gravity: (3,).
        column_coef: (W,) -(r0 x/z). row_coef: (H,) (r1 y/z + r2). constants: (floor search cm,
            floor fallback cm, disparity scale, nearest depth cm, angle slack deg, right angle deg).
        out: (H, W, 3) uint8 destination, channels (disparity, height, angle).

    Returns:
        The floor height used, cm.
    """
    height, width = z_cm.shape
    floor = math.inf
    for r in range(height):
        for c in range(width):
            h = z_cm[r, c] * (column_coef[c] - row_coef[r])
            floor = h if h < floor else floor
    if floor > constants[0]:
        floor = constants[1]
    g0, g1, g2 = gravity[0], gravity[1], gravity[2]
    to_deg = 180.0 / math.pi
    for r in range(height):
        for c in range(width):
            z = z_cm[r, c]
            out[r, c, 0] = _round_uint8(constants[2] / (z if z > constants[3] else constants[3]))
            out[r, c, 1] = _round_uint8(z * (column_coef[c] - row_coef[r]) - floor)
            cosine = normals[0, r, c] * g0
            cosine += normals[1, r, c] * g1
            cosine += normals[2, r, c] * g2
            cosine = cosine if cosine >= -1.0 else -1.0  # NaN -> -1: MATLAB's max(-1, NaN)
            cosine = cosine if cosine <= 1.0 else 1.0
            angle = math.acos(cosine) * to_deg
            angle += constants[4]
            angle -= constants[5]
            out[r, c, 2] = _round_uint8(angle)
    return floor


def plane_fit(
    z: NDArray[np.float64],
    valid: NDArray[np.bool_],
    rays: tuple[NDArray[np.float64], ...],
    focal: tuple[float, float],
    radius: int,
    oriented: bool,
) -> NDArray[np.float64]:
    """`plane_fit_normals` with its (3, H, W) output allocated; rays = (x/z (W,), y/z (H,), u - cx,
    v - cy)."""
    out = np.empty((3, *z.shape), dtype=np.float64)
    x_over_z, y_over_z, px, py = rays
    plane_fit_normals(z, valid, x_over_z, y_over_z, px, py, focal[0], focal[1], radius, oriented, out)
    return out
