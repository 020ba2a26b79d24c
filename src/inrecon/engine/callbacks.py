"""The callbacks of :func:`inrecon.engine.trainer.train`: hold-out tracking with early stopping, keeping the
lowest-loss weights of a run's last steps, evaluation against a reference, progress bars, and the gradient
all-reduce of data-parallel pre-training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from inrecon.engine.losses import data_loss
from inrecon.engine.trainer import Callback, Run, StepOutput
from inrecon.progress import progress

__all__ = ["AllReduceShared", "Evaluate", "HoldOut", "Progress", "Settle"]


class _BestWeights(Callback):
    """A best score (attribute ``SCORE``), the step it was seen at and a copy of the weights then, checkpointed
    with the run: what :class:`HoldOut` (``restore_best``) and :class:`Settle` keep."""

    SCORE: str
    best_step: int | None
    best_state: dict | None

    def _keep_weights(self, run: Run) -> None:
        """Copy the module's current weights (into the buffers of the last copy, after the first)."""
        state = run.task.module.state_dict()
        if self.best_state is None:
            self.best_state = {k: t.detach().clone() for k, t in state.items()}
        else:
            for k, t in state.items():
                self.best_state[k].copy_(t.detach())

    def state_dict(self) -> dict:
        return {
            self.SCORE: getattr(self, self.SCORE),
            "best_step": self.best_step,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict) -> None:
        setattr(self, self.SCORE, state[self.SCORE])
        self.best_step, self.best_state = state["best_step"], state["best_state"]


class HoldOut(_BestWeights):
    """Score the held-out samples at every step and stop ``patience`` steps after their loss last improved.

    The held-out prediction comes from the step's own forward pass (``out.pred[val]``), so it costs nothing
    extra, and it is scored before the update: the loss of step ``s`` belongs to the weights after ``s``
    updates. History: ``val_step``, ``val_loss`` (as measured). ``restore_best`` snapshots the weights of the
    best step (and syncs every step to do so) and loads them at the end.

    ``smooth`` > 0 reads the best step and the patience off an exponential moving average of the held-out
    losses, ``m_s = smooth * m_(s-1) + (1 - smooth) * v_s`` (``m_0 = v_0``; a non-finite loss leaves ``m``
    as it was and never counts as an improvement): at a high learning rate Adam's iterates oscillate, and one
    lucky low of the raw curve would otherwise have to be beaten within ``patience`` steps while the average
    is still falling. ``best_val`` is then the lowest average (history ``val_smooth``).

    ``weight`` (``(M,)`` over all samples, or ``None``) weights each held-out sample's term
    (:func:`~inrecon.engine.losses.data_loss`).

    Attributes after the run: ``best_step``, ``best_val``, ``stopped_early``.
    """

    SCORE = "best_val"

    def __init__(
        self,
        val: torch.Tensor,
        y: torch.Tensor,
        *,
        kind: str = "mse",
        delta: float = 1e-4,
        patience: int = 0,
        min_steps: int = 50,
        restore_best: bool = False,
        smooth: float = 0.0,
        weight: torch.Tensor | None = None,
    ):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.val, self.y_val = val, y[val]
        self.w_val = None if weight is None else weight[val]
        self.kind, self.delta = kind, delta
        self.patience, self.min_steps, self.restore_best = patience, min_steps, restore_best
        self.smooth, self.average = smooth, None
        self.best_val, self.best_step, self.best_state = math.inf, None, None
        self.stopped_early = False
        self.pending: list[tuple[int, torch.Tensor]] = []

    def on_start(self, run: Run) -> None:
        run.history.setdefault("val_step", [])
        run.history.setdefault("val_loss", [])
        if self.smooth > 0:
            run.history.setdefault("val_smooth", [])

    def on_forward(self, run: Run, step: int, out: StepOutput) -> None:
        with torch.no_grad():
            v = data_loss(out.pred.detach()[self.val], self.y_val, self.kind, self.delta, self.w_val)
        self.pending.append((step, v))
        if self.restore_best:
            self._flush(run)
            if self.best_step == step:
                self._keep_weights(run)

    def wants_sync(self, run: Run, step: int) -> bool:
        return self.restore_best

    def _flush(self, run: Run) -> None:
        if not self.pending:
            return
        vals = torch.stack([v for _, v in self.pending]).tolist()
        for (s, _), v in zip(self.pending, vals):
            run.history["val_step"].append(s)
            run.history["val_loss"].append(v)
            if self.smooth > 0:
                if math.isfinite(v):
                    a = self.average
                    self.average = v if a is None else self.smooth * a + (1.0 - self.smooth) * v
                v = math.inf if self.average is None or not math.isfinite(v) else self.average
                run.history["val_smooth"].append(v)
            if v < self.best_val:
                self.best_val, self.best_step = v, s
        run.logs["val"] = vals[-1]
        self.pending.clear()

    def on_step_end(self, run: Run, step: int, out: StepOutput) -> None:
        if not run.sync:
            return
        self._flush(run)
        if (
            self.patience > 0
            and self.best_step is not None
            and run.step >= self.min_steps
            and step - self.best_step >= self.patience
        ):
            self.stopped_early = run.stop = True

    def on_end(self, run: Run) -> None:
        self._flush(run)
        if self.restore_best and self.best_state is not None:
            run.task.module.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.average = state.get("average")


class Settle(_BestWeights):
    """Keep the weights of the step with the lowest training loss among the run's steps ``from_step`` onwards
    and load them at the end.

    Adam on a hash grid has loss spikes: a fit that ends at a fixed step may end on one, a few dB below the
    iterates just before it. The loss of step ``s`` is that of the weights the step's forward pass used (after
    ``s`` updates), so the kept weights are the ones whose loss was seen. Syncs (reads the loss back) at every
    step from ``from_step`` on. History: ``settled_step``.
    """

    SCORE = "best_loss"

    def __init__(self, from_step: int):
        self.from_step = int(from_step)
        self.best_loss, self.best_step, self.best_state = math.inf, None, None

    def wants_sync(self, run: Run, step: int) -> bool:
        return step >= self.from_step

    def on_forward(self, run: Run, step: int, out: StepOutput) -> None:
        if step < self.from_step:
            return
        loss = float((out.log_loss if out.log_loss is not None else out.loss).detach())
        if loss < self.best_loss:
            self.best_loss, self.best_step = loss, step
            self._keep_weights(run)

    def on_end(self, run: Run) -> None:
        if self.best_state is not None:
            run.task.module.load_state_dict(self.best_state)
            run.history["settled_step"] = self.best_step


class Evaluate(Callback):
    """Every ``every`` steps (and at the last), ``metrics(image) -> {"psnr": ..., ...}`` into the history
    (``eval_step`` and one list per metric). The image is the step's own (after ``s`` updates) or the task's."""

    def __init__(self, metrics: Callable[[torch.Tensor], dict], every: int = 50):
        self.metrics, self.every = metrics, max(1, int(every))

    def _due(self, run: Run, step: int) -> bool:
        return step % self.every == 0 or step + 1 == run.cfg.steps

    def on_start(self, run: Run) -> None:
        run.history.setdefault("eval_step", [])

    def wants_sync(self, run: Run, step: int) -> bool:
        return self._due(run, step)

    def on_step_end(self, run: Run, step: int, out: StepOutput) -> None:
        if not self._due(run, step):
            return
        with torch.no_grad():
            m = self.metrics(out.image.detach() if out.image is not None else run.task.image())
        run.history["eval_step"].append(step)
        for k, v in m.items():
            run.history.setdefault(k, []).append(v)
        if "psnr" in m:
            run.logs["psnr"] = m["psnr"]


class Progress(Callback):
    """A progress bar (stderr) with the latest loss, held-out loss and PSNR."""

    def __init__(self, desc: str = "fit", show: bool | None = None):
        self.desc, self.show, self.bar = desc, show, None

    def on_start(self, run: Run) -> None:
        self.bar = progress(total=run.cfg.steps, initial=run.step, desc=self.desc, show=self.show)
        self.enabled = not self.bar.disable

    def on_step_end(self, run: Run, step: int, out: StepOutput) -> None:
        self.bar.update(1)
        if self.enabled and run.sync and run.logs:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in run.logs.items()}, refresh=False)

    def on_end(self, run: Run) -> None:
        if self.bar is not None:
            self.bar.close()


class AllReduceShared(Callback):
    """Data-parallel pre-training: sum the gradients of the shared weights (and the logged loss) across the
    ``torch.distributed`` ranks, so that every rank takes the identical step."""

    def __init__(self, shared: Sequence[torch.nn.Parameter]):
        self.shared = list(shared)

    def after_backward(self, run: Run, step: int, out: StepOutput) -> None:
        dist = torch.distributed
        for p in self.shared:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        total = out.loss.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        out.log_loss = total
