"""The one training loop of inrecon.

Every optimisation of a network -- a scan-specific fit, a hold-out trial, DisINR/STRAINER pre-training and
test-time adaptation, Meta's inner and outer loops, IMJENSE, a series frame -- is :func:`train` driving a
:class:`Task` with callbacks, in the spirit of sigpy's ``App.run`` / ``Alg.update`` and nerfstudio's
``TrainingCallback`` but smaller:

- a :class:`Task` says what one step computes (:meth:`Task.step` returns a :class:`StepOutput` with the loss
  and, for fits, the image and the predicted samples) and what the current result is (:meth:`Task.image`);
- :func:`train` owns the optimiser and learning-rate schedule (:class:`OptimConfig`), the step counter, the
  loss history, host synchronisation, checkpoints and bit-identical resume (:class:`Checkpoint`);
- :class:`Callback` s add what varies: hold-out tracking and early stopping, evaluation against a reference,
  progress bars, gradient all-reduce for data-parallel pre-training (:mod:`inrecon.engine.callbacks`).

The first run of a process raises glibc's mmap and trim thresholds (:func:`inrecon.runtime.tune_allocator`:
large per-step temporaries are otherwise returned to the OS and faulted back in, up to half the step time on
the CPU); ``INRECON_MALLOPT=0`` leaves the allocator alone. Importing inrecon changes nothing.

Host syncs: on the CPU every step reads its numbers back; on a GPU losses stay on the device and are read every
``sync_every`` steps (and whenever a callback asks, e.g. to evaluate or to snapshot the best weights).

CUDA graphs: a task whose step has fixed shapes and no host synchronisation (``Task.capturable``: a
full-image fit through a capturable operator) can be replayed as two CUDA graphs on a GPU (``train(...,
cuda_graph=True)``; the fits' default, ``monitor.cuda_graph``): one records the forward pass and the backward
pass, the other the optimiser update, so the callbacks still run between them and see the weights that
produced the step's output. Small fits are bound by the launch of a few hundred small kernels per step, which a
replay issues at once. The first ``_CudaGraphStep.WARMUP`` steps run eagerly (on a side stream, as capture
requires); a step that cannot be captured falls back to eager steps with a warning that names the reason.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
from torch import nn

from inrecon import interrupts
from inrecon.config import InRange, NonNegFloat, PosFloat, PosInt
from inrecon.engine.checkpoint import load_checkpoint, save_checkpoint
from inrecon.runtime import tune_allocator

__all__ = [
    "Callback",
    "Checkpoint",
    "MonitorConfig",
    "OptimConfig",
    "Run",
    "StepOutput",
    "Task",
    "make_optimizer",
    "train",
]

Beta = Annotated[float, InRange(0.0, 1.0, hi_open=True)]


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    steps: PosInt = 2000
    """Optimisation steps (the upper limit when a stopping rule ends the run earlier)."""
    lr: PosFloat = 1e-3
    """Initial learning rate."""
    lr_decay_every: PosInt = 1000
    """Step decay: multiply the rate by lr_decay every this many steps."""
    lr_decay: Annotated[float, InRange(0.0, 1.0, lo_open=True)] = 0.5
    """Factor of each step decay."""
    beta1: Beta = 0.9
    """Adam's first-moment decay."""
    beta2: Beta = 0.99
    """Adam's second-moment decay (instant-NGP's 0.99 for hash grids)."""
    eps: PosFloat = 1e-15
    """Adam's epsilon (instant-NGP's 1e-15: hash-table gradients are tiny)."""
    wd_enc: NonNegFloat = 0.0
    """Coupled L2 weight decay of the encoder (hash tables) parameter group."""
    wd_mlp: NonNegFloat = 0.0
    """Coupled L2 weight decay of the decoder (MLP) parameter group."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """adam, or sgd (plain steps along the gradient; Reptile's outer update)."""
    schedule: Literal["step", "linear", "constant"] = "step"
    """step (decay every lr_decay_every), linear (to 0 at the last step) or constant."""
    decay_start: Annotated[float, InRange(0.0, 1.0, hi_open=True)] = 0.0
    """Linear schedule: the fraction of the steps run at the full rate before the linear decay to 0 begins
    (0: decay from the first step)."""


@dataclass
class MonitorConfig:
    """How often a run evaluates, checkpoints and reads numbers back from the device."""

    eval_every: PosInt = 50
    """Evaluate against the reference (when the scan has one) every this many steps."""
    checkpoint_every: PosInt = 200
    """With a checkpoint directory: save every this many steps (a killed run resumes identically)."""
    sync_every: PosInt = 25
    """GPU only: read losses back every this many steps (no host sync in between)."""
    cuda_graph: bool = True
    """GPU only: replay each step as CUDA graphs (much less launch overhead; the same arithmetic). A step that
    cannot be captured runs eagerly, with a warning."""


@dataclass
class StepOutput:
    """What one step produced. ``loss`` is minimised (when it requires grad; otherwise the task has already
    filled the gradients); ``image`` and ``pred`` (the predicted samples, all acquired ones) are for callbacks."""

    loss: torch.Tensor
    image: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    log_loss: torch.Tensor | None = None


class Task:
    """What a run optimises. Subclasses set ``module`` (every trainable tensor; checkpointed) and implement
    :meth:`param_groups`, :meth:`step` and :meth:`image`."""

    module: nn.Module
    capturable: bool = False
    """Whether :meth:`step` may be recorded once as a CUDA graph and replayed: the same tensors, shapes and
    arithmetic at every step (no dependence on ``step``, no host synchronisation), gradients by backward."""

    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.module.parameters() if p.requires_grad]}]

    def step(self, step: int) -> StepOutput:
        raise NotImplementedError

    def image(self) -> torch.Tensor:
        """The current result (no gradients)."""
        raise NotImplementedError


@dataclass
class Run:
    """The state of a run, shared with the callbacks."""

    task: Task
    cfg: OptimConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    history: dict = field(default_factory=lambda: {"step": [], "loss": []})
    step: int = 0
    """Steps done."""
    stop: bool = False
    """Set by a callback to end the run after this step."""
    sync: bool = True
    """Whether numbers are read back from the device at this step."""
    logs: dict = field(default_factory=dict)
    """Latest values for the progress bar (loss, val, psnr)."""
    seconds: float = 0.0
    start: int = 0
    """Step the run started (or resumed) at."""
    graphed: bool = False
    """Whether the steps after the warm-up were replayed from CUDA graphs."""


class Callback:
    """Hooks into :func:`train`. Every hook is optional; state that must survive a kill goes through
    :meth:`state_dict` / :meth:`load_state_dict`."""

    def on_start(self, run: Run) -> None: ...

    def on_forward(self, run: Run, step: int, out: StepOutput) -> None:
        """After the step's forward pass, before the update (the weights that produced ``out``)."""

    def after_backward(self, run: Run, step: int, out: StepOutput) -> None:
        """Gradients are ready; the optimiser has not stepped yet."""

    def wants_sync(self, run: Run, step: int) -> bool:
        return False

    def on_step_end(self, run: Run, step: int, out: StepOutput) -> None:
        """After the update; ``run.sync`` says whether this step reads numbers back."""

    def on_end(self, run: Run) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Checkpoint:
    """Save the run to ``path`` every ``every`` steps and resume from it when it exists (same ``fingerprint``)."""

    path: str | Path
    fingerprint: str
    every: int = 200


def make_optimizer(groups: list[dict], cfg: OptimConfig, total_steps: int):
    """The optimiser and its schedule for ``cfg`` (fused Adam on CPU/CUDA float parameters). A group may carry
    ``lr_scale``: its rate is ``cfg.lr`` times that (and follows the same schedule)."""
    # copies: torch's optimisers write their settings (lr, betas, eps, ...) into the dicts they are given, and a
    # model's groups written to by one run would hand that run's final rate to the next run of the same model
    groups = [{**g, "lr": cfg.lr * g["lr_scale"]} if "lr_scale" in g else {**g} for g in groups]
    params = [p for g in groups for p in g["params"]]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr)
    else:
        fused = bool(params) and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
        )
        opt = torch.optim.Adam(
            groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None
        )
    if cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    elif cfg.schedule == "linear":
        start = cfg.decay_start * total_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 1.0 if s < start else max(0.0, (total_steps - s) / (total_steps - start))
        )
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return opt, sched


class _LossLog:
    """Every 10th step's loss into ``history['step'/'loss']``, read back at sync points."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, torch.Tensor]] = []

    def add(self, run: Run, step: int, out: StepOutput) -> None:
        if step % 10 == 0 or step + 1 == run.cfg.steps:
            # a copy: a replayed CUDA graph writes every step's loss into the same tensor
            loss = out.log_loss if out.log_loss is not None else out.loss
            self.pending.append((step, loss.detach().clone()))

    def flush(self, run: Run) -> None:
        if not self.pending:
            return
        vals = torch.stack([v.reshape(()).float() for _, v in self.pending]).tolist()
        run.history["step"] += [s for s, _ in self.pending]
        run.history["loss"] += vals
        run.logs["loss"] = vals[-1]
        self.pending.clear()


class _CudaGraphStep:
    """A task's step as two CUDA graphs: forward + backward, and the optimiser update.

    The first :attr:`WARMUP` steps run eagerly on a side stream (kernels, cuBLAS/cuFFT plans and the
    optimiser's state are created outside any capture); the next step records both graphs and every later
    step replays them. The optimiser reads its learning rates from device tensors that are refreshed from the
    scheduler's values before each update. If recording fails (an operation that synchronises with the host,
    say), the run goes on with eager steps and a warning names the reason.
    """

    WARMUP = 3

    def __init__(self, task: Task, opt: torch.optim.Optimizer):
        self.task, self.opt = task, opt
        self.stream = torch.cuda.Stream()
        self.eager_steps = 0
        self.fwd: torch.cuda.CUDAGraph | None = None
        self.update_graph: torch.cuda.CUDAGraph | None = None
        self.out: StepOutput | None = None
        self.lr: list[torch.Tensor] = []
        self.lr_set: list[float] = []
        self.failed = False

    def _eager(self, step: int) -> StepOutput:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self.opt.zero_grad(set_to_none=True)
            out = self.task.step(step)
            if out.loss.requires_grad:
                out.loss.backward()
        torch.cuda.current_stream().wait_stream(self.stream)
        self.eager_steps += 1
        return out

    def _capture(self, step: int) -> None:
        opt = self.opt
        floats = [g["lr"] for g in opt.param_groups]
        dev = next(iter(self.task.module.parameters())).device
        self.lr = [torch.tensor(float(v), dtype=torch.float32, device=dev) for v in floats]
        self.lr_set = [float(v) for v in floats]
        torch.cuda.synchronize()
        opt.zero_grad(set_to_none=True)  # the gradients are allocated inside the graph and stay there
        fwd = torch.cuda.CUDAGraph()
        try:
            # recorded on the warm-up's stream: autograd's gradient accumulators belong to that stream
            with torch.cuda.graph(fwd, stream=self.stream):
                out = self.task.step(step)
                if out.loss.requires_grad:
                    out.loss.backward()
            for g, t in zip(opt.param_groups, self.lr):
                g["capturable"], g["lr"] = True, t
            update = torch.cuda.CUDAGraph()
            with torch.cuda.graph(update, pool=fwd.pool(), stream=self.stream):
                opt.step()
        except RuntimeError as err:  # recording refused: go on eagerly
            self.failed = True
            self.fwd = self.update_graph = self.out = None
            try:  # a capture that ended in an error leaves the allocator recording into its pool
                torch._C._cuda_endAllocateToPool(dev.index, fwd.pool())
            except (RuntimeError, AttributeError):
                pass  # it had already stopped
            warnings.warn(
                f"this step could not be recorded as a CUDA graph ({str(err).splitlines()[0]}); "
                "running it eagerly (set monitor.cuda_graph=false to skip the attempt)",
                RuntimeWarning,
                stacklevel=4,
            )
            torch.cuda.synchronize()
            opt.zero_grad(set_to_none=True)
        finally:
            for g, v in zip(opt.param_groups, floats):
                g["capturable"], g["lr"] = False, v  # the scheduler and checkpoints see plain numbers
        if not self.failed:
            self.fwd, self.update_graph, self.out = fwd, update, out

    def forward_backward(self, step: int) -> StepOutput | None:
        """The step's output with the gradients filled, or ``None`` when the caller must run it eagerly."""
        if self.failed:
            return None
        if self.eager_steps < self.WARMUP:
            return self._eager(step)
        if self.fwd is None:
            self._capture(step)
            if self.failed:
                return None
        self.fwd.replay()
        return self.out

    def update(self) -> None:
        if self.update_graph is None:
            self.opt.step()
            return
        for i, g in enumerate(self.opt.param_groups):
            if g["lr"] != self.lr_set[i]:
                self.lr[i].fill_(g["lr"])
                self.lr_set[i] = g["lr"]
        self.update_graph.replay()


def _resume(run: Run, ck: Checkpoint, callbacks) -> None:
    state = load_checkpoint(ck.path, ck.fingerprint)
    if state is None:
        return
    run.task.module.load_state_dict(state["module"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.history, run.step, run.seconds = state["history"], state["step"], state["seconds"]
    for cb, s in zip(callbacks, state["callbacks"]):
        cb.load_state_dict(s)


def _save(run: Run, ck: Checkpoint, callbacks, seconds: float) -> None:
    save_checkpoint(
        ck.path,
        {
            "fingerprint": ck.fingerprint,
            "step": run.step,
            "module": run.task.module.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "history": run.history,
            "seconds": seconds,
            "callbacks": [cb.state_dict() for cb in callbacks],
            "config": asdict(run.cfg),
        },
    )


def train(
    task: Task,
    cfg: OptimConfig,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    *,
    checkpoint: Checkpoint | None = None,
    sync_every: int = 25,
    cuda_graph: bool = False,
) -> Run:
    """Run ``cfg.steps`` steps of ``task`` (fewer when a callback stops it); returns the finished :class:`Run`.

    Parameters
    ----------
    task
        The :class:`Task`.
    cfg
        Optimiser, schedule and step count.
    callbacks
        Called in order at every hook.
    checkpoint
        Save every ``checkpoint.every`` steps and resume from an existing checkpoint of the same run.
    sync_every
        GPU: read numbers back every this many steps (CPU: every step).
    cuda_graph
        GPU and a :attr:`Task.capturable` task: replay the step as CUDA graphs (see the module's docstring).
    """
    tune_allocator()  # once per process, on the first training run (INRECON_MALLOPT=0 leaves it alone)
    callbacks = list(callbacks)
    opt, sched = make_optimizer(task.param_groups(), cfg, cfg.steps)
    run = Run(task, cfg, opt, sched)
    if checkpoint is not None:
        _resume(run, checkpoint, callbacks)
    run.start = run.step
    t0 = time.perf_counter() - run.seconds
    losses = _LossLog()
    device = next(iter(task.module.parameters()), torch.empty(0)).device
    on_cpu = device.type == "cpu"
    graphed = _CudaGraphStep(task, opt) if cuda_graph and task.capturable and device.type == "cuda" else None
    for cb in callbacks:
        cb.on_start(run)
    # a signal deferred by inrecon.interrupts ends the run at the end of a step that read numbers back: the
    # checkpoint is written there, then the signal raised
    with interrupts.deferred(enabled=not _distributed()):
        for step in range(run.step, cfg.steps):
            out = None  # the last step's autograd graph is released before a recording starts
            if graphed is not None:
                out = graphed.forward_backward(step)
            if out is not None:  # forward and backward done (recorded or warm-up)
                for cb in callbacks:
                    cb.on_forward(run, step, out)
                for cb in callbacks:
                    cb.after_backward(run, step, out)
                graphed.update()
            else:
                opt.zero_grad(set_to_none=True)
                out = task.step(step)  # may fill gradients itself (then its loss does not require grad)
                for cb in callbacks:
                    cb.on_forward(run, step, out)
                if out.loss.requires_grad:
                    out.loss.backward()
                for cb in callbacks:
                    cb.after_backward(run, step, out)
                opt.step()
            sched.step()
            run.step = step + 1
            losses.add(run, step, out)
            saving = checkpoint is not None and run.step % checkpoint.every == 0 and run.step < cfg.steps
            run.sync = (
                on_cpu
                or run.step % max(1, sync_every) == 0
                or run.step == cfg.steps
                or saving
                or any(cb.wants_sync(run, step) for cb in callbacks)
            )
            if run.sync:
                losses.flush(run)
            for cb in callbacks:
                cb.on_step_end(run, step, out)
            if saving:
                _save(run, checkpoint, callbacks, time.perf_counter() - t0)
            if run.stop:
                break
            if run.sync and interrupts.pending() is not None:
                if checkpoint is not None and not saving:
                    _save(run, checkpoint, callbacks, time.perf_counter() - t0)
                raise interrupts.interrupted()
    losses.flush(run)
    run.graphed = graphed is not None and graphed.fwd is not None
    run.seconds = time.perf_counter() - t0
    for cb in callbacks:
        cb.on_end(run)
    return run


def _distributed() -> bool:
    """Whether this run takes its steps in step with other processes (a torch.distributed group)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
