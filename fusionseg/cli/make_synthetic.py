"""`fusionseg make-synthetic`: render procedural multimodal scenes into a dataset folder."""

from __future__ import annotations

from pathlib import Path

import click

from fusionseg.cli.console import err, out, print_json, progress
from fusionseg.cli.options import config_options, json_option, parse_size, resolve_config


@click.command(
    "make-synthetic", short_help="Render a synthetic multimodal dataset (RGB, depth, NIR, labels)."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset folder to create (existing complete frames are kept).",
)
@click.option("--num", type=int, default=None, help="Number of frames [synthetic.num_frames: 200].")
@click.option("--seed", type=int, default=None, help="Random seed [synthetic.seed: 0].")
@click.option("--size", default=None, metavar="HxW", help="Image size in pixels [384x768].")
@click.option("--workers", type=int, default=None, help="Processes, 0 = all cores [synthetic.workers: 0].")
@config_options
@json_option
def command(
    out_dir: Path,
    num: int | None,
    seed: int | None,
    size: str | None,
    workers: int | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Render procedural indoor/outdoor scenes: RGB, depth (dense, Kinect-like raw, LiDAR-like
    sparse), NIR and labels, with train.txt/val.txt lists and meta.json.

    Deterministic for a seed, whatever the number of workers; frames already on disk are skipped.
    """
    base: dict[str, object] = {"num_frames": num, "seed": seed, "workers": workers}
    if size is not None:
        base["height_px"], base["width_px"] = parse_size(size, multiple_of=1)
    cfg = resolve_config(
        config_path, overrides, base={"synthetic": {k: v for k, v in base.items() if v is not None}}
    ).synthetic

    from fusionseg import api

    bar = progress()
    task: list[int] = []

    def report(done: int, total: int) -> None:
        if total == 0:
            return
        if not task:
            bar.start()
            task.append(bar.add_task("rendering frames", total=total, rate=""))
        elapsed = bar.tasks[0].elapsed or 0.0
        rate = f"{done / elapsed:.2f} frames/s" if done and elapsed > 0 else ""
        bar.update(task[0], completed=done, rate=rate)

    try:
        summary = api.make_synthetic(out_dir, cfg, progress=report)
    finally:
        if task:
            bar.stop()

    if as_json:
        print_json(summary.to_dict())
        return
    err.print(
        f"[green]done[/green]: {summary.num_rendered} rendered, {summary.num_skipped} already present, "
        f"{summary.seconds:.1f} s with {summary.workers} worker(s)"
    )
    out.print(f"dataset   {summary.out_dir}")
    out.print(f"frames    {summary.num_frames} (train {summary.num_train}, val {summary.num_val})")
    for split, path in summary.list_paths.items():
        out.print(f"{split:<9} {path}")
    out.print(f"meta      {summary.meta_path}")
