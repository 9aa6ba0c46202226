"""Per-frame work (runs in worker processes): read depth and NIR, complete, encode and write the products."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionseg.data.prepare.intrinsics import read_intrinsics_file
from fusionseg.data.prepare.options import (
    DEPTH_PRODUCTS,
    GEOMETRY_PRODUCTS,
    SPECTRAL_PRODUCTS,
    PrepareOptions,
)
from fusionseg.data.prepare.resume import output_intact
from fusionseg.data.prepare.tasks import FrameResult, FrameTask
from fusionseg.errors import DataError, FusionsegError
from fusionseg.modalities.intrinsics import Intrinsics


@dataclass(frozen=True)
class _Context:
    """Per-run settings sent to every worker with its task."""

    options: PrepareOptions
    depth_scale_m: float | None
    filled_scale_m: float | None
    intrinsics: Intrinsics | None
    hha_on_main: bool  # leave HHA to the main process (batched torch backend)


@dataclass(frozen=True)
class _HHAJob:
    """Inputs of a deferred HHA computation (torch backend)."""

    depth_m: np.ndarray
    raw_depth_m: np.ndarray | None
    intrinsics: Intrinsics
    out: Path


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header when Pillow knows the format (no decoding)."""
    from fusionseg.data.io import read_image, read_image_header

    header = read_image_header(path, unknown_ok=True)
    if header is not None:
        return header.height_px, header.width_px
    return read_image(path).shape[:2]


def _check_same_size(path: Path, shape_hw: tuple[int, int], reference: Path) -> None:
    size = _image_size(path)
    if tuple(size) != tuple(shape_hw):
        raise DataError(
            f"{path}: size {size[1]}x{size[0]} does not match the depth {reference.name} "
            f"({shape_hw[1]}x{shape_hw[0]}, width x height)"
        )


def _frame_intrinsics(task: FrameTask, ctx: _Context) -> Intrinsics:
    if ctx.intrinsics is not None:
        return ctx.intrinsics
    if task.intrinsics_file is None:
        raise DataError(
            f"{task.primary}: no camera intrinsics for this frame (needed by hha/normals); "
            "pass `intrinsics` or fill its intrinsics column"
        )
    return read_intrinsics_file(task.intrinsics_file)


def _complete(depth_m: np.ndarray, options: PrepareOptions) -> np.ndarray:
    """ip_basic completion (§1.4 / §1.5) with its "still missing" residues (<= 0.1 m, §1.2) set to 0."""
    from fusionseg.modalities import completion

    if options.completion_backend == "torch":
        return _complete_torch(depth_m, options)
    fill = completion.fill_in_fast if options.complete == "fast" else completion.fill_in_multiscale
    filled = fill(
        depth_m, max_depth=options.max_depth_m, extrapolate=options.extrapolate, blur_type=options.blur
    )
    # 0 means missing everywhere downstream (HHA mask, JET black, 16-bit file)
    return np.where(filled > completion.VALID_THRESHOLD_M, filled, np.float32(0.0)).astype(np.float32)


def _complete_torch(depth_m: np.ndarray, options: PrepareOptions) -> np.ndarray:
    """`_complete` with the batched torch back-end on `options.device` (a batch of one frame)."""
    import torch

    from fusionseg.modalities.completion_torch import complete_depth_torch

    filled = complete_depth_torch(
        torch.from_numpy(depth_m)[None],  # (1, H, W) m
        method=options.complete,
        max_depth=options.max_depth_m,
        extrapolate=options.extrapolate,
        blur_type=options.blur,
        device=options.device,
    )
    return filled[0].cpu().numpy()


def _hha_bgr(depth_m: np.ndarray, intr: Intrinsics, raw_depth_m: np.ndarray | None) -> np.ndarray:
    from fusionseg.modalities.hha import hha, hha_to_bgr

    # hha() returns (disparity, height, angle), the file's R, G, B order (§3.6); cv2 writes BGR
    return hha_to_bgr(hha(depth_m, intr, raw_depth_m=raw_depth_m))


def _compute_frame(task: FrameTask, ctx: _Context) -> tuple[dict[str, np.ndarray], list[_HHAJob]]:
    """Images for the outputs of `task` that do not exist yet (all of them with `overwrite`)."""
    from fusionseg.data.io import depth_to_png_units, read_depth, read_gray, read_image

    opts = ctx.options
    todo = [p for p, out in task.outputs.items() if opts.overwrite or not output_intact(out, p)]
    images: dict[str, np.ndarray] = {}
    deferred: list[_HHAJob] = []
    if any(p in DEPTH_PRODUCTS for p in todo):
        assert task.depth is not None and ctx.depth_scale_m is not None
        # unit (against the sensor's range), all-zero and dtype checks
        raw_m = read_depth(task.depth, depth_scale_m=ctx.depth_scale_m, sensor=opts.depth_sensor)
        if task.rgb is not None:
            _check_same_size(task.rgb, raw_m.shape, task.depth)
        intr = _frame_intrinsics(task, ctx) if any(p in GEOMETRY_PRODUCTS for p in todo) else None
        depth_m = _complete(raw_m, opts) if opts.complete != "none" else raw_m
        # §3.1: the completed depth feeds HHA, the raw input only gives the missing mask
        raw_for_hha = raw_m if opts.complete != "none" else None
        if "depth_filled" in todo:
            images["depth_filled"] = depth_to_png_units(depth_m, depth_scale_m=ctx.filled_scale_m)
        if "hha" in todo:
            assert intr is not None
            if ctx.hha_on_main:
                deferred.append(_HHAJob(depth_m, raw_for_hha, intr, task.outputs["hha"]))
            else:
                images["hha"] = _hha_bgr(depth_m, intr, raw_for_hha)
        if "jet" in todo:
            from fusionseg.modalities.jet import depth_to_jet

            images["jet"] = depth_to_jet(depth_m, max_depth_m=opts.jet_max_depth_m, order="bgr")
        if "normals" in todo:
            from fusionseg.modalities.normals import compute_normals, normals_to_uint8

            normals = compute_normals(depth_m, intr, radius_px=opts.normals_radius_px)
            images["normals"] = normals_to_uint8(normals, order="bgr")
    if any(p in SPECTRAL_PRODUCTS for p in todo):
        from fusionseg.modalities import evi as evi_mod

        assert task.nir is not None and task.rgb is not None
        nir = read_gray(task.nir)
        bgr = read_image(task.rgb)
        if bgr.shape[:2] != nir.shape:
            raise DataError(
                f"{task.rgb}: size {bgr.shape[1]}x{bgr.shape[0]} does not match the NIR "
                f"{task.nir.name} ({nir.shape[1]}x{nir.shape[0]}, width x height)"
            )
        if "evi" in todo:
            images["evi"] = evi_mod.encode_evi(nir, bgr)
        if "ndvi" in todo:
            images["ndvi"] = evi_mod.encode_ndvi(nir, bgr)
    return images, deferred


def process_frame(task: FrameTask, ctx: _Context) -> tuple[FrameResult, list[_HHAJob]]:
    """Compute and write one frame's missing outputs; failures are returned, never raised.

    Returns:
        The frame's result and, with the torch HHA backend, the HHA inputs left to the main process.
    """
    from fusionseg.data.io import write_png

    start = time.perf_counter()
    primary = str(task.primary or "")
    try:
        images, deferred = _compute_frame(task, ctx)
        for product, image in images.items():
            write_png(task.outputs[product], image)
    except FusionsegError as exc:
        return FrameResult(task.id, "failed", str(exc), primary, (), time.perf_counter() - start), []
    except MemoryError:
        msg = f"{primary}: out of memory while processing this frame"
        return FrameResult(task.id, "failed", msg, primary, (), time.perf_counter() - start), []
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the batch
        msg = f"{primary}: {type(exc).__name__}: {exc}"
        return FrameResult(task.id, "failed", msg, primary, (), time.perf_counter() - start), []
    written = tuple(images) + tuple("hha" for _ in deferred)
    return FrameResult(task.id, "done", "", primary, written, time.perf_counter() - start), deferred
