"""benchmarks/disinr_ct.py: the pre-training population is acquired like the test scans unless
--pretrain-views / --pretrain-photons say otherwise (0 photons meaning noise-free, not 'unset')."""

from __future__ import annotations

import argparse

from tests.benchmark_scripts import load_script


def _args(**kw) -> argparse.Namespace:
    base = {"views": 60, "photons": 1e5, "pretrain_views": None, "pretrain_photons": None, "size": 128}
    return argparse.Namespace(**{**base, **kw})


def test_population_is_acquired_like_the_test_scans_by_default():
    pre = load_script("disinr_ct").population_acquisition(_args())
    assert (pre.views, pre.photons, pre.size) == (60, 1e5, 128)


def test_population_acquisition_overrides_views_and_noise_without_touching_the_test_scans():
    args = _args(pretrain_views=360, pretrain_photons=0.0)
    pre = load_script("disinr_ct").population_acquisition(args)
    assert (pre.views, pre.photons) == (360, 0.0)  # noise-free, not the test scans' 1e5
    assert (args.views, args.photons) == (60, 1e5)
