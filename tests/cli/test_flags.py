"""Library errors name parameters; the CLI shows the verb's flags (`fusionseg.cli.flags`)."""

from __future__ import annotations

import click

from fusionseg.cli import cli
from fusionseg.cli.flags import flag_message, invoked_command, param_flags


@click.command()
@click.option("--format", "fmt")
@click.option("--depth-scale")
@click.option("--no-verify", is_flag=True)
def verb(fmt: str, depth_scale: str, no_verify: bool) -> None:
    """A verb with renamed and hyphenated options."""


def test_leading_and_quoted_names_become_flags() -> None:
    assert flag_message("format: 'x' is not one of onnx", verb) == "--format: 'x' is not one of onnx"
    assert (
        flag_message("a.png: pass `depth_scale` with the unit", verb)
        == "a.png: pass --depth-scale with the unit"
    )
    assert param_flags(verb)["fmt"] == "--format" and param_flags(verb)["no_verify"] == "--no-verify"


def test_names_without_a_flag_and_config_keys_stay() -> None:
    assert flag_message("opset: must be >= 9", verb) == "opset: must be >= 9"
    assert (
        flag_message("data.height_px: 50 is not a multiple", verb) == "data.height_px: 50 is not a multiple"
    )
    assert flag_message("use `resume` to continue", verb) == "use `resume` to continue"


def test_the_invoked_verb_is_found_through_groups() -> None:
    assert invoked_command(cli, ["--debug", "benchmark", "model", "--size", "8x8"]).name == "model"
    assert invoked_command(cli, ["export", "--format", "x"]).name == "export"
    assert invoked_command(cli, ["no-such-verb"]) is cli


def test_a_library_error_reaches_the_user_as_a_flag(tmp_path, capsys) -> None:
    from fusionseg.cli import main

    assert main(["benchmark", "model", "--size", "64x64", "--warmup", "0", "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--warmup: compiled models need at least one warm-up run" in err
