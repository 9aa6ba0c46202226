"""The Python API: what every CLI verb does, as plain functions.

Notebooks and scripts use these directly; each CLI verb parses options, builds a config, makes one call
here and renders the result. Heavy modules are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fusionseg.config import RunConfig, load_config

__all__ = ["load_config", "RunConfig"]  # each section below appends its names


# ---------------------------------------------------------------------------------------------------
# Sections below are added per feature; each function is a thin wrapper over its owning module.
# ---------------------------------------------------------------------------------------------------
