"""`fusionseg benchmark pipeline`: raw frame to classes, timed per stage (added to the benchmark group)."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.api import MODEL_NAMES
from fusionseg.cli.options import json_option, shared_data_option


def _parse_hw(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 768x384, got {value!r}") from None
    if width % 16 or height % 16 or width < 16 or height < 16:
        raise click.BadParameter(f"both sides must be positive multiples of 16, got {value!r}")
    return height, width


@click.command("pipeline")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="ssma", show_default=True)
@click.option(
    "--encoding",
    "encodings",
    type=click.Choice(["hha", "jet"]),
    multiple=True,
    default=("hha", "jet"),
    show_default=True,
    help="Depth encoding the model reads (repeatable).",
)
@click.option(
    "--complete",
    type=click.Choice(["none", "fast", "multiscale"]),
    default="fast",
    show_default=True,
    help="ip_basic completion of the raw depth.",
)
@click.option(
    "--model-size",
    "model_size_hw",
    default="768x384",
    show_default=True,
    callback=_parse_hw,
    metavar="WxH",
    help="The network's input size; frames are resized to it (the paper's protocol).",
)
@shared_data_option
@click.option(
    "--repeat", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs per case."
)
@click.option(
    "--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Untimed runs first."
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch/OpenCV threads."
)
@click.option(
    "--backend",
    type=click.Choice(["numpy", "torch"]),
    default="numpy",
    show_default=True,
    help="numpy: the CPU preprocessing; torch: completion and HHA by the batched torch back-ends on "
    "--device.",
)
@click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Frames processed together."
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append the Markdown section to FILE (e.g. benchmarks/RESULTS.md) or, unless it ends in .md, "
    "write JSON.",
)
@json_option
def pipeline(
    model: str,
    encodings: tuple[str, ...],
    complete: str,
    model_size_hw: tuple[int, int],
    data_dir: Path | None,
    repeat: int,
    warmup: int,
    device: str,
    threads: int,
    backend: str,
    batch: int,
    out_file: Path | None,
    as_json: bool,
) -> None:
    """Milliseconds per frame from raw files to classes, per stage.

    Stages: read (colour PNG + 16-bit depth PNG), completion (ip_basic), encoding (HHA or JET), model
    (normalise, resize, forward, softmax) and postprocess (labels at the frame's size, colours), run by
    the code `Segmenter.predict_raw` uses, on a NYU Kinect frame and a KITTI LiDAR frame. The model has
    random weights (speed does not depend on them).
    """
    from fusionseg import api
    from fusionseg.cli.console import out, print_json

    report = api.benchmark_pipeline(
        model=model,
        encodings=encodings,
        complete=complete,
        model_size_hw=model_size_hw,
        data_dir=data_dir,
        repeat=repeat,
        warmup=warmup,
        device=device,
        threads=threads,
        backend=backend,
        batch=batch,
    )
    if out_file is not None:
        report.write(out_file)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(report.to_markdown(), markup=False, highlight=False)
