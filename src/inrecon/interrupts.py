"""Interrupts that lose no work: SIGTERM handled like Ctrl-C, and a training run that saves before it stops.

A batch scheduler ends a job with SIGTERM (Slurm's ``scancel`` and time limit, ``timeout``, ``docker stop``,
``kill``); Python's default for it ends the process on the spot, so no ``finally`` runs and a run that
checkpoints every 200 steps loses up to 199 of them. :func:`graceful` (the command line's ``main`` holds it)
makes SIGTERM raise :class:`Interrupted`, a :class:`KeyboardInterrupt`, wherever Ctrl-C would: temporary files
are removed, worker processes stopped, and the command exits with ``128 + signal`` (130, 143).

Inside :func:`deferred` (the training loop holds it around its steps) the first SIGINT or SIGTERM is only
recorded; the loop sees it through :func:`pending` at the end of the step, writes its checkpoint and raises
:func:`interrupted` itself, so a rerun of the same command resumes from the step it was stopped at, not the last
periodic checkpoint. A second signal while the first waits raises at once (press Ctrl-C twice to stop without
waiting for the step). Nothing changes for a program that never enters :func:`graceful` (library users): there,
signals keep Python's own behaviour. The local worker processes of :class:`inrecon.parallel.Runner` enter it
around each call, so that a worker stopped by its runner lets a training run save its step too.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["Interrupted", "deferred", "graceful", "interrupted", "pending"]

_HANDLED = (signal.SIGINT, signal.SIGTERM)
_state = {"installed": 0, "defer": 0, "pending": None}


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signum``: ``signal.SIGINT`` or ``signal.SIGTERM``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        """The shell's status for a command ended by this signal: ``128 + signum``."""
        return 128 + self.signum


def _handler(signum, _frame) -> None:
    if _state["defer"] > 0 and _state["pending"] is None:
        _state["pending"] = int(signum)
        return
    _state["pending"] = None  # the second signal is the one raised
    raise Interrupted(signum)


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM raise :class:`Interrupted` (or wait for :func:`pending`'s reader
    inside :func:`deferred`). Only in the main thread, and only over Python's default handlers; the previous
    handlers come back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = []
    for sig in _HANDLED:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            ours.append((sig, signal.signal(sig, _handler)))
    _state["installed"] += 1
    try:
        yield
    finally:
        _state["installed"] -= 1
        for sig, old in ours:
            signal.signal(sig, old)
        if not _state["installed"]:
            _state["pending"] = None


@contextlib.contextmanager
def deferred(enabled: bool = True) -> Iterator[None]:
    """While inside (and :func:`graceful` holds): the first signal is recorded for :func:`pending`, not raised.

    A signal still pending on a normal exit is raised then, so a signal that arrives after the last check is not
    lost (on an exit by an exception, that exception goes on and the signal is dropped). ``enabled=False`` defers
    nothing (a run whose steps other processes must take in step with it).
    """
    if not enabled or not _state["installed"]:
        yield
        return
    _state["defer"] += 1
    try:
        yield
    except BaseException:
        _state["defer"] -= 1
        if not _state["defer"]:
            _state["pending"] = None
        raise
    _state["defer"] -= 1
    if not _state["defer"] and _state["pending"] is not None:
        raise interrupted()


def pending() -> int | None:
    """The signal received inside :func:`deferred` and not yet raised, or ``None``."""
    return _state["pending"]


def interrupted() -> Interrupted:
    """The :class:`Interrupted` of the pending signal (which it clears), to raise after saving."""
    signum, _state["pending"] = _state["pending"], None
    if signum is None:
        raise RuntimeError("no signal is pending")
    return Interrupted(signum)
