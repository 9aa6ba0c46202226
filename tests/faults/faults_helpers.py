"""Shared pieces of the fault suite: the tiny training run, the prepare job, and subprocess control.

The kill tests run `fault_driver.py` in a subprocess (its own session, so a SIGKILL of the group also
takes its worker processes), watch its output folder and kill it. Both sides build the run from the
functions here, so the reference run and the killed one are the same computation.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENGINE_TESTS = ROOT / "tests" / "engine"
DRIVER = Path(__file__).with_name("fault_driver.py")
if str(ENGINE_TESTS) not in sys.path:  # the engine tests' tiny model and in-memory dataset
    sys.path.insert(0, str(ENGINE_TESTS))

# Seed of the kill schedules (random delays and kill points); set FUSIONSEG_FAULT_SEED for a soak run
# with other schedules, e.g. `for s in 1 2 3; do FUSIONSEG_FAULT_SEED=$s pytest -m faults; done`.
FAULT_SEED = int(os.environ.get("FUSIONSEG_FAULT_SEED", "20261124"))

# The killed training run: 30 steps of the engine tests' TinyNet, a checkpoint every 2 steps (the
# last 2 kept), validation every 6 steps, one metrics.csv row per step.
TRAIN_SETTINGS: dict[str, Any] = {"iterations": 30, "ckpt_every": 2, "val_every": 6, "keep_last": 2}

# The killed prepare-depth job: every product, from the depth column of a synthetic dataset.
PREPARE_SETTINGS: dict[str, Any] = {
    "complete": "fast",
    "hha": True,
    "jet": True,
    "normals": True,
    "evi": True,
    "depth_column": "depth",
}
PREPARE_PRODUCTS = ("depth_filled", "hha", "jet", "normals", "evi")


def build_tiny_trainer(
    run_dir: str | Path,
    *,
    progress: Callable[[Any], None] | None = None,
    model: Callable[[], Any] | None = None,
    train_set: Any = None,
    **train: Any,
) -> Any:
    """A `Trainer` of the engine tests' TinyNet on in-memory colour blocks (seeded, CPU, 0 workers).

    Args:
        run_dir: The run folder.
        progress: `TrainEvent` callback.
        model: Builds the model (after seeding the initial weights); default `TinyNet`.
        train_set: Training set; default `ColourBlocks(12, seed=0)`.
        **train: `train.*` overrides on top of `TRAIN_SETTINGS`.
    """
    import torch
    from engine_helpers import NUM_CLASSES, ColourBlocks, TinyNet, tiny_config, tiny_meta

    from fusionseg.engine.trainer import Trainer

    torch.manual_seed(123)  # the initial weights
    return Trainer(
        (model or TinyNet)(),
        train_set=train_set if train_set is not None else ColourBlocks(12, seed=0),
        val_set=ColourBlocks(4, seed=1),
        config=tiny_config(**{**TRAIN_SETTINGS, **train}),
        run_dir=run_dir,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        checkpoint_meta=tiny_meta(),
        class_names=[f"c{i}" for i in range(NUM_CLASSES)],
        progress=progress,
    )


def make_dataset(root: Path, num_frames: int = 12) -> Path:
    """A tiny synthetic dataset (48x64, train and val lists, meta.json with intrinsics and unit)."""
    from fusionseg.config import SyntheticConfig
    from fusionseg.data.synthetic import generate_dataset

    cfg = SyntheticConfig(num_frames=num_frames, height_px=48, width_px=64, sparse_rows=16, workers=1)
    generate_dataset(root, cfg)
    return root


# ---------------------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------------------


def driver_env() -> dict[str, str]:
    """Environment of a driver subprocess: one thread, the checkout importable."""
    path = os.pathsep.join([str(ROOT), str(ENGINE_TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": path}


def start_driver(args: Sequence[str | Path], log: Path) -> subprocess.Popen:
    """Start `fault_driver.py ARGS` in a new session; stdout and stderr go to `log`."""
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, str(DRIVER), *map(str, args)],
            env=driver_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_driver(args: Sequence[str | Path], log: Path, *, timeout_s: float = 240.0) -> None:
    """Run the driver to its end; fail the test with its output when it does not exit 0."""
    proc = start_driver(args, log)
    try:
        code = proc.wait(timeout=timeout_s)
    finally:
        kill_group(proc)
    assert code == 0, f"driver {list(args)} exited {code}:\n{log.read_text()[-3000:]}"


def kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL the driver's process group (it and its workers); True when it was still running."""
    running = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    return running


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, *, timeout_s: float = 120.0) -> bool:
    """Poll `condition` every 5 ms while `proc` runs; True once it holds, False if `proc` ended first."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if condition():
            return True
        assert time.monotonic() < deadline, "the driver made no progress in time"
        time.sleep(0.005)
    return condition()


# ---------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv rows without the wall-clock columns (which differ between runs)."""
    with (run_dir / "metrics.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: v for k, v in row.items() if k not in ("wall_s", "images_per_s")} for row in rows]


def temp_files(folder: Path) -> list[Path]:
    """Temp files of interrupted atomic writes anywhere below `folder`."""
    return sorted(p for p in folder.rglob(".*.tmp-*") if p.is_file())
