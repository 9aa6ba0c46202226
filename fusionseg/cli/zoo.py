"""`fusionseg zoo`: the published DeepScene models, their accuracy and the inputs they expect."""

from __future__ import annotations

import click

from fusionseg.cli.options import json_option


@click.command("zoo", short_help="List the published DeepScene models that import-deepscene converts.")
@json_option
def command(as_json: bool) -> None:
    """The DeepScene model zoo (AdapNet++ and SSMA; CMoDE published none): name (for import-deepscene
    --zoo), zip file, model, dataset and class list, inputs in fusion order and their recipes, eASPP
    rates, and the README's val mIoU (768x384, single scale). File names marked '?' follow the README's
    naming pattern but are not spelled out in it.
    """
    from rich.table import Table

    from fusionseg import api
    from fusionseg.cli.console import out, print_json

    models = list(api.zoo_models.values())
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    table = Table(title="DeepScene model zoo (AdapNet++, SSMA)")
    for column in ("name", "file", "model", "dataset", "inputs", "eASPP", "mIoU %"):
        table.add_column(column, justify="right" if column == "mIoU %" else "left")
    for m in models:
        miou = f"{m.published_miou:.2f}" if m.published_miou is not None else "-"
        rates = ",".join(map(str, m.easpp_rates))
        file = m.file + ("" if m.verified else " ?")
        table.add_row(m.name, file, m.model, m.dataset, ",".join(m.modalities), rates, miou)
    out.print(table)
    for line in sorted({f"{m.name}: {m.recipe}" for m in models if m.modalities != ("rgb",)}):
        out.print(line, markup=False, highlight=False)
    out.print("rgb models: 8-bit BGR as cv2.imread reads it, resized to 768x384 (W x H)", highlight=False)
