"""Where HHA's time goes: cProfile of the encoder before issue 18 and of the package's, NYU frame 1.

    OMP_NUM_THREADS=1 python benchmarks/profile_hha.py [--calls 10] [--raw]

Prints, for `benchmarks/hha_before.py` and `fusionseg.modalities.hha.hha` (one OpenCV thread), the
functions with the most own time per call of the encoder: the profile docs/hha.md summarises.
With numba the package's compiled kernels appear as single entries (`plane_fit_normals`, ...).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
from pathlib import Path

import cv2

from fusionseg.benchmark.preprocess import NYU_INTRINSICS_ONE_BASED, load_baseline
from fusionseg.data.io import read_depth
from fusionseg.modalities.hha import hha
from fusionseg.modalities.intrinsics import Intrinsics

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10, help="profiled calls per encoder")
    parser.add_argument("--raw", action="store_true", help="use the raw depth's missing mask")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared real-data folder")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    frame = args.data / "nyuv2-hha-ref" / "full480x640" / "nyu0001"
    depth = read_depth(frame / "depth_filled_1e-4m.png", depth_scale_m="1e-4m")
    raw = read_depth(frame / "depth_raw_1e-4m.png", depth_scale_m="1e-4m") if args.raw else None
    k = Intrinsics.from_one_based(*NYU_INTRINSICS_ONE_BASED)
    for name, encoder in (("before (benchmarks/hha_before.py)", load_baseline("hha_before.py", "hha_before")),
                          ("after (fusionseg.modalities.hha.hha)", hha)):  # fmt: skip
        encoder(depth, k, raw_depth_m=raw)  # warm-up (and numba compilation)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            encoder(depth, k, raw_depth_m=raw)
        profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text).sort_stats("tottime")
        total_ms = stats.total_tt / args.calls * 1e3
        stats.print_stats(12)
        print(f"== {name}: {total_ms:.1f} ms per call under the profiler ==")
        table = text.getvalue().split("ncalls", 1)[1].strip("\n")  # the table without pstats' header
        print("   ncalls" + table)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
