"""The registry of every reconstruction method: one entry per method.

Adding a method is one module (a config dataclass, ``run(scan, cfg, ctx) -> ReconResult`` and a
:class:`~inrecon.recon.registry.MethodSpec`) plus one line in the list below.
"""

from __future__ import annotations

from inrecon.recon.classical import ct as classical_ct
from inrecon.recon.classical import grappa, ploraks
from inrecon.recon.classical import mri as classical_mri
from inrecon.recon.inr import bilevel, imjense, ngp, saxnerf
from inrecon.recon.population import disinr, meta, strainer
from inrecon.recon.registry import Registry
from inrecon.recon.series import SERIES

__all__ = ["METHODS"]

METHODS = Registry(
    [
        classical_mri.ZERO_FILLED,
        classical_mri.CG_SENSE,
        classical_mri.L1_WAVELET,
        classical_mri.TV,
        classical_mri.PNP,
        grappa.GRAPPA,
        ploraks.PLORAKS,
        classical_ct.FBP,
        classical_ct.SART,
        classical_ct.SIRT,
        classical_ct.TV_CT,
        classical_ct.PNP_CT,
        ngp.NGP,
        imjense.IMJENSE,
        saxnerf.SAXNERF,
        bilevel.BILEVEL,
        disinr.DISINR,
        strainer.STRAINER,
        meta.META,
        SERIES,
    ]
)
"""Every method by name (see :class:`~inrecon.recon.registry.Registry` for aliases such as ``tv`` for CT)."""
