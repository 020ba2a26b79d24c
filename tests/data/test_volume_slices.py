"""benchmarks/volume_slices.py: slices of a NIfTI volume come out in the documented orientation whatever the
file's voxel order, and the stack is the command line's canvas, block and scale."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.benchmark_scripts import load_script, run_script


def _module():
    return load_script("volume_slices")


def _run(*args: str, check: bool = True):
    return run_script("volume_slices", *args, check=check)


def _ras_volume() -> np.ndarray:
    """(x, y, z) = (10, 12, 14) in RAS+: a marker at the superior end of z and at the right end of x."""
    vol = np.ones((10, 12, 14), dtype=np.float32)
    vol[:, :, -2:] = 5.0  # superior
    vol[-1, :, :] = 3.0  # right (x grows to the right in RAS+)
    return vol


@pytest.mark.parametrize("lps", [False, True])
def test_coronal_slice_has_superior_up_in_either_voxel_order(tmp_path, lps):
    vol, affine = _ras_volume(), np.eye(4)
    if lps:  # the same object stored with x and y reversed (an LPS voxel order)
        vol, affine = vol[::-1, ::-1, :].copy(), np.diag([-1.0, -1.0, 1.0, 1.0])
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    out = tmp_path / "s.npy"
    res = _run(
        str(path),
        "--axis",
        "coronal",
        "--range",
        "3",
        "8",
        "--count",
        "2",
        "--canvas",
        "16",
        "12",
        "--block",
        "2",
        "--output",
        str(out),
    )
    info = json.loads(res.stdout)
    stack = np.load(out)
    assert info["slices"] == [3, 8] and stack.shape == (2, 8, 6) == tuple(info["shape"])
    assert stack.dtype == np.float32 and np.allclose(stack.max((1, 2)), 1.0)
    img = stack[0]
    # rows: superior first (the canvas pads 1 row of zeros above the 14 z-rows; block 2 averages it in)
    assert img[0].mean() > img[3].mean() > 0
    # columns: x across, the right marker (3.0) in the last column with content, left side plain (1.0)
    assert img[3, -1] > img[3, 1]


def test_fit_canvas_pads_and_crops_about_the_centre():
    mod = _module()
    img = np.arange(6.0).reshape(2, 3)
    out = mod.fit_canvas(img, (4, 1))
    assert out.shape == (4, 1) and out[:, 0].tolist() == [0.0, 1.0, 4.0, 0.0]


def test_an_out_of_range_index_is_refused_before_writing(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(_ras_volume(), np.eye(4)), str(path))
    out = tmp_path / "s.npy"
    res = _run(
        str(path),
        "--axis",
        "axial",
        "--range",
        "0",
        "14",
        "--canvas",
        "10",
        "12",
        "--output",
        str(out),
        check=False,
    )
    assert res.returncode != 0 and "outside 0..13" in res.stderr and not out.exists()


def test_randomised_variant_is_seeded_bounded_and_the_identity_at_zero_strength():
    mod = _module()
    yy, xx = np.mgrid[:160, :128]
    img = 3.0 * (((yy - 80) / 60.0) ** 2 + ((xx - 64) / 45.0) ** 2 < 1)  # an ellipse, maximum 3
    same = mod.randomised_variant(
        img, np.random.default_rng(0), rotate=0, scale=0, deform=0, gamma=1.0, bias=0
    )
    assert np.allclose(same, img / 3.0)
    a = mod.randomised_variant(img, np.random.default_rng(5))
    b = mod.randomised_variant(img, np.random.default_rng(5))
    c = mod.randomised_variant(img, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.shape == img.shape and a.min() >= 0 and a.max() <= 1.0 + 0.15 + 1e-9
    # a deformation of at most a few pixels: the ellipse stays where it was, not smeared over the canvas
    inside, moved = img > 0, a > 0.3
    dice = 2 * (inside & moved).sum() / (inside.sum() + moved.sum())
    assert 0.85 < dice < 0.999 and not np.allclose(a, img / 3.0, atol=0.05)
    with pytest.raises(ValueError, match="empty"):
        mod.randomised_variant(np.zeros((4, 4)), np.random.default_rng(0))


def test_variants_follow_each_slice_in_the_stack(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(_ras_volume(), np.eye(4)), str(path))
    out = tmp_path / "s.npy"
    common = [str(path), "--axis", "axial", "--range", "2", "9", "--count", "2", "--canvas", "10", "12"]
    res = _run(*common, "--variants", "2", "--seed", "3", "--output", str(out))
    stack = np.load(out)
    assert json.loads(res.stdout)["variants"] == 2 and stack.shape == (6, 10, 12)
    plain = tmp_path / "p.npy"
    _run(*common, "--output", str(plain))
    base = np.load(plain)
    assert np.array_equal(stack[0], base[0]) and np.array_equal(stack[3], base[1])
    assert not np.allclose(stack[1], stack[0]) and np.allclose(stack.max((1, 2)), 1.0)
    bad = _run(*common, "--gamma", "0.5", "--output", str(tmp_path / "b.npy"), check=False)
    assert bad.returncode != 0 and "--gamma" in bad.stderr and not (tmp_path / "b.npy").exists()
