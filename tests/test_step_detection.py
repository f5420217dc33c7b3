"""The step detector's rules, in this process on real torch loops (the corpus runs them through the CLI):
boundaries are counted by installing the detector around a loop."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from advisor.runner.steps import StepDetector


class Recorder:
    def __init__(self):
        self.boundaries: list[str] = []
        self.restarts = 0

    def boundary(self, mode: str) -> None:
        self.boundaries.append(mode)

    def restart(self) -> None:
        self.restarts += 1
        self.boundaries.clear()


@contextlib.contextmanager
def detecting():
    recorder = Recorder()
    detector = StepDetector(recorder.boundary, recorder.restart)
    detector.install()
    try:
        yield recorder, detector
    finally:
        detector.uninstall()


def _data(n=8):
    torch.manual_seed(0)
    return torch.randn(n, 16), torch.randint(0, 4, (n,))


def test_reentrant_checkpoint_is_part_of_its_backward():
    """A reentrant checkpoint calls torch.autograd.backward inside the outer backward: one step, not two."""
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    x, y = _data()
    with detecting() as (recorder, detector):
        for _ in range(5):
            model.zero_grad()
            hidden = checkpoint(model[:2], x.requires_grad_(), use_reentrant=True)
            F.cross_entropy(model[2](hidden), y).backward()
            for p in model.parameters():
                p.data.add_(-0.1 * p.grad)
    assert detector.mode == "backward" and recorder.boundaries == ["backward"] * 4


def test_accumulation_waits_for_the_optimizer():
    model = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with detecting() as (recorder, detector):
        for _ in range(3):
            for _ in range(4):  # gradients accumulate: no reset between these backward passes
                F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert detector.mode == "optimizer" and recorder.boundaries == ["optimizer"] * 3 and recorder.restarts == 0


def test_inference_first_then_training_restarts_the_count():
    model = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with detecting() as (recorder, detector):
        with torch.no_grad():
            for _ in range(3):
                model(x)
        assert detector.mode == "module" and len(recorder.boundaries) == 2
        for _ in range(2):
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert detector.mode == "optimizer" and recorder.restarts == 1 and recorder.boundaries == ["optimizer"] * 2


def test_manual_updates_then_an_optimizer_switch_modes():
    model = nn.Linear(16, 4)
    x, y = _data()
    with detecting() as (recorder, detector):
        for _ in range(3):
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
        assert detector.mode == "backward" and len(recorder.boundaries) == 2
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    assert detector.mode == "optimizer" and recorder.restarts == 1 and recorder.boundaries == ["optimizer"] * 2


@pytest.mark.parametrize("infinite", [False, True])
def test_grad_scaler_step_ends_a_step_once(infinite):
    model = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    x, y = _data()
    with detecting() as (recorder, detector):
        for _ in range(3):
            loss = F.cross_entropy(model(x), y) * (float("inf") if infinite else 1.0)
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad()
            assert (scaler.get_scale() < scale) == infinite, "the scaler skipped exactly the infinite steps"
    assert detector.mode == "optimizer" and recorder.boundaries == ["optimizer"] * 3


def test_hooks_are_removed():
    call, backward, grad, scaler_step = (nn.Module.__call__, torch.autograd.backward, torch.autograd.grad,
                                         torch.amp.GradScaler.step)
    with detecting():
        assert torch.autograd.grad is not grad and torch.amp.GradScaler.step is not scaler_step
    assert (nn.Module.__call__, torch.autograd.backward, torch.autograd.grad, torch.amp.GradScaler.step) == (
        call, backward, grad, scaler_step)


def test_settled_detector_leaves_model_calls_alone_and_still_counts_steps():
    """Once the window's work is done (``--keep-running``), model calls stop going through advisor's wrapper;
    in ``module`` mode the pacing model's class alone keeps a light one, so its calls still end steps."""
    original = nn.Module.__call__
    model, other = nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Linear(16, 4)
    x, _ = _data()
    with detecting() as (recorder, detector), torch.no_grad():
        for _ in range(3):
            model(x)
        assert detector.mode == "module" and len(recorder.boundaries) == 2
        detector.settle()
        assert nn.Module.__call__ is original, "no wrapper on every module call"
        for _ in range(4):
            model(x)
            other(x)
        assert recorder.boundaries == ["module"] * 6, "the pacing model's calls, not the other model's"
    assert "__call__" not in vars(nn.Sequential), "the light wrapper is gone with the detector"


def test_settled_detector_in_optimizer_mode_keeps_counting_optimizer_steps():
    original = nn.Module.__call__
    model = nn.Linear(16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with detecting() as (recorder, detector):
        for i in range(5):
            if i == 2:
                detector.settle()
                assert nn.Module.__call__ is original
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    assert detector.mode == "optimizer" and recorder.boundaries == ["optimizer"] * 5
