"""Encodings and networks: the fast hash grid equals the readable reference; shapes; rendering in chunks."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from inrecon.models.encodings import FourierFeatures, HashGridConfig, HashGridEncoding, IdentityEncoding
from inrecon.models.fields import FieldConfig, ImageINR, NeuralField, grid_coords
from inrecon.models.hashgrid_reference import ReferenceHashGrid
from inrecon.models.networks import MLP, MLPConfig, Siren, SirenConfig


@pytest.mark.parametrize(
    "dim,cfg",
    [
        (2, HashGridConfig()),
        (2, HashGridConfig(smoothstep=True, log2_table_size=12, per_level_scale=2.0)),
        (3, HashGridConfig(n_levels=6, log2_table_size=14)),
        (3, HashGridConfig(n_levels=4, n_features=4, log2_table_size=10, base_resolution=8)),
    ],
)
def test_hash_grid_matches_reference_values_and_gradients(dim, cfg, gen):
    enc = HashGridEncoding(dim, cfg)
    with torch.no_grad():
        enc.table.normal_(generator=gen)
    ref = ReferenceHashGrid(dim, cfg)
    ref.load_from_flat(enc.table.detach())
    x = torch.rand(500, dim, generator=gen)
    g = torch.randn(500, enc.out_dim, generator=gen)
    gathered = HashGridEncoding(dim, replace(cfg, lookup="gather"))
    gathered.table = enc.table  # the same table, planned as corner indices and weights
    plans = {
        "coordinates": (enc, x),
        "sparse plan": (enc, enc.plan(x)),
        "gather plan": (gathered, gathered.plan(x)),
    }
    for how, (encoder, inputs) in plans.items():
        enc.table.grad = None
        out = encoder(inputs)
        out = enc(inputs)
        (out * g).sum().backward()
        for t in ref.tables:
            t.grad = None
        r = ref(x)
        (r * g).sum().backward()
        torch.testing.assert_close(out, r, atol=1e-6, rtol=1e-5, msg=how)
        torch.testing.assert_close(
            enc.table.grad, torch.cat([t.grad for t in ref.tables]), atol=1e-6, rtol=1e-5, msg=how
        )


def test_hash_grid_plan_refuses_coordinates_outside_the_unit_square():
    # a dense level's corners would fall outside its table and the unchecked sparse plan would crash the process
    enc = HashGridEncoding(2, HashGridConfig(n_levels=4, log2_table_size=10, base_resolution=4))
    for bad in (
        torch.tensor([[0.5, -0.25]]),
        torch.tensor([[1.5, 0.5]]),
        torch.tensor([[float("nan"), 0.5]]),
    ):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            enc.plan(bad)
    with pytest.raises(ValueError, match="expects coordinates"):
        enc.plan(torch.rand(5, 3))
    assert enc.plan(torch.tensor([[0.0, 1.0], [0.5, 0.5]])).n == 2


def test_hash_grid_level_layout_follows_tcnn_formulas():
    enc = HashGridEncoding(
        2, HashGridConfig(n_levels=16, log2_table_size=18, base_resolution=16, per_level_scale=1.5)
    )
    # level 0: scale 15 -> resolution 16 -> dense 256 rows; levels become hashed once res^2 > 2^18
    assert enc.level_sizes[0] == 16**2
    res = enc.resolutions.tolist()
    assert res[1] == 24  # ceil(16*1.5 - 1) + 1
    assert all((r**2 <= 2**18) == d for r, d in zip(res, enc.dense.tolist()))
    assert all(s == 2**18 for s, d in zip(enc.level_sizes, enc.dense.tolist()) if not d)
    assert enc.out_dim == 32
    init = enc.table.detach()
    assert float(init.abs().max()) <= 1e-4


def test_fourier_and_identity_encodings():
    x = torch.rand(10, 3)
    ff = FourierFeatures(3)
    assert ff(x).shape == (10, ff.out_dim) == (10, 3 * 21)
    assert IdentityEncoding(3)(x).min() >= -1


def test_siren_initialisation_bounds():
    net = Siren(2, 1, SirenConfig(width=64, n_hidden_layers=2, w0=30.0))
    first = net.net[0].linear.weight.detach()
    assert float(first.abs().max()) <= 1 / 2 + 1e-6
    hidden = net.net[1].linear.weight.detach()
    assert float(hidden.abs().max()) <= (6 / 64) ** 0.5 / 30 + 1e-6


def test_mlp_depth_and_linear_head():
    m = MLP(32, 2, MLPConfig(width=16, n_hidden_layers=3))
    assert sum(isinstance(x, torch.nn.Linear) for x in m.net) == 4
    assert MLP(8, 1, MLPConfig(n_hidden_layers=0))(torch.rand(4, 8)).shape == (4, 1)


@pytest.mark.parametrize("backbone", ["hash", "fourier", "siren"])
def test_image_inr_renders_complex_and_real(backbone):
    cfg = FieldConfig(backbone=backbone)
    cfg.hash = HashGridConfig(n_levels=4, log2_table_size=10)
    cfg.siren = SirenConfig(width=32, n_hidden_layers=1)
    inr = ImageINR(NeuralField(2, 2, cfg), (12, 10), complex_output=True)
    img = inr()
    assert img.shape == (12, 10) and img.dtype == torch.complex64
    torch.testing.assert_close(inr.render(chunk=7), img.detach())
    real = ImageINR(NeuralField(3, 1, cfg), (4, 5, 6), complex_output=False)
    assert real.render(chunk=11).shape == (4, 5, 6)


def test_grid_coords_are_pixel_centres():
    c = grid_coords((2, 4))
    assert c.shape == (8, 2)
    torch.testing.assert_close(c[0], torch.tensor([0.25, 0.125]))
    torch.testing.assert_close(c[-1], torch.tensor([0.75, 0.875]))


@pytest.mark.parametrize("network", ["disinr", "strainer"])
def test_population_bf16_mlps_are_close_to_float32_and_return_float32(network):
    from dataclasses import replace

    from inrecon.models.population import DisINRNetwork, PopulationArch, StrainerNetwork

    make = DisINRNetwork if network == "disinr" else StrainerNetwork
    arch = PopulationArch(hash=HashGridConfig(n_levels=4, log2_table_size=10), mlp_dtype="float32")
    torch.manual_seed(0)
    ref = make(2, 1, 2, arch)
    fast = make(2, 1, 2, replace(arch, mlp_dtype="bfloat16"))
    fast.load_state_dict(ref.state_dict())
    coords = grid_coords((16, 16))
    a, b = ref(coords, 1), fast(coords, 1)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 products actually ran
    assert float(((a - b).norm() / a.norm()).detach()) < 0.03
    b.sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in fast.parameters())


def test_ngp_field_mlp_precision_option_is_close_to_float32_and_returns_float32():
    from dataclasses import replace

    from inrecon.models.fields import FieldConfig, NeuralField
    from inrecon.models.networks import MLPConfig

    cfg = FieldConfig(hash=HashGridConfig(n_levels=4, log2_table_size=10), mlp=MLPConfig(n_hidden_layers=2))
    torch.manual_seed(0)
    ref = NeuralField(2, 2, cfg)
    fast = NeuralField(2, 2, replace(cfg, mlp=replace(cfg.mlp, precision="bfloat16")))
    fast.load_state_dict(ref.state_dict())
    coords = grid_coords((16, 16))
    a, b = ref(coords), fast(coords)
    assert ref.cfg.mlp.precision == "float32"  # the default: NGP's numbers are float32 ones
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 products actually ran
    assert float(((a - b).norm() / a.norm()).detach()) < 0.03
    b.sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in fast.parameters())


def test_auto_precision_follows_the_hardware_and_its_override(monkeypatch):
    from dataclasses import replace

    from inrecon.models.population import DisINRNetwork, PopulationArch
    from inrecon.runtime import fast_bf16

    arch = PopulationArch(hash=HashGridConfig(n_levels=4, log2_table_size=10), mlp_dtype="auto")
    torch.manual_seed(0)
    nets = {d: DisINRNetwork(2, 1, 1, replace(arch, mlp_dtype=d)) for d in ("auto", "float32", "bfloat16")}
    for n in nets.values():
        n.load_state_dict(nets["auto"].state_dict())
    coords = grid_coords((16, 16))
    out = {d: n(coords, 0) for d, n in nets.items()}
    for forced, same_as in (("0", "float32"), ("1", "bfloat16")):
        monkeypatch.setenv("INRECON_BF16", forced)
        assert fast_bf16("cpu") is (forced == "1")
        assert torch.equal(nets["auto"](coords, 0), out[same_as])
    monkeypatch.delenv("INRECON_BF16")
    cpuinfo = Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
    assert fast_bf16("cpu") is (
        sys.platform.startswith("linux") and ("avx512_bf16" in cpuinfo or "amx_bf16" in cpuinfo)
    )


def test_disinr_subject_levels_confine_the_subject_encoders_to_the_coarse_levels():
    from inrecon.models.population import DisINRNetwork, PlanPair, PopulationArch

    arch = PopulationArch(hash=HashGridConfig(n_levels=6, log2_table_size=10), subject_levels=3)
    torch.manual_seed(0)
    net = DisINRNetwork(2, 1, 2, arch)
    shared_enc, subject_enc = net.shared_encoder.encoding, net.subjects["0"].encoding
    assert subject_enc.cfg.n_levels == 3 and shared_enc.cfg.n_levels == 6
    # the subject levels are the shared grid's coarsest ones (same resolutions), with fewer table rows
    assert torch.equal(subject_enc.resolutions, shared_enc.resolutions[:3])
    assert subject_enc.table.shape[0] < shared_enc.table.shape[0]
    coords = grid_coords((16, 16))
    plan = net.plan(coords)
    assert isinstance(plan, PlanPair)
    # the precomputed plans give the same field values and gradients as the coordinates themselves
    out_plan, out_coords = net(plan, 1), net(coords, 1)
    assert torch.allclose(out_plan, out_coords, atol=1e-6)
    g_plan = torch.autograd.grad(out_plan.sum(), net.subjects["1"].encoding.table)[0]
    g_coords = torch.autograd.grad(out_coords.sum(), net.subjects["1"].encoding.table)[0]
    assert torch.allclose(g_plan, g_coords, atol=1e-6)
    new = net.add_subject()
    assert net.subjects[str(new)].encoding.cfg.n_levels == 3
    # all levels (None, or as many as the grid has) keep the paper's design: one plan for both encoders
    full = DisINRNetwork(2, 1, 1, PopulationArch(hash=HashGridConfig(n_levels=6, log2_table_size=10)))
    assert not isinstance(full.plan(coords), PlanPair)
