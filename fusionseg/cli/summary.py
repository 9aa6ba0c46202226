"""`fusionseg summary`: parameters per module, tap shapes and GFLOPs of a model."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.api import MODEL_NAMES
from fusionseg.cli.options import config_options, json_option, parse_size, resolve_config

PARAM_FLAGS = {"size_px": "--size"}  # library parameter -> flag (fusionseg.cli.flags)


@click.command(
    "summary",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg summary --model adapnetpp --num-classes 12\n"
    "  fusionseg summary --in-channels 1 --size 192x384 --json\n"
    "  fusionseg summary --model ssma --modalities rgb,depth --num-classes 12",
)
@click.option(
    "--model",
    "model_name",
    type=click.Choice(MODEL_NAMES),
    default="adapnetpp",
    show_default=True,
    help="Which model to build.",
)
@click.option(
    "--num-classes",
    type=click.IntRange(min=2),
    default=None,
    help="Classes including void [default: model.num_classes of the config, 12].",
)
@click.option(
    "--in-channels",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Input channels (3 for BGR/HHA/JET/EVI images, 1 for raw depth).",
)
@click.option(
    "--size",
    default="384x768",
    show_default=True,
    help="HEIGHTxWIDTH of the example input in pixels (multiples of 16) for tap shapes and GFLOPs.",
)
@click.option(
    "--modalities",
    default=None,
    metavar="M1,M2[,...]",
    help="Fusion models (ssma, cmode): modalities, modality 1 first [default: rgb,depth].",
)
@config_options
@json_option
def command(
    model_name: str,
    num_classes: int | None,
    in_channels: int,
    size: str,
    modalities: str | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Print a model's parameters per module, trainable / frozen / buffer totals, tap shapes and GFLOPs."""
    from rich.table import Table

    from fusionseg import api
    from fusionseg.cli.console import err, out, print_json

    size_px = parse_size(size)
    if num_classes is not None:  # an explicit option wins over the config file
        overrides = (*overrides, f"model.num_classes={num_classes}")
    if modalities is not None:
        overrides = (*overrides, f"data.modalities=[{modalities}]")
    cfg = resolve_config(config_path, overrides)
    with err.status(f"building {model_name} and running one {size_px[0]}x{size_px[1]} forward pass"):
        summary = api.summarize_model(model_name, cfg, in_channels=in_channels, size_px=size_px)

    if as_json:
        print_json(summary.to_dict())
        return
    table = Table(title=f"{summary.model}: parameters per module")
    table.add_column("module")
    for col in ("params", "trainable", "buffers"):
        table.add_column(col, justify="right")
    for row in summary.modules:
        table.add_row(row.name, f"{row.params:,}", f"{row.trainable:,}", f"{row.buffers:,}")
    table.add_section()
    table.add_row(
        "total",
        f"{summary.total_params:,}",
        f"{summary.trainable_params:,}",
        f"{summary.buffers:,}",
        style="bold",
    )
    out.print(table)
    out.print(
        f"params {summary.total_params:,} (trainable {summary.trainable_params:,}, "
        f"frozen {summary.frozen_params:,}), buffers {summary.buffers:,}"
    )
    taps = Table(title=f"outputs for input {tuple(summary.input_shape or ())}")
    taps.add_column("tap")
    taps.add_column("shape (B, C, H, W)")
    for name, shape in summary.taps.items():
        taps.add_row(name, str(tuple(shape)))
    if summary.logits_shape is not None:
        taps.add_row("logits", str(tuple(summary.logits_shape)))
    out.print(taps)
    out.print(f"GFLOPs: {summary.gflops:.2f} (eval forward; 1 multiply-add = 2 FLOPs; convs/deconvs only)")
