"""Positional encodings: multiresolution hash grid (Instant-NGP), Fourier features (NeRF), identity.

Every encoding maps coordinates ``(n, D)`` in [0, 1] to features ``(n, out_dim)`` and reports ``out_dim``.

Hash grid (tcnn-compatible formulas, docs/methods.md section 2): level ``l`` has ``scale = N_min * b**l - 1`` and
``resolution = ceil(scale) + 1``; a point sits at ``x * scale + 0.5``; a level whose dense grid fits in the
table (``res**D <= T``) is indexed densely (``sum_d i_d * res**d``), otherwise by the xor spatial hash with
primes (1, 2654435761, 805459861) modulo ``T``; the ``2**D`` corners are (bi/tri)linearly interpolated
(optionally with smoothstep weights); features start U(-1e-4, 1e-4).

Speed: the coordinates of a reconstruction grid never change, so the corner indices and weights of every level
form a fixed sparse matrix ``S`` of shape ``(L*n, rows)``. :meth:`HashGridEncoding.plan` builds ``S`` and its
transpose once (CSR, level-major rows, int32 indices: :class:`HashPlan`); the forward pass is then
``S @ table`` and the backward pass ``S^T @ grad`` (a custom autograd function), about 4x faster than gathering
on the CPU. ``HashGridConfig.lookup="gather"`` plans the
same interpolation as corner indices and weights instead (forward: one gather and a weighted sum; backward: one
``index_add_``), for a GPU, where cuSPARSE's product with the table's two columns took 57 % of a replayed 256^2
fitting step on an H200 (benchmarks/RESULTS.md; the gather path itself is not yet measured there). Arbitrary
coordinates (e.g. random 3D batches) take the generic path: one fused ``embedding_bag`` forward and per-level
``bincount`` scatters backward.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inrecon.config import InRange, PosFloat, PosInt

__all__ = [
    "FourierFeatures",
    "FourierFeaturesConfig",
    "HashGridConfig",
    "HashGridEncoding",
    "HashPlan",
    "IdentityEncoding",
]

_PRIMES = (1, 2654435761, 805459861)


@dataclass
class HashGridConfig:
    """Multiresolution hash grid (defaults: docs/methods.md, from the Bilevel authors' code)."""

    n_levels: PosInt = 16
    """Resolution levels L."""
    n_features: PosInt = 2
    """Features per level F."""
    log2_table_size: Annotated[int, InRange(0, 26)] | None = None
    """log2 of the table size T per level; None or 0: 18 in 2D, 19 in 3D."""
    base_resolution: PosInt = 16
    """Coarsest resolution N_min."""
    per_level_scale: Annotated[float, InRange(1.0, 4.0, lo_open=True)] = 1.5
    """Growth factor b between levels (the Bilevel code tunes it in [1.2, 1.6]); replaced when max_resolution
    is set."""
    max_resolution: PosInt | Literal["grid"] | None = None
    """Resolution of the finest level N_max; per_level_scale then becomes (N_max / base_resolution)^(1 /
    (n_levels - 1)). "grid": the image grid's largest side (no level finer than the pixels). None: keep
    per_level_scale."""
    smoothstep: bool = False
    """Smoothstep instead of linear interpolation weights."""
    init_range: PosFloat = 1e-4
    """Features start uniform in [-init_range, init_range]."""
    lookup: Literal["sparse", "gather"] = "sparse"
    """How a fixed coordinate set's interpolation is precomputed (:meth:`HashGridEncoding.plan`): a sparse
    matrix (CSR products; fastest on the CPU), or corner indices and weights (a gather forward and an
    ``index_add_`` backward; meant for a GPU). The same features either way."""


@dataclass
class HashPlan:
    """Precomputed interpolation of one fixed coordinate set ``(n, D)`` on ``L`` levels, stored either as CSR
    matrices ``fwd = S`` and ``bwd = S^T`` (int32 indices) whose rows are level-major (row ``level * n + point``:
    ``features = (S @ table).view(L, n, F).transpose(0, 1)``), or as point-major corner rows and weights
    (``idx``, ``w``: row ``point * L + level``, ``features = gathered.reshape(n, L*F)``).

    Level-major CSR rows keep one level's table rows (forward) and gradient rows (backward) in cache, and int32
    indices are what MKL takes without a per-call index copy: 1.7x faster lookup at 1 thread than point-major
    int64 on the 256^2 CT grid (benchmarks/RESULTS.md, stop 47)."""

    n: int
    fwd: torch.Tensor | None = None  # sparse CSR (L*n, rows), level-major rows
    bwd: torch.Tensor | None = None  # sparse CSR (rows, L*n)
    idx: torch.Tensor | None = None  # int64 (n*L, 2**D), point-major rows of the table
    w: torch.Tensor | None = None  # float32 (n*L, 2**D)
    levels: int = 0  # L of the CSR plan

    def to(self, device) -> HashPlan:
        def move(t):
            return None if t is None else t.to(device)

        return HashPlan(self.n, move(self.fwd), move(self.bwd), move(self.idx), move(self.w), self.levels)


def _int32_csr(m: torch.Tensor) -> torch.Tensor:
    """A CSR matrix with int32 row and column indices (its ``nnz`` and sizes must fit)."""
    if max(m.shape[0], m.shape[1], m.values().numel()) >= 2**31:
        return m
    return torch.sparse_csr_tensor(
        m.crow_indices().to(torch.int32), m.col_indices().to(torch.int32), m.values(), m.shape
    )


class _GatheredLookup(torch.autograd.Function):
    """``features (m, F) = sum_c w[:, c] * table[idx[:, c]]``; backward: one ``index_add_`` into the table's
    gradient (no host synchronisation, so a CUDA graph can record it)."""

    @staticmethod
    def forward(ctx, table, idx, w):  # type: ignore[override]
        ctx.save_for_backward(idx, w)
        ctx.rows = table.shape[0]
        corners = table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])
        return (corners * w.unsqueeze(-1)).sum(1)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        idx, w = ctx.saved_tensors
        contrib = (grad.unsqueeze(1) * w.unsqueeze(-1)).reshape(-1, grad.shape[-1])
        out = torch.zeros(ctx.rows, grad.shape[-1], dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, idx.reshape(-1), contrib), None, None


class _PlannedLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, fwd, bwd):  # type: ignore[override]
        ctx.bwd = bwd
        return fwd @ table

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.bwd @ grad.contiguous(), None, None


class _BagLookup(torch.autograd.Function):
    """Interpolated lookup of level-major bags: ``idx, w (L, n, 2**D)`` -> features ``(n, L*F)``.

    Forward: one ``embedding_bag``. Backward: one weighted ``bincount`` per level and feature into that level's
    rows only, so the scatter target (one level's table) stays in cache: ~3x faster than one global scatter.
    """

    @staticmethod
    def forward(ctx, table, idx, w, offsets, sizes):  # type: ignore[override]
        n_lv, n = idx.shape[0], idx.shape[1]
        ctx.save_for_backward(idx, w)
        ctx.offsets, ctx.sizes, ctx.rows = offsets, sizes, table.shape[0]
        out = F.embedding_bag(
            idx.reshape(n_lv * n, -1), table, per_sample_weights=w.reshape(n_lv * n, -1), mode="sum"
        )
        return out.reshape(n_lv, n, -1).permute(1, 0, 2).reshape(n, -1)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        idx, w = ctx.saved_tensors
        n_lv, n = idx.shape[0], idx.shape[1]
        g = grad.reshape(n, n_lv, -1).permute(1, 0, 2)  # (L, n, F)
        n_f = g.shape[-1]
        out = torch.empty(ctx.rows, n_f, dtype=torch.float64, device=grad.device)
        for lvl, (off, size) in enumerate(zip(ctx.offsets, ctx.sizes)):
            local = (idx[lvl] - off).reshape(-1)
            for f in range(n_f):
                weights = (w[lvl] * g[lvl, :, f : f + 1]).reshape(-1)
                out[off : off + size, f] = torch.bincount(local, weights=weights, minlength=size)
        return out.to(grad.dtype), None, None, None, None


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding in 2D or 3D, pure PyTorch.

    Parameters
    ----------
    dim
        Number of input coordinates (2 or 3).
    cfg
        :class:`HashGridConfig`.

    Shapes: ``forward(x (n, dim) in [0, 1]) -> (n, n_levels * n_features)``.
    """

    def __init__(self, dim: int, cfg: HashGridConfig | None = None):
        super().__init__()
        cfg = cfg or HashGridConfig()
        if dim not in (1, 2, 3):
            raise ValueError(f"hash grid supports 1-3 input dimensions, got {dim}")
        self.dim = dim
        self.cfg = cfg
        log2_t = cfg.log2_table_size or (18 if dim <= 2 else 19)
        self.table_size = 2**log2_t
        scales, res, sizes, dense = [], [], [], []
        for lvl in range(cfg.n_levels):
            scale = cfg.base_resolution * cfg.per_level_scale**lvl - 1.0
            r = int(math.ceil(scale)) + 1
            is_dense = r**dim <= self.table_size
            scales.append(scale)
            res.append(r)
            dense.append(is_dense)
            sizes.append(r**dim if is_dense else self.table_size)
        self.level_sizes = sizes
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float64), persistent=False)
        self.register_buffer("resolutions", torch.tensor(res, dtype=torch.int64), persistent=False)
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self._scales_f32 = [float(torch.tensor(sc, dtype=torch.float32)) for sc in scales]
        self._dense_list = dense
        self._offset_list = offsets
        self._mult_list = [
            [r**d for d in range(dim)] if dn else list(_PRIMES[:dim]) for r, dn in zip(res, dense)
        ]
        corners = torch.tensor(
            [[(c >> d) & 1 for d in range(dim)] for c in range(2**dim)], dtype=torch.int64
        )  # (2^D, D)
        self.register_buffer("corners", corners, persistent=False)
        n_rows = sum(sizes)
        self.table = nn.Parameter(torch.empty(n_rows, cfg.n_features))
        nn.init.uniform_(self.table, -cfg.init_range, cfg.init_range)

    @property
    def out_dim(self) -> int:
        return self.cfg.n_levels * self.cfg.n_features

    @property
    def n_params(self) -> int:
        return self.table.numel()

    # --- index computation -------------------------------------------------------------------------------
    @torch.no_grad()
    def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corner rows and interpolation weights, level-major.

        Returns ``idx`` int64 ``(L, n, 2**D)`` (rows of :attr:`table`) and ``w`` ``(L, n, 2**D)`` float32.
        Positions are float32, as in tcnn. Each level is computed on its own (cache-sized intermediates), and
        corners are assembled from per-axis terms (``i_d * stride_d`` for dense levels, ``i_d * prime_d`` for
        hashed ones) without ever building an ``(n, 2**D, D)`` array.
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"hash grid expects coordinates (n, {self.dim}), got {tuple(x.shape)}")
        n, n_c = x.shape[0], 2**self.dim
        xf = x.to(torch.float32)
        idx = torch.empty(self.cfg.n_levels, n, n_c, dtype=torch.int64, device=x.device)
        w = torch.empty(self.cfg.n_levels, n, n_c, dtype=torch.float32, device=x.device)
        for lvl in range(self.cfg.n_levels):
            pos = xf * self._scales_f32[lvl] + 0.5  # (n, D)
            base_f = torch.floor(pos)
            frac = pos - base_f
            if self.cfg.smoothstep:
                frac = frac * frac * (3.0 - 2.0 * frac)
            one_minus = 1.0 - frac
            base = base_f.to(torch.int64)
            dense, size, offset = self._dense_list[lvl], self.level_sizes[lvl], self._offset_list[lvl]
            mult = self._mult_list[lvl]
            lo = [base[:, d] * mult[d] for d in range(self.dim)]
            hi = [lo[d] + mult[d] for d in range(self.dim)]
            for c in range(n_c):
                bits = [(c >> d) & 1 for d in range(self.dim)]
                acc = hi[0] if bits[0] else lo[0]
                weight = frac[:, 0] if bits[0] else one_minus[:, 0]
                for d in range(1, self.dim):
                    term = hi[d] if bits[d] else lo[d]
                    acc = acc + term if dense else torch.bitwise_xor(acc, term)
                    weight = weight * (frac[:, d] if bits[d] else one_minus[:, d])
                if dense:
                    # "mod T": a dense corner overshoots its table by less than one table size (far edge)
                    acc = acc - size * (acc >= size)
                else:
                    # power-of-two table: the low bits are the remainder (tcnn does the same)
                    acc = torch.bitwise_and(acc, size - 1)
                idx[lvl, :, c] = acc + offset
                w[lvl, :, c] = weight
        return idx, w

    @torch.no_grad()
    def plan(self, x: torch.Tensor) -> HashPlan:
        """Precompute the interpolation of a fixed coordinate set ``x (n, D)`` in [0, 1] (as ``cfg.lookup``
        says). Coordinates outside [0, 1] are refused: a dense level's corners would fall outside its table,
        and the sparse plan, built without invariant checks, would read outside the table (a crash, not an
        error)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"hash grid expects coordinates (n, {self.dim}), got {tuple(x.shape)}")
        if x.numel() and not (
            bool(torch.isfinite(x).all()) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        ):
            raise ValueError(
                f"hash grid coordinates must be finite and in [0, 1], got values in [{float(x.min()):.4g}, "
                f"{float(x.max()):.4g}]; map the positions onto the unit cube first (grid_coords does)"
            )
        n = x.shape[0]
        idx, w = self.lookup(x)  # (L, n, C)
        n_lv, n_c = idx.shape[0], idx.shape[2]
        if self.cfg.lookup == "gather":
            idx, w = idx.permute(1, 0, 2), w.permute(1, 0, 2)  # point-major: row = point * L + level
            return HashPlan(
                n, idx=idx.reshape(n * n_lv, n_c).contiguous(), w=w.reshape(n * n_lv, n_c).contiguous()
            )
        # level-major rows (row = level * n + point): one level's table rows and gradient rows stay in cache
        rows = torch.arange(n_lv * n, device=x.device).repeat_interleave(n_c)
        coo = torch.sparse_coo_tensor(
            torch.stack([rows, idx.reshape(-1)]),
            w.reshape(-1),
            (n_lv * n, self.table.shape[0]),
            check_invariants=False,
        ).coalesce()
        with warnings.catch_warnings():
            # "CSR support is in beta"; torch >= 2.11 on CUDA also says once that invariant checks are off
            warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
            warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")
            fwd = _int32_csr(coo.to_sparse_csr())
            bwd = _int32_csr(coo.t().coalesce().to_sparse_csr())
        return HashPlan(n, fwd, bwd, levels=n_lv)

    # --- forward -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor | HashPlan) -> torch.Tensor:
        """Encode coordinates ``(n, D)`` (generic path) or a precomputed :class:`HashPlan` (fast path)."""
        table = self.table
        if isinstance(x, HashPlan):
            if x.idx is not None:
                out = _GatheredLookup.apply(table, x.idx, x.w.to(table.dtype))
            else:  # level-major rows -> (n, L*F)
                out = _PlannedLookup.apply(table, x.fwd, x.bwd).view(x.levels, x.n, -1).transpose(0, 1)
            return out.reshape(x.n, self.out_dim)
        idx, w = self.lookup(x)
        return _BagLookup.apply(table, idx, w.to(table.dtype), self._offset_list, self.level_sizes)


@dataclass
class FourierFeaturesConfig:
    """NeRF positional encoding: ``[x, sin(2^k pi x), cos(2^k pi x)]`` for ``k < n_frequencies``."""

    n_frequencies: PosInt = 10
    """Octaves of sines and cosines."""
    include_input: bool = True
    """Also pass the coordinates themselves."""


class FourierFeatures(nn.Module):
    """Fourier-feature (NeRF) positional encoding of coordinates in [0, 1] (mapped to [-1, 1] first).

    Shapes: ``(n, D) -> (n, D * (2 * n_frequencies + include_input))``.
    """

    def __init__(self, dim: int, cfg: FourierFeaturesConfig | None = None):
        super().__init__()
        self.dim = dim
        self.cfg = cfg or FourierFeaturesConfig()
        freqs = math.pi * 2.0 ** torch.arange(self.cfg.n_frequencies, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.dim * (2 * self.cfg.n_frequencies + int(self.cfg.include_input))

    @property
    def n_params(self) -> int:
        return 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = 2.0 * x - 1.0
        ang = u[:, :, None] * self.freqs[None, None, :]  # (n, D, K)
        parts = [torch.sin(ang).flatten(1), torch.cos(ang).flatten(1)]
        if self.cfg.include_input:
            parts.insert(0, u)
        return torch.cat(parts, dim=1)


class IdentityEncoding(nn.Module):
    """No encoding: coordinates mapped to [-1, 1] (the input of a SIREN)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    @property
    def out_dim(self) -> int:
        return self.dim

    @property
    def n_params(self) -> int:
        return 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x - 1.0
