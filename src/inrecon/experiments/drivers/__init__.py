"""Bench drivers: one entry per experiment kind in :data:`DRIVERS`.

A driver is a typed config class (:mod:`inrecon.config` style: a docstring under every field, constraints and
choices in the annotations) and a function ``run(cfg, out, show_progress, log) -> Report``. The DisINR-paper
drivers live in :mod:`~inrecon.experiments.drivers.disinr` (shared parts in
:mod:`~inrecon.experiments.drivers.populations`); the Bilevel-paper ones in
:mod:`~inrecon.experiments.drivers.bilevel`, :mod:`~inrecon.experiments.drivers.transfer` and
:mod:`~inrecon.experiments.drivers.series`. :mod:`inrecon.experiments.bench` loads an experiment's JSON file
into the config of its kind and runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from inrecon.experiments.drivers import disinr
from inrecon.experiments.drivers.bilevel import BilevelTunedConfig, run_bilevel_tuned
from inrecon.experiments.drivers.quality import QualityConfig, run_quality
from inrecon.experiments.drivers.series import BilevelSeriesConfig, run_bilevel_series
from inrecon.experiments.drivers.transfer import BilevelTransferConfig, run_bilevel_transfer

__all__ = ["DRIVERS"]

DRIVERS: dict[str, tuple[type, Callable]] = {
    "ct_sparse_view": (disinr.CTSparseViewConfig, disinr.ct_sparse_view),
    "mri_undersampled": (disinr.MRIUndersampledConfig, disinr.mri_undersampled),
    "volume_fitting": (disinr.VolumeFittingConfig, disinr.volume_fitting),
    "ablation_freezing": (disinr.AblationFreezingConfig, disinr.ablation_freezing),
    "backbones": (disinr.BackbonesConfig, disinr.backbones),
    "pretrain_size": (disinr.PretrainSizeConfig, disinr.pretrain_size),
    "feature_pca": (disinr.FeaturePCAConfig, disinr.feature_pca),
    "bilevel_tuned": (BilevelTunedConfig, run_bilevel_tuned),
    "bilevel_transfer": (BilevelTransferConfig, run_bilevel_transfer),
    "bilevel_series": (BilevelSeriesConfig, run_bilevel_series),
    "quality": (QualityConfig, run_quality),
}
"""``{kind: (config class, run function)}``: the kinds an experiment file may name."""
