"""SAX-NeRF (Cai et al., CVPR 2024, docs/methods.md section 5.9): a hash-grid INR with a line-segment
transformer decoder ("Lineformer"), re-implemented for 2D CT slices on our one engine.

The idea of [14] (docs/methods.md, references): the points an X-ray passes through are not independent -- they lie on a line through one
structure -- so the decoder mixes the features of neighbouring points along a line before it predicts their
attenuation. Points on a line are split into *line segments* of ``M`` consecutive points, and a transformer
block restricted to one segment (self-attention among its ``M`` points, then a feed-forward layer) runs on the
hash-encoded points.

Here the image is rendered on its pixel grid and passed through the scan's CT projector (fan or parallel beam),
exactly like NGP (:mod:`inrecon.recon.inr.ngp`), so the "lines" are the lines of the pixel grid:

1. every pixel centre ``X (H*W, 2)`` is hash-encoded (:class:`~inrecon.models.encodings.HashGridEncoding`, with
   the precomputed interpolation plan of the fixed grid): ``(H*W, L*F)``;
2. a linear layer lifts the features to ``(H, W, width)``;
3. ``n_blocks`` Lineformer blocks: ``x = x + Attn(LN(x))``, ``x = x + FFN(LN(x))``, where ``Attn`` is multi-head
   self-attention (``heads`` heads, :func:`torch.nn.functional.scaled_dot_product_attention`) among the pixels of
   one segment only -- ``segment`` consecutive pixels of one image row (a last, shorter segment takes the
   remainder of a row whose length is not a multiple of ``segment``); with ``layout="alternate"`` every second
   block uses segments of image columns instead, so information flows both ways; the feed-forward layer is
   ``width -> ffn_mult * width -> width`` with a GELU;
4. a final LayerNorm and a linear head give one attenuation value per pixel: ``(H, W)`` float32, the image in
   the measurement's scaled units (:meth:`~inrecon.physics.measurement.Measurement.finalize` maps it back).

Sizes (defaults) and why: 16 levels x 2 features, ``T = 2^18`` (NGP's hash grid, so the two differ only in the
decoder); ``width = 32`` with ``heads = 2`` of 16 dimensions, ``segment = 16`` pixels, ``n_blocks = 2`` (rows,
then columns), ``ffn_mult = 2``. The official Lineformer is about as narrow (a hidden width of 32 and one block
in the configuration we read), so 32 keeps its scale; two blocks let every pixel see a row segment and a column
segment (measured on the lungdx slice of docs/methods.md section 5.9: rows only peaked ~0.8 dB lower). Two
heads rather than the official eight narrow ones because on the CPU the attention kernel's cost grows with the
number of heads at equal width (2 heads of 16: 2.5x faster than 4 heads of 8). On a 128 x 128 slice a step then
costs about 2x an NGP step (the decoder's matrix products; the hash lookups and the projector are shared), so a
1000-2000-step fit takes a few minutes on 1-2 CPU cores. Adam with the official learning rate 1e-3 (NGP's 3e-3
gave a noisier held-out loss and a worse chosen step), NGP's step decay and weight decays, and the same
reference-free hold-out stopping rule as every INR method (:func:`~inrecon.engine.holdout.fit_with_holdout`).
The head starts at zero, so the image starts at 0 (a random head starts it ~7x above the scaled data's range
and costs ~100 steps).

What differs from the official implementation:

- **Rendering**: the whole image is rendered on its pixel grid and projected by our CT operator (and its data
  weighting, :class:`~inrecon.physics.measurement.MeasurementConfig`), instead of sampling points along each
  ray and integrating them by quadrature; the segments are runs of pixels along grid rows (and columns), not
  runs of samples along the X-rays themselves.
- **2D slices** (fan or parallel beam), not 3D cone-beam volumes.
- **No Masked Local-Global ray sampling**: every step uses every measured ray (minus the hold-out share), so
  there are no ray batches to sample.
- **Output**: a linear head with no output activation (like NGP; the official network ends in a sigmoid with a
  fixed bound), a pre-norm transformer block with a final LayerNorm, no skip-connected MLP after the blocks.
- **Sizes and training**: the defaults above, NGP's optimiser and learning-rate schedule, and the hold-out
  stopping rule instead of a fixed number of epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inrecon.config import PosInt, config_to_dict
from inrecon.data.scans import CTScan
from inrecon.engine.fit import Model
from inrecon.engine.holdout import FitConfig, fit_with_holdout
from inrecon.engine.trainer import OptimConfig
from inrecon.errors import InreconError
from inrecon.models.encodings import HashGridConfig, HashGridEncoding
from inrecon.models.fields import count_parameters, for_grid, grid_coords, plan_for
from inrecon.physics.measurement import Measurement, measure
from inrecon.recon.inr.ngp import FIT_ALIASES
from inrecon.recon.registry import DEFAULT_CONTEXT, Context, MethodSpec, ReconResult

__all__ = [
    "SAXNERF",
    "LineformerBlock",
    "LineformerConfig",
    "LineformerImage",
    "SAXNeRFConfig",
    "reconstruct_saxnerf",
    "segment_attention",
]


@dataclass
class LineformerConfig:
    """The Lineformer decoder (module docstring: sizes and why)."""

    width: PosInt = 32
    """Feature width of every block."""
    heads: PosInt = 2
    """Attention heads (width must be a multiple of heads)."""
    segment: PosInt = 16
    """Pixels per line segment: attention is restricted to this many consecutive pixels of a row (column)."""
    n_blocks: PosInt = 2
    """Lineformer blocks (attention + feed-forward, each with a residual)."""
    layout: Literal["rows", "alternate"] = "alternate"
    """rows: every block attends along image rows; alternate: rows, columns, rows, ..."""
    ffn_mult: PosInt = 2
    """Hidden width of the feed-forward layer, as a multiple of width."""


@dataclass
class SAXNeRFConfig(FitConfig):
    """SAX-NeRF on the pixel grid (module docstring). Optimiser defaults: NGP's."""

    hash: HashGridConfig = field(default_factory=HashGridConfig)
    """The hash-grid encoding of the pixel centres."""
    lineformer: LineformerConfig = field(default_factory=LineformerConfig)
    """The line-segment transformer decoder."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(steps=2000, lr=1e-3, wd_enc=1e-6, wd_mlp=1e-8)
    )
    """Adam, step decay, weight decay of the hash tables (wd_enc) and of the decoder (wd_mlp); lr 1e-3 (the
    official lr; NGP's 3e-3 made the held-out loss noisier and chose a worse step, module docstring)."""

    ALIASES: ClassVar[dict] = dict(FIT_ALIASES)


def _segments(x: torch.Tensor, m: int) -> list[torch.Tensor]:
    """``(R, W, ...)`` -> the full segments ``(R * (W // m), m, ...)`` and, when ``m`` does not divide ``W``, the
    remainder segments ``(R, W % m, ...)``."""
    r, w = x.shape[0], x.shape[1]
    full = (w // m) * m
    out = []
    if full:
        out.append(x[:, :full].reshape(r * (w // m), m, *x.shape[2:]))
    if full < w:
        out.append(x[:, full:])
    return out


def segment_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, m: int) -> torch.Tensor:
    """Self-attention restricted to segments of ``m`` consecutive positions along axis 1.

    ``q, k, v (R, W, heads, d)`` -> ``(R, W, heads, d)``: position ``(r, j)`` attends to ``(r, j')`` only when
    ``j // m == j' // m``.
    """
    r, w = q.shape[0], q.shape[1]
    outs = []
    for qs, ks, vs in zip(_segments(q, m), _segments(k, m), _segments(v, m)):
        # (S, n, h, d) -> (S, h, n, d)
        o = F.scaled_dot_product_attention(qs.transpose(1, 2), ks.transpose(1, 2), vs.transpose(1, 2))
        outs.append(o.transpose(1, 2))
    full = (w // m) * m
    if full and full < w:
        return torch.cat([outs[0].reshape(r, full, *q.shape[2:]), outs[1]], dim=1)
    return outs[0].reshape(r, w, *q.shape[2:])


class LineformerBlock(nn.Module):
    """``x (H, W, width)`` -> same: ``x + Attn(LN(x))`` within line segments along rows (``columns=False``) or
    columns, then ``x + FFN(LN(x))``."""

    def __init__(self, width: int, heads: int, segment: int, ffn_mult: int, columns: bool):
        super().__init__()
        if width % heads:
            raise InreconError(
                f"lineformer width {width} is not a multiple of heads {heads}",
                "choose width = heads x head size (e.g. width=32, heads=4)",
            )
        self.heads, self.segment, self.columns = heads, segment, columns
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Linear(ffn_mult * width, width)
        )

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.columns:
            x = x.transpose(0, 1)
        h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(h, w, 3, self.heads, c // self.heads).unbind(2)
        out = self.proj(segment_attention(q, k, v, self.segment).reshape(h, w, c))
        return out.transpose(0, 1) if self.columns else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class LineformerImage(nn.Module):
    """Hash grid + Lineformer rendered on the pixel grid of ``image_shape`` (2D): ``forward() -> (H, W)``
    float32.

    ``encoder_parameters()`` (hash tables) and ``decoder_parameters()`` (everything else) are the two Adam
    groups, with NGP's two weight decays.
    """

    def __init__(self, image_shape: tuple[int, int], hash_cfg: HashGridConfig, cfg: LineformerConfig):
        super().__init__()
        if len(image_shape) != 2:
            raise InreconError(
                f"SAX-NeRF here reconstructs 2D slices, got an image of shape {tuple(image_shape)}",
                "reconstruct a 2D CT slice",
            )
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.encoder = HashGridEncoding(2, hash_cfg)
        self.lift = nn.Linear(self.encoder.out_dim, cfg.width)
        self.blocks = nn.ModuleList(
            LineformerBlock(
                cfg.width,
                cfg.heads,
                cfg.segment,
                cfg.ffn_mult,
                columns=cfg.layout == "alternate" and i % 2 == 1,
            )
            for i in range(cfg.n_blocks)
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, 1)
        # the image starts at zero (a random head starts it at O(1), ~7x the scaled data's largest value)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._plan = None
        self._plan_device = None

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("encoder.")]

    def _inputs(self, device):
        if self._plan is None or self._plan_device != device:
            self._plan = plan_for(self.encoder, grid_coords(self.image_shape, device=device))
            self._plan_device = device
        return self._plan

    def features(self, coords: torch.Tensor | None = None) -> torch.Tensor:
        """The lifted hash features ``(H, W, width)`` of the pixel grid (or of ``coords (H*W, 2)``)."""
        enc = self.encoder(self._inputs(self.encoder.table.device) if coords is None else coords)
        return self.lift(enc).reshape(*self.image_shape, -1)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Lifted features ``(H, W, width)`` -> the image ``(H, W)``."""
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))[..., 0]

    def forward(self) -> torch.Tensor:
        return self.decode(self.features())


def lineformer_model(meas: Measurement, cfg: SAXNeRFConfig) -> Model:
    """A freshly initialised (seeded) Lineformer image on the measurement's grid as a :class:`Model`."""
    torch.manual_seed(cfg.seed)
    net = LineformerImage(meas.image_shape, for_grid(cfg.hash, meas.image_shape), cfg.lineformer)
    net = net.to(meas.y.device)
    groups = [
        {"params": net.encoder_parameters(), "weight_decay": cfg.optim.wd_enc},
        {"params": net.decoder_parameters(), "weight_decay": cfg.optim.wd_mlp},
    ]
    return Model(net, groups, render=net)


def reconstruct_saxnerf(scan, cfg: SAXNeRFConfig, ctx: Context = DEFAULT_CONTEXT) -> ReconResult:
    """Fit SAX-NeRF's Lineformer INR to a CT ``scan`` (module docstring)."""
    if not isinstance(scan, CTScan):
        raise InreconError(
            f"saxnerf reconstructs CT sinograms, got a {type(scan).__name__}",
            "use a CT scan, or ngp for MRI and volumes",
        )
    meas = measure(scan, cfg.data)
    image, info, model = fit_with_holdout(
        meas,
        lambda: lineformer_model(meas, cfg),
        cfg,
        run_id={"method": "saxnerf", "cfg": config_to_dict(cfg)},
        checkpoint_dir=ctx.checkpoint_dir,
        show_progress=ctx.show_progress,
        desc="SAX-NeRF",
    )
    info["n_parameters"] = count_parameters(model.module)
    return ReconResult(image=image, method="saxnerf", config=config_to_dict(cfg), info=info)


SAXNERF = MethodSpec(
    "saxnerf",
    reconstruct_saxnerf,
    SAXNeRFConfig,
    ("ct",),
    "SAX-NeRF: hash grid + Lineformer (attention within line segments of pixels) with a hold-out stopping rule",
)
