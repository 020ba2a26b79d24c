"""The shape of the code: layers enforced by import-linter, no import cycles or private names borrowed across
modules, one registry that takes a new method as one file plus one entry, and a cheap ``import inrecon``."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "inrecon"


def test_layer_contracts_hold():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([exe], capture_output=True, text=True, cwd=SRC.parents[1], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" in proc.stdout and "0 broken" in proc.stdout


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("inrecon"):
            out.append((node.module, [a.name for a in node.names]))
    return out


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def test_no_private_names_imported_across_modules():
    bad = []
    for f in SRC.rglob("*.py"):
        for module, names in _imports(f):
            if module != _module_name(f):
                bad += [
                    f"{_module_name(f)} <- {module}.{n}"
                    for n in names
                    if n.startswith("_") and not n.endswith("__")
                ]
    assert bad == []


def test_no_import_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for f in SRC.rglob("*.py"):
        me = _module_name(f)
        graph[me] = {m for m, _ in _imports(f) if m != me}
    seen, stack, cycles = set(), [], []

    def visit(m: str) -> None:
        if m in stack:
            cycles.append([*stack[stack.index(m) :], m])
            return
        if m in seen or m not in graph:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert cycles == []


def test_a_new_method_is_one_file_plus_one_registry_entry(tmp_path, monkeypatch, capsys):
    """A method written in its own module, registered with one ``METHODS.add(SPEC)`` line, is listed by
    ``inrecon methods``, configurable with --set, runnable by name, and documented from its docstrings."""
    (tmp_path / "mean_filter_method.py").write_text(
        textwrap.dedent(
            '''
            from dataclasses import dataclass

            import torch

            from inrecon.config import PosInt, config_to_dict
            from inrecon.physics.measurement import build_measurement
            from inrecon.recon.registry import MethodSpec, ReconResult


            @dataclass
            class MeanConfig:
                """A smoothed zero-filled image."""

                width: PosInt = 3
                """Box filter width in pixels."""


            def run(scan, cfg, ctx):
                meas = build_measurement(scan, scale="none")
                x = meas.adjoint(meas.y)
                k = torch.ones(1, 1, cfg.width, cfg.width) / cfg.width**2
                real = torch.nn.functional.conv2d(x.real[None, None], k, padding="same")[0, 0]
                imag = torch.nn.functional.conv2d(x.imag[None, None], k, padding="same")[0, 0]
                return ReconResult(torch.complex(real, imag), "mean", config_to_dict(cfg))


            SPEC = MethodSpec("mean", run, MeanConfig, ("mri",), "zero-filled image smoothed by a box filter")
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import mean_filter_method

    from inrecon import cli
    from inrecon.recon.api import run_method
    from inrecon.recon.methods import METHODS
    from tests.inr_fixtures import tiny_mri

    monkeypatch.setattr(METHODS, "_specs", dict(METHODS._specs))  # keep the process-wide registry clean
    METHODS.add(mean_filter_method.SPEC)  # the one registry entry
    res = run_method("mean", tiny_mri(), {"width": 5})
    assert res.image.shape == (32, 32) and res.config == {"width": 5} and res.method == "mean"
    assert cli.main(["methods"]) == 0 and "mean" in capsys.readouterr().out
    assert cli.main(["methods", "mean"]) == 0
    assert "Box filter width in pixels." in capsys.readouterr().out


def test_import_inrecon_is_cheap_and_changes_nothing():
    code = "import sys, inrecon; print('torch' in sys.modules, inrecon.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.split()[0] == "False"
