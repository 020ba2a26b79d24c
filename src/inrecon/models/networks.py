"""Coordinate networks: ReLU MLP decoders and SIREN (sine) layers with their initialisation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from inrecon.config import NonNegInt, PosFloat, PosInt
from inrecon.runtime import fast_bf16

__all__ = ["MLP", "MLPConfig", "SineLayer", "Siren", "SirenConfig", "products_precision"]

Precision = Literal["float32", "bfloat16", "auto"]


def products_precision(precision: Precision, x: torch.Tensor):
    """The autocast context in which fully connected layers on ``x``'s device multiply at ``precision``:
    ``bfloat16`` (float32 weights and inputs, bf16 products: 2-3x faster on hardware with bf16 units, an 8-bit
    mantissa that caps a fit near 50 dB), ``float32`` (a no-op), or ``auto`` (bfloat16 where the device has bf16
    units, :func:`inrecon.runtime.fast_bf16`, else float32; decided where the network runs)."""
    on = precision == "bfloat16" or (precision == "auto" and fast_bf16(x.device))
    return torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=on)


@dataclass
class MLPConfig:
    """ReLU MLP decoder (docs/methods.md: the Bilevel code uses 8 x 64)."""

    width: PosInt = 64
    """Units per hidden layer."""
    n_hidden_layers: NonNegInt = 8
    """Hidden layers (0: one linear layer)."""
    bias: bool = True
    """Biases in every layer."""
    precision: Precision = "float32"
    """Precision of the layers' products (:func:`products_precision`); the output is float32 either way. On this
    project's 2-core CPU (AVX-512 BF16) ``bfloat16`` makes NGP's fits 22-38 % faster (the quick quality suite 21
    -> 16 min) and moves their images by -0.28 to +0.15 dB (mean -0.07; the three simulated dipy slices -0.21 to
    -0.28, benchmarks/RESULTS.md, stop 52): an option, float32 the default."""


def he_init_(layer: nn.Linear) -> nn.Linear:
    """He (Kaiming) uniform weights for a ReLU network and zero biases.

    PyTorch's default ``nn.Linear`` initialisation shrinks the activations by about sqrt(3) per layer; behind a
    hash grid (features start at +-1e-4) an 8-layer ReLU MLP then outputs a constant for hundreds of steps
    (measured on a fully sampled 96x96 scan: 26 dB after 150 steps at lr 1e-2, vs 55 dB after 100 steps at
    lr 1e-3 with this initialisation).
    """
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class MLP(nn.Module):
    """``in_dim -> [Linear, ReLU] * n_hidden_layers -> Linear(out_dim)`` (no output activation), He-initialised.

    ``n_hidden_layers = 0`` gives a single linear layer.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: MLPConfig | None = None):
        super().__init__()
        cfg = cfg or MLPConfig()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(cfg.n_hidden_layers):
            layers += [he_init_(nn.Linear(d, cfg.width, bias=cfg.bias)), nn.ReLU(inplace=True)]
            d = cfg.width
        layers.append(he_init_(nn.Linear(d, out_dim, bias=cfg.bias)))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.precision = cfg.precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision == "float32":
            return self.net(x)
        with products_precision(self.precision, x):
            return self.net(x).float()


@dataclass
class SirenConfig:
    """SIREN (Sitzmann et al. 2020): sine layers with frequency ``w0`` and its initialisation."""

    width: PosInt = 256
    """Units per sine layer."""
    n_hidden_layers: NonNegInt = 3
    """Sine layers after the first."""
    w0: PosFloat = 30.0
    """Frequency of the sine layers."""
    w0_first: PosFloat | None = None
    """Frequency of the first layer (None: w0)."""


class SineLayer(nn.Module):
    """``sin(w0 * (W x + b))`` with SIREN's initialisation: first layer U(-1/in, 1/in), later layers
    U(-sqrt(6/in)/w0, sqrt(6/in)/w0)."""

    def __init__(self, in_dim: int, out_dim: int, w0: float, first: bool):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(in_dim, out_dim)
        bound = 1.0 / in_dim if first else math.sqrt(6.0 / in_dim) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


class Siren(nn.Module):
    """SIREN network: ``n_hidden_layers + 1`` sine layers then a linear output layer (SIREN init)."""

    def __init__(self, in_dim: int, out_dim: int, cfg: SirenConfig | None = None):
        super().__init__()
        cfg = cfg or SirenConfig()
        layers: list[nn.Module] = [SineLayer(in_dim, cfg.width, cfg.w0_first or cfg.w0, first=True)]
        for _ in range(cfg.n_hidden_layers):
            layers.append(SineLayer(cfg.width, cfg.width, cfg.w0, first=False))
        last = nn.Linear(cfg.width, out_dim)
        bound = math.sqrt(6.0 / cfg.width) / cfg.w0
        with torch.no_grad():
            last.weight.uniform_(-bound, bound)
            last.bias.zero_()
        layers.append(last)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
