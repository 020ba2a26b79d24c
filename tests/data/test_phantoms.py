"""Procedural phantoms: ranges, shapes, determinism per seed, distinct subjects, tissue orderings."""

from __future__ import annotations

import numpy as np
import pytest

from inrecon.data.phantoms import (
    BRAIN_CONTRASTS,
    body_ct_phantom,
    body_ct_volume,
    brain_phantom,
    hu_to_unit,
    population,
    shepp_logan,
)
from inrecon.errors import InreconError, ShapeError


def _check_range(img, shape):
    assert img.shape == tuple(shape) and img.dtype == np.float32
    assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0


@pytest.mark.parametrize("contrast", sorted(BRAIN_CONTRASTS))
def test_brain_range_shape_and_determinism(contrast):
    a = brain_phantom((96, 80), seed=3, contrast=contrast)
    _check_range(a, (96, 80))
    assert a.max() > 0.5 and a[0, 0] == 0.0 and a[-1, -1] == 0.0  # head inside, background at the corners
    np.testing.assert_array_equal(a, brain_phantom((96, 80), seed=3, contrast=contrast))


def test_brain_3d_and_middle_slice_matches_2d_away_from_lesions():
    vol = brain_phantom((15, 64, 64), seed=2)
    _check_range(vol, (15, 64, 64))
    assert vol[0].sum() < vol[7].sum() > vol[-1].sum()  # the head is widest in the middle
    mid = brain_phantom((64, 64), seed=2)
    assert np.mean(np.abs(mid - vol[7]) > 1e-5) < 0.02  # only the 2D lesions (centred on the slice) differ


def test_brain_subjects_are_distinct():
    imgs = [brain_phantom((64, 64), seed=s) for s in range(4)]
    for i in range(4):
        for j in range(i):
            assert np.mean(np.abs(imgs[i] - imgs[j])) > 0.02


@pytest.mark.parametrize(
    ("contrast", "order"),
    [("t1", ("wm", "gm", "csf")), ("t2", ("csf", "gm", "wm")), ("flair", ("gm", "wm", "csf"))],
)
def test_brain_contrast_orderings(contrast, order):
    t = BRAIN_CONTRASTS[contrast]
    assert t[order[0]] > t[order[1]] > t[order[2]]
    # the image itself: white matter dominates the brain; its histogram peak follows the table
    img = brain_phantom((128, 128), seed=1, contrast=contrast)
    hist, edges = np.histogram(img[img > 0.03], bins=50, range=(0, 1))
    peak = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    assert abs(peak - t["wm"]) < 0.12


def test_brain_t1_and_flair_differ_for_the_same_subject():
    a = brain_phantom((64, 64), seed=5, contrast="t1")
    b = brain_phantom((64, 64), seed=5, contrast="flair")
    assert np.mean(np.abs(a - b)) > 0.05
    assert np.array_equal(a > 0.02, b > 0.02) or np.mean((a > 0.02) != (b > 0.02)) < 0.02  # same anatomy


def test_brain_edges_are_antialiased():
    img = brain_phantom((128, 128), seed=0)
    levels = np.unique(np.round(img, 3))
    assert levels.size > 200  # partial-volume values, not a handful of tissue labels


def test_body_range_and_hu_values():
    img = body_ct_phantom((128, 128), seed=4)
    _check_range(img, (128, 128))
    assert img[0, 0] == 0.0  # air
    np.testing.assert_array_equal(img, body_ct_phantom((128, 128), seed=4))
    # fat (-100 HU), soft tissue (~40 HU), lung and bone are all present
    for lo, hi in ((0.02, 0.16), (0.55, 0.61), (0.68, 0.74)):
        assert np.mean((img > lo) & (img < hi)) > 0.01, (lo, hi)
    assert np.mean(img > 0.95) > 0.001  # cortical bone clipped to 1
    assert hu_to_unit(-100) == pytest.approx(700 / 1200) and hu_to_unit(-2000) == 0 and hu_to_unit(3000) == 1


def test_body_subjects_are_distinct():
    imgs = [body_ct_phantom((64, 64), seed=s) for s in range(4)]
    for i in range(4):
        for j in range(i):
            assert np.mean(np.abs(imgs[i] - imgs[j])) > 0.02


def test_body_volume_varies_smoothly_along_z():
    vol = body_ct_volume((21, 64, 64), seed=1)
    _check_range(vol, (21, 64, 64))
    step = np.mean(np.abs(np.diff(vol, axis=0)), axis=(1, 2))
    far = np.mean(np.abs(vol[0] - vol[-1]))
    assert step.max() < far  # neighbouring slices are closer than the two ends
    assert far > 0.03
    assert body_ct_phantom((21, 64, 64), seed=1).shape == (21, 64, 64)  # 3D shape delegates
    mid = body_ct_phantom((64, 64), seed=1)
    assert np.mean(np.abs(mid - vol[10]) > 1e-5) < 0.03  # the 2D slice is the z = 0 level


def test_population_distinct_deterministic_and_prefix_stable():
    a = population("brain", 3, (48, 48), seed=0, contrast="t2")
    assert len(a) == 3
    b = population("brain", 4, (48, 48), seed=0, contrast="t2")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = population("brain", 3, (48, 48), seed=1, contrast="t2")
    for x in a:
        for y in c:
            assert np.mean(np.abs(x - y)) > 0.01  # another population seed shares no subject
    body = population("body", 2, (8, 40, 40), seed=0)
    assert [v.shape for v in body] == [(8, 40, 40)] * 2
    assert np.mean(np.abs(body[0] - body[1])) > 0.01


def test_shepp_logan_values_and_orientation():
    img = shepp_logan((128, 128))
    _check_range(img, (128, 128))
    assert img[64, 64] == pytest.approx(0.2, abs=1e-6)  # brain between the small ellipses
    assert img[64, 4] == 0.0 and img[64, 20] == pytest.approx(1.0)  # background, skull (x = -0.69..-0.66)
    levels = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 1.0])
    assert np.all(np.min(np.abs(np.unique(img)[:, None] - levels), axis=1) < 1e-5)  # piecewise constant
    # the three small ellipses are at the bottom (y = -0.605): row ~ (1 + 0.605) / 2 * 128 = 103
    assert img[103, 64] == pytest.approx(0.3, abs=1e-6)


def test_shepp_logan_matches_scikit_image():
    data = pytest.importorskip("skimage.data")
    ref = data.shepp_logan_phantom()  # 400 x 400, modified Shepp-Logan in [0, 1]
    ours = shepp_logan(ref.shape)
    assert np.mean(np.abs(ours - ref) > 0.05) < 0.01


def test_bad_arguments():
    with pytest.raises(ShapeError, match="shape"):
        brain_phantom((64,))
    with pytest.raises(ShapeError, match="shape"):
        body_ct_volume((64, 64))
    with pytest.raises(ShapeError):
        shepp_logan((4, 64, 64))
    with pytest.raises(InreconError, match="contrast 'pd'"):
        brain_phantom((64, 64), contrast="pd")
    with pytest.raises(InreconError, match="seed"):
        brain_phantom((64, 64), seed=-1)
    with pytest.raises(InreconError, match="kind 'knee'"):
        population("knee", 2)
    with pytest.raises(InreconError, match="n=0"):
        population("brain", 0)
