"""Networks of the population methods: DisINR's disentangled encoders and STRAINER's shared trunk.

DisINR (docs/methods.md section 5): ``f_i(x) = D_phi(concat(E_psi(x), E_theta_i(x)))``. The shared encoder
``E_psi`` and each subject encoder ``E_theta_i`` have the same design, a positional encoding followed by two fully
connected layers of 128 units (ReLU); the shared decoder ``D_phi`` is FC 256 -> 128 ReLU -> linear output.
With the hash backbone both encoders read the same fixed coordinates, so one precomputed plan serves both --
unless ``subject_levels`` confines the subject encoders to the coarsest levels of the grid (a subject code that
cannot fit fine detail or noise, so the frozen shared pair must carry it); then :meth:`DisINRNetwork.plan` returns
a :class:`PlanPair`.

STRAINER (Vyas et al. 2024): a shared trunk (encoding plus the first layers) and one head per training subject;
at test time the trunk initialises a network with a fresh head.

Both are a :class:`SubjectNetwork`: shared weights plus one module per subject id in ``subjects``, so
pre-training, data-parallel sharding and test-time adaptation treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from inrecon.config import PosFloat, PosInt
from inrecon.models.encodings import FourierFeaturesConfig, HashGridConfig, HashPlan
from inrecon.models.fields import make_encoding, plan_for
from inrecon.models.networks import Precision, SineLayer, he_init_, products_precision

__all__ = [
    "DisINRNetwork",
    "Encoder",
    "PlanPair",
    "PopulationArch",
    "StrainerNetwork",
    "SubjectNetwork",
]


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
    subject_levels: PosInt | None = None
    """DisINR, hash backbone: the subject encoders use only the coarsest this many levels of the hash grid (the
    same resolutions as the shared encoder's first levels); None: all levels, as in the paper."""
    mlp_dtype: Precision = "float32"
    """Precision of the fully connected layers' products (bfloat16: autocast, float32 weights and encodings;
    faster on CPUs and GPUs with bf16 units, its 8-bit mantissa caps a fit near 50 dB). auto: bfloat16 where the
    device multiplies it in hardware (:func:`inrecon.runtime.fast_bf16`), else float32 -- decided where the network
    runs, so a model file works alike on every machine."""


def _encoding(dim: int, cfg: PopulationArch) -> nn.Module:
    return make_encoding(dim, cfg.backbone, cfg.hash, cfg.fourier)


def _layer(in_dim: int, out_dim: int, cfg: PopulationArch, first: bool) -> nn.Module:
    if cfg.backbone == "siren":
        return SineLayer(in_dim, out_dim, cfg.siren_w0, first=first)
    return nn.Sequential(he_init_(nn.Linear(in_dim, out_dim)), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Positional encoding + two layers of ``width`` units: ``(n, dim) -> (n, width)``."""

    def __init__(self, dim: int, cfg: PopulationArch):
        super().__init__()
        self.encoding = _encoding(dim, cfg)
        w = cfg.encoder_width
        self.layers = nn.Sequential(
            _layer(self.encoding.out_dim, w, cfg, first=True), _layer(w, w, cfg, first=False)
        )
        self.out_dim, self.cfg = w, cfg

    def forward(self, coords) -> torch.Tensor:
        feats = self.encoding(coords)  # float32 (the hash plan's sparse products have no bf16 kernel)
        with products_precision(self.cfg.mlp_dtype, feats):
            return self.layers(feats)


class Decoder(nn.Module):
    """``(n, 2*width) -> (n, out)``: one hidden layer of ``width`` units and a linear output."""

    def __init__(self, in_dim: int, out_channels: int, cfg: PopulationArch):
        super().__init__()
        self.hidden = _layer(in_dim, cfg.decoder_width, cfg, first=False)
        self.out = nn.Linear(cfg.decoder_width, out_channels)
        if cfg.backbone != "siren":
            he_init_(self.out)
        self.cfg = cfg

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        with products_precision(self.cfg.mlp_dtype, h):
            return self.out(self.hidden(h)).float()


@dataclass
class PlanPair:
    """What one fixed coordinate set precomputes for DisINR when its subject encoders read fewer hash levels than
    the shared encoder: a plan (or the coordinates) for each."""

    shared: HashPlan | torch.Tensor
    subject: HashPlan | torch.Tensor

    def to(self, device) -> PlanPair:
        return PlanPair(self.shared.to(device), self.subject.to(device))


def _ids(subjects: int | list[int]) -> list[int]:
    return list(range(subjects)) if isinstance(subjects, int) else list(subjects)


class SubjectNetwork(nn.Module):
    """Shared weights (state-dict keys starting with ``SHARED_PREFIXES``) plus one module per subject id in the
    ``subjects`` dict. ``forward(coords, subject, shared=None)`` evaluates one subject (``coords`` ``(n, dim)`` in
    [0, 1] or a :class:`HashPlan`); ``shared`` reuses precomputed :meth:`shared_features`."""

    SHARED_PREFIXES: tuple[str, ...] = ()

    def _init_subjects(self, subjects: int | list[int]) -> None:
        self.subjects = nn.ModuleDict({str(i): self._new_subject() for i in _ids(subjects)})

    def _new_subject(self) -> nn.Module:
        raise NotImplementedError

    def _head(self, h: torch.Tensor, coords, subject: int) -> torch.Tensor:
        raise NotImplementedError

    def shared_features(self, coords) -> torch.Tensor:
        raise NotImplementedError

    def plan(self, coords: torch.Tensor):
        """The hash plan of the shared encoding for fixed ``coords`` (or the coordinates themselves)."""
        return plan_for(self.plan_encoding, coords)

    def forward(self, coords: torch.Tensor | HashPlan, subject: int, shared: torch.Tensor | None = None):
        h = self.shared_features(coords) if shared is None else shared
        return self._head(h, coords, subject)

    def add_subject(self) -> int:
        """A freshly initialised subject module (test-time adaptation); returns its id."""
        device = next(iter(self.shared_parameters()), torch.empty(0)).device
        new = max((int(k) for k in self.subjects), default=-1) + 1
        self.subjects[str(new)] = self._new_subject().to(device)
        return new

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith(self.SHARED_PREFIXES)]

    def subject_parameters(self, subject: int) -> list[nn.Parameter]:
        return list(self.subjects[str(subject)].parameters())

    def table_parameters(self) -> list[nn.Parameter]:
        """Every positional encoding's parameters (the hash tables), shared and per subject: adaptation decays
        them apart from the layers' weights, as NGP does."""
        return [p for n, p in self.named_parameters() if "encoding" in n.split(".")]

    def drop_subjects_except(self, keep) -> None:
        """Delete the subject modules whose ids are not in ``keep`` (data-parallel ranks keep their own)."""
        for k in [k for k in self.subjects if int(k) not in set(keep)]:
            del self.subjects[k]


class DisINRNetwork(SubjectNetwork):
    """Shared encoder + shared decoder + one subject encoder per subject id.

    ``subjects`` is a count (ids ``0..n-1``) or the list of global ids this process holds (data-parallel
    pre-training keeps each subject's encoder on one rank only).
    """

    SHARED_PREFIXES = ("shared_encoder.", "decoder.")

    def __init__(
        self, dim: int, out_channels: int, subjects: int | list[int], cfg: PopulationArch | None = None
    ):
        super().__init__()
        self.cfg = cfg or PopulationArch()
        self.dim, self.out_channels = dim, out_channels
        self.shared_encoder = Encoder(dim, self.cfg)
        self.decoder = Decoder(2 * self.cfg.encoder_width, out_channels, self.cfg)
        self.subject_cfg = self.cfg
        k = self.cfg.subject_levels
        if self.cfg.backbone == "hash" and k is not None and k < self.cfg.hash.n_levels:
            self.subject_cfg = replace(self.cfg, hash=replace(self.cfg.hash, n_levels=k))
        self._init_subjects(subjects)

    @property
    def plan_encoding(self) -> nn.Module:
        return self.shared_encoder.encoding

    def plan(self, coords: torch.Tensor):
        """The shared encoding's hash plan for fixed ``coords``; a :class:`PlanPair` when the subject encoders
        read fewer levels (their plan is computed by a throwaway encoding of the same levels)."""
        shared = plan_for(self.plan_encoding, coords)
        if self.subject_cfg is self.cfg:
            return shared
        enc = make_encoding(self.dim, "hash", self.subject_cfg.hash, self.subject_cfg.fourier).to(
            coords.device
        )
        return PlanPair(shared, plan_for(enc, coords))

    def _new_subject(self) -> nn.Module:
        return Encoder(self.dim, self.subject_cfg)

    def shared_features(self, coords) -> torch.Tensor:
        return self.shared_encoder(coords.shared if isinstance(coords, PlanPair) else coords)

    def subject_features(self, coords, subject: int) -> torch.Tensor:
        return self.subjects[str(subject)](coords.subject if isinstance(coords, PlanPair) else coords)

    def _head(self, h, coords, subject):
        return self.decoder(torch.cat([h, self.subject_features(coords, subject)], dim=1))


class StrainerNetwork(SubjectNetwork):
    """A shared trunk (encoding + ``n_shared`` layers) and one head (remaining layers + output) per subject.

    Mirrors STRAINER's split of a 6-hidden-layer network with the first 5 layers shared.
    """

    SHARED_PREFIXES = ("encoding.", "trunk.")

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
        self.encoding = _encoding(dim, self.cfg)
        layers = []
        d = self.encoding.out_dim
        for i in range(n_shared):
            layers.append(_layer(d, width, self.cfg, first=i == 0))
            d = width
        self.trunk = nn.Sequential(*layers)
        self._init_subjects(subjects)

    @property
    def plan_encoding(self) -> nn.Module:
        return self.encoding

    def _new_subject(self) -> nn.Module:
        layers = [_layer(self.width, self.width, self.cfg, first=False) for _ in range(self.n_head)]
        out = nn.Linear(self.width, self.out_channels)
        layers.append(out if self.cfg.backbone == "siren" else he_init_(out))
        return nn.Sequential(*layers)

    def shared_features(self, coords) -> torch.Tensor:
        feats = self.encoding(coords)
        with products_precision(self.cfg.mlp_dtype, feats):
            return self.trunk(feats)

    def _head(self, h, coords, subject):
        with products_precision(self.cfg.mlp_dtype, h):
            return self.subjects[str(subject)](h).float()
