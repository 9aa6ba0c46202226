"""`train.time_budget_s`: a run sizes its steps to a wall-clock budget from its first steps, records the
count, and keeps it on resume; the pipeline treats such a run as finished at that count."""

from __future__ import annotations

import dataclasses
import time

import pytest
from engine_helpers import TinyNet
from test_trainer import Interrupt, interrupt_at, make_trainer

from fusionseg.config import RunConfig, TrainConfig
from fusionseg.engine.budget import BudgetClock
from fusionseg.engine.checkpoint import load_checkpoint
from fusionseg.errors import ConfigError
from fusionseg.workflows.train_fusion import stage_complete

STEP_S = 0.02  # the slow model's time per training step


class SlowNet(TinyNet):
    """TinyNet whose training forward takes STEP_S seconds (a stand-in for a heavy model)."""

    def forward(self, x):
        if self.training:
            time.sleep(STEP_S)
        return super().forward(x)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _train_cfg(**values) -> TrainConfig:
    return dataclasses.replace(RunConfig().train, **values)


def test_plan_fits_steps_and_validations_into_the_budget() -> None:
    tc = _train_cfg(time_budget_s=100.0, iterations=10_000, val_every=50, batch_size=4)
    clock = FakeClock()
    budget = BudgetClock(tc, start_step=0, run_t0=clock.now, clock=clock)
    clock.now += 3.0  # warm-up step: slow, not timed
    assert not budget.ready(1)
    for step in (2, 3, 4):
        clock.now += 0.5
        assert budget.ready(step) == (step == 4)
    assert budget.step_s == pytest.approx(0.5)
    # 95 s usable - 4.5 s spent = 90.5 s; a validation of 40 images costs 40 * 0.5 / (3 * 4) = 1.67 s
    total = budget.plan(4, val_images=40)
    vals = total // 50 + 1  # periodic ones and the final one
    assert (total - 4) * 0.5 + vals * 40 * 0.5 / 12 <= 90.5 + 1e-9
    assert (total + 1 - 4) * 0.5 + (total + 1) // 50 * 40 * 0.5 / 12 + 40 * 0.5 / 12 > 90.5
    assert 150 < total < 181
    assert "time budget 100 s" in budget.describe(total) and "0.50 s/step" in budget.describe(total)


def test_plan_is_clamped_to_iterations_and_the_floor() -> None:
    clock = FakeClock()
    for budget_s, expected in ((1e6, 300), (0.5, 25)):
        tc = _train_cfg(time_budget_s=budget_s, iterations=300, budget_min_iterations=25)
        budget = BudgetClock(tc, start_step=0, run_t0=clock.now, clock=clock)
        for step in range(1, 5):
            clock.now += 1.0
            budget.ready(step)
        assert budget.plan(4, val_images=0) == expected


def test_measured_validation_replaces_the_estimate() -> None:
    tc = _train_cfg(time_budget_s=100.0, iterations=10_000, val_every=2, batch_size=4)
    clock = FakeClock()
    budget = BudgetClock(tc, start_step=0, run_t0=clock.now, clock=clock)
    for step in range(1, 5):
        clock.now += 1.0
        budget.ready(step)
        if step == 2:  # a validation of 5 s ran after step 2: counted at its measured cost
            clock.now += 5.0
            budget.pause(5.0, validated=True)
    assert budget.val_s == 5.0 and budget.step_s == pytest.approx(1.0)
    total = budget.plan(4, val_images=10)
    # 95 - 9 = 86 s left; each pair of steps costs 2 + 5 s, and the final validation must fit
    assert total == 4 + 2 * 11 + 1


def test_budget_run_sizes_itself_records_the_count_and_resume_keeps_it(tmp_path, datasets) -> None:
    budget = dict(iterations=500, time_budget_s=0.8, budget_calibration_steps=3, val_every=1000)
    events = []
    run = make_trainer(tmp_path / "a", datasets, model=SlowNet(), progress=events.append, **budget)
    result = run.fit()
    plans = [e for e in events if e.kind == "plan"]
    assert plans[0].step == 3 and 5 <= plans[0].total_steps < 500
    # a second plan event only if this machine slowed down mid-run (then the budget stopped it)
    assert len(plans) == 1 or (len(plans) == 2 and "spent at step" in plans[1].message)
    total = plans[-1].total_steps
    assert result.steps == total
    assert [e.total_steps for e in events if e.kind == "end"] == [total]
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    assert last["total_steps"] == total and last["budget_planned"] is True and last["step"] == total
    assert stage_complete(tmp_path / "a", 500)  # finished at its fitted count, not at iterations

    # an interrupted budget run resumes to the count it fitted, whatever the clock says now
    events_b = []
    broken = make_trainer(
        tmp_path / "b",
        datasets,
        model=SlowNet(),
        progress=lambda e: (events_b.append(e), interrupt_at(4)(e)),
        ckpt_every=4,
        **budget,
    )
    with pytest.raises(Interrupt):
        broken.fit()
    fitted = next(e.total_steps for e in events_b if e.kind == "plan")
    assert not stage_complete(tmp_path / "b", 500)
    resumed_events = []
    fast = make_trainer(  # 10x faster model now: a new calibration would fit far more steps
        tmp_path / "b", datasets, model=TinyNet(), progress=resumed_events.append, ckpt_every=4, **budget
    )
    assert fast.fit(resume=True).steps == fitted
    assert not [e for e in resumed_events if e.kind == "plan"]


def test_without_budget_iterations_rule(tmp_path, datasets) -> None:
    events = []
    result = make_trainer(tmp_path / "r", datasets, progress=events.append).fit()
    assert result.steps == 6 and not [e for e in events if e.kind == "plan"]
    assert load_checkpoint(tmp_path / "r" / "last.pt")["budget_planned"] is False


@pytest.mark.parametrize(
    "values", [{"time_budget_s": -1.0}, {"budget_calibration_steps": 0}, {"budget_min_iterations": 0}]
)
def test_bad_budget_settings_are_refused(tmp_path, datasets, values) -> None:
    with pytest.raises(ConfigError, match="train."):
        make_trainer(tmp_path / "x", datasets, **values)


class SlowingNet(TinyNet):
    """Fast for the calibration steps, then 6x slower (a machine that got busy)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            time.sleep(STEP_S if self.calls <= 3 else 6 * STEP_S)
        return super().forward(x)


def test_a_run_that_slows_down_stops_when_the_budget_is_spent(tmp_path, datasets) -> None:
    events = []
    budget = dict(iterations=500, time_budget_s=0.8, budget_calibration_steps=3, val_every=1000)
    run = make_trainer(tmp_path / "s", datasets, model=SlowingNet(), progress=events.append, **budget)
    started = time.perf_counter()
    result = run.fit()
    elapsed = time.perf_counter() - started
    plans = [e for e in events if e.kind == "plan"]
    assert len(plans) == 2 and "spent at step" in plans[1].message
    assert result.steps == plans[1].step == plans[1].total_steps < plans[0].total_steps
    assert load_checkpoint(tmp_path / "s" / "last.pt")["total_steps"] == result.steps
    assert stage_complete(tmp_path / "s", 500)
    assert elapsed < 0.8 + 1.0  # one slow step and the final validation past the budget, not 5x it
