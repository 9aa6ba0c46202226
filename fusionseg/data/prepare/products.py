"""The products of one frame from arrays in memory: the one implementation behind `prepare-depth` and
on-the-fly inputs (`fusionseg.data.recipe`, `Segmenter.predict_raw`), so both give identical pixels.

No I/O here: the callers read files (prepare-depth) or take sensor arrays (a robot) and write or feed
what these functions return.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
from numpy.typing import NDArray

from fusionseg.data.prepare.options import PrepareOptions
from fusionseg.modalities.intrinsics import Intrinsics


def complete_depth(depth_m: NDArray[np.float32], options: PrepareOptions) -> NDArray[np.float32]:
    """ip_basic completion (modalities.md §1.4 / §1.5) with its "still missing" residues (<= 0.1 m,
    §1.2) set to 0, the missing value everywhere else in fusionseg.

    Args:
        depth_m: (H, W) float32 metres, 0 = missing.
        options: `complete` ("fast" or "multiscale"), `extrapolate`, `blur`, `max_depth_m`; with
            `completion_backend` "torch", the batched torch port on `options.device` (within 1e-4 m).

    Returns:
        (H, W) float32 metres; the input when `options.complete` is "none".
    """
    from fusionseg.modalities import completion

    if options.complete == "none":
        return depth_m
    if options.completion_backend == "torch":
        return _complete_torch(depth_m, options)
    fill = completion.fill_in_fast if options.complete == "fast" else completion.fill_in_multiscale
    filled = fill(
        depth_m, max_depth=options.max_depth_m, extrapolate=options.extrapolate, blur_type=options.blur
    )
    return np.where(filled > completion.VALID_THRESHOLD_M, filled, np.float32(0.0)).astype(np.float32)


def _complete_torch(depth_m: NDArray[np.float32], options: PrepareOptions) -> NDArray[np.float32]:
    """`complete_depth` by the torch back-end, a batch of one frame."""
    return complete_depth_batch_torch(depth_m[None], options)[0]


def complete_depth_batch_torch(depth_m: NDArray[np.float32], options: PrepareOptions) -> NDArray[np.float32]:
    """`complete_depth` of a (B, H, W) float32 batch (metres) at once by `modalities.completion_torch`
    on `options.device` (within 1e-4 m of the numpy port); returns (B, H, W) float32 metres."""
    import torch

    from fusionseg.modalities.completion_torch import complete_depth_torch

    filled = complete_depth_torch(
        torch.from_numpy(depth_m),  # (B, H, W) m
        method=options.complete,
        max_depth=options.max_depth_m,
        extrapolate=options.extrapolate,
        blur_type=options.blur,
        device=options.device,
    )
    return filled.cpu().numpy()


def depth_products(
    raw_m: NDArray[np.float32],
    options: PrepareOptions,
    products: Collection[str],
    *,
    intrinsics: Intrinsics | None,
    filled_scale_m: float | None,
    completed_m: NDArray[np.float32] | None = None,
) -> tuple[dict[str, np.ndarray], NDArray[np.float32]]:
    """The depth products of one frame, as prepare-depth writes them.

    Args:
        raw_m: (H, W) float32 raw depth in metres, 0 = missing.
        options: Completion, JET and normal settings.
        products: Any of "depth_filled", "hha", "jet", "normals".
        intrinsics: 0-based pixel intrinsics at this size (needed by "hha" and "normals").
        filled_scale_m: Metres per stored unit of "depth_filled" (needed by it).
        completed_m: `complete_depth(raw_m, options)` when the caller has it already (the pipeline
            benchmark times the completion on its own); computed here otherwise.

    Returns:
        (product -> image, completed depth): "depth_filled" (H, W) uint16 in `filled_scale_m`; "hha",
        "jet", "normals" (H, W, 3) uint8 in OpenCV's B, G, R order; the completed (H, W) float32
        metres (`raw_m` itself without completion).
    """
    depth_m = complete_depth(raw_m, options) if completed_m is None else completed_m
    images: dict[str, np.ndarray] = {}
    if "depth_filled" in products:
        from fusionseg.data.io import depth_to_png_units

        assert filled_scale_m is not None
        images["depth_filled"] = depth_to_png_units(depth_m, depth_scale_m=filled_scale_m)
    if "hha" in products:
        from fusionseg.modalities.hha import hha, hha_to_bgr

        assert intrinsics is not None
        # §3.1: the completed depth feeds HHA, the raw input only gives the missing mask; hha() returns
        # (disparity, height, angle), the file's R, G, B order (§3.6)
        raw_for_hha = raw_m if options.complete != "none" else None
        images["hha"] = hha_to_bgr(hha(depth_m, intrinsics, raw_depth_m=raw_for_hha))
    if "jet" in products:
        from fusionseg.modalities.jet import depth_to_jet

        images["jet"] = depth_to_jet(depth_m, max_depth_m=options.jet_max_depth_m, order="bgr")
    if "normals" in products:
        from fusionseg.modalities.normals import compute_normals, normals_to_uint8

        assert intrinsics is not None
        normals = compute_normals(depth_m, intrinsics, radius_px=options.normals_radius_px)
        images["normals"] = normals_to_uint8(normals, order="bgr")
    return images, depth_m


def spectral_products(
    nir: NDArray[np.uint8], bgr: NDArray[np.uint8], products: Collection[str]
) -> dict[str, NDArray[np.uint8]]:
    """Colour-coded vegetation indices (modalities.md §4) of one frame.

    Args:
        nir: (H, W) uint8 near-infrared.
        bgr: (H, W, 3) uint8 colour image in OpenCV's B, G, R order, same size.
        products: Any of "evi", "ndvi".

    Returns:
        product -> (H, W, 3) uint8 B, G, R image.
    """
    from fusionseg.modalities import evi as evi_mod

    images: dict[str, NDArray[np.uint8]] = {}
    if "evi" in products:
        images["evi"] = evi_mod.encode_evi(nir, bgr)
    if "ndvi" in products:
        images["ndvi"] = evi_mod.encode_ndvi(nir, bgr)
    return images
