"""Tasks with known optima for the engine's tests."""

from __future__ import annotations

import torch

from inrecon.engine.trainer import StepOutput, Task


class Quadratic(Task):
    """Minimise ``|p - target|^2``: a task whose optimum is known."""

    def __init__(self):
        self.p = torch.nn.Parameter(torch.zeros(3))
        self.module = torch.nn.ParameterList([self.p])
        self.target = torch.tensor([1.0, -2.0, 0.5])

    def step(self, step):
        pred = self.p * 1.0
        return StepOutput(((pred - self.target) ** 2).sum(), image=pred.detach(), pred=pred)

    def image(self):
        return self.p.detach().clone()
