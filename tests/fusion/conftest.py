"""Fixtures of the fusion tests (helpers live in fusion_helpers.py, imported by the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fusion_helpers import fusion_config, save_expert, write_dataset

from fusionseg.models.adapnet import build_adapnet


@pytest.fixture(scope="session")
def expert_states() -> dict[str, dict[str, torch.Tensor]]:
    """Full AdapNet++ state dicts (C = 9) of an rgb (3-channel) and a depth (1-channel) expert."""
    cfg = fusion_config()
    torch.manual_seed(1)
    states = {}
    for modality, channels in (("rgb", 3), ("depth", 1)):
        states[modality] = build_adapnet(cfg.model, in_channels=channels).state_dict()
    return states


@pytest.fixture(scope="session")
def expert_ckpts(tmp_path_factory, expert_states) -> dict[str, Path]:
    """Unimodal checkpoints of the two experts, written with the engine's save function."""
    folder = tmp_path_factory.mktemp("experts")
    cfg = fusion_config()
    return {m: save_expert(folder / f"{m}.pt", cfg, m, state) for m, state in expert_states.items()}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))
