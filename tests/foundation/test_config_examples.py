"""Every `--set KEY=VALUE` example that the docs, README, configs and CLI help print works as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fusionseg.config import config_to_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "benchmarks").glob("*.md")),
    *sorted((ROOT / "configs").glob("*.yaml")),
    *sorted((ROOT / "fusionseg").rglob("*.py")),
]
# `--set key=value` with an optional quote; the value ends at whitespace, a quote or a backtick
EXAMPLE = re.compile(r"--set\s+'?([a-z_]+\.[a-z_.]+=[^\s'`\"\\]*)")
PLACEHOLDERS = {"section.key=value", "synthetic.key=value", "a.b.c=value"}


def _examples() -> list[str]:
    found: set[str] = set()
    for path in SOURCES:
        for match in EXAMPLE.finditer(path.read_text(encoding="utf-8")):
            text = match.group(1).rstrip(").,;:")
            if text not in PLACEHOLDERS:
                found.add(text)
    return sorted(found)


EXAMPLES = _examples()


def test_examples_are_found() -> None:
    assert "train.lr=5e-4" in EXAMPLES and len(EXAMPLES) >= 10, EXAMPLES


@pytest.mark.parametrize("override", EXAMPLES)
def test_documented_override_parses_as_meant(override: str) -> None:
    cfg = load_config(None, [override])
    key, _, raw = override.partition("=")
    section, _, name = key.partition(".")
    value = config_to_dict(cfg)[section][name.split(".")[0]]
    if re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?", raw, flags=re.IGNORECASE):
        assert value == pytest.approx(float(raw)), override  # numbers are numbers, 5e-4 included
