"""benchmarks/independent_scans.py: its Cartesian MRI writer, read back through the documented file format."""

from __future__ import annotations

import numpy as np
import pytest

from inrecon import load_scan
from inrecon.data.paths import data_root
from tests.benchmark_scripts import load_script

pytest.importorskip("sigpy")
h5py = pytest.importorskip("h5py")


def test_brain_magnitude_case_is_the_brain_image_made_real(tmp_path):
    if not (data_root() / "mri" / "brain8ch_bart" / "img.cfl").exists():
        pytest.skip(f"BART's brain image is not in {data_root()} (set INRECON_DATA)")
    script = load_script("independent_scans")
    for case in ("brain-af6", "brainmag-af6"):
        script.CASES[case](tmp_path / f"{case}.h5")
    with h5py.File(tmp_path / "brain-af6.h5") as a, h5py.File(tmp_path / "brainmag-af6.h5") as b:
        # the same magnitude reference and acquisition; only the image's phase differs
        assert np.allclose(a["target"][()], b["target"][()], atol=1e-6)
        assert np.array_equal(a["mask"][()], b["mask"][()])
        assert not np.allclose(a["kspace"][()], b["kspace"][()])
        target = b["target"][()]
    scan = load_scan(tmp_path / "brainmag-af6.h5")
    assert scan.modality == "mri" and scan.sens_maps is None and scan.kspace.shape[0] == 12
    assert np.array_equal(scan.target.abs().numpy(), target)


def test_population_models_are_checked_before_any_work(tmp_path):
    from inrecon.errors import InreconError
    from inrecon.recon.methods import METHODS

    script = load_script("independent_scans")
    model = tmp_path / "disinr_ct.safetensors"
    model.write_bytes(b"")
    assert script.parse_models([f"ct={model}"]) == {"ct": model}
    for bad, words in (
        (["ct"], "MODALITY=PATH"),
        ([f"pet={model}"], "MODALITY=PATH"),
        ([f"ct={tmp_path / 'missing'}"], "no such file"),
        ([f"ct={model}", f"ct={model}"], "two ct models"),
    ):
        with pytest.raises(InreconError, match=words):
            script.parse_models(bad)
    disinr, ngp = METHODS.resolve("disinr", "ct"), METHODS.resolve("ngp", "ct")
    assert script.model_for(disinr, "ct", {"ct": model}) == model
    assert script.model_for(ngp, "ct", {}) is None
    with pytest.raises(InreconError, match="--model mri=PATH"):
        script.model_for(disinr, "mri", {"ct": model})
    assert script.case_methods("fan60", None) == ["fbp", "sart", "tv", "ngp"]
    assert script.case_methods("brain-af6", ["tv", "disinr"]) == ["tv", "disinr"]
    assert script.case_modality("par90") == "ct" and script.case_modality("brain-radial48") == "mri"
