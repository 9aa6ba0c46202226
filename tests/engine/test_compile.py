"""torch.compile on the CPU: compiled and eager outputs (and a short training run) agree."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from engine_helpers import NUM_CLASSES, ColourBlocks, tiny_config, tiny_meta
from torch import nn

from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.engine.trainer import Trainer
from fusionseg.fusion.ssma import SSMA
from fusionseg.models.output import ExpertOutput

# Inductor generates and builds C++ for CPU kernels: without a compiler torch.compile cannot run here.
CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
pytestmark = pytest.mark.skipif(CXX is None, reason="torch.compile on CPU needs a C++ compiler (g++/clang++)")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # no cached graphs from other tests
    yield
    torch._dynamo.reset()


class SmallNet(nn.Module):
    """Conv-BN-ReLU, a classifier and aux heads; no dropout (compiled RNG differs from eager)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Conv2d(8, NUM_CLASSES, 1)
        self.aux_heads = nn.ModuleList([nn.Conv2d(8, NUM_CLASSES, 1) for _ in range(2)])

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> ExpertOutput:
        feats = self.body(inputs["rgb"])
        aux = tuple(h(feats) for h in self.aux_heads) if self.training else ()
        return ExpertOutput(logits=self.head(feats), aux=aux, taps={})


def test_compiled_ssma_block_matches_eager() -> None:
    torch.manual_seed(0)
    block = SSMA(16, 4, projection="1x1-bn").eval()
    compiled = torch.compile(block)
    for shape in ((2, 16, 8, 16), (1, 16, 4, 8)):  # a second shape: recompiles, still equal
        feats = [torch.randn(*shape), torch.randn(*shape)]
        with torch.no_grad():
            eager, fast = block(feats), compiled(feats)
        torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)


def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    """`train.compile=true` runs the same optimisation: weights after 3 steps agree with the eager run."""

    def run(out: Path, compile: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        Trainer(
            SmallNet(),
            train_set=ColourBlocks(6, seed=0),
            val_set=None,
            config=tiny_config(iterations=3, ckpt_every=3, compile=compile),
            run_dir=out,
            num_classes=NUM_CLASSES,
            modalities=["rgb"],
            checkpoint_meta=tiny_meta(),
        ).fit()
        return load_checkpoint(out / "last.pt")["model"]

    eager = run(tmp_path / "eager", False)
    compiled = run(tmp_path / "compiled", True)
    assert set(compiled) == set(eager)  # plain keys: the checkpoint holds the uncompiled module
    for key, value in eager.items():
        # fused kernels sum in another order; Adam (lr 1e-2) turns ~1e-7 gradient differences into
        # ~1e-6 weight differences after 3 steps
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-4, msg=key)
