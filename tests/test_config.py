"""Config validation (issue 14 item 4): every number of every method, pre-training, tuner and bench config
has a range, and a value outside it -- zero widths, NaN, infinity, fractions for counts -- is refused by
:func:`inrecon.config.build_config` before any work, naming the key."""

from __future__ import annotations

import json
import math
import re

import pytest

from inrecon.cli import main
from inrecon.config import build_config, describe_config
from inrecon.errors import InreconError
from inrecon.recon.methods import METHODS

# Numbers that need no range: seeds (any integer seeds a generator) and SNRs in dB (any real value).
UNCONSTRAINED = re.compile(r"(^|\.|_)seed$|snr_db$")


def _config_classes() -> dict[str, type]:
    from inrecon.experiments.drivers import DRIVERS
    from inrecon.tuning.run import TunerConfig

    out = {"TunerConfig": TunerConfig}
    for spec in METHODS.values():
        out[spec.config.__name__] = spec.config
        if spec.pretrain is not None:
            out[spec.pretrain.config.__name__] = spec.pretrain.config
    for kind, (cls, _run) in DRIVERS.items():
        out[f"bench:{kind}"] = cls
    return out


def _bare_number(type_text: str) -> bool:
    """Whether a type as :func:`describe_config` writes it (``int > 0 | None``, ``tuple[float > 0]``) has an
    int or float alternative without a range."""
    parts = re.split(r" \| |\[|\]", type_text)
    return any(p.strip() in ("int", "float") for p in parts)


def test_every_number_of_every_config_has_a_range():
    missing = [
        f"{name}.{row['key']}"
        for name, cls in _config_classes().items()
        for row in describe_config(cls)
        if _bare_number(row["type"]) and not UNCONSTRAINED.search(row["key"])
    ]
    assert not missing, f"numbers without a range: {missing}"


def _bad_values(type_text: str) -> list[str]:
    """Values the ``inrecon methods --json`` type text says are out of range (plus NaN and infinity)."""
    bad = ["nan", "inf", "-inf"]
    if type_text.startswith("int"):
        bad.append("1.5")
    if "> 0" in type_text:
        bad += ["0", "-1"]
    elif ">= 0" in type_text:
        bad.append("-1")
    m = re.search(r"in ([\[(])(-?[0-9.]+), (-?[0-9.]+)([\])])", type_text)
    if m:
        lo, hi = float(m.group(2)), float(m.group(3))
        bad += [repr(lo - 1.0), repr(hi + 1.0)]
        if m.group(1) == "(":
            bad.append(repr(lo))
        if m.group(4) == ")":
            bad.append(repr(hi))
    return bad


def _method_rows(name: str, capsys) -> list[dict]:
    assert main(["methods", name, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["keys"]


@pytest.mark.parametrize("name", METHODS.names())
def test_out_of_range_values_of_each_method_are_refused(name, capsys):
    spec = METHODS.resolve(name)
    rows = [r for r in _method_rows(name, capsys) if re.match(r"(int|float)\b", r["type"])]
    assert rows or name in ("zf", "fbp"), f"{name} lists no numeric keys"
    for row in rows:
        if UNCONSTRAINED.search(row["key"]):
            continue
        for bad in _bad_values(row["type"]):
            with pytest.raises(InreconError, match=re.escape(row["key"].rsplit(".", 1)[-1])):
                build_config(spec.config, {row["key"]: bad})


@pytest.mark.parametrize(
    "key,value",
    [("mlp_width", "0"), ("n_levels", "0"), ("lr", "inf"), ("log2_table_size", "40"), ("min_chosen", "1.5")],
)
def test_the_reported_silent_values_are_refused(key, value):
    with pytest.raises(InreconError, match=key):
        build_config(METHODS.resolve("ngp").config, {key: value})
    with pytest.raises(InreconError, match="lam"):
        build_config(METHODS.resolve("l1wavelet").config, {"lam": "nan"})


@pytest.mark.parametrize("name", METHODS.pretrainers())
def test_out_of_range_values_of_each_pretraining_are_refused(name):
    cls = METHODS.resolve(name).pretrain.config
    for row in describe_config(cls):
        if not re.match(r"(int|float)\b", row["type"]) or UNCONSTRAINED.search(row["key"]):
            continue
        for bad in _bad_values(row["type"]):
            with pytest.raises(InreconError, match=re.escape(row["key"].rsplit(".", 1)[-1])):
                build_config(cls, {row["key"]: bad})


def test_defaults_pass_their_own_ranges():
    for cls in _config_classes().values():
        build_config(cls)  # validates every default against its range
    assert math.isfinite(build_config(METHODS.resolve("ngp").config).stop.min_chosen)
