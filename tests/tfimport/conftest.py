"""The genuine TF1 AdapNet++ checkpoint of `../shared/data/deepscene-tf-dev/`, converted once per session
(test_convert checks it against TensorFlow; test_fused_import composes fused checkpoints from it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionseg.cli import main
from fusionseg.engine.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="session")
def dev(shared_data: Path) -> Path:
    folder = shared_data / "deepscene-tf-dev"
    if not (folder / "model.ckpt-1.index").is_file():
        pytest.skip(f"{folder} not present")
    return folder


@pytest.fixture(scope="session")
def converted(dev: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("import") / "dev.pt"
    assert main(["import-deepscene", str(dev), "--dataset", "cityscapes11", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def outputs(dev: Path, converted: Path):
    """(model, input (1, 3, 384, 768) BGR 0-255, its `ExpertOutput`) of the converted AdapNet++."""
    model = model_from_checkpoint(load_checkpoint(converted))
    bgr = np.load(dev / "inputs.npz")["rgb_bgr_u8"]
    x = torch.from_numpy(bgr.astype(np.float32)).permute(2, 0, 1)[None]  # (1, 3, 384, 768) BGR 0-255
    with torch.no_grad():
        return model, x, model({"rgb": x})


@pytest.fixture(scope="session")
def tf_shapes(shared_data: Path) -> Callable[[str], dict[str, tuple[int, ...]]]:
    """`tf_shapes("ssma")`: {name: shape} of a published tensor list `reference/tf-variables/<name>.txt`
    (`name<TAB>[shape]<TAB>dtype` lines); tests skip when the lists are absent."""
    folder = shared_data.parent / "reference" / "tf-variables"
    if not (folder / "adapnetpp.txt").is_file():
        pytest.skip(f"TF tensor lists not found under {folder}")

    def read(name: str) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for line in (folder / f"{name}.txt").read_text().splitlines():
            key, shape, _dtype = line.split("\t")
            inner = shape.strip("[]").strip()
            shapes[key] = tuple(int(s) for s in inner.split(",")) if inner else ()
        return shapes

    return read
