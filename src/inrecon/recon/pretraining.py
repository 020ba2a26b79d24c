"""Registry of population pre-training methods for ``inrecon pretrain``.

Each entry maps a method name to its pre-training config dataclass and a function
``fn(scans, cfg, output, *, names, show_progress, checkpoint_dir) -> Path`` writing a model file. The matching
test-time method (``inrecon recon --method NAME --model MODEL``) is registered in :mod:`inrecon.recon.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inrecon.errors import InreconError

__all__ = ["PRETRAINERS", "Pretrainer", "get_pretrainer"]


@dataclass
class Pretrainer:
    name: str
    config_cls: type
    fn: Callable
    distributed: bool
    description: str


def _registry() -> dict[str, Pretrainer]:
    from inrecon.recon.population.disinr import DisINRPretrainConfig, pretrain_disinr
    from inrecon.recon.population.meta import MetaPretrainConfig, pretrain_meta
    from inrecon.recon.population.strainer import StrainerPretrainConfig, pretrain_strainer

    return {
        "disinr": Pretrainer(
            "disinr",
            DisINRPretrainConfig,
            pretrain_disinr,
            True,
            "shared encoder-decoder + one encoder per subject (DisINR Algorithm 1)",
        ),
        "strainer": Pretrainer(
            "strainer",
            StrainerPretrainConfig,
            pretrain_strainer,
            True,
            "shared trunk + one head per subject (STRAINER)",
        ),
        "meta": Pretrainer(
            "meta",
            MetaPretrainConfig,
            pretrain_meta,
            False,
            "Reptile / first-order MAML initialisation of the NGP network",
        ),
    }


PRETRAINERS = ("disinr", "strainer", "meta")


def get_pretrainer(name: str) -> Pretrainer:
    reg = _registry()
    if name not in reg:
        raise InreconError(
            f"unknown pre-training method {name!r}", f"choose one of: {', '.join(sorted(reg))}"
        )
    return reg[name]
