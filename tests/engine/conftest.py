"""Fixtures of the engine tests."""

from __future__ import annotations

import pytest
from engine_helpers import ColourBlocks


@pytest.fixture
def datasets():
    """(train, val) in-memory colour-block datasets."""
    return ColourBlocks(12, seed=0), ColourBlocks(4, seed=1)
