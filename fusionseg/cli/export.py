"""`fusionseg export`: a checkpoint as ONNX, TorchScript, torch.export program or safetensors weights."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.api import EXPORT_FORMATS
from fusionseg.cli.options import checkpoint_option, json_option


@click.command(
    "export",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg export --checkpoint runs/rgb/best.pt --format onnx\n"
    "  fusionseg export --checkpoint runs/ssma/best.pt --format onnx --size 384x768 --out ssma.onnx\n"
    "  fusionseg export --checkpoint runs/rgb/best.pt --format safetensors --json",
)
@checkpoint_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="onnx",
    show_default=True,
    help="onnx (inputs named after the modalities, dynamic batch/H/W), torchscript, torch-export "
    "(.pt2), or safetensors (weights + metadata; needs the safetensors package).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Output file [default: the checkpoint's name with .onnx, .torchscript.pt, .pt2 or .safetensors].",
)
@click.option(
    "--opset", type=click.IntRange(min=9), default=17, show_default=True, help="ONNX opset version."
)
@click.option(
    "--size",
    default=None,
    help="HEIGHTxWIDTH (multiples of 16) to trace at [default: the checkpoint's training size].",
)
@click.option("--no-verify", is_flag=True, help="Skip the parity check against PyTorch.")
@json_option
def command(
    checkpoint: Path,
    fmt: str,
    out_path: Path | None,
    opset: int,
    size: str | None,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Export a trained model for deployment and check it against PyTorch.

    The exported model takes one float32 (B, C, H, W) input per modality, named after it, and returns
    "logits" (B, classes, H, W). The parity check runs the file (onnxruntime for ONNX) at the export
    size and at a second size and reports the largest logit difference; beyond tolerance the file is
    removed and the command fails.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, out, print_json
    from fusionseg.cli.options import parse_size

    size_hw = parse_size(size) if size is not None else None
    with err.status(f"exporting {checkpoint} to {fmt}"):
        report = api.export_model(
            checkpoint, out_path, format=fmt, opset=opset, size=size_hw, verify=not no_verify
        )
    if as_json:
        print_json(report.to_dict())
        return
    inputs = ", ".join(f"{name} (B, {c}, H, W)" for name, c in report.inputs.items())
    hw = "dynamic H, W" if report.dynamic_hw else f"fixed {report.size_hw[0]}x{report.size_hw[1]}"
    out.print(f"wrote {report.out} ({report.bytes / 2**20:.1f} MiB, {report.format})", highlight=False)
    if report.format != "safetensors":
        out.print(
            f"inputs: {inputs}; output: {report.output} (B, {report.num_classes}, H, W); batch and {hw}",
            highlight=False,
        )
    for check in report.checks:
        where = f"batch {check.batch}, {check.size_hw[0]}x{check.size_hw[1]}" if check.size_hw else "weights"
        out.print(
            f"parity {where}: max |diff| {check.max_abs_diff:.3g} (max |value| {check.max_abs_value:.3g}, "
            f"tolerance {check.tolerance:.3g}) [green]ok[/]"
        )
    for note in report.notes:
        out.print(f"note: {note}", highlight=False)
