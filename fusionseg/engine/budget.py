"""Fitting a run's steps to a wall-clock budget (`train.time_budget_s`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class BudgetClock:
    """Sizes a run to `train.time_budget_s` from the time its first steps took on this machine.

    Steps 1 .. `budget_calibration_steps` run with the schedule of `train.iterations`; step 1 is a
    warm-up (allocations, first batches) and the others are timed. Then the run's total T is the
    number of steps that fit the rest of the budget, with validation passes counted at their measured
    cost when one has run, else estimated as a forward pass (a third of a training step) per image:
    T = clamp(done + (remaining - validations) / step_s, budget_min_iterations, iterations). The
    poly schedule is stretched to T from there on; the lr of the calibration steps differs from the
    fitted schedule's by at most (1 - k/iterations)^0.9 vs (1 - k/T)^0.9 for k <= calibration steps.
    """

    def __init__(
        self, tc: Any, *, start_step: int, run_t0: float, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.tc = tc
        self.clock = clock
        self.start_step = start_step
        self.run_t0 = run_t0
        self.warm = max(1, int(tc.budget_calibration_steps))
        self.t_first: float | None = None  # clock after the warm-up step
        self.step_s = float("nan")
        self.paused_s = 0.0  # validation and checkpoints so far
        self.val_s: float | None = None  # measured cost of one validation pass

    def ready(self, step: int) -> bool:
        """Call after each step; True once the calibration steps are done."""
        done = step - self.start_step
        now = self.clock()
        if done == 1:
            self.t_first = now - self.paused_s
        if done < self.warm and step < self.tc.iterations:
            return False
        if self.t_first is None or done < 2:  # iterations too small to time anything: keep them
            self.step_s = (now - self.run_t0 - self.paused_s) / max(done, 1)
        else:
            self.step_s = (now - self.paused_s - self.t_first) / (done - 1)
        return True

    def pause(self, seconds: float, *, validated: bool) -> None:
        """Validation/checkpoint time of one step (excluded from the step time)."""
        self.paused_s += seconds
        if validated and self.val_s is None and seconds > 0:
            self.val_s = seconds

    def plan(self, step: int, *, val_images: int) -> int:
        """The run's total steps from here (called once, right after `ready` returned True)."""
        tc = self.tc
        # 5 % of the budget is kept for what is not modelled (checkpoint writes, the final log lines)
        left = 0.95 * tc.time_budget_s - (self.clock() - self.run_t0)
        per_val = self.val_s
        if per_val is None:
            per_val = val_images * self.step_s / (3.0 * max(tc.batch_size * tc.grad_accum, 1))
        steps = step
        while steps < tc.iterations:  # one more step, and the validations it brings, still fit?
            nxt = steps + 1
            cost = self.step_s + (per_val if val_images and nxt % tc.val_every == 0 else 0.0)
            if left - cost < per_val * (1 if val_images else 0):  # the final validation must fit too
                break
            left -= cost
            steps = nxt
        return int(min(tc.iterations, max(steps, tc.budget_min_iterations, step)))

    def exhausted(self) -> bool:
        """True once the whole budget is spent (the calibration's estimate proved too optimistic)."""
        return self.clock() - self.run_t0 >= self.tc.time_budget_s

    def describe_stop(self, step: int) -> str:
        return (
            f"time budget {self.tc.time_budget_s:g} s spent at step {step}: stopping there "
            "(the machine ran slower than in the calibration)"
        )

    def describe(self, total: int) -> str:
        return (
            f"time budget {self.tc.time_budget_s:g} s: {total} steps "
            f"({self.step_s:.2f} s/step measured over the first steps; train.iterations {self.tc.iterations})"
        )
