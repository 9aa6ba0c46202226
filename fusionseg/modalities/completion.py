"""ip_basic depth completion (Ku, Harakeh, Waslander, CRV 2018), bit-exact with the published code.

Both completion functions follow `reference/modalities.md` §1 step by step and make the same OpenCV
calls with the same arguments and default borders (§1.6), so that results equal kujason/ip_basic's
`depth_map_utils` bit for bit with the same OpenCV build. Differences from the original are in how the
work is organised, never in the numbers:

* the caller's array is never modified (the original `fill_in_fast` inverts its argument in place);
* the per-column Python loops (extrapolation, top masks) are replaced by vectorised equivalents;
* `fill_in_multiscale` returns only the depth map (no `show_process` dictionary);
* inputs are checked first: float32 metres only, finite, non-negative, not millimetres.

A pixel is valid when its value is > 0.1 (§1.2). The output keeps ip_basic's convention: values
<= 0.1 are not depths (they are 0, or, after the bilateral filter of `fill_in_fast`, tiny residues of
the filter) and mean "still missing".
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CROSS_KERNEL_3",
    "CROSS_KERNEL_5",
    "CROSS_KERNEL_7",
    "DIAMOND_KERNEL_5",
    "DIAMOND_KERNEL_7",
    "FULL_KERNEL_3",
    "FULL_KERNEL_5",
    "FULL_KERNEL_7",
    "FULL_KERNEL_9",
    "FULL_KERNEL_31",
    "KERNELS",
    "BLUR_TYPES",
    "VALID_THRESHOLD_M",
    "depth_to_metres",
    "fill_in_fast",
    "fill_in_multiscale",
]

# §1.2: a pixel is valid when its (possibly inverted) value is strictly above this.
VALID_THRESHOLD_M = 0.1
# Input whose maximum exceeds this multiple of max_depth is taken for millimetres (or another wrong unit).
_UNIT_GUARD_FACTOR = 10.0
BLUR_TYPES = ("bilateral", "gaussian")


def _frozen(rows: list[list[int]]) -> NDArray[np.uint8]:
    kernel = np.asarray(rows, dtype=np.uint8)
    kernel.flags.writeable = False  # module constants: nobody may change them for everyone else
    return kernel


def _full(size: int) -> NDArray[np.uint8]:
    return _frozen(np.ones((size, size), dtype=np.uint8).tolist())


def _cross(size: int) -> NDArray[np.uint8]:
    kernel = np.zeros((size, size), dtype=np.uint8)
    kernel[size // 2, :] = 1
    kernel[:, size // 2] = 1
    return _frozen(kernel.tolist())


def _diamond(size: int) -> NDArray[np.uint8]:
    radius = size // 2
    offsets = np.abs(np.arange(size) - radius)
    return _frozen((offsets[:, None] + offsets[None, :] <= radius).astype(np.uint8).tolist())


# §1.3: kernels, all uint8 with the anchor at the centre.
FULL_KERNEL_3 = _full(3)
FULL_KERNEL_5 = _full(5)
FULL_KERNEL_7 = _full(7)
FULL_KERNEL_9 = _full(9)
FULL_KERNEL_31 = _full(31)
CROSS_KERNEL_3 = _cross(3)  # default far kernel of fill_in_multiscale
CROSS_KERNEL_5 = _cross(5)  # default med kernel
CROSS_KERNEL_7 = _cross(7)  # default near kernel
DIAMOND_KERNEL_5 = _diamond(5)  # default kernel of fill_in_fast
DIAMOND_KERNEL_7 = _diamond(7)

# Kernels by name, for callers (the CLI, configs) that pick one with a string.
KERNELS: dict[str, NDArray[np.uint8]] = {
    "full_3": FULL_KERNEL_3,
    "full_5": FULL_KERNEL_5,
    "full_7": FULL_KERNEL_7,
    "full_9": FULL_KERNEL_9,
    "full_31": FULL_KERNEL_31,
    "cross_3": CROSS_KERNEL_3,
    "cross_5": CROSS_KERNEL_5,
    "cross_7": CROSS_KERNEL_7,
    "diamond_5": DIAMOND_KERNEL_5,
    "diamond_7": DIAMOND_KERNEL_7,
}


def depth_to_metres(depth: NDArray, *, depth_scale_m: float) -> NDArray[np.float32]:
    """Convert stored depth units (uint16 millimetres, KITTI 1/256 m, ...) to float32 metres.

    Uses the same arithmetic as `fusionseg.data.io.read_depth` (float32 value times float32 scale),
    so KITTI PNGs (`depth_scale_m=1/256`) give exactly `png / 256.0` as float32, the input of the
    ip_basic demo.

    Args:
        depth: (H, W) integer or float array of depth units, 0 = missing.
        depth_scale_m: Metres per stored unit (0.001 for millimetres, 1/256 for KITTI).

    Returns:
        (H, W) float32 depth in metres, 0 = missing. The input is not modified.

    Raises:
        ValueError: `depth` is not a 2-D numeric array, holds NaN/inf or negative values, values
            whose metres overflow float32, or `depth_scale_m` is not a positive finite number.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be a 2-D (H, W) array, got shape {depth.shape}")
    if not (np.issubdtype(depth.dtype, np.integer) or np.issubdtype(depth.dtype, np.floating)):
        raise ValueError(f"depth must be an integer or float array, got dtype {depth.dtype}")
    if not isinstance(depth_scale_m, (int, float, np.number)) or not np.isfinite(depth_scale_m):
        raise ValueError(f"depth_scale_m must be a positive finite number, got {depth_scale_m!r}")
    if depth_scale_m <= 0:
        raise ValueError(f"depth_scale_m must be a positive finite number, got {depth_scale_m!r}")
    if depth.size and np.issubdtype(depth.dtype, np.floating) and not np.isfinite(depth).all():
        raise ValueError("depth contains NaN or infinite values")
    if depth.size and depth.min() < 0:
        raise ValueError(f"depth must be non-negative (0 = missing), got minimum {depth.min()}")
    with np.errstate(over="ignore"):
        depth_m = depth.astype(np.float32) * np.float32(depth_scale_m)
    if depth.size and not np.isfinite(depth_m).all():
        raise ValueError(
            f"depth times depth_scale_m={depth_scale_m!r} overflows float32 metres "
            f"(maximum stored value {depth.max()!r}): wrong unit or corrupt data"
        )
    return depth_m


def _check_depth(depth_m: NDArray, max_depth: float) -> None:
    """Validate the input of the fill functions (§1.2: float32 metres, 0 = missing)."""
    _check_max_depth(max_depth)
    if not isinstance(depth_m, np.ndarray):
        raise ValueError(f"depth_m must be a numpy array, got {type(depth_m).__name__}")
    if depth_m.dtype != np.float32:
        hint = (
            " (convert stored units first, e.g. depth_to_metres(depth, depth_scale_m=0.001))"
            if np.issubdtype(depth_m.dtype, np.integer)
            else " (cast it with .astype(np.float32))"
        )
        raise ValueError(f"depth_m must be float32 metres, got dtype {depth_m.dtype}{hint}")
    if depth_m.ndim != 2 or depth_m.size == 0:
        raise ValueError(f"depth_m must be a non-empty 2-D (H, W) array, got shape {depth_m.shape}")
    if not np.isfinite(depth_m).all():
        raise ValueError("depth_m contains NaN or infinite values (use 0 for missing depth)")
    _check_depth_range(float(depth_m.min()), float(depth_m.max()), max_depth)


def _check_max_depth(max_depth: float) -> None:
    if not isinstance(max_depth, (int, float, np.number)) or not np.isfinite(max_depth) or max_depth <= 0:
        raise ValueError(f"max_depth must be a positive finite number of metres, got {max_depth!r}")


def _check_depth_range(low: float, high: float, max_depth: float) -> None:
    """Refuse negative depth and depth that looks like millimetres (shared with `completion_torch`)."""
    if low < 0:
        raise ValueError(f"depth_m must be non-negative (0 = missing), got minimum {low}")
    if high > _UNIT_GUARD_FACTOR * max_depth:
        raise ValueError(
            f"depth_m looks like millimetres or another unit, not metres: maximum {high:g} is more than "
            f"{_UNIT_GUARD_FACTOR:g} x max_depth={max_depth:g} (convert with depth_to_metres)"
        )


def _check_kernel(kernel: NDArray, name: str) -> NDArray[np.uint8]:
    """Return `kernel` as a uint8 0/1 array, or raise ValueError naming the argument."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {kernel.shape}")
    if not (np.issubdtype(kernel.dtype, np.integer) or kernel.dtype == np.bool_):
        raise ValueError(f"{name} must be an integer (uint8) 0/1 array, got dtype {kernel.dtype}")
    if not np.isin(kernel, (0, 1)).all() or not kernel.any():
        raise ValueError(f"{name} must hold only 0 and 1 with at least one 1")
    return kernel.astype(np.uint8, copy=False)


def _check_blur_type(blur_type: str) -> None:
    if blur_type not in BLUR_TYPES:
        raise ValueError(f"blur_type must be one of {', '.join(BLUR_TYPES)}, got {blur_type!r}")


def _invert_valid(values: NDArray[np.float32], max_depth: np.float32) -> None:
    """In place: v <- max_depth - v where v > 0.1 (§1.4 steps 1 and 8)."""
    np.subtract(max_depth, values, out=values, where=values > VALID_THRESHOLD_M)


def _first_valid_rows(values: NDArray[np.float32]) -> NDArray[np.intp]:
    """Per column, the first row whose value is > 0.1; an all-empty column gives row 0 (`argmax`)."""
    return np.argmax(values > VALID_THRESHOLD_M, axis=0)


def _above_rows(shape: tuple[int, int], rows: NDArray[np.intp]) -> NDArray[np.bool_]:
    """(H, W) mask of the pixels strictly above `rows[col]` in each column."""
    return np.arange(shape[0])[:, None] < rows[None, :]


def _extend_top(values: NDArray[np.float32], rows: NDArray[np.intp]) -> None:
    """In place: copy each column's value at `rows[col]` into every row above it.

    An all-empty column has row 0, so nothing lies above it and it stays unchanged.
    """
    top_values = values[rows, np.arange(values.shape[1])]
    np.copyto(values, np.broadcast_to(top_values, values.shape), where=_above_rows(values.shape, rows))


def _fill_where(values: NDArray[np.float32], filler: NDArray[np.float32], mask: NDArray[np.bool_]) -> None:
    """In place: values[mask] = filler[mask]."""
    np.copyto(values, filler, where=mask)


def fill_in_fast(
    depth_m: NDArray[np.float32],
    *,
    max_depth: float = 100.0,
    extrapolate: bool = False,
    blur_type: str = "bilateral",
    custom_kernel: NDArray[np.uint8] | None = None,
) -> NDArray[np.float32]:
    """Complete sparse depth with ip_basic's fast morphological pipeline (`reference/modalities.md` §1.4).

    Equal bit for bit to ip_basic's `fill_in_fast` with the same OpenCV build, except that the input is
    left untouched.

    Args:
        depth_m: (H, W) float32 depth in metres, 0 = missing; values <= 0.1 count as missing and
            values >= max_depth - 0.1 are dropped by the inversion, as in the original.
        max_depth: Inversion offset in metres (ip_basic's 100 m).
        extrapolate: Extend each column's top-most value to the image top and fill large holes with a
            31x31 dilation (§1.4 step 5); the ip_basic demo uses True.
        blur_type: "bilateral" (whole map, d=5, sigmaColor=1.5, sigmaSpace=2) or "gaussian" (5x5,
            written only at valid pixels).
        custom_kernel: First dilation kernel (uint8 0/1); default `DIAMOND_KERNEL_5`.

    Returns:
        (H, W) float32 completed depth in metres; values <= 0.1 are still missing.

    Raises:
        ValueError: `depth_m` is not a non-empty 2-D float32 array of finite, non-negative metres (or
            looks like millimetres: maximum above 10 x max_depth), or a bad `blur_type`/`custom_kernel`.
    """
    _check_depth(depth_m, max_depth)
    _check_blur_type(blur_type)
    kernel = DIAMOND_KERNEL_5 if custom_kernel is None else _check_kernel(custom_kernel, "custom_kernel")
    offset = np.float32(max_depth)

    depth = depth_m.copy()  # the original inverts its argument in place (§1.2); we never do
    # §1.4 step 1: invert valid pixels so that max-dilation favours near surfaces.
    _invert_valid(depth, offset)
    # Step 2: dilate with the custom kernel; step 3: close with FULL_5.
    depth = cv2.dilate(depth, kernel)
    depth = cv2.morphologyEx(depth, cv2.MORPH_CLOSE, FULL_KERNEL_5)
    # Step 4: small-hole fill with a FULL_7 dilation, copied into the empty pixels only.
    empty = depth < VALID_THRESHOLD_M
    _fill_where(depth, cv2.dilate(depth, FULL_KERNEL_7), empty)

    if extrapolate:
        # Step 5a: extend each column's first valid value to the top (all-empty column: argmax = 0).
        _extend_top(depth, _first_valid_rows(depth))
        # Step 5b: large-hole fill with FULL_31.
        empty = depth < VALID_THRESHOLD_M
        _fill_where(depth, cv2.dilate(depth, FULL_KERNEL_31), empty)

    # Step 6: median over the whole map (replicate border).
    depth = cv2.medianBlur(depth, 5)

    # Step 7: smoothing.
    if blur_type == "bilateral":
        depth = cv2.bilateralFilter(depth, 5, 1.5, 2.0)
    else:
        valid = depth > VALID_THRESHOLD_M
        _fill_where(depth, cv2.GaussianBlur(depth, (5, 5), 0), valid)

    # Step 8: undo the inversion.
    _invert_valid(depth, offset)
    return depth


def fill_in_multiscale(
    depth_m: NDArray[np.float32],
    *,
    max_depth: float = 100.0,
    extrapolate: bool = False,
    blur_type: str = "bilateral",
    dilation_kernel_far: NDArray[np.uint8] | None = None,
    dilation_kernel_med: NDArray[np.uint8] | None = None,
    dilation_kernel_near: NDArray[np.uint8] | None = None,
) -> NDArray[np.float32]:
    """Complete sparse depth with ip_basic's multi-scale pipeline (`reference/modalities.md` §1.5).

    Equal bit for bit to ip_basic's `fill_in_multiscale(...)[0]` with the same OpenCV build.

    Args:
        depth_m: (H, W) float32 depth in metres, 0 = missing (see `fill_in_fast`).
        max_depth: Inversion offset in metres (ip_basic's 100 m).
        extrapolate: Extend each column's top-most value to the image top; without it the region above
            the top-most filled pixel of each column stays 0 (§1.5 step 13).
        blur_type: "bilateral" (d=5, sigmaColor=0.5, sigmaSpace=2) or "gaussian" (5x5).
        dilation_kernel_far: Kernel for depths > 30 m; default `CROSS_KERNEL_3`.
        dilation_kernel_med: Kernel for depths in (15, 30] m; default `CROSS_KERNEL_5`.
        dilation_kernel_near: Kernel for depths in (0.1, 15] m; default `CROSS_KERNEL_7`.

    Returns:
        (H, W) float32 completed depth in metres; values <= 0.1 are still missing.

    Raises:
        ValueError: as `fill_in_fast`.
    """
    _check_depth(depth_m, max_depth)
    _check_blur_type(blur_type)
    kernel_far = (
        CROSS_KERNEL_3
        if dilation_kernel_far is None
        else _check_kernel(dilation_kernel_far, "dilation_kernel_far")
    )
    kernel_med = (
        CROSS_KERNEL_5
        if dilation_kernel_med is None
        else _check_kernel(dilation_kernel_med, "dilation_kernel_med")
    )
    kernel_near = (
        CROSS_KERNEL_7
        if dilation_kernel_near is None
        else _check_kernel(dilation_kernel_near, "dilation_kernel_near")
    )
    offset = np.float32(max_depth)
    shape = depth_m.shape

    # §1.5 step 1: depth bins on the ORIGINAL depths (far has no upper bound).
    near = (depth_m > VALID_THRESHOLD_M) & (depth_m <= 15.0)
    med = (depth_m > 15.0) & (depth_m <= 30.0)
    far = depth_m > 30.0

    # Step 2: invert a copy at valid pixels -> S1.
    s1 = depth_m.copy()
    _invert_valid(s1, offset)

    # Step 3: per-bin dilation of S1 restricted to the bin (S1 times the bool mask, as the original).
    dilated_far = cv2.dilate(np.multiply(s1, far), kernel_far)
    dilated_med = cv2.dilate(np.multiply(s1, med), kernel_med)
    dilated_near = cv2.dilate(np.multiply(s1, near), kernel_near)

    # Step 4: merge far, then med, then near (near wins) -> S2.
    s2 = s1.copy()
    for dilated in (dilated_far, dilated_med, dilated_near):
        _fill_where(s2, dilated, dilated > VALID_THRESHOLD_M)

    # Step 5: close with FULL_5 -> S3.
    s3 = cv2.morphologyEx(s2, cv2.MORPH_CLOSE, FULL_KERNEL_5)

    # Step 6: masked median, written only where S3 is valid -> S4.
    s4 = s3.copy()
    _fill_where(s4, cv2.medianBlur(s3, 5), s3 > VALID_THRESHOLD_M)

    # Step 7: top mask 1, False above each column's first valid row of S4.
    top_mask = ~_above_rows(shape, _first_valid_rows(s4))

    # Step 8: hole fill with FULL_9 at empty pixels below the top -> S5.
    empty = (s4 <= VALID_THRESHOLD_M) & top_mask
    s5 = s4.copy()
    _fill_where(s5, cv2.dilate(s4, FULL_KERNEL_9), empty)

    # Step 9: extend to the top, or build top mask 2 (fresh, all True when extrapolating) -> S6.
    top_rows = _first_valid_rows(s5)
    s7 = s5.copy()  # S6, then S7 in place
    if extrapolate:
        _extend_top(s7, top_rows)
        top_mask = np.ones(shape, dtype=bool)
    else:
        top_mask = ~_above_rows(shape, top_rows)

    # Step 10: large-hole fill, 6 iterations of FULL_5, each with a recomputed empty mask.
    for _ in range(6):
        empty = (s7 < VALID_THRESHOLD_M) & top_mask
        _fill_where(s7, cv2.dilate(s7, FULL_KERNEL_5), empty)

    # Step 11: masked median at V, computed before the write.
    blurred = cv2.medianBlur(s7, 5)
    valid = (s7 > VALID_THRESHOLD_M) & top_mask
    _fill_where(s7, blurred, valid)

    # Step 12: smoothing.
    if blur_type == "gaussian":
        blurred = cv2.GaussianBlur(s7, (5, 5), 0)
        valid = (s7 > VALID_THRESHOLD_M) & top_mask  # recomputed after the median, as in the original
        _fill_where(s7, blurred, valid)
    else:
        blurred = cv2.bilateralFilter(s7, 5, 0.5, 2.0)
        _fill_where(s7, blurred, valid)  # the OLD mask of step 11: reproduced on purpose (§1.5 step 12)

    # Step 13: undo the inversion.
    _invert_valid(s7, offset)
    return s7
