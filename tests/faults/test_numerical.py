"""Numerical faults: NaN/Inf gradients and inputs stop the step or the run with a message naming the step
and the batch's files, keep the last good checkpoint, and fp16 loss-scale overflow is left to the scaler.

(Non-finite *losses* with `train.on_nonfinite` stop/skip are covered by tests/engine/test_trainer.py.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from faults_helpers import build_tiny_trainer
from torch import Tensor

from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.engine.sampling import StepBatchSampler
from fusionseg.engine.trainer import Trainer
from fusionseg.errors import FusionsegError
from fusionseg.fsutil import OutputLock

pytestmark = pytest.mark.faults

SHORT = {"iterations": 6, "ckpt_every": 3, "val_every": 3}  # checkpoints at steps 3 and 6


def gradient_fault(at_calls: set[int], factor: float):
    """A `TinyNet` class whose training calls number `at_calls` (1-based) give a finite loss but
    gradients multiplied by `factor` (NaN or Inf) on their way back into the model."""
    from engine_helpers import TinyNet  # importable once faults_helpers is

    calls = {"n": 0}

    class GradientFault(TinyNet):
        def forward(self, inputs):
            out = super().forward(inputs)
            if self.training:
                calls["n"] += 1
                if calls["n"] in at_calls:
                    out.logits.register_hook(lambda grad: grad * factor)
            return out

    return GradientFault


def _params(trainer: Trainer) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.named_parameters()}


def _recorder(holder: dict):
    """Progress callback keeping the parameters after every step and the warnings."""

    def progress(event) -> None:
        if event.kind == "step":
            holder.setdefault("params", {})[event.step] = _params(holder["trainer"])
        elif event.kind == "warn":
            holder.setdefault("warnings", []).append(event.message)

    return progress


@pytest.mark.parametrize("factor", [math.nan, math.inf], ids=["nan", "inf"])
def test_nonfinite_gradient_stops_naming_step_and_files_and_keeps_last_good(tmp_path: Path, factor) -> None:
    reference = build_tiny_trainer(tmp_path / "reference", **SHORT)
    reference.fit()
    run = tmp_path / "run"
    faulty = build_tiny_trainer(run, model=gradient_fault({5}, factor), **SHORT)
    with pytest.raises(FusionsegError) as info:
        faulty.fit()
    message = str(info.value)
    assert "non-finite gradient at step 5" in message and "training stopped" in message
    assert "samples s" in message and "rgb=/mem/s" in message  # the batch's samples and files
    assert f"last good checkpoint: {run / 'last.pt'}" in message
    last = load_checkpoint(run / "last.pt", require_sidecar=True)
    assert last["step"] == 3 and all(torch.isfinite(t).all() for t in last["model"].values())
    assert not (run / OutputLock.NAME).exists()  # the lock is released on the way out

    resumed = build_tiny_trainer(run, **SHORT)  # the cause removed, the run continues from step 3
    assert resumed.fit(resume=True).resumed_from == run / "last.pt"
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key  # nothing of the run was lost


def test_nonfinite_gradient_skip_leaves_the_weights_of_that_step(tmp_path: Path) -> None:
    holder: dict = {}
    trainer = build_tiny_trainer(
        tmp_path / "run",
        model=gradient_fault({2}, math.nan),
        progress=_recorder(holder),
        on_nonfinite="skip",
        **SHORT,
    )
    holder["trainer"] = trainer
    result = trainer.fit()
    assert result.steps == 6 and result.skipped_steps == 1
    assert any("non-finite gradient at step 2" in w and "skipped" in w for w in holder["warnings"])
    after = holder["params"]
    for key in after[1]:
        assert torch.equal(after[1][key], after[2][key]), key  # step 2 changed no weight
    assert any(not torch.equal(after[2][k], after[3][k]) for k in after[2])  # step 3 trained again
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nonfinite_gradient_with_accumulation_names_every_micro_batch(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(
        tmp_path / "run", model=gradient_fault({6}, math.nan), batch_size=1, grad_accum=2, **SHORT
    )
    with pytest.raises(FusionsegError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite gradient at step 3" in message  # micro-batches 5 and 6 make step 3
    sampler = StepBatchSampler(12, 1, seed=0)  # which samples steps 3's micro-batches hold
    for index in sampler.batch(4) + sampler.batch(5):
        assert f"s{index:02d}" in message


def test_nan_in_an_input_file_names_that_file(tmp_path: Path) -> None:
    from engine_helpers import ColourBlocks

    data = ColourBlocks(12, seed=0)
    image, label, sid = data.items[5]
    data.items[5] = (torch.full_like(image, math.nan), label, sid)  # a corrupt float input
    first = next(k for k in range(100) if 5 in StepBatchSampler(12, 2, seed=0).batch(k))
    trainer = build_tiny_trainer(tmp_path / "run", train_set=data, iterations=first + 3)
    with pytest.raises(FusionsegError) as info:
        trainer.fit()
    message = str(info.value)
    assert f"non-finite loss at step {first + 1}" in message and "rgb=/mem/s05.png" in message


def test_fp16_overflow_is_skipped_by_the_scaler_without_stopping(tmp_path: Path, monkeypatch) -> None:
    """The GradScaler path (fp16 on CUDA) exercised on CPU: the same scaler class, enabled for CPU."""
    monkeypatch.setattr(Trainer, "_grad_scaler", lambda self: torch.amp.GradScaler("cpu", init_scale=2.0**16))
    holder: dict = {}
    trainer = build_tiny_trainer(
        tmp_path / "run", model=gradient_fault({2, 4}, math.inf), progress=_recorder(holder), **SHORT
    )
    holder["trainer"] = trainer
    result = trainer.fit()  # on_nonfinite is "stop": an overflow is not a fault, the scaler handles it
    assert result.steps == 6 and result.skipped_steps == 0 and not holder.get("warnings")
    after = holder["params"]
    for step in (2, 4):  # the overflowing steps made no update ...
        assert all(torch.equal(after[step - 1][k], after[step][k]) for k in after[step])
    assert any(not torch.equal(after[4][k], after[5][k]) for k in after[4])  # ... the others did
    scaler = load_checkpoint(tmp_path / "run" / "last.pt")["scaler"]
    assert scaler["scale"] == 2.0**16 * 0.5**2  # backed off once per overflow, saved for resuming
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_without_a_scaler_the_same_overflow_stops_the_run(tmp_path: Path) -> None:
    """Guard for the test above: the injected gradients are non-finite indeed."""
    trainer = build_tiny_trainer(tmp_path / "run", model=gradient_fault({2, 4}, math.inf), **SHORT)
    with pytest.raises(FusionsegError, match="non-finite gradient at step 2"):
        trainer.fit()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast with loss scaling needs CUDA")
def test_fp16_on_cuda_survives_overflow(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(
        tmp_path / "run", model=gradient_fault({2}, math.inf), amp="fp16", device="cuda", **SHORT
    )
    result = trainer.fit()
    assert result.steps == 6 and result.skipped_steps == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["scaler"]["scale"] < 2.0**16
