"""Registry cases for the periodic Daubechies wavelet transform (orthonormal; zero-padded when needed)."""

from __future__ import annotations

import torch

from inrecon.physics.wavelets import Wavelet

from . import OpCase

C64 = torch.complex64
F32 = torch.float32

CASES = [
    OpCase("wavelet_db4_2d_real", lambda: Wavelet((32, 48), "db4", levels=2), (32, 48), F32, (32, 48), F32),
    OpCase(
        "wavelet_db4_2d_complex_padded",
        lambda: Wavelet((18, 23), "db4", levels=2),
        (18, 23),
        C64,
        (20, 24),
        C64,
    ),
    OpCase(
        "wavelet_haar_3d_complex", lambda: Wavelet((8, 12, 10), "haar", 2), (8, 12, 10), C64, (8, 12, 12), C64
    ),
    # more levels than the filter fits: periodic wrap-around several times per band (still orthonormal)
    OpCase("wavelet_db8_2d_deep", lambda: Wavelet((16, 16), "db8", levels=4), (16, 16), F32, (16, 16), F32),
    OpCase(
        "wavelet_db2_3d_padded", lambda: Wavelet((5, 9, 7), "db2", levels=1), (5, 9, 7), F32, (6, 10, 8), F32
    ),
]
