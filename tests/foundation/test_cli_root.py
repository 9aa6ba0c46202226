"""The root command: help, version, and one-line errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusionseg import __version__
from fusionseg.cli import COMMANDS, main


def test_help_lists_every_registered_verb(capsys) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for verb in COMMANDS:
        assert verb in text


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_each_verb_has_help(verb: str, capsys) -> None:
    assert main([verb, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_verb_is_a_usage_error(capsys) -> None:
    assert main(["no-such-verb"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_console_script_is_instant_and_light() -> None:
    """`fusionseg --help` must not import torch, cv2 or open3d."""
    code = (
        "import sys; from fusionseg.cli import main; main(['--help']); "
        "print(sorted(m for m in ('torch', 'cv2', 'open3d') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
