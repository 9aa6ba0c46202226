"""Throughput of the data jobs with 1, 2, ... workers: `make-synthetic` and `prepare-depth` (issue 18).

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --frames 24 --workers 1 2 --rounds 2

For each worker count, in alternating order round by round (1, 2, 2, 1, ...: a load change on a
shared machine hits every count alike), it renders `--frames` synthetic frames into a fresh folder
and then prepares them (fast completion of the raw depth, HHA, JET) into another; the report gives
frames per second per worker count (median over the rounds), the speed-up over one worker and the
parallel efficiency (speed-up / workers). One worker runs in this process on one thread (OpenCV,
torch, the raycaster: `fusionseg.data.pool.single_threaded`), so the one-worker figure is the
single-core rate. Prints a Markdown table (and JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fusionseg import api
from fusionseg.benchmark.machine import machine_info
from fusionseg.config import SyntheticConfig


def _synthetic(root: Path, frames: int, workers: int) -> float:
    cfg = SyntheticConfig(num_frames=frames, height_px=240, width_px=320, workers=workers)
    start = time.perf_counter()
    api.make_synthetic(root, cfg)
    return frames / (time.perf_counter() - start)


def _prepare(dataset: Path, out: Path, frames: int, workers: int) -> float:
    opts = api.PrepareOptions(complete="fast", hha=True, jet=True, depth_column="depth_raw", workers=workers)
    start = time.perf_counter()
    api.prepare_depth(dataset, out, opts)
    return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per job (240x320)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per worker count")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    rates: dict[str, dict[int, list[float]]] = {"make-synthetic": {}, "prepare-depth": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.workers if r % 2 == 0 else list(reversed(args.workers))
            for workers in order:
                data, out = Path(tmp) / f"syn-{r}-{workers}", Path(tmp) / f"prep-{r}-{workers}"
                rates["make-synthetic"].setdefault(workers, []).append(_synthetic(data, args.frames, workers))
                rate = _prepare(data, out, args.frames, workers)
                rates["prepare-depth"].setdefault(workers, []).append(rate)
    table = {job: {w: statistics.median(v) for w, v in per.items()} for job, per in rates.items()}
    machine = machine_info()
    if args.json:
        print(json.dumps({"machine": machine, "args": vars(args), "frames_per_s": rates}, indent=2))
        return 0
    isa = " ".join(flag for flag, on in machine["isa"].items() if on)
    print(
        f"Machine: {machine['cpu']} ({isa}), {machine['cores']} cores, load {machine['loadavg_1min_start']}"
    )
    print(f"Command: python benchmarks/scaling.py {' '.join(sys.argv[1:])}\n")
    print("| job | workers | frames/s (median of rounds) | speed-up vs 1 | efficiency |")
    print("|---|---:|---:|---:|---:|")
    for job, per in table.items():
        one = per.get(1)
        for workers, rate in sorted(per.items()):
            speedup = f"{rate / one:.2f}" if one else ""
            efficiency = f"{rate / one / workers:.0%}" if one else ""
            print(f"| {job} | {workers} | {rate:.2f} | {speedup} | {efficiency} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
