"""`fusionseg benchmark ...`: speed measurements (record them in benchmarks/RESULTS.md).

A click group; each benchmark is one subcommand added with `@command.command(...)`.
"""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.api import MODEL_NAMES
from fusionseg.cli.options import json_option, shared_data_option

PARAM_FLAGS = {"size_hw": "--size"}  # library parameter -> flag (fusionseg.cli.flags)


def _parse_size(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[int, int]]:
    sizes = []
    for value in values:
        try:
            width, height = (int(v) for v in value.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"expected WIDTHxHEIGHT such as 640x480, got {value!r}") from None
        sizes.append((width, height))
    return sizes


@click.group("benchmark")
def command() -> None:
    """Measure speed: preprocessing per frame (preprocess) and models (model)."""


@command.command("preprocess")
@click.option(
    "--repeat", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs per case."
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs first."
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="cpu: CPU cases only; cuda: also GPU cases (error without CUDA); auto: GPU cases when available.",
)
@shared_data_option
@click.option(
    "--size",
    "sizes",
    multiple=True,
    callback=_parse_size,
    metavar="WxH",
    help="Use synthetic frames of this size instead of the standard 640x480 and 1242x375 (repeatable).",
)
@click.option(
    "--only", multiple=True, metavar="TEXT", help="Run only cases whose name contains TEXT (repeatable)."
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the report to FILE: Markdown if it ends in .md, else JSON.",
)
@json_option
def preprocess(
    repeat: int,
    warmup: int,
    device: str,
    data_dir: Path | None,
    sizes: list[tuple[int, int]],
    only: tuple[str, ...],
    out_file: Path | None,
    as_json: bool,
) -> None:
    """Milliseconds per frame of each preprocessor, and ratios that mean the same on any machine.

    Cases: ip_basic fill_in_fast / fill_in_multiscale (bilateral and gaussian), JET, HHA (numpy, torch
    on CPU, torch on CUDA), normals, EVI and NDVI, on a 640x480 Kinect frame (NYU) and a 1242x375 KITTI
    LiDAR frame. CPU cases run single-process, single-thread; run with OMP_NUM_THREADS=1. Each case is
    also given in memory passes (its time over one frame's copy at the bandwidth measured in the run),
    and HHA against benchmarks/hha_before.py timed alternately in the same run.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, out, print_json

    def on_timing(t) -> None:  # noqa: ANN001 - Timing
        if t.skipped:
            err.print(
                f"  {t.case:<28} {t.frame:<18} {t.device:<5} skipped: {t.skipped}",
                markup=False,
                soft_wrap=True,
            )
        else:
            err.print(
                f"  {t.case:<29} {t.frame:<18} {t.device:<5} {t.median_ms:9.2f} ms (p90 {t.p90_ms:.2f})",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    report = api.benchmark_preprocess(
        repeat=repeat,
        warmup=warmup,
        device=device,
        data_dir=data_dir,
        sizes=sizes,
        only=only,
        on_timing=None if as_json else on_timing,
    )
    if out_file is not None:
        report.write(out_file)
    if as_json:
        print_json(report.to_dict())
        return
    _render(report, out)


def _render(report, out) -> None:  # noqa: ANN001 - BenchmarkReport, rich console
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    machine = report.machine
    frames = ", ".join(f"{f['name']} {f['size']}" for f in report.frames)
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    isa = " ".join(flag for flag, on in machine["isa"].items() if on) or "no listed ISA flags"
    table = Table(
        title=escape(f"ms per frame - {machine['cpu']} ({isa}), {machine['cores']} cores{gpu}"),
        caption=escape(
            f"frames: {frames}; memory pass = one float32 frame read+written at the measured "
            f"{machine['memory_bandwidth_gbs']:.1f} GB/s; load {machine['loadavg_1min_start']}"
        ),
        box=box.SIMPLE,
        pad_edge=False,
    )
    table.add_column("case", no_wrap=True)
    table.add_column("frame", no_wrap=True)
    table.add_column("size", no_wrap=True)
    for name in ("median", "p90", "mem passes"):  # ms per frame, then time / one memory pass
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("vs baseline (same run)", no_wrap=True)
    for t in report.timings:
        case = escape(case_name(t))  # "[bilateral]" is not markup
        if t.skipped:
            table.add_row(case, t.frame.split("-")[0], t.size, "-", "-", "", "n/a")
            continue
        passes = f"{t.memory_passes:.0f}" if t.memory_passes is not None else ""
        versus = ""
        if t.vs_baseline is not None:
            versus = escape(f"{t.vs_baseline:.2f} of {t.baseline} ({1 / t.vs_baseline:.2f}x faster)")
        table.add_row(
            case, t.frame.split("-")[0], t.size, f"{t.median_ms:.2f}", f"{t.p90_ms:.2f}", passes, versus
        )
    out.print(table)
    for t in report.timings:
        if t.skipped:
            out.print(
                f"n/a: {case_name(t)} {t.frame} {t.size}: {t.skipped}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )


def case_name(t) -> str:  # noqa: ANN001 - Timing
    """The case as shown: its name, plus the device when it is not the CPU."""
    return t.case if t.device == "cpu" else f"{t.case} @{t.device}"


@command.command("model")
@click.option(
    "--model",
    "model_name",
    type=click.Choice(MODEL_NAMES),
    default="adapnetpp",
    show_default=True,
    help="Model to measure (fused models fuse rgb + depth).",
)
@click.option(
    "--size", default="384x768", show_default=True, help="HEIGHTxWIDTH in pixels (multiples of 16)."
)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Images per run.")
@click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (auto: CUDA if available)."
)
@click.option("--train", is_flag=True, help="Time optimiser steps (forward, loss, backward, Adam) instead.")
@click.option("--compare", is_flag=True, help="Also run torchvision deeplabv3/fcn_resnet50 (and smp models).")
@click.option(
    "--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Untimed runs first."
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs per model."
)
@click.option(
    "--amp",
    type=click.Choice(["off", "bf16", "fp16"]),
    default="off",
    show_default=True,
    help="Autocast dtype.",
)
@click.option("--channels-last", is_flag=True, help="Channels-last memory format.")
@click.option(
    "--compile", "compile_", is_flag=True, help="torch.compile every model (compiles during warm-up)."
)
@click.option("--num-classes", type=click.IntRange(min=2), default=12, show_default=True, help="Classes.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: unchanged]."
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the results as a Markdown section to FILE (e.g. benchmarks/RESULTS.md).",
)
@json_option
def model(
    model_name: str,
    size: str,
    batch: int,
    device: str,
    train: bool,
    compare: bool,
    warmup: int,
    repeat: int,
    amp: str,
    channels_last: bool,
    compile_: bool,
    num_classes: int,
    threads: int | None,
    record: Path | None,
    as_json: bool,
) -> None:
    """Latency (median, p90), fps, params, GFLOPs and peak memory of a model, optionally beside peers.

    Warm-up runs first, then timed runs interleaved across the compared models (CUDA events on GPU).
    With --compare the report gives each peer's time relative to the model and checks the floor
    "AdapNet++ faster than deeplabv3_resnet50" at 384x768, batch 1.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, out, print_json
    from fusionseg.cli.options import parse_size

    size_hw = parse_size(size)
    flags = [f"--model {model_name}", f"--size {size_hw[0]}x{size_hw[1]}", f"--batch {batch}"]
    flags += [f"--device {device}", f"--warmup {warmup}", f"--repeat {repeat}"]
    flags += [f"--amp {amp}"] if amp != "off" else []
    flags += [f"--num-classes {num_classes}"] if num_classes != 12 else []
    flags += [f"--threads {threads}"] if threads is not None else []
    flags += [
        name
        for name, on in (
            ("--train", train),
            ("--compare", compare),
            ("--channels-last", channels_last),
            ("--compile", compile_),
        )
        if on
    ]
    command_line = "fusionseg benchmark model " + " ".join(flags)

    def on_result(t) -> None:  # noqa: ANN001 - ModelTiming
        err.print(f"  {t.name:<28} {t.median_ms:9.1f} ms (p90 {t.p90_ms:.1f})", highlight=False)

    with err.status(f"measuring {model_name} ({'train' if train else 'inference'}) at {size}, batch {batch}"):
        report = api.benchmark_model(
            model=model_name,
            size_hw=size_hw,
            batch=batch,
            device=device,
            mode="train" if train else "inference",
            warmup=warmup,
            repeat=repeat,
            compare=compare,
            amp=amp,
            channels_last=channels_last,
            compile=compile_,
            num_classes=num_classes,
            threads=threads,
            command=command_line,
            on_result=None if as_json else on_result,
        )
    if record is not None:
        report.append_markdown(record)
    if as_json:
        print_json(report.to_dict())
        return
    _render_models(report, out)


def _render_models(report, out) -> None:  # noqa: ANN001 - ModelBenchmarkReport, rich console
    from rich import box
    from rich.table import Table

    s, m = report.settings, report.machine
    peak = f"{m['gemm_peak_gflops']:.1f} GFLOP/s" if m.get("gemm_peak_gflops") else "n/a"
    isa = " ".join(flag for flag, on in m["isa"].items() if on)
    table = Table(
        title=f"{s['mode']} {s['size_hw'][0]}x{s['size_hw'][1]}, batch {s['batch']}, {s['device']}, "
        f"amp {s['amp']} (in effect {s['amp_effective']}), {s['threads']} thread(s)",
        caption=f"{m['cpu']} ({isa}); fp32 GEMM peak measured in this run: {peak}",
        box=box.SIMPLE,
        pad_edge=False,
    )
    for name, justify in (
        ("model", "left"),
        ("params M", "right"),
        ("GFLOP/run", "right"),
        ("median ms", "right"),
        ("p90 ms", "right"),
        ("fps", "right"),
        ("GFLOP/s", "right"),
        ("of peak", "right"),
        ("peak MB", "right"),
        ("time / first", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)
    first = report.results[0].median_ms
    for r in report.results:
        if r.skipped:
            table.add_row(r.name, "", "", "", "", "", "", "", "", f"skipped: {r.skipped}")
            continue
        table.add_row(
            r.name,
            f"{r.params / 1e6:.2f}",
            f"{r.step_gflops:.1f}" if r.step_gflops is not None else "",
            f"{r.median_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.fps:.2f}",
            f"{r.gflops_per_s:.1f}" if r.gflops_per_s is not None else "",
            f"{100 * r.of_peak:.0f} %" if r.of_peak is not None else "",
            f"{r.peak_mem_mb:.0f}" if r.peak_mem_mb is not None else "",
            f"{r.median_ms / first:.2f}x" if first else "",
        )
    out.print(table)
    floor = report.floor()
    if floor is not None:
        verdict = "[green]passed[/]" if floor["passed"] else "[red]failed[/]"
        out.print(f"floor: {floor['rule']}: {verdict} (x{floor['speedup']:.2f})")


def _add_pipeline() -> None:
    from fusionseg.cli.benchmark_pipeline import pipeline

    command.add_command(pipeline)


_add_pipeline()
