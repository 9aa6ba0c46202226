"""HHA encoding of depth, batched torch back-end (GPU when available).

The only `fusionseg.modalities` module that imports torch. Same algorithm, constants and channel
order as the numpy back-end `fusionseg.modalities.hha` (reference spec
/work/shared/reference/modalities.md §3; sections cited below), computed in float64 throughout:
the plane-fit cofactors subtract nearly equal window sums, which float32 cannot resolve.

Differences from the numpy back-end, none of them visible in the 8-bit output on real frames:
window sums use separable cumulative sums instead of OpenCV's running box filter, and the gravity
iterations re-classify every normal in every iteration (no incremental shortcut); both differ
only in floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fusionseg.modalities.hha import (
    ANGLE_SLACK_DEG,
    DISPARITY_SCALE,
    FLOOR_FALLBACK_CM,
    FLOOR_SEARCH_CM,
    GRAVITY_STAGES,
    INITIAL_GRAVITY,
    MIN_DISPARITY_DEPTH_CM,
    MIN_ROTATION_DEG,
    NORMAL_RADII_PX,
    RIGHT_ANGLE_DEG,
)
from fusionseg.modalities.intrinsics import Intrinsics
from fusionseg.modalities.normals import MAX_DEPTH_M

__all__ = ["hha_torch"]


def _check_depth(depth: object, name: str, *, allow_all_zero: bool) -> Tensor:
    """Validate a (H, W) or (B, H, W) depth tensor; returns it as float64 (B, H, W), a new tensor."""
    if isinstance(depth, np.ndarray):
        depth = torch.from_numpy(depth)
    if not isinstance(depth, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(depth).__name__}")
    if depth.ndim not in (2, 3):
        raise ValueError(f"{name} must be (H, W) or (B, H, W), got shape {tuple(depth.shape)}")
    if depth.dtype == torch.bool or depth.is_complex():
        raise ValueError(f"{name} must have a real numeric dtype, got {depth.dtype}")
    if depth.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(depth.shape)}")
    out = depth.to(torch.float64, copy=True)
    if out.ndim == 2:
        out = out.unsqueeze(0)  # (1, H, W)
    if not torch.isfinite(out).all():
        raise ValueError(f"{name} must be finite (0 = missing), got NaN or inf")
    if (out < 0).any():
        raise ValueError(f"{name} must be >= 0 (0 = missing), got minimum {out.min().item():g}")
    if out.max() > MAX_DEPTH_M:
        peak = out.max().item()
        raise ValueError(f"{name} holds {peak:g} m, above {MAX_DEPTH_M:g} m: not metres (wrong unit?)")
    if not allow_all_zero:
        empty = ~(out != 0).flatten(1).any(dim=1)  # (B,)
        if empty.any():
            index = int(torch.nonzero(empty)[0])
            raise ValueError(f"{name} has no valid (non-zero) pixel in batch item {index}")
    return out


def _intrinsics_tensor(intrinsics: object, batch: int, device: torch.device) -> Tensor:
    """(B, 4) float64 rows fx, fy, cx, cy from one Intrinsics or a sequence of B of them."""
    items = [intrinsics] * batch if isinstance(intrinsics, Intrinsics) else intrinsics
    if not isinstance(items, Sequence) or not all(isinstance(k, Intrinsics) for k in items):
        raise ValueError(
            f"intrinsics must be an Intrinsics or a sequence of them, got {type(intrinsics).__name__}"
        )
    if len(items) != batch:
        raise ValueError(f"intrinsics must have one entry per batch item ({batch}), got {len(items)}")
    rows = [[k.fx, k.fy, k.cx, k.cy] for k in items]
    return torch.tensor(rows, dtype=torch.float64, device=device)


def _box_sum(planes: Tensor, radius: int) -> Tensor:
    """(2R+1)^2 window sums over the last two dims with zero padding (MATLAB filter2 'same')."""
    size = 2 * radius + 1
    out = planes
    for dim in (-1, -2):
        length = out.shape[dim]
        pad = (radius + 1, radius) if dim == -1 else (0, 0, radius + 1, radius)
        cumulative = torch.nn.functional.pad(out, pad).cumsum(dim)  # (..., L + 2R + 1)
        out = cumulative.narrow(dim, size, length) - cumulative.narrow(dim, 0, length)
    return out


def _normals(moments: Tensor, radius: int, points: Tensor) -> Tensor:
    """Unit normals (B, 3, H, W) from (B, 9, H, W) moments (§3.3 steps 3-5), NaN if undefined."""
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = _box_sum(moments, radius).unbind(1)  # (B, H, W) each
    # §3.3 step 4: n = adj(A^T A) A^T t, cofactors as in Gupta's invertIt
    c11 = a4 * a6 - a5 * a5
    c12 = a3 * a5 - a2 * a6
    c13 = a2 * a5 - a3 * a4
    c22 = a1 * a6 - a3 * a3
    c23 = a2 * a3 - a1 * a5
    c33 = a1 * a4 - a2 * a2
    n = torch.stack(
        [c11 * b1 + c12 * b2 + c13 * b3, c12 * b1 + c22 * b2 + c23 * b3, c13 * b1 + c23 * b2 + c33 * b3],
        dim=1,
    )  # (B, 3, H, W)
    # NaN where the window held fewer than two valid points (a6 is their exact count), as the
    # exact sums of MATLAB's filter2 give adj = 0 and 0/0 there (see normals._solve_normals)
    norm = torch.where(a6 < 2, torch.nan, n.norm(dim=1))  # (B, H, W)
    n = n / norm.unsqueeze(1)
    # §3.3 step 5: flip by sign(n_z) (0 -> +1), then by sign(n.P) (NaN, 0 -> +1)
    n = torch.where(n[:, 2:3] < 0, -n, n)
    return torch.where((n * points).sum(dim=1, keepdim=True) < 0, -n, n)


def _gravity(normals: Tensor) -> Tensor:
    """getYDir (§3.4) per batch item: (B, 3, H, W) normals -> (B, 3) unit gravity (down)."""
    batch = normals.shape[0]
    # undefined normals -> 0: they add nothing to either sum, like MATLAB dropping them
    n = torch.nan_to_num(normals.flatten(2), nan=0.0)  # (B, 3, K)
    y = torch.tensor(INITIAL_GRAVITY, dtype=n.dtype, device=n.device).expand(batch, 3).clone()
    for threshold_deg, iterations in GRAVITY_STAGES:
        cos_t = float(np.cos(np.deg2rad(threshold_deg)))
        sin_t = float(np.sin(np.deg2rad(threshold_deg)))
        for _ in range(iterations):
            similarity = torch.einsum("bc,bck->bk", y, n).abs()  # (B, K) |y.n|
            weight = (similarity < sin_t).to(n.dtype) - (similarity > cos_t).to(n.dtype)  # (B, K)
            a = torch.einsum("bik,bjk->bij", n * weight.unsqueeze(1), n)  # (B, 3, 3)
            _, vectors = torch.linalg.eigh(a)  # ascending eigenvalues
            new_y = vectors[..., 0]  # (B, 3)
            new_y = torch.where((y * new_y).sum(1, keepdim=True) < 0, -new_y, new_y)
            # deviation (as in the numpy back-end): keep y where nothing was classified
            usable = a.flatten(1).ne(0).any(dim=1, keepdim=True)  # (B, 1)
            y = torch.where(usable, new_y, y)
    return y


def _rotation(gravity: Tensor) -> Tensor:
    """getRMatrix (§3.5 step 1): (B, 3) -> (B, 3, 3) rotations taking (0, 1, 0) to gravity."""
    y0 = torch.tensor(INITIAL_GRAVITY, dtype=gravity.dtype, device=gravity.device).expand_as(gravity)
    yf = gravity / gravity.norm(dim=1, keepdim=True)
    phi = torch.rad2deg(torch.arccos((y0 * yf).sum(1).clamp(-1.0, 1.0)))  # (B,) no abs()
    axis = torch.linalg.cross(y0, yf)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(torch.finfo(axis.dtype).tiny)
    zero = torch.zeros_like(phi)
    k = torch.stack(
        [
            torch.stack([zero, -axis[:, 2], axis[:, 1]], 1),
            torch.stack([axis[:, 2], zero, -axis[:, 0]], 1),
            torch.stack([-axis[:, 1], axis[:, 0], zero], 1),
        ],
        1,
    )  # (B, 3, 3) cross-product matrix
    phi_rad = torch.deg2rad(phi)[:, None, None]
    eye = torch.eye(3, dtype=gravity.dtype, device=gravity.device).expand_as(k)
    rotation = eye + torch.sin(phi_rad) * k + (1.0 - torch.cos(phi_rad)) * (k @ k)
    return torch.where((phi.abs() <= MIN_ROTATION_DEG)[:, None, None], eye, rotation)


def _round_to_uint8(values: Tensor) -> Tensor:
    """MATLAB uint8(): round half away from zero, saturate to [0, 255], NaN -> 0 (§3.6)."""
    x = torch.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0).clamp(0.0, 255.0)
    rounded = torch.floor(x)
    rounded = rounded + (x - rounded >= 0.5).to(x.dtype)
    return rounded.to(torch.uint8)


def _moments(z: Tensor, missing: Tensor, x_over_z: Tensor, y_over_z: Tensor) -> Tensor:
    """§3.3 steps 1-2: per-pixel terms of a.a^T and a.t, a = (X/Z, Y/Z, 1), t = 1/Z; 0 if missing.

    Args:
        z: (B, H, W) depth in cm; missing: (B, H, W) bool; x_over_z: (B, 1, W); y_over_z: (B, H, 1).

    Returns:
        (B, 9, H, W): xx, xy, x, yy, y, 1, x/Z, y/Z, 1/Z (each times the valid mask).
    """
    one = (~missing).to(torch.float64)  # (B, H, W)
    inv_z = torch.where(missing, torch.zeros_like(z), 1.0 / torch.where(missing, 1.0, z))
    return torch.stack(
        [
            one * (x_over_z * x_over_z),
            one * (x_over_z * y_over_z),
            one * x_over_z,
            one * (y_over_z * y_over_z),
            one * y_over_z,
            one,
            inv_z * x_over_z,
            inv_z * y_over_z,
            inv_z,
        ],
        dim=1,
    )  # (B, 9, H, W)


def hha_torch(
    depth_m: Tensor,
    intrinsics: Intrinsics | Sequence[Intrinsics],
    *,
    raw_depth_m: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Encode a batch of depth images as HHA on the GPU (or CPU), in float64.

    Args:
        depth_m: (B, H, W) or (H, W) completed depth in metres, finite, >= 0, 0 = missing, with
            at least one valid pixel per image (a numpy array is accepted too).
        intrinsics: One `Intrinsics` for the whole batch or a sequence of B of them (0-based
            pixel centres).
        raw_depth_m: Raw depth of the same shape whose zeros mark missing pixels (§3.1); default:
            the zeros of `depth_m` (RD = D).
        device: Where to compute; default CUDA when available, else the device of `depth_m`.

    Returns:
        (B, H, W, 3) uint8 tensor on the compute device, channels (disparity, height, angle) as
        in `fusionseg.modalities.hha.hha` (the MATLAB file's R, G, B order; reverse the last
        dim for OpenCV).

    Raises:
        ValueError: bad shape, dtype or values of an argument (the message names it).
    """
    depth = _check_depth(depth_m, "depth_m", allow_all_zero=False)  # (B, H, W) float64
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else depth.device
    depth = depth.to(device)
    batch, height, width = depth.shape
    missing = depth == 0
    if raw_depth_m is not None:
        raw = _check_depth(raw_depth_m, "raw_depth_m", allow_all_zero=True)
        if raw.shape != depth.shape:
            raise ValueError(
                f"raw_depth_m must have the shape of depth_m {tuple(depth.shape)}, got {tuple(raw.shape)}"
            )
        missing |= raw.to(device) == 0
    fx, fy, cx, cy = _intrinsics_tensor(intrinsics, batch, device).T[:, :, None, None]  # (B, 1, 1)

    # §3.1 centimetres; §3.2 unmasked point cloud, same operation order as getPointCloudFromZ
    z = depth * 100.0  # (B, H, W)
    u = torch.arange(width, dtype=torch.float64, device=device)[None, None, :]  # (1, 1, W)
    v = torch.arange(height, dtype=torch.float64, device=device)[None, :, None]  # (1, H, 1)
    points = torch.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], dim=1)  # (B, 3, H, W)

    moments = _moments(z, missing, (u - cx) / fx, (v - cy) / fy)  # (B, 9, H, W)
    normals, normals_gravity = (_normals(moments, r, points) for r in NORMAL_RADII_PX)
    gravity = _gravity(normals_gravity)  # (B, 3), §3.4 from the 21x21 normals

    # §3.5 steps 1-3: height = -(R^T p)_y, floor rule per image
    rotation = _rotation(gravity)  # (B, 3, 3)
    height_cm = -torch.einsum("bc,bchw->bhw", rotation[:, :, 1], points)  # (B, H, W)
    floor_cm = height_cm.flatten(1).amin(dim=1)  # (B,)
    floor_cm = torch.where(floor_cm > FLOOR_SEARCH_CM, FLOOR_FALLBACK_CM, floor_cm)
    height_cm = height_cm - floor_cm[:, None, None]
    # §3.5 step 4: angle with gravity of the 7x7 normals, NaN -> 180 (MATLAB max(-1, NaN))
    cosine = torch.einsum("bc,bchw->bhw", gravity, normals).clamp(-1.0, 1.0)
    angle_deg = torch.rad2deg(torch.arccos(torch.nan_to_num(cosine, nan=-1.0)))
    # §3.6: disparity, height, angle + 38, MATLAB uint8 rounding
    disparity = DISPARITY_SCALE / z.clamp_min(MIN_DISPARITY_DEPTH_CM)
    angle_channel = angle_deg + ANGLE_SLACK_DEG - RIGHT_ANGLE_DEG  # saveHHA's order of operations
    channels = torch.stack([disparity, height_cm, angle_channel], dim=-1)  # (B, H, W, 3)
    return _round_to_uint8(channels)
