"""Import every method module so that each registers itself (see :mod:`inrecon.recon.registry`)."""

import inrecon.recon.classical.ct
import inrecon.recon.classical.mri
import inrecon.recon.inr.bilevel
import inrecon.recon.inr.imjense
import inrecon.recon.inr.ngp
import inrecon.recon.population.disinr
import inrecon.recon.population.meta
import inrecon.recon.population.strainer
import inrecon.recon.population.tune_disinr  # noqa: F401
