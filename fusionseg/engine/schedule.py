"""Polynomial learning-rate decay with a floor (adapnetpp.md §8).

lr(t) = (lr0 - lr_end) * (1 - min(t, T) / T) ** power + lr_end, with lr_end = 1e-4 and power 0.9 in
the released code. The scheduler keeps only its step counter as state, so a checkpoint restores it
exactly.
"""

from __future__ import annotations

from typing import Any

import torch


def poly_lr(step: int, *, lr0: float, lr_end: float, total_steps: int, power: float = 0.9) -> float:
    """Learning rate at optimiser step `step` (0-based) of a poly schedule with a floor.

    Args:
        step: Optimiser steps taken so far (t); clamped to `total_steps`.
        lr0: Initial learning rate.
        lr_end: Learning rate reached at `total_steps` and kept afterwards.
        total_steps: T, the number of steps of the decay (> 0).
        power: Exponent p of the decay.

    Returns:
        The learning rate at step t.

    Raises:
        ValueError: negative step or non-positive `total_steps`.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    frac = 1.0 - min(step, total_steps) / total_steps
    return (lr0 - lr_end) * frac**power + lr_end


class PolyLR:
    """Set every parameter group's lr to the poly schedule of its own initial lr.

    A group may carry its own floor under the key `lr_end`; otherwise the scheduler's `lr_end` scaled
    by the group's share of the largest initial lr is used, so groups with a smaller lr (a fusion head
    trained slower, say) keep their ratio to the others down to the floor.

    Args:
        optimizer: The optimiser whose groups are updated in place.
        total_steps: T.
        lr_end: Floor of the group with the largest initial lr.
        power: Exponent of the decay.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, lr_end: float, power: float = 0.9
    ) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.power = power
        self.step_count = 0
        top = max(float(g["lr"]) for g in optimizer.param_groups)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
            group.setdefault("lr_end", lr_end * float(group["initial_lr"]) / top if top > 0 else 0.0)
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = poly_lr(
                self.step_count,
                lr0=group["initial_lr"],
                lr_end=group["lr_end"],
                total_steps=self.total_steps,
                power=self.power,
            )

    def step(self) -> None:
        """Advance one optimiser step and update the groups' lr."""
        self.step_count += 1
        self._apply()

    def set_total_steps(self, total_steps: int) -> None:
        """Change T (a run that sized itself to a time budget); the current step's lr is recomputed."""
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        self.total_steps = int(total_steps)
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current lr of every group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Plain state (weights-only loadable)."""
        return {"step_count": self.step_count, "total_steps": self.total_steps, "power": self.power}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the step counter (the schedule's shape comes from the current config)."""
        self.step_count = int(state["step_count"])
        self._apply()
