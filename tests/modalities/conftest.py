"""Fixtures of the modality tests: the two implementations of the plane fits and gravity passes."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture(params=["compiled", "numpy"])
def plane_fit_backend(request, monkeypatch) -> str:
    """Run a test with the compiled kernels (numba, extra `fast`) and again with the numpy path.

    The numpy path is forced by hiding `hha_kernels` from the two modules that dispatch on it; the
    compiled run is skipped where numba is not installed.
    """
    normals = importlib.import_module("fusionseg.modalities.normals")
    hha = importlib.import_module("fusionseg.modalities.hha")
    if request.param == "numpy":
        monkeypatch.setattr(normals, "hha_kernels", None)
        monkeypatch.setattr(hha, "hha_kernels", None)
    elif normals.hha_kernels is None:
        pytest.skip("numba is not installed (extra `fast`)")
    return request.param
