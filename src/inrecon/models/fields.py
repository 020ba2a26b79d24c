"""Neural fields: an encoding followed by a decoder, and the binding of a field to an image grid.

- :func:`grid_coords` gives pixel-centre coordinates in [0, 1] for an image shape.
- :class:`NeuralField` maps coordinates ``(n, D)`` to ``(n, out_channels)`` with one of three backbones
  (``hash``: hash grid + ReLU MLP; ``fourier``: NeRF features + ReLU MLP; ``siren``: SIREN).
- :class:`ImageINR` renders a field on a fixed grid, as a complex image (MRI: channels are real, imaginary) or
  a real one (CT, volumes), using the precomputed hash plan when the grid is small enough and chunks otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from inrecon.models.encodings import (
    FourierFeatures,
    FourierFeaturesConfig,
    HashGridConfig,
    HashGridEncoding,
    HashPlan,
    IdentityEncoding,
)
from inrecon.models.networks import MLP, MLPConfig, Siren, SirenConfig

__all__ = [
    "FieldConfig",
    "ImageINR",
    "NeuralField",
    "count_parameters",
    "grid_coords",
    "make_encoding",
    "plan_for",
]

# A plan stores ~24 bytes per (coordinate, level, corner); beyond this many entries use the generic path.
PLAN_MAX_ENTRIES = 2**25


def grid_coords(shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Pixel-centre coordinates ``(prod(shape), len(shape))`` in [0, 1], C order (last axis fastest)."""
    axes = [(torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@dataclass
class FieldConfig:
    """A neural field: which backbone, and its pieces."""

    backbone: Literal["hash", "fourier", "siren"] = "hash"
    """hash (hash grid + ReLU MLP), fourier (NeRF features + ReLU MLP) or siren."""
    hash: HashGridConfig = field(default_factory=HashGridConfig)
    """The hash-grid encoding (backbone hash)."""
    fourier: FourierFeaturesConfig = field(default_factory=FourierFeaturesConfig)
    """The Fourier-feature encoding (backbone fourier)."""
    mlp: MLPConfig = field(default_factory=MLPConfig)
    """The ReLU MLP decoder (backbones hash and fourier)."""
    siren: SirenConfig = field(default_factory=SirenConfig)
    """The SIREN network (backbone siren)."""


def for_grid(cfg, shape: tuple[int, ...]):
    """``cfg`` (a :class:`HashGridConfig`, or any config with a ``hash`` section) with ``max_resolution`` turned
    into ``per_level_scale`` for images of ``shape``."""
    from dataclasses import replace

    if not isinstance(cfg, HashGridConfig):
        return replace(cfg, hash=for_grid(cfg.hash, shape))
    hash_cfg = cfg
    if hash_cfg.max_resolution is None:
        return hash_cfg
    n_max = max(shape) if hash_cfg.max_resolution == "grid" else int(hash_cfg.max_resolution)
    n_min = hash_cfg.base_resolution
    b = (max(n_max, n_min + 1) / n_min) ** (1.0 / max(1, hash_cfg.n_levels - 1))
    return replace(hash_cfg, per_level_scale=float(b), max_resolution=None)


def make_encoding(
    dim: int, backbone: str, hash_cfg: HashGridConfig, fourier_cfg: FourierFeaturesConfig
) -> nn.Module:
    """The positional encoding of a backbone: hash grid, Fourier features, or none (SIREN)."""
    if backbone == "hash":
        return HashGridEncoding(dim, hash_cfg)
    if backbone == "fourier":
        return FourierFeatures(dim, fourier_cfg)
    if backbone == "siren":
        return IdentityEncoding(dim)
    from inrecon.errors import InreconError

    raise InreconError(f"unknown backbone {backbone!r}", "use hash, fourier or siren")


def plan_for(encoding: nn.Module, coords: torch.Tensor):
    """What a fixed coordinate set can precompute for ``encoding``: the hash grid's interpolation plan when it
    fits in memory (``PLAN_MAX_ENTRIES``), else the coordinates themselves."""
    if isinstance(encoding, HashGridEncoding):
        if coords.shape[0] * encoding.cfg.n_levels * 2 ** coords.shape[1] <= PLAN_MAX_ENTRIES:
            return encoding.plan(coords)
    return coords


class NeuralField(nn.Module):
    """Coordinates ``(n, dim)`` in [0, 1] -> values ``(n, out_channels)``.

    ``encoder_parameters()`` and ``decoder_parameters()`` split the weights for the two weight-decay groups of
    docs/methods.md (hash tables vs MLP).
    """

    def __init__(self, dim: int, out_channels: int, cfg: FieldConfig | None = None):
        super().__init__()
        cfg = cfg or FieldConfig()
        self.cfg = cfg
        self.dim = dim
        self.out_channels = out_channels
        self.encoder: nn.Module = make_encoding(dim, cfg.backbone, cfg.hash, cfg.fourier)
        if cfg.backbone == "siren":
            self.decoder: nn.Module = Siren(dim, out_channels, cfg.siren)
        else:
            self.decoder = MLP(self.encoder.out_dim, out_channels, cfg.mlp)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.decoder.parameters())

    def plan(self, coords: torch.Tensor):
        """Precompute what only depends on the coordinates (hash backbone); else return ``coords``."""
        return plan_for(self.encoder, coords)

    def forward(self, coords: torch.Tensor | HashPlan) -> torch.Tensor:
        return self.decoder(self.encoder(coords))


class ImageINR(nn.Module):
    """A :class:`NeuralField` rendered on the pixel grid of ``image_shape``.

    ``forward()`` returns the image: complex64 ``image_shape`` when ``complex_output`` (2 channels: real,
    imaginary), else float32 ``image_shape``. Large grids (e.g. 3D volumes) are rendered in chunks of
    ``chunk`` coordinates without gradients via :meth:`render`.
    """

    def __init__(self, field_: NeuralField, image_shape: tuple[int, ...], complex_output: bool):
        super().__init__()
        if field_.out_channels != (2 if complex_output else 1):
            raise ValueError("complex output needs 2 channels, real output 1")
        self.field = field_
        self.image_shape = tuple(int(s) for s in image_shape)
        self.complex_output = complex_output
        self._plan = None
        self._plan_device = None

    def _inputs(self, device):
        if self._plan is None or self._plan_device != device:
            coords = grid_coords(self.image_shape, device=device)
            self._plan = self.field.plan(coords)
            self._plan_device = device
        return self._plan

    def to_image(self, values: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """``(n, channels)`` field values -> an image of ``shape`` (default: the grid)."""
        shape = shape or self.image_shape
        if self.complex_output:
            return torch.view_as_complex(values.float().contiguous()).reshape(shape)
        return values[:, 0].reshape(shape)

    def forward(self) -> torch.Tensor:
        device = next(self.field.parameters(), torch.empty(0)).device
        return self.to_image(self.field(self._inputs(device)))

    @torch.no_grad()
    def render(self, chunk: int = 2**18) -> torch.Tensor:
        """The image without gradients, evaluated in chunks of ``chunk`` coordinates."""
        device = next(self.field.parameters(), torch.empty(0)).device
        n = math.prod(self.image_shape)
        if n <= chunk:
            return self.forward()
        coords = grid_coords(self.image_shape, device=device)
        outs = [self.field(coords[i : i + chunk]) for i in range(0, n, chunk)]
        return self.to_image(torch.cat(outs))
