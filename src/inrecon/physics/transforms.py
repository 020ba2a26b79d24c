"""Sparsifying transforms as linear operators: finite differences (for TV)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inrecon.physics.operator import LinearOperator

__all__ = ["FiniteDifference"]


class FiniteDifference(LinearOperator):
    """Forward differences along the last ``len(shape)`` axes with a zero last difference (Neumann).

    forward: ``(..., *shape)`` -> ``(..., ndim, *shape)`` with ``out[..., i, ...] = x[k+1] - x[k]`` along axis
    ``i`` (0 at the far edge). adjoint: minus the matching backward-difference divergence.
    """

    def __init__(self, shape: Sequence[int]):
        shape = tuple(int(s) for s in shape)
        super().__init__(shape, (len(shape), *shape))
        self.shape = shape

    def _forward(self, x):
        n = len(self.shape)
        outs = []
        for i in range(n):
            ax = x.ndim - n + i
            d = torch.diff(x, dim=ax)
            pad = torch.zeros_like(x.narrow(ax, 0, 1))
            outs.append(torch.cat([d, pad], dim=ax))
        return torch.stack(outs, dim=x.ndim - n)

    def _adjoint(self, y):
        n = len(self.shape)
        base = y.ndim - n - 1
        out = None
        for i in range(n):
            g = y.select(base, i)
            ax = g.ndim - n + i
            length = g.shape[ax]
            # (D^T g)_k = g_{k-1} - g_k for 0 < k < L-1; -g_0 at k=0; g_{L-2} at k=L-1
            first = -g.narrow(ax, 0, 1)
            if length > 2:
                mid = g.narrow(ax, 0, length - 2) - g.narrow(ax, 1, length - 2)
                last = g.narrow(ax, length - 2, 1)
                t = torch.cat([first, mid, last], dim=ax)
            elif length == 2:
                t = torch.cat([first, g.narrow(ax, 0, 1)], dim=ax)
            else:
                t = torch.zeros_like(g)
            out = t if out is None else out + t
        return out
