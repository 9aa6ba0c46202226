"""The modality registry answers without torch (CLI, preparation jobs and config checks ask it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fusionseg.data.modality_specs import MODALITIES, get_modality, modality_channels
from fusionseg.data.transforms import LINEAR, NEAREST
from fusionseg.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_registry_does_not_import_torch() -> None:
    code = (
        "import sys; import fusionseg.data.modality_specs as m; "
        "assert m.modality_channels('hha') == 3; "
        "assert 'torch' not in sys.modules, sorted(k for k in sys.modules if k.startswith('torch'))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_specs_name_channels_kind_and_resampling() -> None:
    assert modality_channels("hha") == 3 and modality_channels("depth_raw") == 1
    assert get_modality("depth_raw").kind == "depth" and get_modality("depth").interpolation == NEAREST
    assert get_modality("nir").kind == "gray" and get_modality("rgb").interpolation == LINEAR
    assert all(spec.name == name for name, spec in MODALITIES.items())
    with pytest.raises(ConfigError, match="unknown modality 'lidar'.*rgb"):
        get_modality("lidar")
