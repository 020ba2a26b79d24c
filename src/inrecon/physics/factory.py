"""Build the forward operator a scan describes."""

from __future__ import annotations

import torch

from inrecon.data.scans import CTScan, MRIScan, VolumeScan
from inrecon.errors import InreconError
from inrecon.physics.operator import Identity, LinearOperator

__all__ = ["build_operator"]


def build_operator(scan, maps: torch.Tensor | None = None, coil_combine: bool = True) -> LinearOperator:
    """The forward model of ``scan`` on the scan's device.

    MRI: SENSE with ``maps`` (else ``scan.sens_maps``, else coil-by-coil Fourier without combination;
    ``coil_combine=False`` always gives the coil-by-coil operator, domain ``(C, *image_shape)``):
    Cartesian :class:`~inrecon.physics.mri.SenseOp` or non-Cartesian
    :class:`~inrecon.physics.nufft.NufftSenseOp`. CT: :class:`~inrecon.physics.ct.CTProjector`. Volume: identity.
    """
    if isinstance(scan, MRIScan):
        maps = (scan.sens_maps if maps is None else maps) if coil_combine else None
        if scan.is_cartesian:
            from inrecon.physics.mri import SenseOp

            if maps is None:
                return SenseOp(None, scan.mask, image_shape=scan.image_shape, n_coils=scan.n_coils)
            return SenseOp(maps, scan.mask)
        from inrecon.physics.nufft import NufftSenseOp

        return NufftSenseOp(maps, scan.trajectory, scan.image_shape, n_coils=scan.n_coils)
    if isinstance(scan, CTScan):
        from inrecon.physics.ct import CTProjector

        return CTProjector(scan.geometry, scan.angles).to(scan.sinogram.device)
    if isinstance(scan, VolumeScan):
        return Identity(tuple(scan.volume.shape))
    raise InreconError(f"no forward model for {type(scan).__name__}", "pass an MRIScan, CTScan or VolumeScan")
