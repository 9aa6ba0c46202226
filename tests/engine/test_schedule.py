"""Poly learning rate with a floor (adapnetpp.md §8)."""

from __future__ import annotations

import pytest
import torch

from fusionseg.engine.schedule import PolyLR, poly_lr


def test_poly_values():
    assert poly_lr(0, lr0=1e-3, lr_end=1e-4, total_steps=100) == pytest.approx(1e-3)
    assert poly_lr(50, lr0=1e-3, lr_end=1e-4, total_steps=100) == pytest.approx(9e-4 * 0.5**0.9 + 1e-4)
    assert poly_lr(100, lr0=1e-3, lr_end=1e-4, total_steps=100) == pytest.approx(1e-4)
    assert poly_lr(500, lr0=1e-3, lr_end=1e-4, total_steps=100) == pytest.approx(1e-4)
    with pytest.raises(ValueError):
        poly_lr(-1, lr0=1e-3, lr_end=1e-4, total_steps=100)
    with pytest.raises(ValueError):
        poly_lr(0, lr0=1e-3, lr_end=1e-4, total_steps=0)


def test_scheduler_steps_groups_and_restores():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 1e-4}], lr=1e-3)
    sched = PolyLR(opt, total_steps=10, lr_end=1e-4)
    assert sched.get_last_lr() == pytest.approx([1e-3, 1e-4])
    for _ in range(5):
        sched.step()
    expected = poly_lr(5, lr0=1e-3, lr_end=1e-4, total_steps=10)
    assert sched.get_last_lr()[0] == pytest.approx(expected)
    assert sched.get_last_lr()[1] == pytest.approx(expected / 10)  # keeps its ratio
    state = sched.state_dict()
    opt2 = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 1e-4}], lr=1e-3)
    other = PolyLR(opt2, total_steps=10, lr_end=1e-4)
    other.load_state_dict(state)
    assert other.get_last_lr() == pytest.approx(sched.get_last_lr())
