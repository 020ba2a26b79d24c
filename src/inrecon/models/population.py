"""Networks of the population methods: DisINR's disentangled encoders and STRAINER's shared trunk.

DisINR (METHODS.md section 5): ``f_i(x) = D_phi(concat(E_psi(x), E_theta_i(x)))``. The shared encoder ``E_psi``
and each subject encoder ``E_theta_i`` have the same design, a positional encoding followed by two fully
connected layers of 128 units (ReLU); the shared decoder ``D_phi`` is FC 256 -> 128 ReLU -> linear output.
With the hash backbone both encoders read the same fixed coordinates, so one precomputed plan serves both.

STRAINER (Vyas et al. 2024): a shared trunk (encoding plus the first layers) and one head per training subject;
at test time the trunk initialises a network with a fresh head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from inrecon.config import PosFloat, PosInt
from inrecon.models.encodings import (
    FourierFeatures,
    FourierFeaturesConfig,
    HashGridConfig,
    HashGridEncoding,
    HashPlan,
    IdentityEncoding,
)
from inrecon.models.fields import PLAN_MAX_ENTRIES
from inrecon.models.networks import SineLayer, he_init_

__all__ = ["DisINRNetwork", "Encoder", "PopulationArch", "StrainerNetwork", "make_encoding"]


@dataclass
class PopulationArch:
    """Architecture of the population networks (DisINR paper appendix A.1) for one of three backbones."""

    backbone: Literal["hash", "fourier", "siren"] = "hash"
    """Positional encoding of every encoder: hash, fourier, or siren (sine layers, no encoding)."""
    hash: HashGridConfig = field(default_factory=HashGridConfig)
    """The hash grid (backbone hash)."""
    fourier: FourierFeaturesConfig = field(default_factory=FourierFeaturesConfig)
    """The Fourier features (backbone fourier)."""
    encoder_width: PosInt = 128
    """Units of each encoder's two layers (DisINR; STRAINER's trunk and heads use ``width``)."""
    decoder_width: PosInt = 128
    """Units of the shared decoder's hidden layer (DisINR)."""
    siren_w0: PosFloat = 30.0
    """Frequency of the sine layers (backbone siren)."""


def make_encoding(dim: int, cfg: PopulationArch) -> nn.Module:
    if cfg.backbone == "hash":
        return HashGridEncoding(dim, cfg.hash)
    if cfg.backbone == "fourier":
        return FourierFeatures(dim, cfg.fourier)
    if cfg.backbone == "siren":
        return IdentityEncoding(dim)
    from inrecon.errors import InreconError

    raise InreconError(f"unknown backbone {cfg.backbone!r}", "use hash, fourier or siren")


def _layer(in_dim: int, out_dim: int, cfg: PopulationArch, first: bool) -> nn.Module:
    if cfg.backbone == "siren":
        return SineLayer(in_dim, out_dim, cfg.siren_w0, first=first)
    return nn.Sequential(he_init_(nn.Linear(in_dim, out_dim)), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Positional encoding + two layers of ``width`` units: ``(n, dim) -> (n, width)``."""

    def __init__(self, dim: int, cfg: PopulationArch):
        super().__init__()
        self.encoding = make_encoding(dim, cfg)
        w = cfg.encoder_width
        self.layers = nn.Sequential(
            _layer(self.encoding.out_dim, w, cfg, first=True), _layer(w, w, cfg, first=False)
        )
        self.out_dim = w

    def forward(self, coords) -> torch.Tensor:
        return self.layers(self.encoding(coords))


class Decoder(nn.Module):
    """``(n, 2*width) -> (n, out)``: one hidden layer of ``width`` units and a linear output."""

    def __init__(self, in_dim: int, out_channels: int, cfg: PopulationArch):
        super().__init__()
        self.hidden = _layer(in_dim, cfg.decoder_width, cfg, first=False)
        self.out = nn.Linear(cfg.decoder_width, out_channels)
        if cfg.backbone != "siren":
            he_init_(self.out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(h))


def _ids(subjects: int | list[int]) -> list[int]:
    return list(range(subjects)) if isinstance(subjects, int) else list(subjects)


class DisINRNetwork(nn.Module):
    """Shared encoder + shared decoder + one subject encoder per subject id.

    ``subjects`` is a count (ids ``0..n-1``) or the list of global ids this process holds (data-parallel
    pre-training keeps each subject's encoder on one rank only). ``forward(coords, subject)`` evaluates subject
    ``subject``; ``coords`` are ``(n, dim)`` in [0, 1] or a :class:`HashPlan` for them. :meth:`add_subject`
    adds a freshly initialised subject encoder (test-time adaptation) and returns its id.
    """

    SHARED_PREFIXES = ("shared_encoder.", "decoder.")
    """State-dict keys of the shared pair (what a model file stores)."""

    def __init__(
        self, dim: int, out_channels: int, subjects: int | list[int], cfg: PopulationArch | None = None
    ):
        super().__init__()
        self.cfg = cfg or PopulationArch()
        self.dim, self.out_channels = dim, out_channels
        self.shared_encoder = Encoder(dim, self.cfg)
        self.decoder = Decoder(2 * self.cfg.encoder_width, out_channels, self.cfg)
        self.subject_encoders = nn.ModuleDict({str(i): Encoder(dim, self.cfg) for i in _ids(subjects)})

    def add_subject(self) -> int:
        device = next(self.shared_encoder.parameters(), torch.empty(0)).device
        new = max((int(k) for k in self.subject_encoders), default=-1) + 1
        self.subject_encoders[str(new)] = Encoder(self.dim, self.cfg).to(device)
        return new

    def plan(self, coords: torch.Tensor):
        enc = self.shared_encoder.encoding
        if (
            isinstance(enc, HashGridEncoding)
            and coords.shape[0] * enc.cfg.n_levels * 2**self.dim <= PLAN_MAX_ENTRIES
        ):
            return enc.plan(coords)
        return coords

    def shared_features(self, coords) -> torch.Tensor:
        return self.shared_encoder(coords)

    def subject_features(self, coords, subject: int) -> torch.Tensor:
        return self.subject_encoders[str(subject)](coords)

    def forward(self, coords: torch.Tensor | HashPlan, subject: int, shared: torch.Tensor | None = None):
        """Field values ``(n, out_channels)`` of ``subject``; ``shared`` reuses precomputed shared features."""
        h = self.shared_features(coords) if shared is None else shared
        return self.decoder(torch.cat([h, self.subject_features(coords, subject)], dim=1))

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared_encoder.parameters()) + list(self.decoder.parameters())

    def subject_parameters(self, subject: int) -> list[nn.Parameter]:
        return list(self.subject_encoders[str(subject)].parameters())

    def drop_subjects_except(self, keep) -> None:
        """Delete the subject encoders whose ids are not in ``keep`` (data-parallel ranks keep their own)."""
        for k in [k for k in self.subject_encoders if int(k) not in set(keep)]:
            del self.subject_encoders[k]


class StrainerNetwork(nn.Module):
    """A shared trunk (encoding + ``n_shared`` layers) and one head (remaining layers + output) per subject.

    Mirrors STRAINER's split of a 6-hidden-layer network with the first 5 layers shared.
    """

    SHARED_PREFIXES = ("encoding.", "trunk.")
    """State-dict keys of the shared trunk (what a model file stores)."""

    def __init__(
        self,
        dim: int,
        out_channels: int,
        subjects: int | list[int],
        cfg: PopulationArch | None = None,
        width: int = 128,
        n_shared: int = 5,
        n_head: int = 1,
    ):
        super().__init__()
        self.cfg = cfg or PopulationArch()
        self.dim, self.out_channels, self.width, self.n_head = dim, out_channels, width, n_head
        self.encoding = make_encoding(dim, self.cfg)
        layers = []
        d = self.encoding.out_dim
        for i in range(n_shared):
            layers.append(_layer(d, width, self.cfg, first=i == 0))
            d = width
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleDict({str(i): self._new_head() for i in _ids(subjects)})

    def _new_head(self) -> nn.Module:
        layers = [_layer(self.width, self.width, self.cfg, first=False) for _ in range(self.n_head)]
        out = nn.Linear(self.width, self.out_channels)
        layers.append(out if self.cfg.backbone == "siren" else he_init_(out))
        return nn.Sequential(*layers)

    def add_subject(self) -> int:
        device = next(self.trunk.parameters()).device
        new = max((int(k) for k in self.heads), default=-1) + 1
        self.heads[str(new)] = self._new_head().to(device)
        return new

    def plan(self, coords: torch.Tensor):
        enc = self.encoding
        if (
            isinstance(enc, HashGridEncoding)
            and coords.shape[0] * enc.cfg.n_levels * 2**self.dim <= PLAN_MAX_ENTRIES
        ):
            return enc.plan(coords)
        return coords

    def shared_features(self, coords) -> torch.Tensor:
        return self.trunk(self.encoding(coords))

    def forward(self, coords, subject: int, shared: torch.Tensor | None = None) -> torch.Tensor:
        """Field values ``(n, out_channels)`` of ``subject``; ``shared`` reuses precomputed trunk features."""
        h = self.shared_features(coords) if shared is None else shared
        return self.heads[str(subject)](h)

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoding.parameters()) + list(self.trunk.parameters())

    def subject_parameters(self, subject: int) -> list[nn.Parameter]:
        return list(self.heads[str(subject)].parameters())

    def drop_subjects_except(self, keep) -> None:
        """Delete the heads whose ids are not in ``keep`` (data-parallel ranks keep their own)."""
        for k in [k for k in self.heads if int(k) not in set(keep)]:
            del self.heads[k]
