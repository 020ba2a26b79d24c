"""inrecon: physics-informed implicit neural representations for MRI and CT reconstruction.

The public API (each name is imported on first use, so ``import inrecon`` is cheap and changes nothing in the
process)::

    import inrecon

    scan = inrecon.load_scan("brain_af6.h5")                  # any supported format
    result = inrecon.reconstruct(scan, "ngp", steps=2000)    # any registered method, config overrides
    result.image, result.info["chosen_steps"]

    inrecon.METHODS                                          # every method, its config and what it can do
    inrecon.simulate_mri(image, n_coils=8, mask=mask)        # and simulate_ct(image, geometry, angles)
    inrecon.pretrain("disinr", scans, "disinr.safetensors")  # population pre-training from raw data
    inrecon.tune(scan, "ngp")                                # bilevel hyperparameter search

``docs/api.md`` documents the layers underneath (measurement model, engine, registry).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_scan": ("inrecon.data.io.load", "load_scan"),
    "write_scan": ("inrecon.data.io.hdf5", "write_scan"),
    "write_image": ("inrecon.data.io.images", "write_image"),
    "reconstruct": ("inrecon.recon.api", "reconstruct"),
    "run_method": ("inrecon.recon.api", "run_method"),
    "pretrain": ("inrecon.recon.api", "pretrain"),
    "tune": ("inrecon.recon.api", "tune"),
    "METHODS": ("inrecon.recon.methods", "METHODS"),
    "simulate_mri": ("inrecon.physics.simulate.mri", "simulate_mri"),
    "simulate_ct": ("inrecon.physics.simulate.ct", "simulate_ct"),
    "build_measurement": ("inrecon.physics.measurement", "build_measurement"),
    "evaluate": ("inrecon.metrics", "evaluate"),
    "InreconError": ("inrecon.errors", "InreconError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'inrecon' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
