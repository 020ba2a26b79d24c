"""Run one function over many items: in this process, in N local worker processes, or as Ray tasks.

:class:`Runner` is what ``inrecon recon`` with many inputs and ``inrecon tune --workers N`` share. Each item is
one call ``fn(context, item)`` of a module-level (picklable) function; ``context`` is built once per worker
process by a picklable factory (``make_context()``; e.g. the tuning objective, which holds the scan and its
hold-out split) and cached there. :meth:`Runner.run` yields ``(position, Outcome)`` as calls finish, in any
order; an exception in one call is that call's :class:`Outcome` (``ok=False`` and a one-line message), never
the end of the others.

Local workers are ``spawn``-ed processes (not ``fork``: a forked child of a process that has used OpenMP
threads can hang), each limited to ``cores // jobs`` torch threads so that N workers do not oversubscribe the
cores. Spawning costs an interpreter and the imports (about 2 s each on the reference machine), once per
worker, not per item.

Ray: imported only when asked for (:func:`import_ray`); :func:`connect_ray` joins the cluster named by
``RAY_ADDRESS`` (or ``address``), or starts a local one when there is none; an already initialised Ray (e.g.
``ray.init(num_cpus=2)`` in a test) is used as it is. Each item is one task with ``num_cpus`` /
``num_gpus`` from :class:`RayOptions` and that many torch threads. Files are read and written by the tasks
themselves, so on a multi-node cluster the inputs and outputs must lie on a file system every node mounts.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from inrecon import interrupts
from inrecon.errors import InreconError

__all__ = ["Outcome", "RayOptions", "Runner", "available_cores", "connect_ray", "import_ray", "ray_requested"]

RAY_FIX = "pip install 'inrecon[ray]' (or pip install 'ray>=2.9')"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS tells, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def ray_requested(flag: bool) -> bool:
    """``--ray`` given, or ``RAY_ADDRESS`` set in the environment (the usual way to point at a cluster)."""
    return bool(flag) or bool(os.environ.get("RAY_ADDRESS", "").strip())


def import_ray():
    """The ``ray`` module, or an :class:`InreconError` naming the install command."""
    try:
        import ray
    except ImportError:
        raise InreconError("--ray needs Ray, which is not installed", RAY_FIX) from None
    return ray


def connect_ray(address: str | None = None):
    """Join a Ray cluster (``address``, else ``RAY_ADDRESS``, else a new local one); returns the module."""
    ray = import_ray()
    if not ray.is_initialized():
        addr = address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False} if addr is None else {}
        try:
            ray.init(address=addr, log_to_driver=True, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InreconError(
                f"cannot connect to the Ray cluster {addr or '(local)'}: {str(exc).splitlines()[0]}",
                "start it (`ray start --head`), check RAY_ADDRESS, or run without --ray",
            ) from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Resources of one Ray task: ``cpus_per_task`` cores (its torch threads) and ``gpus_per_task`` GPUs."""

    cpus_per_task: float | None = None
    gpus_per_task: float | None = None

    def check(self) -> None:
        for name, v in (
            ("--ray-cpus-per-task", self.cpus_per_task),
            ("--ray-gpus-per-task", self.gpus_per_task),
        ):
            if v is not None and not v >= 0:
                raise InreconError(f"{name} {v} is negative", f"give {name} >= 0")
        if self.cpus_per_task == 0 and not self.gpus_per_task:
            raise InreconError("a Ray task with no CPU and no GPU", "give --ray-cpus-per-task >= 1")

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_task or 1))

    def task_options(self) -> dict:
        return {
            "num_cpus": 1 if self.cpus_per_task is None else self.cpus_per_task,
            "num_gpus": self.gpus_per_task or 0,
        }


@dataclass
class Outcome:
    """One call's result: ``value`` when ``ok``, else ``error`` (one line; an InreconError's own message)."""

    ok: bool
    value: Any = None
    error: str = ""


# --- what runs in a worker ----------------------------------------------------------------------------------------
_CONTEXTS: dict[str, Any] = {}
_FACTORIES: dict[str, Any] = {}


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, InreconError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _call(key: str, fn: Callable[[Any, Any], Any], item, make_context=None) -> Outcome:
    """``fn(context, item)`` with this process's cached context (built by ``make_context``, or by the factory
    the worker was started with); any exception becomes a failed Outcome."""
    try:
        if key not in _CONTEXTS:
            factory = make_context if make_context is not None else _FACTORIES.get(key)
            _CONTEXTS.clear()  # one context at a time: a worker serves one Runner
            _CONTEXTS[key] = factory() if factory is not None else None
        return Outcome(True, fn(_CONTEXTS[key], item))
    except Exception as exc:
        logging.getLogger("inrecon").debug("%s", traceback.format_exc())
        return Outcome(False, error=_error_line(exc))


def _call_pickled(key: str, fn: Callable[[Any, Any], Any], blob: bytes) -> Outcome:
    """:func:`_call` of an item the caller pickled, in a local worker (:meth:`Runner._run_local`). Stopped by
    SIGTERM (:meth:`Runner.close` with ``abort``) or Ctrl-C, a training run in the call first writes its
    checkpoint at the running step (:mod:`inrecon.interrupts`); the call then fails naming the signal, and the
    worker ends as its pool shuts down (returning, rather than exiting here, lets the pool release its queues)."""
    try:
        item = pickle.loads(blob)
    except Exception as exc:
        return Outcome(False, error=_error_line(exc))
    try:
        with interrupts.graceful():
            return _call(key, fn, item)
    except interrupts.Interrupted as exc:  # the worker then ends as the pool shuts down (a clean exit)
        return Outcome(False, error=f"interrupted by {signal.Signals(exc.signum).name}")


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Exit this worker when its parent process is gone: a parent killed outright (SIGKILL, an out-of-memory
    kill) shuts no pool down, and its idle workers would otherwise wait for work forever, holding their
    memory, and a busy one would finish a fit nobody reads."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _init_worker(threads: int, log_level: int, key: str, context_blob: bytes) -> None:
    """A local worker process: ``threads`` torch threads, ``inrecon`` messages on stderr at ``log_level``, the
    context factory (pickled once per worker, not once per item), and a watch on the parent process
    (:func:`_exit_with_parent`)."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("INRECON_PROGRESS", "0")  # N progress bars on one terminal are unreadable
    import torch

    torch.set_num_threads(threads)
    _FACTORIES[key] = pickle.loads(context_blob)  # after the thread count: it may hold tensors
    log = logging.getLogger("inrecon")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"inrecon[{os.getpid()}]: %(message)s"))
        log.addHandler(handler)
    log.setLevel(log_level)


def _ray_call(key, make_context, fn, item, threads: int) -> Outcome:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return _call(key, fn, item, make_context)


# --- the runner ---------------------------------------------------------------------------------------------------
class Runner:
    """Runs ``fn(context, item)`` for many items (module docstring).

    Parameters
    ----------
    jobs
        Calls at once: 1 runs them one after another in this process (no worker, no pickling); N > 1 in N
        spawned processes with ``available_cores() // N`` torch threads each. Not used with ``ray``: every
        item is submitted at once and the cluster's free resources decide how many run.
    ray
        :class:`RayOptions` to run each call as a Ray task instead (``None``: local).
    make_context
        Picklable factory of the per-worker context (``None``: the context is ``None``).
    log_level
        Level of the ``inrecon`` messages of local workers (default: warnings only).
    """

    def __init__(
        self,
        jobs: int = 1,
        *,
        ray: RayOptions | None = None,
        make_context: Callable[[], Any] | None = None,
        log_level: int = logging.WARNING,
    ):
        if int(jobs) < 1:
            raise InreconError(f"{jobs} parallel jobs", "give at least 1")
        self.jobs = int(jobs)
        self.ray = ray
        self.make_context = make_context
        self.log_level = log_level
        self._key = uuid.uuid4().hex
        self._pool = None
        if ray is not None:
            ray.check()

    @property
    def backend(self) -> str:
        """``ray``, ``processes`` or ``serial``."""
        return "ray" if self.ray is not None else ("processes" if self.jobs > 1 else "serial")

    @property
    def threads(self) -> int:
        """Torch threads of each worker."""
        if self.ray is not None:
            return self.ray.threads
        return max(1, available_cores() // self.jobs) if self.jobs > 1 else 0

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(abort=exc_type is not None)

    def close(self, abort: bool = False) -> None:
        """Shut the local workers down: wait for the calls they are running, or with ``abort`` (the ``with``
        block left by an exception: Ctrl-C, a failed item the caller raises for) stop them at once, so that
        no fit goes on computing for a result nobody will read."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if not abort:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        # the pool's processes (ProcessPoolExecutor.terminate_workers exists from Python 3.14 only)
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            proc.terminate()  # SIGTERM: a training run ends its running step and writes its checkpoint first
        for proc in workers:
            proc.join(timeout=10)
            if proc.is_alive():  # a step that does not end
                proc.kill()
                proc.join(timeout=5)

    def run(self, fn: Callable[[Any, Any], Any], items: Iterable) -> Iterator[tuple[int, Outcome]]:
        """``(position, Outcome)`` of every item, as the calls finish."""
        items = list(items)
        if not items:
            return
        if self.ray is not None:
            yield from self._run_ray(fn, items)
        elif self.jobs == 1:
            for k, item in enumerate(items):
                yield k, _call(self._key, fn, item, self.make_context)
        else:
            yield from self._run_local(fn, items)

    def values(
        self, fn: Callable[[Any, Any], Any], items: Iterable, what: Callable[[Any], str], fix: str
    ) -> Iterator[tuple[int, Any]]:
        """``(position, value)`` of every item as the calls finish, for callers that need every value: a failed
        call raises an :class:`InreconError` naming it (``what(item)``) with ``fix`` (how to see its
        traceback), and leaving the runner's ``with`` block by it stops the other workers."""
        items = list(items)
        for k, outcome in self.run(fn, items):
            if not outcome.ok:
                raise InreconError(f"{what(items[k])} failed in a worker process: {outcome.error}", fix)
            yield k, outcome.value

    def _run_local(self, fn, items) -> Iterator[tuple[int, Outcome]]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                # the context factory pickled here, as the items are (:meth:`_run_local`'s comment)
                initargs=(self.threads, self.log_level, self._key, pickle.dumps(self.make_context)),
            )
        pending = {}
        for k, item in enumerate(items):
            try:
                # pickled here by the standard pickler: the pool's own (multiprocessing's) moves every CPU tensor
                # of the item into shared memory in place, which frees the caller's buffer under any numpy view
                # of it (a demo reference image read garbage) and changes the caller's objects
                blob = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # an item that cannot be pickled fails alone
                yield k, Outcome(False, error=_error_line(exc))
                continue
            pending[self._pool.submit(_call_pickled, self._key, fn, blob)] = k
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                k = pending.pop(fut)
                try:
                    yield k, fut.result()
                except BrokenProcessPool:
                    self._pool = None  # a worker died (killed, out of memory): the pool is unusable
                    yield k, Outcome(False, error="its worker process died (killed, or out of memory?)")
                except Exception as exc:  # e.g. a value that cannot be pickled back
                    yield k, Outcome(False, error=_error_line(exc))

    def _run_ray(self, fn, items) -> Iterator[tuple[int, Outcome]]:
        ray = connect_ray()
        remote = ray.remote(**self.ray.task_options())(_ray_call)
        ctx = ray.put(self.make_context)
        threads = self.ray.threads
        running = {remote.remote(self._key, ctx, fn, item, threads): k for k, item in enumerate(items)}
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                k = running.pop(ref)
                try:
                    yield k, ray.get(ref)
                except Exception as exc:  # the task's worker died, or the cluster went away
                    yield k, Outcome(False, error=f"Ray task failed: {_error_line(exc)}")
