"""Signals that lose no work: SIGTERM raised like Ctrl-C inside ``graceful``, and a training run that writes its
checkpoint at the end of the step a signal arrived in, then resumes to the same weights."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from inrecon import interrupts
from inrecon.engine.checkpoint import load_checkpoint
from inrecon.engine.trainer import Callback, Checkpoint, OptimConfig, train
from tests.engine.tasks import Quadratic


class _Signal(Callback):
    """Send ``signum`` to this process in the forward pass of ``at`` (the step then finishes)."""

    def __init__(self, at: int, signum: int = signal.SIGTERM, times: int = 1):
        self.at, self.signum, self.times = at, signum, times

    def on_forward(self, run, step, out):
        if step == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


def _kill(signum: int) -> None:
    os.kill(os.getpid(), signum)


def test_without_graceful_nothing_changes():
    with interrupts.deferred():
        assert interrupts.pending() is None
    with pytest.raises(KeyboardInterrupt) as info:
        _kill(signal.SIGINT)
    assert not isinstance(info.value, interrupts.Interrupted)


def test_graceful_raises_sigterm_as_an_interrupt_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.graceful():
        with pytest.raises(interrupts.Interrupted) as info:
            _kill(signal.SIGTERM)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.signum, info.value.exit_status) == (signal.SIGTERM, 143)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_deferred_waits_for_the_reader_and_a_second_signal_raises_at_once():
    with interrupts.graceful():
        with pytest.raises(interrupts.Interrupted) as info:
            with interrupts.deferred():
                _kill(signal.SIGINT)
                assert interrupts.pending() == signal.SIGINT  # recorded, not raised
                _kill(signal.SIGTERM)  # the second: raised here
        assert info.value.signum == signal.SIGTERM
        with pytest.raises(interrupts.Interrupted) as info:
            with interrupts.deferred():
                _kill(signal.SIGTERM)
            pytest.fail("a signal still pending when the deferral ends must be raised then")
        assert info.value.signum == signal.SIGTERM and interrupts.pending() is None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_train_saves_the_step_it_was_signalled_in_and_resumes_to_the_same_weights(tmp_path, signum):
    cfg = OptimConfig(steps=40, lr=0.1)
    ref = Quadratic()
    train(ref, cfg)
    ck = Checkpoint(tmp_path / "run.pt", "fp", every=1000)  # no periodic checkpoint in this run
    with interrupts.graceful():
        with pytest.raises(interrupts.Interrupted) as info:
            train(Quadratic(), cfg, [_Signal(at=16, signum=signum)], checkpoint=ck)
    assert info.value.signum == signum
    assert load_checkpoint(ck.path, "fp")["step"] == 17  # the signalled step finished, then saved
    task = Quadratic()
    run = train(task, cfg, checkpoint=ck)
    assert run.start == 17 and run.step == 40
    assert torch.equal(task.image(), ref.image())


def test_train_without_a_checkpoint_stops_at_the_end_of_the_step():
    seen = []

    class Count(Callback):
        def on_step_end(self, run, step, out):
            seen.append(step)

    with interrupts.graceful(), pytest.raises(interrupts.Interrupted):
        train(Quadratic(), OptimConfig(steps=40, lr=0.1), [_Signal(at=5), Count()])
    assert seen == list(range(6))
