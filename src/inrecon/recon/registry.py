"""What every reconstruction method is: its result, its run context, and its registry entry.

A method is one module that defines a config dataclass (:mod:`inrecon.config`: typed, nested, a docstring
under every field) and a function ``run(scan, cfg, ctx) -> ReconResult``, and exposes a :class:`MethodSpec`.
:mod:`inrecon.recon.methods` lists the specs -- one entry per method -- in :data:`~inrecon.recon.methods.METHODS`.
A spec also carries what else the method can do: pre-training from a population (``pretrain``), tuning by the
bilevel search (``tunable``), and the optional packages it needs (``requires``; a method whose package is
missing is still listed and fails when called, naming the install command).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inrecon.config import build_config, override_config
from inrecon.errors import InreconError

__all__ = ["DEFAULT_CONTEXT", "Context", "MethodSpec", "Pretrainer", "ReconResult", "Registry"]


@dataclass
class ReconResult:
    """A reconstruction and what produced it.

    Attributes
    ----------
    image
        The reconstruction on the scan's image grid: complex for MRI, real for CT and volumes
        (``(T, H, W)`` for a series).
    method
        Registered method name.
    config
        The resolved config as a nested dict (written beside every output).
    info
        Wall time (``seconds``), iterations, weights chosen automatically, histories, ...
    """

    image: torch.Tensor
    method: str
    config: dict
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """How a method is run (not what it computes)."""

    show_progress: bool | None = None
    """Progress bars: True, False, or None (when stderr is a terminal)."""
    checkpoint_dir: str | Path | None = None
    """Iterative methods checkpoint here and resume from it after a kill."""
    model: str | Path | None = None
    """Pre-trained model file (methods with ``needs_model``)."""


DEFAULT_CONTEXT = Context()
"""No progress preference, no checkpoints, no model."""


def _build(config: type, modality_defaults: Mapping, modality: str | None, overrides: Mapping | None) -> Any:
    cfg = build_config(config, modality_defaults.get(modality or "", {}))
    return override_config(cfg, overrides)


@dataclass(frozen=True)
class Pretrainer:
    """Population pre-training of a method: ``run(scans, cfg, output, *, names, show_progress, checkpoint_dir)``
    writes a model file and returns its path; ``modality_defaults`` replace the config's dataclass defaults on
    scans of one modality (as :attr:`MethodSpec.modality_defaults` do for reconstruction)."""

    config: type
    run: Callable[..., Path]
    distributed: bool = False
    summary: str = ""
    modality_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def build(self, modality: str | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
        """The pre-training config for scans of ``modality`` (as :meth:`MethodSpec.build`)."""
        return _build(self.config, self.modality_defaults, modality, overrides)


@dataclass(frozen=True)
class MethodSpec:
    """One registry entry.

    Attributes
    ----------
    name
        What users type (``--method NAME``).
    run
        ``run(scan, cfg, ctx) -> ReconResult``.
    config
        The config dataclass (defaults from docs/methods.md or from measurement).
    modalities
        Scan modalities it reconstructs (``mri``, ``ct``, ``volume``, ``mri-series``).
    summary
        One line for ``inrecon methods``.
    aliases
        Other names that mean this method for its modalities (``tv`` means ``tv-ct`` for a CT scan).
    needs_model
        Runs from a pre-trained model (``Context.model``).
    pretrain, tunable
        Population pre-training and bilevel tuning, when the method has them.
    requires
        ``(module, pip requirement)`` pairs checked before it runs.
    modality_defaults
        Config values (dotted keys) that replace the dataclass defaults on scans of one modality, e.g. the INR
        methods' CT data term and prior; a user's own values still win (:meth:`build`).
    """

    name: str
    run: Callable[..., ReconResult]
    config: type
    modalities: tuple[str, ...]
    summary: str
    aliases: tuple[str, ...] = ()
    needs_model: bool = False
    pretrain: Pretrainer | None = None
    tunable: Any = None
    requires: tuple[tuple[str, str], ...] = ()
    modality_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def build(self, modality: str | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
        """The config for a scan of ``modality``: the dataclass defaults, then that modality's defaults, then
        ``overrides`` (dotted keys, flat aliases or nested mappings), every value checked."""
        return _build(self.config, self.modality_defaults, modality, overrides)

    def check_available(self) -> None:
        """Raise naming the install command when an optional package the method needs is missing."""
        for module, requirement in self.requires:
            if importlib.util.find_spec(module) is None:
                raise InreconError(
                    f"method {self.name!r} needs the package {module!r}, which is not installed",
                    f"pip install '{requirement}'",
                )


class Registry(Mapping[str, MethodSpec]):
    """Methods by name, with modality-specific aliases."""

    def __init__(self, specs: Iterable[MethodSpec] = ()):
        self._specs: dict[str, MethodSpec] = {}
        for s in specs:
            self.add(s)

    def add(self, spec: MethodSpec) -> MethodSpec:
        """Register ``spec`` (a name may be registered once)."""
        if spec.name in self._specs:
            raise InreconError(
                f"method {spec.name!r} is registered twice", "give the new method another name"
            )
        self._specs[spec.name] = spec
        return spec

    def __getitem__(self, name: str) -> MethodSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def resolve(self, name: str, modality: str | None = None) -> MethodSpec:
        """The method ``name`` means (for ``modality``, following aliases); unknown names raise."""
        spec = self._specs.get(name)
        hits = [s for s in self._specs.values() if name in s.aliases]
        if modality is not None:
            if spec is not None and modality in spec.modalities:
                return spec
            hits = [s for s in hits if modality in s.modalities] or hits
        if spec is not None and (modality is None or not hits):
            return spec
        if hits:
            return hits[0]
        raise InreconError(f"unknown method {name!r}", f"choose one of: {', '.join(sorted(self.names()))}")

    def names(self) -> list[str]:
        """Every name and alias users can type."""
        return sorted(set(self._specs) | {a for s in self._specs.values() for a in s.aliases})

    def for_modality(self, modality: str) -> list[str]:
        return sorted(n for n, s in self._specs.items() if modality in s.modalities)

    def pretrainers(self) -> dict[str, MethodSpec]:
        return {n: s for n, s in self._specs.items() if s.pretrain is not None}

    def tunables(self) -> dict[str, MethodSpec]:
        return {n: s for n, s in self._specs.items() if s.tunable is not None}


def merge_overrides(*layers: Mapping[str, Any] | None) -> dict:
    """Later layers win (config file, tuned hyperparameters, ``--set``)."""
    out: dict = {}
    for layer in layers:
        out.update(layer or {})
    return out
