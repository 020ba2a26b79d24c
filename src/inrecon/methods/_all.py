"""Import every method module so that each registers itself (see :mod:`inrecon.methods.base`)."""

import contextlib
import importlib

for _name in (
    "classical_mri",
    "classical_ct",
    "scan",
    "imjense",
    "disinr",
    "strainer",
    "meta",
    "bilevel",
    "tune_disinr",
):
    # Modules land one by one; a missing one is simply not registered yet.
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(f"{__package__}.{_name}")
