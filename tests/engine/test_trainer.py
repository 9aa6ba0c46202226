"""The training loop: exact resume, non-finite handling, trainable filter, accumulation, logs."""

from __future__ import annotations

import contextlib
import csv
import dataclasses

import pytest
import torch
from engine_helpers import NUM_CLASSES, ColourBlocks, TinyNet, tiny_config, tiny_meta
from torch import nn

from fusionseg.engine import runtime
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.engine.cpu import CPUInfo
from fusionseg.engine.sampling import StepBatchSampler
from fusionseg.engine.trainer import Trainer, TrainEvent
from fusionseg.errors import CheckpointError, ConfigError, FusionsegError
from fusionseg.models.output import ExpertOutput


class Interrupt(Exception):
    """Raised by a progress callback to simulate a crash after a checkpoint."""


def make_trainer(run_dir, datasets, *, model=None, progress=None, meta=None, **train):
    torch.manual_seed(123)
    train_set, val_set = datasets
    return Trainer(
        model() if isinstance(model, type) else model or TinyNet(),
        train_set=train_set,
        val_set=val_set,
        config=tiny_config(**train),
        run_dir=run_dir,
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        checkpoint_meta=meta or tiny_meta(),
        class_names=[f"c{i}" for i in range(NUM_CLASSES)],
        progress=progress,
    )


def interrupt_at(step: int, kind: str = "checkpoint"):
    def progress(event: TrainEvent) -> None:
        if event.kind == kind and event.step == step:
            raise Interrupt

    return progress


def test_resume_is_bit_exact(tmp_path, datasets):
    full = make_trainer(tmp_path / "full", datasets)
    full.fit()
    # "crash" right after step 4 was logged: the newest checkpoint is step 3
    broken = make_trainer(tmp_path / "resumed", datasets, progress=interrupt_at(4, "step"))
    with pytest.raises(Interrupt):
        broken.fit()
    assert (tmp_path / "resumed" / "ckpt-00000003.pt").exists()
    resumed = make_trainer(tmp_path / "resumed", datasets)
    result = resumed.fit(resume=True)
    assert result.steps == 6 and result.resumed_from == tmp_path / "resumed" / "last.pt"
    with (tmp_path / "resumed" / "metrics.csv").open() as fh:
        steps = [r["step"] for r in csv.DictReader(fh) if r["split"] == "train"]
    assert steps == ["1", "2", "3", "4", "5", "6"]  # step 4 logged once, not twice
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the optimiser state matches too
    sa = load_checkpoint(tmp_path / "full" / "last.pt")["optimizer"]["state"]
    sb = load_checkpoint(tmp_path / "resumed" / "last.pt")["optimizer"]["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])


def test_interrupted_run_differs_without_resume_state(tmp_path, datasets):
    """Guard for the test above: different seeds give different weights (the comparison can fail)."""
    a = make_trainer(tmp_path / "a", datasets)
    a.fit()
    b = make_trainer(tmp_path / "b", datasets, seed=5)
    b.fit()
    assert not torch.equal(a.model.head.weight, b.model.head.weight)


def test_run_folder_outputs(tmp_path, datasets):
    trainer = make_trainer(tmp_path / "run", datasets, keep_last=1)
    result = trainer.fit()
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / "last.pt").exists() and (run / "best.pt").exists()
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == ["ckpt-00000006.pt"]
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows if r["split"] == "train"] == ["1", "2", "3", "4", "5", "6"]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == ["3", "6"] and all(0 <= float(r["miou"]) <= 1 for r in val)
    assert result.metrics is not None
    assert result.best_miou == pytest.approx(max(float(r["miou"]) for r in val), rel=1e-5)
    ckpt = load_checkpoint(run / "last.pt", require_sidecar=True)
    assert ckpt["step"] == 6 and ckpt["modalities"] == ["rgb"] and ckpt["config"]["train"]["iterations"] == 6
    assert ckpt["scheduler"]["step_count"] == 6


def test_refuses_existing_run_without_resume(tmp_path, datasets):
    make_trainer(tmp_path / "run", datasets, iterations=3).fit()
    with pytest.raises(FusionsegError, match="`resume`"):
        make_trainer(tmp_path / "run", datasets, iterations=3).fit()


def test_resume_with_other_class_count_is_refused(tmp_path, datasets):
    make_trainer(tmp_path / "run", datasets, iterations=3).fit()
    other = make_trainer(tmp_path / "run", datasets, iterations=6, meta=tiny_meta(num_classes=7))
    with pytest.raises(CheckpointError, match=r"num_classes=4.*7"):
        other.fit(resume=True)
    other = make_trainer(tmp_path / "run", datasets, iterations=6, meta=tiny_meta(modality="depth"))
    with pytest.raises(CheckpointError, match=r"modalities=\['rgb'\].*\['depth'\]"):
        other.fit(resume=True)


def test_resume_without_checkpoint(tmp_path, datasets):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        make_trainer(tmp_path / "empty", datasets).fit(resume=True)


def nan_at(call: int):
    """A `TinyNet` class whose training call number `call` returns NaN logits."""
    calls = {"n": 0}

    class NanAt(TinyNet):
        def forward(self, inputs):
            calls["n"] += self.training  # count training steps only
            out = super().forward(inputs)
            if self.training and calls["n"] == call:
                return ExpertOutput(out.logits * float("nan"), out.aux, out.taps)
            return out

    return NanAt


def test_nonfinite_stop_names_step_and_samples(tmp_path, datasets):
    trainer = make_trainer(tmp_path / "run", datasets, model=nan_at(5))
    with pytest.raises(FusionsegError) as info:
        trainer.fit()
    msg = str(info.value)
    assert "step 5" in msg and "samples s" in msg and "/mem/" in msg and "ckpt-00000003" not in msg
    assert "last.pt" in msg
    # the last good checkpoint is untouched
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


def test_nonfinite_skip_warns_and_continues(tmp_path, datasets):
    events = []
    trainer = make_trainer(
        tmp_path / "run", datasets, model=nan_at(2), on_nonfinite="skip", progress=events.append
    )
    result = trainer.fit()
    assert result.steps == 6 and result.skipped_steps == 1
    warns = [e.message for e in events if e.kind == "warn"]
    assert any("step 2" in w and "skipped" in w for w in warns)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_trainable_filter_trains_only_selected(tmp_path, datasets):
    model = TinyNet()
    torch.manual_seed(0)
    frozen = {k: v.clone() for k, v in model.named_parameters() if not k.startswith("head.")}
    head = model.head.weight.clone()
    train_set, val_set = datasets
    trainer = Trainer(
        model,
        train_set=train_set,
        val_set=None,
        config=tiny_config(iterations=3),
        run_dir=tmp_path / "run",
        num_classes=NUM_CLASSES,
        modalities=["rgb"],
        checkpoint_meta=tiny_meta(),
        trainable=lambda name, p: name.startswith("head."),
    )
    result = trainer.fit()
    assert result.best_checkpoint is None
    for k, v in model.named_parameters():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert not torch.equal(model.head.weight, head)


class Linear1x1(nn.Module):
    """No BN, no dropout: gradients of a batch equal the mean of per-sample gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def forward(self, inputs):
        return ExpertOutput(self.conv(inputs["rgb"] / 255.0))


def test_grad_accumulation_matches_larger_batch(tmp_path, datasets):
    a = make_trainer(tmp_path / "a", datasets, model=Linear1x1(), batch_size=2, grad_accum=1, iterations=3)
    b = make_trainer(tmp_path / "b", datasets, model=Linear1x1(), batch_size=1, grad_accum=2, iterations=3)
    a.fit()
    b.fit()
    torch.testing.assert_close(a.model.conv.weight, b.model.conv.weight, rtol=1e-5, atol=1e-6)
    c = make_trainer(tmp_path / "c", datasets, model=Linear1x1(), batch_size=1, grad_accum=1, iterations=3)
    c.fit()
    assert not torch.allclose(a.model.conv.weight, c.model.conv.weight)


def test_step_sampler_depends_only_on_seed_and_step():
    s = StepBatchSampler(10, 4, seed=3)
    it = iter(s)
    stream = [next(it) for _ in range(6)]
    assert all(sorted(sum(stream[i : i + 5], [])[:10]) for i in range(1))
    late = iter(StepBatchSampler(10, 4, seed=3, start_batch=4))
    assert [next(late), next(late)] == stream[4:6]
    # every epoch is a permutation
    flat = sum(stream, [])
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert StepBatchSampler(10, 4, seed=4).batch(0) != s.batch(0) or StepBatchSampler(10, 4, seed=4).batch(
        1
    ) != s.batch(1)
    pairs = StepBatchSampler(10, 4, seed=3, with_epoch=True).batch(3)
    assert pairs == [(i, (12 + k) // 10) for k, i in enumerate(s.batch(3))]


def test_colour_blocks_is_learnable(tmp_path):
    """The loop actually learns: mIoU on the in-memory set rises well above chance."""
    data = (ColourBlocks(12, seed=0), ColourBlocks(4, seed=1))
    trainer = make_trainer(tmp_path / "run", data, iterations=60, val_every=60, ckpt_every=60, log_every=20)
    result = trainer.fit()
    assert result.metrics is not None and result.metrics.miou > 0.8


def test_worker_processes_do_not_change_the_result(tmp_path, datasets):
    """Data order and augmentation depend on (seed, step) only, not on the number of workers."""
    a = make_trainer(tmp_path / "a", datasets, iterations=3)
    a.fit()
    b = make_trainer(tmp_path / "b", datasets, iterations=3)
    b.cfg = dataclasses.replace(b.cfg, data=dataclasses.replace(b.cfg.data, num_workers=2))
    b.fit()
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


def test_amp_modes_on_cpu(tmp_path, datasets, monkeypatch):
    """Reduced precision on the CPU only where it is native: elsewhere one warning and fp32."""
    plain = CPUInfo("plain test cpu", frozenset({"avx2", "fma"}), 2)
    monkeypatch.setattr(runtime, "cpu_info", lambda: plain)
    with pytest.warns(RuntimeWarning, match="fp16 is not native on this CPU .plain test cpu"):
        result = make_trainer(tmp_path / "fp16", datasets, amp="fp16", iterations=2).fit()
    assert result.steps == 2
    assert not runtime.grad_scaler(torch.device("cpu"), "fp16").is_enabled()
    with pytest.warns(RuntimeWarning, match="bf16 is not native"):
        assert isinstance(runtime.autocast_context(torch.device("cpu"), "bf16"), contextlib.nullcontext)
    native = CPUInfo("bf16 test cpu", frozenset({"avx512_bf16"}), 2)
    monkeypatch.setattr(runtime, "cpu_info", lambda: native)
    assert isinstance(runtime.autocast_context(torch.device("cpu"), "bf16"), torch.autocast)
    result = make_trainer(tmp_path / "bf16", datasets, amp="bf16", iterations=2).fit()
    assert result.steps == 2 and result.metrics is not None


def test_resume_with_a_changed_config_is_refused_naming_the_keys(tmp_path, datasets):
    broken = make_trainer(tmp_path / "r", datasets, progress=interrupt_at(3))
    with pytest.raises(Interrupt):
        broken.fit()
    changed = make_trainer(tmp_path / "r", datasets, lr=5e-3, batch_size=3)
    with pytest.raises(ConfigError) as info:
        changed.fit(resume=True)
    message = str(info.value)
    assert "train.lr: 0.01 -> 0.005" in message and "train.batch_size: 2 -> 3" in message, message
    assert "allow_config_change" in message and "\n" not in message
    assert not (tmp_path / "r" / "config-changes.txt").exists()
    # how far and how often: may change without the flag
    assert make_trainer(tmp_path / "r", datasets, iterations=7, log_every=2).fit(resume=True).steps == 7


def test_allowed_config_change_is_recorded(tmp_path, datasets):
    broken = make_trainer(tmp_path / "r", datasets, progress=interrupt_at(3))
    with pytest.raises(Interrupt):
        broken.fit()
    run = make_trainer(tmp_path / "r", datasets, lr=5e-3, allow_config_change=True)
    assert run.fit(resume=True).steps == 6
    record = (tmp_path / "r" / "config-changes.txt").read_text()
    assert record.startswith("step 3: ") and "train.lr: 0.01 -> 0.005" in record
    assert "lr: 0.005" in (tmp_path / "r" / "config.yaml").read_text()  # config.yaml is current
