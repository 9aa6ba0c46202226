"""Do the CPU speed options help on this machine? fp32 vs channels_last vs bf16 autocast, same run (issue 18).

    OMP_NUM_THREADS=1 python benchmarks/speed_options.py --model adapnetpp --size 384x768 --rounds 4

Builds the model once per option (fp32; channels_last; bf16 autocast; bf16 + channels_last), checks
each option's logits against fp32 (largest absolute difference), then times one inference run of
every option per round, the order alternating round by round (ABBA), and reports the median of the
paired ratios option / fp32 (< 1: faster) beside the CPU's ISA flags. bf16 runs only where the CPU
has it natively (`fusionseg.engine.cpu`; elsewhere autocast falls back to fp32 and says so), so
an option is recommended only where this run measured it faster. Prints Markdown (JSON with --json).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys

import torch

from fusionseg.benchmark.machine import gemm_peak_gflops, machine_info
from fusionseg.benchmark.model import _Runner, build_fusionseg_model
from fusionseg.engine.runtime import autocast_context

OPTIONS = {"fp32": ("off", False), "channels_last": ("off", True), "bf16": ("bf16", False)}
OPTIONS["bf16+channels_last"] = ("bf16", True)


def _logits(runner: _Runner) -> torch.Tensor:
    with torch.inference_mode(), autocast_context(runner.device, runner.amp):
        return runner.bench.logits(runner.fn(runner.inputs)).float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adapnetpp")
    parser.add_argument("--size", default="384x768", help="HEIGHTxWIDTH")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size_hw = tuple(int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    bench = build_fusionseg_model(args.model, 12)
    runners = {}
    for name, (amp, channels_last) in OPTIONS.items():
        option = copy.copy(bench)
        option.module = copy.deepcopy(bench.module)
        runners[name] = _Runner(
            option, mode="inference", device=torch.device("cpu"), batch=1, size_hw=size_hw,
            num_classes=12, amp=amp, channels_last=channels_last, compile=False,
        )  # fmt: skip
    reference = _logits(runners["fp32"])
    logits = {name: _logits(r) for name, r in runners.items()}
    diff = {name: float((out - reference).abs().max()) for name, out in logits.items()}
    agree = {
        name: float((out.argmax(1) == reference.argmax(1)).float().mean()) for name, out in logits.items()
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name in list(runners) if r % 2 == 0 else list(reversed(runners)):
            times[name].append(runners[name].timed())
    ratio = {n: statistics.median(t / f for t, f in zip(times[n], times["fp32"])) for n in runners}
    machine = machine_info()
    machine["gemm_peak_gflops"] = gemm_peak_gflops(threads=args.threads)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine,
                    "args": vars(args),
                    "ms": times,
                    "ratio": ratio,
                    "diff": diff,
                    "agree": agree,
                }
            )
        )
        return 0
    isa = " ".join(flag for flag, on in machine["isa"].items() if on)
    print(
        f"Machine: {machine['cpu']} ({isa}), {args.threads} thread(s), load {machine['loadavg_1min_start']}"
    )
    print(f"Command: python benchmarks/speed_options.py {' '.join(sys.argv[1:])}\n")
    print(
        "| option | median ms | time / fp32 (median of paired ratios) | max abs logit diff | argmax = fp32 |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in runners:
        ms = statistics.median(times[name])
        print(f"| {name} | {ms:.0f} | {ratio[name]:.3f} | {diff[name]:.2g} | {agree[name]:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
