"""`fusionseg import-deepscene`: a DeepScene TF1 checkpoint (AdapNet++, SSMA, CMoDE) as a fusionseg one."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.options import json_option

PARAM_FLAGS = {"checkpoint": "CHECKPOINT"}  # library parameter -> what the user typed


def _parse_rates(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        rates = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected three comma-separated integers such as 3,6,12, got {value!r}"
        ) from None
    if len(rates) != 3 or min(rates) < 1:
        raise click.BadParameter(f"expected three positive rates such as 3,6,12, got {value!r}")
    return rates


@click.command(
    "import-deepscene",
    short_help="Convert a DeepScene TF1 checkpoint (AdapNet++, SSMA, CMoDE) into a fusionseg checkpoint.",
    epilog="Examples:\n\n"
    "\b\n"
    "  fusionseg import-deepscene adapnet++_cityscapes_rgb.zip --zoo adapnetpp-cityscapes-rgb --out cs.pt\n"
    "  fusionseg import-deepscene model.ckpt-1 --dataset sunrgbd --modalities hha --out sun-hha.pt\n"
    "  fusionseg import-deepscene sun_ssma_rgb_hha.zip --zoo ssma-sun-rgb-hha --out sun-ssma.pt\n"
    "  fusionseg import-deepscene cmode/ --dataset cityscapes11 --modalities rgb,jet --out cmode.pt\n"
    "  fusionseg import-deepscene cs19/ --dataset cityscapes19 --easpp-rates 6,12,18 --out cs19.pt",
)
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="fusionseg .pt to write.",
)
@click.option(
    "--zoo",
    "zoo",
    default=None,
    metavar="NAME",
    help="A model of `fusionseg zoo`: fills --model, --dataset, --modalities and --easpp-rates and records "
    "its published mIoU and input recipe.",
)
@click.option(
    "--dataset",
    default=None,
    help="Built-in dataset whose classes the model predicts (cityscapes11 for the 12-class models, "
    "cityscapes19, synthia, sunrgbd, scannet, freiburg_forest) [default: the --zoo model's].",
)
@click.option(
    "--model",
    default=None,
    type=click.Choice(["adapnetpp", "ssma", "cmode"]),
    help="Graph of the checkpoint; refused if its scopes show another [default: the --zoo model's, else "
    "the graph the checkpoint's scopes show].",
)
@click.option(
    "--modalities",
    "--modality",
    "modalities",
    default=None,
    help="The inputs, comma-separated: rgb, jet, hha, evi (3-channel 8-bit images as cv2.imread reads "
    "them); one for AdapNet++, two in fusion order for SSMA/CMoDE, e.g. rgb,hha (the first is the TF "
    "graph's rgb expert, the second its depth expert) [default: the --zoo model's, else rgb for AdapNet++].",
)
@click.option(
    "--easpp-rates",
    default=None,
    callback=_parse_rates,
    help="eASPP atrous rates the model was trained with [default: the --zoo model's, else 3,6,12; "
    "6,12,18 for the Cityscapes-19 models].",
)
@json_option
def command(
    checkpoint: Path,
    out: Path,
    zoo: str | None,
    dataset: str | None,
    model: str | None,
    modalities: str | None,
    easpp_rates: tuple[int, ...] | None,
    as_json: bool,
) -> None:
    """Read CHECKPOINT (a TF1 checkpoint prefix, its .index file, its folder or a zoo .zip) without
    TensorFlow, map every tensor onto fusionseg's AdapNet++, SSMA or CMoDE (experts built with TF SAME
    padding, model.padding=tf_same) and write a normal fusionseg checkpoint for evaluate, predict,
    export and (an AdapNet++ expert) train-fusion. A missing, unused or misshapen tensor is refused,
    naming it.
    """
    from fusionseg import api
    from fusionseg.cli.console import err, print_json
    from fusionseg.cli.console import out as stdout

    with err.status(f"converting {checkpoint}"):
        report = api.import_deepscene(
            checkpoint,
            out,
            dataset=dataset,
            model=model,
            modalities=modalities,
            easpp_rates=easpp_rates,
            zoo=zoo,
        )
    if as_json:
        print_json(report.to_dict())
        return
    stdout.print(
        f"wrote {report.out}: {report.model} ({', '.join(report.modalities)}, {report.dataset}) from "
        f"{report.tensors} TF tensors, {report.elements:,} values",
        highlight=False,
    )
