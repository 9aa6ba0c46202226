"""The dataset writer job behind `fusionseg make-synthetic`: frames to files, list files and meta.json."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fusionseg
from fusionseg.config import SyntheticConfig, config_to_dict
from fusionseg.data.catalog import SYNTHETIC
from fusionseg.data.io import write_depth, write_png
from fusionseg.data.listfile import write_list
from fusionseg.data.pool import run_in_pool, single_threaded
from fusionseg.data.synthetic.params import FrameParams, check_config, frame_intrinsics, frame_params
from fusionseg.data.synthetic.render import render_frame
from fusionseg.errors import DataError
from fusionseg.fsutil import atomic_write_text, ensure_writable_dir

GENERATOR_NAME = "fusionseg.synthetic"
# Bump whenever the same (seed, index, config) would render different pixels.
GENERATOR_VERSION = 1

COLUMNS: tuple[str, ...] = ("rgb", "depth", "depth_raw", "depth_sparse", "nir", "label")
SPLITS: tuple[str, ...] = ("train", "val")
DEPTH_SCALE_M = 0.001  # depth PNGs store millimetres


def frame_paths(root: Path, params: FrameParams) -> dict[str, Path]:
    """Column -> file of one frame: `<root>/<split>/<column>/<id>.png`."""
    return {col: root / params.split / col / f"{params.id}.png" for col in COLUMNS}


def _write_frame(index: int, cfg: SyntheticConfig, root: str, nthreads: int) -> int:
    """Render frame `index` and write its files (runs in worker processes)."""
    arrays = render_frame(index, cfg, nthreads=nthreads)
    paths = frame_paths(Path(root), frame_params(index, cfg))
    write_png(paths["rgb"], np.ascontiguousarray(arrays["rgb"][:, :, ::-1]))  # files are BGR
    for col in ("depth", "depth_raw", "depth_sparse"):
        write_depth(paths[col], arrays[col], depth_scale_m=DEPTH_SCALE_M)
    write_png(paths["nir"], arrays["nir"])
    write_png(paths["label"], arrays["label"])
    return index


def _meta(cfg: SyntheticConfig, frames: list[FrameParams], *, complete: bool) -> dict[str, Any]:
    settings = config_to_dict(cfg)
    settings.pop("workers")
    return {
        "generator": {
            "name": GENERATOR_NAME,
            "version": GENERATOR_VERSION,
            "fusionseg": fusionseg.__version__,
        },
        "complete": complete,
        "seed": cfg.seed,
        "config": settings,
        "classes": list(SYNTHETIC.classes),
        "palette": [list(c) for c in SYNTHETIC.palette],
        "columns": list(COLUMNS),
        "image_size": {"height_px": cfg.height_px, "width_px": cfg.width_px},
        "intrinsics": frame_intrinsics(cfg).as_dict(),
        "depth_unit": "mm",
        "depth_scale_m": DEPTH_SCALE_M,
        "coordinates": "camera x right, y down, z forward; gravity_cam points down",
        "frames": [p.as_dict() for p in frames],
    }


def _meta_json(meta: dict[str, Any]) -> str:
    """meta.json text: one line per top-level key and one line per frame (diff- and grep-friendly)."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in meta.items() if key != "frames"]
    frames = ",\n".join(f"    {json.dumps(frame)}" for frame in meta["frames"])
    return "{\n" + "\n".join(lines) + '\n  "frames": [\n' + frames + "\n  ]\n}\n"


def _check_existing_meta(path: Path, current: dict[str, Any]) -> None:
    """Refuse to add frames to a folder generated with other settings (resuming must be consistent)."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read existing meta.json ({exc}); use an empty output folder"
        ) from None
    ignore = {"num_frames"}
    old_cfg = {k: v for k, v in (old.get("config") or {}).items() if k not in ignore}
    new_cfg = {k: v for k, v in current["config"].items() if k not in ignore}
    if old.get("generator", {}).get("version") != GENERATOR_VERSION or old_cfg != new_cfg:
        differ = sorted(k for k in new_cfg.keys() | old_cfg.keys() if old_cfg.get(k) != new_cfg.get(k))
        what = f"synthetic.{', synthetic.'.join(differ)}" if differ else "generator version"
        raise DataError(
            f"{path}: folder was generated with different settings ({what}); use another `out_dir`"
        )


@dataclass(frozen=True)
class SyntheticSummary:
    """What `generate_dataset` did.

    Attributes:
        out_dir: Dataset root.
        num_frames: Frames in the dataset.
        num_rendered: Frames rendered in this call.
        num_skipped: Frames whose files all existed already.
        num_train: Frames in train.txt.
        num_val: Frames in val.txt.
        workers: Processes used.
        seconds: Wall time of the call.
        meta_path: The meta.json file.
        list_paths: Split -> list file.
    """

    out_dir: Path
    num_frames: int
    num_rendered: int
    num_skipped: int
    num_train: int
    num_val: int
    workers: int
    seconds: float
    meta_path: Path
    list_paths: dict[str, Path]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        out = asdict(self)
        out["out_dir"], out["meta_path"] = str(self.out_dir), str(self.meta_path)
        out["list_paths"] = {k: str(v) for k, v in self.list_paths.items()}
        return out


def generate_dataset(
    out_dir: str | Path,
    cfg: SyntheticConfig,
    progress: Callable[[int, int], None] | None = None,
) -> SyntheticSummary:
    """Render `cfg.num_frames` frames into `out_dir` (resumable, parallel, deterministic).

    Writes `<out_dir>/<split>/<column>/<id>.png` for the columns in `COLUMNS`, `train.txt` and
    `val.txt` (DeepScene list format with a `# columns:` header; a split without frames gets no
    list) and `meta.json`. Frames whose files all exist are skipped. Frame i is in val when
    floor((i + 1) * val_fraction) > floor(i * val_fraction), so splits do not depend on `num_frames`.

    Args:
        out_dir: Dataset root (created if needed).
        cfg: Generator settings; `cfg.workers` processes (0 = all cores).
        progress: Called as progress(done, total) with the number of frames rendered so far and to
            render in this call, first with done = 0.

    Raises:
        ConfigError: invalid settings (names the key).
        DataError: output folder not writable, or holding frames generated with other settings.
    """
    start = time.perf_counter()
    check_config(cfg)
    root = ensure_writable_dir(out_dir)
    frames = [frame_params(i, cfg) for i in range(cfg.num_frames)]
    meta_path = root / "meta.json"
    meta = _meta(cfg, frames, complete=False)
    _check_existing_meta(meta_path, meta)
    atomic_write_text(meta_path, _meta_json(meta))

    todo = [p.index for p in frames if not all(f.exists() for f in frame_paths(root, p).values())]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(todo)))
    if progress is not None:
        progress(0, len(todo))
    if workers == 1:
        # asked for one worker: one thread too (OpenCV, torch, raycasting), the unit of the scaling
        # figures; one worker only because few frames are left: the raycaster may use every core
        single = cfg.workers == 1
        with single_threaded() if single else contextlib.nullcontext():
            for done, index in enumerate(todo, start=1):
                _write_frame(index, cfg, str(root), 1 if single else 0)
                if progress is not None:
                    progress(done, len(todo))
    elif todo:
        # spawned processes: safe whatever threads the parent runs; a worker's error is re-raised here
        write = functools.partial(_write_frame, cfg=cfg, root=str(root), nthreads=1)
        on_wait = None if progress is None else (lambda done: progress(done, len(todo)))
        run_in_pool(write, todo, workers=workers, on_result=lambda index, _: None, on_wait=on_wait)

    list_paths = {}
    for split in SPLITS:
        rows = [frame_paths(root, p) for p in frames if p.split == split]
        if rows:  # an empty list is not a valid list file
            list_paths[split] = write_list(root / f"{split}.txt", COLUMNS, rows)
    atomic_write_text(meta_path, _meta_json(_meta(cfg, frames, complete=True)))
    return SyntheticSummary(
        out_dir=root,
        num_frames=len(frames),
        num_rendered=len(todo),
        num_skipped=len(frames) - len(todo),
        num_train=sum(p.split == "train" for p in frames),
        num_val=sum(p.split == "val" for p in frames),
        workers=workers,
        seconds=time.perf_counter() - start,
        meta_path=meta_path,
        list_paths=list_paths,
    )
