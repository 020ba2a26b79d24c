"""SAX-NeRF (Lineformer INR): attention confined to line segments, shapes, registration, CT only, and a fit that
beats FBP on a sparse-view fan-beam phantom."""

from __future__ import annotations

import pytest
import torch

from inrecon.config import build_config
from inrecon.data.phantoms import body_ct_phantom
from inrecon.data.shared import disinr_fan_geometry
from inrecon.errors import InreconError
from inrecon.metrics import psnr
from inrecon.models.encodings import HashGridConfig
from inrecon.physics.simulate.ct import full_scan_angles, simulate_ct
from inrecon.recon.api import run_method
from inrecon.recon.inr.saxnerf import (
    LineformerConfig,
    LineformerImage,
    SAXNeRFConfig,
    reconstruct_saxnerf,
    segment_attention,
)
from inrecon.recon.methods import METHODS
from inrecon.recon.registry import Context
from tests.inr_fixtures import tiny_mri

QUIET = Context(show_progress=False)
SMALL_HASH = HashGridConfig(n_levels=6, log2_table_size=10, init_range=0.1)


def _net(shape, **kw) -> LineformerImage:
    torch.manual_seed(0)
    cfg = LineformerConfig(**{"width": 16, "heads": 2, "segment": 8, "n_blocks": 1, "layout": "rows", **kw})
    net = LineformerImage(shape, SMALL_HASH, cfg)
    torch.nn.init.normal_(net.head.weight)  # the head starts at zero: make the output depend on the features
    return net


@pytest.mark.parametrize("shape", [(12, 32), (12, 30)])  # 30: a shorter last segment in every row
def test_one_pixel_changes_only_its_own_segment(shape):
    net = _net(shape)
    x = net.features().detach()
    with torch.no_grad():
        base = net.decode(x)
        r, c = 5, 19
        x2 = x.clone()
        x2[r, c] += 3.0 * torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(1))
        diff = (net.decode(x2) - base).abs() > 1e-6
    seg = c // 8
    expected = torch.zeros(shape, dtype=torch.bool)
    expected[r, seg * 8 : min(shape[1], seg * 8 + 8)] = True
    assert torch.equal(diff, expected)  # its segment moves (every pixel of it), nothing else


def test_alternate_layout_mixes_rows_and_columns():
    net = _net((16, 16), n_blocks=2, layout="alternate")
    x = net.features().detach()
    with torch.no_grad():
        x2 = x.clone()
        x2[3, 5] += 3.0 * torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(1))
        diff = (net.decode(x2) - net.decode(x)).abs() > 1e-6
    # rows then columns: the 8-pixel row segment of (3, 5), then the column segments through it
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[0:8, 0:8] = True
    assert torch.equal(diff, expected)


def test_segment_attention_matches_dense_masked_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 11, 2, 4, generator=g) for _ in range(3))
    out = segment_attention(q, k, v, 4)
    seg = torch.arange(11) // 4
    mask = seg[:, None] == seg[None, :]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    ).transpose(1, 2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_shapes_dtype_and_parameter_groups():
    net = _net((20, 24), n_blocks=2, layout="alternate")
    img = net()
    assert img.shape == (20, 24) and img.dtype == torch.float32
    enc, dec = net.encoder_parameters(), net.decoder_parameters()
    assert {id(p) for p in enc} | {id(p) for p in dec} == {id(p) for p in net.parameters()}
    assert not {id(p) for p in enc} & {id(p) for p in dec}
    with pytest.raises(InreconError, match="multiple of heads"):
        LineformerImage((8, 8), SMALL_HASH, LineformerConfig(width=10, heads=4))
    with pytest.raises(InreconError, match="2D"):
        LineformerImage((4, 8, 8), SMALL_HASH, LineformerConfig())


def test_registered_for_ct_only_and_refuses_mri():
    spec = METHODS["saxnerf"]
    assert spec.modalities == ("ct",) and spec.config is SAXNeRFConfig
    assert "saxnerf" in METHODS.for_modality("ct") and "saxnerf" not in METHODS.for_modality("mri")
    scan = tiny_mri()
    with pytest.raises(InreconError, match="reconstructs ct"):
        run_method("saxnerf", scan, {"steps": 5})
    with pytest.raises(InreconError, match="CT sinograms"):
        reconstruct_saxnerf(scan, SAXNeRFConfig(), QUIET)
    with pytest.raises(InreconError, match="heads"):
        build_config(SAXNeRFConfig, {"heads": 0})


@pytest.mark.usefixtures("one_thread")
def test_beats_fbp_on_sparse_view_fan_ct():
    image = body_ct_phantom((64, 64), seed=3)
    scan = simulate_ct(image, disinr_fan_geometry((64, 64)), full_scan_angles(60))
    over = dict(
        n_levels=8, log2_table_size=12, width=16, heads=2, segment=8, steps=300, patience=60, eval_every=50
    )
    res = run_method("saxnerf", scan, over, show_progress=False)
    assert res.image.shape == (64, 64) and res.image.dtype == torch.float32
    assert 1 <= res.info["chosen_steps"] <= 300 and res.info["n_parameters"] > 0
    fbp = run_method("fbp", scan).image
    gain = psnr(res.image, scan.target) - psnr(fbp, scan.target)
    assert gain > 5.0, gain  # measured 8.2 dB
