"""ip_basic depth completion, batched torch back-end (GPU when available).

The second `fusionseg.modalities` module allowed to import torch (beside `hha_torch`), imported only
when a caller asks for the torch back-end. It follows the numpy port `fusionseg.modalities.completion`
step by step (`reference/modalities.md` §1.4 and §1.5; steps cited below) on a batch (B, H, W) of
float32 metres, and re-creates each OpenCV call it makes with the behaviour §1.6 lists:

* `cv2.dilate` / the erosion of `MORPH_CLOSE`: max (min) over the kernel's non-zero offsets, anchor at
  ``(h // 2, w // 2)``, border -inf (+inf) so that outside pixels never win; full kernels use two 1-D
  max-pools (separable), other kernels (cross, diamond, any 0/1 array) a max over shifted views.
* `cv2.medianBlur(·, 5)`: the 13th of the 25 values of the replicate-padded 5x5 window (exact).
* `cv2.GaussianBlur(·, (5, 5), 0)`: OpenCV's fixed 5-tap table (1, 4, 6, 4, 1) / 16 for sigma <= 0,
  separable, BORDER_REFLECT_101.
* `cv2.bilateralFilter(·, 5, sigma_color, sigma_space)` on float32: the disc of radius 2 in the 5x5
  window (13 offsets), spatial weights float32(exp(-r^2 / (2 sigma_space^2))), range weights
  exp(-d^2 / (2 sigma_color^2)) in float32, an image whose [min, max] span is below FLT_EPSILON copied
  unchanged, BORDER_REFLECT_101. §1.6 describes the range weight of older OpenCV releases: a 4096-bin
  look-up table over the image's span with linear interpolation. Reproducing that table exactly
  (entries float32(exp(v^2 c)) at v = float32(i / scale_index)) differs from the locked OpenCV 5.0.0 by
  up to 2.3e-4 m on KITTI frames (multiscale, sigma_color 0.5, bins of 100 m / 4096), while the exact
  exponential agrees to a few float32 ulps (<= 4.6e-5 m at ~90 m): 5.0.0 evaluates exp directly, so this
  back-end does too.

Dilation, closing, median and the masks are exact, so the only differences from the numpy port are
float32 rounding in the two blurs (sums in another order): well below 1e-4 m on real frames
(tests/modalities/test_completion_torch.py checks KITTI LiDAR, NYU and Kinect v2 frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor

from fusionseg.modalities.completion import (
    CROSS_KERNEL_3,
    CROSS_KERNEL_5,
    CROSS_KERNEL_7,
    DIAMOND_KERNEL_5,
    FULL_KERNEL_5,
    FULL_KERNEL_7,
    FULL_KERNEL_9,
    FULL_KERNEL_31,
    VALID_THRESHOLD_M,
    _check_blur_type,
    _check_depth_range,
    _check_kernel,
    _check_max_depth,
)

__all__ = [
    "COMPLETION_METHODS",
    "bilateral_filter5",
    "complete_depth_torch",
    "dilate",
    "fill_in_fast_torch",
    "fill_in_multiscale_torch",
    "gaussian_blur5",
    "median_blur5",
]

COMPLETION_METHODS = ("fast", "multiscale")
_FLT_EPSILON = float(np.finfo(np.float32).eps)
# OpenCV's getGaussianKernel for ksize 5 and sigma <= 0 (small_gaussian_tab), not a sampled Gaussian.
_GAUSS_5 = (0.0625, 0.25, 0.375, 0.25, 0.0625)
_MEDIAN_SIZE = 5
_BILATERAL_RADIUS = 2  # d = 5


def _check_depth(depth_m: object, max_depth: float) -> Tensor:
    """Validate (H, W) or (B, H, W) float32 metres; returns a (B, H, W) view (never modified)."""
    _check_max_depth(max_depth)
    if not isinstance(depth_m, Tensor):
        raise ValueError(f"depth_m must be a torch.Tensor, got {type(depth_m).__name__}")
    if depth_m.dtype != torch.float32:
        raise ValueError(f"depth_m must be float32 metres, got dtype {depth_m.dtype}")
    if depth_m.ndim not in (2, 3) or depth_m.numel() == 0:
        raise ValueError(
            f"depth_m must be a non-empty (H, W) or (B, H, W) tensor, got {tuple(depth_m.shape)}"
        )
    depth = depth_m if depth_m.ndim == 3 else depth_m.unsqueeze(0)  # (B, H, W)
    if not torch.isfinite(depth).all():
        raise ValueError("depth_m contains NaN or infinite values (use 0 for missing depth)")
    _check_depth_range(float(depth.min()), float(depth.max()), max_depth)
    return depth


def _kernel(kernel: NDArray | None, default: NDArray[np.uint8], name: str) -> NDArray[np.uint8]:
    return default if kernel is None else _check_kernel(kernel, name)


def _invert_valid(values: Tensor, max_depth: float) -> Tensor:
    """v -> max_depth - v where v > 0.1 (§1.4 steps 1 and 8), in float32 as the numpy port."""
    offset = torch.tensor(max_depth, dtype=torch.float32, device=values.device)
    return torch.where(values > VALID_THRESHOLD_M, offset - values, values)


def dilate(values: Tensor, kernel: NDArray[np.uint8]) -> Tensor:
    """`cv2.dilate(values, kernel)` for each (H, W) map of a (B, H, W) float32 batch.

    dst[y, x] = max over kernel[i, j] != 0 of src[y + i - h // 2, x + j - w // 2], pixels outside the
    image ignored (-inf border, §1.6).
    """
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2
    height, width = values.shape[-2:]
    padded = F.pad(values, (ax, kw - 1 - ax, ay, kh - 1 - ay), value=float("-inf"))  # (B, H+kh-1, W+kw-1)
    if kernel.all():  # full rectangle: separable max-pools
        rows = F.max_pool2d(padded.unsqueeze(1), (1, kw), stride=1)  # (B, 1, H+kh-1, W)
        return F.max_pool2d(rows, (kh, 1), stride=1).squeeze(1)  # (B, H, W)
    out: Tensor | None = None
    for i, j in zip(*np.nonzero(kernel)):
        view = padded[:, i : i + height, j : j + width]  # (B, H, W) shifted source
        out = view.clone() if out is None else torch.maximum(out, view)
    assert out is not None  # _check_kernel guarantees a non-zero entry
    return out


def _close(values: Tensor, kernel: NDArray[np.uint8]) -> Tensor:
    """`cv2.morphologyEx(values, MORPH_CLOSE, kernel)`: dilation then erosion (+inf border)."""
    return -dilate(-dilate(values, kernel), kernel)


def median_blur5(values: Tensor) -> Tensor:
    """`cv2.medianBlur(values, 5)` on (B, H, W) float32: replicate border, exact median of 25."""
    pad = _MEDIAN_SIZE // 2
    padded = F.pad(values.unsqueeze(1), (pad, pad, pad, pad), mode="replicate").squeeze(1)  # (B, H+4, W+4)
    windows = padded.unfold(1, _MEDIAN_SIZE, 1).unfold(2, _MEDIAN_SIZE, 1)  # (B, H, W, 5, 5)
    return windows.flatten(-2).median(dim=-1).values  # (B, H, W); 25 values: median is the 13th


def _reflect101_index(size: int, pad: int, device: torch.device) -> Tensor:
    """Source indices of positions -pad .. size+pad-1 under OpenCV's BORDER_REFLECT_101 (any size)."""
    index = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * size - 2
    index = index.abs() % period
    return torch.where(index >= size, period - index, index)


def pad_reflect101(values: Tensor, pad: int) -> Tensor:
    """(B, H, W) -> (B, H + 2 pad, W + 2 pad) with BORDER_REFLECT_101 borders (also for H or W <= pad,
    where torch's "reflect" padding refuses)."""
    rows = _reflect101_index(values.shape[1], pad, values.device)
    cols = _reflect101_index(values.shape[2], pad, values.device)
    return values.index_select(1, rows).index_select(2, cols)


def gaussian_blur5(values: Tensor) -> Tensor:
    """`cv2.GaussianBlur(values, (5, 5), 0)` on (B, H, W) float32 (fixed table, REFLECT_101 border)."""
    taps = torch.tensor(_GAUSS_5, dtype=values.dtype, device=values.device)
    padded = pad_reflect101(values, 2).unsqueeze(1)  # (B, 1, H+4, W+4)
    rows = F.conv2d(padded, taps.view(1, 1, 1, 5))  # (B, 1, H+4, W)
    return F.conv2d(rows, taps.view(1, 1, 5, 1)).squeeze(1)  # (B, H, W)


def _space_offsets(sigma_space: float) -> list[tuple[int, int, float]]:
    """(dy, dx, float32 weight) of the disc of radius 2, in OpenCV's row-major order."""
    coeff = -0.5 / (sigma_space * sigma_space)
    offsets = []
    for dy in range(-_BILATERAL_RADIUS, _BILATERAL_RADIUS + 1):
        for dx in range(-_BILATERAL_RADIUS, _BILATERAL_RADIUS + 1):
            r = np.sqrt(float(dy * dy + dx * dx))
            if r <= _BILATERAL_RADIUS:
                offsets.append((dy, dx, float(np.float32(np.exp(r * r * coeff)))))
    return offsets


def bilateral_filter5(values: Tensor, sigma_color: float, sigma_space: float) -> Tensor:
    """`cv2.bilateralFilter(values, 5, sigma_color, sigma_space)` on (B, H, W) float32 (module doc)."""
    batch, height, width = values.shape
    flat = values.reshape(batch, -1)
    span = flat.amax(dim=1).double() - flat.amin(dim=1).double()  # (B,) as OpenCV's minMaxLoc doubles
    flat_image = (span.abs() < _FLT_EPSILON).view(batch, 1, 1)  # OpenCV copies such an image unchanged
    color_coeff = torch.tensor(-0.5 / (sigma_color * sigma_color), dtype=values.dtype, device=values.device)
    r = _BILATERAL_RADIUS
    padded = pad_reflect101(values, r)  # (B, H+4, W+4)
    weight_sum = torch.zeros_like(values)
    value_sum = torch.zeros_like(values)
    for dy, dx, space_weight in _space_offsets(sigma_space):
        neighbour = padded[:, r + dy : r + dy + height, r + dx : r + dx + width]  # (B, H, W)
        difference = neighbour - values
        weight = space_weight * torch.exp(difference * difference * color_coeff)  # (B, H, W)
        weight_sum += weight
        value_sum += neighbour * weight
    return torch.where(flat_image, values, value_sum / weight_sum)


def _first_valid_rows(values: Tensor) -> Tensor:
    """(B, W): per column, the first row > 0.1; an all-empty column gives row 0 (as `np.argmax`)."""
    return (values > VALID_THRESHOLD_M).to(torch.uint8).argmax(dim=1)


def _above_rows(values: Tensor, rows: Tensor) -> Tensor:
    """(B, H, W) mask of the pixels strictly above `rows[b, col]`."""
    heights = torch.arange(values.shape[1], device=values.device).view(1, -1, 1)
    return heights < rows.unsqueeze(1)


def _extend_top(values: Tensor, rows: Tensor) -> Tensor:
    """Copy each column's value at `rows[b, col]` into every row above it (§1.4 step 5a)."""
    top = values.gather(1, rows.unsqueeze(1))  # (B, 1, W)
    return torch.where(_above_rows(values, rows), top, values)


def _fill(values: Tensor, filler: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, filler, values)


def fill_in_fast_torch(
    depth_m: Tensor,
    *,
    max_depth: float = 100.0,
    extrapolate: bool = False,
    blur_type: str = "bilateral",
    custom_kernel: NDArray[np.uint8] | None = None,
) -> Tensor:
    """ip_basic's fast completion (§1.4) on a batch; equals `completion.fill_in_fast` per map.

    Args:
        depth_m: (B, H, W) or (H, W) float32 depth in metres, 0 = missing, on any device.
        max_depth, extrapolate, blur_type, custom_kernel: as `completion.fill_in_fast`.

    Returns:
        Completed depth in metres, same shape and device; values <= 0.1 are still missing. The input is
        not modified.

    Raises:
        ValueError: as `completion.fill_in_fast` (the input must be a float32 tensor).
    """
    depth = _check_depth(depth_m, max_depth)
    _check_blur_type(blur_type)
    kernel = _kernel(custom_kernel, DIAMOND_KERNEL_5, "custom_kernel")
    depth = _invert_valid(depth, max_depth)  # step 1 (a new tensor)
    depth = _close(dilate(depth, kernel), FULL_KERNEL_5)  # steps 2-3
    depth = _fill(depth, dilate(depth, FULL_KERNEL_7), depth < VALID_THRESHOLD_M)  # step 4
    if extrapolate:  # step 5
        depth = _extend_top(depth, _first_valid_rows(depth))
        depth = _fill(depth, dilate(depth, FULL_KERNEL_31), depth < VALID_THRESHOLD_M)
    depth = median_blur5(depth)  # step 6
    if blur_type == "bilateral":  # step 7
        depth = bilateral_filter5(depth, 1.5, 2.0)
    else:
        depth = _fill(depth, gaussian_blur5(depth), depth > VALID_THRESHOLD_M)
    depth = _invert_valid(depth, max_depth)  # step 8
    return depth if depth_m.ndim == 3 else depth.squeeze(0)


def _multiscale_dilate(s1: Tensor, depth: Tensor, kernels: Sequence[NDArray[np.uint8]]) -> Tensor:
    """§1.5 steps 1, 3, 4: per-bin dilation of S1 merged far, med, near (near wins) -> S2."""
    near = (depth > VALID_THRESHOLD_M) & (depth <= 15.0)
    med = (depth > 15.0) & (depth <= 30.0)
    far = depth > 30.0
    s2 = s1
    for mask, kernel in zip((far, med, near), kernels):
        dilated = dilate(s1 * mask, kernel)
        s2 = _fill(s2, dilated, dilated > VALID_THRESHOLD_M)
    return s2


def fill_in_multiscale_torch(
    depth_m: Tensor,
    *,
    max_depth: float = 100.0,
    extrapolate: bool = False,
    blur_type: str = "bilateral",
    dilation_kernel_far: NDArray[np.uint8] | None = None,
    dilation_kernel_med: NDArray[np.uint8] | None = None,
    dilation_kernel_near: NDArray[np.uint8] | None = None,
) -> Tensor:
    """ip_basic's multi-scale completion (§1.5) on a batch; equals `completion.fill_in_multiscale`.

    Args:
        depth_m: (B, H, W) or (H, W) float32 depth in metres, 0 = missing, on any device.
        max_depth, extrapolate, blur_type, dilation_kernel_*: as `completion.fill_in_multiscale`.

    Returns:
        Completed depth in metres, same shape and device; values <= 0.1 are still missing.

    Raises:
        ValueError: as `completion.fill_in_multiscale` (the input must be a float32 tensor).
    """
    depth = _check_depth(depth_m, max_depth)
    _check_blur_type(blur_type)
    kernels = (
        _kernel(dilation_kernel_far, CROSS_KERNEL_3, "dilation_kernel_far"),
        _kernel(dilation_kernel_med, CROSS_KERNEL_5, "dilation_kernel_med"),
        _kernel(dilation_kernel_near, CROSS_KERNEL_7, "dilation_kernel_near"),
    )
    s2 = _multiscale_dilate(_invert_valid(depth, max_depth), depth, kernels)  # steps 1-4
    s3 = _close(s2, FULL_KERNEL_5)  # step 5
    s4 = _fill(s3, median_blur5(s3), s3 > VALID_THRESHOLD_M)  # step 6
    top_mask = ~_above_rows(s4, _first_valid_rows(s4))  # step 7
    s5 = _fill(s4, dilate(s4, FULL_KERNEL_9), (s4 <= VALID_THRESHOLD_M) & top_mask)  # step 8
    top_rows = _first_valid_rows(s5)  # step 9
    if extrapolate:
        s7 = _extend_top(s5, top_rows)
        top_mask = torch.ones_like(top_mask)
    else:
        s7 = s5
        top_mask = ~_above_rows(s5, top_rows)
    for _ in range(6):  # step 10: the empty mask is recomputed in every iteration
        s7 = _fill(s7, dilate(s7, FULL_KERNEL_5), (s7 < VALID_THRESHOLD_M) & top_mask)
    valid = (s7 > VALID_THRESHOLD_M) & top_mask  # step 11: mask computed before the write
    s7 = _fill(s7, median_blur5(s7), valid)
    if blur_type == "gaussian":  # step 12
        s7 = _fill(s7, gaussian_blur5(s7), (s7 > VALID_THRESHOLD_M) & top_mask)
    else:
        s7 = _fill(s7, bilateral_filter5(s7, 0.5, 2.0), valid)  # the OLD mask, as the original
    s7 = _invert_valid(s7, max_depth)  # step 13
    return s7 if depth_m.ndim == 3 else s7.squeeze(0)


def complete_depth_torch(
    depth_m: Tensor,
    *,
    method: str,
    max_depth: float = 100.0,
    extrapolate: bool = False,
    blur_type: str = "bilateral",
    device: str | torch.device | None = None,
) -> Tensor:
    """Complete a batch with `method` ("fast" or "multiscale") and zero the "still missing" residues.

    The same post-processing as prepare-depth's numpy path: values <= 0.1 m become 0 (missing).

    Args:
        depth_m: (B, H, W) or (H, W) float32 metres, 0 = missing.
        method: "fast" (§1.4) or "multiscale" (§1.5), default kernels.
        max_depth, extrapolate, blur_type: as the fill functions.
        device: Where to compute (default: the input's device); the result stays there.

    Returns:
        Completed float32 depth in metres, 0 = missing, same shape as `depth_m`.

    Raises:
        ValueError: an unknown `method`, or a bad input (see the fill functions).
    """
    if method not in COMPLETION_METHODS:
        raise ValueError(f"method must be one of {', '.join(COMPLETION_METHODS)}, got {method!r}")
    if not isinstance(depth_m, Tensor):
        raise ValueError(f"depth_m must be a torch.Tensor, got {type(depth_m).__name__}")
    if device is not None:
        depth_m = depth_m.to(device)
    fill = fill_in_fast_torch if method == "fast" else fill_in_multiscale_torch
    filled = fill(depth_m, max_depth=max_depth, extrapolate=extrapolate, blur_type=blur_type)
    return torch.where(
        filled > VALID_THRESHOLD_M, filled, torch.zeros((), dtype=filled.dtype, device=filled.device)
    )
