"""Subprocess side of the kill tests (run as a script, never collected by pytest).

    python fault_driver.py [--die-at SPEC] train RUN_DIR [--resume] [--iterations N] [--step-sleep S]
    python fault_driver.py [--die-at SPEC] prepare DATA OUT [--workers W] [--frame-sleep S]

`train` runs the tiny training of `faults_helpers.build_tiny_trainer`; `prepare` runs prepare-depth with
`faults_helpers.PREPARE_SETTINGS`. `--step-sleep` / `--frame-sleep` slow the run down (in the progress
callback, which changes no result) so that a kill from outside lands mid-run. `--die-at CALL:N` makes
the process SIGKILL itself just before its N-th call of `os.CALL`: `fsync` (a temp file is written but
not renamed, or a metrics.csv row is not yet synced), `replace` (a finished temp file is about to be
renamed into place) or `link` (a checkpoint is about to be published as last.pt / best.pt).
`--die-at replace=NAME` dies before the first rename onto a file called NAME (e.g. `best.pt`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time


def die_at(spec: str) -> None:
    """Wrap `os.<call>` so that this process SIGKILLs itself just before the n-th call ("fsync:7") or
    before the first call whose destination file is called NAME ("replace=best.pt")."""
    by_name = "=" in spec
    name, _, arg = spec.partition("=" if by_name else ":")
    real = getattr(os, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        hit = os.path.basename(os.fspath(args[1])) == arg if by_name else calls["n"] == int(arg)
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(os, name, wrapper)


def train(args: argparse.Namespace) -> int:
    import torch
    from faults_helpers import build_tiny_trainer

    torch.set_num_threads(1)

    def progress(event) -> None:
        if event.kind == "warn":
            print(f"warning: {event.message}", file=sys.stderr, flush=True)
        elif event.kind == "step" and args.step_sleep > 0:
            time.sleep(args.step_sleep)

    settings = {"iterations": args.iterations} if args.iterations else {}
    result = build_tiny_trainer(args.run_dir, progress=progress, **settings).fit(resume=args.resume)
    print(json.dumps({"steps": result.steps, "resumed_from": str(result.resumed_from)}))
    return 0


def prepare(args: argparse.Namespace) -> int:
    from faults_helpers import PREPARE_SETTINGS

    from fusionseg.data.prepare import PrepareOptions, prepare_depth

    options = PrepareOptions(**PREPARE_SETTINGS, workers=args.workers)
    summary = prepare_depth(args.data, args.out, options, on_result=lambda _: time.sleep(args.frame_sleep))
    print(json.dumps(summary.to_dict()))
    return 0 if summary.ok else 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--die-at", default="", metavar="CALL:N")
    sub = parser.add_subparsers(dest="job", required=True)
    t = sub.add_parser("train")
    t.add_argument("run_dir")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--iterations", type=int, default=0)
    t.add_argument("--step-sleep", type=float, default=0.0)
    p = sub.add_parser("prepare")
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--frame-sleep", type=float, default=0.0)
    args = parser.parse_args()
    if args.die_at:
        die_at(args.die_at)
    return train(args) if args.job == "train" else prepare(args)


if __name__ == "__main__":
    sys.exit(main())
