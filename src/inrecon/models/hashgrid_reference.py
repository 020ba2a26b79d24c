"""A straightforward, readable hash-grid encoding: one level at a time, gather per corner.

It implements the same formulas as :class:`~inrecon.models.encodings.HashGridEncoding` without any of its
speed-ups, and exists to verify the fast implementation (tests) and to measure it (``benchmarks/hashgrid.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from inrecon.models.encodings import HashGridConfig

_PRIMES = (1, 2654435761, 805459861)


class ReferenceHashGrid(nn.Module):
    """Per-level tables in a ``ParameterList``; ``forward(x (n, D)) -> (n, L*F)``."""

    def __init__(self, dim: int, cfg: HashGridConfig | None = None):
        super().__init__()
        cfg = cfg or HashGridConfig()
        self.dim, self.cfg = dim, cfg
        t = 2 ** (cfg.log2_table_size if cfg.log2_table_size is not None else (18 if dim <= 2 else 19))
        self.levels = []
        tables = []
        for lvl in range(cfg.n_levels):
            scale = cfg.base_resolution * cfg.per_level_scale**lvl - 1.0
            res = int(math.ceil(scale)) + 1
            dense = res**dim <= t
            size = res**dim if dense else t
            self.levels.append((scale, res, dense, size))
            p = nn.Parameter(torch.empty(size, cfg.n_features))
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
            tables.append(p)
        self.tables = nn.ParameterList(tables)

    @property
    def out_dim(self) -> int:
        return self.cfg.n_levels * self.cfg.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for (scale, res, dense, size), table in zip(self.levels, self.tables):
            pos = x.to(torch.float32) * torch.tensor(scale, dtype=torch.float64).float() + 0.5
            base = torch.floor(pos)
            frac = pos - base
            if self.cfg.smoothstep:
                frac = frac * frac * (3.0 - 2.0 * frac)
            base = base.long()
            acc = 0.0
            for c in range(2**self.dim):
                offs = [(c >> d) & 1 for d in range(self.dim)]
                corner = base + torch.tensor(offs, device=x.device)
                if dense:
                    idx = sum(corner[:, d] * res**d for d in range(self.dim))
                else:
                    idx = corner[:, 0] * _PRIMES[0]
                    for d in range(1, self.dim):
                        idx = idx ^ (corner[:, d] * _PRIMES[d])
                idx = idx % size
                w = torch.ones_like(frac[:, 0])
                for d in range(self.dim):
                    w = w * (frac[:, d] if offs[d] else 1.0 - frac[:, d])
                acc = acc + w[:, None] * table[idx]
            feats.append(acc)
        return torch.cat(feats, dim=1)

    def load_from_flat(self, flat: torch.Tensor) -> None:
        """Copy the concatenated table of a :class:`HashGridEncoding` into the per-level tables."""
        start = 0
        with torch.no_grad():
            for t in self.tables:
                t.copy_(flat[start : start + t.shape[0]])
                start += t.shape[0]
