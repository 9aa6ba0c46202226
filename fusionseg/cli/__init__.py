"""`fusionseg` command line: the root group, lazy verb loading and error handling.

Each verb lives in its own module under `fusionseg.cli` and is a thin layer over `fusionseg.api`.
Heavy libraries (torch, cv2, open3d) are imported inside command bodies, so `fusionseg --help` is instant.
"""

from __future__ import annotations

import importlib
import sys
import traceback

import click

from fusionseg import __version__
from fusionseg.cli.flags import flag_message, invoked_command
from fusionseg.errors import FusionsegError

# verb -> module defining a click command called `command`. A verb is listed only once it works.
COMMANDS: dict[str, str] = {
    "make-synthetic": "fusionseg.cli.make_synthetic",
    "summary": "fusionseg.cli.summary",
    "prepare-depth": "fusionseg.cli.prepare_depth",
    "prepare-dataset": "fusionseg.cli.prepare_dataset",
    "benchmark": "fusionseg.cli.benchmark",
    "train-unimodal": "fusionseg.cli.train_unimodal",
    "evaluate": "fusionseg.cli.evaluate",
    "predict": "fusionseg.cli.predict",
    "train-fusion": "fusionseg.cli.train_fusion",
    "export": "fusionseg.cli.export",
    "import-deepscene": "fusionseg.cli.import_deepscene",
    "zoo": "fusionseg.cli.zoo",
    "train-pipeline": "fusionseg.cli.train_pipeline",
}


class LazyGroup(click.Group):
    """A click group that imports a verb's module only when the verb is listed or run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        return importlib.import_module(module_name).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fusionseg")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """fusionseg: multimodal semantic segmentation (AdapNet++, SSMA, CMoDE).

    Every verb reads an optional YAML config (--config) and `--set section.key=value` overrides,
    and saves the resolved config beside its outputs.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI, turn known errors into one line on stderr.

    Returns the exit status: 0 success, 1 internal error, 2 bad input or usage, 130 interrupted.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="fusionseg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.secho("aborted", fg="red", err=True)
        return 130
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        return 130
    except FusionsegError as exc:
        if debug:
            traceback.print_exc()
        message = flag_message(str(exc), invoked_command(cli, args))
        click.secho(f"error: {message}", fg="red", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last line of defence for users
        if debug:
            traceback.print_exc()
        click.secho(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            fg="red",
            err=True,
        )
        return 1
    # a verb may return an int exit status (e.g. 3 = finished, but some inputs failed)
    return result if isinstance(result, int) else 0
