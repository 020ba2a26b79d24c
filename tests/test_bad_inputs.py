"""Bad input to every command: exit status 2, one line on stderr naming the problem and the fix, no traceback,
and no user file modified or deleted -- all before any long computation (each case takes well under a second).

The command line runs in-process (``inrecon.cli.main``): an unexpected exception would fail the test with its
traceback. Paths are written ``{name}`` and filled from the ``files`` fixture.
"""

from __future__ import annotations

import os

import pytest

from inrecon.cli import main
from tests.cli.tiny_files import (
    checksums,
    ct_file,
    hparams_file,
    mri_file,
    one_error_line,
    series_file,
    transposed_mri_file,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The user's files (never to be modified): scans, a text file, a folder, configs."""
    d = tmp_path_factory.mktemp("user")
    mri_file(d / "mri.h5")
    mri_file(d / "notarget.h5", target=False)
    mri_file(d / "one_coil.h5", n_coils=1)
    ct_file(d / "ct.h5")
    ct_file(d / "ct_degrees.h5", degrees=True)
    transposed_mri_file(d / "transposed.h5")
    series_file(d / "series.h5")
    hparams_file(d / "hp.json")
    (d / "trunc.h5").write_bytes((d / "mri.h5").read_bytes()[:2000])
    (d / "notes.txt").write_text("not a scan\n")
    (d / "bad.json").write_text("{not json")
    (d / "list.json").write_text("[1, 2]")
    (d / "o.h5.json").write_text("{}")
    (d / "m.safetensors").write_bytes(b"not a model")
    (d / "folder").mkdir()
    (d / "dir.h5").mkdir()
    (d / "empty_dir").mkdir()
    os.symlink(d / "mri.h5", d / "link.h5")
    return d


R = ["recon", "--method"]
CASES = [
    # --- info ---------------------------------------------------------------------------------------------------
    ("info-missing", ["info", "{d}/nope.h5"], "does not exist"),
    ("info-truncated", ["info", "{d}/trunc.h5"], "cannot read"),
    ("info-text-file", ["info", "{d}/notes.txt"], "notes.txt"),
    ("info-empty-folder", ["info", "{d}/empty_dir"], "empty_dir"),
    ("info-no-file", ["info"], "required"),
    ("info-max-memory-tiny", ["info", "{d}/mri.h5", "--max-memory", "1K"], "needs about"),
    ("info-max-memory-garbage", ["info", "{d}/mri.h5", "--max-memory", "lots"], "not understood"),
    ("info-degrees", ["info", "{d}/ct_degrees.h5"], "radians expected"),
    # --- simulate -----------------------------------------------------------------------------------------------
    ("sim-txt-output", ["simulate", "--size", "32", "32", "-o", "{w}/x.txt"], "HDF5"),
    ("sim-empty-output", ["simulate", "--size", "32", "32", "-o", ""], "HDF5"),
    ("sim-output-is-folder", ["simulate", "--size", "32", "32", "-o", "{d}/dir.h5"], "existing folder"),
    ("sim-parent-is-file", ["simulate", "--size", "32", "32", "-o", "{d}/notes.txt/x.h5"], "is a file"),
    ("sim-unwritable", ["simulate", "--size", "32", "32", "-o", "/proc/inrecon_x.h5"], "not writable"),
    ("sim-output-is-input", ["simulate", "--image", "{d}/mri.h5", "-o", "{d}/mri.h5"], "is the input"),
    (
        "sim-ct-zero-views",
        ["simulate", "--modality", "ct", "--size", "32", "32", "--views", "0", "-o", "{w}/c.h5"],
        "--views",
    ),
    ("sim-zero-coils", ["simulate", "--size", "32", "32", "--coils", "0", "-o", "{w}/x.h5"], "--coils"),
    ("sim-huge-2d", ["simulate", "--size", "100000", "100000", "-o", "{w}/x.h5"], "needs about"),
    ("sim-huge-16k", ["simulate", "--size", "16384", "16384", "-o", "{w}/x.h5"], "needs about"),
    ("sim-huge-3d", ["simulate", "--size", "1024", "1024", "1024", "-o", "{w}/x.h5"], "needs about"),
    ("sim-huge-coils", ["simulate", "--coils", "100000", "-o", "{w}/x.h5"], "needs about"),
    ("sim-af-1", ["simulate", "--size", "32", "32", "--af", "1", "-o", "{w}/x.h5"], "--pattern full"),
    ("sim-af-nan", ["simulate", "--size", "32", "32", "--af", "nan", "-o", "{w}/x.h5"], "--af"),
    (
        "sim-zero-detectors",
        ["simulate", "--modality", "ct", "--detectors", "0", "-o", "{w}/x.h5"],
        "--detectors",
    ),
    ("sim-empty-axis", ["simulate", "--size", "0", "32", "-o", "{w}/x.h5"], "--size"),
    ("sim-1d-size", ["simulate", "--size", "32", "-o", "{w}/x.h5"], "--size"),
    (
        "sim-negative-photons",
        ["simulate", "--modality", "ct", "--photons", "-1", "-o", "{w}/x.h5"],
        "--photons",
    ),
    ("sim-zero-frames", ["simulate", "--frames", "0", "-o", "{w}/x.h5"], "--frames"),
    ("sim-ct-series", ["simulate", "--frames", "3", "--modality", "ct", "-o", "{w}/x.h5"], "--frames"),
    ("sim-missing-image", ["simulate", "--image", "{d}/nope.npy", "-o", "{w}/x.h5"], "nope.npy"),
    (
        "sim-zero-pixel-size",
        ["simulate", "--modality", "ct", "--pixel-size", "0", "-o", "{w}/x.h5"],
        "--pixel-size",
    ),
    ("sim-source-inside", ["simulate", "--modality", "ct", "--sod", "10", "-o", "{w}/x.h5"], "fan geometry"),
    ("sim-ct-3d", ["simulate", "--modality", "ct", "--size", "8", "8", "8", "-o", "{w}/x.h5"], "2D"),
    (
        "sim-max-memory",
        ["simulate", "--size", "32", "32", "--max-memory", "1K", "-o", "{w}/x.h5"],
        "--max-memory",
    ),
    ("sim-bad-pattern", ["simulate", "--pattern", "zigzag", "-o", "{w}/x.h5"], "invalid choice"),
    # --- recon --------------------------------------------------------------------------------------------------
    ("recon-unknown-method", [*R, "nosuch", "{d}/mri.h5", "-o", "{w}/o.h5"], "unknown method"),
    ("recon-wrong-modality", [*R, "fbp", "{d}/mri.h5", "-o", "{w}/o.h5"], "reconstructs ct"),
    ("recon-missing-input", [*R, "zf", "{d}/nope.h5", "-o", "{w}/o.h5"], "does not exist"),
    ("recon-bad-suffix", [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.xyz"], "unsupported extension"),
    ("recon-empty-output", [*R, "zf", "{d}/mri.h5", "-o", ""], "empty"),
    ("recon-set-no-equals", [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "noequals"], "key=value"),
    (
        "recon-unknown-key",
        [*R, "cgsense", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "bogus=1"],
        "unknown config",
    ),
    ("recon-needs-model", [*R, "disinr", "{d}/mri.h5", "-o", "{w}/o.h5"], "pre-trained model"),
    ("recon-output-is-input", [*R, "zf", "{d}/mri.h5", "-o", "{d}/mri.h5"], "is the input"),
    ("recon-output-via-dotdot", [*R, "zf", "{d}/mri.h5", "-o", "{d}/folder/../mri.h5"], "is the input"),
    ("recon-output-via-symlink", [*R, "zf", "{d}/link.h5", "-o", "{d}/mri.h5"], "is the input"),
    ("recon-output-is-symlink", [*R, "zf", "{d}/mri.h5", "-o", "{d}/link.h5"], "is the input"),
    (
        "recon-sidecar-is-input",
        [*R, "zf", "{d}/mri.h5", "-o", "{d}/o.h5", "--config", "{d}/o.h5.json"],
        "is the input",
    ),
    ("recon-output-is-folder", [*R, "zf", "{d}/mri.h5", "-o", "{d}/dir.h5"], "existing folder"),
    ("recon-parent-is-file", [*R, "zf", "{d}/mri.h5", "-o", "{d}/notes.txt/o.h5"], "is a file"),
    ("recon-unwritable", [*R, "zf", "{d}/mri.h5", "-o", "/proc/inrecon_o.h5"], "not writable"),
    (
        "recon-hu-window-reversed",
        [*R, "fbp", "{d}/ct.h5", "-o", "{w}/o.dcm", "--hu-window", "400", "-800"],
        "LO < HI",
    ),
    (
        "recon-checkpoint-dir-file",
        [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--checkpoint-dir", "{d}/notes.txt"],
        "existing file",
    ),
    ("recon-device-tpu", [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--device", "tpu"], "not a device"),
    ("recon-mlp-width-0", [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "mlp_width=0"], "> 0"),
    ("recon-n-levels-0", [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "n_levels=0"], "> 0"),
    ("recon-lam-nan", [*R, "l1wavelet", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "lam=nan"], "lam"),
    ("recon-lr-inf", [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "lr=inf"], "finite"),
    (
        "recon-table-2-40",
        [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "log2_table_size=40"],
        "log2_table_size",
    ),
    (
        "recon-fractional-steps",
        [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "steps=1.5"],
        "whole number",
    ),
    (
        "recon-min-chosen-2",
        [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "min_chosen=2"],
        "min_chosen",
    ),
    (
        "recon-config-missing",
        [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--config", "{d}/nope.json"],
        "does not exist",
    ),
    ("recon-config-bad-json", [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--config", "{d}/bad.json"], "JSON"),
    (
        "recon-config-list",
        [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--config", "{d}/list.json"],
        "JSON object",
    ),
    (
        "recon-hparams-missing",
        [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--hparams", "{d}/nope.json"],
        "does not exist",
    ),
    ("recon-ct-degrees", [*R, "sart", "{d}/ct_degrees.h5", "-o", "{w}/o.h5"], "radians expected"),
    ("recon-fbp-degrees", [*R, "fbp", "{d}/ct_degrees.h5", "-o", "{w}/o.h5"], "radians expected"),
    ("recon-transposed-kspace", [*R, "zf", "{d}/transposed.h5", "-o", "{w}/o.h5"], "transposed"),
    ("recon-transposed-ngp", [*R, "cgsense", "{d}/transposed.h5", "-o", "{w}/o.h5"], "transposed"),
    ("recon-max-memory", [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--max-memory", "1K"], "needs about"),
    ("recon-ngp-memory", [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--max-memory", "2M"], "needs about"),
    (
        "recon-max-memory-unit",
        [*R, "zf", "{d}/mri.h5", "-o", "{w}/o.h5", "--max-memory", "8Q"],
        "not understood",
    ),
    ("recon-batch-0", [*R, "ngp", "{d}/mri.h5", "-o", "{w}/o.h5", "--set", "batch_size=0"], "batch_size"),
    ("recon-no-output", [*R, "zf", "{d}/mri.h5"], "required"),
    # --- metrics ------------------------------------------------------------------------------------------------
    ("metrics-missing-recon", ["metrics", "{d}/nope.npy", "--reference", "{d}/mri.h5"], "nope.npy"),
    ("metrics-missing-reference", ["metrics", "{d}/mri.h5", "--reference", "{d}/nope.h5"], "nope.h5"),
    ("metrics-no-target", ["metrics", "{d}/mri.h5", "--reference", "{d}/notarget.h5"], "target"),
    (
        "metrics-missing-roi",
        ["metrics", "{d}/mri.h5", "--reference", "{d}/mri.h5", "--roi", "{d}/nope.npy"],
        "nope.npy",
    ),
    ("metrics-text-recon", ["metrics", "{d}/notes.txt", "--reference", "{d}/mri.h5"], "notes.txt"),
    # --- pretrain -----------------------------------------------------------------------------------------------
    (
        "pretrain-no-pretraining",
        ["pretrain", "--method", "zf", "--data", "{d}/mri.h5", "-o", "{w}/m.safetensors"],
        "invalid choice",
    ),
    (
        "pretrain-bad-suffix",
        ["pretrain", "--method", "disinr", "--data", "{d}/mri.h5", "-o", "{w}/m.pt"],
        ".safetensors",
    ),
    (
        "pretrain-missing-data",
        ["pretrain", "--method", "disinr", "--data", "{d}/nope.h5", "-o", "{w}/m.safetensors"],
        "does not exist",
    ),
    (
        "pretrain-unknown-key",
        [
            "pretrain",
            "--method",
            "disinr",
            "--data",
            "{d}/mri.h5",
            "-o",
            "{w}/m.safetensors",
            "--set",
            "nosuch=1",
        ],
        "unknown config",
    ),
    (
        "pretrain-zero-steps",
        [
            "pretrain",
            "--method",
            "meta",
            "--data",
            "{d}/mri.h5",
            "-o",
            "{w}/m.safetensors",
            "--set",
            "outer_steps=0",
        ],
        "> 0",
    ),
    (
        "pretrain-checkpoint-file",
        [
            "pretrain",
            "--method",
            "disinr",
            "--data",
            "{d}/mri.h5",
            "-o",
            "{w}/m.safetensors",
            "--checkpoint-dir",
            "{d}/notes.txt",
        ],
        "existing file",
    ),
    (
        "pretrain-device-tpu",
        [
            "pretrain",
            "--method",
            "disinr",
            "--data",
            "{d}/mri.h5",
            "-o",
            "{w}/m.safetensors",
            "--device",
            "tpu",
        ],
        "not a device",
    ),
    (
        "pretrain-output-is-data",
        ["pretrain", "--method", "disinr", "--data", "{d}/m.safetensors", "-o", "{d}/m.safetensors"],
        "is the input",
    ),
    # --- tune ---------------------------------------------------------------------------------------------------
    ("tune-bad-suffix", ["tune", "{d}/mri.h5", "-o", "{w}/h.txt"], ".json"),
    (
        "tune-output-is-input",
        ["tune", "{d}/mri.h5", "-o", "{d}/hp.json", "--model", "{d}/hp.json"],
        "is the input",
    ),
    ("tune-log-is-input", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--log", "{d}/mri.h5"], "is the input"),
    ("tune-zero-steps", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--steps", "0"], "> 0"),
    ("tune-lr-inf", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--set", "lr=inf"], "finite"),
    ("tune-missing-input", ["tune", "{d}/nope.h5", "-o", "{w}/h.json"], "does not exist"),
    ("tune-wrong-modality", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--method", "fbp"], "reconstructs ct"),
    ("tune-oracle-no-target", ["tune", "{d}/notarget.h5", "-o", "{w}/h.json", "--oracle"], "target"),
    ("tune-negative-random", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--random", "-1"], "n_random"),
    ("tune-device-tpu", ["tune", "{d}/mri.h5", "-o", "{w}/h.json", "--device", "tpu"], "not a device"),
    # --- recon-series -------------------------------------------------------------------------------------------
    ("series-bad-suffix", ["recon-series", "{d}/series.h5", "-o", "{w}/f.png"], "unsupported extension"),
    ("series-output-is-input", ["recon-series", "{d}/series.h5", "-o", "{d}/series.h5"], "is the input"),
    ("series-not-a-series", ["recon-series", "{d}/mri.h5", "-o", "{w}/f.npy"], "mri"),
    ("series-zero-steps", ["recon-series", "{d}/series.h5", "-o", "{w}/f.npy", "--steps-first", "0"], "> 0"),
    (
        "series-bad-mode",
        ["recon-series", "{d}/series.h5", "-o", "{w}/f.npy", "--mode", "bogus"],
        "invalid choice",
    ),
    (
        "series-unknown-key",
        ["recon-series", "{d}/series.h5", "-o", "{w}/f.npy", "--set", "nosuch=1"],
        "unknown config",
    ),
    # --- bench --------------------------------------------------------------------------------------------------
    ("bench-unknown", ["bench", "nosuch", "-o", "{w}/b"], "unknown bench experiment"),
    (
        "bench-unknown-key",
        ["bench", "volume_fitting", "--set", "nosuchkey=3", "-o", "{w}/b"],
        "unknown config key",
    ),
    ("bench-zero-test", ["bench", "volume_fitting", "--set", "n_test=0", "-o", "{w}/b"], "> 0"),
    ("bench-output-is-file", ["bench", "volume_fitting", "--quick", "-o", "{d}/notes.txt"], "existing file"),
    ("bench-set-no-equals", ["bench", "volume_fitting", "--set", "noequals", "-o", "{w}/b"], "key=value"),
    ("bench-bad-list", ["bench", "ct_sparse_view", "--set", "views=[0]", "-o", "{w}/b"], "> 0"),
]


@pytest.mark.parametrize("args,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(args, needle, data, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    argv = [a.format(d=data, w=work) for a in args]
    before, before_work = checksums(data), checksums(work)
    try:
        code = main(argv)
    except SystemExit as exc:  # a usage error (argparse)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    line = one_error_line(err)
    assert needle.lower() in line.lower(), line
    assert checksums(data) == before, "a user file was modified, created or deleted"
    assert checksums(work) == before_work, "something was written before the error"


def test_the_table_covers_every_command_with_60_cases():
    commands = {c[1][0] for c in CASES}
    assert commands >= {"info", "simulate", "recon", "metrics", "pretrain", "tune", "recon-series", "bench"}
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)
