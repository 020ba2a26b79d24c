"""2D CT forward model: fan-beam (flat detector) and parallel-beam line integrals as a sparse matrix.

The model is ASTRA's ``line`` / ``line_fanflat`` projector: a ray is a zero-width line and its weight for a
pixel is the exact length (mm) of the line's intersection with the pixel square. Image values are attenuation
per mm, so the sinogram holds dimensionless line integrals. Conventions (ASTRA ``parallel`` / ``fanflat``) are
those of :class:`~inrecon.data.scans.CTGeometry`; rays are full lines through the image (as in ASTRA), so a
detector inside the field of view does not cut them.

The system matrix is built once per (geometry, angles) by a vectorised Siddon-type traversal: each ray is
walked along its *major* axis (x when the ray is closer to horizontal, y otherwise); within one column (row)
slab a ray crosses at most two pixels, whose lengths follow in closed form. A ray lying exactly on a pixel
edge is given to the pixel on its ``+u`` side (ASTRA mostly does the same, but its float32 rounding decides
such ties inconsistently, so sinograms of edge-aligned rays can differ from ASTRA's; all other rays agree to
~1e-6). The forward matrix and its transpose are kept as CSR tensors, so both the forward and the adjoint are
one sparse matrix-vector product, and a small LRU cache makes repeated construction for the same geometry
free.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from inrecon.checks import require_finite, require_real
from inrecon.data.scans import CTGeometry, as_tensor
from inrecon.errors import InreconError
from inrecon.physics.operator import LinearOperator

__all__ = ["CTProjector", "build_system_matrix", "cache_info", "clear_cache", "detector_positions"]

# Geometries whose upper-bound estimate V*N*(H+W) of the non-zeros exceeds this are refused before building
# (the real count is about half of it; 8 bytes per non-zero, twice for forward and transpose).
_MAX_NNZ = 1_000_000_000
# Candidate entries (rays x slabs x 2) evaluated per chunk while building: bounds the build's memory.
_CHUNK_ENTRIES = 3_000_000
_CACHE_SIZE = 6
_CACHE: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
# Every matrix a live projector still holds, by (key, 0 forward / 1 transpose): projectors of one geometry and
# one angle set share their matrices however many others were built since (e.g. the 8 rotated and mirrored
# variants of each of 16 augmented pre-training scans: 8 matrices, not 128). Weak references: an entry goes
# with the last projector that holds it, so this pins nothing beyond the LRU above.
_LIVE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def detector_positions(geometry: CTGeometry) -> np.ndarray:
    """Detector centres along the detector axis ``u``, mm: ``(i - N/2 + 1/2) * spacing``, float64 ``(N,)``."""
    n = geometry.n_detectors
    return (np.arange(n, dtype=np.float64) - n / 2 + 0.5) * geometry.detector_spacing_mm


def _rays(geometry: CTGeometry, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point on each ray and its direction, float64 ``(V*N, 2)`` each (view-major, then detector)."""
    t = angles[:, None]
    s = detector_positions(geometry)[None, :]
    cos, sin = np.cos(t), np.sin(t)
    zeros = np.zeros_like(t * s)
    if geometry.kind == "parallel":
        px, py = s * cos, s * sin
        dx, dy = zeros + sin, zeros - cos
    else:
        sod, odd = float(geometry.source_to_center_mm), float(geometry.center_to_detector_mm)
        px, py = zeros + sod * sin, zeros - sod * cos
        dx, dy = (-odd * sin + s * cos) - px, (odd * cos + s * sin) - py
    # Ties: a ray exactly on a pixel edge goes to the pixel on the +u side, as in ASTRA. A shift of 1e-9
    # pixels along u makes that rule explicit and immune to rounding (cos(pi/2) != 0 in floating point).
    eps = 1e-9 * float(geometry.pixel_size_mm)
    px, py = px + eps * cos, py + eps * sin
    point = np.stack([px, py], -1).reshape(-1, 2)
    direction = np.stack([dx, dy], -1).reshape(-1, 2)
    return point, direction


def _trace(
    pm: np.ndarray, pn: np.ndarray, dm: np.ndarray, dn: np.ndarray, n_major: int, n_minor: int, pixel: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intersections of lines with a grid, walking the major axis (``|dm| >= |dn|``).

    Lines pass through ``(pm, pn)`` with direction ``(dm, dn)`` in (major, minor) coordinates, mm. Slab ``k``
    along the major axis spans ``[(k - n_major/2) p, (k + 1 - n_major/2) p]``; minor index ``j`` spans
    ``[(j - n_minor/2) p, (j + 1 - n_minor/2) p]``. Returns ``(ray, k, j, length_mm)`` of the non-zero
    entries.
    """
    slope = dn / dm
    length = pixel * np.sqrt(1.0 + slope * slope)
    # minor coordinate in pixel units (0 at the grid's first edge) where the line meets major edge k
    t0 = (pn + ((-n_major / 2) * pixel - pm) * slope) / pixel + n_minor / 2
    k = np.arange(n_major, dtype=np.float64)
    ta = t0[:, None] + k[None, :] * slope[:, None]
    tb = ta + slope[:, None]
    lo, hi = np.minimum(ta, tb), np.maximum(ta, tb)
    j1 = np.floor(lo)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, np.minimum(j1 + 1.0 - lo, span) / span, 1.0)
    len1 = frac * length[:, None]
    len2 = length[:, None] - len1
    rays = np.broadcast_to(np.arange(pm.shape[0])[:, None], ta.shape)
    ks = np.broadcast_to(np.arange(n_major)[None, :], ta.shape)
    out = []
    for j, ln in ((j1, len1), (j1 + 1.0, len2)):
        keep = (j >= 0) & (j < n_minor) & (ln > 1e-9 * pixel)
        out.append((rays[keep], ks[keep], j[keep].astype(np.int64), ln[keep]))
    return tuple(np.concatenate([a[i] for a in out]) for i in range(4))  # type: ignore[return-value]


def build_system_matrix(geometry: CTGeometry, angles: np.ndarray | torch.Tensor) -> sp.csr_matrix:
    """The ``(V*N, H*W)`` float32 system matrix (row = view-major ray, column = row-major pixel), scipy CSR.

    Parameters
    ----------
    geometry
        The :class:`~inrecon.data.scans.CTGeometry`.
    angles
        View angles, radians, shape ``(V,)``.
    """
    angles = np.asarray(torch.as_tensor(angles).detach().cpu(), dtype=np.float64).reshape(-1)
    h, w = geometry.image_shape
    p = float(geometry.pixel_size_mm)
    n = geometry.n_detectors
    n_rays = angles.size * n
    views_per_chunk = max(1, _CHUNK_ENTRIES // max(1, n * 2 * max(h, w)))
    rows, cols, vals = [], [], []
    for v0 in range(0, angles.size, views_per_chunk):
        point, d = _rays(geometry, angles[v0 : v0 + views_per_chunk])
        offset = v0 * n
        horiz = np.abs(d[:, 0]) >= np.abs(d[:, 1])
        # x-major rays: major = x (column index), minor = -y (row index)
        ids = np.nonzero(horiz)[0]
        if ids.size:
            r, k, j, ln = _trace(point[ids, 0], -point[ids, 1], d[ids, 0], -d[ids, 1], w, h, p)
            rows.append(ids[r] + offset)
            cols.append(j * w + k)
            vals.append(ln)
        # y-major rays: major = -y (row index), minor = x (column index)
        ids = np.nonzero(~horiz)[0]
        if ids.size:
            r, k, j, ln = _trace(-point[ids, 1], point[ids, 0], -d[ids, 1], d[ids, 0], h, w, p)
            rows.append(ids[r] + offset)
            cols.append(k * w + j)
            vals.append(ln)
    if rows:
        r_all, c_all, v_all = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r_all = c_all = np.zeros(0, np.int64)
        v_all = np.zeros(0)
    mat = sp.csr_matrix((v_all.astype(np.float32), (r_all, c_all)), shape=(n_rays, h * w))
    mat.sum_duplicates()
    return mat


def _to_torch_csr(mat: sp.csr_matrix) -> torch.Tensor:
    index_dtype = np.int32 if mat.nnz < 2**31 - 1 and max(mat.shape) < 2**31 - 1 else np.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CSR matmul is all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(mat.indptr.astype(index_dtype)),
            torch.from_numpy(mat.indices.astype(index_dtype)),
            torch.from_numpy(np.ascontiguousarray(mat.data, dtype=np.float32)),
            size=mat.shape,
            check_invariants=False,
        )


def _cache_key(geometry: CTGeometry, angles: np.ndarray) -> tuple:
    return (geometry, angles.astype(np.float64).tobytes())


def clear_cache() -> None:
    """Forget every cached system matrix (projectors built later build their own, shared with none built
    before)."""
    _CACHE.clear()
    _LIVE.clear()


def cache_info() -> dict:
    """Entries in the system-matrix cache (LRU) and their total number of non-zeros; ``live``: the angle sets
    whose matrices some projector still holds (shared with any projector built for them later)."""
    return {
        "entries": len(_CACHE),
        "maxsize": _CACHE_SIZE,
        "nnz": sum(int(a.values().numel()) for a, _ in _CACHE.values()),
        "live": len({key for key, _ in _LIVE.keys()}),
    }


def _check_angles(angles) -> np.ndarray:
    a = as_tensor(angles)
    require_real(a, "angles")
    a = a.detach().to("cpu", torch.float64).reshape(-1)
    if a.numel() == 0:
        raise InreconError("angles is empty", "give at least one view angle (radians)")
    require_finite(a, "angles")
    return a.numpy()


def _estimated_nnz(geometry: CTGeometry, n_views: int) -> int:
    h, w = geometry.image_shape
    return n_views * geometry.n_detectors * (h + w)


class CTProjector(LinearOperator):
    """Fan-beam (flat detector) or parallel-beam projector ``x -> sinogram``, ASTRA ``line`` model.

    Parameters
    ----------
    geometry
        :class:`~inrecon.data.scans.CTGeometry` (ASTRA conventions, mm).
    angles
        View angles, radians, shape ``(V,)`` (any real dtype; stored as float64 for the build).

    Shapes
    ------
    forward: ``(..., H, W)`` float32 attenuation per mm -> ``(..., V, N)`` float32 line integrals.
    adjoint: ``(..., V, N)`` -> ``(..., H, W)`` (the exact transpose, i.e. backprojection with ray lengths).

    Notes
    -----
    The matrices are CSR buffers (not saved in ``state_dict``); ``.to(device)`` moves them. Autograd's
    backward of the forward map *is* the adjoint (``adjoint_as_backward``). Float64 inputs are computed in
    float32 and returned in float64.
    """

    adjoint_as_backward = True

    def __init__(self, geometry: CTGeometry, angles: torch.Tensor | np.ndarray | Sequence[float]):
        if not isinstance(geometry, CTGeometry):
            raise InreconError(
                f"geometry is a {type(geometry).__name__}, not a CTGeometry",
                "build it with inrecon.data.scans.CTGeometry(kind=..., n_detectors=..., ...)",
            )
        ang = _check_angles(angles)
        h, w = geometry.image_shape
        super().__init__((h, w), (ang.size, geometry.n_detectors))
        self.geometry = geometry
        self.register_buffer("angles", torch.from_numpy(ang.copy()), persistent=False)
        fwd, adj = self._matrices(geometry, ang)
        self.register_buffer("matrix", fwd, persistent=False)
        self.register_buffer("matrix_t", adj, persistent=False)

    # --- construction ---------------------------------------------------------------------------------
    @staticmethod
    def _matrices(geometry: CTGeometry, ang: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        key = _cache_key(geometry, ang)
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        live = _LIVE.get((key, 0)), _LIVE.get((key, 1))
        if live[0] is not None and live[1] is not None:
            return CTProjector._remember(key, live)
        est = _estimated_nnz(geometry, ang.size)
        if est > _MAX_NNZ:
            raise InreconError(
                f"the CT system matrix for {ang.size} views x {geometry.n_detectors} detectors on a "
                f"{geometry.image_shape} image would hold up to {est:.2e} non-zeros (limit {_MAX_NNZ:.0e})",
                "use fewer views, detectors or pixels, or reconstruct slices in pieces",
            )
        mat = build_system_matrix(geometry, ang)
        if mat.nnz == 0:
            raise InreconError(
                "no ray of this CT geometry crosses the image (the detector misses the field of view)",
                "check n_detectors, detector_spacing_mm, pixel_size_mm and the source/detector distances",
            )
        return CTProjector._remember(key, (_to_torch_csr(mat), _to_torch_csr(mat.T.tocsr())))

    @staticmethod
    def _remember(key: tuple, pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        _CACHE[key] = pair
        _LIVE[(key, 0)], _LIVE[(key, 1)] = pair
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return pair

    def select_views(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> CTProjector:
        """A projector for a subset of this one's views (rows sliced from the matrix, nothing rebuilt).

        Parameters
        ----------
        index
            Integer view indices into ``self.angles`` (any order), shape ``(V_s,)``.
        """
        idx = np.asarray(torch.as_tensor(index).cpu(), dtype=np.int64).reshape(-1)
        n_views = self.range_shape[0]
        if idx.size == 0 or idx.min() < -n_views or idx.max() >= n_views:
            raise InreconError(
                f"view indices must be non-empty and within [0, {n_views}) (got {idx.size} indices)",
                f"pass indices between 0 and {n_views - 1}",
            )
        idx = idx % n_views
        n = self.geometry.n_detectors
        rows = (idx[:, None] * n + np.arange(n)[None, :]).reshape(-1)
        m = self.matrix.to("cpu")
        full = sp.csr_matrix(
            (m.values().numpy(), m.col_indices().numpy(), m.crow_indices().numpy()), shape=tuple(m.shape)
        )
        sub = full[rows]
        new = CTProjector.__new__(CTProjector)
        LinearOperator.__init__(new, self.domain_shape, (idx.size, n))
        new.geometry = self.geometry
        device = self.matrix.device
        new.register_buffer("angles", self.angles[torch.as_tensor(idx, device=device)], persistent=False)
        new.register_buffer("matrix", _to_torch_csr(sub).to(device), persistent=False)
        new.register_buffer("matrix_t", _to_torch_csr(sub.T.tocsr()).to(device), persistent=False)
        return new

    # --- application ----------------------------------------------------------------------------------
    @property
    def nnz(self) -> int:
        """Number of non-zeros of the system matrix."""
        return int(self.matrix.values().numel())

    def _apply(self, fn, recurse=True):  # keep CSR buffers sparse through .to()/.cuda()/.float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super()._apply(fn, recurse)

    def _matmul(self, mat: torch.Tensor, x: torch.Tensor, n_in: int, out_shape: tuple[int, ...]):
        if x.is_complex():
            raise InreconError(
                f"CTProjector got a complex input ({x.dtype})", "pass a real float32 image or sinogram"
            )
        lead = x.shape[: x.ndim - 2]
        cols = x.reshape(-1, n_in).to(mat.dtype)
        if cols.shape[0] == 1:  # sparse matrix-vector is ~3x faster than matrix-matrix on the CPU
            out = torch.mv(mat, cols[0].contiguous()).unsqueeze(0)
        else:
            out = (mat @ cols.T.contiguous()).T
        out = out.reshape(*lead, *out_shape)
        return out if x.dtype == out.dtype or not x.dtype.is_floating_point else out.to(x.dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.domain_shape
        return self._matmul(self.matrix, x, h * w, self.range_shape)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        v, n = self.range_shape
        return self._matmul(self.matrix_t, y, v * n, self.domain_shape)

    def extra_repr(self) -> str:
        g = self.geometry
        return (
            f"kind={g.kind}, image={g.image_shape}, pixel={g.pixel_size_mm} mm, views={self.range_shape[0]}, "
            f"detectors={g.n_detectors} x {g.detector_spacing_mm} mm, nnz={self.nnz}"
        )
