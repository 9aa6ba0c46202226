"""Surface normals from depth by local plane fits, and their 8-bit 3-channel encoding.

The plane fit is Gupta's `computeNormalsSquareSupport` (reference spec
/work/shared/reference/modalities.md §3.3, without superpixels): around every pixel, the points of a
(2R+1)x(2R+1) window are fitted with a plane n.p = 1 by least squares in inverse depth. It is the one
normal estimator of fusionseg; the HHA encoder (`fusionseg.modalities.hha`) builds on the same
functions, computing the per-pixel terms once and box-summing them for its two radii.

Camera frame everywhere: x right, y down, z forward (optical axis), units of the depth given.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from fusionseg.modalities.intrinsics import Intrinsics

try:  # the compiled fast path (optional extra `fast`); without it the numpy path below runs
    from fusionseg.modalities import hha_kernels
except ImportError:  # pragma: no cover - depends on the environment
    hha_kernels = None  # type: ignore[assignment]

__all__ = [
    "box_sum",
    "check_depth",
    "check_intrinsics",
    "compute_normals",
    "compute_normals_square_support",
    "normals_to_uint8",
    "point_cloud",
    "ray_slopes",
    "round_to_uint8",
    "square_support_normals",
]

# Image rows per strip of the plane fit: keeps the per-strip temporaries within the CPU caches.
STRIP_ROWS = 32
# Largest depth accepted, metres: far beyond any range sensor, far below where the plane fits' float64
# sums overflow (about 1e150 m), which used to surface as a LinAlgError deep inside the gravity estimate.
MAX_DEPTH_M = 1e6


def check_depth(depth: object, name: str, *, allow_all_zero: bool = False) -> NDArray[np.float64]:
    """Validate a depth image and return it as float64 (a new array; the input is never changed).

    Args:
        depth: (H, W) real-valued depth, finite and >= 0, 0 = missing.
        name: Argument name used in error messages.
        allow_all_zero: Accept an image without any valid pixel.

    Returns:
        (H, W) float64 copy of `depth`.

    Raises:
        ValueError: not a 2-D real numpy array, empty, NaN/inf, negative or above `MAX_DEPTH_M`
            values, or all zero.
    """
    if not isinstance(depth, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(depth).__name__}")
    if depth.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {depth.shape}")
    if depth.dtype == np.bool_ or not (
        np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)
    ):
        raise ValueError(f"{name} must have a real numeric dtype, got {depth.dtype}")
    if depth.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {depth.shape}")
    out = depth.astype(np.float64)  # always a copy
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite (0 = missing), got NaN or inf")
    if (out < 0).any():
        raise ValueError(f"{name} must be >= 0 (0 = missing), got minimum {out.min():g}")
    if out.max() > MAX_DEPTH_M:
        raise ValueError(f"{name} holds {out.max():g} m, above {MAX_DEPTH_M:g} m: not metres (wrong unit?)")
    if not allow_all_zero and not out.any():
        raise ValueError(f"{name} has no valid (non-zero) pixel")
    return out


def check_intrinsics(intrinsics: object) -> Intrinsics:
    """Return `intrinsics` if it is an `Intrinsics`, else raise ValueError naming the argument."""
    if not isinstance(intrinsics, Intrinsics):
        raise ValueError(f"intrinsics must be an Intrinsics, got {type(intrinsics).__name__}")
    return intrinsics


def ray_slopes(shape: tuple[int, int], intrinsics: Intrinsics) -> tuple[NDArray, NDArray]:
    """Per-column x/z and per-row y/z of the viewing rays: (1, W) and (H, 1) float64."""
    height, width = shape
    x_over_z = ((np.arange(width, dtype=np.float64) - intrinsics.cx) / intrinsics.fx)[None, :]
    y_over_z = ((np.arange(height, dtype=np.float64) - intrinsics.cy) / intrinsics.fy)[:, None]
    return x_over_z, y_over_z


def point_cloud(
    depth: NDArray[np.floating], intrinsics: Intrinsics, *, first_row: int = 0
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Back-project a depth image (spec §3.2; 0-based pixel centres, see `Intrinsics`).

    Args:
        depth: (H, W) depth along the optical axis, any unit; 0 gives the point (0, 0, 0).
        intrinsics: Pinhole intrinsics of the image.
        first_row: Image row of `depth`'s first row, when `depth` is a strip of a larger image.

    Returns:
        (X, Y, Z): three (H, W) float64 planes in the unit of `depth` (x right, y down,
        z forward); Z is `depth` itself as float64.
    """
    z = np.asarray(depth, dtype=np.float64)
    height, width = z.shape
    u = np.arange(width, dtype=np.float64)[None, :]
    v = np.arange(first_row, first_row + height, dtype=np.float64)[:, None]
    # §3.2: X = (u - cx) z / fx, Y = (v - cy) z / fy (same operation order as getPointCloudFromZ)
    return (u - intrinsics.cx) * z / intrinsics.fx, (v - intrinsics.cy) * z / intrinsics.fy, z


def box_sum(image: NDArray[np.float64], radius_px: int) -> NDArray[np.float64]:
    """Sum over the (2R+1)x(2R+1) window centred on each pixel, zero outside the image.

    Equals `scipy.signal.convolve2d(image, np.ones((2R+1, 2R+1)), "same")` (MATLAB `filter2`
    'same', spec §3.3 step 3) up to float rounding; OpenCV's running box sums are much faster.

    Args:
        image: (H, W) float64, finite (NaN must be replaced by 0 beforehand).
        radius_px: Window radius R >= 0.

    Returns:
        (H, W) float64 window sums.
    """
    size = 2 * radius_px + 1
    return cv2.boxFilter(image, cv2.CV_64F, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)


def _moment_planes(
    z_safe: NDArray[np.float64],
    valid: NDArray[np.bool_],
    x_over_z: NDArray[np.float64],
    y_over_z: NDArray[np.float64],
    out: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per-pixel terms of the inverse-depth plane fit (spec §3.3 steps 1-2), before box summing.

    With a = (X/Z, Y/Z, 1) and t = 1/Z: the entries xx, xy, x, yy, y, 1 of a.a^T and x, y, 1 of
    a.t, in the order of Gupta's `AtARaw`, `AtbRaw`; 0 at missing pixels (MATLAB's NaN -> 0).

    Args:
        z_safe: (h, W) depth rows with 0 replaced by 1 (so that 1/Z never divides by 0).
        valid: (h, W) bool. x_over_z: (1, W). y_over_z: (h, 1).
        out: (9, h', W) float64 buffer with h' >= h; its first h rows receive the planes.

    Returns:
        (9, h, W) view of `out`.
    """
    moments = out[:, : z_safe.shape[0]]  # (9, h, W)
    one, inv_z = moments[5], moments[8]
    np.copyto(one, valid)  # 1 valid, 0 missing
    np.divide(one, z_safe, out=inv_z)  # t = 1/Z at valid pixels, 0 elsewhere
    # X/Z = (u - cx)/fx up to one rounding, so the rays need no per-pixel division
    np.multiply(one, x_over_z * x_over_z, out=moments[0])
    np.multiply(one, x_over_z * y_over_z, out=moments[1])
    np.multiply(one, x_over_z, out=moments[2])
    np.multiply(one, y_over_z * y_over_z, out=moments[3])
    np.multiply(one, y_over_z, out=moments[4])
    np.multiply(inv_z, x_over_z, out=moments[6])  # X/Z^2
    np.multiply(inv_z, y_over_z, out=moments[7])  # Y/Z^2
    return moments


class _Scratch:
    """Reused (h, W) float64 buffers of one strip's plane fit (no allocation per strip and radius)."""

    def __init__(self, rows: int, width: int) -> None:
        self.buffers = np.empty((8, rows, width), dtype=np.float64)

    def take(self, rows: int) -> list[NDArray[np.float64]]:
        return list(self.buffers[:, :rows])


def _plane_normals(sums: NDArray[np.float64], out: NDArray[np.float64], scratch: _Scratch) -> None:
    """Unnormalised normals n = adj(A^T A) A^T t from the nine window sums (spec §3.3 step 4).

    Args:
        sums: (9, h, W) window sums (AtA entries xx, xy, x, yy, y, 1; Atb entries x, y, 1).
        out: (3, h, W) float64 destination.
        scratch: Buffers of at least h rows.
    """
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = sums
    c11, c12, c13, c22, c23, c33, tmp, _ = scratch.take(a1.shape[0])
    # cofactors of the symmetric matrix as in Gupta's invertIt (c12 and c23 are written a - b
    # instead of -(b - a): the same IEEE result, one op less)
    for cof, (p, q), (r, s) in (
        (c11, (a4, a6), (a5, a5)),
        (c12, (a3, a5), (a2, a6)),
        (c13, (a2, a5), (a3, a4)),
        (c22, (a1, a6), (a3, a3)),
        (c23, (a2, a3), (a1, a5)),
        (c33, (a1, a4), (a2, a2)),
    ):
        np.multiply(p, q, out=cof)
        np.multiply(r, s, out=tmp)
        cof -= tmp
    for n, (k1, k2, k3) in zip(out, ((c11, c12, c13), (c12, c22, c23), (c13, c23, c33))):
        np.multiply(k1, b1, out=n)  # n = k1 b1 + k2 b2 + k3 b3, in MATLAB's order
        np.multiply(k2, b2, out=tmp)
        n += tmp
        np.multiply(k3, b3, out=tmp)
        n += tmp


def _normalise(
    out: NDArray[np.float64], count: NDArray[np.float64], undefined: float, scratch: _Scratch
) -> None:
    """Scale the (3, h, W) normals `out` to unit length; `undefined` where `count` < 2 points.

    MATLAB's exact filter2 sums make the adjugate exactly 0 (0/0 = NaN) where the window held fewer
    than two valid points; running box sums can leave rounding residue after a window leaves valid
    pixels, so those windows are found by their exact count instead.
    """
    nx, ny, nz = out
    norm, tmp = scratch.take(nx.shape[0])[6:8]
    np.multiply(nx, nx, out=norm)
    np.multiply(ny, ny, out=tmp)
    norm += tmp
    np.multiply(nz, nz, out=tmp)
    norm += tmp
    np.sqrt(norm, out=norm)
    if not np.isnan(undefined):  # a zero-length fit (collinear points) gives 0/0 = NaN too
        np.copyto(norm, np.inf, where=norm == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= norm
    np.copyto(out, undefined, where=count < 2)


def _orient(out: NDArray[np.float64], points: tuple[NDArray[np.float64], ...], scratch: _Scratch) -> None:
    """§3.3 step 5: flip the unit normals `out` by sign(n_z) (0 -> +1), then by sign(n.P) (NaN,
    0 -> +1) with the unmasked point P; NaN compares False, so NaN normals stay NaN."""
    nx, ny, nz = out
    np.negative(out, out=out, where=nz < 0)
    dot, tmp = scratch.take(nx.shape[0])[6:8]
    x_pts, y_pts, z_pts = points
    np.multiply(nx, x_pts, out=dot)
    np.multiply(ny, y_pts, out=tmp)
    dot += tmp
    np.multiply(nz, z_pts, out=tmp)
    dot += tmp
    np.negative(out, out=out, where=dot < 0)


def square_support_normals(
    depth: NDArray[np.floating],
    intrinsics: Intrinsics,
    radii_px: tuple[int, ...],
    missing_mask: NDArray[np.bool_] | None = None,
    *,
    oriented: tuple[bool, ...] | None = None,
) -> list[NDArray[np.float64]]:
    """Normals by plane fits over square windows of several radii at once (spec §3.3).

    With numba installed (extra `fast`) each radius is one compiled pass over the image
    (`hha_kernels.plane_fit_normals`); otherwise the per-pixel terms are computed per strip of
    `STRIP_ROWS` rows (with a halo of the largest radius) and box-summed per radius with OpenCV.
    Both give the window sums of MATLAB `filter2` 'same' with zero padding, up to float rounding.

    Args:
        depth: (H, W) depth, any unit (HHA passes cm), >= 0, 0 = missing.
        intrinsics: Pinhole intrinsics, 0-based pixel centres.
        radii_px: Window radii R; windows are (2R+1)x(2R+1) pixels.
        missing_mask: (H, W) bool, True where depth is missing (the raw-depth mask of §3.1);
            pixels with depth 0 count as missing in any case (deviation: MATLAB would spread
            1/0 = inf over their windows).
        oriented: Per radius, whether to orient the normals (default: all). An unoriented field
            keeps the fit's arbitrary sign and holds 0 instead of NaN where undefined: what a
            sign-free use such as the gravity estimate (`hha._gravity_from_planes`) needs.

    Returns:
        One (3, H, W) float64 array of unit normals (planes x, y, z) per radius; oriented ones point
        away from the camera (n.P >= 0) and are NaN where the window held fewer than two valid
        points. Where the valid points of a window lie on one line (e.g. a single row of them at
        the edge of a hole) the plane is undetermined and the normal is rounding noise, as in MATLAB.
    """
    z = np.asarray(depth, dtype=np.float64)
    valid = z > 0
    if missing_mask is not None:
        valid &= ~missing_mask
    oriented = oriented if oriented is not None else (True,) * len(radii_px)
    if hha_kernels is None:
        return _normals_numpy(z, valid, intrinsics, radii_px, oriented=oriented)
    height, width = z.shape
    x_over_z, y_over_z = ray_slopes(z.shape, intrinsics)  # (1, W), (H, 1)
    rays = (
        x_over_z.ravel(),
        y_over_z.ravel(),
        np.arange(width, dtype=np.float64) - intrinsics.cx,  # u - cx, as in point_cloud
        np.arange(height, dtype=np.float64) - intrinsics.cy,
    )
    focal = (float(intrinsics.fx), float(intrinsics.fy))
    return [hha_kernels.plane_fit(z, valid, rays, focal, r, o) for r, o in zip(radii_px, oriented)]


def _normals_numpy(
    z: NDArray[np.float64],
    valid: NDArray[np.bool_],
    intrinsics: Intrinsics,
    radii_px: tuple[int, ...],
    *,
    oriented: tuple[bool, ...],
) -> list[NDArray[np.float64]]:
    """`square_support_normals` in numpy/OpenCV array passes (strips of `STRIP_ROWS` rows)."""
    height, width = z.shape
    x_over_z, y_over_z = ray_slopes(z.shape, intrinsics)  # (1, W), (H, 1)
    outs = [np.empty((3, height, width), dtype=np.float64) for _ in radii_px]
    z_safe = np.where(valid, z, 1.0)  # see _moment_planes
    halo = max(radii_px)
    moments_buffer = np.empty((9, STRIP_ROWS + 2 * halo, width), dtype=np.float64)
    sums = np.empty((9, STRIP_ROWS, width), dtype=np.float64)
    scratch = _Scratch(STRIP_ROWS, width)
    for top in range(0, height, STRIP_ROWS):
        bottom = min(height, top + STRIP_ROWS)
        h0, h1 = max(0, top - halo), min(height, bottom + halo)  # rows with moments
        moments = _moment_planes(z_safe[h0:h1], valid[h0:h1], x_over_z, y_over_z[h0:h1], moments_buffer)
        for radius, out, orient in zip(radii_px, outs, oriented):
            # rows [top - R, bottom + R) suffice; zero padding only at the image border
            r0, r1 = max(h0, top - radius), min(h1, bottom + radius)
            keep = slice(top - r0, bottom - r0)
            strip_sums = sums[:, : bottom - top]  # (9, h, W)
            for moment, total in zip(moments, strip_sums):
                total[...] = box_sum(moment[r0 - h0 : r1 - h0], radius)[keep]
            normals = out[:, top:bottom]  # (3, h, W)
            _plane_normals(strip_sums, normals, scratch)
            _normalise(normals, strip_sums[5], np.nan if orient else 0.0, scratch)
            if orient:
                _orient(normals, point_cloud(z[top:bottom], intrinsics, first_row=top), scratch)  # §3.2
    return outs


def compute_normals_square_support(
    depth: NDArray[np.floating],
    intrinsics: Intrinsics,
    *,
    radius_px: int = 3,
    missing_mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """Gupta's `computeNormalsSquareSupport` without superpixels (spec §3.3), unchecked input.

    Args:
        depth: (H, W) float depth, any unit (the fit is unit-free; HHA passes cm), >= 0,
            0 = missing.
        intrinsics: Pinhole intrinsics, 0-based pixel centres.
        radius_px: Window radius R; the window is (2R+1)x(2R+1) pixels.
        missing_mask: (H, W) bool, True where depth is missing; default `depth == 0`.

    Returns:
        (H, W, 3) float64 unit normals (x right, y down, z forward) pointing away from the camera
        (n.P >= 0); NaN where the window held fewer than two valid points.
    """
    (planes,) = square_support_normals(depth, intrinsics, (radius_px,), missing_mask)
    return np.ascontiguousarray(planes.transpose(1, 2, 0))  # (3, H, W) -> (H, W, 3)


def compute_normals(
    depth_m: NDArray[np.floating], intrinsics: Intrinsics, *, radius_px: int = 3
) -> NDArray[np.float32]:
    """Surface normals from depth via local plane fits over a square window (spec §3.3).

    Args:
        depth_m: (H, W) depth in metres, finite, >= 0, 0 = missing, not all zero.
        intrinsics: Pinhole intrinsics, 0-based pixel centres.
        radius_px: Window radius R >= 1; the window is (2R+1)x(2R+1) pixels.

    Returns:
        (H, W, 3) float32 unit normals in camera coordinates (x right, y down, z forward),
        oriented away from the camera (n.P >= 0: a floor below the camera has n = (0, 1, 0), a
        wall facing it (0, 0, 1)). NaN where the window held fewer than two valid pixels; noise
        where its valid pixels lie on one line (see `square_support_normals`).

    Raises:
        ValueError: bad `depth_m`, `intrinsics` or `radius_px`.
    """
    depth = check_depth(depth_m, "depth_m")
    check_intrinsics(intrinsics)
    if isinstance(radius_px, bool) or not isinstance(radius_px, (int, np.integer)) or radius_px < 1:
        raise ValueError(f"radius_px must be an integer >= 1, got {radius_px!r}")
    (planes,) = square_support_normals(depth, intrinsics, (int(radius_px),))
    return planes.transpose(1, 2, 0).astype(np.float32)  # (3, H, W) -> (H, W, 3)


def normals_to_uint8(normals: NDArray[np.floating], *, order: str = "bgr") -> NDArray[np.uint8]:
    """Encode unit normals as an 8-bit 3-channel image: each component [-1, 1] -> [0, 255].

    Component c maps to round((c + 1) * 127.5) (half away from zero, computed in the input's
    float precision), so -1 -> 0, 0 -> 128, +1 -> 255. Undefined (NaN) normals become (0, 0, 0).

    Axis convention: camera frame, x right, y down, z forward (away from the camera). With
    `order="rgb"` channel 0/1/2 holds x/y/z (the common "normal map" convention R = x, G = y,
    B = z). The default `order="bgr"` reverses the channels (0/1/2 = z/y/x) so that
    `cv2.imwrite` stores R = x, G = y, B = z in the file.

    Args:
        normals: (H, W, 3) float unit normals (x, y, z), NaN where undefined.
        order: "bgr" (default, for OpenCV) or "rgb".

    Returns:
        (H, W, 3) uint8 image.

    Raises:
        ValueError: wrong shape or dtype, or an unknown `order`.
    """
    if not isinstance(normals, np.ndarray) or normals.ndim != 3 or normals.shape[2] != 3:
        shape = getattr(normals, "shape", type(normals).__name__)
        raise ValueError(f"normals must be a (H, W, 3) numpy array, got {shape}")
    if not np.issubdtype(normals.dtype, np.floating):
        raise ValueError(f"normals must be floating point, got {normals.dtype}")
    if order not in ("bgr", "rgb"):
        raise ValueError(f"order must be 'bgr' or 'rgb', got {order!r}")
    scaled = np.clip(normals[..., ::-1] if order == "bgr" else normals, -1.0, 1.0)  # new array
    scaled += 1.0
    scaled *= 127.5
    return np.ascontiguousarray(round_to_uint8(scaled))


def round_to_uint8(
    values: NDArray[np.floating], *, out: NDArray[np.uint8] | None = None
) -> NDArray[np.uint8]:
    """MATLAB `uint8()`: round half away from zero, saturate to [0, 255], NaN -> 0 (spec §3.6).

    Computed as trunc(clip(x + pred(0.5), 0, 255)) with pred(0.5) the float just below 0.5 in
    the input's precision: exact for every x >= 0 (ties x.5 go up, x.5 - 1 ulp goes down, where
    x + 0.5 would round 0.49999999999999994 up), three passes instead of a floor and a fix-up.

    Args:
        values: Float array of any shape (float32 stays float32 while rounding).
        out: Optional uint8 destination of the same shape (e.g. one channel of an image).

    Returns:
        uint8 array of the same shape (`out` when given).
    """
    half_down = np.nextafter(values.dtype.type(0.5), values.dtype.type(0.0))
    x = values + half_down  # a new array; +-inf saturate below, NaN stays NaN
    np.fmax(x, 0.0, out=x)  # fmax returns the number where x is NaN: NaN -> 0
    np.minimum(x, 255.0, out=x)
    if out is None:
        return x.astype(np.uint8)  # truncation = floor for x >= 0
    np.copyto(out, x, casting="unsafe")
    return out
