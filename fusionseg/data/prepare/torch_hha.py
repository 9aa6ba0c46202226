"""HHA with the torch back-end in the main process, batched over frames of one size (`--device cuda`)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from fusionseg.data.prepare.frame import _HHAJob
from fusionseg.data.prepare.tasks import FrameResult
from fusionseg.errors import ConfigError, FusionsegError

if TYPE_CHECKING:
    import torch

HHA_BATCH = 8  # frames per GPU batch with hha_backend="torch"


def check_torch_device(device: str) -> torch.device:
    """The torch device of the torch back-ends (HHA, completion), or ConfigError if CUDA is missing."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device: {device!r}: CUDA is not available to torch {torch.__version__} on this machine; "
            "use `device` cpu"
        )
    return torch.device(device)


class _TorchHHA:
    """Batched HHA with `hha_torch` in the main process (``--device cuda``)."""

    def __init__(self, device: str) -> None:
        self.device = check_torch_device(device)

    def flush(self, pending: dict[str, tuple[FrameResult, list[_HHAJob]]]) -> list[FrameResult]:
        """Compute and write the pending HHA images in batches of equal size; empties `pending`."""
        import torch

        from fusionseg.data.io import write_png
        from fusionseg.modalities.hha_torch import hha_torch

        groups: dict[tuple[tuple[int, int], bool], list[tuple[str, _HHAJob]]] = {}
        for frame_id, (_, jobs) in pending.items():
            for job in jobs:
                key = (job.depth_m.shape, job.raw_depth_m is not None)
                groups.setdefault(key, []).append((frame_id, job))
        failed: dict[str, str] = {}
        for (_, has_raw), items in groups.items():
            try:
                depth = torch.from_numpy(np.stack([job.depth_m for _, job in items]))  # (B, H, W) m
                raw = torch.from_numpy(np.stack([job.raw_depth_m for _, job in items])) if has_raw else None
                intr = [job.intrinsics for _, job in items]
                hha_u8 = hha_torch(depth, intr, raw_depth_m=raw, device=self.device)  # (B, H, W, 3)
                images = hha_u8.cpu().numpy()
                for (frame_id, job), image in zip(items, images):
                    try:
                        write_png(job.out, np.ascontiguousarray(image[..., ::-1]))  # RGB file order -> BGR
                    except FusionsegError as exc:
                        failed[frame_id] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a failed batch fails its frames, not the run
                for frame_id, _ in items:
                    failed[frame_id] = f"HHA ({self.device}) failed: {type(exc).__name__}: {exc}"
        results = []
        for frame_id, (res, _) in pending.items():
            if frame_id in failed:
                res = replace(res, status="failed", message=f"{res.file}: {failed[frame_id]}", written=())
            results.append(res)
        pending.clear()
        return results
