"""benchmarks/error_bands.py: the error's power lands in the right ring, at the right k-space locations and on the
edges; a wrong case name is refused before any reconstruction."""

from __future__ import annotations

import numpy as np

from tests.benchmark_scripts import load_script, run_script


def _wave(shape, fy, fx):
    y, x = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return np.cos(2 * np.pi * (fy * y / shape[0] + fx * x / shape[1]))


def test_a_single_frequency_error_lands_in_its_ring_and_at_its_locations():
    eb = load_script("error_bands")
    shape = (64, 48)
    err = _wave(shape, 0, 18)  # 18 / 48 cycles per pixel = 0.75 of Nyquist: the 0.70-1.00 ring
    ref = np.zeros(shape)
    roi = np.ones(shape, bool)
    mask = np.zeros(shape, bool)
    mask[:, 48 // 2 + 18] = True  # acquire the column holding +18 only; its mirror -18 is missing
    out = eb.decompose(err, ref, roi, mask, share=0.15)
    assert out["bands"]["0.70-1.00"] > 0.999
    assert abs(sum(out["bands"].values()) - 1.0) < 1e-3
    acquired, missing = out["acquired_vs_missing"]["0.70-1.00"]
    assert acquired > 0 and missing > 0 and abs(out["error_at_acquired"] - 0.5) < 1e-6  # +k and -k equally
    assert out["acquired_share"] == round(float(mask.mean()), 4)


def test_the_edge_share_is_the_error_on_the_largest_gradients():
    eb = load_script("error_bands")
    ref = np.zeros((32, 32))
    ref[:, 16:] = 1.0  # one vertical edge
    roi = np.ones(ref.shape, bool)
    err = np.zeros(ref.shape)
    err[:, 15:17] = 1.0  # the error sits on the edge
    assert eb.decompose(err, ref, roi, None, share=0.15)["edges"] == 1.0
    err = np.zeros(ref.shape)
    err[:, 2] = 1.0  # far from it
    out = eb.decompose(err, ref, roi, None, share=0.15)
    assert out["edges"] == 0.0 and "acquired_vs_missing" not in out


def test_unknown_case_is_refused_with_the_choices():
    out = run_script("error_bands", "--case", "no-such-case", check=False)
    assert out.returncode != 0 and "no-such-case" in out.stderr and "brain8ch" in out.stderr
